//! Clone mode (`--clone`, `project.mode = "clone"`, an engine on another
//! machine), on the real engine: the agent's container mounts no host path
//! (only its volumes), the box holds the repository with the uncommitted
//! changes committed on branch `ai/<id>`, a commit made in the box comes
//! back with `fetch` (also once the agent stopped), `diff` shows it, `rm`
//! removes the volumes; a hostile repository, and a hostile repository in
//! the box, start nothing on the host; an engine reached through an
//! address that is not loopback gets a clone without being asked, and
//! `--mount` is refused there; the API creates one and fetches from it.
//!
//! The test image has no git: the box's commit is written into its
//! repository as the agent's git would write it (a pack and a ref).

use crate::common;

use crate::common::{git, stderr, stdout, Env};
use crate::docker_support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A repository with one commit, then an uncommitted change to a tracked
/// file, a new untracked file and an ignored one.
fn repo(env: &Env, name: &str) -> PathBuf {
    let repo = env.project(name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "one\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "secret.env\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join("README"), "one\ntwo\n").unwrap();
    std::fs::write(repo.join("new.txt"), "untracked\n").unwrap();
    std::fs::write(repo.join("secret.env"), "KEY=1\n").unwrap();
    repo
}

fn box_sh(cid: &str, script: &str) -> String {
    docker_ok(&["exec", cid, "sh", "-c", script])
}

