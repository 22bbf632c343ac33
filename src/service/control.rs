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

/// Whether this process reaches the engine `inst` runs on (see
/// `lifecycle::on_another_engine`).
pub fn reachable(inst: &Instance) -> Result<()> {
    crate::lifecycle::reachable(inst)
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

/// The instance of the project or worktree `cwd` is in: the one whose
/// project is the nearest ancestor of `cwd` (a worktree's before its
/// repository's); among several there, the only live one.
pub fn here(ctx: &Ctx, cwd: &std::path::Path) -> Result<InstanceId> {
    let reg = ctx.store.load()?;
    let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    let within = |i: &&Instance| {
        let p = std::path::Path::new(&i.project_path);
        !i.project_path.is_empty() && cwd.starts_with(p)
    };
    let deepest = reg
        .instances
        .values()
        .filter(within)
        .map(|i| i.project_path.len())
        .max()
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no instance for {} or a directory above it; name one (see `ai-sessctl list`)",
                crate::core::untrusted::printable(&cwd.to_string_lossy())
            ))
        })?;
    let mut found: Vec<&Instance> = reg
        .instances
        .values()
        .filter(within)
        .filter(|i| i.project_path.len() == deepest)
        .collect();
    if found.len() > 1 {
        let live: Vec<&Instance> = found
            .iter()
            .copied()
            .filter(|i| i.status.is_live())
            .collect();
        if live.len() == 1 {
            found = live;
        }
    }
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        many => Err(Error::Usage(format!(
            "several instances here ({}); name one",
            many.iter()
                .map(|i| i.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The instance `id`, or without one the instance of the current directory
/// ([`here`]).
pub fn given_or_here(ctx: &Ctx, id: Option<InstanceId>) -> Result<InstanceId> {
    match id {
        Some(id) => Ok(id),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::Other(format!("the current directory: {e}")))?;
            here(ctx, &cwd)
        }
    }
}
