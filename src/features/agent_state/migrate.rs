//! `ai-sessctl state migrate`: an agent's state dir shared by all its
//! instances (`states/<mode>/`, older versions) becomes per instance:
//! every instance of the agent gets a copy of what it held (its own files
//! win), the original is kept whole under `states/.migrated/<mode>/`, and
//! only the login file stays shared. The box could write these dirs: every
//! step goes through [`crate::core::untrusted::tree`] (relative to directory fds,
//! no link followed, links never copied).

use super::credential_files;
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode};
use crate::core::untrusted::tree::{Kind, Tree, MAX_DEPTH};
use crate::state::context::Ctx;
use crate::state::registry::Registry;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// What happened to one agent's shared dir.
#[derive(Debug, Default)]
pub struct Migrated {
    pub mode: String,
    /// The instances that got a copy.
    pub into: Vec<String>,
    /// Files copied, over all instances.
    pub copied: usize,
    /// Files an instance had already (its own copy kept).
    pub kept_own: usize,
    /// `(instance, path inside the state, why it was not copied)`: links,
    /// FIFOs, a link in the instance's dir where a dir was to go.
    pub refused: Vec<(String, PathBuf, String)>,
    /// Where the old shared state now is, whole.
    pub archive: Option<PathBuf>,
    /// Why the dir was left alone (instances running, not a directory).
    pub skipped: Option<String>,
}

pub fn migrate(ctx: &Ctx) -> Result<Vec<Migrated>> {
    let states_path = ctx.dirs.states_dir();
    let states = match Tree::open(&states_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&states_path, e)),
    };
    let names = states.names().map_err(|e| Error::io(&states_path, e))?;
    let reg = ctx.store.load()?;
    let mut out = Vec::new();
    for name in &names {
        // Agent dirs are letters only; ids have a '-', `.migrated` a '.'.
        let Some(mode) = name.to_str().and_then(|s| Mode::parse(s).ok()) else {
            continue;
        };
        let dir = AgentDir {
            states: &states,
            states_path: &states_path,
            names: &names,
            name,
        };
        out.extend(dir.migrate(ctx, &reg, mode)?);
    }
    Ok(out)
}

/// One agent's shared dir in `states/`, and what else is there.
struct AgentDir<'a> {
    states: &'a Tree,
    states_path: &'a Path,
    /// Every name in `states/`.
    names: &'a [OsString],
    /// The agent's dir.
    name: &'a OsStr,
}

