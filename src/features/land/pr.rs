//! `land --pr`: the branch pushed to `origin` and a pull request opened
//! with `gh`, when it is installed and logged in; else the commands that
//! do it, for the user to run (nothing is pushed then: a branch pushed
//! without its pull request is half of what was asked).

use super::{common_dir, head_ref, writing, Target};
use crate::core::error::{Error, Result};
use crate::core::untrusted::git::Identity;
use crate::core::untrusted::printable;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `--pr` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Pushed and opened; gh's answer (the pull request's URL).
    Opened { url: String },
    /// Not done, and why; `pushed` says whether the branch went up.
    ToRun {
        reason: String,
        pushed: bool,
        commands: Vec<String>,
    },
}

/// The commands that push the branch and open its pull request by hand.
pub fn commands(t: &Target) -> Vec<String> {
    let (b, base) = (printable(&t.branch), printable(&t.base));
    vec![
        format!("git -C {} push -u origin {b}", t.worktree.display()),
        format!("gh pr create --head {b} --base {base} --fill"),
    ]
}

/// Pushes and opens the pull request titled `title` with `body`.
pub fn open(t: &Target, tip: &str, title: &str, body: &str, who: &Identity) -> Result<Outcome> {
    let to_run = |reason: String, pushed: bool| {
        let mut commands = commands(t);
        if pushed {
            commands.remove(0);
        }
        Ok(Outcome::ToRun {
            reason,
            pushed,
            commands,
        })
    };
    let Some(gh) = find_gh() else {
        return to_run("gh (GitHub's CLI) is not installed".into(), false);
    };
    if !quiet(&gh, &["auth", "status"]) {
        return to_run("gh is not logged in (`gh auth login`)".into(), false);
    }
    let Some(repo) = github_repo(&t.repo) else {
        return to_run(
            "origin is not a repository gh knows how to name".into(),
            false,
        );
    };
    if let Err(e) = push(t, tip, who) {
        return to_run(format!("the push failed: {e}"), false);
    }
    // Outside the repository, named by --repo: gh runs git with the user's
    // config, which would read the repository's (the agent's) config too.
    let out = Command::new(&gh)
        .args([
            "pr", "create", "--repo", &repo, "--head", &t.branch, "--base", &t.base,
        ])
        .args(["--title", title, "--body", body])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Other(format!("gh: {e}")))?;
    if !out.status.success() {
        let why = printable(String::from_utf8_lossy(&out.stderr).trim());
        return to_run(format!("gh pr create failed: {why}"), true);
    }
    Ok(Outcome::Opened {
        url: printable(String::from_utf8_lossy(&out.stdout).trim()),
    })
}

/// `git push -u origin BRANCH`, as the user (their credentials; nothing
/// the repository names runs: [`crate::core::untrusted::git::push_as_user`]),
/// then the branch set to track it. `tip` is what is pushed.
pub fn push(t: &Target, tip: &str, who: &Identity) -> Result<()> {
    let common = common_dir(&t.repo)?;
    let url = super::git(&t.repo, &["remote", "get-url", "--push", "origin"])?;
    let sha = tip.to_owned();
    crate::core::untrusted::git::push_as_user(&common, &url, &sha, &t.branch)?;
    let tracking = format!("refs/remotes/origin/{}", t.branch);
    let remote_key = format!("branch.{}.remote", t.branch);
    let merge_key = format!("branch.{}.merge", t.branch);
    let merge = head_ref(&t.branch);
    for args in [
        &["update-ref", tracking.as_str(), sha.as_str()][..],
        &["config", remote_key.as_str(), "origin"],
        &["config", merge_key.as_str(), merge.as_str()],
    ] {
        writing(&t.repo, &common, args, who)?;
    }
    Ok(())
}

fn find_gh() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("gh"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn quiet(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `HOST/OWNER/NAME` of `origin`'s URL (scp-like, ssh:// or http(s)://).
fn github_repo(repo: &Path) -> Option<String> {
    let url = super::git(repo, &["remote", "get-url", "origin"]).ok()?;
    repo_of_url(&url)
}

fn repo_of_url(url: &str) -> Option<String> {
    let rest = if let Some((_, r)) = url.split_once("://") {
        // ssh://git@host:22/owner/name, https://host/owner/name
        let (host, path) = r.split_once('/')?;
        let host = host.rsplit('@').next()?.split(':').next()?;
        format!("{host}/{path}")
    } else {
        // git@host:owner/name
        let (host, path) = url.split_once(':')?;
        format!("{}/{path}", host.rsplit('@').next()?)
    };
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    ok.then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::repo_of_url;

    #[test]
    fn origin_urls_name_their_repository() {
        let want = Some("github.com/o/r".to_owned());
        assert_eq!(repo_of_url("git@github.com:o/r.git"), want);
        assert_eq!(repo_of_url("ssh://git@github.com:22/o/r.git"), want);
        assert_eq!(repo_of_url("https://github.com/o/r"), want);
        assert_eq!(repo_of_url("https://github.com/o/r.git/"), want);
        assert_eq!(repo_of_url("/srv/git/r.git"), None);
        assert_eq!(repo_of_url("ext::sh -c evil"), None);
    }
}
