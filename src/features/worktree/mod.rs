//! `--worktree NAME`: an instance in its own git worktree, on branch
//! `ai/NAME` (or the existing branch `NAME`), so several agents work on
//! one repository side by side. Worktrees live in `worktree.dir` (default:
//! the sibling `<repo>.worktrees/`), never in the state home. git works
//! inside the container: a worktree's `.git` file points into the main
//! repository's `.git` directory, which is mounted at its host path.

pub mod inventory;
pub mod remove;
pub mod setup;

use crate::core::error::{Error, Result};
use crate::core::warning::Warnings;
use crate::state::context::Ctx;
use std::path::{Path, PathBuf};

/// What an instance records about its worktree (`Instance::worktree`).
pub use crate::state::registry::WorktreeInfo as Info;

/// Every git call of ours goes through the hardened runner.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    crate::core::untrusted::git::run(dir, args)
}

/// A git call that adds or removes the worktree at `path`: it may write only
/// in the common git dir and the worktree's parent
/// ([`crate::core::untrusted::git::run_writing`]).
pub(crate) fn git_writing(dir: &Path, args: &[&str], common: &Path, path: &Path) -> Result<String> {
    let parent = path.parent().unwrap_or(path);
    crate::core::untrusted::git::run_writing(dir, args, &[common, parent])
}

/// A worktree name: what a branch and a path component allow.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid worktree name {:?}: use letters, digits, '-', '_' and '.'",
            crate::core::types::truncate_for_message(name)
        )))
    }
}

/// `worktree.dir` with `~/` expanded.
fn expand_dir(d: Option<&str>) -> Option<PathBuf> {
    let d = d?;
    Some(match d.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(d),
    })
}

fn worktree_dir(ctx: &Ctx) -> Option<PathBuf> {
    expand_dir(ctx.global().ok()?.worktree.dir.as_deref())
}

/// Where the worktree `name` of `repo` goes.
pub(crate) fn place(ctx: &Ctx, repo: &Path, name: &str) -> Result<PathBuf> {
    let settings = ctx.global()?;
    let base = match expand_dir(settings.worktree.dir.as_deref()) {
        // One directory per repository: two with one basename must not
        // share (`<basename>-<digest of its path>`).
        Some(d) => d.join(format!(
            "{}-{}",
            crate::state::registry::project_name_of(repo),
            digest(repo)
        )),
        None => {
            let mut s = repo.as_os_str().to_owned();
            s.push(".worktrees");
            PathBuf::from(s)
        }
    };
    let state = ctx.dirs.root();
    let state = state.canonicalize().unwrap_or_else(|_| state.to_path_buf());
    if base.starts_with(&state) || base.starts_with(ctx.dirs.root()) {
        return Err(Error::Invalid(format!(
            "worktree.dir {} is inside the state directory; choose another place",
            base.display()
        )));
    }
    Ok(base.join(name))
}

/// The registry key listing the repositories worktrees were made in, so
/// `worktree list --all` finds them after their instances are gone.
pub const REPOS_KEY: &str = "worktree_repos";

/// The registry key recording, per repository, the git directory its
/// worktrees share (and their instances mount) as it was at the first
/// `--worktree` start.
pub const GIT_DIRS_KEY: &str = "worktree_git_dirs";

/// Whether `top` may use (and its worktrees mount) the git directory
/// `common`: one inside the repository always; one outside only when it is
/// the one recorded at the first start, or (at the first start) when it
/// names `top` back as its linked worktree. The project's `.git` and
/// `.git/commondir` are the agent's to write: a planted `gitdir:
/// /other/.git` would else get another repository's `.git` mounted
/// read-write into the box.
fn check_git_dir(ctx: &Ctx, top: &Path, common: &Path) -> Result<()> {
    let key = top.to_string_lossy().into_owned();
    let recorded = ctx
        .store
        .load()?
        .extra
        .get(GIT_DIRS_KEY)
        .and_then(|m| m.get(&key))
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    let shown = |p: &Path| crate::core::untrusted::printable(&p.to_string_lossy());
    match &recorded {
        Some(r) if r == common => return Ok(()),
        _ if common.starts_with(top) => {}
        Some(r) => {
            return Err(Error::Invalid(format!(
                "{}: its git directory is now {}, outside the repository; at its first start it was {}. \
                 Not used and not mounted: restore the repository's .git (a .git file or .git/commondir points elsewhere)",
                top.display(),
                shown(common),
                r.display()
            )))
        }
        None if linked_common(top).as_deref() == Some(common) => {}
        None if work_tree_of(top, common).as_deref() == Some(top) => {}
        None => {
            return Err(Error::Invalid(format!(
                "{}: its git directory {} is outside the repository and does not name it as its worktree; \
                 not used and not mounted (a .git file or .git/commondir points elsewhere)",
                top.display(),
                shown(common)
            )))
        }
    }
    let value = serde_json::Value::String(common.to_string_lossy().into_owned());
    ctx.store.update(|reg| {
        let map = reg
            .extra
            .entry(GIT_DIRS_KEY.to_owned())
            .or_insert_with(|| serde_json::json!({}));
        match map.as_object_mut() {
            Some(m) => {
                m.insert(key.clone(), value.clone());
            }
            None => *map = serde_json::json!({ key.clone(): value.clone() }),
        }
        Ok(())
    })
}

