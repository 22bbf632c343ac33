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
//! reconciler thread: it follows the engine's events for our containers and
//! reconciles (`runtime::refresh`, which writes the registry) when one
//! changes state, after reconnecting to the engine, and every few seconds
//! while instances are live.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use crate::lifecycle::docker::{DockerEngine, HOME_LABEL};
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry, Store};
use axum::body::Bytes;
use futures_util::StreamExt;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How often live instances are reconciled without an event (host agents
/// and owner shells have no event stream; a missed event is caught here).
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// Events of one burst (kill, die, stop, destroy) become one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(50);

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

/// One version of the registry, as served.
pub struct Snapshot {
    stamp: Option<Stamp>,
    registry: Registry,
    /// `GET /instances`: the instances as a JSON array.
    list: Bytes,
}

impl Snapshot {
    fn read(store: &Store) -> Result<Snapshot> {
        // Dated before reading: a write in between makes the next request
        // see a newer file, never an older one.
        let stamp = stamp(&store.dirs().registry());
        let registry = store.load()?;
        let value = serde_json::json!(registry.instances.values().collect::<Vec<_>>());
        // Printed by terminals too (`curl`): C1, DEL and bidi escaped.
        let list = crate::core::untrusted::json::line(&value)?.into_bytes();
        Ok(Snapshot {
            stamp,
            registry,
            list: Bytes::from(list),
        })
    }

    pub fn list_json(&self) -> Bytes {
        self.list.clone()
    }

    pub fn get(&self, id: &InstanceId) -> Option<&Instance> {
        self.registry.get(id)
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
        reconciler(dirs.clone());
        view
    }

    fn cached(&self, now: Option<Stamp>) -> Option<Arc<Snapshot>> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        cur.as_ref().filter(|s| s.stamp == now).cloned()
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

/// Why the reconciler wakes up.
enum Wake {
    /// One of our containers changed state.
    Event,
    /// The event stream (re)connected: what happened meanwhile is unknown.
    Connected,
}

/// Reconciles this home's registry with what runs, on the engine's events
/// and every `RECONCILE_EVERY` while instances are live. Runs until the
/// process exits.
fn reconciler(dirs: StateDir) {
    let (tx, rx) = mpsc::channel();
    follow_engine(dirs.home_label(), tx);
    std::thread::spawn(move || {
        let ctx = Ctx {
            store: Store::new(dirs.clone()),
            dirs,
        };
        let mut last = Instant::now();
        loop {
            let wake = rx.recv_timeout(RECONCILE_EVERY);
            match wake {
                Ok(Wake::Event) | Ok(Wake::Connected) => {
                    // Take the rest of the burst with it.
                    std::thread::sleep(DEBOUNCE);
                    while rx.try_recv().is_ok() {}
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let live = ctx
                        .store
                        .load()
                        .is_ok_and(|r| r.instances.values().any(|i| i.status.is_live()));
                    if !live || last.elapsed() < RECONCILE_EVERY {
                        continue;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            last = Instant::now();
            // Errors (engine down, unreadable registry) are the requests'
            // to report; the next wake tries again.
            let _ = crate::lifecycle::refresh_quietly(&ctx);
        }
    });
}

/// Forwards state changes of this home's containers; reconnects (after a
/// pause) when the engine goes away or is not there yet.
fn follow_engine(home: String, tx: mpsc::Sender<Wake>) {
    std::thread::spawn(move || loop {
        if let Ok(engine) = DockerEngine::connect() {
            let ended = engine.block_on(async {
                let mut events = std::pin::pin!(engine.managed_container_events());
                if tx.send(Wake::Connected).is_err() {
                    return true;
                }
                while let Some(ev) = events.next().await {
                    let action = ev.action;
                    // exec_*, attach, resize: nothing for the registry.
                    if action.starts_with("exec_") || matches!(action.as_str(), "attach" | "resize")
                    {
                        continue;
                    }
                    let theirs = ev
                        .attributes
                        .get(HOME_LABEL)
                        .cloned()
                        .is_some_and(|h| h != home);
                    if !theirs && tx.send(Wake::Event).is_err() {
                        return true;
                    }
                }
                false
            });
            if ended {
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    });
}
