//! What every operation needs: where state lives and how to reach it.

use crate::core::error::Result;
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Mode};
use crate::state::config::{Effective, Settings};
use crate::state::events::EventLog;
use crate::state::registry::Store;

/// What every command needs: where state lives and how to reach it.
pub struct Ctx {
    pub dirs: StateDir,
    pub store: Store,
}

impl Ctx {
    pub fn from_env() -> Result<Self> {
        let dirs = StateDir::from_env()?;
        dirs.check_trusted()?;
        Ok(Ctx {
            store: Store::new(dirs.clone()),
            dirs,
        })
    }

    pub fn global(&self) -> Result<Settings> {
        crate::state::config::load_global(&self.dirs)
    }

    /// The configuration in effect for instance `id`: its agent's, with
    /// the instance's own overrides.
    pub fn effective(&self, id: &InstanceId) -> Result<Effective> {
        crate::state::config::load_for(&self.dirs, &Mode::parse(id.mode_suffix())?, Some(id))
    }

    /// The event log, with retention from config (the default when the
    /// config cannot be read: logging must not fail the command).
    pub fn events(&self) -> EventLog {
        let retention = self
            .global()
            .map(|s| s.global.log_retention.0)
            .unwrap_or(std::time::Duration::from_secs(7 * 86400));
        EventLog::new(&self.dirs, retention)
    }
}
