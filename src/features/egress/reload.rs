//! A file the sidecar re-reads when it changes (the proxy's rules, the
//! broker's settings): parsed again when its bytes differ. Its bytes, not
//! its mtime and size: an engine's copy into a volume keeps whole-second
//! times, so a change of the same size within the second would go
//! unseen (the files are small). One that does not parse keeps the last
//! good value, and says so.

use crate::core::error::Result;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

pub struct Reloaded<T> {
    path: PathBuf,
    stamp: Option<u64>,
    value: T,
    read: fn(&Path) -> Result<T>,
    kept: &'static str,
}

impl<T: Clone> Reloaded<T> {
    /// `initial` until the file is first read; `kept` is the warning given
    /// when it does not parse (before the error).
    pub fn new(
        path: PathBuf,
        initial: T,
        read: fn(&Path) -> Result<T>,
        kept: &'static str,
    ) -> Self {
        Reloaded {
            path,
            stamp: None,
            value: initial,
            read,
            kept,
        }
    }

    /// The value, read again first if the file changed.
    pub fn current(&mut self) -> T {
        let stamp = std::fs::read(&self.path).ok().map(|bytes| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        });
        if stamp != self.stamp {
            match (self.read)(&self.path) {
                Ok(v) => {
                    self.value = v;
                    self.stamp = stamp;
                }
                Err(e) => crate::core::warning::report_warn(format!("{}: {e}", self.kept)),
            }
        }
        self.value.clone()
    }

    /// The value as last read, without looking at the file.
    pub fn last(&self) -> &T {
        &self.value
    }
}
