//! `diff`: what an instance's agent changed, for the CLI, the API and the
//! dashboard. A worktree instance is compared with the merge-base of its
//! branch and the branch it lands into (committed and uncommitted work,
//! untracked files); an instance on the main checkout, with `HEAD` (its
//! uncommitted changes: the commits there are the user's too).

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::features::review::diff::{self, Against, Diff};
use crate::state::context::Ctx;
use crate::state::registry::Instance;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `diff --json` and `GET /instances/{id}/diff` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: InstanceId,
    /// The branch the work is on (none: a detached `HEAD`).
    pub branch: Option<String>,
    /// What it is compared with: the base branch, or `HEAD` for an
    /// instance on the main checkout.
    pub base: String,
    /// `worktree` or `checkout` (the main checkout: uncommitted only).
    pub scope: Scope,
    #[serde(flatten)]
    pub diff: Diff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Worktree,
    Checkout,
    /// A clone instance: its box's branch and uncommitted changes, fetched
    /// now, against the commit it was sent.
    Clone,
}

/// The changes of the instance `id`.
pub fn diff(ctx: &Ctx, id: &InstanceId) -> Result<Report> {
    let inst = crate::service::control::lookup(ctx, id)?;
    match &inst.clone {
        Some(info) => of_clone(ctx, &inst, info),
        None => of(&inst),
    }
}

/// A clone instance's changes: fetched (its branch and a commit of what
/// it has not committed), then compared with the commit it was sent.
fn of_clone(
    ctx: &Ctx,
    inst: &Instance,
    info: &crate::state::registry::CloneInfo,
) -> Result<Report> {
    use crate::features::clone;
    let id = &inst.id;
    let fetched = crate::service::clone::fetch(ctx, id, true)?;
    let repo = &info.repo;
    let rev = |r: &str| {
        crate::core::untrusted::git::run(repo, &["rev-parse", "--verify", "--quiet", r]).ok()
    };
    let base = rev(&format!("{}^{{commit}}", clone::base_ref(id))).ok_or_else(|| {
        Error::Invalid(format!(
            "{id}: {} has no {}: there is no base to compare with",
            repo.display(),
            clone::base_ref(id)
        ))
    })?;
    // Its uncommitted work on top of its branch, when it has any.
    let tip = fetched.uncommitted.unwrap_or(fetched.commit);
    Ok(Report {
        id: id.clone(),
        branch: Some(clone::branch(id)),
        base: clone::base_ref(id),
        scope: Scope::Clone,
        diff: diff::between(repo, &base, &tip)?,
    })
}

fn of(inst: &Instance) -> Result<Report> {
    if let Some(info) = inst
        .worktree
        .as_ref()
        .filter(|w| !w.path.as_os_str().is_empty())
    {
        let base = crate::features::worktree::base_branch(info)?;
        let dir = &info.path;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: its worktree {} is gone",
                inst.id,
                dir.display()
            )));
        }
        let diff = diff::changes(dir, Against::MergeBase(&base))?;
        return Ok(Report {
            id: inst.id.clone(),
            branch: branch_of(dir).or_else(|| Some(info.branch.clone()).filter(|b| !b.is_empty())),
            base,
            scope: Scope::Worktree,
            diff,
        });
    }
    let dir = PathBuf::from(&inst.project_path);
    let top =
        crate::core::untrusted::git::run_in_work_tree(&dir, &["rev-parse", "--show-toplevel"])
            .map_err(|_| {
                Error::Invalid(format!(
                    "{}: {} is not a git repository: there is no base to compare with",
                    inst.id,
                    dir.display()
                ))
            })?;
    let dir = if top.is_empty() {
        dir
    } else {
        PathBuf::from(top)
    };
    let diff = diff::changes(&dir, Against::Head)?;
    Ok(Report {
        id: inst.id.clone(),
        branch: branch_of(&dir),
        base: "HEAD".to_owned(),
        scope: Scope::Checkout,
        diff,
    })
}

/// The branch checked out in `dir` (none when detached).
fn branch_of(dir: &Path) -> Option<String> {
    crate::core::untrusted::git::run_in_work_tree(
        dir,
        &["symbolic-ref", "--quiet", "--short", "HEAD"],
    )
    .ok()
    .filter(|b| !b.is_empty())
}
