//! "Needs you": what each agent is doing (`working`, `waiting`, `idle`,
//! `unknown`), reported by the agent itself.
//!
//! Every instance gets a private directory `activity/<id>/` in the state
//! home (mounted read-write at [`MOUNT`] in its container) and the variable
//! `AI_SESSION_STATUS_FILE` naming the file `status` in it; the agent writes
//! one word there (for the shipped agents, hooks in a generated settings
//! file do it: see [`hooks`]). [`sync`] copies what the files say into the
//! registry (so `prompt.tsv`, `list`, the API see it): every command that
//! shows instances runs it, and the background watcher ([`watch`]) runs it
//! four times a second while any instance is live, so the prompt turns
//! without the user running anything, and notifies ([`notify`]).

pub mod hooks;
pub mod notify;
pub mod watch;

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{Activity, InstanceId};
use crate::core::warning::Warnings;
use crate::engine::volume::PathStat;
use crate::engine::Engine;
use crate::launch::{BoxFile, LaunchPlan, PlannedVolume, Upload};
use crate::state::config::{AgentSpec, HookKind};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{Instance, LogBudget, RuntimeKind};
use chrono::Utc;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where an instance's activity directory is mounted in its container.
pub const MOUNT: &str = "/run/ai-sessions";
/// The file the agent writes, in that directory.
pub const STATUS_FILE: &str = "status";
pub const ENV: &str = "AI_SESSION_STATUS_FILE";

/// `activity/<id>/` in the state home.
pub fn dir_of(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    dirs.activity_of(id)
}

pub fn status_file(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    dir_of(dirs, id).join(STATUS_FILE)
}

/// What a launch adds so the agent can report: environment, arguments
/// before the user's, (containers) the directory to mount at [`MOUNT`],
/// and files to place in the container, owned by root, before it starts
/// (path inside, contents).
#[derive(Debug, Default)]
pub struct Wiring {
    pub env: Vec<String>,
    pub args: Vec<String>,
    pub mount: Option<PathBuf>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Prepares the activity directory of a new run of `id` (a previous run's
/// word is cleared: the new agent has said nothing yet) and the hook
/// settings for `agent`.
pub fn prepare(
    dirs: &StateDir,
    id: &InstanceId,
    agent: &AgentSpec,
    kind: RuntimeKind,
) -> Result<Wiring> {
    let dir = dir_of(dirs, id);
    dirs.ensure_sub(&dirs.root().join("activity"))?;
    // The previous run's box could write here: whatever it left (a
    // directory named like our files, a FIFO, a symlink) goes, unfollowed.
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Other(format!("clearing {}: {e}", dir.display()))),
    }
    crate::core::paths::ensure_private_dir(&dir)?;
    let status = dir.join(STATUS_FILE);
    crate::core::paths::atomic_write(&status, b"unknown\n")?;
    // Paths as the agent sees them.
    let inside = |name: &str| match kind {
        RuntimeKind::Docker => format!("{MOUNT}/{name}"),
        RuntimeKind::Host => dir.join(name).to_string_lossy().into_owned(),
    };
    let mut w = Wiring {
        env: vec![format!("{ENV}={}", inside(STATUS_FILE))],
        args: Vec::new(),
        mount: (kind == RuntimeKind::Docker).then(|| dir.clone()),
        files: Vec::new(),
    };
    match agent.hook_kind() {
        HookKind::Claude => {
            hooks::write_claude(&dir)?;
            w.args = vec!["--settings".into(), inside(hooks::CLAUDE_FILE)];
        }
        // Only a root-owned file is read (see hooks::GEMINI_PATH): on the
        // host there is none to give it, and a file of the user's would
        // only earn a warning at every start.
        HookKind::Gemini if kind == RuntimeKind::Docker => {
            let settings = hooks::gemini_settings(&inside(STATUS_FILE));
            w.env
                .push(format!("{}={}", hooks::GEMINI_ENV, hooks::GEMINI_PATH));
            w.files
                .push((hooks::GEMINI_PATH.to_owned(), hooks::to_bytes(&settings)));
        }
        HookKind::Gemini | HookKind::None | HookKind::Auto => {}
    }
    Ok(w)
}

/// The word in an activity file; `None` when absent or unreadable (an
/// agent mid-write leaves an empty file for a moment: that is not news).
/// The agent owns the file: read as [`crate::core::untrusted`] (a FIFO or a
/// symlink in its place says nothing).
pub fn read(path: &Path) -> Option<Activity> {
    word(&crate::core::untrusted::read(path, WORD_CAP)?)
}

/// At most this much of a status file is read.
const WORD_CAP: u64 = 64;

/// The last word written, of the known ones.
fn word(buf: &[u8]) -> Option<Activity> {
    let text = std::str::from_utf8(buf).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(Activity::parse)
}

/// A clone instance mounts nothing of the host: its activity directory is
/// the `volume` at [`MOUNT`] (owned by root, as the engine makes it), into
/// which each start copies what [`prepare`] wrote here: the status file,
/// the box user's to write, and the hook settings, root's. `written`: the
/// other files the box writes there (the setup's outcome), the box user's
/// and empty again at each start: the volume outlives a run, and what an
/// earlier run wrote must not be read as this one's word.
pub fn boxed(
    dirs: &StateDir,
    id: &InstanceId,
    plan: &mut LaunchPlan,
    volume: PlannedVolume,
    written: &[&str],
) -> Result<()> {
    let dir = dir_of(dirs, id);
    let mut files = vec![BoxFile::private(STATUS_FILE, b"unknown\n".to_vec())];
    files.extend(written.iter().map(|n| BoxFile::private(n, Vec::new())));
    let names = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for name in names.filter_map(|e| e.ok()).map(|e| e.file_name()) {
        let Some(name) = name
            .to_str()
            .filter(|n| *n != STATUS_FILE && !written.contains(n))
        else {
            continue;
        };
        if let Some(data) = crate::core::untrusted::read(&dir.join(name), 1 << 20) {
            files.push(BoxFile::root(name, data));
        }
    }
    plan.agent
        .volumes
        .push((volume.name.clone(), MOUNT.to_owned()));
    plan.volumes.push(volume);
    plan.uploads.push(Upload {
        at: MOUNT.to_owned(),
        files,
    });
    Ok(())
}

