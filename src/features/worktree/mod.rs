//! `--worktree NAME` (`-w NAME`, every agent): an instance in its own git
//! worktree, as Claude Code's own `--worktree` makes them, in a box:
//! `<repo>/.claude/worktrees/NAME` on a new branch `worktree-NAME`, based
//! on the default remote branch (`origin/HEAD`, else `HEAD`;
//! `worktree.base_ref = "head"`: `HEAD`), the ignored files
//! `.worktreeinclude` lists copied in, a name made up when none is given.
//! An existing branch `NAME` (or `worktree-NAME`, or the older `ai/NAME`)
//! is used as it is. `worktree.dir` puts them elsewhere (one directory per
//! repository beneath it). Worktrees made before in the older places
//! (`<repo>.worktrees/NAME`, on `ai/NAME`) are still found, listed, reused
//! and removed. git works inside the container: a worktree's `.git` file
//! points into the main repository's `.git` directory, which is mounted at
//! its host path.
//!
//! `<repo>/.claude` is the project's, which a box can write: each component
//! is opened without following a link ([`crate::core::untrusted::beneath`])
//! and git may write only beneath the directory so opened.

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

/// A git call that adds or removes the worktree at `path` of the
/// repository `top`: it may write only in the common git dir and the
/// worktree's parent ([`crate::core::untrusted::git::run_writing`]), the
/// directory itself as [`parent_dir`] opened it (a link planted on its path
/// afterwards leads git nowhere it may write).
pub(crate) fn git_writing(top: &Path, args: &[&str], common: &Path, path: &Path) -> Result<String> {
    let parent = match parent_dir(top, path, false) {
        Ok(d) => Some(d),
        // Gone (removed by hand): git only forgets it, writing in the git
        // dir alone.
        Err(_) if args.contains(&"remove") && !path.parent().is_some_and(Path::exists) => None,
        Err(e) => return Err(e),
    };
    let Some(parent) = parent else {
        return crate::core::untrusted::git::run_writing(top, args, &[common]);
    };
    let writable = parent.fd_path();
    let writable = if writable.exists() {
        writable
    } else {
        path.parent().unwrap_or(path).to_path_buf()
    };
    crate::core::untrusted::git::run_writing(top, args, &[common, &writable])
}

/// The parent directory of the worktree `path` of `top`, opened (made when
/// `make`). Inside the repository (`.claude/worktrees`) no component may
/// be a link or anything but a directory; elsewhere it is our own place.
fn parent_dir(top: &Path, path: &Path, make: bool) -> Result<Dir> {
    let parent = path.parent().unwrap_or(path);
    let refused = |e: std::io::Error| {
        Error::Invalid(format!(
            "{}: {e}; refusing to make or use a worktree there (a link in the project could lead git outside it). \
             Remove it and start again",
            parent.display()
        ))
    };
    match parent.strip_prefix(top) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            let root = Dir::open(top).map_err(|e| Error::io(top, e))?;
            if make {
                root.make_dirs(rel).map_err(refused)
            } else {
                root.sub(rel).map_err(refused)
            }
        }
        _ => {
            if make {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            Dir::open(parent).map_err(|e| Error::io(parent, e))
        }
    }
}

/// The worktree `path` of `top` as a directory: no link on the way inside
/// the repository.
fn worktree_dir_of(top: &Path, path: &Path) -> Result<Dir> {
    let parent = parent_dir(top, path, false)?;
    let name = path.file_name().map(Path::new).unwrap_or(Path::new("."));
    parent.sub(name).map_err(|e| {
        Error::Invalid(format!(
            "{}: {e}; refusing to use it as a worktree",
            path.display()
        ))
    })
}

use crate::core::untrusted::beneath::Dir;

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

