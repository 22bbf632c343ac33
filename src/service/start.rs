//! Starting an agent in a project: what `run`/`start` and `POST /instances`
//! share — the project, the worktree it asks for, the instance id, resuming
//! an interrupted instance, and the start itself.

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode, Port};
use crate::core::warning::Warnings;
use crate::lifecycle;
use crate::state::config::{EgressPolicy, RuntimeChoice};
use crate::state::context::Ctx;
use std::path::PathBuf;

pub use crate::features::worktree::Wanted;
pub use crate::lifecycle::Started;

pub struct StartRequest {
    /// The project; `None`: the one the current directory is in.
    pub path: Option<PathBuf>,
    pub mode: Mode,
    pub id: Option<InstanceId>,
    pub port: Option<Port>,
    pub runtime: Option<RuntimeChoice>,
    pub egress: Option<EgressPolicy>,
    pub detach: bool,
    pub args: Vec<String>,
    pub shell_pid: Option<u32>,
    /// Run in a git worktree of the project: this one, or a new one.
    pub worktree: Option<Wanted>,
    /// `--clone` (`true`) or `--mount` (`false`); `None`: `project.mode`
    /// (and a clone with an engine on another machine).
    pub clone: Option<bool>,
    /// Reconcile first (so a dead instance is restarted, not attached to)
    /// and bring back an instance an engine restart or reboot ended with
    /// the arguments it was started with, when none are given now.
    pub resume: bool,
}

/// Starts (or finds running) the instance `req` asks for; what went wrong
/// on the way without failing it goes to `warnings`.
pub fn start(ctx: &Ctx, req: StartRequest, warnings: &mut Warnings) -> Result<Started> {
    let mut req = req;
    let mut project = crate::state::project::of(&ctx.dirs, req.path.as_deref())?;
    let worktree = match req.worktree.take() {
        Some(wanted) if lifecycle::runs_as_clone(ctx, &req.mode, req.clone, req.runtime)? => {
            let (_, id) =
                crate::features::worktree::clone_target(ctx, &project, &wanted, &req.mode)?;
            req.id.get_or_insert(id);
            // `--mount` stays asked for: the start refuses it there.
            req.clone.get_or_insert(true);
            None
        }
        Some(wanted) => {
            let (info, dir, id) =
                crate::features::worktree::target(ctx, &project, &wanted, &req.mode, warnings)?;
            project = dir;
            req.id.get_or_insert(id);
            Some(info)
        }
        None => None,
    };
    let mut start_args = std::mem::take(&mut req.args);
    let mut continue_args = Vec::new();
    if req.resume {
        // An engine that does not answer is reported by the start itself.
        let reg = crate::lifecycle::refresh_quietly(ctx)?;
        // Continuing its conversation (`resume_args`), unless the user
        // gave arguments now.
        if start_args.is_empty() {
            let id = match &req.id {
                Some(id) => Some(id.clone()),
                None => crate::state::registry::derive_id(&reg, &project, &req.mode).ok(),
            };
            if let Some(prev) = id.and_then(|id| reg.get(&id).cloned()) {
                if super::resume::interrupted(&prev) {
                    start_args = prev.args.clone();
                    continue_args = super::resume::resume_args(ctx, &prev);
                }
            }
        }
    }
    let started = lifecycle::start(
        ctx,
        lifecycle::InstanceStart {
            project,
            mode: req.mode,
            id: req.id,
            port: req.port,
            runtime: req.runtime,
            egress: req.egress,
            args: start_args,
            continue_args,
            shell_pid: req.shell_pid,
            detach: req.detach,
            heal: false,
            worktree: worktree.clone(),
            clone: req.clone,
        },
    )?;
    if let Started::AlreadyRunning(inst) = &started {
        if let Some(info) = &worktree {
            crate::features::worktree::record(ctx, &inst.id, info)?;
        }
        refuse_other_egress(inst, req.egress)?;
    }
    Ok(started)
}

/// A policy asked for now cannot apply to the running agent: attaching as
/// if it did would hand the user an agent that reaches what they asked it
/// not to.
fn refuse_other_egress(
    inst: &crate::state::registry::Instance,
    asked: Option<EgressPolicy>,
) -> Result<()> {
    let runs = inst.egress.unwrap_or(EgressPolicy::Open);
    match asked.filter(|a| *a != runs) {
        Some(asked) => Err(Error::Invalid(format!(
            "{id} is already running with egress = \"{runs}\"; --egress {asked} applies to a new start: \
             `ai-sessctl stop {id}`, then start it again with --egress {asked}",
            id = inst.id
        ))),
        None => Ok(()),
    }
}
