//! `ai-sessctl state migrate`: merges per-instance state dirs
//! (`states/<id>/`) into their agent's shared one (`states/<mode>/`)
//! without losing a file: on a conflict the newer file wins and the other
//! is kept aside under `states/.migrated/<id>/`.

use crate::config::{self, StateScope};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::paths::ensure_private_dir;
use crate::types::{InstanceId, Mode};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What happened to one per-instance dir.
#[derive(Debug, Default)]
pub struct Migrated {
    pub id: String,
    pub into: PathBuf,
    pub moved: usize,
    /// Files identical in both places (the copy was dropped).
    pub same: usize,
    /// `(path inside the state, where the older copy now is)`.
    pub aside: Vec<(PathBuf, PathBuf)>,
    /// Why the dir was left alone (running, own state by config).
    pub skipped: Option<String>,
}

/// Where the older copies of the files of instance `id` go.
pub fn aside_root(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.dirs.states_dir().join(".migrated").join(id)
}

pub fn migrate(ctx: &Ctx) -> Result<Vec<Migrated>> {
    let states = ctx.dirs.states_dir();
    let entries = match fs::read_dir(&states) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&states, e)),
    };
    let reg = ctx.store.load()?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        // Agent dirs have no '-', `.migrated` is ours; the rest are ids.
        let Ok(id) = InstanceId::parse(&name) else {
            continue;
        };
        let Ok(mode) = Mode::parse(id.mode_suffix()) else {
            continue;
        };
        let into = ctx.dirs.agent_state(&mode);
        let mut m = Migrated {
            id: name.clone(),
            into: into.clone(),
            ..Migrated::default()
        };
        let scope = config::load_for(&ctx.dirs, &mode, Some(&id))
            .map(|e| e.agent.state)
            .unwrap_or_default();
        if scope == StateScope::Instance {
            m.skipped = Some(format!("agents.{mode}.state = \"instance\" applies to it"));
        } else if reg.get(&id).is_some_and(|i| i.status.is_live()) {
            m.skipped = Some(format!(
                "it is {}; stop it first (`ai-sessctl stop {id}`)",
                reg.get(&id)
                    .map(|i| i.status.to_string())
                    .unwrap_or_default()
            ));
        } else {
            ensure_private_dir(&states)?;
            ensure_private_dir(&into)?;
            let from = states.join(&name);
            let aside = aside_root(ctx, &name);
            merge_dir(&from, &into, Path::new(""), &aside, &mut m)?;
            remove_empty_tree(&from);
        }
        out.push(m);
    }
    Ok(out)
}

fn mtime(p: &Path) -> SystemTime {
    fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
        return fs::read_link(a).ok() == fs::read_link(b).ok() && fs::read_link(a).is_ok();
    }
    // Agents write these dirs: only regular files are opened (a FIFO
    // would block the read for good).
    ma.is_file() && mb.is_file() && ma.len() == mb.len() && fs::read(a).ok() == fs::read(b).ok()
}

/// A free path at `p`, or `p.1`, `p.2`, … (a second migrate never
/// overwrites what the first kept aside).
fn free_path(p: PathBuf) -> PathBuf {
    if fs::symlink_metadata(&p).is_err() {
        return p;
    }
    (1..)
        .map(|n| {
            let mut s = p.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        })
        .find(|c| fs::symlink_metadata(c).is_err())
        .expect("some suffix is free")
}

fn move_to(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(parent, e))?;
    }
    fs::rename(from, to).map_err(|e| Error::io(from, e))
}

use std::os::unix::fs::DirBuilderExt;

fn merge_dir(from: &Path, into: &Path, rel: &Path, aside: &Path, m: &mut Migrated) -> Result<()> {
    let dir = from.join(rel);
    let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let rel = rel.join(entry.file_name());
        let src = from.join(&rel);
        let dst = into.join(&rel);
        let src_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        match fs::symlink_metadata(&dst) {
            Err(_) => {
                move_to(&src, &dst)?;
                m.moved += count_files(&dst);
            }
            Ok(d) if d.is_dir() && src_dir => merge_dir(from, into, &rel, aside, m)?,
            Ok(d) if !d.is_dir() && !src_dir && same_content(&src, &dst) => {
                fs::remove_file(&src).map_err(|e| Error::io(&src, e))?;
                m.same += 1;
            }
            Ok(d) => {
                // Newest wins; a file against a dir keeps the dir in place.
                let src_wins = !d.is_dir() && !src_dir && mtime(&src) > mtime(&dst);
                let kept_aside = free_path(aside.join(&rel));
                if src_wins {
                    move_to(&dst, &kept_aside)?;
                    move_to(&src, &dst)?;
                    m.moved += 1;
                } else {
                    move_to(&src, &kept_aside)?;
                }
                m.aside.push((rel, kept_aside));
            }
        }
    }
    Ok(())
}

fn count_files(p: &Path) -> usize {
    match fs::read_dir(p) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| count_files(&e.path()))
            .sum(),
        Err(_) => 1,
    }
}

/// Removes `dir` and the empty dirs under it; anything else stays.
fn remove_empty_tree(dir: &Path) {
    if let Ok(d) = fs::read_dir(dir) {
        for e in d.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
