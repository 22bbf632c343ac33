//! `fetch`: the box's branch (and a commit of its uncommitted changes)
//! brought back into the host repository, through the engine's API (a tar
//! of the box's repository) and our guarded git. All of it is the agent's:
//! the tar is unpacked without leaving its directory, with no devices,
//! FIFOs or hard links; the repository it holds loses its config, hooks,
//! attributes, alternates and every symbolic link before git reads it; the
//! objects git fetches from it are checked (`transfer.fsckObjects`).

use super::{branch, common_dir, fetched_ref, snapshot, uncommitted_ref};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::untrusted::git::{self, Identity};
use crate::engine::container::{ContainerSpec, Created};
use crate::engine::Engine;
use crate::state::registry::CloneInfo;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The most a box's repository (with `--uncommitted`, its work tree) may
/// weigh to be fetched.
const MAX_FETCH_BYTES: u64 = 2 << 30;

/// What `fetch` brought back.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// The host ref the box's branch is now at (`refs/remotes/…`).
    pub branch_ref: String,
    /// Its commit.
    pub commit: String,
    /// With `--uncommitted`: the ref of a commit of the box's uncommitted
    /// changes (on top of its `HEAD`), and that commit; none when there
    /// were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncommitted_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncommitted: Option<String>,
}

/// Label of the container a fetch copies through, naming the instance;
/// with it, the process of the fetch (see `engine::scratch`), so that `gc`
/// removes the one a killed fetch left.
pub const FETCH_LABEL: &str = "ai.fetch";

/// Where a clone instance's repository is read from: its volume, through
/// a container of `image` made for the copy (never started, removed
/// after): the agent's own container is gone once it stopped.
pub struct Source<'a> {
    /// The instance (labels the copying container).
    pub instance: &'a str,
    pub volume: &'a str,
    pub image: &'a str,
    /// Labels for the copying container (ours, this home's).
    pub labels: HashMap<String, String>,
}

/// Fetches the branch of the clone instance `id` into the host repository.
pub fn fetch(
    engine: &Engine,
    source: &Source,
    info: &CloneInfo,
    id: &InstanceId,
    uncommitted: bool,
    message: Option<&str>,
) -> Result<Fetched> {
    let top = &info.repo;
    let top_s = top.to_string_lossy().into_owned();
    let path = match uncommitted {
        true => top_s.clone(),
        false => format!("{}/.git", top_s.trim_end_matches('/')),
    };
    let archive = copy_out(engine, source, &top_s, &path)?;
    let scratch = tempfile::Builder::new()
        .prefix("ai-sessions-fetch")
        .tempdir()
        .map_err(|e| Error::Other(format!("a scratch directory for the fetch: {e}")))?;
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).map_err(|e| Error::io(&out, e))?;
    let root = unpack(&archive, &out)?;
    drop(archive);
    // Docker names the archive's root after the path's last part; Podman
    // names the root of a volume's mount point `/`.
    let repo = match (uncommitted, root) {
        (true, Some(first)) if Some(first.as_os_str()) == top.file_name() => out.join(first),
        _ => out.clone(),
    };
    let git_dir = repo.join(".git");
    let real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real_dir(&repo) || !real_dir(&git_dir) {
        return Err(Error::Invalid(format!(
            "{id}: the box's {top_s} holds no git repository (.git is missing or not a directory)"
        )));
    }
    defuse(&git_dir)?;
    let branch = branch(id);
    let writable_box = [git_dir.as_path(), scratch.path()];
    let tip = git::run(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        Error::Invalid(format!(
            "{id}: the box's repository has no branch {branch} (the agent deleted or renamed it)"
        ))
    })?;
    let mut wanted = vec![format!("+refs/heads/{branch}:{}", fetched_ref(id))];
    let mut dirty = None;
    if uncommitted {
        let who = Identity::of(Some(top));
        let who = who.complete().then_some(&who);
        let message = message.map_or_else(
            || format!("ai-sessions: uncommitted changes of {id}"),
            str::to_owned,
        );
        let commit = snapshot(&repo, &git_dir, scratch.path(), who, &message)?;
        let head = git::run(
            &repo,
            &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        )
        .ok();
        if head.as_ref() != Some(&commit) {
            git::run_writing(
                &repo,
                &["update-ref", "refs/heads/ai-sessions-uncommitted", &commit],
                &writable_box,
            )?;
            wanted.push(format!(
                "+refs/heads/ai-sessions-uncommitted:{}",
                uncommitted_ref(id)
            ));
            dirty = Some(commit);
        }
    }
    bring_home(&repo, top, &wanted, scratch.path())?;
    // Nothing uncommitted now: an older commit of it would mislead `diff`.
    if uncommitted && dirty.is_none() {
        let common = common_dir(top)?;
        let _ = git::run_writing(top, &["update-ref", "-d", &uncommitted_ref(id)], &[&common]);
    }
    Ok(Fetched {
        branch_ref: fetched_ref(id),
        commit: tip,
        uncommitted_ref: dirty.as_ref().map(|_| uncommitted_ref(id)),
        uncommitted: dirty,
    })
}

