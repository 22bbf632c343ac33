//! Agent state (Claude Code's `~/.claude`, Gemini's `~/.gemini`): which
//! host dir an instance mounts, merging old per-instance dirs into the
//! agent's shared one, and logging in once per agent.

mod host_login;
mod login;
mod migrate;

pub use host_login::{copy_from_host, HostCopy};
pub use login::login_in_container;
pub use migrate::{migrate, Migrated};

use crate::config::StateScope;
use crate::paths::StateDir;
use crate::types::{InstanceId, Mode};
use std::path::PathBuf;

/// The host dir mounted as the agent's state for instance `id`. With
/// `state = "agent"` that is `states/<mode>/`, unless the instance still
/// has a per-instance dir with files in it (made before agent-wide state):
/// that one keeps working until `ai-sessctl state migrate` merges it.
pub fn dir_for(dirs: &StateDir, scope: StateScope, mode: &Mode, id: &InstanceId) -> PathBuf {
    let own = dirs.state_of(id);
    match scope {
        StateScope::Instance => own,
        StateScope::Agent if has_entries(&own) => own,
        StateScope::Agent => dirs.agent_state(mode),
    }
}

fn has_entries(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_scope_shares_unless_an_old_dir_has_files() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(t.path().to_path_buf());
        let mode = Mode::parse("claude").unwrap();
        let id = InstanceId::parse("p-claude").unwrap();
        assert_eq!(
            dir_for(&d, StateScope::Agent, &mode, &id),
            t.path().join("states/claude")
        );
        assert_eq!(
            dir_for(&d, StateScope::Instance, &mode, &id),
            t.path().join("states/p-claude")
        );
        std::fs::create_dir_all(t.path().join("states/p-claude")).unwrap();
        assert_eq!(
            dir_for(&d, StateScope::Agent, &mode, &id),
            t.path().join("states/claude"),
            "an empty old dir is not kept"
        );
        std::fs::write(t.path().join("states/p-claude/x"), "1").unwrap();
        assert_eq!(
            dir_for(&d, StateScope::Agent, &mode, &id),
            t.path().join("states/p-claude"),
            "an old dir with files keeps working"
        );
    }
}
