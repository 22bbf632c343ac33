//! Reading and writing `registry.json`: readers take no lock; writers take
//! an exclusive lock on `registry.lock`, re-read, modify, and replace the
//! file atomically (temp file, fsync, rename, directory fsync). A file that
//! does not parse is never overwritten.

use super::schema::{Registry, VERSION};
use crate::core::error::{Error, Result};
use crate::core::paths::{atomic_write, StateDir};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Larger than any real registry (thousands of instances) and small enough
/// that a runaway file cannot stall every prompt.
pub const MAX_REGISTRY_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct Store {
    dirs: StateDir,
}

impl Store {
    pub fn new(dirs: StateDir) -> Self {
        Self { dirs }
    }

    pub fn dirs(&self) -> &StateDir {
        &self.dirs
    }

    /// The current registry, without locking. A missing file is empty.
    pub fn load(&self) -> Result<Registry> {
        read(&self.dirs.registry())
    }

    /// Read-modify-write under the exclusive lock. `f` sees the freshest
    /// registry; when it fails nothing is written.
    pub fn update<T>(&self, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        self.dirs.ensure()?;
        let lock_path = self.dirs.registry_lock();
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let mut lock = fd_lock::RwLock::new(lock_file);
        let _guard = lock.write().map_err(|e| Error::io(&lock_path, e))?;
        remove_stale_temp_files(self.dirs.root());
        let mut reg = self.load()?;
        let out = f(&mut reg)?;
        reg.version = Some(VERSION);
        self.write(&reg)?;
        // The registry is written: the update happened. A prompt file that
        // cannot follow (full disk) goes, rather than show a stale state;
        // the next update writes it again.
        if let Err(e) = super::prompt_file::write(&self.dirs, &reg) {
            let _ = std::fs::remove_file(self.dirs.prompt_file());
            crate::core::warning::report_warn(format!("ai-sessctl: warning: {e}"));
        }
        Ok(out)
    }

    fn write(&self, reg: &Registry) -> Result<()> {
        let path = self.dirs.registry();
        let mut bytes = serde_json::to_vec_pretty(reg)
            .map_err(|e| Error::Other(format!("cannot encode registry: {e}")))?;
        bytes.push(b'\n');
        atomic_write(&path, &bytes)
    }
}

/// Temp files of writers killed mid-write (never renamed into place).
/// Only old ones: a config write may be using a fresh one right now.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for e in entries.flatten() {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".tmp"))
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn read(path: &Path) -> Result<Registry> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_REGISTRY_BYTES {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            msg: format!(
                "{len} bytes is larger than the {} MiB limit",
                MAX_REGISTRY_BYTES >> 20
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(path, &bytes)
}

pub fn parse(path: &Path, bytes: &[u8]) -> Result<Registry> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            msg: "file is empty".into(),
        });
    }
    let reg: Registry = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        msg: format!(
            "line {} column {}: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        ),
    })?;
    if let Some(v) = reg.version.filter(|v| *v > VERSION) {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            msg: format!("written by a newer ai-sessctl (format version {v}); upgrade"),
        });
    }
    reg.validate().map_err(|msg| Error::Corrupt {
        path: path.to_owned(),
        msg,
    })?;
    Ok(reg)
}

fn strip_position(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map(|(m, _)| m).unwrap_or(msg)
}
