//! Ready networks, made ahead per state home (`networking.pool` of them):
//! a start takes one instead of waiting for the engine to make its
//! network (the engine makes networks one at a time, about a quarter
//! second each, more with other starts in line), and a stop gives it back.
//!
//! Which network is where is kept in files under `net-pool/` of the state
//! home, moved with `rename` (atomic: of two starts, one gets a network):
//! `ready/NAME` waits for a start; `claimed/NAME@ID` is taken by the
//! instance ID (written before a network made for it exists, so that `gc`
//! leaves it to the start); `making/NAME` is being made ahead. `gc` keeps
//! the ready ones, up to the pool's size, and removes every other pool
//! network no container uses and no start is about to.

use crate::core::error::{Error, Result};
use crate::core::paths::{home_digest, StateDir};
use crate::core::types::InstanceId;
use crate::engine::network::OwnNetwork;
use crate::engine::Engine;
use crate::engine::{HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Label of a pool network (it is made before any instance is known).
pub const POOL_LABEL: &str = "ai.pool";
const PREFIX: &str = "ai-pool-";
/// A `making/` file older than this was left by a killed helper.
const MAKING_STALE: Duration = Duration::from_secs(600);

pub fn is_pool_network(name: &str) -> bool {
    name.starts_with(PREFIX)
}

fn dir(dirs: &StateDir, which: &str) -> PathBuf {
    dirs.root().join("net-pool").join(which)
}

fn ensure_dirs(dirs: &StateDir) -> Result<()> {
    dirs.ensure_sub(&dirs.root().join("net-pool"))?;
    for which in ["ready", "claimed", "making"] {
        crate::core::paths::ensure_private_dir(&dir(dirs, which))?;
    }
    Ok(())
}

/// An empty file, private like everything in the state home.
fn touch(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn names_in(dirs: &StateDir, which: &str) -> Vec<String> {
    std::fs::read_dir(dir(dirs, which))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// How many networks wait for a start.
pub fn ready_count(dirs: &StateDir) -> usize {
    names_in(dirs, "ready").len()
}

/// A fresh pool network name for this home.
fn new_name(home: &str) -> String {
    let mut nonce = [0u8; 5];
    // Uniqueness only; a clash is refused by the engine as a name taken.
    let _ = getrandom::fill(&mut nonce);
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{}-{hex}", home_digest(home))
}

/// What a pool network is made as: a bridge of its own, labelled as this
/// home's and as the pool's.
pub fn network(home: &str, name: &str) -> OwnNetwork {
    OwnNetwork {
        name: name.to_owned(),
        internal: false,
        labels: HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), home.to_owned()),
            (POOL_LABEL.to_owned(), "1".to_owned()),
        ]),
    }
}

/// Takes a ready network for `id`: its name, or `None` when none is ready.
pub fn claim(dirs: &StateDir, id: &InstanceId) -> Option<String> {
    ensure_dirs(dirs).ok()?;
    for name in names_in(dirs, "ready") {
        let to = dir(dirs, "claimed").join(format!("{name}@{id}"));
        if std::fs::rename(dir(dirs, "ready").join(&name), to).is_ok() {
            return Some(name);
        }
    }
    None
}

/// Names a network to be made now for `id`, claimed before it exists.
pub fn claim_new(dirs: &StateDir, id: &InstanceId) -> Result<String> {
    ensure_dirs(dirs)?;
    let name = new_name(&dirs.home_label());
    let path = dir(dirs, "claimed").join(format!("{name}@{id}"));
    touch(&path).map_err(|e| Error::io(path, e))?;
    Ok(name)
}

/// Forgets every claim of `name`.
pub fn unclaim(dirs: &StateDir, name: &str) {
    let prefix = format!("{name}@");
    for f in names_in(dirs, "claimed") {
        if f.starts_with(&prefix) {
            let _ = std::fs::remove_file(dir(dirs, "claimed").join(f));
        }
    }
}

/// The instance holding a claim on `name`, if any.
fn claimant(dirs: &StateDir, name: &str) -> Option<String> {
    let prefix = format!("{name}@");
    names_in(dirs, "claimed")
        .into_iter()
        .find_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
}

