//! Removing the networks stopped instances leave, off the stopper's path.

use super::docker::DockerEngine;
use crate::core::error::{Error, Result};
use crate::core::types::Status;
use crate::core::warning::Warnings;
use crate::state::context::Ctx;

/// Removes the networks a batch of stops left: in a detached helper
/// (`ai-sessctl reap-networks`), or here when it cannot be started.
pub(super) fn hand_off_networks(ctx: &Ctx, engine: &DockerEngine, nets: Vec<String>) -> Warnings {
    let mut args = vec!["reap-networks".to_owned()];
    args.extend(nets.iter().cloned());
    let mut warnings = Warnings::new();
    if let Err(e) = spawn_helper(&args) {
        warnings.warn(format!("{e}; removing the networks in the foreground"));
        warnings.extend(reap_networks(ctx, engine, &nets));
    }
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
