//! Acting on one instance by its id: stop, start, restart, pause, resume
//! (the API's `PUT` and `DELETE` on an instance).

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::lifecycle;
use crate::state::context::Ctx;
use crate::state::registry::Instance;

/// What can be done to an instance (the wire names are lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
}

/// The instance `id` as the registry has it.
pub fn lookup(ctx: &Ctx, id: &InstanceId) -> Result<Instance> {
    ctx.store
        .load()?
        .get(id)
        .cloned()
        .ok_or_else(|| Error::not_found(id))
}

/// The instance after an action, and a note when it did nothing.
pub struct Applied {
    pub instance: Instance,
    pub note: Option<String>,
}

/// Does `action` to `id`; `who` says through what (for the event log:
/// "through the API").
pub fn apply(ctx: &Ctx, id: &InstanceId, action: Action, who: &str) -> Result<Applied> {
    let inst = lookup(ctx, id)?;
    let mut note = None;
    match action {
        Action::Stop => stop(ctx, id, &format!("stopped {who}"))?,
        // The user's restart: graceful, as from the CLI.
        Action::Restart => {
            lifecycle::restart(ctx, id, false, &format!("restarted {who}"))?;
        }
        Action::Start if inst.status.is_live() => {
            note = Some(format!("{id} is already {}; nothing done", inst.status));
        }
        Action::Start => {
            lifecycle::restart(ctx, id, false, &format!("started {who}"))?;
        }
        Action::Pause => lifecycle::set_paused(ctx, id, true)?,
        Action::Resume => lifecycle::set_paused(ctx, id, false)?,
    }
    Ok(Applied {
        instance: lookup(ctx, id)?,
        note,
    })
}

/// Stops one instance gracefully; `reason` is recorded.
pub fn stop(ctx: &Ctx, id: &InstanceId, reason: &str) -> Result<()> {
    match lifecycle::stop_many(ctx, std::slice::from_ref(id), false, reason).pop() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}
