//! `land`: bringing a worktree's branch home into its base branch in the
//! user's main checkout (merge, squash or rebase), or pushing it for a pull
//! request. Plain paths and branch names in, git through the hardened
//! runner only: the repository's config and hooks are the agent's to
//! write, so no program they name runs, and every commit made here is the
//! user's (their identity, given by the caller).
//!
//! Nothing is changed until every check passed ([`check`]); a step that
//! fails midway is undone ([`apply`]): no half merge is ever left.

pub mod apply;
pub mod check;
pub mod pr;

use crate::core::error::Result;
use crate::core::untrusted::git::Identity;
use std::path::{Path, PathBuf};

/// What lands where: the worktree's branch into `base` of the main
/// checkout `repo`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The user's main checkout (its top).
    pub repo: PathBuf,
    /// The worktree the agent works in.
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    /// A clone instance: the ref its branch was fetched to (landed from
    /// instead of `refs/heads/<branch>`); its work tree is in its box.
    pub fetched: Option<String>,
}

/// How the branch lands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// A merge commit (`--no-ff`), the branch's commits kept.
    #[default]
    Merge,
    /// One commit on the base holding the whole change.
    Squash,
    /// The branch replayed onto the base, which then fast-forwards.
    Rebase,
}

impl Strategy {
    /// The past tense, for what was done ("merged").
    pub fn done(self) -> &'static str {
        match self {
            Strategy::Merge => "merged",
            Strategy::Squash => "squashed",
            Strategy::Rebase => "rebased",
        }
    }
}

/// A commit as shown: its short sha and subject (made printable: the
/// agent wrote it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

/// A read of the repository (the hardened runner).
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    crate::core::untrusted::git::run(dir, args)
}

/// A call that writes, as the user, beneath `dir` and the common git dir
/// only.
fn writing(dir: &Path, common: &Path, args: &[&str], who: &Identity) -> Result<String> {
    crate::core::untrusted::git::run_writing_as(dir, args, &[dir, common], Some(who))
}

/// The git directory the main checkout and its worktrees share.
pub fn common_dir(repo: &Path) -> Result<PathBuf> {
    git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .map(PathBuf::from)
}

/// The commit `rev` names in `dir`, shown.
pub fn commit(dir: &Path, rev: &str) -> Result<Commit> {
    let out = git(
        dir,
        &[
            "log",
            "-1",
            "--no-show-signature",
            "--format=%h%x00%s",
            rev,
            "--",
        ],
    )?;
    let (sha, subject) = out.split_once('\0').unwrap_or((&out, ""));
    Ok(Commit {
        sha: sha.to_owned(),
        subject: crate::core::untrusted::printable(subject),
    })
}

/// The full sha of `rev` in `dir`.
fn sha(dir: &Path, rev: &str) -> Result<String> {
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
}

/// The commit the branch is on now: what every later step uses, so
/// commits the agent makes meanwhile are neither checked nor landed.
pub fn tip(t: &Target) -> Result<String> {
    match &t.fetched {
        Some(r) => sha(&t.repo, r),
        None => sha(&t.repo, &head_ref(&t.branch)),
    }
}

/// `refs/heads/NAME`: a branch, never a tag or a sha of the same name.
fn head_ref(branch: &str) -> String {
    format!("refs/heads/{branch}")
}
