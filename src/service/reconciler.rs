//! Keeps a state home's registry in step with what runs, for a long-lived
//! process (the API server): a thread follows the engine's events for our
//! containers and reconciles (`lifecycle::refresh`, which writes the
//! registry) when one changes state, after reconnecting to the engine, and
//! every few seconds while instances are live (host agents and owner shells
//! have no event stream).

use crate::core::paths::StateDir;
use crate::lifecycle::docker::{DockerEngine, HOME_LABEL};
use crate::state::context::Ctx;
use crate::state::registry::Store;
use futures_util::StreamExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often live instances are reconciled without an event (host agents
/// and owner shells have no event stream; a missed event is caught here).
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// Events of one burst (kill, die, stop, destroy) become one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(50);

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
pub fn spawn(dirs: StateDir) {
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
            // Budget alerts, while `serve` runs (the ledgers grow with no
            // event); raised ones are logged and run `alerts.command`.
            let _ = crate::service::spend::budget::check(&ctx);
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
