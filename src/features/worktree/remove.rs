//! `rm ID` and the instance's worktree: removed when asked (`--worktree`,
//! or yes at the prompt on a terminal) and only when nothing would be lost
//! (no uncommitted changes, no unpushed commits) unless forced. Its branch
//! is always kept: removing a worktree never deletes a commit.

use super::inventory::{changes, Changes};
use super::{git, Info};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::state::context::Ctx;
use crate::state::registry::Registry;
use std::path::Path;

/// The worktree an instance runs in, as it is now.
#[derive(Debug)]
pub struct Plan {
    pub info: Info,
    pub changes: Changes,
    /// Other instances in the same worktree (it stays while they exist).
    pub shared_with: Vec<InstanceId>,
}

/// The worktree `id` runs in, if it made one that git still lists.
pub fn plan(ctx: &Ctx, reg: &Registry, id: &InstanceId) -> Result<Option<Plan>> {
    let Some(inst) = reg.get(id) else {
        return Ok(None);
    };
    let Some(info) = inst.worktree.clone() else {
        return Ok(None);
    };
    // An entry that does not say where (hand-edited): nothing to act on.
    if info.path.as_os_str().is_empty()
        || info.repo.as_os_str().is_empty()
        || !listed(&info.repo, &info.path)
    {
        return Ok(None);
    }
    let copy = ctx.global()?.worktree.copy;
    let changes = if !info.path.exists() {
        // Its directory is gone (a removal killed before git forgot it):
        // nothing left to lose.
        Changes::default()
    } else if info.path.join(".git").symlink_metadata().is_err() {
        // Half removed, or its .git deleted: git cannot tell what is in
        // it, so only --force removes it.
        Changes {
            dirty: true,
            unpushed: 0,
        }
    } else {
        changes(&info.path, Some(&info.branch), &copy, &info.repo)?
    };
    let shared_with = users(reg, &info.path, id);
    // From here the branch is only shown (the agent may have named it).
    let info = Info {
        branch: crate::core::untrusted::printable(&info.branch),
        ..info
    };
    Ok(Some(Plan {
        info,
        changes,
        shared_with,
    }))
}

/// The instances other than `id` that run in the worktree at `path`.
pub fn users(reg: &Registry, path: &Path, id: &InstanceId) -> Vec<InstanceId> {
    reg.instances
        .values()
        .filter(|i| &i.id != id)
        .filter(|i| i.worktree.as_ref().is_some_and(|w| w.path == path))
        .map(|i| i.id.clone())
        .collect()
}

/// Whether git lists `path` as a linked worktree of `repo` (never the
/// repository itself).
fn listed(repo: &Path, path: &Path) -> bool {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (repo_c, path_c) = (canon(repo), canon(path));
    // A path that is gone may still be listed: a removal killed after
    // deleting it; `rm --worktree` again finishes it.
    if repo_c == path_c {
        return false;
    }
    git(repo, &["worktree", "list", "--porcelain", "-z"]).is_ok_and(|out| {
        out.split('\0')
            .filter_map(|l| l.strip_prefix("worktree "))
            .any(|p| canon(Path::new(p)) == path_c)
    })
}

/// Why the worktree may not go without `--force` (None: it may).
pub fn refusal(plan: &Plan) -> Option<String> {
    (!plan.changes.clean()).then(|| {
        format!(
            "its worktree {} has {}",
            plan.info.path.display(),
            plan.changes.describe()
        )
    })
}

/// Removes the worktree (its branch stays). The caller decided it may go.
pub fn remove(plan: &Plan) -> Result<()> {
    let path = plan.info.path.to_string_lossy().into_owned();
    // Killed halfway before, its .git file gone: git will not remove what
    // it cannot validate; the rest goes first (never following a link),
    // then git forgets it.
    if plan.info.path.join(".git").symlink_metadata().is_err() && plan.info.path.exists() {
        std::fs::remove_dir_all(&plan.info.path).map_err(|e| Error::io(&plan.info.path, e))?;
    }
    // `--force` for git: our own check (which ignores unchanged
    // `worktree.copy` copies) is the policy; git refuses any untracked file.
    let common = git(
        &plan.info.repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    let common = std::path::PathBuf::from(common);
    let args = ["worktree", "remove", "--force", &path];
    super::git_writing(&plan.info.repo, &args, &common, &plan.info.path).map_err(|e| {
        Error::Invalid(format!(
            "could not remove the worktree {}: {e}",
            plan.info.path.display()
        ))
    })?;
    Ok(())
}

/// The mark of an `rm --worktree` under way for `id`, in the state home:
/// written before its instance goes, removed once its worktree went, so
/// an `rm` killed in between can be run again.
fn mark_of(ctx: &Ctx, id: &InstanceId) -> Result<std::path::PathBuf> {
    Ok(super::marks_dir(ctx)?.join(format!("rm-{id}.json")))
}

/// Notes that `id`'s worktree is to be removed with it.
pub fn begin(ctx: &Ctx, id: &InstanceId, plan: &Plan) -> Result<()> {
    let f = mark_of(ctx, id)?;
    let text = serde_json::to_string(&plan.info).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&f, text).map_err(|e| Error::io(&f, e))
}

/// The `rm --worktree` of `id` is over.
pub fn done(ctx: &Ctx, id: &InstanceId) {
    if let Ok(f) = mark_of(ctx, id) {
        let _ = std::fs::remove_file(f);
    }
}

/// The worktree an `rm --worktree` of `id` that was killed after its
/// instance went left behind, if git still lists it.
pub fn interrupted(ctx: &Ctx, id: &InstanceId) -> Result<Option<Plan>> {
    let f = mark_of(ctx, id)?;
    let Some(info) = std::fs::read(&f)
        .ok()
        .and_then(|raw| serde_json::from_slice::<Info>(&raw).ok())
    else {
        return Ok(None);
    };
    // An entry that does not say where (hand-edited): nothing to act on.
    if info.path.as_os_str().is_empty()
        || info.repo.as_os_str().is_empty()
        || !listed(&info.repo, &info.path)
    {
        let _ = std::fs::remove_file(&f);
        return Ok(None);
    }
    let changes = if info.path.join(".git").symlink_metadata().is_ok() {
        let copy = ctx.global()?.worktree.copy;
        changes(&info.path, Some(&info.branch), &copy, &info.repo)?
    } else {
        Changes {
            dirty: info.path.exists(),
            unpushed: 0,
        }
    };
    Ok(Some(Plan {
        info,
        changes,
        shared_with: Vec::new(),
    }))
}