/// Where the worktrees of `top` are made: Claude Code's place,
/// `<repo>/.claude/worktrees`, or under `worktree.dir`.
fn home_of(ctx: &Ctx, top: &Path) -> Result<PathBuf> {
    let settings = ctx.global()?;
    let Some(d) = expand_dir(settings.worktree.dir.as_deref()) else {
        return Ok(top.join(CLAUDE_PLACE));
    };
    // One directory per repository: two with one basename must not
    // share (`<basename>-<digest of its path>`).
    let base = d.join(format!(
        "{}-{}",
        crate::state::registry::project_name_of(top),
        digest(top)
    ));
    let state = ctx.dirs.root();
    let state = state.canonicalize().unwrap_or_else(|_| state.to_path_buf());
    if base.starts_with(&state) || base.starts_with(ctx.dirs.root()) {
        return Err(Error::Invalid(format!(
            "worktree.dir {} is inside the state directory; choose another place",
            base.display()
        )));
    }
    Ok(base)
}

/// Claude Code's place for worktrees, inside the repository.
pub const CLAUDE_PLACE: &str = ".claude/worktrees";

/// Where the worktree `name` of `repo` goes.
pub(crate) fn place(ctx: &Ctx, repo: &Path, name: &str) -> Result<PathBuf> {
    Ok(home_of(ctx, repo)?.join(name))
}

/// Every directory worktrees of `top` are looked for in: where new ones
/// go first, then the older places (the sibling `<repo>.worktrees`, and
/// `<dir>/<basename>` of `worktree.dir`), then Claude Code's when
/// `worktree.dir` sends new ones elsewhere.
pub(crate) fn places(ctx: &Ctx, top: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = home_of(ctx, top).into_iter().collect();
    let mut sibling = top.as_os_str().to_owned();
    sibling.push(".worktrees");
    out.push(PathBuf::from(sibling));
    if let Some(d) = worktree_dir(ctx) {
        out.push(d.join(crate::state::registry::project_name_of(top)));
    }
    out.push(top.join(CLAUDE_PLACE));
    let mut seen = Vec::new();
    out.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    out
}

/// A name `-w` without one gets: two words and four hex digits
/// (`brave-otter-3f2a`), none of `top`'s branches or worktrees yet.
pub fn made_up_name(ctx: &Ctx, top: &Path) -> Result<String> {
    const ADJECTIVES: &[&str] = &[
        "amber", "bold", "brave", "bright", "calm", "clever", "cosy", "crisp", "eager", "fair",
        "fuzzy", "gentle", "glad", "golden", "happy", "jolly", "keen", "kind", "lively", "lucky",
        "mellow", "merry", "nimble", "plucky", "proud", "quick", "quiet", "rapid", "shiny",
        "steady", "sunny", "swift", "tidy", "vivid", "warm", "witty",
    ];
    const NOUNS: &[&str] = &[
        "badger", "beacon", "birch", "cedar", "comet", "coral", "crane", "falcon", "fern", "finch",
        "fox", "harbor", "heron", "lark", "lynx", "maple", "meadow", "otter", "owl", "panda",
        "pine", "quartz", "raven", "river", "robin", "sparrow", "spruce", "summit", "tiger",
        "tulip", "walrus", "willow", "wren", "yak",
    ];
    let taken = |n: &str| {
        branch_of(top, n).is_some()
            || places(ctx, top)
                .iter()
                .any(|p| p.join(n).symlink_metadata().is_ok())
    };
    for _ in 0..32 {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).map_err(|e| Error::Other(format!("random name: {e}")))?;
        let name = format!(
            "{}-{}-{:02x}{:02x}",
            ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()],
            NOUNS[usize::from(r[1]) % NOUNS.len()],
            r[2],
            r[3]
        );
        if !taken(&name) {
            return Ok(name);
        }
    }
    Err(Error::Invalid(
        "could not make up a worktree name no branch or worktree has; give one: -w NAME".into(),
    ))
}

/// The existing branch a worktree `name` uses: `name`, `worktree-NAME`, or
/// the older `ai/NAME`.
fn branch_of(top: &Path, name: &str) -> Option<String> {
    [
        name.to_owned(),
        format!("{BRANCH_PREFIX}{name}"),
        format!("ai/{name}"),
    ]
    .into_iter()
    .find(|b| has_branch(top, b))
}

/// Whether the repository of `dir` has the local branch `b`.
fn has_branch(dir: &Path, b: &str) -> bool {
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{b}"),
        ],
    )
    .is_ok()
}