/// The work tree the git directory `common` names in its own config
/// (`core.worktree`: a submodule's, in its superproject's `.git/modules/`),
/// read from that file only.
fn work_tree_of(top: &Path, common: &Path) -> Option<PathBuf> {
    let cfg = common.join("config");
    let cfg = cfg.to_str()?;
    let wt = git(top, &["config", "-f", cfg, "--get", "core.worktree"]).ok()?;
    common.join(wt).canonicalize().ok()
}

/// Notes `repo` among the repositories with worktrees of ours.
fn remember_repo(ctx: &Ctx, repo: &Path) -> Result<()> {
    let repo = repo.to_string_lossy().into_owned();
    ctx.store.update(|reg| {
        let list = reg
            .extra
            .entry(REPOS_KEY.to_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        match list.as_array_mut() {
            Some(a) if a.iter().any(|r| r.as_str() == Some(&repo)) => {}
            Some(a) => a.push(serde_json::Value::String(repo.clone())),
            None => *list = serde_json::json!([repo]),
        }
        Ok(())
    })
}

/// Creates (or reuses) the worktree `name` of the repository `repo`; copies
/// `worktree.copy` files into a new one. What it had to redo or could not
/// copy goes to `warnings`.
pub fn prepare(ctx: &Ctx, repo: &Path, name: &str, warnings: &mut Warnings) -> Result<Info> {
    check_name(name)?;
    let top = PathBuf::from(git(repo, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        if e.to_string()
            .contains(crate::core::untrusted::git::STOPPED_ON_A_FIFO)
        {
            return e;
        }
        Error::Usage(format!(
            "{} is not a git repository: --worktree needs one",
            repo.display()
        ))
    })?);
    // The repository's config (`core.worktree`) can name any directory as
    // its work tree, the user's home say: only one with its own .git is
    // taken as the repository.
    if top.join(".git").symlink_metadata().is_err() {
        return Err(Error::Invalid(format!(
            "{}: git names {} as its work tree (core.worktree in its config?), which has no .git of its own; --worktree needs the repository itself",
            repo.display(),
            crate::core::untrusted::printable(&top.to_string_lossy())
        )));
    }
    let common = git(
        &top,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    let common = Path::new(&common);
    let common = common.canonicalize().unwrap_or(common.to_path_buf());
    check_git_dir(ctx, &top, &common)?;
    let path = place(ctx, &top, name)?;
    remember_repo(ctx, &top)?;
    // One start at a time makes a given worktree: the others wait, then
    // use what it made.
    let _lock = lock(ctx, &path)?;
    let path = legacy_place(ctx, &top, name).unwrap_or(path);
    let pending = pending_mark(ctx, &path);
    let registered = registered(&top, &path);
    let dot_git = path.join(".git").symlink_metadata().is_ok();
    if dot_git && !pending.exists() {
        let branch = git(&path, &["rev-parse", "--abbrev-ref", "HEAD"])?;
        return Ok(Info::new(
            name.to_owned(),
            branch,
            path.canonicalize().unwrap_or(path),
            top,
        ));
    }
    let p = path.to_string_lossy().into_owned();
    if registered || dot_git {
        // A start killed while making it (our mark is still there), or a
        // removal killed halfway (git still lists it, its .git is gone):
        // what is there is not a worktree to work in. Made again.
        warnings.warn(format!(
            "worktree {name}: an earlier start or removal of it was interrupted; making it again"
        ));
        git_writing(&top, &["worktree", "remove", "--force", &p], &common, &path).map_err(|e| {
            Error::Invalid(format!(
                "worktree {name} at {p} was left half made by an interrupted start or removal and could not be cleared ({e}); remove that directory and start again"
            ))
        })?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let add = |args: &[&str]| git_writing(&top, args, &common, &path);
    std::fs::write(&pending, &p).map_err(|e| Error::io(&pending, e))?;
    let exists_branch = |b: &str| {
        git(
            &top,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{b}"),
            ],
        )
        .is_ok()
    };
    let branch = if exists_branch(name) {
        add(&["worktree", "add", &p, name])?;
        name.to_owned()
    } else {
        let b = format!("ai/{name}");
        if exists_branch(&b) {
            add(&["worktree", "add", &p, &b])?;
        } else {
            add(&["worktree", "add", "-b", &b, &p])?;
        }
        b
    };
    copy_files(&ctx.global()?.worktree.copy, &top, &path, warnings);
    // Whole now: a later start may use it.
    let _ = std::fs::remove_file(&pending);
    Ok(Info::new(
        name.to_owned(),
        branch,
        path.canonicalize().unwrap_or(path),
        top,
    ))
}

/// Where worktree marks and locks are kept: the state home, which no box
/// can write.
pub(crate) fn marks_dir(ctx: &Ctx) -> Result<PathBuf> {
    let d = ctx.dirs.root().join("worktrees");
    ctx.dirs.ensure_sub(&d)?;
    Ok(d)
}

/// A short stable digest of a path (for file names).
fn digest(p: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(p.as_os_str().as_encoded_bytes());
    h.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The mark of a worktree being made: present from before `git worktree
/// add` until it and its copies are done.
fn pending_mark(ctx: &Ctx, path: &Path) -> PathBuf {
    marks_dir(ctx)
        .unwrap_or_else(|_| ctx.dirs.root().to_path_buf())
        .join(format!("{}.making", digest(path)))
}

/// Holds an exclusive lock on the worktree at `path` while alive.
fn lock(ctx: &Ctx, path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = marks_dir(ctx)?.join(format!("{}.lock", digest(path)));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&f)
        .map_err(|e| Error::io(&f, e))?;
    loop {
        // SAFETY: a valid fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io(&f, e));
        }
    }
}

