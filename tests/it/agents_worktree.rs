//! `--worktree NAME`: real git; the worktree is made in
//! `<repo>/.claude/worktrees/NAME` on branch `worktree-NAME`, `.env`
//! copied, the instance id `<project>-<NAME>-<mode>`, the worktree's
//! `.git` file resolves inside the container, `git commit` in
//! the real agent image (which has git) lands on the branch, and
//! `worktree.setup` runs before the agent.

use crate::common;

use crate::common::{git, stderr, Env};
use crate::docker_support::*;
use std::process::Command;

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
    let wt = repo.join(".claude/worktrees/feat");
    assert_eq!(inst["project_path"], wt.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "worktree-feat", "{inst:#}");
    assert_eq!(
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "worktree-feat"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join(".env")).unwrap(),
        "SECRET=1\n"
    );

    // Inside: the gitdir the .git file names exists, with the worktree's
    // HEAD, and the common dir it points to.
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    let script = "d=$(sed -n 's/^gitdir: //p' .git) && cat \"$d/HEAD\" && cat \"$d/$(cat \"$d/commondir\")/HEAD\"";
    let seen = docker_ok(&["exec", &cid, "sh", "-c", script]);
    assert!(seen.contains("ref: refs/heads/worktree-feat"), "{seen}");
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

/// A git repository with one commit, in a fresh project dir.
fn repo(env: &Env, name: &str) -> std::path::PathBuf {
    let repo = env.project(name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hi\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    repo
}

fn with_worktree_config(env: &Env, section: &str) {
    docker_config(env, "");
    std::fs::write(
        env.state().join("config.toml"),
        std::fs::read_to_string(env.state().join("config.toml")).unwrap() + section,
    )
    .unwrap();
}

#[test]
fn setup_commands_run_in_the_worktree_before_the_agent_and_show_in_logs() {
    require_docker!();
    let env = Env::new();
    with_worktree_config(
        &env,
        "\n[worktree]\nsetup = [\"echo setup-ran-here; pwd\", \"id -u > made-by-setup\"]\n",
    );
    let name = env.unique("wts");
    let repo = repo(&env, &name);
    let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach", "-w", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-s-claude");
    let wt = repo.join(".claude/worktrees/s");
    // Ran in the project dir, as the user, and finished before the start
    // returned.
    let uid = nix_uid();
    assert_eq!(
        std::fs::read_to_string(wt.join("made-by-setup"))
            .unwrap()
            .trim(),
        uid.to_string()
    );
    assert_eq!(env.instance(&id)["status"], "running");
    // Output in the instance log, before the agent's banner.
    let mut logs = String::new();
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || {
            logs = common::stdout(&env.run(&["logs", &id]));
            logs.contains("fake-agent ready")
        }),
        "{logs}"
    );
    let setup_at = logs.find("setup-ran-here").expect(&logs);
    assert!(setup_at < logs.find("fake-agent ready").unwrap(), "{logs}");
    // A plain instance (no worktree) runs no setup.
    let plain = env.project(&env.unique("plain"));
    let out = env.run_in(&plain, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!plain.join("made-by-setup").exists());
    env.ok(&["stop", "--all"]);
}

