//! The instances as the API serves them: a view of the registry held in
//! memory, with the list already serialized, so that `GET /instances` costs
//! no engine call and no parse.
//!
//! It stays current two ways. Every request compares the registry file's
//! identity (inode, size, mtime, ctime: one `stat`; every write replaces the
//! file) with the one the view was read from, and reloads on a difference:
//! a change through the CLI or the API shows at once. Changes the registry
//! has not heard of (a container killed or removed behind its back, an
//! agent on the host ending, an owner shell gone) are brought in by a
//! reconciler thread (`service::reconciler`).
//!
//! Each instance carries its `spend`, from its broker's ledger: the ledgers'
//! identities are compared as well (one `stat` per instance), so a brokered
//! call shows at the next request.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry, Store};
use crate::state::spend::Spend;
use axum::body::Bytes;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, RwLock};

/// Identity of one version of the registry file; `None` when it is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// The identities of the ledgers of `reg`'s instances, in its order.
fn ledger_stamps(store: &Store, reg: &Registry) -> Vec<Option<Stamp>> {
    reg.instances
        .keys()
        .map(|id| {
            stamp(
                &store
                    .dirs()
                    .meter_of(id)
                    .join(crate::state::spend::ledger::FILE),
            )
        })
        .collect()
}

/// One version of the registry, as served.
pub struct Snapshot {
    stamp: Option<Stamp>,
    ledgers: Vec<Option<Stamp>>,
    registry: Registry,
    spend: BTreeMap<InstanceId, Spend>,
    /// `GET /instances`: the instances as a JSON array.
    list: Bytes,
}

impl Snapshot {
    fn read(store: &Store) -> Result<Snapshot> {
        // Dated before reading: a write in between makes the next request
        // see a newer file, never an older one.
        let stamp = stamp(&store.dirs().registry());
        let registry = store.load()?;
        let ledgers = ledger_stamps(store, &registry);
        let ctx = Ctx {
            store: Store::new(store.dirs().clone()),
            dirs: store.dirs().clone(),
        };
        let spend = crate::service::spend::by_instance(&ctx, &registry);
        let value = serde_json::Value::Array(
            registry
                .instances
                .values()
                .map(|i| crate::service::spend::instance_json(i, spend.get(&i.id)))
                .collect(),
        );
        // Printed by terminals too (`curl`): C1, DEL and bidi escaped.
        let list = crate::core::untrusted::json::line(&value)?.into_bytes();
        Ok(Snapshot {
            stamp,
            ledgers,
            registry,
            spend,
            list: Bytes::from(list),
        })
    }

    pub fn list_json(&self) -> Bytes {
        self.list.clone()
    }

    pub fn get(&self, id: &InstanceId) -> Option<&Instance> {
        self.registry.get(id)
    }

    /// `GET /instances/{id}`: the instance with its spend.
    pub fn instance_json(&self, inst: &Instance) -> serde_json::Value {
        crate::service::spend::instance_json(inst, self.spend.get(&inst.id))
    }
}

pub struct View {
    store: Store,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// One reload at a time; the others wait for it and share its result.
    reload: tokio::sync::Mutex<()>,
}

impl View {
    /// The view of `dirs`, with its reconciler thread started.
    pub fn start(dirs: &StateDir) -> Arc<View> {
        let view = Arc::new(View {
            store: Store::new(dirs.clone()),
            current: RwLock::new(None),
            reload: tokio::sync::Mutex::new(()),
        });
        crate::service::reconciler::spawn(dirs.clone());
        view
    }

    fn cached(&self, now: Option<Stamp>) -> Option<Arc<Snapshot>> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|s| s.stamp == now && ledger_stamps(&self.store, &s.registry) == s.ledgers)
            .cloned()
    }

    /// The registry as it is on disk now (reloaded if it changed).
    pub async fn current(&self) -> Result<Arc<Snapshot>> {
        let path = self.store.dirs().registry();
        if let Some(s) = self.cached(stamp(&path)) {
            return Ok(s);
        }
        let _one = self.reload.lock().await;
        if let Some(s) = self.cached(stamp(&path)) {
            return Ok(s);
        }
        let store = Store::new(self.store.dirs().clone());
        let fresh = tokio::task::spawn_blocking(move || Snapshot::read(&store))
            .await
            .map_err(|e| Error::Other(format!("worker: {e}")))??;
        let fresh = Arc::new(fresh);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&fresh));
        Ok(fresh)
    }
}
