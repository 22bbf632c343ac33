//! `worktree.setup`: commands run in a worktree instance's container before
//! its agent (`npm ci`), on every fresh start of the container (each start
//! gets a new container, so what setup installs outside the project is gone
//! again; commands like `npm ci` are made to be repeated). The agent's
//! command is wrapped in a small script that runs them in the project
//! directory as the agent's user, their output going to the instance log,
//! and writes the outcome to `activity/<id>/setup`, which a detached start
//! waits for so a failure is reported where the user started it. A clone
//! instance (a fresh checkout too) runs them the same way; its activity
//! directory is a volume, from which the outcome is brought here.

use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use std::path::{Path, PathBuf};

const SCRIPT: &str = include_str!("../../../shell/worktree-setup.sh");

/// The outcome file's name, next to the activity status file.
pub const FILE: &str = "setup";

fn file(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    dirs.activity_of(id).join(FILE)
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

/// Keeps here what a clone's box said of its setup (`raw`, read through
/// the engine), where [`outcome`] reads it: only an outcome, rewritten
/// from what was parsed (the box's bytes are not copied).
pub fn record(dirs: &StateDir, id: &InstanceId, raw: &[u8]) {
    let text = match parse(raw) {
        Some(Outcome::Done) => "ok\n".to_owned(),
        Some(Outcome::Failed { command, code }) => format!("failed {code} {command}\n"),
        None => return,
    };
    let path = file(dirs, id);
    if path.parent().is_some_and(Path::is_dir) {
        let _ = crate::core::paths::atomic_write(&path, text.as_bytes());
    }
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
    fn what_a_box_says_is_kept_only_as_an_outcome() {
        let home = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(home.path().to_path_buf());
        let id = InstanceId::parse("p-claude").unwrap();
        std::fs::create_dir_all(dirs.activity_of(&id)).unwrap();
        record(&dirs, &id, b"rm -rf ~\n");
        assert_eq!(outcome(&dirs, &id), None, "no outcome, nothing kept");
        assert!(!file(&dirs, &id).exists());
        record(&dirs, &id, b"failed 6 exit 6\x1b[2J\n");
        let failed = Some(Outcome::Failed {
            command: "exit 6\\x1b[2J".into(),
            code: 6,
        });
        assert_eq!(outcome(&dirs, &id), failed);
        record(&dirs, &id, b"ok\n");
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