#[test]
fn a_failing_setup_command_stops_the_start_naming_it_and_keeps_everything() {
    require_docker!();
    let env = Env::new();
    with_worktree_config(
        &env,
        "\n[worktree]\nsetup = [\"echo before-the-failure\", \"exit 7\", \"echo never-run\"]\n",
    );
    let name = env.unique("wtf");
    let repo = repo(&env, &name);
    let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach", "-w", "f"]);
    assert!(!out.status.success(), "started despite the failure");
    let err = stderr(&out);
    assert!(err.contains("`exit 7`"), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    let id = format!("{name}-f-claude");
    let inst = env.instance(&id);
    assert!(
        inst["status"] == "stopped" || inst["status"] == "error",
        "{inst:#}"
    );
    assert!(
        inst["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("exit 7"),
        "{inst:#}"
    );
    // Nothing lost: the worktree, its branch, and the output.
    let wt = repo.join(".claude/worktrees/f");
    assert_eq!(
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "worktree-f"
    );
    let logs = common::stdout(&env.run(&["logs", &id]));
    assert!(logs.contains("before-the-failure"), "{logs}");
    assert!(!logs.contains("never-run"), "{logs}");
    assert!(!logs.contains("fake-agent ready"), "{logs}");
}

fn nix_uid() -> u32 {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn git_commit_inside_a_worktree_instance_lands_on_its_branch() {
    require_docker!();
    // The real claude image is Debian, with git.
    let Some(image) = real_image("claude") else {
        return;
    };
    let env = Env::new();
    let script = "set -e; git status; git log --oneline -1; \
                  echo from-the-box > boxed.txt; git add boxed.txt; \
                  git -c user.name=box -c user.email=box@example.com commit -q -m 'made in the box'; \
                  git diff HEAD~1 --stat; git branch --show-current; echo GIT-WORKED";
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\nauto_cleanup = true\n\n\
         [agents.claude]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{}\"]\n",
        script.replace('\\', "\\\\").replace('"', "\\\"")
    ));
    let name = env.unique("wtgit");
    let repo = repo(&env, &name);
    let out = env.run_in(
        &repo,
        &["start", "--mode", "claude", "--detach", "-w", "box"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-box-claude");
    assert!(
        common::wait_until(std::time::Duration::from_secs(60), || {
            let reg = env.ok(&["list", "--json"]);
            !reg.contains("\"running\"") && !reg.contains("\"initializing\"")
        }),
        "{}",
        env.ok(&["list", "--json"])
    );
    let logs = common::stdout(&env.run(&["logs", &id]));
    assert!(
        logs.contains("GIT-WORKED"),
        "git failed in the box:\n{logs}"
    );
    assert!(logs.contains("worktree-box"), "{logs}");
    // On the host: the commit is on worktree-box, main is untouched.
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "worktree-box"]),
        "made in the box"
    );
    assert_eq!(git(&repo, &["log", "-1", "--format=%s", "main"]), "init");
    let wt = repo.join(".claude/worktrees/box");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(wt.join("boxed.txt")).unwrap(),
        "from-the-box\n"
    );
}

