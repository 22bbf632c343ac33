//! Bringing back instances after an engine restart or a reboot.
//!
//! What such an event leaves: containers killed (the agent ended by a
//! signal: exit 137 or 143, or the container "died") or gone. Reconcile
//! records those as ended, with the reason; [`interrupted`] tells them
//! apart from ends the user asked for (a stop, a shell exit, an agent that
//! exited by itself). `ai-sessctl resume` starts every interrupted
//! container instance of this state home again with the same id, port
//! (when free), owner, state and arguments; an agent with `resume_args` (claude:
//! `--continue`) continues its last conversation when its state dir holds
//! one.

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::lifecycle::{self, InstanceStart};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{Instance, RuntimeKind};
use serde_json::json;

/// Whether `inst` ended without anyone asking: killed by a signal, its
/// container died or was removed behind our back.
pub fn interrupted(inst: &Instance) -> bool {
    if inst.status.is_live() || inst.runtime == Some(RuntimeKind::Host) {
        return false;
    }
    // Reconcile's own words for an end it saw (a stop of ours records the
    // stop's reason instead, whatever the exit code), matched whole: other
    // reasons quote what the box wrote (a setup outcome's command), which
    // must not pass for the engine's word.
    const INTERRUPTED: [&str; 5] = [
        "agent exited with code 137",
        "agent exited with code 143",
        "container died",
        "container removed outside ai-sessctl",
        "container replaced outside ai-sessctl",
    ];
    INTERRUPTED.contains(&inst.status_reason.as_deref().unwrap_or(""))
}

/// The arguments that continue the agent's last conversation, when it has
/// them and its state dir holds anything (a fresh dir has no session).
pub fn resume_args(ctx: &Ctx, inst: &Instance) -> Vec<String> {
    let Ok(eff) = ctx.effective(&inst.id) else {
        return Vec::new();
    };
    if eff.agent.resume_args.is_empty() {
        return Vec::new();
    }
    let dir =
        crate::features::agent_state::dir_for(&ctx.dirs, eff.agent.state, &inst.mode, &inst.id);
    let has_session = crate::features::agent_state::holds_more_than_login(&dir, &eff.agent);
    if has_session {
        eff.agent.resume_args.clone()
    } else {
        Vec::new()
    }
}

/// Starts `inst` again as it was (same id, project, port when free, owner,
/// the arguments it was started with) plus its agent's resume arguments.
pub fn bring_back(ctx: &Ctx, inst: &Instance) -> Result<Instance> {
    let bind = ctx.effective(&inst.id)?.settings.networking.bind;
    let continue_args = resume_args(ctx, inst);
    lifecycle::start(
        ctx,
        InstanceStart {
            project: inst.project_path.clone().into(),
            mode: inst.mode.clone(),
            id: Some(inst.id.clone()),
            port: Some(inst.port).filter(|p| crate::state::ports::bindable(bind, *p)),
            runtime: Some(crate::state::config::RuntimeChoice::Docker),
            egress: inst.egress_flag,
            args: inst.args.clone(),
            continue_args: continue_args.clone(),
            shell_pid: None,
            detach: true,
            heal: false,
            clone: None,
            worktree: None,
        },
    )?;
    let id = inst.id.clone();
    let back = ctx.store.update(|reg| {
        let i = reg
            .instances
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(&id))?;
        i.restarts = inst.restarts + 1;
        // Its shell may be gone after a reboot: then nobody owns it.
        if inst
            .owner_pid
            .is_some_and(|p| crate::core::procinfo::alive(p, inst.owner_start_time))
        {
            i.owner_pid = inst.owner_pid;
            i.owner_start_time = inst.owner_start_time;
        }
        Ok(i.clone())
    })?;
    ctx.events().log(
        Level::Info,
        "runtime",
        "instance resumed after an interruption",
        json!({"instance": id, "was": inst.status_reason, "args": inst.args, "continue_args": continue_args}),
    );
    Ok(back)
}

/// Every interrupted instance of this state home, brought back; the ids
/// with what happened.
pub fn resume_all(ctx: &Ctx) -> Result<Vec<(InstanceId, Result<Instance>)>> {
    let reg = crate::lifecycle::refresh(ctx)?;
    let due: Vec<Instance> = reg
        .instances
        .values()
        .filter(|i| interrupted(i))
        .cloned()
        .collect();
    Ok(due
        .iter()
        .map(|i| (i.id.clone(), bring_back(ctx, i)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Status;

    fn inst(status: &str, reason: Option<&str>, code: Option<i64>) -> Instance {
        let mut i: Instance = serde_json::from_value(json!({
            "id": "p-claude", "project_name": "p", "mode": "claude",
            "status": status, "port": 9001, "runtime": "docker"
        }))
        .unwrap();
        i.status_reason = reason.map(str::to_owned);
        i.exit_code = code;
        i
    }

    #[test]
    fn only_ends_nobody_asked_for_are_interrupted() {
        assert!(interrupted(&inst(
            "error",
            Some("agent exited with code 137"),
            Some(137)
        )));
        assert!(interrupted(&inst(
            "error",
            Some("agent exited with code 143"),
            Some(143)
        )));
        assert!(interrupted(&inst(
            "stopped",
            Some("container removed outside ai-sessctl"),
            None
        )));
        assert!(interrupted(&inst("error", Some("container died"), None)));
        assert!(
            !interrupted(&inst(
                "error",
                Some("setup command `container died` failed with exit code 0"),
                Some(138)
            )),
            "words from the box"
        );
        assert!(
            !interrupted(&inst("stopped", Some("user"), Some(143))),
            "a stop of ours"
        );
        assert!(!interrupted(&inst(
            "stopped",
            Some("owner shell exited"),
            Some(143)
        )));
        assert!(!interrupted(&inst(
            "stopped",
            Some("agent exited"),
            Some(0)
        )));
        assert!(!interrupted(&inst(
            "error",
            Some("agent exited with code 1"),
            Some(1)
        )));
        assert!(!interrupted(&inst("running", None, None)));
        let mut host = inst("stopped", Some("agent process ended"), None);
        host.runtime = Some(RuntimeKind::Host);
        assert!(!interrupted(&host));
        assert_eq!(inst("running", None, None).status, Status::Running);
    }
}
