//! Event logger: JSON lines (`timestamp, level, component, message,
//! metadata`) in `logs/session-manager.log`, one `O_APPEND` write each (so
//! concurrent processes never interleave), rotated by size and by
//! `global.log_retention` with a rename (never by reading the file). Each
//! egress proxy writes its own log in a directory of its own
//! (`logs/egress/<id>/`), which [`Feed`] reads as the box's, beside ours.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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

/// Past this size the log is rotated (`session-manager.log.1` replaced by
/// it): the files together never hold much more than twice this.
pub const ROTATE_BYTES: u64 = 4 << 20;
/// Past this size the first event's age is checked against the retention
/// (one line read, never the whole file).
const RETENTION_CHECK_BYTES: u64 = 256 << 10;
/// How long an append waits for the log's lock before writing without it
/// (an `O_APPEND` write of one line; only rotation needs the lock).
const LOCK_WAIT: Duration = Duration::from_secs(1);

pub struct EventLog {
    dirs: StateDir,
    retention: Duration,
}

/// `<log>.1`: the rotated part of a log.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Opens our own log file for appending: created 0600, never through a
/// symlink, never blocking on a FIFO; only a regular file.
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// `flock(LOCK_EX)` tried until `bound`: whether it was taken.
fn lock_bounded(f: &std::fs::File, bound: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let t = std::time::Instant::now();
    loop {
        // SAFETY: flock on an fd we own; released when it is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        if t.elapsed() >= bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `f` is still the file at `path` (not rotated away meanwhile).
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The timestamp of the first event of `f` (one line, at most 64 KiB read).
fn first_timestamp(f: &std::fs::File) -> Option<DateTime<Utc>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let n = f.read_at(&mut buf, 0).ok()?;
    let line = buf[..n].split(|&b| b == b'\n').next()?;
    serde_json::from_slice::<Event>(line)
        .ok()
        .map(|e| e.timestamp)
}

impl EventLog {
    pub fn new(dirs: &StateDir, retention: Duration) -> Self {
        Self {
            dirs: dirs.clone(),
            retention,
        }
    }

    /// Appends one event. Logging never fails the operation it records:
    /// errors are warnings, for the front end's sink
    /// ([`crate::core::warning::report`]).
    pub fn log(&self, level: Level, component: &str, message: &str, metadata: Value) {
        if let Err(e) = self.try_log(level, component, message, metadata) {
            crate::core::warning::report_warn(format!("ai-sessctl: warning: event log: {e}"));
        }
    }

    fn cutoff(&self) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(7))
    }

    /// One `write` of one line, O(1) whatever the log's size: rotation is a
    /// rename, retention looks at one line and one mtime.
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
        let mut file = open_append(&path).map_err(|e| Error::io(&path, e))?;
        let mut locked = lock_bounded(&file, LOCK_WAIT);
        if locked && !same_file(&file, &path) {
            // Rotated between our open and our lock: append to the new one.
            file = open_append(&path).map_err(|e| Error::io(&path, e))?;
            locked = lock_bounded(&file, LOCK_WAIT);
        }
        if locked {
            self.rotate_locked(&file, &path, line.len() as u64);
            if same_file(&file, &path) {
                file.write_all(&line).map_err(|e| Error::io(&path, e))?;
                return Ok(());
            }
            file = open_append(&path).map_err(|e| Error::io(&path, e))?;
        }
        file.write_all(&line).map_err(|e| Error::io(&path, e))
    }

    /// Rotates the log (locked, as `file`) when the next line would take it
    /// past its cap or its first event is past the retention; drops the
    /// rotated part once all of it is past the retention.
    fn rotate_locked(&self, file: &std::fs::File, path: &Path, adding: u64) {
        let old = rotated(path);
        let cutoff = self.cutoff();
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let full = len + adding > ROTATE_BYTES;
        let stale =
            len > RETENTION_CHECK_BYTES && first_timestamp(file).is_some_and(|t| t < cutoff);
        if full || stale {
            if let Err(e) = std::fs::rename(path, &old) {
                crate::core::warning::report_warn(format!(
                    "ai-sessctl: warning: event log: rotating {}: {e}",
                    path.display()
                ));
            }
        }
        let expired = std::fs::symlink_metadata(&old)
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| DateTime::<Utc>::from(t) < cutoff);
        if expired {
            let _ = std::fs::remove_file(&old);
        }
    }
}

/// `logs/egress/<instance>/`: the one directory an instance's egress proxy
/// can write (its own log); everything in it is the box's.
pub fn box_log_dir(logs_dir: &Path, instance: &str) -> PathBuf {
    logs_dir.join("egress").join(instance)
}

/// The proxy's log file name in its directory.
pub const BOX_LOG: &str = "egress.log";
/// Past this size the proxy rotates its log (`egress.log.1`).
pub const BOX_LOG_ROTATE_BYTES: u64 = 512 << 10;
/// Read at most this much of a box's log file at once.
const BOX_READ_CAP: u64 = 1 << 20;
/// Host names (and other strings) from a box's log are cut to this.
pub const BOX_FIELD_MAX: usize = 255;

