//! A detached start of an instance with `worktree.setup` steps waits until
//! they have run (see `features::worktree::setup`); a failure ends it.

use super::docker::DockerEngine;
use crate::core::error::{Error, Result};
use crate::core::types::Status;
use crate::engine::state::ContainerState;
use crate::features::worktree::setup::{failure_reason, outcome, Outcome};
use crate::state::context::Ctx;
use crate::state::registry::Instance;
use std::time::Duration;

/// How a detached start watches its agent while the setup runs.
pub enum Watch<'a> {
    Container(&'a DockerEngine),
    Process(&'a mut std::process::Child),
}

/// Whether the agent is still running; else its exit code if known.
enum State {
    Running,
    Ended(Option<i64>),
}

impl Watch<'_> {
    fn state(&mut self, inst: &Instance) -> State {
        match self {
            Watch::Container(engine) => {
                let Some(cid) = inst.container_id.as_deref() else {
                    return State::Ended(None);
                };
                match engine.observe_one(cid) {
                    Some(o)
                        if matches!(o.state, ContainerState::Running | ContainerState::Created) =>
                    {
                        State::Running
                    }
                    o => State::Ended(o.and_then(|o| o.exit_code)),
                }
            }
            Watch::Process(child) => match child.try_wait() {
                Ok(None) => State::Running,
                Ok(Some(status)) => State::Ended(status.code().map(i64::from)),
                Err(_) => State::Ended(None),
            },
        }
    }
}

/// A detached start of an instance with setup steps: waits until they have
/// run. A failure ends the instance (output kept in its log, worktree and
/// state untouched) and is the error.
pub fn wait(ctx: &Ctx, mut watch: Watch, inst: &Instance) -> Result<()> {
    let mut ended_code = None;
    // A clone's box is asked through the engine: once a second, not at
    // every poll (each copy out is an engine call and event).
    for poll in 0u64.. {
        match look(ctx, &watch, inst, poll % 10 == 0) {
            Some(Outcome::Done) => return Ok(()),
            Some(Outcome::Failed { .. }) => break,
            None => {}
        }
        if let State::Ended(code) = watch.state(inst) {
            // Ended without a word: look once more, then report.
            ended_code = code;
            if look(ctx, &watch, inst, true).is_some() {
                continue;
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The script exits right after writing its outcome: let it end, so
    // its last words are in the saved log.
    for _ in 0..50 {
        match watch.state(inst) {
            State::Running => std::thread::sleep(Duration::from_millis(100)),
            State::Ended(code) => {
                ended_code = ended_code.or(code);
                break;
            }
        }
    }
    let reason = failure_reason(&ctx.dirs, &inst.id).unwrap_or_else(|| match ended_code {
        Some(c) => format!("the agent ended during setup with exit code {c}"),
        None => "the agent ended during setup".to_owned(),
    });
    let engine = match &watch {
        Watch::Container(e) => Some(*e),
        Watch::Process(_) => None,
    };
    super::finish(
        ctx,
        inst,
        ended_code,
        Status::Error,
        Some(reason.clone()),
        engine,
    )?;
    // Reconcile may have recorded the end first, in its own words.
    let _ = ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(&inst.id) {
            if !i.status.is_live() {
                i.status = Status::Error;
                i.status_reason = Some(reason.clone());
            }
        }
        Ok(())
    });
    let kept = match inst.clone {
        Some(_) => "its clone is kept",
        None => "the worktree is untouched",
    };
    Err(Error::Invalid(format!(
        "{reason}; {id} was not started ({kept}; output: `ai-sessctl logs {id}`)",
        id = inst.id
    )))
}

/// What the setup said so far; a clone's box says it in its volume
/// (asked when `ask_box`).
fn look(ctx: &Ctx, watch: &Watch, inst: &Instance, ask_box: bool) -> Option<Outcome> {
    if let (Watch::Container(engine), true) = (watch, ask_box) {
        super::setup_outcome::bring_home(ctx, engine, inst);
    }
    outcome(&ctx.dirs, &inst.id)
}
