//! What a clone instance's volume starts with: the repository cloned on
//! the host into a scratch directory (from a bundle of the instance's
//! commit), as a tar rooted at the repository's path.

use super::{base_ref, branch, common_dir};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::untrusted::git::{self, Identity};
use std::path::Path;

/// A commit of the work tree `dir` as it is now (tracked and untracked
/// files, not ignored ones) on top of its `HEAD`; `HEAD` itself when
/// nothing changed. Made with a scratch index in `scratch`: the user's
/// index and files stay as they are. `common` (the git dir, where the
/// objects go) and `scratch` are all git may write.
pub fn snapshot(
    dir: &Path,
    common: &Path,
    scratch: &Path,
    who: Option<&Identity>,
    message: &str,
) -> Result<String> {
    let index = scratch.join("snapshot-index");
    let env = [("GIT_INDEX_FILE", index.as_path()), ("GIT_WORK_TREE", dir)];
    let writable = [common, scratch];
    let run = |args: &[&str]| git::run_writing_env(dir, args, &writable, who, &env);
    let head = git::run(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).ok();
    if head.is_some() {
        run(&["read-tree", "HEAD"])?;
    }
    run(&["add", "--all", "--", "."])?;
    let tree = run(&["write-tree"])?;
    let _ = std::fs::remove_file(&index);
    if let Some(head) = &head {
        if git::run(dir, &["rev-parse", "HEAD^{tree}"]).ok().as_ref() == Some(&tree) {
            return Ok(head.clone());
        }
    }
    let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
    if let Some(head) = &head {
        args.extend(["-p", head.as_str()]);
    }
    run(&args)
}

/// The tar a clone instance's volume starts with: the repository at `top`
/// (its history to `HEAD` and its uncommitted state as one more commit)
/// cloned onto the branch `ai/<id>` and checked out, every entry under
/// `top` (the volume is mounted there), owned by the caller (the box runs
/// as the caller's uid), symbolic links kept as links.
pub fn seed(top: &Path, id: &InstanceId) -> Result<Vec<u8>> {
    let scratch = tempfile::Builder::new()
        .prefix("ai-sessions-clone")
        .tempdir()
        .map_err(|e| Error::Other(format!("a scratch directory for the clone: {e}")))?;
    let scratch = scratch.path();
    let common = common_dir(top)?;
    let who = Identity::of(Some(top));
    let who = who.complete().then_some(&who);
    let message = format!("ai-sessions: uncommitted changes, sent to {id}");
    let base = snapshot(top, &common, scratch, who, &message)?;
    let base_ref = base_ref(id);
    git::run_writing(top, &["update-ref", &base_ref, &base], &[&common])?;
    let bundle = scratch.join("seed.bundle");
    let bundle_s = bundle.to_string_lossy().into_owned();
    git::run_writing(
        top,
        &["bundle", "create", "-q", &bundle_s, &base_ref],
        &[&common, scratch],
    )?;
    let work = scratch.join("work");
    std::fs::create_dir(&work).map_err(|e| Error::io(&work, e))?;
    let branch = branch(id);
    let in_work = |args: &[&str]| git::run_writing(&work, args, &[&work, scratch]);
    in_work(&["init", "-q", &format!("--initial-branch={branch}")])?;
    in_work(&[
        "-c",
        "protocol.file.allow=always",
        "fetch",
        "-q",
        "--no-tags",
        "--update-head-ok",
        &bundle_s,
        &format!("{base_ref}:refs/heads/{branch}"),
    ])?;
    in_work(&["reset", "-q", "--hard"])?;
    pack(&work, top)
        .map_err(|e| Error::Other(format!("packing the clone of {}: {e}", top.display())))
}

/// A tar of the directory `dir`, its entries named beneath `at`.
fn pack(dir: &Path, at: &Path) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let rel = at.strip_prefix("/").unwrap_or(at);
    tar.append_dir_all(rel, dir)?;
    tar.into_inner()
}
