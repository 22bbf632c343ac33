//! What must hold before anything is touched; each failure is a refusal
//! naming the reason and the way out.

use super::{git, head_ref, Commit, Target};
use crate::core::error::{Error, Result};
use crate::core::untrusted::printable;
use std::path::Path;

/// The main checkout is on the base branch.
pub fn on_base(t: &Target) -> Result<()> {
    let on = git(&t.repo, &["symbolic-ref", "--quiet", "--short", "HEAD"]).ok();
    if on.as_deref() == Some(t.base.as_str()) {
        return Ok(());
    }
    let on = on.map_or_else(|| "a detached HEAD".to_owned(), |b| printable(&b));
    Err(Error::Invalid(format!(
        "the main checkout {} is on {on}, not on {}, the branch this lands into; \
         switch first: `git -C {} switch {}`",
        t.repo.display(),
        printable(&t.base),
        t.repo.display(),
        printable(&t.base),
    )))
}

/// The main checkout has no uncommitted change to a tracked file and no
/// merge, rebase or cherry-pick under way (untracked files are git's to
/// check: a merge that would overwrite one stops before writing).
pub fn main_clean(t: &Target, common: &Path) -> Result<()> {
    // Staged or not, against HEAD (no program runs: names only).
    let diff = crate::core::untrusted::git::run_in_work_tree(
        &t.repo,
        &["diff", "--name-only", "-z", "HEAD", "--"],
    )?;
    let changed: Vec<String> = diff
        .split('\0')
        .filter(|f| !f.is_empty())
        .take(10)
        .map(printable)
        .collect();
    if !changed.is_empty() {
        return Err(Error::Invalid(format!(
            "the main checkout {} has uncommitted changes ({}); commit or stash them there first",
            t.repo.display(),
            changed.join(", ")
        )));
    }
    let busy = [
        "MERGE_HEAD",
        "rebase-merge",
        "rebase-apply",
        "CHERRY_PICK_HEAD",
    ]
    .into_iter()
    .find(|f| common.join(f).symlink_metadata().is_ok());
    if let Some(f) = busy {
        return Err(Error::Invalid(format!(
            "the main checkout {} is in the middle of another operation ({f}); finish or abort it first",
            t.repo.display()
        )));
    }
    Ok(())
}

/// The worktree is on its branch (the agent may have switched).
pub fn worktree_on_branch(t: &Target) -> Result<()> {
    let on = git(&t.worktree, &["symbolic-ref", "--quiet", "--short", "HEAD"]).ok();
    if on.as_deref() == Some(t.branch.as_str()) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "the worktree {} is not on its branch {} (it is on {}); switch it back first: \
         `git -C {} switch {}`",
        t.worktree.display(),
        printable(&t.branch),
        on.map_or_else(|| "a detached HEAD".to_owned(), |b| printable(&b)),
        t.worktree.display(),
        printable(&t.branch),
    )))
}

/// The commits up to `tip` (the branch's, [`super::tip`]) the base does
/// not have yet, newest first (at most `cap` of them).
pub fn pending(t: &Target, tip: &str, cap: usize) -> Result<Vec<Commit>> {
    let range = format!("{}..{tip}", head_ref(&t.base));
    let max = format!("--max-count={cap}");
    let out = git(
        &t.repo,
        &[
            "log",
            "--no-show-signature",
            &max,
            "--format=%h%x00%s",
            &range,
            "--",
        ],
    )?;
    Ok(out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (sha, subject) = l.split_once('\0').unwrap_or((l, ""));
            Commit {
                sha: sha.to_owned(),
                subject: printable(subject),
            }
        })
        .collect())
}

/// What merging `tip` into the base would give, found without touching
/// either checkout (`merge-tree --write-tree` writes only objects, in the
/// common git dir).
pub enum Merged {
    /// The merged tree.
    Clean(String),
    /// The files that conflict.
    Conflicts(Vec<String>),
}

pub fn merged(t: &Target, common: &Path, tip: &str) -> Result<Merged> {
    let base = head_ref(&t.base);
    let args = [
        "merge-tree",
        "--write-tree",
        "--name-only",
        "-z",
        "--no-messages",
        &base,
        tip,
    ];
    let out = crate::core::untrusted::git::output_writing_as(&t.repo, &args, &[common], None)?;
    // The tree, then (on a conflict) a name per conflicted file, then an
    // empty field.
    let mut fields = out.stdout.split(|b| *b == 0);
    let tree = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    match out.status.code() {
        Some(0) => Ok(Merged::Clean(tree.trim().to_owned())),
        Some(1) => Ok(Merged::Conflicts(
            fields
                .take_while(|f| !f.is_empty())
                .map(|f| printable(&String::from_utf8_lossy(f)))
                .collect(),
        )),
        _ => Err(Error::Invalid(format!(
            "git merge-tree {base} {tip}: {}",
            printable(String::from_utf8_lossy(&out.stderr).trim())
        ))),
    }
}

/// Past this many changed files the untracked ones are left to git's own
/// check (which stops a merge before it writes, and is undone).
const OVERWRITE_CHECK_MAX: usize = 2000;

/// The untracked (and not ignored) files of the main checkout that landing
/// `tree` would overwrite: git would stop there, so they are named first.
pub fn overwritten(t: &Target, tree: &str) -> Result<Vec<String>> {
    let base = head_ref(&t.base);
    let changed = git(
        &t.repo,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            &base,
            tree,
            "--",
        ],
    )?;
    let specs: Vec<String> = changed
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(|f| format!(":(literal){f}"))
        .collect();
    if specs.is_empty() || specs.len() > OVERWRITE_CHECK_MAX {
        return Ok(Vec::new());
    }
    let mut args = vec!["ls-files", "--others", "--exclude-standard", "-z", "--"];
    args.extend(specs.iter().map(String::as_str));
    let found = crate::core::untrusted::git::run_in_work_tree(&t.repo, &args)?;
    Ok(found
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(printable)
        .collect())
}

/// The refusal for untracked `files` in the way.
pub fn overwrite_refusal(t: &Target, files: &[String]) -> Error {
    Error::Invalid(format!(
        "landing {} would overwrite untracked files in the main checkout {}: {}; \
         nothing was changed. Move or remove them there first",
        printable(&t.branch),
        t.repo.display(),
        files.join(", ")
    ))
}

/// The refusal for `files` conflicting, with how to resolve them.
pub fn conflict_refusal(t: &Target, files: &[String]) -> Error {
    Error::Invalid(format!(
        "{} does not merge cleanly into {}: {} conflict{}; nothing was changed. \
         Resolve it in the worktree: `cd {} && git merge {}`, fix the files, commit, then land again",
        printable(&t.branch),
        printable(&t.base),
        files.join(", "),
        if files.len() == 1 { "s" } else { "" },
        t.worktree.display(),
        printable(&t.base),
    ))
}