/// The sources of every bind mount of container `cid`.
fn binds(cid: &str) -> Vec<String> {
    let inst = common::inspect(cid).expect("the container");
    inst["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] != "volume")
        .map(|m| format!("{} {}", m["Type"], m["Source"]))
        .collect()
}

fn volumes_of(id: &str) -> Vec<String> {
    docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=ai.instance={id}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Writes a commit into the box's repository at `top` on `branch`, as the
/// agent's git would: made beside it (from the commit the box was sent),
/// packed, copied in, the branch moved to it. Its sha.
fn commit_in_box(env: &Env, cid: &str, repo: &Path, top: &str, base: &str, branch: &str) -> String {
    let side = env.projects.path().join(format!(
        "side-{}",
        repo.file_name().unwrap().to_string_lossy()
    ));
    git(
        env.projects.path(),
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            side.to_str().unwrap(),
        ],
    );
    git(
        &side,
        &[
            "fetch",
            "-q",
            "origin",
            "refs/ai-sessions/*:refs/ai-sessions/*",
        ],
    );
    git(&side, &["checkout", "-q", "-b", "agent", base]);
    std::fs::write(side.join("agent.txt"), "made in the box\n").unwrap();
    git(&side, &["add", "agent.txt"]);
    git(&side, &["commit", "-q", "-m", "the agent's commit"]);
    let sha = git(&side, &["rev-parse", "HEAD"]);
    let packs = side.join("out");
    std::fs::create_dir_all(&packs).unwrap();
    let mut pack = Command::new("git")
        .arg("-C")
        .arg(&side)
        .args(["pack-objects", "-q", "--revs"])
        .arg(packs.join("pack"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    pack.stdin
        .take()
        .unwrap()
        .write_all(format!("{sha}\n^{base}\n").as_bytes())
        .unwrap();
    assert!(pack.wait().unwrap().success());
    for f in std::fs::read_dir(&packs).unwrap() {
        let f = f.unwrap().path();
        docker_ok(&[
            "cp",
            f.to_str().unwrap(),
            &format!("{cid}:{top}/.git/objects/pack/"),
        ]);
    }
    // The commit's file is in the work tree too, as after `git commit`.
    box_sh(
        cid,
        &format!("echo {sha} > {top}/.git/refs/heads/{branch} && echo 'made in the box' > {top}/agent.txt"),
    );
    sha
}

#[test]
fn a_clone_instance_mounts_nothing_and_its_commit_comes_back() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("cl");
    let repo = repo(&env, &name);
    let status_before = git(&repo, &["status", "--porcelain"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = env.instance(&id);
    assert_eq!(inst["clone"]["repo"], top, "{inst:#}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();

    // Nothing of the host: only volumes.
    assert_eq!(binds(&cid), Vec::<String>::new());
    // The repository, the agent's state, its activity directory.
    assert_eq!(volumes_of(&id).len(), 3, "{:?}", volumes_of(&id));

    // The box: on its own branch, with the uncommitted state; the ignored
    // file stays home.
    let seen = box_sh(
        &cid,
        &format!("cd {top} && pwd && cat .git/HEAD README new.txt; ls -a"),
    );
    assert!(seen.contains(&format!("ref: refs/heads/ai/{id}")), "{seen}");
    assert!(seen.contains("one\ntwo\nuntracked\n"), "{seen}");
    assert!(!seen.contains("secret.env"), "{seen}");
    // On the host: the commit sent is on top of HEAD, holding the changes;
    // the user's index and files are as they were.
    let base = git(
        &repo,
        &["rev-parse", &format!("refs/ai-sessions/{id}/base")],
    );
    assert_eq!(git(&repo, &["rev-parse", &format!("{base}^")]), head);
    assert_eq!(git(&repo, &["show", &format!("{base}:README")]), "one\ntwo");
    assert_eq!(git(&repo, &["status", "--porcelain"]), status_before);

    // The agent commits, and leaves a file uncommitted.
    let sha = commit_in_box(&env, &cid, &repo, &top, &base, &format!("ai/{id}"));
    box_sh(&cid, &format!("echo wip > {top}/wip.txt"));
    let fetched = env.ok(&["fetch", &id]);
    assert!(
        fetched.contains(&format!("ai-sessions/{id} at {}", &sha[..12])),
        "{fetched}"
    );
    assert_eq!(
        git(
            &repo,
            &["rev-parse", &format!("refs/remotes/ai-sessions/{id}")]
        ),
        sha
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), status_before);

    // diff: the commit and the uncommitted file, against what was sent.
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["diff", &id, "--json"])).unwrap();
    assert_eq!(report["scope"], "clone", "{report:#}");
    assert_eq!(report["base_commit"], base.as_str(), "{report:#}");
    let mut files: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["agent.txt", "wip.txt"], "{report:#}");

    // Stopped (its container gone), the work is still there to fetch.
    env.ok(&["stop", &id]);
    assert!(!container_exists(&cid));
    let fetched = env.ok(&["fetch", &id, "--uncommitted"]);
    assert!(
        fetched.contains(&format!("ai-sessions/{id}-uncommitted at")),
        "{fetched}"
    );
    assert_eq!(
        git(
            &repo,
            &[
                "show",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:wip.txt")
            ]
        ),
        "wip"
    );
    // A start again finds the work where it was (not sent afresh).
    env.ok(&["start", "--clone", "-m", "claude", "-d", &top]);
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = box_sh(
        &cid,
        &format!("cat {top}/wip.txt {top}/.git/refs/heads/ai/{id}"),
    );
    assert_eq!(seen, format!("wip\n{sha}\n"));

    // rm: the volumes and the base ref go with the instance; what was
    // fetched stays.
    env.ok(&["rm", "--force", &id]);
    assert_eq!(volumes_of(&id), Vec::<String>::new());
    let refs = git(&repo, &["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains(&format!("refs/ai-sessions/{id}/")), "{refs}");
    assert!(
        refs.lines()
            .any(|r| r == format!("refs/remotes/ai-sessions/{id}")),
        "{refs}"
    );
}

/// What a repository can name to run: hooks, `core.fsmonitor`, a filter
/// its attributes use; each would touch a file in `canary`.
fn poison(git_dir: &Path, canary: &Path) {
    let touch = |what: &str| format!("touch {}/{what}; cat", canary.display());
    let config = git_dir.join("config");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(&format!(
        "[core]\n\tfsmonitor = \"{}\"\n\tpager = \"{}\"\n[filter \"x\"]\n\tclean = \"{}\"\n\tsmudge = \"{}\"\n\
         [diff \"x\"]\n\ttextconv = \"{}\"\n",
        touch("fsmonitor"),
        touch("pager"),
        touch("clean"),
        touch("smudge"),
        touch("textconv"),
    ));
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(git_dir.join("info")).unwrap();
    std::fs::write(git_dir.join("info/attributes"), "* filter=x diff=x\n").unwrap();
    let hooks = git_dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for h in [
        "pre-commit",
        "post-commit",
        "post-checkout",
        "reference-transaction",
        "pre-auto-gc",
        "post-index-change",
        "fsmonitor-watchman",
    ] {
        let f = hooks.join(h);
        std::fs::write(
            &f,
            format!("#!/bin/sh\ntouch {}/hook-{h}\n", canary.display()),
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn fired(canary: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(canary)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_hostile_repository_and_a_hostile_box_run_nothing_on_the_host() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("clh");
    let repo = repo(&env, &name);
    let canary = env.projects.path().join(format!("canary-{name}"));
    std::fs::create_dir_all(&canary).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", repo.join("link")).unwrap();
    poison(&repo.join(".git"), &canary);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fired(&canary),
        Vec::<String>::new(),
        "the host repository's programs ran"
    );
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The link went as a link, not as the host file it names.
    let seen = box_sh(&cid, &format!("readlink {top}/link"));
    assert_eq!(seen.trim(), "/etc/hostname");

    // The box poisons its own repository: our git reads it at fetch.
    let host_git = env.projects.path().join(format!("boxgit-{name}"));
    std::fs::create_dir_all(&host_git).unwrap();
    poison(&host_git, &canary);
    std::fs::write(
        host_git.join("alternates"),
        format!("{}/.git/objects\n", repo.display()),
    )
    .unwrap();
    for f in ["config", "info", "hooks"] {
        docker_ok(&[
            "cp",
            host_git.join(f).to_str().unwrap(),
            &format!("{cid}:{top}/.git/"),
        ]);
    }
    docker_ok(&[
        "cp",
        host_git.join("alternates").to_str().unwrap(),
        &format!("{cid}:{top}/.git/objects/info/alternates"),
    ]);
    box_sh(
        &cid,
        &format!(
            "echo changed > {top}/README && ln -s /etc/passwd {top}/.git/refs/heads/evil && \
             ln -s /etc/shadow {top}/also"
        ),
    );
    let fetched = env.ok(&["fetch", &id, "--uncommitted"]);
    assert!(fetched.contains("-uncommitted at"), "{fetched}");
    let diff = env.ok(&["diff", &id, "--no-pager"]);
    assert!(diff.contains("+changed"), "{diff}");
    assert_eq!(
        fired(&canary),
        Vec::<String>::new(),
        "the box's programs ran"
    );
    // What the box linked came back as a link, not as the file.
    assert_eq!(
        git(
            &repo,
            &[
                "cat-file",
                "-p",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:also")
            ]
        ),
        "/etc/shadow"
    );
    // Nothing of the box's reached the host's refs but the two fetched.
    let refs = git(&repo, &["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains("evil"), "{refs}");

    // The box's scene is live: plain git in a copy of its repository
    // runs what it names.
    let copy = env.projects.path().join(format!("boxcopy-{name}"));
    docker_ok(&["cp", &format!("{cid}:{top}"), copy.to_str().unwrap()]);
    let _ = Command::new("git")
        .arg("-C")
        .arg(&copy)
        .args(["status", "--short"])
        .output()
        .unwrap();
    assert!(
        fired(&canary).iter().any(|f| f == "fsmonitor"),
        "the box's poison is not live: {:?}",
        fired(&canary)
    );
    // And plain git in the host repository runs the host's.
    let _ = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["commit", "-q", "--allow-empty", "-m", "control"])
        .output()
        .unwrap();
    assert!(
        fired(&canary).iter().any(|f| f.starts_with("hook-")),
        "the poison is not live: {:?}",
        fired(&canary)
    );
    env.ok(&["rm", "--force", &id]);
}

/// A non-loopback IPv4 address of this machine (an engine reached there
/// is "on another machine" to us), if it has one.
fn outside_address() -> Option<std::net::Ipv4Addr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    stdout(&out)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}

#[test]
fn an_engine_on_another_address_gets_a_clone_and_mount_is_refused() {
    require_docker!();
    let Some(ip) = outside_address() else {
        eprintln!("\n*** SKIPPED: this machine has no address but loopback ***\n");
        return;
    };
    let env = Env::new();
    docker_config(&env, "");
    let port = crate::docker_host_tcp::proxy_on(ip);
    let host = format!("tcp://{ip}:{port}");
    let name = env.unique("clr");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let via = |args: &[&str]| {
        env.cmd()
            .current_dir(&repo)
            .env("DOCKER_HOST", &host)
            .args(args)
            .output()
            .unwrap()
    };

    // `--mount`, with or without `-w`, is refused there (not quietly
    // turned into a clone), and no worktree is made here.
    for args in [
        &["start", "--mount", "-m", "claude", "-d"][..],
        &["start", "--mount", "-w", "feat", "-m", "claude", "-d"][..],
    ] {
        let out = via(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("another machine") && stderr(&out).contains("--mount"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!repo.join(".claude/worktrees/feat").exists());

    // An egress policy works there too (its sidecar's files go through
    // the engine): `none` leaves the box no network at all.
    let out = via(&["start", "--egress", "none", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &cid]).trim(),
        "none"
    );
    let out = via(&["rm", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(volumes_of(&id), Vec::<String>::new());

    let out = via(&["start", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("using clone mode"),
        "{}",
        stderr(&out)
    );
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(binds(&cid), Vec::<String>::new());
    box_sh(&cid, &format!("echo far > {}/far.txt", repo.display()));
    let out = via(&["fetch", &id, "--uncommitted"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        git(
            &repo,
            &[
                "show",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:far.txt")
            ]
        ),
        "far"
    );
    let out = via(&["rm", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(volumes_of(&id), Vec::<String>::new());
}

#[test]
fn project_mode_clone_and_land_bring_the_box_branch_home() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "\n[project]\nmode = \"clone\"\n");
    let name = env.unique("cll");
    let repo = repo(&env, &name);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "all of it"]);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    // No flag: the config's mode.
    let out = env.run_in(&repo, &["start", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = env.instance(&id);
    assert_eq!(inst["clone"]["branch"], format!("ai/{id}"), "{inst:#}");
    assert_eq!(inst["clone"]["base"], "main", "{inst:#}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    assert_eq!(binds(&cid), Vec::<String>::new());

    let base = git(
        &repo,
        &["rev-parse", &format!("refs/ai-sessions/{id}/base")],
    );
    assert_eq!(
        base,
        git(&repo, &["rev-parse", "HEAD"]),
        "nothing uncommitted: HEAD itself"
    );
    let sha = commit_in_box(&env, &cid, &repo, &top, &base, &format!("ai/{id}"));
    box_sh(&cid, &format!("echo wip > {top}/wip.txt"));

    // Uncommitted work in the box: refused, nothing changed.
    let out = env.run_in(&repo, &["land", &id]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uncommitted changes in its box"),
        "{}",
        stderr(&out)
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), base);

    // --pr and --rebase need the work tree, which is in the box: refused
    // with the way on, nothing changed.
    for (args, says) in [
        (&["land", id.as_str(), "--pr"][..], "push it yourself"),
        (
            &["land", id.as_str(), "--rebase", "--commit", "x"][..],
            "--merge or --squash",
        ),
    ] {
        let out = env.run_in(&repo, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(git(&repo, &["rev-parse", "HEAD"]), base);
    }

    // --commit: the branch and the work, committed as asked, merged.
    let out = env.run_in(&repo, &["land", &id, "--commit", "finish the box's work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("merged"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(repo.join("agent.txt")).unwrap(),
        "made in the box\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("wip.txt")).unwrap(),
        "wip\n"
    );
    // The whole history: a merge and commits of one second list in no fixed order.
    let log = git(&repo, &["log", "--format=%s"]);
    assert!(
        log.contains("finish the box's work") && log.contains("the agent's commit"),
        "{log}"
    );
    assert!(git(&repo, &["merge-base", "--is-ancestor", &sha, "HEAD"]).is_empty());
    env.ok(&["rm", "--force", &id]);
    assert_eq!(volumes_of(&id), Vec::<String>::new());
}

#[test]
fn gc_removes_the_volumes_of_an_instance_the_registry_lost_but_its_repository() {
    require_docker!();
    let _gc = common::gc_turn();
    let env = Env::new();
    docker_config(&env, "");
    let ghost = format!("{}-claude", env.unique("ghost"));
    let home = common::home_label(env.state());
    let volume = format!("{}-state", common::cname_in(&env, &ghost));
    let repo_volume = format!("{}-repo", common::cname_in(&env, &ghost));
    for v in [&volume, &repo_volume] {
        docker_ok(&[
            "volume",
            "create",
            "--label",
            "ai.managed-by=ai-sessctl",
            "--label",
            &format!("ai.home={home}"),
            "--label",
            &format!("ai.instance={ghost}"),
            v,
        ]);
    }
    // Another home's volume of the same name stem is not ours to take.
    let theirs = format!("{volume}-theirs");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        "ai.managed-by=ai-sessctl",
        "--label",
        "ai.home=/somewhere/else",
        "--label",
        &format!("ai.instance={ghost}"),
        &theirs,
    ]);
    let out = env.ok(&["gc"]);
    assert!(out.contains(&format!("removed volume {volume}")), "{out}");
    // The repository may hold the agent's unfetched work: kept, said so.
    assert!(
        out.contains(&format!("kept volume {repo_volume}"))
            && out.contains(&format!("docker volume rm {repo_volume}")),
        "{out}"
    );
    let mut left = volumes_of(&ghost);
    left.sort();
    assert_eq!(left, vec![repo_volume.clone(), theirs.clone()]);
    docker_ok(&["volume", "rm", &theirs, &repo_volume]);
}

#[test]
fn a_project_in_a_subdirectory_gets_the_whole_repository_and_works_in_its_directory() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("cls");
    let repo = repo(&env, &name);
    let sub = repo.join("pkg");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("lib.txt"), "lib\n").unwrap();
    let out = env.run_in(&sub, &["run", "claude", "--here", "--clone", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).lines().next().unwrap_or_default().to_owned();
    let inst = env.instance(&id);
    assert_eq!(inst["clone"]["repo"], repo.to_str().unwrap(), "{inst:#}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    let seen = box_sh(
        &cid,
        "pwd; cat lib.txt ../README; test -d ../.git && echo has-git",
    );
    assert_eq!(
        seen,
        format!("{}\nlib\none\ntwo\nhas-git\n", sub.display()),
        "the box works in the subdirectory of the whole repository"
    );
    env.ok(&["rm", "--force", &id]);
}

#[test]
fn the_api_creates_a_clone_instance_and_fetches_its_work() {
    use crate::api_support::{token, Serve};
    use serde_json::json;
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("cla");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let srv = Serve::start(&env);
    let tok = token(&env);

    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .json(&json!({"project_path": repo, "mode": "claude", "clone": true}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    let inst = r.json();
    assert_eq!(inst["clone"]["branch"], format!("ai/{id}"), "{inst}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    assert_eq!(binds(&cid), Vec::<String>::new());
    box_sh(&cid, &format!("echo api > {}/api.txt", repo.display()));

    let r = srv
        .req("POST", &format!("/api/v1/instances/{id}/fetch"))
        .bearer(&tok)
        .json(&json!({"uncommitted": true}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let fetched = r.json();
    assert_eq!(
        fetched["uncommitted_ref"],
        format!("refs/remotes/ai-sessions/{id}-uncommitted"),
        "{fetched}"
    );
    assert_eq!(
        git(
            &repo,
            &[
                "show",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:api.txt")
            ]
        ),
        "api"
    );
    // An instance that does not exist: 404.
    let r = srv
        .req("POST", "/api/v1/instances/nope-claude/fetch")
        .bearer(&tok)
        .json(&json!({}))
        .send();
    assert_eq!(r.status, 404, "{}", r.text());
    env.ok(&["rm", "--force", &id]);
}

/// A `fetch` killed while it copies the box's repository out leaves the
/// container it copies through; `gc` removes it (and only once its fetch
/// is gone), and a fetch after that works.
#[test]
fn gc_removes_the_copy_container_of_a_killed_fetch() {
    require_docker!();
    let _gc = common::gc_turn();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("kf");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();
    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Enough to copy that the fetch is caught in the middle.
    box_sh(
        &cid,
        &format!("dd if=/dev/urandom of={top}/.git/ballast bs=1M count=300 2>/dev/null"),
    );
    let copies = || {
        docker_ok(&["ps", "-aq", "--filter", &format!("label=ai.fetch={id}")])
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut fetch = env.cmd().args(["fetch", &id]).spawn().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while copies().is_empty() && std::time::Instant::now() < end {
        if fetch.try_wait().unwrap().is_some() {
            panic!("the fetch ended before it could be killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fetch.kill().unwrap();
    fetch.wait().unwrap();
    let left = copies();
    assert_eq!(left.len(), 1, "the killed fetch left no copy container");

    let out = env.ok(&["gc"]);
    assert!(
        out.contains("removed fetch container") && out.contains("its fetch is gone"),
        "{out}"
    );
    assert_eq!(copies(), Vec::<String>::new());
    box_sh(&cid, &format!("rm {top}/.git/ballast"));
    let fetched = env.ok(&["fetch", &id]);
    assert!(
        fetched.contains(&format!("ai-sessions/{id} at")),
        "{fetched}"
    );
    env.ok(&["rm", "-f", &id]);
}

/// `-w NAME` in clone mode (here `project.mode = "clone"`): no worktree is
/// made on this machine; the agent gets the instance a worktree of that
/// name would (`<project>-NAME-<mode>`), with a clone of its own, beside
/// the project's other agent; `-w` alone makes a name up and says where
/// the work is; `--mount -w` still makes a worktree.
#[test]
fn w_in_clone_mode_is_a_clone_of_its_own_and_makes_no_worktree_here() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "\n[project]\nmode = \"clone\"\n");
    let name = env.unique("clw");
    let repo = repo(&env, &name);
    let main_id = format!("{name}-claude");
    let feat_id = format!("{name}-feat-claude");

    let out = env.run_in(&repo, &["start", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run_in(&repo, &["start", "-m", "claude", "-d", "-w", "feat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), feat_id);
    let feat = env.instance(&feat_id);
    assert_eq!(feat["status"], "running", "{feat:#}");
    assert_eq!(feat["clone"]["branch"], format!("ai/{feat_id}"), "{feat:#}");
    assert!(feat["worktree"].is_null(), "{feat:#}");
    let cid = feat["container_id"].as_str().unwrap().to_owned();
    assert_eq!(binds(&cid), Vec::<String>::new());
    assert_eq!(env.instance(&main_id)["status"], "running");
    assert_ne!(env.instance(&main_id)["container_id"], feat["container_id"]);
    // Nothing made on the host: no worktree, no branch.
    assert!(!repo.join(".claude").exists());
    assert_eq!(git(&repo, &["worktree", "list"]).lines().count(), 1);
    assert!(git(&repo, &["branch", "--list", "worktree-*"]).is_empty());
    // The same name is the same agent.
    let again = env.run_in(&repo, &["start", "-m", "claude", "-d", "-w", "feat"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already running"),
        "{}",
        stderr(&again)
    );

    let out = env.run_in(&repo, &["start", "-m", "claude", "-d", "-w"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let made_up = stdout(&out).trim().to_owned();
    assert!(
        made_up.starts_with(&format!("{name}-"))
            && made_up.ends_with("-claude")
            && made_up != main_id,
        "{made_up}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{made_up} works in a clone of"))
            && err.contains(&format!("ai-sessctl fetch {made_up}")),
        "{err}"
    );

    // --mount: a worktree on this machine, as without clone mode.
    let out = env.run_in(
        &repo,
        &["start", "-m", "claude", "-d", "--mount", "-w", "local"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(repo.join(".claude/worktrees/local").is_dir());
    env.ok(&["rm", "-f", &main_id, &feat_id, &made_up]);
    env.ok(&["rm", "-f", "--worktree", &format!("{name}-local-claude")]);
}

/// The activity of `id` as `list --json` shows it, read by a `list` that
/// starts no watcher and asks no engine: what the background watcher
/// brought home.
fn listed_activity(env: &Env, id: &str) -> (String, bool) {
    let out = env
        .cmd()
        .env("AI_SESSIONS_NO_WATCHER", "1")
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "list: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| {
            (
                i["activity"].as_str().unwrap_or("").to_owned(),
                i["needs_you"] == true,
            )
        })
        .unwrap_or_default()
}

#[test]
fn a_clone_instance_says_it_needs_you_and_is_logged_in_without_a_mount() {
    use crate::common::wait_until;
    use std::time::Duration;
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("cln");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    // The login, and the first-run answers, from this machine's agent.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join(".claude")).unwrap();
    std::fs::write(
        host.path().join(".claude/.credentials.json"),
        "token-from-login\n",
    )
    .unwrap();
    std::fs::write(
        host.path().join(".claude.json"),
        serde_json::json!({
            "hasCompletedOnboarding": true,
            "theme": "dark",
            "projects": {&top: {"hasTrustDialogAccepted": true}},
        })
        .to_string(),
    )
    .unwrap();
    let out = env
        .cmd()
        .env("HOME", host.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["login", "claude", "--from-host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(binds(&cid), Vec::<String>::new(), "nothing of the host");

    // Logged in, privately, with the first-run questions answered.
    let state = "/home/agent/.claude";
    let seen = box_sh(&cid, &format!("cat {state}/.credentials.json"));
    assert_eq!(seen, "token-from-login\n");
    let seen = box_sh(&cid, &format!("ls -ln {state}/.credentials.json"));
    assert!(seen.starts_with("-rw-------"), "{seen}");
    let answers: serde_json::Value =
        serde_json::from_str(&box_sh(&cid, &format!("cat {state}/.claude.json"))).unwrap();
    assert_eq!(answers["hasCompletedOnboarding"], true, "{answers}");
    assert_eq!(
        answers["projects"][&top]["hasTrustDialogAccepted"], true,
        "{answers}"
    );

    // The agent's hook says it waits: the list says it needs you.
    let says = |cid: &str, word: &str| {
        box_sh(
            cid,
            &format!("printf '{word}\\n' >\"$AI_SESSION_STATUS_FILE\""),
        );
    };
    says(&cid, "waiting");
    assert!(
        wait_until(Duration::from_secs(10), || listed_activity(&env, &id)
            == ("waiting".to_owned(), true)),
        "{:?}",
        listed_activity(&env, &id)
    );
    says(&cid, "idle");
    assert!(
        wait_until(Duration::from_secs(10), || listed_activity(&env, &id)
            == ("idle".to_owned(), false)),
        "{:?}",
        listed_activity(&env, &id)
    );

    // A new login reaches the box at its next start.
    std::fs::write(
        env.state().join("states/claude/.credentials.json"),
        "token-after-login-again\n",
    )
    .unwrap();
    env.ok(&["stop", &id]);
    env.ok(&["start", "--clone", "-m", "claude", "-d", &top]);
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = box_sh(&cid, &format!("cat {state}/.credentials.json"));
    assert_eq!(seen, "token-after-login-again\n");
    says(&cid, "waiting");
    assert!(
        wait_until(Duration::from_secs(10), || listed_activity(&env, &id)
            == ("waiting".to_owned(), true)),
        "{:?}",
        listed_activity(&env, &id)
    );
    env.ok(&["rm", "--force", &id]);
    assert_eq!(volumes_of(&id), Vec::<String>::new());
}

/// The test config with `worktree.setup = STEPS` (a TOML array).
fn with_setup(env: &Env, steps: &str) {
    docker_config(env, "");
    let path = env.state().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[worktree]\nsetup = {steps}\n")).unwrap();
}

/// `worktree.setup` runs in a clone's box as in a worktree's (a fresh
/// checkout has no `node_modules` either): before the agent, in the
/// project's directory there, its outcome read through the engine. A
/// failure stops the start naming the command; the next start runs the
/// steps again and is not fooled by the failure its volume still holds.
#[test]
fn setup_runs_in_a_clone_box_and_its_failure_is_reported() {
    require_docker!();
    let env = Env::new();
    with_setup(
        &env,
        r#"["echo before-the-failure", "exit 6", "echo never-run"]"#,
    );
    let name = env.unique("cls");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(!out.status.success(), "started despite the failure");
    let err = stderr(&out);
    assert!(err.contains("`exit 6`"), "{err}");
    assert!(err.contains("exit code 6"), "{err}");
    let inst = env.instance(&id);
    assert!(
        inst["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("exit 6"),
        "{inst:#}"
    );
    let logs = stdout(&env.run(&["logs", &id]));
    assert!(logs.contains("before-the-failure"), "{logs}");
    assert!(!logs.contains("never-run"), "{logs}");

    // Fixed: the same instance (its volumes kept) starts, after its setup.
    with_setup(&env, r#"["pwd > made-by-setup"]"#);
    let out = env.run_in(&repo, &["start", "--clone", "-m", "claude", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("worktree.setup"), "{}", stderr(&out));
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "running", "{inst:#}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    let made = box_sh(&cid, &format!("cat {top}/made-by-setup"));
    assert_eq!(made.trim(), top);
    // In the box's copy only.
    assert!(!repo.join("made-by-setup").exists());
    env.ok(&["stop", &id]);
}

/// A clone started through the API (which waits for no setup) whose setup
/// fails is listed in error with the command's reason, read from its box.
#[test]
fn a_clone_whose_setup_fails_is_listed_with_the_reason() {
    use crate::api_support::{token, Serve};
    use serde_json::json;
    require_docker!();
    let env = Env::new();
    with_setup(&env, r#"["exit 9"]"#);
    let name = env.unique("clf");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let srv = Serve::start(&env);
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&token(&env))
        .json(&json!({"project_path": repo, "mode": "claude", "clone": true}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    let mut seen = serde_json::Value::Null;
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            env.ok(&["list"]);
            seen = env.instance(&id);
            seen["status"] == "error"
        }),
        "{seen:#}"
    );
    let why = seen["status_reason"].as_str().unwrap_or("");
    assert!(
        why.contains("setup command `exit 9` failed with exit code 9"),
        "{seen:#}"
    );
}