#[test]
fn worktree_list_shows_paths_branches_instances_and_what_removal_would_lose() {
    require_docker!();
    let env = Env::new();
    with_worktree_config(&env, "");
    let name = env.unique("wtl");
    let repo = repo(&env, &name);
    for w in ["clean", "dirty", "ahead"] {
        let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach", "-w", w]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let base = repo.join(".claude/worktrees");
    std::fs::write(base.join("dirty/README"), "changed\n").unwrap();
    std::fs::write(base.join("ahead/new.txt"), "x\n").unwrap();
    git(&base.join("ahead"), &["add", "new.txt"]);
    git(&base.join("ahead"), &["commit", "-q", "-m", "ahead"]);
    env.ok(&["stop", &format!("{name}-clean-claude")]);
    // A worktree whose instance is gone is still listed.
    env.ok(&["rm", "--force", &format!("{name}-ahead-claude")]);
    // A worktree the user made elsewhere is not ours.
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "mine",
            repo.parent()
                .unwrap()
                .join(format!("{name}-mine"))
                .to_str()
                .unwrap(),
        ],
    );

    let out = env.run_in(&repo, &["worktree", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let row = |w: &str| {
        rows.iter()
            .find(|r| r["branch"] == format!("worktree-{w}"))
            .unwrap_or_else(|| panic!("{w} missing: {rows:#?}"))
            .clone()
    };
    let clean = row("clean");
    assert_eq!(clean["path"], base.join("clean").to_str().unwrap());
    assert_eq!(clean["repo"], repo.to_str().unwrap());
    assert_eq!(clean["instances"][0]["id"], format!("{name}-clean-claude"));
    assert_eq!(clean["instances"][0]["status"], "stopped");
    assert_eq!(
        (clean["dirty"].as_bool(), clean["unpushed"].as_u64()),
        (Some(false), Some(0))
    );
    let dirty = row("dirty");
    assert_eq!(dirty["instances"][0]["status"], "running");
    assert_eq!(dirty["dirty"], true);
    let ahead = row("ahead");
    assert_eq!(ahead["instances"].as_array().unwrap().len(), 0, "{ahead:#}");
    assert_eq!(
        (ahead["dirty"].as_bool(), ahead["unpushed"].as_u64()),
        (Some(false), Some(1))
    );

    // The table, from inside a worktree (the same repository) and, with
    // --all, from anywhere.
    let out = env.run_in(&base.join("dirty"), &["worktree", "list"]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with("PATH"), "{text}");
    for needle in [
        "worktree-clean",
        "worktree-dirty",
        "uncommitted changes",
        "1 unpushed",
        "running",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let elsewhere = env.project(&env.unique("elsewhere"));
    let text = common::stdout(&env.run_in(&elsewhere, &["worktree", "list", "--all"]));
    assert!(text.contains("worktree-ahead"), "{text}");
    // With every instance gone, --all still finds the worktrees left.
    env.ok(&["rm", "--all", "--force"]);
    let text = common::stdout(&env.run_in(&elsewhere, &["worktree", "list", "--all"]));
    for needle in ["worktree-clean", "worktree-dirty", "worktree-ahead"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!text.contains("mine"), "{text}");
}

#[test]
fn rm_removes_a_clean_worktree_when_asked_and_never_one_with_work_in_it() {
    require_docker!();
    let env = Env::new();
    with_worktree_config(&env, "\n[worktree]\ncopy = [\".env\"]\n");
    let name = env.unique("wtr");
    let repo = repo(&env, &name);
    // Untracked and not ignored: the copy alone is no work of the agent's.
    std::fs::write(repo.join(".env"), "A=1\n").unwrap();
    let names = ["keep", "clean", "dirty", "ahead", "asked", "envedit"];
    for w in names {
        let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach", "-w", w]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    env.ok(&["stop", "--all"]);
    let base = repo.join(".claude/worktrees");
    let id = |w: &str| format!("{name}-{w}-claude");
    std::fs::write(base.join("dirty/README"), "changed\n").unwrap();
    std::fs::write(base.join("envedit/.env"), "A=2\n").unwrap();
    std::fs::write(base.join("ahead/new.txt"), "x\n").unwrap();
    git(&base.join("ahead"), &["add", "new.txt"]);
    git(&base.join("ahead"), &["commit", "-q", "-m", "ahead"]);

    // Not asked, no terminal to ask on: the worktree stays, and it says so.
    let out = env.run(&["rm", &id("keep")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("kept"), "{}", stderr(&out));
    assert!(base.join("keep/README").exists());
    assert!(env.instance(&id("keep")).is_null());

    // --worktree: a clean one goes (its branch stays).
    let out = env.run(&["rm", "--worktree", &id("clean")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!base.join("clean").exists(), "{}", stderr(&out));
    assert!(!git(&repo, &["worktree", "list"]).contains("clean"));
    assert_eq!(
        git(&repo, &["branch", "--list", "worktree-clean"]),
        "worktree-clean"
    );

    // Uncommitted changes or unpushed commits: refused, nothing removed.
    for (w, why) in [
        ("dirty", "uncommitted changes"),
        ("envedit", "uncommitted changes"),
        ("ahead", "1 unpushed"),
    ] {
        let out = env.run(&["rm", "--worktree", &id(w)]);
        assert!(!out.status.success(), "{w} removed");
        assert!(stderr(&out).contains(why), "{w}: {}", stderr(&out));
        assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
        assert_eq!(env.instance(&id(w))["status"], "stopped", "{w}");
        assert!(base.join(w).join("README").exists(), "{w}");
    }
    assert_eq!(
        std::fs::read_to_string(base.join("dirty/README")).unwrap(),
        "changed\n"
    );
    // ... unless forced; the commit stays on its branch.
    env.ok(&["rm", "--worktree", "--force", &id("ahead")]);
    assert!(!base.join("ahead").exists());
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "worktree-ahead"]),
        "ahead"
    );

    // Two agents in one worktree: it stays while the other runs in it, and
    // goes when both are removed at once.
    for mode in ["claude", "gemini"] {
        let out = env.run_in(
            &repo,
            &["start", "--mode", mode, "--detach", "-w", "shared"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (c, g) = (id("shared"), format!("{name}-shared-gemini"));
    let out = env.run(&["rm", "--force", "--worktree", &c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{g} runs in it too")),
        "{}",
        stderr(&out)
    );
    assert!(base.join("shared/README").exists());
    let out = env.run_in(
        &repo,
        &["start", "--mode", "claude", "--detach", "-w", "shared"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["rm", "--force", "--worktree", &c, &g]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!base.join("shared").exists(), "{}", stderr(&out));

    // On a terminal: a clean one is offered, a dirty one is not.
    let mut c = env.cmd();
    // The pty is stdin too (env.cmd() sets a null one).
    c.args(["rm", &id("asked")])
        .stdin(std::process::Stdio::inherit());
    let mut p = rexpect::session::spawn_command(c, Some(20_000)).unwrap();
    p.exp_string("[y/N]").unwrap();
    p.send_line("y").unwrap();
    p.exp_eof().unwrap();
    assert!(!base.join("asked").exists());
    let mut c = env.cmd();
    c.args(["rm", &id("dirty")])
        .stdin(std::process::Stdio::inherit());
    let mut p = rexpect::session::spawn_command(c, Some(20_000)).unwrap();
    let said = p.exp_eof().unwrap();
    assert!(!said.contains("[y/N]"), "{said}");
    assert!(said.contains("uncommitted changes"), "{said}");
    assert!(base.join("dirty/README").exists());
}

#[test]
fn setup_in_the_foreground_shows_its_output_and_a_failure_on_the_terminal() {
    require_docker!();
    let env = Env::new();
    with_worktree_config(
        &env,
        "\n[worktree]\nsetup = [\"echo installing-things\", \"exit 3\"]\n",
    );
    let name = env.unique("wtfg");
    let repo = repo(&env, &name);
    let mut c = env.cmd();
    c.current_dir(&repo)
        .args(["run", "claude", "-w", "fg"])
        .stdin(std::process::Stdio::inherit())
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(c, Some(30_000)).unwrap();
    p.exp_string("installing-things").unwrap();
    let rest = p.exp_eof().unwrap();
    assert!(
        rest.contains("setup command `exit 3` failed with exit code 3"),
        "{rest}"
    );
    assert!(!rest.contains("fake-agent ready"), "{rest}");
    match p.process.wait().unwrap() {
        rexpect::process::wait::WaitStatus::Exited(_, code) => assert_eq!(code, 3),
        other => panic!("{other:?}"),
    }
    let inst = env.instance(&format!("{name}-fg-claude"));
    assert_eq!(inst["status"], "error", "{inst:#}");
    assert_eq!(
        inst["status_reason"], "setup command `exit 3` failed with exit code 3",
        "{inst:#}"
    );
}

#[test]
fn setup_on_the_host_runtime_is_waited_for_and_a_failure_reported() {
    let env = Env::new();
    env.write_config(
        "[global]\nruntime = \"host\"\nstop_timeout = \"3s\"\n\n\
         [worktree]\nsetup = [\"echo host-setup > made-here\", \"exit 4\"]\n",
    );
    let bin = fake_agent_bin(env.projects.path());
    let name = env.unique("wth");
    let repo = repo(&env, &name);
    let out = env
        .cmd()
        .current_dir(&repo)
        .env("PATH", path_with(&bin))
        .env("FAKE_AGENT_STAY", "1")
        .args([
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "host",
            "-w",
            "h",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started despite the failure");
    assert!(
        stderr(&out).contains("setup command `exit 4` failed with exit code 4"),
        "{}",
        stderr(&out)
    );
    let wt = repo.join(".claude/worktrees/h");
    assert_eq!(
        std::fs::read_to_string(wt.join("made-here")).unwrap(),
        "host-setup\n"
    );
    let inst = env.instance(&format!("{name}-h-claude"));
    assert_eq!(inst["status"], "error", "{inst:#}");
    assert_eq!(
        inst["status_reason"], "setup command `exit 4` failed with exit code 4",
        "{inst:#}"
    );
}

/// The project is the agent's to write: a `.git` file it plants there,
/// naming a directory of the host's as its repository, must not get that
/// directory mounted into its next container (only a repository that names
/// the worktree back, as git's own link does, is mounted).
#[test]
fn a_planted_git_file_does_not_mount_a_host_directory() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("plant");
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let host = env.home.path().join("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret\n").unwrap();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        &format!("printf 'gitdir: {}/worktrees/x\\n' >.git", host.display()),
    ]);
    let out = env.run(&["restart", &id]);
    assert!(out.status.success(), "restart: {}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = std::process::Command::new("docker")
        .args(["exec", &cid, "cat"])
        .arg(host.join("secret"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&seen.stdout).contains("host secret"),
        "the host directory was mounted into the agent's container"
    );
}

/// An agent can write the repository's git config (it is in the project,
/// or mounted for a worktree instance); `worktree list` runs `git status`
/// on the host, which must not run a command the config names there
/// (`core.fsmonitor`).
#[test]
fn worktree_list_does_not_run_the_repositorys_fsmonitor() {
    let env = Env::new();
    let repo = env.project("fsm");
    common::repo_with_worktrees(&repo, &["feat"]);
    let marker = env.home.path().join("ran");
    let hook = env.home.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    git(&repo, &["config", "core.fsmonitor", hook.to_str().unwrap()]);
    let out = env.run_in(&repo, &["worktree", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("feat"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !marker.exists(),
        "`worktree list` ran the repository's fsmonitor"
    );
}
