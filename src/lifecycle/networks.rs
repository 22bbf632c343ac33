//! Removing the networks stopped instances leave, off the stopper's path.

use super::docker::DockerEngine;
use crate::core::error::{Error, Result};
use crate::core::types::Status;
use crate::core::warning::Warnings;
use crate::state::context::Ctx;

/// What a batch of stops leaves for its reaper: containers whose output
/// is kept and whose end is recorded (removing one costs the engine about
/// as much as stopping one: done in the foreground, it made the batch's
/// stops wait), and the networks made for them.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
}

/// Removes what a batch of stops left: in a detached helper
/// (`ai-sessctl reap-networks`), or here when it cannot be started. A
/// helper killed on the way leaves containers of stopped instances, which
/// `gc` removes (their output was kept before).
pub(super) fn hand_off(ctx: &Ctx, engine: &DockerEngine, left: Leftovers) -> Warnings {
    let mut args = vec!["reap-networks".to_owned()];
    for c in &left.containers {
        args.push(format!("--container={c}"));
    }
    args.extend(left.networks.iter().cloned());
    let mut warnings = Warnings::new();
    if let Err(e) = spawn_helper(&args) {
        warnings.warn(format!("{e}; removing the containers in the foreground"));
        warnings.extend(reap(ctx, engine, &left));
    }
    warnings
}

/// How many containers a reaper removes at once: the engine does most of
/// the work one at a time, a few in flight keep it busy.
const REAP_AT_ONCE: usize = 4;

/// Removes a batch's leftovers: the containers first (a network in use
/// cannot go), then the networks ([`reap_networks`]).
pub fn reap(ctx: &Ctx, engine: &DockerEngine, left: &Leftovers) -> Warnings {
    let mut warnings = Warnings::new();
    let failed = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..REAP_AT_ONCE.min(left.containers.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(cid) = left.containers.get(i) else {
                    break;
                };
                if let Err(e) = engine.remove_container(cid) {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("container {cid} not removed: {e}"));
                }
            });
        }
    });
    for f in failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        warnings.warn(f);
    }
    warnings.extend(reap_networks(ctx, engine, &left.networks));
    warnings
}

/// `ai-sessctl ARGS` in a new session with no terminal: it outlives this
/// process and its terminal's hangup. A long-running caller (`serve`)
/// reaps it from a thread.
pub fn spawn_helper(args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot locate ai-sessctl: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches from the terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::Other(format!(
            "cannot start the `ai-sessctl {}` helper: {e}",
            args.first().map_or("", String::as_str)
        ))
    })?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Removes the networks stopped instances left, one at a time, each under
/// the registry lock: a start takes the lock to become `initializing`
/// before it makes (or reuses) its network, so a network is either
/// removed before that start looks for it or kept for it. One in use, or
/// gone already, is left as it is. Returns the ones that could not be
/// removed, as warnings.
pub fn reap_networks(ctx: &Ctx, engine: &DockerEngine, nets: &[String]) -> Warnings {
    let mut warnings = Warnings::new();
    let home = ctx.dirs.home_label();
    for net in nets {
        // A pool network goes back to the pool (no start looks for it by
        // an instance's name).
        if super::pool::is_pool_network(net) {
            if let Err(e) = super::pool::release(&ctx.dirs, engine, net) {
                warnings.warn(format!("network {net} not removed: {e}"));
            }
            continue;
        }
        // A state home deleted meanwhile is not made again for its lock;
        // nothing can be starting in it.
        if !ctx.dirs.root().is_dir() {
            let _ = engine.remove_network(net);
            continue;
        }
        let removed = ctx.store.update(|reg| {
            let starting = reg.instances.values().any(|i| {
                i.status == Status::Initializing && super::docker::object_name(&i.id, &home) == *net
            });
            if starting {
                return Ok(());
            }
            engine.remove_network(net)
        });
        if let Err(e) = removed {
            warnings.warn(format!("network {net} not removed: {e}"));
        }
    }
    warnings
}

/// After a start: refills the state home's pool of ready networks in a
/// detached helper (`ai-sessctl fill-network-pool`) when it is short.
pub fn top_up_pool(dirs: &crate::core::paths::StateDir) {
    let want = super::pool::size(dirs);
    if want > 0 && super::pool::ready_count(dirs) < want {
        let _ = spawn_helper(&["fill-network-pool".to_owned()]);
    }
}
