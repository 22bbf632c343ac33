//! The sidecar on an engine on another machine, where nothing of this
//! machine's state home can be mounted: its files live in a volume of the
//! instance's own there, at `/ai`. Its rules and broker settings are sent
//! through the engine's archive API before it starts and whenever they
//! change here (it re-reads a file whose mtime or size changed, as it does
//! the mounted ones locally). What it writes (its ledger, its proxy log)
//! is copied back into the state home when the host reads them and when
//! it is stopped.
//!
//! The daily budget of all instances counts the others' calls as they
//! were when it started (copies of their ledgers, sent with its files).

use super::sidecar::ROLE_LABEL;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use crate::engine::container::ContainerInfo;
use crate::engine::{Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::state::spend::ledger;
use std::path::Path;

/// Where the sidecar mounts its volume.
pub const MOUNT: &str = "/ai";
/// Its ledgers' directory in the volume: its own (`<id>/`) and the copies
/// of the home's others, for the daily budget.
pub const LEDGERS: &str = "meter-all";
/// Label of the sidecar (and its volume): the instance it serves.
pub const FOR_LABEL: &str = "ai.egress-for";
/// What is copied back of a ledger or of the proxy's log at most.
const PULL_CAP: u64 = 64 << 20;
/// The others' ledgers are sent back to this far (the day of the budget
/// is in the user's time zone).
const OTHERS_SINCE_HOURS: i64 = 48;

/// Whether the engine of this process is on another machine.
pub fn is_remote() -> bool {
    crate::engine::endpoint::current().is_ok_and(|e| !e.is_local())
}

/// The volume of the sidecar of the agent's container `container`.
pub fn volume_name(container: &str) -> String {
    format!("{container}-egress")
}

/// The sidecar's ledger directory inside its container.
pub fn ledger_inside(id: &str) -> String {
    format!("{MOUNT}/{LEDGERS}/{id}")
}

fn tar_err(e: std::io::Error) -> Error {
    Error::Other(format!("the egress sidecar's files: {e}"))
}

fn add_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o700);
    h.set_size(0);
    h.set_mtime(now_secs());
    h.set_cksum();
    tar.append_data(&mut h, path, std::io::empty())
        .map_err(tar_err)
}

fn add_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(bytes.len() as u64);
    h.set_mtime(now_secs());
    h.set_cksum();
    tar.append_data(&mut h, path, bytes).map_err(tar_err)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `net/` with the rules and the broker's settings of instance `id`, as