/// Brings the word of each live clone instance home from its box, through
/// the engine, into its status file here (where [`sync`] reads it, and
/// `list` and the prompt with it, asking no engine). The file is looked at
/// each time and copied out only when it changed (`seen`: what it was, by
/// container). What the engine sends is the box's: a word is taken from
/// one small regular file only.
pub fn mirror(ctx: &Ctx, engine: &Engine, seen: &mut HashMap<String, PathStat>) {
    let Ok(reg) = ctx.store.load() else {
        return;
    };
    let path = format!("{MOUNT}/{STATUS_FILE}");
    let boxes: Vec<(&InstanceId, &String)> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live() && i.clone.is_some())
        // On another engine than this process reaches: not there to ask.
        .filter(|i| {
            let here = crate::engine::endpoint::current().ok();
            i.engine
                .as_deref()
                .is_none_or(|e| here.is_none_or(|h| h.names(e)))
        })
        .filter_map(|i| Some((&i.id, i.container_id.as_ref()?)))
        .collect();
    seen.retain(|cid, _| boxes.iter().any(|(_, c)| *c == cid));
    for (id, cid) in boxes {
        let Ok(stat) = engine.stat_path(cid, &path) else {
            continue;
        };
        if seen.get(cid) == Some(&stat) {
            continue;
        }
        let Some(buf) = from_box(engine, cid, STATUS_FILE, WORD_CAP) else {
            continue;
        };
        seen.insert(cid.clone(), stat);
        let Some(now) = word(&buf) else {
            continue;
        };
        let here = status_file(&ctx.dirs, id);
        if read(&here) != Some(now) && dir_of(&ctx.dirs, id).is_dir() {
            let _ = crate::core::paths::atomic_write(&here, format!("{now}\n").as_bytes());
        }
    }
}

/// The first `cap` bytes of the file `name` in a clone box's activity
/// directory (container `cid`, running or ended), through the engine:
/// one small regular file, or nothing.
pub fn from_box(engine: &Engine, cid: &str, name: &str, cap: u64) -> Option<Vec<u8>> {
    let tar = engine
        .download_tar(cid, &format!("{MOUNT}/{name}"), 16 << 10)
        .ok()?;
    crate::core::untrusted::archive::one_file(&tar, cap)
}

/// A change of activity recorded by [`sync`].
#[derive(Debug, Clone)]
pub struct Change {
    pub id: InstanceId,
    pub from: Activity,
    pub to: Activity,
}

/// Copies what the live instances' files say into the registry; takes the
/// lock only when something changed. Returns the changes.
pub fn sync(ctx: &Ctx) -> Result<Vec<Change>> {
    let reg = ctx.store.load()?;
    let seen: Vec<(InstanceId, Activity)> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .filter_map(|i| {
            let now = read(&status_file(&ctx.dirs, &i.id))?;
            (now != i.activity).then(|| (i.id.clone(), now))
        })
        .collect();
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let mut logged = Vec::new();
    let changes = ctx.store.update(|reg| {
        logged.clear();
        let mut out = Vec::new();
        for (id, to) in &seen {
            if let Some(i) = reg.instances.get_mut(id) {
                if i.status.is_live() && i.activity != *to {
                    let c = Change {
                        id: id.clone(),
                        from: i.activity,
                        to: *to,
                    };
                    let budget = i.activity_log.get_or_insert_with(LogBudget::full);
                    if let Some(dropped) = budget.admit(Utc::now()) {
                        logged.push((c.clone(), dropped));
                    }
                    out.push(c);
                    set(i, *to);
                }
            }
        }
        Ok(out)
    })?;
    for (c, dropped) in &logged {
        let mut meta = json!({"instance": c.id, "activity": c.to, "from": c.from});
        if *dropped > 0 {
            meta["dropped"] = json!(dropped);
        }
        ctx.events().log(
            Level::Info,
            "activity",
            &format!("{} is {}", c.id, c.to),
            meta,
        );
    }
    Ok(changes)
}

/// Records `a` on an entry (under the caller's lock).
pub fn set(i: &mut Instance, a: Activity) {
    if i.activity != a {
        i.activity = a;
        i.activity_since = Some(Utc::now());
    }
}

/// [`sync`] for commands that show instances: a failure to read activity
/// must not fail `list` (it is a debugging warning).
pub fn sync_quietly(ctx: &Ctx, warnings: &mut Warnings) {
    if let Err(e) = sync(ctx) {
        warnings.debug(format!("ai-sessctl: activity: {e}"));
    }
}

/// Removes an instance's activity directory (with `rm`).
pub fn remove(dirs: &StateDir, id: &InstanceId) -> Result<()> {
    let dir = dir_of(dirs, id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_word() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s");
        assert_eq!(read(&f), None);
        std::fs::write(&f, "").unwrap();
        assert_eq!(read(&f), None, "mid-write");
        std::fs::write(&f, "working\nwaiting\n").unwrap();
        assert_eq!(read(&f), Some(Activity::Waiting));
        std::fs::write(&f, "IDLE").unwrap();
        assert_eq!(read(&f), Some(Activity::Idle));
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(read(&f), None);
    }
}