impl AgentDir<'_> {
    /// Migrates the dir of `mode`'s agent; `None` when it holds nothing to
    /// migrate.
    fn migrate(&self, ctx: &Ctx, reg: &Registry, mode: Mode) -> Result<Option<Migrated>> {
        let (states, states_path, name) = (self.states, self.states_path, self.name);
        let mut m = Migrated {
            mode: mode.to_string(),
            ..Migrated::default()
        };
        let shared = match states.kind(name) {
            Ok(Kind::Dir) => states.sub(name),
            Ok(_) => {
                m.skipped =
                    Some("not a directory (a link?): left alone, nothing read through it".into());
                return Ok(Some(m));
            }
            Err(e) => Err(e),
        };
        let shared = match shared {
            Ok(t) => t,
            Err(e) => {
                m.skipped = Some(format!("cannot open it: {e}"));
                return Ok(Some(m));
            }
        };
        // Its login files stay shared (a config that does not load: none
        // known, everything is copied into the instances).
        let agent = crate::state::config::load_for(&ctx.dirs, &mode, None)
            .map(|e| e.agent)
            .unwrap_or_default();
        let creds = credential_files(&agent);
        let entries: Vec<OsString> = shared
            .names()
            .map_err(|e| Error::io(states_path.join(name), e))?
            .into_iter()
            .filter(|n| !creds.iter().any(|c| OsStr::new(c) == n))
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        let live: Vec<String> = reg
            .instances
            .values()
            .filter(|i| i.mode == mode && i.status.is_live())
            .map(|i| i.id.to_string())
            .collect();
        if !live.is_empty() {
            m.skipped = Some(format!(
                "{mode} instances are running ({}); stop them first",
                live.join(", ")
            ));
            return Ok(Some(m));
        }
        for t in &self.targets(reg, &mode) {
            match states.mkdir(OsStr::new(t), 0o700) {
                Ok(dir) => {
                    copy_tree(&shared, &dir, Path::new(""), &entries, 0, t, &mut m);
                    m.into.push(t.clone());
                }
                Err(e) => m.refused.push((
                    t.clone(),
                    PathBuf::new(),
                    format!("its state dir cannot be opened as a directory ({e})"),
                )),
            }
        }
        m.archive = Some(self.archive(&shared, &entries, &mode)?);
        Ok(Some(m))
    }

    /// The agent's instances: those registered and those with a dir.
    fn targets(&self, reg: &Registry, mode: &Mode) -> BTreeSet<String> {
        reg.instances
            .values()
            .filter(|i| &i.mode == mode)
            .map(|i| i.id.to_string())
            .chain(
                self.names
                    .iter()
                    .filter_map(|n| n.to_str())
                    .filter_map(|n| InstanceId::parse(n).ok())
                    .filter(|id| id.mode_suffix() == mode.as_str())
                    .map(|id| id.to_string()),
            )
            .collect()
    }

    /// Moves `entries` of the shared dir, whole, to `.migrated/<mode>`
    /// (numbered when taken), out of every instance's reach; returns where.
    fn archive(&self, shared: &Tree, entries: &[OsString], mode: &Mode) -> Result<PathBuf> {
        let (states, states_path, name) = (self.states, self.states_path, self.name);
        let aside = states
            .mkdir(OsStr::new(".migrated"), 0o700)
            .map_err(|e| Error::io(states_path.join(".migrated"), e))?;
        let arch_name = (0..)
            .map(|n| match n {
                0 => OsString::from(mode.as_str()),
                n => OsString::from(format!("{mode}.{n}")),
            })
            .find(|n| !aside.has(n))
            .unwrap_or_default();
        let arch_path = states_path.join(".migrated").join(&arch_name);
        let arch = aside
            .mkdir(&arch_name, 0o700)
            .map_err(|e| Error::io(&arch_path, e))?;
        for e in entries {
            shared
                .rename_to(e, &arch, e)
                .map_err(|err| Error::io(states_path.join(name).join(e), err))?;
        }
        Ok(arch_path)
    }
}

/// Copies `names` of `src` into `dst`: dirs merged, regular files copied
/// when `dst` has none of that name (the instance's own wins), anything
/// else (a link, a FIFO) left out and named.
fn copy_tree(
    src: &Tree,
    dst: &Tree,
    rel: &Path,
    names: &[OsString],
    depth: usize,
    target: &str,
    m: &mut Migrated,
) {
    let mut refuse = |rel: PathBuf, why: String| m.refused.push((target.to_owned(), rel, why));
    let mut subdirs = Vec::new();
    for n in names {
        let r = rel.join(n);
        match (src.kind(n), dst.kind(n)) {
            (Ok(Kind::Dir), Err(_) | Ok(Kind::Dir)) if depth + 1 < MAX_DEPTH => subdirs.push(n),
            (Ok(Kind::Dir), Err(_) | Ok(Kind::Dir)) => refuse(r, "too deep; not copied".into()),
            (Ok(Kind::Dir), Ok(_)) => refuse(
                r,
                "the instance has a file or link there; its own kept".into(),
            ),
            (Ok(Kind::File), Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                match src.copy_file(n, dst, n) {
                    Ok(_) => m.copied += 1,
                    Err(e) => refuse(r, format!("not copied: {e}")),
                }
            }
            (Ok(Kind::File), _) => m.kept_own += 1,
            (Ok(Kind::Link), _) => refuse(r, "a link: not copied".into()),
            (Ok(Kind::Other), _) => refuse(r, "not a regular file: not copied".into()),
            (Err(e), _) => refuse(r, format!("not copied: {e}")),
        }
    }
    for n in subdirs {
        let r = rel.join(n);
        let pair = src.sub(n).and_then(|s| Ok((dst.mkdir(n, 0o700)?, s)));
        match pair.and_then(|(d, s)| Ok((s.names()?, d, s))) {
            Ok((names, d, s)) => copy_tree(&s, &d, &r, &names, depth + 1, target, m),
            Err(e) => m
                .refused
                .push((target.to_owned(), r, format!("not copied: {e}"))),
        }
    }
}