/// The local branch named as origin's default one (`origin/HEAD` →
/// `origin/main` → `main`), when there is one.
fn local_of_remote_default(dir: &Path) -> Option<String> {
    git(
        dir,
        &[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ],
    )
    .ok()
    .and_then(|r| r.strip_prefix("origin/").map(str::to_owned))
    .filter(|b| has_branch(dir, b))
}

/// What a new worktree's branch is called: `worktree-NAME`, as Claude Code
/// names it.
pub const BRANCH_PREFIX: &str = "worktree-";

/// Where a new worktree's branch starts (a commit; `None`: git's default,
/// `HEAD`) and the branch of the main checkout it lands into.
fn start_point(top: &Path, base: BaseRef) -> (Option<String>, Option<String>) {
    let commit = |r: &str| {
        git(
            top,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
        )
        .ok()
    };
    let current = || git(top, &["symbolic-ref", "--quiet", "--short", "HEAD"]).ok();
    if base == BaseRef::Remote {
        if let Some(c) = commit("refs/remotes/origin/HEAD") {
            return (Some(c), local_of_remote_default(top).or_else(current));
        }
    }
    (commit("HEAD"), current())
}

use crate::state::config::BaseRef;

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

/// The worktree a start asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// `-w NAME`: made, or the one of that name used.
    Named(String),
    /// `-w` alone: a new one, its name made up ([`made_up_name`]).
    MadeUp,
}

/// The main repository's top directory around `repo` and its common git
/// directory, both checked (see [`check_git_dir`]).
fn repository(ctx: &Ctx, repo: &Path) -> Result<(PathBuf, PathBuf)> {
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
    Ok((top, common))
}

/// The repository around `repo` (its top and common git directory) and
/// the name `wanted` gives: checked, or made up.
fn resolve(ctx: &Ctx, repo: &Path, wanted: &Wanted) -> Result<(PathBuf, PathBuf, String)> {
    if let Wanted::Named(name) = wanted {
        check_name(name)?;
    }
    let (top, common) = repository(ctx, repo)?;
    let name = match wanted {
        Wanted::Named(n) => n.clone(),
        Wanted::MadeUp => made_up_name(ctx, &top)?,
    };
    Ok((top, common, name))
}

/// Creates (or reuses) the worktree `wanted` of the repository `repo`;
/// copies the `.worktreeinclude` and `worktree.copy` files into a new one.
/// What it had to redo or could not copy goes to `warnings`.
pub fn prepare(ctx: &Ctx, repo: &Path, wanted: &Wanted, warnings: &mut Warnings) -> Result<Info> {
    let (top, common, name) = resolve(ctx, repo, wanted)?;
    let name = name.as_str();
    let path = place(ctx, &top, name)?;
    remember_repo(ctx, &top)?;
    // One start at a time makes a given worktree: the others wait, then
    // use what it made.
    let _lock = lock(ctx, &path)?;
    let path = if path.join(".git").symlink_metadata().is_ok() {
        path
    } else {
        made_before(ctx, &top, &common, name).unwrap_or(path)
    };
    let pending = pending_mark(ctx, &path);
    let registered = registered(&top, &path);
    // Inside the repository: nothing on its way may be a link, whether it
    // is made now or used.
    if path.starts_with(&top) {
        parent_dir(&top, &path, true)?;
        if path.symlink_metadata().is_ok() {
            worktree_dir_of(&top, &path)?;
        }
    }
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
    parent_dir(&top, &path, true)?;
    if path.starts_with(&top) {
        exclude_place(&top, &common, &path);
    }
    let add = |args: &[&str]| git_writing(&top, args, &common, &path);
    std::fs::write(&pending, &p).map_err(|e| Error::io(&pending, e))?;
    let (from, lands) = start_point(&top, ctx.global()?.worktree.base_ref);
    let branch = match branch_of(&top, name) {
        Some(b) => {
            add(&["worktree", "add", &p, &b])?;
            b
        }
        None => {
            let b = format!("{BRANCH_PREFIX}{name}");
            let mut args = vec!["worktree", "add", "--no-track", "-b", &b, &p];
            if let Some(c) = &from {
                args.push(c);
            }
            add(&args)?;
            b
        }
    };
    let dirs = Dir::open(&top)
        .map_err(|e| Error::io(&top, e))
        .and_then(|f| Ok((f, worktree_dir_of(&top, &path)?)));
    match dirs {
        Ok((from, to)) => {
            include_files(&top, &from, &to, warnings);
            copy_files(&ctx.global()?.worktree.copy, &from, &to, warnings);
        }
        Err(e) => warnings.warn(format!("worktree {name}: nothing copied: {e}")),
    }
    // Whole now: a later start may use it.
    let _ = std::fs::remove_file(&pending);
    let mut info = Info::new(
        name.to_owned(),
        branch,
        path.canonicalize().unwrap_or(path),
        top,
    );
    info.base = lands;
    Ok(info)
}

