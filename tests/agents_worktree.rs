//! `--worktree NAME`: real git; the worktree is made as a sibling on branch
//! `ai/NAME`, `.env` copied, the instance id `<project>-<NAME>-<mode>`, and
//! the worktree's `.git` file resolves inside the container (the test image
//! has no git binary: that git itself runs there is not tested here).

mod common;
mod docker_support;

use common::{stderr, Env};
use docker_support::*;
use std::process::Command;

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn start_with_a_worktree_makes_the_branch_and_git_resolves_inside() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    std::fs::write(
        env.state().join("config.toml"),
        std::fs::read_to_string(env.state().join("config.toml")).unwrap()
            + "\n[worktree]\ncopy = [\".env\"]\n",
    )
    .unwrap();
    let name = env.unique("wt");
    let repo = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hi\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join(".env"), "SECRET=1\n").unwrap();

    let out = env.run_in(
        &repo,
        &["start", "--mode", "claude", "--detach", "-w", "feat"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-feat-claude");
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "running", "{inst:#}");
    let wt = repo
        .parent()
        .unwrap()
        .join(format!("{name}.worktrees"))
        .join("feat");
    assert_eq!(inst["project_path"], wt.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "ai/feat", "{inst:#}");
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]), "ai/feat");
    assert_eq!(
        std::fs::read_to_string(wt.join(".env")).unwrap(),
        "SECRET=1\n"
    );

    // Inside: the gitdir the .git file names exists, with the worktree's
    // HEAD, and the common dir it points to.
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    let script = "d=$(sed -n 's/^gitdir: //p' .git) && cat \"$d/HEAD\" && cat \"$d/$(cat \"$d/commondir\")/HEAD\"";
    let seen = docker_ok(&["exec", &cid, "sh", "-c", script]);
    assert!(seen.contains("ref: refs/heads/ai/feat"), "{seen}");
    assert!(seen.contains("ref: refs/heads/main"), "{seen}");

    // Again: the same worktree and instance, not a second one.
    let out = env.run_in(
        &repo,
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--worktree",
            "feat",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    env.ok(&["stop", &id]);
}