/// Fetches `wanted` (`+src:dst` refspecs) from the box's repository `repo`
/// (unpacked in `scratch`, defused) into the host repository at `top`.
fn bring_home(repo: &Path, top: &Path, wanted: &[String], scratch: &Path) -> Result<()> {
    let git_dir = repo.join(".git");
    let writable_box = [git_dir.as_path(), scratch];
    // Through a bundle: a fetch from a path would start `upload-pack`
    // through a shell, which the guarded git cannot (and need not) run.
    let bundle = scratch.join("fetch.bundle");
    let source = bundle.to_string_lossy().into_owned();
    let mut create = vec!["bundle", "create", "-q", source.as_str(), "--"];
    let heads: Vec<String> = wanted
        .iter()
        .filter_map(|w| {
            w.trim_start_matches('+')
                .split(':')
                .next()
                .map(str::to_owned)
        })
        .collect();
    create.splice(4..4, heads.iter().map(String::as_str));
    git::run_writing(repo, &create, &writable_box)?;
    let common = common_dir(top)?;
    let mut args = vec![
        "-c",
        "protocol.file.allow=always",
        "-c",
        "transfer.fsckObjects=true",
        "fetch",
        "-q",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        &source,
    ];
    args.extend(wanted.iter().map(String::as_str));
    git::run_writing(top, &args, &[&common]).map(|_| ())
}

/// The tar of `path` in the volume of `source` (mounted at `top`).
fn copy_out(engine: &Engine, source: &Source, top: &str, path: &str) -> Result<Vec<u8>> {
    let mut labels = crate::engine::scratch::labels(FETCH_LABEL, source.instance);
    labels.extend(source.labels.clone());
    let spec = ContainerSpec {
        name: format!("{}-fetch-{}", source.volume, std::process::id()),
        replace: true,
        image: source.image.to_owned(),
        cmd: vec!["true".to_owned()],
        labels,
        network_mode: Some("none".to_owned()),
        volumes: vec![(source.volume.to_owned(), top.to_owned())],
        ..ContainerSpec::default()
    };
    let cid = match engine.block_on(engine.create(&spec, &[]))?.0 {
        Created::Id(id) => id,
        Created::NameTaken => {
            return Err(Error::Invalid(format!(
                "container {} exists already; another fetch is under way",
                spec.name
            )))
        }
    };
    let archive = engine.download_tar(&cid, path, MAX_FETCH_BYTES);
    let _ = engine.remove_container(&cid);
    archive
}

/// Unpacks `archive` beneath `dir`: directories, files and symbolic links
/// only, none of them written outside `dir`. Returns the name of its root
/// directory (the first part of its first entry), unless that is `/`.
fn unpack(archive: &[u8], dir: &Path) -> Result<Option<std::ffi::OsString>> {
    let err = |e: std::io::Error| Error::Invalid(format!("the box's archive: {e}"));
    let mut ar = tar::Archive::new(archive);
    ar.set_preserve_permissions(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut root = None;
    for (n, entry) in ar.entries().map_err(err)?.enumerate() {
        let mut entry = entry.map_err(err)?;
        if n == 0 {
            let path = entry.path().map_err(err)?;
            root = path.components().find_map(|c| match c {
                std::path::Component::Normal(part) => Some(part.to_owned()),
                _ => None,
            });
        }
        let kind = entry.header().entry_type();
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            continue;
        }
        // `false`: a path that would leave `dir` (skipped).
        entry.unpack_in(dir).map_err(err)?;
    }
    Ok(root)
}