/// A worktree `name` of `top` made in an older place (see [`places`]):
/// still used where git names it back as one of `top`'s.
fn made_before(ctx: &Ctx, top: &Path, common: &Path, name: &str) -> Option<PathBuf> {
    places(ctx, top)
        .into_iter()
        .skip(1)
        .map(|d| d.join(name))
        .find(|p| linked_common(p).as_deref() == Some(common))
}

/// Keeps `.claude/worktrees/` out of the main checkout's `git status`
/// (each worktree there is a nested checkout git would show as untracked,
/// and a dirty main checkout stops a `land`): a line in the repository's
/// `info/exclude`, unless it is ignored already. Best effort; never
/// through a link.
fn exclude_place(top: &Path, common: &Path, path: &Path) {
    use crate::core::untrusted::tree::Tree;
    use std::ffi::OsStr;
    let Ok(rel) = path.strip_prefix(top) else {
        return;
    };
    let rel = rel.to_string_lossy();
    if git(top, &["check-ignore", "-q", "--", &rel]).is_ok() {
        return;
    }
    let line = format!("/{CLAUDE_PLACE}/");
    let _ = Tree::open(common)
        .and_then(|g| g.mkdir(OsStr::new("info"), 0o755))
        .and_then(|info| {
            let mut text = match info.read_file(OsStr::new("exclude"), 1 << 20) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            if !text.is_empty() && !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text.extend_from_slice(format!("{line}\n").as_bytes());
            info.write_replace(OsStr::new("exclude"), &text)
        });
}