/// `s` cut to at most `max` bytes on a character boundary, with `…` when
/// something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An event as the proxy of `instance` wrote it, rebuilt from what we
/// expect of it: the component is `egress`, the instance is the one whose
/// directory it came from (never what the line says), the level at most
/// WARN, known fields only, each string cut short.
pub fn box_event(line: &[u8], instance: &str) -> Option<Event> {
    let raw: Event = serde_json::from_slice(line).ok()?;
    let message = match raw.message.as_str() {
        m @ ("connection refused" | "refusals not logged") => m.to_owned(),
        _ => "connection refused".to_owned(),
    };
    let mut metadata = Map::new();
    metadata.insert("instance".into(), Value::String(instance.to_owned()));
    for (k, v) in &raw.metadata {
        let v = match (k.as_str(), v) {
            ("host" | "reason", Value::String(s)) => Value::String(truncate(s, BOX_FIELD_MAX)),
            ("port" | "dropped" | "host_bytes", Value::Number(n)) if n.is_u64() => v.clone(),
            _ => continue,
        };
        metadata.insert(k.clone(), v);
    }
    Some(Event {
        timestamp: raw.timestamp,
        level: raw.level.min(Level::Warn),
        component: "egress".to_owned(),
        message,
        metadata,
    })
}

/// Where one file of a feed was read up to.
#[derive(Default, Clone, Copy)]
struct Track {
    /// The file's identity (a rotation makes a new one).
    ino: Option<(u64, u64)>,
    offset: u64,
}

