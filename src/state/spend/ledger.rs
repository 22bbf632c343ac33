//! An instance's ledger: `meter/<id>/usage.jsonl`, a JSON line per
//! brokered call, appended with one write each (a crash leaves at most a
//! partial last line, which readers skip). Only the instance's broker
//! writes it (the directory is mounted into its sidecar, never into the
//! box); host code still reads it as untrusted: beneath the directory's
//! fd, never through a link, capped.

use super::Record;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use crate::core::untrusted::boxdir::{read_lines_from, BoxDir};
use std::collections::BTreeMap;
use std::path::Path;

pub const FILE: &str = "usage.jsonl";

/// Every ledger of a home, by instance id.
pub type Ledgers = BTreeMap<String, Vec<Record>>;
/// What a reader takes of one ledger at most (about 400,000 calls).
const READ_CAP: u64 = 64 << 20;

/// Makes `meter/<id>/` (0700) for the broker to write into.
pub fn ensure(dirs: &StateDir, id: &InstanceId) -> Result<std::path::PathBuf> {
    dirs.ensure_sub(&dirs.meter_dir())?;
    let dir = dirs.meter_of(id);
    crate::core::paths::ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Appends `rec` to the ledger in `dir` (the broker's side).
pub fn append(dir: &Path, rec: &Record) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(FILE);
    let mut line = serde_json::to_vec(rec).map_err(|e| Error::Other(e.to_string()))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(&line).map_err(|e| Error::io(&path, e))
}

/// The records of the ledger in `dir`, oldest first; lines that do not
/// parse are skipped. None for a missing ledger.
pub fn read_dir(dir: &Path) -> Vec<Record> {
    let mut tail = Tail::default();
    tail.refresh(dir);
    tail.records
}

/// Every ledger of the home, by instance id (removed instances included:
/// their calls still count toward the day).
pub fn read_all(dirs: &StateDir) -> Ledgers {
    let Ok(entries) = std::fs::read_dir(dirs.meter_dir()) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            InstanceId::parse(&name).ok()?;
            Some((name, read_dir(&e.path())))
        })
        .collect()
}

/// A ledger read so far, and read on from there (the broker re-reads the
/// ledgers of the home for the daily budget on every call).
#[derive(Debug, Default)]
pub struct Tail {
    offset: u64,
    pub records: Vec<Record>,
}

impl Tail {
    /// Reads the lines added since the last call.
    pub fn refresh(&mut self, dir: &Path) {
        let Some(mut f) = BoxDir::open(dir).and_then(|d| d.file(FILE)) else {
            return;
        };
        if f.metadata().is_ok_and(|m| m.len() < self.offset) {
            // Truncated or replaced: read it again.
            *self = Tail::default();
        }
        let Ok((bytes, next)) = read_lines_from(&mut f, self.offset, READ_CAP) else {
            return;
        };
        self.offset = next;
        self.records.extend(
            bytes
                .split(|&b| b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Record>(l).ok()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::spend::Tokens;

    #[test]
    fn appended_records_read_back_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |n| Record {
            ts: chrono::Utc::now(),
            model: "claude-sonnet-4-5".into(),
            tokens: Tokens {
                input_tokens: n,
                ..Tokens::default()
            },
            status: 200,
        };
        append(dir.path(), &rec(1)).unwrap();
        append(dir.path(), &rec(2)).unwrap();
        let mut tail = Tail::default();
        tail.refresh(dir.path());
        assert_eq!(tail.records.len(), 2);
        // A crash mid-write: a partial line, then more calls.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"ts\":\"20").unwrap();
        f.write_all(b"\n").unwrap();
        append(dir.path(), &rec(3)).unwrap();
        tail.refresh(dir.path());
        let got: Vec<u64> = tail.records.iter().map(|r| r.tokens.input_tokens).collect();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(read_dir(dir.path()).len(), 3);
        // A link in place of the ledger is not followed.
        let other = tempfile::tempdir().unwrap();
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        append(other.path(), &rec(9)).unwrap();
        std::os::unix::fs::symlink(other.path().join(FILE), dir.path().join(FILE)).unwrap();
        assert!(read_dir(dir.path()).is_empty());
    }
}