/// Whether git lists `path` among the worktrees of `top` (compared by
/// their real parent directories: the path itself may be gone).
fn registered(top: &Path, path: &Path) -> bool {
    let real = |p: &Path| {
        p.parent()
            .and_then(|d| d.canonicalize().ok())
            .zip(p.file_name())
            .map(|(d, n)| d.join(n))
    };
    let ours = real(path);
    git(top, &["worktree", "list", "--porcelain", "-z"]).is_ok_and(|out| {
        out.split('\0')
            .filter_map(|l| l.strip_prefix("worktree "))
            .any(|p| ours.is_some() && real(Path::new(p)) == ours)
    })
}

/// A worktree made before `worktree.dir` places were per repository
/// (`<dir>/<basename>/NAME`), when it is one of `top`'s: still used.
fn legacy_place(ctx: &Ctx, top: &Path, name: &str) -> Option<PathBuf> {
    let dir = worktree_dir(ctx)?;
    let old = dir
        .join(crate::state::registry::project_name_of(top))
        .join(name);
    let common = git(
        top,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .ok()?;
    let common = Path::new(&common).canonicalize().ok()?;
    (linked_common(&old)? == common).then_some(old)
}

/// `worktree.copy`: each file copied from the repository into the new
/// worktree only when it is a regular file inside the repository (no
/// symlink at any component) and nothing is at its place in the worktree
/// yet ([`crate::core::untrusted::beneath`]); a refused one is named in one line
/// and the start goes on.
fn copy_files(copy: &[String], top: &Path, worktree: &Path, warnings: &mut Warnings) {
    use crate::core::untrusted::beneath::{copy_new, Dir};
    if copy.is_empty() {
        return;
    }
    let dirs = Dir::open(top).and_then(|f| Ok((f, Dir::open(worktree)?)));
    let (from, to) = match dirs {
        Ok(d) => d,
        Err(e) => {
            warnings.warn(format!("worktree.copy: nothing copied: {e}"));
            return;
        }
    };
    for f in copy {
        if let Err(e) = copy_new(&from, &to, Path::new(f)) {
            warnings.warn(format!(
                "worktree.copy: {} not copied: {}",
                crate::core::untrusted::printable(f),
                crate::core::untrusted::printable(&e.to_string())
            ));
        }
    }
}

/// A `--worktree NAME` start in `project` (CLI or API): the worktree made
/// or reused, the project directory it is, and its instance id.
pub fn target(
    ctx: &Ctx,
    project: &Path,
    name: &str,
    mode: &crate::core::types::Mode,
    warnings: &mut Warnings,
) -> Result<(Info, PathBuf, crate::core::types::InstanceId)> {
    let info = prepare(ctx, project, name, warnings)?;
    let dir = crate::state::project::of(&ctx.dirs, Some(&info.path))?;
    let id = id_in(ctx, &info, mode)?;
    Ok((info, dir, id))
}

/// [`id_for`], unless that id is another repository's worktree instance
/// (two repositories with one basename): then `<project>-<n>-<NAME>-<mode>`,
/// the first one that is this worktree's or free.
fn id_in(
    ctx: &Ctx,
    info: &Info,
    mode: &crate::core::types::Mode,
) -> Result<crate::core::types::InstanceId> {
    let base = id_for(info, mode)?;
    let reg = ctx.store.load()?;
    let path_of = |id: &crate::core::types::InstanceId| {
        reg.get(id)
            .map(|i| i.worktree.as_ref().map(|w| w.path.clone()))
    };
    let ours = |p: &Option<PathBuf>| p.as_deref().is_none_or(|p| p == info.path);
    let mut free = None;
    for n in 1..100 {
        let id = if n == 1 {
            base.clone()
        } else {
            numbered(info, &format!("-{n}"), mode)?
        };
        match path_of(&id) {
            Some(p) if ours(&p) => return Ok(id),
            Some(_) => {}
            None => {
                free.get_or_insert(id);
            }
        }
    }
    free.ok_or_else(|| Error::Invalid(format!("no free instance id for worktree {}", info.name)))
}

/// The id of a worktree instance: `<project>-<NAME>-<mode>`.
pub fn id_for(
    info: &Info,
    mode: &crate::core::types::Mode,
) -> Result<crate::core::types::InstanceId> {
    numbered(info, "", mode)
}

fn numbered(
    info: &Info,
    n: &str,
    mode: &crate::core::types::Mode,
) -> Result<crate::core::types::InstanceId> {
    let project = crate::state::registry::project_name_of(&info.repo);
    let name: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    crate::core::types::InstanceId::parse(&format!("{project}{n}-{name}-{mode}"))
}

/// For a project that is a linked worktree: the main repository's `.git`
/// directory, to be mounted at its own path so the worktree's `.git` file
/// resolves inside the container. The project is the agent's to write, so
/// its `.git` file is read as [`crate::core::untrusted`] and what it names is
/// mounted only when that repository names this worktree back (git's own
/// link, `<common>/worktrees/<name>/gitdir`, read in the real directory):
/// an agent can forge that only where it can already write.
pub fn git_mounts(project: &Path) -> Vec<(PathBuf, String)> {
    match linked_common(project) {
        Some(common) => {
            let at = common.to_string_lossy().into_owned();
            vec![(common, at)]
        }
        None => Vec::new(),
    }
}

/// The common git directory of `project` when it is a linked worktree that
/// its repository names back (see [`git_mounts`]).
fn linked_common(project: &Path) -> Option<PathBuf> {
    let dot_git = project.join(".git");
    let raw = crate::core::untrusted::read(&dot_git, 4096)?;
    let text = String::from_utf8_lossy(&raw);
    let gitdir = text.trim().strip_prefix("gitdir:").map(str::trim)?;
    let gitdir = project.join(gitdir);
    // <common>/worktrees/<name>: mount <common>.
    let (Some(name), Some(common)) = (
        gitdir.file_name(),
        gitdir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "worktrees"))
            .and_then(Path::parent)
            .and_then(|c| c.canonicalize().ok()),
    ) else {
        return None;
    };
    let back =
        crate::core::untrusted::read(&common.join("worktrees").join(name).join("gitdir"), 4096)
            .map(|b| PathBuf::from(String::from_utf8_lossy(&b).trim()));
    let names_us = back
        .and_then(|b| b.canonicalize().ok())
        .zip(dot_git.canonicalize().ok())
        .is_some_and(|(b, ours)| b == ours);
    names_us.then_some(common)
}

/// Notes the worktree on the instance (kept across restarts).
pub fn record(ctx: &Ctx, id: &crate::core::types::InstanceId, info: &Info) -> Result<()> {
    ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(id) {
            i.worktree = Some(info.clone());
        }
        Ok(())
    })
}

/// The branch the work of `info` lands into: the one recorded when it was
/// made, else the repository's default branch (`origin/HEAD`, when a local
/// branch of that name exists), else the branch the main checkout is on.
pub fn base_branch(info: &Info) -> Result<String> {
    if let Some(b) = info.base.as_deref().filter(|b| !b.is_empty()) {
        return Ok(b.to_owned());
    }
    let repo = &info.repo;
    let default = git(
        repo,
        &[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ],
    )
    .ok()
    .and_then(|r| r.strip_prefix("origin/").map(str::to_owned))
    .filter(|b| {
        git(
            repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{b}"),
            ],
        )
        .is_ok()
    });
    match default {
        Some(b) => Ok(b),
        None => git(repo, &["symbolic-ref", "--quiet", "--short", "HEAD"]).map_err(|_| {
            Error::Invalid(format!(
                "{}: no base branch (no origin/HEAD and the main checkout is not on a branch)",
                repo.display()
            ))
        }),
    }
}
