//! `net/<id>/broker.json`: what the broker of an instance enforces, written
//! by the host at start and whenever `[budget]` or `[prices]` change, read
//! again by the broker when it changes. No key is in it.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Upstream};
use crate::state::config::{ApiKind, Budget, Effective, Price};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE: &str = "broker.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerFile {
    pub instance: String,
    pub api: ApiKind,
    pub upstream: Upstream,
    /// The key the box holds: only a call carrying it gets the real one.
    pub placeholder: String,
    pub budget: Budget,
    /// The instance's creation: its budget counts calls since then.
    #[serde(default)]
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// The whole price table (shipped and configured).
    pub prices: BTreeMap<String, Price>,
    /// A subscription login (OAuth): the placeholder is an access token,
    /// the real one goes upstream as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSettings>,
}

/// Where the broker refreshes a subscription login, and the login file
/// (its path in the sidecar) it writes the rotated pair back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthSettings {
    pub token_url: Upstream,
    pub login: String,
}

pub fn path(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    crate::features::egress::net_dir(dirs, id).join(FILE)
}

impl BrokerFile {
    pub fn new(
        id: &InstanceId,
        eff: &Effective,
        api: ApiKind,
        upstream: Upstream,
        placeholder: String,
        created: Option<chrono::DateTime<chrono::Utc>>,
    ) -> BrokerFile {
        BrokerFile {
            instance: id.to_string(),
            api,
            upstream,
            placeholder,
            budget: eff.settings.budget.clone(),
            created,
            prices: crate::state::spend::prices::Prices::new(&eff.settings.prices)
                .table()
                .clone(),
            oauth: None,
        }
    }

    pub fn read(path: &Path) -> Result<BrokerFile> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Written whole (temp file + rename): the broker reads the old one or
    /// the new one.
    pub fn write(&self, dirs: &StateDir, id: &InstanceId) -> Result<()> {
        dirs.ensure_sub(&dirs.root().join("net"))?;
        crate::core::paths::ensure_private_dir(&crate::features::egress::net_dir(dirs, id))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        crate::core::paths::atomic_write(&path(dirs, id), &text)
    }

    /// The instance's file with `eff`'s budget and prices (after `config
    /// set`): the running broker applies them on its next call. No file
    /// (not brokered) is left alone.
    pub fn refresh(dirs: &StateDir, id: &InstanceId, eff: &Effective) -> Result<bool> {
        let p = path(dirs, id);
        let Ok(old) = BrokerFile::read(&p) else {
            return Ok(false);
        };
        let new = BrokerFile::new(
            id,
            eff,
            old.api,
            old.upstream.clone(),
            old.placeholder.clone(),
            old.created,
        );
        let new = BrokerFile {
            oauth: old.oauth.clone(),
            ..new
        };
        if new != old {
            new.write(dirs, id)?;
        }
        Ok(true)
    }
}