fn ident(f: &std::fs::File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Lines of a log and its rotated part, as one stream that survives the
/// rotation: when the file read so far was renamed to `.1`, its rest is
/// read there, then the new file from its start. `open` opens a file
/// (ours: no symlink; a box's: beneath its dir fd, never locked), `cap`
/// bounds one read.
fn read_rotating(
    track: &mut Option<Track>,
    open: &dyn Fn(bool) -> Option<std::fs::File>,
    cap: u64,
    out: &mut Vec<Vec<u8>>,
) {
    let mut take = |f: &mut std::fs::File, from: u64| -> u64 {
        match crate::core::untrusted::boxdir::read_lines_from(f, from, cap) {
            Ok((bytes, next)) => {
                out.extend(
                    bytes
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(<[u8]>::to_vec),
                );
                next
            }
            Err(_) => from,
        }
    };
    let current = open(false);
    let Some(t) = track else {
        // First read: the rotated part, then the current file.
        if let Some(mut old) = open(true) {
            take(&mut old, 0);
        }
        let mut t = Track::default();
        if let Some(mut f) = current {
            t.ino = ident(&f);
            t.offset = take(&mut f, 0);
        }
        *track = Some(t);
        return;
    };
    let Some(mut f) = current else {
        return;
    };
    let id = ident(&f);
    if id != t.ino {
        if let Some(mut old) = open(true) {
            if t.ino.is_some() && ident(&old) == t.ino {
                take(&mut old, t.offset);
            }
        }
        t.ino = id;
        t.offset = 0;
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < t.offset {
        t.offset = 0; // cut short in place: start over
    }
    t.offset = take(&mut f, t.offset);
}

/// Our own log file at `path` for reading: no symlink, no FIFO.
fn open_own(path: &Path) -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

/// Every event source of a state home: the event log (with its rotated
/// part) and each egress proxy's own log, read as one feed, oldest first.
/// What a proxy wrote is read as the box's (see [`box_event`]).
pub struct Feed {
    log: PathBuf,
    logs_dir: PathBuf,
    own: Option<Track>,
    boxes: std::collections::BTreeMap<String, Option<Track>>,
}

impl Feed {
    pub fn new(dirs: &StateDir) -> Feed {
        Feed {
            log: dirs.event_log(),
            logs_dir: dirs.logs_dir(),
            own: None,
            boxes: Default::default(),
        }
    }

    /// A feed of what is written from now on (the API's live feed):
    /// everything there already is skipped.
    pub fn from_now(dirs: &StateDir) -> Feed {
        let mut feed = Feed::new(dirs);
        feed.next_batch();
        feed
    }

    /// The events written since the last call (every one kept, at the
    /// first), sorted by time.
    pub fn next_batch(&mut self) -> Vec<Event> {
        let mut lines = Vec::new();
        let log = self.log.clone();
        let open_log = move |old: bool| open_own(&if old { rotated(&log) } else { log.clone() });
        read_rotating(&mut self.own, &open_log, 2 * ROTATE_BYTES, &mut lines);
        let mut events: Vec<Event> = lines
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect();
        for instance in self.box_instances() {
            let Some(dir) = crate::core::untrusted::boxdir::BoxDir::open(&box_log_dir(
                &self.logs_dir,
                &instance,
            )) else {
                continue;
            };
            let open_box = |old: bool| dir.file(if old { "egress.log.1" } else { BOX_LOG });
            let mut lines = Vec::new();
            let track = self.boxes.entry(instance.clone()).or_default();
            read_rotating(track, &open_box, BOX_READ_CAP, &mut lines);
            events.extend(lines.iter().filter_map(|l| box_event(l, &instance)));
        }
        events.sort_by_key(|e| e.timestamp);
        events
    }

    /// The instances with a proxy log directory (named as ids are: a name
    /// that is not one is skipped).
    fn box_instances(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.logs_dir.join("egress")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| crate::core::types::InstanceId::parse(n).is_ok())
            .collect();
        names.sort();
        names
    }
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
    // Any field may hold what a box or a repository wrote: every one is
    // made printable here, the one place events reach a terminal as text.
    use crate::core::untrusted::text::printable_cow as p;
    let mut meta = String::new();
    for (k, v) in &e.metadata {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        meta.push_str(&format!(" {}={}", p(k), p(&v)));
    }
    format!(
        "{} {c}{:<5}{r} {:<9} {}{}",
        e.timestamp
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        e.level.as_str(),
        p(&e.component),
        p(&e.message),
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
        // The old events went to the rotated part, which goes once all of
        // it is past the retention.
        let old_part = rotated(&dirs.event_log());
        assert!(old_part.exists());
        let f = std::fs::File::options()
            .write(true)
            .open(&old_part)
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 86400))
            .unwrap();
        log.log(Level::Info, "test", "again", Value::Null);
        assert!(!old_part.exists());
    }

    #[test]
    fn appends_rotate_by_renaming_and_stay_under_the_cap() {
        let t = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(t.path().to_path_buf());
        let log = EventLog::new(&dirs, Duration::from_secs(86400));
        let big = "y".repeat(100 << 10);
        for i in 0..100 {
            log.log(Level::Info, "test", &big, serde_json::json!({"i": i}));
        }
        let cur = std::fs::metadata(dirs.event_log()).unwrap().len();
        let old = std::fs::metadata(rotated(&dirs.event_log())).unwrap().len();
        assert!(cur <= ROTATE_BYTES && old <= ROTATE_BYTES, "{cur} {old}");
        // A feed reads both, in order, and goes on across a rotation.
        let mut feed = Feed::new(&dirs);
        let first = feed.next_batch();
        let n = |e: &Event| e.metadata["i"].as_u64().unwrap();
        assert!(first.windows(2).all(|w| n(&w[0]) + 1 == n(&w[1])));
        assert_eq!(first.last().map(n), Some(99));
        for i in 100..150 {
            log.log(Level::Info, "test", &big, serde_json::json!({"i": i}));
        }
        let next: Vec<u64> = feed.next_batch().iter().map(n).collect();
        assert_eq!(next, (100..150).collect::<Vec<_>>());
        let mut live = Feed::from_now(&dirs);
        assert!(live.next_batch().is_empty());
        log.log(Level::Info, "test", "x", serde_json::json!({"i": 150}));
        assert_eq!(live.next_batch().iter().map(n).collect::<Vec<_>>(), [150]);
    }

    #[test]
    fn a_lock_held_elsewhere_delays_an_append_only_so_long() {
        use std::os::fd::AsRawFd;
        let t = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(t.path().to_path_buf());
        let log = EventLog::new(&dirs, Duration::from_secs(86400));
        log.log(Level::Info, "test", "one", Value::Null);
        let held = std::fs::File::open(dirs.event_log()).unwrap();
        // SAFETY: flock on an fd we own.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        log.log(Level::Info, "test", "two", Value::Null);
        let text = std::fs::read_to_string(dirs.event_log()).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_link_in_place_of_the_log_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(t.path().to_path_buf());
        dirs.ensure_sub(&dirs.logs_dir()).unwrap();
        let canary = t.path().join("canary");
        std::fs::write(&canary, "canary\n").unwrap();
        std::os::unix::fs::symlink(&canary, dirs.event_log()).unwrap();
        let log = EventLog::new(&dirs, Duration::from_secs(86400));
        log.log(Level::Info, "test", "x", Value::Null);
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "canary\n");
        assert!(Feed::new(&dirs).next_batch().is_empty());
    }

    #[test]
    fn a_box_event_is_rebuilt_from_what_we_expect_of_it() {
        let line = serde_json::json!({
            "timestamp": Utc::now(), "level": "ERROR", "component": "lifecycle",
            "message": "instance started",
            "metadata": {"instance": "other-claude", "host": "h".repeat(20_000),
                         "port": 443, "command": "rm -rf ~"}
        })
        .to_string();
        let e = box_event(line.as_bytes(), "mine-claude").unwrap();
        assert_eq!(e.component, "egress");
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.message, "connection refused");
        assert_eq!(e.metadata["instance"], "mine-claude");
        assert!(e.metadata["host"].as_str().unwrap().len() <= BOX_FIELD_MAX + 3);
        assert!(!e.metadata.contains_key("command"));
    }
}
