//! Clone mode (`--clone`, `project.mode = "clone"`, and every engine on
//! another machine): the box gets a copy of the project's repository in a
//! volume of the engine, not a mount of the host's directory. The copy is
//! the committed history plus the current uncommitted state as one more
//! commit, on the instance's own branch (`ai/<id>`); `fetch` brings that
//! branch back as `refs/remotes/ai-sessions/<id>`.
//!
//! Both crossings run only our guarded git (`core::untrusted::git`): the
//! repository is the agent's to write in mount mode, and what comes out of
//! a box is the agent's entirely. Nothing of either is run on the host.

mod fetch;
mod seed;

pub use fetch::{fetch, Fetched, Source, FETCH_LABEL};
pub use seed::{seed, snapshot};

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::untrusted::git;
use crate::engine::Engine;
use crate::launch::{BoxFile, LaunchPlan, LaunchSpec, PlannedVolume, Upload};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Volume label: which of an instance's volumes it is (`repo`, `state`).
pub const VOLUME_LABEL: &str = "ai.volume";

/// The agent's branch in the box.
pub fn branch(id: &InstanceId) -> String {
    format!("ai/{id}")
}

/// The host ref holding the commit the clone was made from: what `diff`
/// compares with (and what keeps it from being collected).
pub fn base_ref(id: &InstanceId) -> String {
    format!("refs/ai-sessions/{id}/base")
}

/// Where `fetch` puts the box's branch: a remote-tracking ref,
/// `ai-sessions/<id>` to git.
pub fn fetched_ref(id: &InstanceId) -> String {
    format!("refs/remotes/ai-sessions/{id}")
}

/// Where `fetch --uncommitted` puts a commit of the box's uncommitted
/// changes (on top of its branch).
pub fn uncommitted_ref(id: &InstanceId) -> String {
    format!("refs/remotes/ai-sessions/{id}-uncommitted")
}

/// The volume holding the clone of the instance whose container is
/// `container_name`.
pub fn volume_name(container_name: &str) -> String {
    format!("{container_name}-repo")
}

/// Whether the volume `name` holds a clone's repository: the agent's work,
/// until fetched.
pub fn is_repo_volume(name: &str) -> bool {
    name.ends_with("-repo")
}

/// The volume holding the agent's state dir of a clone instance (the
/// host's state dir is not mounted either).
pub fn state_volume_name(container_name: &str) -> String {
    format!("{container_name}-state")
}

/// The top of the git repository `project` is in (the nearest directory
/// holding a `.git`: found by us, not by git, whose `core.worktree` in a
/// config the box may have written could name `/`); clone mode needs one.
pub fn top_of(project: &Path) -> Result<PathBuf> {
    project
        .ancestors()
        .find(|d| d.join(".git").symlink_metadata().is_ok())
        .filter(|d| git::run(d, &["rev-parse", "--git-dir"]).is_ok())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "clone mode sends the project's git repository, and {} is not in one; \
                 `git init` it, or start without --clone",
                project.display()
            ))
        })
}