/// The pool's size for this home (`networking.pool`).
pub fn size(dirs: &StateDir) -> usize {
    crate::state::config::load_global(dirs)
        .map(|s| s.networking.pool as usize)
        .unwrap_or(0)
}

/// Gives back `name`, which no container uses any more: ready for the
/// next start while the pool has room, else removed.
pub fn release(dirs: &StateDir, engine: &Engine, name: &str) -> Result<()> {
    unclaim(dirs, name);
    // A state home removed meanwhile is not made again for its pool.
    if dirs.root().is_dir() && ensure_dirs(dirs).is_ok() && ready_count(dirs) < size(dirs) {
        let path = dir(dirs, "ready").join(name);
        if touch(&path).is_ok() {
            return Ok(());
        }
    }
    engine.remove_network(name)
}

/// Makes networks until the pool is full; one filler at a time per home
/// (another one running: nothing to do here).
pub fn fill(dirs: &StateDir, engine: &Engine) -> Result<()> {
    use std::os::fd::AsRawFd;
    // A state home removed since the start asked: not to be made again.
    if !dirs.root().is_dir() {
        return Ok(());
    }
    ensure_dirs(dirs)?;
    let lock = dirs.root().join("net-pool").join(".fill.lock");
    let f = touch(&lock).map_err(|e| Error::io(&lock, e))?;
    // SAFETY: flock on a descriptor we own; released when it closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    let home = dirs.home_label();
    // A state home deleted meanwhile wants no networks.
    while dirs.root().is_dir() && ready_count(dirs) < size(dirs) {
        let name = new_name(&home);
        let making = dir(dirs, "making").join(&name);
        touch(&making).map_err(|e| Error::io(&making, e))?;
        let made = engine.block_on(engine.ensure_network(&network(&home, &name)));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&making);
            let _ = engine.remove_network(&name);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&making, dir(dirs, "ready").join(&name)) {
            let _ = engine.remove_network(&name);
            return Err(Error::io(&making, e));
        }
    }
    Ok(())
}

/// For `gc`: of this home's pool networks that no container uses
/// (`idle`), removes those no start is about to use and the ready ones
/// past the pool's size, and forgets files of networks that are gone.
/// `starting`: whether an instance is starting. Returns what it removed.
pub fn reap(
    dirs: &StateDir,
    engine: &Engine,
    idle: &[String],
    starting: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let keep = size(dirs);
    let mut kept = 0;
    let mut ready = names_in(dirs, "ready");
    ready.sort();
    for name in ready {
        if !idle.contains(&name) {
            // Gone (or, impossibly, in use): not ready any more.
            let _ = std::fs::remove_file(dir(dirs, "ready").join(&name));
        } else if kept < keep {
            kept += 1;
        } else if std::fs::rename(
            dir(dirs, "ready").join(&name),
            dir(dirs, "claimed").join(format!("{name}@gc")),
        )
        .is_ok()
        {
            engine.remove_network(&name)?;
            unclaim(dirs, &name);
            removed.push(name);
        }
    }
    let ready = names_in(dirs, "ready");
    for name in idle {
        if ready.contains(name) {
            continue;
        }
        let making = dir(dirs, "making").join(name);
        let young = std::fs::metadata(&making)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < MAKING_STALE);
        if young || claimant(dirs, name).is_some_and(|id| starting(&id)) {
            continue;
        }
        engine.remove_network(name)?;
        let _ = std::fs::remove_file(&making);
        unclaim(dirs, name);
        removed.push(name.clone());
    }
    // Claims of networks that are gone (their start failed or was killed
    // before it made one, and is not starting any more).
    for f in names_in(dirs, "claimed") {
        if let Some((name, id)) = f.split_once('@') {
            if !idle.iter().any(|n| n == name) && !starting(id) && !in_use(engine, name) {
                let _ = std::fs::remove_file(dir(dirs, "claimed").join(&f));
            }
        }
    }
    Ok(removed)
}

/// Whether network `name` exists with a container on it.
fn in_use(engine: &Engine, name: &str) -> bool {
    engine.network_in_use(name)
}
