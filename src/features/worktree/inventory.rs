//! The worktrees ai-sessions made: those git lists for a repository in
//! one of its worktree places (`<repo>/.claude/worktrees/`, `worktree.dir`,
//! or the older sibling `<repo>.worktrees/`), plus any an instance records,
//! with the instances that run in them and what removing one would lose
//! (uncommitted changes, unpushed commits).

use super::{git, Info};
use crate::core::types::{InstanceId, Status};
use crate::state::context::Ctx;
use crate::state::registry::Registry;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub path: PathBuf,
    /// `None`: a detached HEAD.
    pub branch: Option<String>,
    pub repo: PathBuf,
    pub instances: Vec<InstanceRef>,
    #[serde(flatten)]
    pub changes: Changes,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceRef {
    pub id: InstanceId,
    pub status: Status,
}

/// What removing a worktree would lose.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Changes {
    /// Modified, staged or untracked files (not ignored ones, nor
    /// `worktree.copy` files that still equal the repository's).
    pub dirty: bool,
    /// Commits on no other branch, local or remote: neither pushed nor
    /// merged anywhere.
    pub unpushed: u32,
}

impl Changes {
    pub fn clean(&self) -> bool {
        !self.dirty && self.unpushed == 0
    }

    /// `clean`, `uncommitted changes`, `2 unpushed`, or both.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.dirty {
            parts.push("uncommitted changes".to_owned());
        }
        if self.unpushed > 0 {
            parts.push(format!("{} unpushed", self.unpushed));
        }
        if parts.is_empty() {
            "clean".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// What removing the worktree at `path` (on `branch`) would lose. The
/// `worktree.copy` files (`copy`) are not counted while they still equal
/// the repository's (`repo`): then they are copies, not work.
pub fn changes(
    path: &Path,
    branch: Option<&str>,
    copy: &[String],
    repo: &Path,
) -> crate::core::error::Result<Changes> {
    let status = crate::core::untrusted::git::run_in_work_tree(
        path,
        &["status", "--porcelain", "--untracked-files=all"],
    )?;
    // Both sides are the boxes' to write: read beneath each tree, regular
    // files only (no symlink followed, a FIFO never blocks), capped.
    let dirs = crate::core::untrusted::beneath::Dir::open(path)
        .and_then(|p| Ok((p, crate::core::untrusted::beneath::Dir::open(repo)?)))
        .ok();
    let read = |d: &crate::core::untrusted::beneath::Dir, f: &str| {
        use std::io::Read;
        const CAP: u64 = 16 << 20;
        let mut raw = Vec::new();
        d.open_file(Path::new(f))
            .ok()?
            .take(CAP + 1)
            .read_to_end(&mut raw)
            .ok()?;
        (raw.len() as u64 <= CAP).then_some(raw)
    };
    let a_copy = |f: &str| {
        copy.iter().any(|c| c == f)
            && dirs.as_ref().is_some_and(
                |(p, r)| matches!((read(p, f), read(r, f)), (Some(a), Some(b)) if a == b),
            )
    };
    let dirty = status.lines().any(|l| match l.strip_prefix("?? ") {
        Some(untracked) => !a_copy(untracked),
        None => !l.is_empty(),
    }) || (!crate::core::untrusted::git::confined() && checked_out_submodule(path));
    let exclude = branch.map(|b| format!("--exclude={b}"));
    let mut args = vec!["rev-list", "--count", "HEAD", "--not", "--remotes"];
    if let Some(e) = &exclude {
        args.push(e);
    }
    args.push("--branches");
    let unpushed = git(path, &args)?.parse().unwrap_or(0);
    Ok(Changes { dirty, unpushed })
}

/// Whether a submodule of the worktree at `path` has a work tree. Without
/// Landlock `status` does not look inside one (its own config could run a
/// program), so what it holds counts as a change: `rm` asks for `--force`.
fn checked_out_submodule(path: &Path) -> bool {
    crate::core::untrusted::git::run_in_work_tree(path, &["ls-files", "--stage", "-z"]).is_ok_and(
        |out| {
            out.split('\0')
                .filter_map(|l| l.strip_prefix("160000 "))
                .filter_map(|l| l.split_once('\t').map(|(_, p)| p))
                .any(|p| path.join(p).join(".git").symlink_metadata().is_ok())
        },
    )
}

/// The main repository of the git checkout around `dir` (also when `dir`
/// is in one of its worktrees).
pub fn repo_of(dir: &Path) -> Option<PathBuf> {
    let common = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .ok()?;
    let common = PathBuf::from(common);
    let repo = if common.file_name().is_some_and(|n| n == ".git") {
        common.parent()?.to_path_buf()
    } else {
        common
    };
    Some(repo.canonicalize().unwrap_or(repo))
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// `git worktree list` of `repo`: each worktree's path and branch.
fn git_worktrees(repo: &Path) -> Option<Vec<(PathBuf, Option<String>)>> {
    // `-z`: a path the agent planted in `.git/worktrees/*/gitdir` may hold
    // a newline; with NULs it cannot pass for another record.
    let porcelain = git(repo, &["worktree", "list", "--porcelain", "-z"]).ok()?;
    let mut out = Vec::new();
    let mut path = None;
    let mut branch = None;
    for field in porcelain.split('\0') {
        if field.is_empty() {
            // A record ends.
            if let Some(p) = path.take() {
                out.push((p, branch.take()));
            }
            branch = None;
        } else if let Some(p) = field.strip_prefix("worktree ") {
            path = Some(canonical(Path::new(p)));
        } else if let Some(b) = field.strip_prefix("branch ") {
            branch = Some(b.strip_prefix("refs/heads/").unwrap_or(b).to_owned());
        }
    }
    if let Some(p) = path {
        out.push((p, branch));
    }
    Some(out)
}

/// Where the worktrees of `repo` are (made now, and made before).
fn bases_of(ctx: &Ctx, repo: &Path) -> Vec<PathBuf> {
    super::places(ctx, repo)
        .iter()
        .map(|p| canonical(p))
        .collect()
}

/// The names (and branches) of the worktrees in the place of `repo`, for
/// `-w <TAB>`: one git call, no status.
pub fn names(ctx: &Ctx, repo: &Path) -> Vec<(String, Option<String>)> {
    let Some(linked) = git_worktrees(repo) else {
        return Vec::new();
    };
    let bases = bases_of(ctx, repo);
    let mut out: Vec<(String, Option<String>)> = linked
        .into_iter()
        .filter(|(p, _)| p.parent().is_some_and(|d| bases.iter().any(|b| b == d)))
        .filter_map(|(p, b)| Some((p.file_name()?.to_str()?.to_owned(), b)))
        // Only names `-w` takes: a path planted in `.git/worktrees/*/gitdir`
        // is no worktree of ours to offer.
        .filter(|(n, _)| super::check_name(n).is_ok())
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The worktrees of `only` (a main repository), or of every repository an
/// instance made one in.
pub fn list(
    ctx: &Ctx,
    reg: &Registry,
    only: Option<&Path>,
) -> crate::core::error::Result<Vec<Entry>> {
    let recorded: Vec<(InstanceId, Status, Info)> = reg
        .instances
        .values()
        .filter_map(|i| {
            let info: Info = i.worktree.clone()?;
            Some((i.id.clone(), i.status, info))
        })
        .collect();
    let remembered = reg
        .extra
        .get(super::REPOS_KEY)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .map(|r| canonical(Path::new(r)));
    let mut repos: BTreeSet<PathBuf> = recorded
        .iter()
        .map(|(_, _, i)| canonical(&i.repo))
        .chain(remembered)
        .collect();
    if let Some(r) = only {
        repos.retain(|x| x == r);
        repos.insert(r.to_path_buf());
    }
    let copy = ctx.global()?.worktree.copy;
    let mut out = Vec::new();
    for repo in repos {
        // A repository that is gone has no worktrees left to show.
        let Some(linked) = git_worktrees(&repo) else {
            continue;
        };
        let bases = bases_of(ctx, &repo);
        for (path, branch) in linked {
            let ours = bases.iter().any(|b| path.starts_with(b) && &path != b)
                || recorded.iter().any(|(_, _, i)| canonical(&i.path) == path);
            if !ours || path == repo {
                continue;
            }
            let instances = recorded
                .iter()
                .filter(|(_, _, i)| canonical(&i.path) == path)
                .map(|(id, status, _)| InstanceRef {
                    id: id.clone(),
                    status: *status,
                })
                .collect();
            let changes = changes(&path, branch.as_deref(), &copy, &repo).unwrap_or_default();
            out.push(Entry {
                path,
                branch,
                repo: repo.clone(),
                instances,
                changes,
            });
        }
    }
    Ok(out)
}
