//! The activity watcher: one background process per state home, started on
//! demand (by a start, `list`, `health watch`, `serve`), that polls the
//! live instances' status files four times a second (a few small reads),
//! records changes and notifies. It holds `activity/watch.lock` so only one
//! runs, and exits once no instance has been live for a few seconds.

use super::notify::Notifier;
use crate::core::error::Result;
use crate::state::context::Ctx;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(250);
/// How long it stays with nothing live (a start registers just after it
/// spawns the watcher).
const LINGER: Duration = Duration::from_secs(5);
/// How long the mirror of clone instances waits after its engine did not
/// answer.
const RECONNECT: Duration = Duration::from_secs(5);

fn lock_path(ctx: &Ctx) -> std::path::PathBuf {
    ctx.dirs.root().join("activity").join("watch.lock")
}

fn try_lock(ctx: &Ctx) -> Option<std::fs::File> {
    ctx.dirs
        .ensure_sub(&ctx.dirs.root().join("activity"))
        .ok()?;
    let f = crate::core::paths::open_private_append(&lock_path(ctx)).ok()?;
    // SAFETY: flock on a descriptor we own; released when it closes.
    let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    got.then_some(f)
}

/// Runs the watcher in this process until nothing is live (`ai-sessctl
/// notifier`, normally spawned by [`ensure`]). Returns at once when another
/// watcher runs.
pub fn run(ctx: &Ctx) -> Result<()> {
    let Some(_lock) = try_lock(ctx) else {
        return Ok(());
    };
    mirror_in_background(ctx);
    let mut notifier = Notifier::default();
    let mut quiet_since: Option<Instant> = None;
    loop {
        if !ctx.dirs.registry().exists() && !ctx.dirs.root().exists() {
            return Ok(());
        }
        let live = ctx
            .store
            .load()
            .map(|r| r.live_count() > 0)
            .unwrap_or(false);
        if live {
            quiet_since = None;
            let _ = super::sync(ctx);
            let _ = notifier.run(ctx);
        } else if quiet_since.get_or_insert_with(Instant::now).elapsed() > LINGER {
            return Ok(());
        }
        std::thread::sleep(TICK);
    }
}

/// Clone instances' words come home through the engine (see
/// [`super::mirror`]), in a thread of their own: a slow engine (one on
/// another machine) delays neither the local instances' activity nor the
/// notifications. It ends with the watcher's process.
fn mirror_in_background(ctx: &Ctx) {
    let ctx = Ctx {
        dirs: ctx.dirs.clone(),
        store: crate::state::registry::Store::new(ctx.dirs.clone()),
    };
    std::thread::spawn(move || {
        let mut engine = None;
        let mut seen = std::collections::HashMap::new();
        loop {
            let cloned = ctx.store.load().is_ok_and(|r| {
                r.instances
                    .values()
                    .any(|i| i.status.is_live() && i.clone.is_some())
            });
            if cloned {
                // Connected on first need: most homes have no clone.
                if engine.is_none() {
                    engine = crate::engine::Engine::shared().ok();
                }
                match engine {
                    Some(engine) => super::mirror(&ctx, engine, &mut seen),
                    // Not answering (an ssh engine may be slow to): again
                    // in a while, not at every tick.
                    None => std::thread::sleep(RECONNECT),
                }
            }
            std::thread::sleep(TICK);
        }
    });
}

/// Starts the watcher in the background unless one runs. Never fails the
/// caller: without it activity is still read by every command.
pub fn ensure(ctx: &Ctx) {
    if std::env::var_os("AI_SESSIONS_NO_WATCHER").is_some() {
        return;
    }
    match try_lock(ctx) {
        Some(f) => drop(f),
        None => return,
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("notifier")
        .env("AI_SESSIONS_HOME", ctx.dirs.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the watcher leaves the caller's
    // session, so closing the terminal does not end it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    if let Ok(mut child) = cmd.spawn() {
        // Reaped by a thread: a long-lived caller (serve) keeps no zombie.
        std::thread::spawn(move || child.wait());
    }
}
