//! Event logger: JSON lines (`timestamp, level, component, message,
//! metadata`) in `logs/session-manager.log`, appended under a lock on the
//! file so concurrent processes never interleave, pruned by
//! `global.log_retention`.

use crate::error::{Error, Result};
use crate::paths::StateDir;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    #[value(alias = "DEBUG")]
    Debug,
    #[value(alias = "INFO")]
    Info,
    #[value(alias = "WARN", alias = "warning")]
    Warn,
    #[value(alias = "ERROR")]
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub component: String,
    pub message: String,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Prune only once the log is past this size, so appends stay one write.
const PRUNE_CHECK_BYTES: u64 = 256 << 10;

pub struct EventLog {
    dirs: StateDir,
    retention: Duration,
}

impl EventLog {
    pub fn new(dirs: &StateDir, retention: Duration) -> Self {
        Self {
            dirs: dirs.clone(),
            retention,
        }
    }

    /// Appends one event. Logging never fails the operation it records:
    /// errors are reported on stderr only.
    pub fn log(&self, level: Level, component: &str, message: &str, metadata: Value) {
        if let Err(e) = self.try_log(level, component, message, metadata) {
            eprintln!("ai-sessctl: warning: event log: {e}");
        }
    }

    fn try_log(&self, level: Level, component: &str, message: &str, metadata: Value) -> Result<()> {
        let event = Event {
            timestamp: Utc::now(),
            level,
            component: component.to_owned(),
            message: message.to_owned(),
            metadata: match metadata {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                other => Map::from_iter([("value".to_owned(), other)]),
            },
        };
        let mut line = serde_json::to_vec(&event).map_err(|e| Error::Other(e.to_string()))?;
        line.push(b'\n');
        self.dirs.ensure_sub(&self.dirs.logs_dir())?;
        let path = self.dirs.event_log();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut lock = fd_lock::RwLock::new(file);
        let mut guard = lock.write().map_err(|e| Error::io(&path, e))?;
        let len = guard.metadata().map(|m| m.len()).unwrap_or(0);
        if len > PRUNE_CHECK_BYTES {
            self.prune_locked(&mut guard)?;
        }
        guard.write_all(&line).map_err(|e| Error::io(&path, e))
    }

    /// Drops events older than the retention, in place (the file is locked).
    fn prune_locked(&self, file: &mut std::fs::File) -> Result<()> {
        let path = self.dirs.event_log();
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(7));
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                text = String::from_utf8_lossy(&bytes).into_owned();
                Ok(())
            })
            .map_err(|e| Error::io(&path, e))?;
        let first_old = text
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<Event>(l).ok())
            .is_some_and(|e| e.timestamp < cutoff);
        if !first_old {
            return Ok(());
        }
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Event>(l)
                    .map(|e| e.timestamp >= cutoff)
                    .unwrap_or(false)
            })
            .flat_map(|l| [l, "\n"])
            .collect();
        file.set_len(0)
            .and_then(|_| file.write_all(kept.as_bytes()))
            .map_err(|e| Error::io(&path, e))
    }
}

/// Appends one event to the log file at `path` under its lock (for a
/// writer that has the logs dir but not the whole state home: the egress
/// proxy in its sidecar).
pub fn append_event(path: &std::path::Path, event: &Event) -> Result<()> {
    let mut line = serde_json::to_vec(event).map_err(|e| Error::Other(e.to_string()))?;
    line.push(b'\n');
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut lock = fd_lock::RwLock::new(file);
    let mut guard = lock.write().map_err(|e| Error::io(path, e))?;
    guard.write_all(&line).map_err(|e| Error::io(path, e))
}

pub fn format_human(e: &Event, color: bool) -> String {
    let (c, r) = if color {
        let c = match e.level {
            Level::Error => "\x1b[31m",
            Level::Warn => "\x1b[33m",
            Level::Info => "\x1b[32m",
            Level::Debug => "\x1b[36m",
        };
        (c, "\x1b[0m")
    } else {
        ("", "")
    };
    let mut meta = String::new();
    for (k, v) in &e.metadata {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        meta.push_str(&format!(" {k}={v}"));
    }
    format!(
        "{} {c}{:<5}{r} {:<9} {}{}",
        e.timestamp
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        e.level.as_str(),
        e.component,
        e.message,
        meta
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_events_are_pruned_and_new_kept() {
        let t = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(t.path().to_path_buf());
        dirs.ensure_sub(&dirs.logs_dir()).unwrap();
        let old = Event {
            timestamp: Utc::now() - chrono::Duration::days(30),
            level: Level::Info,
            component: "test".into(),
            message: "x".repeat(1000),
            metadata: Map::new(),
        };
        let line = serde_json::to_string(&old).unwrap() + "\n";
        std::fs::write(dirs.event_log(), line.repeat(300)).unwrap();
        let log = EventLog::new(&dirs, Duration::from_secs(7 * 86400));
        log.log(Level::Warn, "test", "fresh", serde_json::json!({"k": 1}));
        let text = std::fs::read_to_string(dirs.event_log()).unwrap();
        assert_eq!(text.lines().count(), 1, "{}", &text[..200.min(text.len())]);
        assert!(text.contains("\"fresh\""));
        assert!(text.contains("\"level\":\"WARN\""));
    }
}
