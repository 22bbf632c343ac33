//! Containers a client process makes for a moment (a login, a copy out of
//! a volume), labelled with that process: when it is killed before it can
//! remove them, `gc` finds them by their labels and removes those whose
//! process is gone.

use super::Engine;
use crate::core::error::Result;
use std::collections::HashMap;

/// The labels of a container made for a moment by this process, under
/// `kind` (e.g. `ai.fetch`): `kind=value`, `kind.pid`, `kind.start`.
pub fn labels(kind: &str, value: &str) -> HashMap<String, String> {
    let pid = std::process::id();
    let mut labels = HashMap::from([
        (kind.to_owned(), value.to_owned()),
        (format!("{kind}.pid"), pid.to_string()),
    ]);
    if let Some(start) = crate::core::procinfo::start_time(pid) {
        labels.insert(format!("{kind}.start"), start.to_string());
    }
    labels
}

/// A container whose process is gone.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Its name, or its id when it has none.
    pub name: String,
    /// The process that made it, when its label says.
    pub pid: Option<u32>,
}

impl Engine {
    /// Containers of `kind` that also carry `selector` labels and whose
    /// process is gone (not running, or another process under its pid):
    /// removed, unless `dry_run`.
    pub fn reap_orphans(
        &self,
        kind: &str,
        selector: &[String],
        dry_run: bool,
    ) -> Result<Vec<Orphan>> {
        let mut filter = vec![kind.to_owned()];
        filter.extend_from_slice(selector);
        let mut out = Vec::new();
        for c in self.list(&filter)? {
            let label = |suffix: &str| {
                c.labels
                    .get(&format!("{kind}.{suffix}"))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let pid = label("pid").and_then(|p| u32::try_from(p).ok());
            // Its process still runs: the same pid, started at the same time.
            if pid.is_some_and(|p| crate::core::procinfo::alive(p, label("start"))) {
                continue;
            }
            if !dry_run {
                self.remove_container(&c.id)?;
            }
            out.push(Orphan {
                name: match c.name.is_empty() {
                    true => c.id,
                    false => c.name,
                },
                pid,
            });
        }
        Ok(out)
    }
}
