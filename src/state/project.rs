//! The project root: the one directory an agent gets mounted read-write.
//! Found as git finds a work tree (the nearest `.git`), with git's own
//! safety rules (CVE-2022-24765) and ours: the climb stops at `$HOME`, at a
//! file system boundary and at anything owned by another uid, and the root
//! is never `/`, `$HOME` itself, or a directory holding (or inside) the
//! state directory, where the API token, configs and agent logins live.

use crate::core::error::{Error, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a directory names its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From where the user stands: climb to the nearest `.git`.
    Climb,
    /// A path the user named (`start PATH`, the API): exactly that one.
    Exact,
}

/// What the checks compare against, resolved once.
pub struct Guard {
    home: Option<PathBuf>,
    state: PathBuf,
    uid: u32,
}

impl Guard {
    /// For the current user and the state directory at `state`.
    pub fn new(state: &Path) -> Self {
        Guard {
            home: home_dir().and_then(|h| h.canonicalize().ok()),
            state: canonical_or_self(state),
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// The project of `dir`, canonical, or why it cannot be one.
    pub fn resolve(&self, dir: &Path, how: Lookup) -> Result<PathBuf> {
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let root = match how {
            Lookup::Climb => self.climb(&dir),
            Lookup::Exact => dir,
        };
        self.check(&root)?;
        Ok(root)
    }

    /// The nearest directory at or above `start` with a `.git` of ours,
    /// else `start` itself.
    fn climb(&self, start: &Path) -> PathBuf {
        let Ok(first) = std::fs::metadata(start) else {
            return start.to_path_buf();
        };
        let mut cur = start;
        loop {
            if self.git_marker(cur) {
                return cur.to_path_buf();
            }
            if Some(cur) == self.home.as_deref() {
                break;
            }
            let Some(parent) = cur.parent() else { break };
            // Never climb into $HOME (a dotfiles repo is not a project),
            // across a mount, or into someone else's directory.
            if Some(parent) == self.home.as_deref() {
                break;
            }
            match std::fs::metadata(parent) {
                Ok(m) if m.dev() == first.dev() && m.uid() == self.uid => cur = parent,
                _ => break,
            }
        }
        start.to_path_buf()
    }

    /// The git repositories directly inside `dir` when `dir` is not one
    /// itself (`~/src` holding `api/`, `web/`, …), their names sorted:
    /// mounting it would hand the agent all of them.
    pub fn repositories_inside(&self, dir: &Path) -> Vec<String> {
        if self.git_marker(dir) {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| self.git_marker(&e.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A `.git` (directory or gitfile) owned by us marks a work tree top.
    fn git_marker(&self, dir: &Path) -> bool {
        std::fs::symlink_metadata(dir.join(".git")).is_ok_and(|m| m.uid() == self.uid)
    }

    /// Refuses roots that would hand the agent far more than a project.
    pub fn check(&self, root: &Path) -> Result<()> {
        let why = if root.parent().is_none() {
            Some("it is the file system root")
        } else if Some(root) == self.home.as_deref() {
            Some("it is your home directory")
        } else if self.state.starts_with(root) {
            Some("it holds the ai-sessions state directory")
        } else if root.starts_with(&self.state) {
            Some("it is inside the ai-sessions state directory")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Usage(format!(
                "{} cannot be a project root ({why}); cd into a project directory, or name one: `ai-sessctl start PATH`",
                root.display()
            )));
        }
        let Some(text) = root.to_str() else {
            return Err(Error::Usage(format!(
                "project path {root:?} is not valid UTF-8; rename the directory"
            )));
        };
        if text.contains(['\n', '\t']) {
            return Err(Error::Usage(
                "project path contains a newline or tab; rename the directory".into(),
            ));
        }
        Ok(())
    }
}

/// The project for `path` (named: exact) or the current directory (climb).
pub fn of(dirs: &crate::core::paths::StateDir, path: Option<&Path>) -> Result<PathBuf> {
    let (dir, how) = match path {
        Some(p) => (p.to_path_buf(), Lookup::Exact),
        None => (
            std::env::current_dir().map_err(|e| Error::io(".", e))?,
            Lookup::Climb,
        ),
    };
    if !dir.is_dir() {
        // Named in full unless absurdly long (the API echoes it).
        let mut shown: String = dir.to_string_lossy().chars().take(300).collect();
        if shown.len() < dir.as_os_str().len() {
            shown.push('…');
        }
        return Err(Error::Usage(format!("{shown} is not a directory")));
    }
    let guard = Guard::new(dirs.root());
    let root = guard.resolve(&dir, how)?;
    if how == Lookup::Climb {
        refuse_several_repositories(&guard, &root)?;
    }
    Ok(root)
}

/// From where the user stands, a directory that is not a repository but
/// holds several is almost never the project meant: refuse, naming the
/// ways on (a named path, `--here`, is taken as it is).
fn refuse_several_repositories(guard: &Guard, root: &Path) -> Result<()> {
    let repos = guard.repositories_inside(root);
    if repos.len() < 2 {
        return Ok(());
    }
    let mut some = repos.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if repos.len() > 3 {
        some.push_str(", …");
    }
    Err(Error::Usage(format!(
        "{} holds {} git repositories ({some}) and is not one; cd into one, or mount it all: `claude --here` (any agent: `ai-sessctl run MODE --here`, `ai-sessctl start PATH`)",
        root.display(),
        repos.len()
    )))
}

/// `$HOME`, else the user database's home of the current user.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// Canonical when it exists; else its canonical parent joined with the
/// name (a state dir not created yet), else as given.
fn canonical_or_self(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (
        p.parent().and_then(|d| d.canonicalize().ok()),
        p.file_name(),
    ) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(home: &Path, state: &Path) -> Guard {
        Guard {
            home: Some(home.to_path_buf()),
            state: state.to_path_buf(),
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let g = guard(Path::new("/home/u"), Path::new("/home/u/.ai-sessions"));
        for (p, why) in [
            ("/", "file system root"),
            ("/home/u", "home directory"),
            ("/home", "holds the ai-sessions state"),
            ("/home/u/.ai-sessions", "holds the ai-sessions state"),
            (
                "/home/u/.ai-sessions/states/x",
                "inside the ai-sessions state",
            ),
        ] {
            let e = g.check(Path::new(p)).unwrap_err().to_string();
            assert!(e.contains(why) && e.starts_with(p), "{p}: {e}");
        }
        assert!(g.check(Path::new("/home/u/src/app")).is_ok());
        assert!(g.check(Path::new("/srv/app")).is_ok());
    }
}
