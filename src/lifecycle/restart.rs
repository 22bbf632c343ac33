//! Restart: stop, then start again with the same id.

use super::start::{start, InstanceStart};
use super::stop::{stop_many_as, Stopper};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::state::config::RuntimeChoice;
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{Instance, RuntimeKind};
use serde_json::json;

/// Stops (if it runs) and starts a container instance again at the
/// user's request, with the same id, port when still free, and owner;
/// counts the restart. `force` kills instead of the graceful stop.
pub fn restart(ctx: &Ctx, id: &InstanceId, force: bool, reason: &str) -> Result<Instance> {
    let inst = restart_as(ctx, id, force, reason, Stopper::User)?;
    ctx.events().log(
        Level::Info,
        "runtime",
        "instance restarted",
        json!({"instance": id, "by": "user", "reason": reason}),
    );
    Ok(inst)
}

/// `restart` on behalf of `by`: a heal (`Stopper::Heal`) goes ahead only
/// while its marker is on the entry, checked under the lock when it stops
/// and again when it starts.
pub fn restart_as(
    ctx: &Ctx,
    id: &InstanceId,
    force: bool,
    reason: &str,
    by: Stopper,
) -> Result<Instance> {
    let reg = super::refresh(ctx)?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?.clone();
    if inst.runtime == Some(RuntimeKind::Host) {
        return Err(Error::Invalid(format!(
            "{id} runs on the host in the terminal that started it; restart it there"
        )));
    }
    if inst.status.is_live() {
        if let Some((_, e)) = stop_many_as(ctx, std::slice::from_ref(id), force, reason, by).pop() {
            return Err(e);
        }
    }
    let bind = ctx.effective(id)?.settings.networking.bind;
    start(
        ctx,
        InstanceStart {
            project: inst.project_path.clone().into(),
            mode: inst.mode.clone(),
            id: Some(id.clone()),
            port: Some(inst.port).filter(|p| crate::state::ports::bindable(bind, *p)),
            runtime: Some(RuntimeChoice::Docker),
            egress: inst.egress_flag,
            args: inst.args.clone(),
            continue_args: Vec::new(),
            shell_pid: None,
            detach: true,
            heal: by == Stopper::Heal,
            clone: None,
            worktree: None,
        },
    )?;
    ctx.store.update(|reg| {
        let i = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| Error::not_found(id))?;
        i.restarts = inst.restarts + 1;
        i.owner_pid = inst.owner_pid;
        i.owner_start_time = inst.owner_start_time;
        Ok(i.clone())
    })
}