/// written in its `net/<id>/` here (the placeholder login files are the
/// box's, not the sidecar's).
fn add_net(tar: &mut tar::Builder<Vec<u8>>, dirs: &StateDir, id: &InstanceId) -> Result<()> {
    add_dir(tar, "net")?;
    let rules = super::rules_path(dirs, id);
    let settings = super::broker::settings::path(dirs, id);
    for (path, name) in [
        (rules, "rules.json"),
        (settings, super::broker::settings::FILE),
    ] {
        match std::fs::read(&path) {
            Ok(bytes) => add_file(tar, &format!("net/{name}"), &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(())
}

/// The tar unpacked at [`MOUNT`] of the sidecar of `id` before it starts:
/// its rules and settings, its log directory, its ledger's directory (with
/// the copy here when its volume is `fresh`: one that was removed), and
/// the home's other ledgers of the last days.
pub fn seed(dirs: &StateDir, id: &InstanceId, fresh: bool) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    add_net(&mut tar, dirs, id)?;
    add_dir(&mut tar, "log")?;
    add_dir(&mut tar, LEDGERS)?;
    let since = chrono::Utc::now() - chrono::Duration::hours(OTHERS_SINCE_HOURS);
    for (other, records) in ledger::read_all(dirs) {
        let own = other == id.as_str();
        if own && !fresh {
            // Its own ledger there is the one that counts: never replaced.
            continue;
        }
        let mut lines = Vec::new();
        for r in records.iter().filter(|r| own || r.ts >= since) {
            let mut line = serde_json::to_vec(r).map_err(|e| Error::Other(e.to_string()))?;
            line.push(b'\n');
            lines.extend(line);
        }
        if lines.is_empty() && !own {
            continue;
        }
        add_dir(&mut tar, &format!("{LEDGERS}/{other}"))?;
        add_file(
            &mut tar,
            &format!("{LEDGERS}/{other}/{}", ledger::FILE),
            &lines,
        )?;
    }
    add_dir(&mut tar, &format!("{LEDGERS}/{id}"))?;
    tar.into_inner().map_err(tar_err)
}

/// The sidecars of this state home on the engine, running or not.
fn sidecars(
    engine: &Engine,
    dirs: &StateDir,
    id: Option<&InstanceId>,
) -> Result<Vec<ContainerInfo>> {
    let mut labels = vec![
        format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
        format!("{ROLE_LABEL}=egress-proxy"),
        format!("{HOME_LABEL}={}", dirs.home_label()),
    ];
    if let Some(id) = id {
        labels.push(format!("{FOR_LABEL}={id}"));
    }
    engine.list(&labels)
}

/// Sends the rules and broker settings of `id`, as they are here now, to
/// its running sidecar on an engine on another machine. Nothing to do
/// with a local engine (the sidecar mounts them) or without a sidecar
/// (its next start sends them).
pub fn push(dirs: &StateDir, id: &InstanceId) -> Result<()> {
    if !is_remote() {
        return Ok(());
    }
    let engine = Engine::shared()?;
    let mut tar = tar::Builder::new(Vec::new());
    add_net(&mut tar, dirs, id)?;
    let tar = tar.into_inner().map_err(tar_err)?;
    for s in sidecars(engine, dirs, Some(id))? {
        if s.state != crate::engine::state::ContainerState::Running {
            continue;
        }
        engine
            .block_on(engine.upload_tar_into(&s.id, MOUNT, tar.clone()))
            .map_err(|e| Error::Other(format!("sending the rules of {id} to its sidecar: {e}")))?;
    }
    Ok(())
}

/// The regular files of a tar from the engine (its `download`), by the
/// name of their last part.
fn files_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(archive);
    let Ok(entries) = ar.entries() else {
        return out;
    };
    for mut e in entries.flatten() {
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(name) = e
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            continue;
        };
        let mut bytes = Vec::new();
        if e.read_to_end(&mut bytes).is_ok() {
            out.push((name, bytes));
        }
    }
    out
}

/// Makes the file at `path` hold `bytes`: what they add to it appended
/// (a reader following it, as `events --follow` does, reads on), else
/// replaced whole (the far file was rotated or started again).
fn mirror(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let had = std::fs::read(path).unwrap_or_default();
    if had.is_empty() || !bytes.starts_with(&had) {
        return crate::core::paths::atomic_write(path, bytes);
    }
    if bytes.len() == had.len() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| f.write_all(&bytes[had.len()..]))
        .map_err(|e| Error::io(path, e))
}

/// Copies what the sidecar `s` wrote (its ledger, its proxy log) into the
/// state home, where the host reads them.
fn pull_one(engine: &Engine, dirs: &StateDir, s: &ContainerInfo) -> Result<()> {
    let Some(id) = s.labels.get(FOR_LABEL) else {
        return Ok(());
    };
    let id = InstanceId::parse(id)?;
    let inside = format!("{}/{}", ledger_inside(id.as_str()), ledger::FILE);
    // None yet: no call was brokered (or it only proxies).
    if let Ok(tar) = engine.download_tar(&s.id, &inside, PULL_CAP) {
        if let Some((_, bytes)) = files_of(&tar).into_iter().find(|(n, _)| n == ledger::FILE) {
            let dir = ledger::ensure(dirs, &id)?;
            mirror(&dir.join(ledger::FILE), &bytes)?;
        }
    }
    if let Ok(tar) = engine.download_tar(&s.id, &format!("{MOUNT}/log"), 2 * PULL_CAP) {
        let dir = crate::state::events::box_log_dir(&dirs.logs_dir(), id.as_str());
        let wanted = [
            crate::state::events::BOX_LOG.to_owned(),
            format!("{}.1", crate::state::events::BOX_LOG),
        ];
        let files: Vec<_> = files_of(&tar)
            .into_iter()
            .filter(|(n, _)| wanted.contains(n))
            .collect();
        if !files.is_empty() {
            dirs.ensure_sub(&dirs.logs_dir())?;
            super::sidecar::own_log_dir(&dir)?;
            for (name, bytes) in files {
                mirror(&dir.join(name), &bytes)?;
            }
        }
    }
    Ok(())
}

