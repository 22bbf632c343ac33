//! `worktree.setup`: commands run in a worktree instance's container before
//! its agent (`npm ci`), on every fresh start of the container (each start
//! gets a new container, so what setup installs outside the project is gone
//! again; commands like `npm ci` are made to be repeated). The agent's
//! command is wrapped in a small script that runs them in the project
//! directory as the agent's user, their output going to the instance log,
//! and writes the outcome to `activity/<id>/setup`, which a detached start
//! waits for so a failure is reported where the user started it.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Status};
use crate::lifecycle::docker::DockerEngine;
use crate::state::context::Ctx;
use crate::state::registry::Instance;
use std::path::PathBuf;
use std::time::Duration;

const SCRIPT: &str = include_str!("../../../shell/worktree-setup.sh");

/// The outcome file, next to the activity status file.
fn file(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    crate::features::activity::dir_of(dirs, id).join("setup")
}

/// `command` preceded by the setup steps (unchanged without any).
pub fn wrap(steps: &[String], command: Vec<String>) -> Vec<String> {
    if steps.is_empty() {
        return command;
    }
    let mut out = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "ai-setup".to_owned(),
        steps.len().to_string(),
    ];
    out.extend(steps.iter().cloned());
    out.extend(command);
    out
}

/// Forgets a previous run's outcome (before a launch).
pub fn clear(dirs: &StateDir, id: &InstanceId) {
    let _ = std::fs::remove_file(file(dirs, id));
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed { command: String, code: i64 },
}

/// What the setup of the current run of `id` said, if it finished. The
/// file is on the agent's mount: read as [`crate::core::untrusted`] (a few KiB,
/// control characters shown escaped).
pub fn outcome(dirs: &StateDir, id: &InstanceId) -> Option<Outcome> {
    parse(&crate::core::untrusted::read(&file(dirs, id), 4096)?)
}

fn parse(raw: &[u8]) -> Option<Outcome> {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text == "ok" {
        return Some(Outcome::Done);
    }
    let rest = text.strip_prefix("failed ")?;
    let (code, command) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Outcome::Failed {
        command: crate::core::untrusted::printable(command),
        code: code.parse().ok()?,
    })
}

/// Why the instance ended, when its setup failed (the status reason).
pub fn failure_reason(dirs: &StateDir, id: &InstanceId) -> Option<String> {
    match outcome(dirs, id)? {
        Outcome::Failed { command, code } => Some(format!(
            "setup command `{command}` failed with exit code {code}"
        )),
        Outcome::Done => None,
    }
}

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
                        if matches!(
                            o.state,
                            crate::engine::state::ContainerState::Running
                                | crate::engine::state::ContainerState::Created
                        ) =>
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
    loop {
        match outcome(&ctx.dirs, &inst.id) {
            Some(Outcome::Done) => return Ok(()),
            Some(Outcome::Failed { .. }) => break,
            None => {}
        }
        if let State::Ended(code) = watch.state(inst) {
            // Ended without a word: look once more, then report.
            ended_code = code;
            if outcome(&ctx.dirs, &inst.id).is_some() {
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
    crate::lifecycle::finish(
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
    Err(Error::Invalid(format!(
        "{reason}; {id} was not started (the worktree is untouched; output: `ai-sessctl logs {id}`)",
        id = inst.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_leaves_a_command_without_steps_alone() {
        let cmd = vec!["claude".to_owned(), "--x".to_owned()];
        assert_eq!(wrap(&[], cmd.clone()), cmd);
        let w = wrap(&["npm ci".to_owned()], cmd);
        assert_eq!(&w[..2], ["sh", "-c"]);
        assert_eq!(&w[3..], ["ai-setup", "1", "npm ci", "claude", "--x"]);
    }

    #[test]
    fn only_a_regular_file_is_read() {
        let home = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(home.path().to_path_buf());
        let id = InstanceId::parse("p-claude").unwrap();
        let f = file(&dirs, &id);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(outcome(&dirs, &id), None, "a FIFO must not block");
        std::fs::remove_file(&f).unwrap();
        let elsewhere = home.path().join("elsewhere");
        std::fs::write(&elsewhere, "ok\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &f).unwrap();
        assert_eq!(outcome(&dirs, &id), None, "not through a symlink");
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, "ok\n").unwrap();
        assert_eq!(outcome(&dirs, &id), Some(Outcome::Done));
    }

    #[test]
    fn outcomes_parse_and_cannot_carry_escape_sequences() {
        assert_eq!(parse(b"ok\n"), Some(Outcome::Done));
        assert_eq!(parse(b"running"), None);
        assert_eq!(parse(b"failed x npm ci\n"), None);
        assert_eq!(
            parse(b"failed 3 npm ci\n"),
            Some(Outcome::Failed {
                command: "npm ci".into(),
                code: 3
            })
        );
        assert_eq!(
            parse(b"failed 1 a\x1b]0;pwned\x07\nb\n"),
            Some(Outcome::Failed {
                command: "a\\x1b]0;pwned\\x07\\x0ab".into(),
                code: 1
            })
        );
    }
}
