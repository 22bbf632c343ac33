//! Agent state (Claude Code's `~/.claude`, Gemini's `~/.gemini`): each
//! instance mounts a state dir of its own (`states/<id>/`): settings,
//! hooks, MCP servers, history and memory never reach another instance.
//! What is shared, to log in once per agent, is the login file alone
//! (`states/<mode>/<file>`), bound read-only over the instance's copy.

mod answers;
mod host_login;
mod login;
mod migrate;

pub use answers::{apply as apply_answers, Answers};
pub use host_login::{copy_from_host, HostCopy};
pub use login::{login_in_container, reap_logins};
pub use migrate::{migrate, Migrated};

use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Mode};
use crate::state::config::{AgentSpec, StateScope};
use std::path::PathBuf;

/// The host dir mounted as the agent's state for instance `id`: always its
/// own (an instance can write its state, so a shared dir would let it
/// change what runs in every other one).
pub fn dir_for(dirs: &StateDir, _scope: StateScope, _mode: &Mode, id: &InstanceId) -> PathBuf {
    dirs.state_of(id)
}

/// The files that hold an agent's login (`login_files`), by name inside
/// its state dir: the only ones shared between its instances. A name that
/// is not one plain path component is ignored.
pub fn credential_files(agent: &AgentSpec) -> Vec<&str> {
    agent
        .login_files
        .iter()
        .map(String::as_str)
        .filter(|f| !f.is_empty() && *f != "." && *f != ".." && !f.contains(['/', '\0']))
        .collect()
}

/// The agent's shared login files to bind read-only into an instance
/// (host path, path inside): each one that is a regular file (a link is
/// never mounted: the engine would follow it). None with `state = "instance"`.
pub fn credential_mounts(
    dirs: &StateDir,
    agent: &AgentSpec,
    mode: &Mode,
) -> Vec<(PathBuf, String)> {
    if agent.state == StateScope::Instance {
        return Vec::new();
    }
    let shared = dirs.agent_state(mode);
    let inside = agent.state_dir.trim_end_matches('/');
    credential_files(agent)
        .into_iter()
        .map(|f| (shared.join(f), format!("{inside}/{f}")))
        .filter(|(p, _)| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
        .collect()
}

/// A note for a start when `states/<mode>/` still holds more than the
/// login (state shared by older versions, which no instance mounts now).
pub fn unmigrated_note(dirs: &StateDir, agent: &AgentSpec, mode: &Mode) -> Option<String> {
    let shared = crate::core::untrusted::tree::Tree::open(&dirs.agent_state(mode)).ok()?;
    let creds = credential_files(agent);
    let more = shared
        .names()
        .ok()?
        .iter()
        .any(|n| !creds.iter().any(|c| n == *c));
    more.then(|| {
        format!(
            "states/{mode}/ holds {mode} state shared by an older version, which instances no longer mount; \
             `ai-sessctl state migrate` copies it into each instance's own"
        )
    })
}

/// Whether an instance's state dir holds anything but the login file (or
/// the engine's empty mount point for it): a conversation to continue.
pub fn holds_more_than_login(dir: &std::path::Path, agent: &AgentSpec) -> bool {
    let creds = credential_files(agent);
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| !creds.iter().any(|c| e.file_name() == *c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_has_its_own_dir_and_shares_only_the_login() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(t.path().to_path_buf());
        let mode = Mode::parse("claude").unwrap();
        let id = InstanceId::parse("p-claude").unwrap();
        for scope in [StateScope::Agent, StateScope::Instance] {
            assert_eq!(
                dir_for(&d, scope, &mode, &id),
                t.path().join("states/p-claude")
            );
        }
        let mut agent = AgentSpec {
            state_dir: "/h/.claude/".to_owned(),
            login_files: vec![".credentials.json".to_owned(), "../x".to_owned()],
            ..AgentSpec::default()
        };
        std::fs::create_dir_all(t.path().join("states/x")).unwrap();
        std::fs::write(t.path().join("states/x/x"), "x").unwrap();
        assert!(credential_mounts(&d, &agent, &mode).is_empty());
        std::fs::create_dir_all(t.path().join("states/claude")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/passwd",
            t.path().join("states/claude/.credentials.json"),
        )
        .unwrap();
        assert!(
            credential_mounts(&d, &agent, &mode).is_empty(),
            "a link is never mounted"
        );
        std::fs::remove_file(t.path().join("states/claude/.credentials.json")).unwrap();
        std::fs::write(t.path().join("states/claude/.credentials.json"), "x").unwrap();
        assert_eq!(
            credential_mounts(&d, &agent, &mode),
            vec![(
                t.path().join("states/claude/.credentials.json"),
                "/h/.claude/.credentials.json".to_owned()
            )]
        );
        agent.state = StateScope::Instance;
        assert!(credential_mounts(&d, &agent, &mode).is_empty());
    }

    #[test]
    fn the_login_mount_point_is_no_conversation() {
        let t = tempfile::tempdir().unwrap();
        let agent = AgentSpec {
            login_files: vec![".credentials.json".to_owned()],
            ..AgentSpec::default()
        };
        assert!(!holds_more_than_login(t.path(), &agent));
        std::fs::write(t.path().join(".credentials.json"), "").unwrap();
        assert!(!holds_more_than_login(t.path(), &agent));
        std::fs::write(t.path().join("history.jsonl"), "x").unwrap();
        assert!(holds_more_than_login(t.path(), &agent));
    }
}