/// Copies what the sidecars of this home on an engine on another machine
/// wrote into the state home (before the host reads ledgers or
/// proxy logs). Best effort: an engine that does not answer leaves the
/// copies as they were.
pub fn pull_all(dirs: &StateDir) {
    if !is_remote() {
        return;
    }
    let Ok(engine) = Engine::shared() else { return };
    let Ok(list) = sidecars(engine, dirs, None) else {
        return;
    };
    // An ended one too: it stays until its instance's container goes.
    for s in &list {
        if let Err(e) = pull_one(engine, dirs, s) {
            crate::core::warning::report_debug(format!(
                "ai-sessctl: copying back from {}: {e}",
                s.name
            ));
        }
    }
}

/// Before the sidecar `name` is removed: copies back what it wrote.
pub fn pull_before_removal(engine: &Engine, name: &str) {
    if !is_remote() {
        return;
    }
    let (Ok(dirs), Some(s)) = (StateDir::from_env(), engine.inspect(name)) else {
        return;
    };
    if let Err(e) = pull_one(engine, &dirs, &s) {
        crate::core::warning::report_debug(format!("ai-sessctl: copying back from {name}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::spend::{Record, Tokens};

    fn names(archive: &[u8]) -> Vec<String> {
        tar::Archive::new(archive)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_seed_holds_rules_and_the_others_ledgers_and_its_own_only_when_fresh() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(tmp.path().to_path_buf());
        let me = InstanceId::parse("web-claude").unwrap();
        let other = InstanceId::parse("api-claude").unwrap();
        let net = crate::features::egress::net_dir(&dirs, &me);
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(crate::features::egress::rules_path(&dirs, &me), b"{}").unwrap();
        // The box's placeholder login is not the sidecar's.
        std::fs::write(net.join("login-.credentials.json"), b"{}").unwrap();
        for id in [&me, &other] {
            let dir = ledger::ensure(&dirs, id).unwrap();
            let rec = Record {
                ts: chrono::Utc::now(),
                model: "claude-sonnet-4-5".into(),
                tokens: Tokens::default(),
                status: 200,
            };
            ledger::append(&dir, &rec).unwrap();
        }
        let kept = names(&seed(&dirs, &me, false).unwrap());
        assert!(kept.contains(&"net/rules.json".to_owned()), "{kept:?}");
        assert!(!kept.iter().any(|n| n.contains("login")), "{kept:?}");
        assert!(
            kept.contains(&"meter-all/api-claude/usage.jsonl".to_owned()),
            "{kept:?}"
        );
        assert!(
            !kept.contains(&"meter-all/web-claude/usage.jsonl".to_owned()),
            "its own ledger there is never replaced: {kept:?}"
        );
        let fresh = names(&seed(&dirs, &me, true).unwrap());
        assert!(
            fresh.contains(&"meter-all/web-claude/usage.jsonl".to_owned()),
            "{fresh:?}"
        );
    }

    #[test]
    fn a_copy_appends_what_is_new_and_replaces_what_started_again() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("egress.log");
        mirror(&f, b"one\n").unwrap();
        let ino = std::fs::metadata(&f).unwrap().ino();
        mirror(&f, b"one\ntwo\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::metadata(&f).unwrap().ino(), ino, "appended");
        mirror(&f, b"three\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"three\n");
    }
}
