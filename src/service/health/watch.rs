//! `health watch`: checks every `check_interval`, samples resources for
//! alerts, heals, and follows the engine's event stream so that a container
//! dying is in the registry (and the prompt) within a second.

use super::{check, Healer};
use crate::core::error::Result;
use crate::lifecycle::docker::DockerEngine;
use crate::state::context::Ctx;
use crate::state::events::Level;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a `health watch` has to say, as it happens (the CLI prints each).
#[derive(Debug, Clone)]
pub enum Notice {
    /// Watching, with checks every `interval`.
    Started { interval: Duration },
    /// Stopped (SIGINT or SIGTERM).
    Stopped,
    /// Something went wrong; the watch carries on.
    Warning(String),
    /// A resource alert was raised.
    Alert(String),
    /// One of our containers died or ran out of memory ("ID ACTION").
    Engine(String),
    /// An instance failed checks: its id and the failed checks.
    Unhealthy { id: String, failed: Vec<String> },
    /// What the healer did.
    Healed(String),
    /// A pass failed; the next try is after `pause`.
    Retrying { error: String, pause: Duration },
}

/// Where a watch's notices go (called from its threads).
pub type Notify = fn(Notice);

/// Forwards our containers' lifecycle events; reconnects when the engine
/// goes away. The stream is opened before anything else is done.
fn follow_engine_events(tx: mpsc::Sender<String>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(engine) = DockerEngine::connect() else {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            };
            engine.block_on(async {
                let mut events = std::pin::pin!(engine.managed_container_events());
                while let Some(ev) = events.next().await {
                    let action = ev.action;
                    let id = ev
                        .attributes
                        .get(crate::launch::INSTANCE_LABEL)
                        .cloned()
                        .unwrap_or_default();
                    if tx.send(format!("{id} {action}")).is_err() {
                        return;
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

/// Samples resources every `interval` and raises alerts. A pass takes about
/// a second (the engine's stats API waits for a second reading), so it runs
/// beside the loop that follows the engine, never in its way.
fn sample_loop(ctx: &Ctx, interval: Duration, stop: &AtomicBool, notify: Notify) {
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + interval;
        match ctx.store.load() {
            Ok(reg) => {
                let live: Vec<_> = reg
                    .instances
                    .values()
                    .filter(|i| i.status == crate::core::types::Status::Running)
                    .collect();
                let samples = crate::features::monitor::stats::sample_all(&live);
                match crate::features::monitor::alerts::record(ctx, &samples) {
                    Ok(alerts) => {
                        for a in alerts {
                            notify(Notice::Alert(a.message));
                        }
                    }
                    Err(e) => notify(Notice::Warning(format!("ai-sessctl: warning: {e}"))),
                }
                // Budgets: the brokers' ledgers grow with no event to follow.
                match crate::service::spend::budget::check(ctx) {
                    Ok(alerts) => {
                        for a in alerts {
                            notify(Notice::Alert(a.message));
                        }
                    }
                    Err(e) => notify(Notice::Warning(format!("ai-sessctl: warning: {e}"))),
                }
            }
            Err(e) => notify(Notice::Warning(format!("ai-sessctl: warning: {e}"))),
        }
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Watches until SIGINT or SIGTERM; `notify` hears what happens.
pub fn watch(ctx: &Ctx, notify: Notify) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let (tx, rx) = mpsc::channel();
    follow_engine_events(tx, Arc::clone(&stop));
    // A config that does not load now may later: watch with the default
    // interval meanwhile.
    let interval = ctx
        .global()
        .unwrap_or_else(|e| {
            notify(Notice::Warning(format!(
                "ai-sessctl: warning: {e}; using the default check interval"
            )));
            crate::state::config::Settings::default()
        })
        .health
        .check_interval
        .0
        .max(Duration::from_millis(200));
    notify(Notice::Started { interval });
    ctx.events().log(
        Level::Info,
        "health",
        "health watch started",
        serde_json::json!({}),
    );
    // Not joined at the end: ctrl-c must not wait for a sample in flight
    // (registry writes are atomic, so leaving one unfinished is harmless).
    let sampler = {
        let ctx = Ctx {
            dirs: ctx.dirs.clone(),
            store: crate::state::registry::Store::new(ctx.dirs.clone()),
        };
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || sample_loop(&ctx, interval, &stop, notify))
    };
    let result = check_loop(ctx, interval, &stop, &rx, notify);
    stop.store(true, Ordering::Relaxed);
    let end = Instant::now() + Duration::from_millis(300);
    while !sampler.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.events().log(
        Level::Info,
        "health",
        "health watch stopped",
        serde_json::json!({}),
    );
    notify(Notice::Stopped);
    result
}

/// Follows the engine's events (a dying container is reconciled and healed
/// at once) and runs the checks every `interval`. Errors (a full disk, a
/// registry briefly unreadable, the engine restarting) are said and
/// logged, and the loop backs off and carries on: only SIGINT/SIGTERM end
/// it.
fn check_loop(
    ctx: &Ctx,
    interval: Duration,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<String>,
    notify: Notify,
) -> Result<()> {
    let mut healer = Healer::default();
    let mut next = Instant::now();
    let mut failing = Backoff::default();
    while !stop.load(Ordering::Relaxed) {
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        let outcome = match rx.recv_timeout(wait) {
            Ok(first) => {
                // Coalesce a burst (die + stop + destroy) into one pass.
                let mut seen = vec![first];
                while let Ok(more) = rx.recv_timeout(Duration::from_millis(30)) {
                    seen.push(more);
                }
                for s in seen
                    .iter()
                    .filter(|s| s.ends_with(" die") || s.ends_with(" oom"))
                {
                    notify(Notice::Engine(s.clone()));
                }
                on_engine_event(ctx, &mut healer, notify)
            }
            Err(_) => Ok(()),
        };
        let outcome = outcome.and_then(|()| {
            if Instant::now() < next {
                return Ok(());
            }
            next = Instant::now() + interval;
            periodic(ctx, &mut healer, notify)
        });
        match outcome {
            Ok(()) => failing = Backoff::default(),
            Err(e) => {
                let pause = failing.next();
                notify(Notice::Retrying {
                    error: e.to_string(),
                    pause,
                });
                ctx.events().log(
                    Level::Warn,
                    "health",
                    "health watch error",
                    serde_json::json!({"error": e.to_string(), "retry_in_secs": pause.as_secs()}),
                );
                let until = Instant::now() + pause;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Checks are due again once it works.
                next = Instant::now();
            }
        }
    }
    Ok(())
}

fn on_engine_event(ctx: &Ctx, healer: &mut Healer, notify: Notify) -> Result<()> {
    let reg = crate::lifecycle::refresh(ctx)?;
    for line in healer.pass(ctx, &reg) {
        notify(Notice::Healed(line));
    }
    Ok(())
}

fn periodic(ctx: &Ctx, healer: &mut Healer, notify: Notify) -> Result<()> {
    let reports = check(ctx, None)?;
    for r in reports.iter().filter(|r| r.unhealthy()) {
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        notify(Notice::Unhealthy {
            id: r.id.clone(),
            failed,
        });
    }
    let reg = ctx.store.load()?;
    for line in healer.pass(ctx, &reg) {
        notify(Notice::Healed(line));
    }
    Ok(())
}

/// Pauses after consecutive failures: 1 s, 2 s, 4 s … at most 30 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = Duration::from_secs(1 << self.0.min(5)).min(Duration::from_secs(30));
        self.0 += 1;
        d
    }
}