/// `.worktreeinclude` at the repository's root, as Claude Code reads it:
/// gitignore patterns; each file that matches one and that git ignores
/// (untracked and ignored, never a tracked one) is copied into the new
/// worktree, as [`copy_files`] copies (no link followed at any component).
/// The file and the repository are the box's: the file is read capped and
/// not through a link, git lists the candidates, hardened.
fn include_files(top: &Path, from: &Dir, to: &Dir, warnings: &mut Warnings) {
    const CAP: u64 = 64 << 10;
    const MOST: usize = 10_000;
    let Some(patterns) = crate::core::untrusted::read(&top.join(".worktreeinclude"), CAP) else {
        return;
    };
    let shown = |e: &dyn std::fmt::Display| crate::core::untrusted::printable(&e.to_string());
    let listed = tempfile::NamedTempFile::new().and_then(|mut f| {
        use std::io::Write;
        f.write_all(&patterns)?;
        f.flush()?;
        Ok(f)
    });
    let listed = match listed {
        Ok(f) => f,
        Err(e) => {
            warnings.warn(format!(".worktreeinclude: nothing copied: {e}"));
            return;
        }
    };
    let exclude_from = format!("--exclude-from={}", listed.path().display());
    // Untracked files the patterns match (tracked ones are never listed).
    let matching = match git(
        top,
        &["ls-files", "-z", "--others", "--ignored", &exclude_from],
    ) {
        Ok(out) => out,
        Err(e) => {
            warnings.warn(format!(".worktreeinclude: nothing copied: {}", shown(&e)));
            return;
        }
    };
    let matching: Vec<&str> = matching.split('\0').filter(|f| !f.is_empty()).collect();
    // Of those, the ones git ignores (a line per path; a name git would
    // quote matches no candidate and is left out).
    let mut ignored = Vec::new();
    for chunk in matching.chunks(256) {
        let mut args = vec!["-c", "core.quotePath=false", "check-ignore", "--"];
        args.extend(chunk);
        // Exit 1: none of these is ignored.
        if let Ok(out) = crate::core::untrusted::git::output(top, &args) {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            ignored.extend(
                text.lines()
                    .filter(|f| chunk.contains(f))
                    .map(str::to_owned),
            );
        }
    }
    if ignored.len() > MOST {
        warnings.warn(format!(
            ".worktreeinclude: {} files match; only the first {MOST} copied",
            ignored.len()
        ));
        ignored.truncate(MOST);
    }
    for f in ignored {
        if let Err(e) = crate::core::untrusted::beneath::copy_new(from, to, Path::new(&f)) {
            warnings.warn(format!(
                ".worktreeinclude: {} not copied: {}",
                crate::core::untrusted::printable(&f),
                shown(&e)
            ));
        }
    }
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

/// `worktree.copy`: each file copied from the repository into the new
/// worktree only when it is a regular file inside the repository (no
/// symlink at any component) and nothing is at its place in the worktree
/// yet ([`crate::core::untrusted::beneath`]); a refused one is named in one line
/// and the start goes on.
fn copy_files(copy: &[String], from: &Dir, to: &Dir, warnings: &mut Warnings) {
    use crate::core::untrusted::beneath::copy_new;
    for f in copy {
        if let Err(e) = copy_new(from, to, Path::new(f)) {
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
    wanted: &Wanted,
    mode: &crate::core::types::Mode,
    warnings: &mut Warnings,
) -> Result<(Info, PathBuf, crate::core::types::InstanceId)> {
    let info = prepare(ctx, project, wanted, warnings)?;
    let dir = crate::state::project::of(&ctx.dirs, Some(&info.path))?;
    let id = id_in(ctx, &info, mode)?;
    Ok((info, dir, id))
}

/// A `-w` start in clone mode makes no worktree here: the box's clone of
/// the repository is the agent's own, on a branch of its own. Its name
/// (made up when none was given) and the instance id a worktree of that
/// name gets (`<project>-<NAME>-<mode>`), so that `-w NAME` names one
/// agent of the project whichever way it reaches the box.
pub fn clone_target(
    ctx: &Ctx,
    project: &Path,
    wanted: &Wanted,
    mode: &crate::core::types::Mode,
) -> Result<(String, crate::core::types::InstanceId)> {
    let (top, _, name) = resolve(ctx, project, wanted)?;
    let id = id_of(&top, &name, "", mode)?;
    Ok((name, id))
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
    id_of(&info.repo, &info.name, n, mode)
}

fn id_of(
    repo: &Path,
    name: &str,
    n: &str,
    mode: &crate::core::types::Mode,
) -> Result<crate::core::types::InstanceId> {
    let project = crate::state::registry::project_name_of(repo);
    let name: String = name
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

/// The environment that makes git in the box of `project` commit as the
/// user (`GIT_AUTHOR_*`, `GIT_COMMITTER_*`: the caller's environment, the
/// repository's `user.*`, the user's global config), for a project in a
/// git repository; nothing when no identity is known. The user's git
/// config itself never goes in the box.
pub fn identity_env(project: &Path) -> Vec<String> {
    // Most of a start's own time went to asking git (five processes, the
    // guarded runner's probes included) about a project that is in no
    // repository: one without `.git` above it is not in a work tree (git
    // runs with the caller's `GIT_*` removed, so nothing points it elsewhere).
    if !project.ancestors().any(|d| d.join(".git").exists()) {
        return Vec::new();
    }
    if !git(project, &["rev-parse", "--is-inside-work-tree"]).is_ok_and(|o| o == "true") {
        return Vec::new();
    }
    crate::core::untrusted::git::Identity::of(Some(project))
        .env()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Notes the worktree on the instance (kept across restarts); the base
/// recorded when it was made stays when a later start reuses it.
pub fn record(ctx: &Ctx, id: &crate::core::types::InstanceId, info: &Info) -> Result<()> {
    ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(id) {
            let mut info = info.clone();
            if info.base.is_none() {
                info.base = i
                    .worktree
                    .as_ref()
                    .filter(|w| w.path == info.path)
                    .and_then(|w| w.base.clone());
            }
            i.worktree = Some(info);
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
    let default = local_of_remote_default(repo);
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
