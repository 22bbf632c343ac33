//! The engine's event stream, for containers of ours.

use super::{Engine, MANAGED_LABEL, MANAGED_VALUE};
use bollard::query_parameters as q;
use futures_util::{Stream, StreamExt};
use std::collections::HashMap;

/// One container event: what happened (`start`, `die`, …) and the
/// container's attributes (its labels among them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEvent {
    pub action: String,
    pub attributes: HashMap<String, String>,
}

impl Engine {
    /// Events of the containers this tool manages (any state home: callers
    /// tell theirs apart by label). Ends at the first error (the engine
    /// went away): the caller reconnects.
    pub fn managed_container_events(&self) -> impl Stream<Item = ContainerEvent> + '_ {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![format!("{MANAGED_LABEL}={MANAGED_VALUE}")],
            ),
        ]);
        let opts = q::EventsOptionsBuilder::new().filters(&filters).build();
        self.docker
            .events(Some(opts))
            .take_while(|e| std::future::ready(e.is_ok()))
            .filter_map(|e| {
                std::future::ready(e.ok().map(|ev| ContainerEvent {
                    action: ev.action.unwrap_or_default(),
                    attributes: ev.actor.and_then(|a| a.attributes).unwrap_or_default(),
                }))
            })
    }
}