/// Makes the box's git dir one that git reads without running or reaching
/// anything: its own config replaced by ours, no hooks, attributes,
/// alternates or links to other git dirs, and no symbolic links at all
/// (a ref or object file that is a link would read a host file).
fn defuse(git_dir: &Path) -> Result<()> {
    // Links first: what is removed below is then reached through none.
    remove_links(git_dir)?;
    for gone in [
        "hooks",
        "info/attributes",
        "objects/info/alternates",
        "objects/info/http-alternates",
        "commondir",
        "gitdir",
        "config.worktree",
        "worktrees",
        "modules",
    ] {
        let p = git_dir.join(gone);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?,
            Ok(_) => std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?,
            Err(_) => {}
        }
    }
    let config = git_dir.join("config");
    let _ = std::fs::remove_file(&config);
    std::fs::write(
        &config,
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfilemode = true\n",
    )
    .map_err(|e| Error::io(&config, e))
}

fn remove_links(dir: &Path) -> Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_symlink() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{defuse, unpack};

    /// A tar entry with a raw name (the box's archive is not one our
    /// builder would make: `..`, absolute names pass).
    fn entry(tar: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }

    #[test]
    fn unpack_writes_nothing_outside_and_no_fifo_or_device() {
        let root = tempfile::tempdir().unwrap();
        let (dir, outside) = (root.path().join("in"), root.path().join("outside"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let mut tar = Vec::new();
        entry(&mut tar, "fifo", tar::EntryType::Fifo, "", b"");
        entry(&mut tar, "hard", tar::EntryType::Link, "/etc/passwd", b"");
        entry(&mut tar, "ok", tar::EntryType::Regular, "", b"fine");
        entry(&mut tar, "../escaped", tar::EntryType::Regular, "", b"x");
        let out = outside.to_str().unwrap();
        entry(&mut tar, "link", tar::EntryType::Symlink, out, b"");
        entry(&mut tar, "link/through", tar::EntryType::Regular, "", b"x");
        tar.extend_from_slice(&[0; 1024]);
        // A refusal may end the unpack; nothing may land outside either way.
        let _ = unpack(&tar, &dir);
        assert_eq!(std::fs::read_to_string(dir.join("ok")).unwrap(), "fine");
        assert!(!root.path().join("escaped").exists());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(dir.join("fifo").symlink_metadata().is_err());
        assert!(dir.join("hard").symlink_metadata().is_err());
    }

    #[test]
    fn defuse_leaves_no_config_hooks_alternates_or_links() {
        let g = tempfile::tempdir().unwrap();
        let g = g.path();
        for d in ["hooks", "info", "objects/info", "refs/heads"] {
            std::fs::create_dir_all(g.join(d)).unwrap();
        }
        std::fs::write(g.join("config"), "[core]\n\tfsmonitor = touch /tmp/x\n").unwrap();
        std::fs::write(g.join("hooks/post-checkout"), "#!/bin/sh\n").unwrap();
        std::fs::write(g.join("info/attributes"), "* filter=x\n").unwrap();
        std::fs::write(
            g.join("objects/info/alternates"),
            "/home/u/other/.git/objects\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", g.join("refs/heads/evil")).unwrap();
        defuse(g).unwrap();
        let config = std::fs::read_to_string(g.join("config")).unwrap();
        assert!(!config.contains("fsmonitor"), "{config}");
        assert!(!g.join("hooks").exists());
        assert!(!g.join("info/attributes").exists());
        assert!(!g.join("objects/info/alternates").exists());
        assert!(g.join("refs/heads/evil").symlink_metadata().is_err());
    }

    /// The box's git dir may hold links to host directories where the
    /// files defuse removes have their names: nothing there is touched.
    #[test]
    fn defuse_removes_nothing_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let (g, host) = (root.path().join("git"), root.path().join("host"));
        std::fs::create_dir_all(host.join("info")).unwrap();
        for f in ["attributes", "alternates", "config.worktree"] {
            std::fs::write(host.join(f), "the user's\n").unwrap();
        }
        std::fs::create_dir_all(g.join("objects")).unwrap();
        std::os::unix::fs::symlink(&host, g.join("info")).unwrap();
        std::os::unix::fs::symlink(&host, g.join("objects/info")).unwrap();
        std::os::unix::fs::symlink(host.join("info"), g.join("hooks")).unwrap();
        defuse(&g).unwrap();
        for f in ["attributes", "alternates", "config.worktree"] {
            assert!(host.join(f).exists(), "{f} removed through a link");
        }
        assert!(host.join("info").is_dir(), "removed through a link");
        assert!(g.join("info").symlink_metadata().is_err());
    }
}