/// The branch the repository at `top` is on (none: a detached `HEAD`).
pub fn current_branch(top: &Path) -> Option<String> {
    git::run(top, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .ok()
        .filter(|b| !b.is_empty())
}

/// Drops the host ref of the commit `id` was sent (`rm`): nothing can
/// compare with it any more. What was fetched stays: it is the user's.
pub fn forget(top: &Path, id: &InstanceId) -> Result<()> {
    let common = common_dir(top)?;
    git::run_writing(top, &["update-ref", "-d", &base_ref(id)], &[&common]).map(|_| ())
}

/// The git directory the repository at `top` and its worktrees share.
pub(crate) fn common_dir(top: &Path) -> Result<PathBuf> {
    git::run(
        top,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .map(PathBuf::from)
}

/// A volume of the instance whose plan this is, named `<container>-<which>`
/// and labelled like its container (so `rm` and `gc` find it).
pub fn instance_volume(plan: &LaunchPlan, which: &str) -> PlannedVolume {
    let keep = [
        crate::launch::INSTANCE_LABEL,
        crate::engine::HOME_LABEL,
        crate::engine::MANAGED_LABEL,
    ];
    let mut labels: HashMap<String, String> = plan
        .agent
        .labels
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(VOLUME_LABEL.to_owned(), which.to_owned());
    PlannedVolume {
        name: format!("{}-{which}", plan.agent.name),
        labels,
    }
}

/// A login file bigger than this is not copied into a box.
const LOGIN_CAP: u64 = 1 << 20;
/// Nor a file of the instance's state dir on this machine bigger than this.
const STATE_FILE_CAP: u64 = 32 << 20;

/// Turns the plan into a clone instance's: no host path is mounted; the
/// repository's volume at its top (seeded with the clone when the volume
/// is new) and the agent's state in a volume of its own. What was bound
/// read-only into the state dir (the shared login, or the placeholder the
/// credential broker gives in its place) is copied in instead, at every
/// start, private to the box's user; a new state volume also starts with
/// the files of the instance's state dir here (the first-run answers).
pub fn contribute(engine: &Engine, spec: &LaunchSpec, plan: &mut LaunchPlan) -> Result<()> {
    let Some(info) = spec.clone else {
        return Ok(());
    };
    let repo = instance_volume(plan, "repo");
    let state = instance_volume(plan, "state");
    debug_assert_eq!(repo.name, volume_name(&plan.agent.name));
    debug_assert_eq!(state.name, state_volume_name(&plan.agent.name));
    let repo_volume = repo.name.clone();
    let state_dir = spec.eff.agent.state_dir.trim_end_matches('/').to_owned();
    // A volume that exists holds the agent's work from an earlier start
    // (a restart, a resume): it is not sent again.
    let new = !engine.volume_exists(&repo_volume)?;
    let login = login_files(&plan.agent.binds, &state_dir);
    // What a mount would show: the state dir, with the login (or its
    // placeholder) over a file of its name there.
    let mut files: Vec<BoxFile> = match new {
        true => state_files(&spec.state_dir)
            .into_iter()
            .filter(|f| !login.iter().any(|l| l.name == f.name))
            .collect(),
        false => Vec::new(),
    };
    files.extend(login);
    // Nothing of the host: the project, the state dir, the activity
    // directory and the shared login stay where they are.
    plan.agent.binds.clear();
    let top = info.repo.to_string_lossy().into_owned();
    plan.agent.volumes.push((repo_volume.clone(), top));
    plan.agent
        .volumes
        .push((state.name.clone(), spec.eff.agent.state_dir.clone()));
    plan.volumes.push(repo);
    plan.volumes.push(state);
    plan.agent.labels.insert("ai.clone".to_owned(), repo_volume);
    if !files.is_empty() {
        plan.uploads.push(Upload {
            at: state_dir,
            files,
        });
    }
    if new {
        plan.seed = Some(seed(&info.repo, spec.id)?);
    }
    Ok(())
}

/// The files bound read-only straight into the state dir (the login, or
/// its placeholder), as copies: regular files only, never through a link.
fn login_files(binds: &[crate::engine::container::Bind], state_dir: &str) -> Vec<BoxFile> {
    binds
        .iter()
        .filter(|b| b.read_only)
        .filter_map(|b| {
            let name = Path::new(&b.target)
                .strip_prefix(state_dir)
                .ok()?
                .to_str()
                .filter(|n| !n.is_empty() && !n.contains('/'))?;
            let data = crate::core::untrusted::read(&b.source, LOGIN_CAP + 1)
                .filter(|d| d.len() as u64 <= LOGIN_CAP)?;
            Some(BoxFile::private(name, data))
        })
        .collect()
}

/// The regular files at the top of the instance's state dir on this
/// machine (its first-run answers; a box of it in mount mode wrote there
/// before: read as untrusted, links and anything odd skipped).
fn state_files(dir: &Path) -> Vec<BoxFile> {
    let Ok(tree) = crate::core::untrusted::tree::Tree::open(dir) else {
        return Vec::new();
    };
    tree.names()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let name = n.to_str()?.to_owned();
            // Empty: the engine's mount point of a login, from a start in
            // mount mode; not a login.
            let data = tree
                .read_file(&n, STATE_FILE_CAP)
                .ok()
                .filter(|d| !d.is_empty())?;
            Some(BoxFile::private(&name, data))
        })
        .collect()
}
