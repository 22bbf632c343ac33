//! `land ID`: real git (the main checkout has a local bare repository as
//! its origin), a real worktree instance on the engine. The agent's work is
//! committed in its worktree by the test's git (as the agent would); what
//! is asserted is what the user sees: the base branch's history and files
//! in the main checkout, the refusals, and that a refusal changed nothing.

use crate::common::{git, stderr, Env};
use crate::docker_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A user with a repository (origin: a bare one) and an instance in the
/// worktree `feat`; their git identity is in `~/.gitconfig` of `home`.
struct Scene {
    env: Env,
    home: tempfile::TempDir,
    repo: PathBuf,
    origin: PathBuf,
    id: String,
    wt: PathBuf,
    branch: String,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        let env = Env::new();
        docker_config(&env, "");
        let home = tempfile::Builder::new()
            .prefix("ais-user")
            .tempdir()
            .unwrap();
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = Land User\n\temail = land@example.com\n",
        )
        .unwrap();
        let name = env.unique(tag);
        let crate::common::Cloned {
            repo, bare: origin, ..
        } = crate::common::cloned(&env, &name, &[("README", "one\ntwo\nthree\n")]);
        let mut s = Scene {
            env,
            home,
            repo,
            origin,
            id: format!("{name}-feat-claude"),
            wt: PathBuf::new(),
            branch: String::new(),
        };
        let out = s.run(&["start", "--mode", "claude", "--detach", "-w", "feat"]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Wherever the worktree is made and whatever its branch is called:
        // what the instance recorded.
        let inst = s.env.instance(&s.id);
        s.wt = PathBuf::from(inst["worktree"]["path"].as_str().expect("a worktree"));
        s.branch = inst["worktree"]["branch"].as_str().unwrap().to_owned();
        s
    }

    /// The CLI as this user (their HOME, so their `~/.gitconfig`), in the
    /// main checkout.
    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_AUTHOR_NAME")
            .env_remove("GIT_AUTHOR_EMAIL")
            .env_remove("EMAIL")
            .current_dir(&self.repo);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn land(&self, extra: &[&str]) -> Output {
        let mut args = vec!["land", self.id.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// A commit of the agent's in its worktree.
    fn agent_commits(&self, file: &str, text: &str, subject: &str) {
        std::fs::write(self.wt.join(file), text).unwrap();
        git(&self.wt, &["add", file]);
        git(&self.wt, &["commit", "-q", "-m", subject]);
    }

    /// A commit of the user's on main in the main checkout.
    fn user_commits(&self, file: &str, text: &str, subject: &str) {
        std::fs::write(self.repo.join(file), text).unwrap();
        git(&self.repo, &["add", file]);
        git(&self.repo, &["commit", "-q", "-m", subject]);
    }

    fn main_state(&self) -> (String, String, String) {
        (
            git(&self.repo, &["rev-parse", "HEAD"]),
            git(
                &self.repo,
                &["status", "--porcelain", "--untracked-files=all"],
            ),
            git(&self.repo, &["diff", "--cached"]),
        )
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.repo.join(file)).unwrap_or_default()
    }

    fn events(&self) -> String {
        crate::common::stdout(&self.run(&["events", "--json"]))
    }
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(5), "not refused: {}", stderr(out));
    stderr(out)
}

#[test]
fn land_merge_makes_a_merge_commit_as_the_user_and_logs_each_step() {
    require_docker!();
    let s = Scene::new("lmerge");
    s.agent_commits("a.txt", "from the agent\n", "agent: add a");
    s.agent_commits("a2.txt", "more\n", "agent: add a2");
    s.user_commits("b.txt", "from the user\n", "user: add b");

    let out = s.land(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let head = git(&s.repo, &["log", "-1", "--format=%h %s"]);
    assert!(err.contains(&head), "the landed commit is shown: {err}");
    assert!(
        err.contains(&format!("merged {} into main", s.branch)),
        "{err}"
    );
    // A merge commit of both lines, made as the user.
    let parents = git(&s.repo, &["rev-list", "--parents", "-n", "1", "HEAD"]);
    assert_eq!(parents.split(' ').count(), 3, "{parents}");
    assert_eq!(
        git(&s.repo, &["log", "-1", "--format=%an <%ae> / %cn <%ce>"]),
        "Land User <land@example.com> / Land User <land@example.com>"
    );
    assert!(git(&s.repo, &["log", "-1", "--format=%s"]).contains(&s.branch));
    assert_eq!(s.read("a.txt"), "from the agent\n");
    assert_eq!(s.read("a2.txt"), "more\n");
    assert_eq!(s.read("b.txt"), "from the user\n");
    assert_eq!(
        git(&s.repo, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    // Not asked (no terminal): the worktree and the instance stay.
    assert!(err.contains("kept its worktree"), "{err}");
    assert!(s.wt.exists());
    assert_eq!(s.env.instance(&s.id)["status"], "running");

    // Each step is an event.
    let events = s.events();
    assert!(events.contains("land started"), "{events}");
    assert!(
        events.contains(&format!("merged {} into main", s.branch)),
        "{events}"
    );

    // Landed again: nothing to do, and it says so.
    let out = s.land(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to land"), "{}", stderr(&out));
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn land_squash_makes_one_commit_naming_the_branch_and_its_commits() {
    require_docker!();
    let s = Scene::new("lsquash");
    s.agent_commits("a.txt", "1\n", "agent: first step");
    s.agent_commits("a.txt", "1\n2\n", "agent: second step");
    let before = git(&s.repo, &["rev-parse", "HEAD"]);

    let out = s.land(&["--squash", "--stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // One commit, one parent: the old main.
    assert_eq!(git(&s.repo, &["rev-parse", "HEAD~1"]), before);
    assert_eq!(git(&s.repo, &["rev-list", "--count", "HEAD"]), "2");
    let msg = git(&s.repo, &["log", "-1", "--format=%B"]);
    assert!(msg.contains(&s.branch), "{msg}");
    assert!(
        msg.contains("agent: first step") && msg.contains("agent: second step"),
        "{msg}"
    );
    assert_eq!(git(&s.repo, &["log", "-1", "--format=%an"]), "Land User");
    assert_eq!(s.read("a.txt"), "1\n2\n");
    // --stop: stopped, worktree kept.
    assert!(
        stderr(&out).contains(&format!("stopped {}", s.id)),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.env.instance(&s.id)["status"], "stopped");
    assert!(s.wt.exists());
    assert!(s.events().contains("squashed"));
}

#[test]
fn land_rebase_replays_the_branch_and_fast_forwards_then_removes_the_worktree() {
    require_docker!();
    let s = Scene::new("lrebase");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    s.agent_commits("c.txt", "agent c\n", "agent: add c");
    s.user_commits("b.txt", "user\n", "user: add b");

    let out = s.land(&["--rebase", "--remove-worktree"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A straight line: the user's commit, then the agent's two.
    assert_eq!(
        git(&s.repo, &["rev-list", "--merges", "--count", "main"]),
        "0"
    );
    assert_eq!(
        git(&s.repo, &["log", "--format=%s", "main"]),
        "agent: add c\nagent: add a\nuser: add b\ninit"
    );
    assert_eq!(
        git(&s.repo, &["rev-parse", "main"]),
        git(&s.repo, &["rev-parse", &s.branch])
    );
    // The agent's authorship kept, the user's the committer.
    assert_eq!(
        git(&s.repo, &["log", "-1", "--format=%an / %cn"]),
        "t / Land User"
    );
    assert_eq!(s.read("a.txt"), "agent\n");
    assert_eq!(s.read("b.txt"), "user\n");
    // --remove-worktree: the worktree and the instance are gone, the
    // branch stays.
    let err = stderr(&out);
    assert!(err.contains("removed its worktree"), "{err}");
    assert!(!s.wt.exists());
    assert!(s.env.instance(&s.id).is_null(), "{}", s.env.instance(&s.id));
    git(&s.repo, &["rev-parse", "--verify", &s.branch]);
    assert!(s.events().contains("removed the worktree"));
}

#[test]
fn a_dirty_main_checkout_or_another_branch_is_refused_and_nothing_changes() {
    require_docker!();
    let s = Scene::new("ldirty");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    std::fs::write(s.repo.join("README"), "edited by the user\n").unwrap();
    let before = s.main_state();
    let err = refused(&s.land(&[]));
    assert!(
        err.contains("uncommitted changes") && err.contains("README"),
        "{err}"
    );
    assert_eq!(s.main_state(), before);
    assert!(!s.repo.join("a.txt").exists());
    assert!(s.events().contains("land refused"));

    // Untracked files do not count.
    git(&s.repo, &["checkout", "README"]);
    std::fs::write(s.repo.join("notes.txt"), "mine\n").unwrap();
    // On another branch: refused, naming the switch.
    git(&s.repo, &["switch", "-q", "-c", "other"]);
    let before = s.main_state();
    let err = refused(&s.land(&[]));
    assert!(err.contains("switch main"), "{err}");
    assert_eq!(s.main_state(), before);

    git(&s.repo, &["switch", "-q", "main"]);
    let out = s.land(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.read("notes.txt"), "mine\n");
    assert_eq!(s.read("a.txt"), "agent\n");
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn uncommitted_work_in_the_worktree_is_refused_then_landed_with_commit() {
    require_docker!();
    let s = Scene::new("lcommit");
    std::fs::write(s.wt.join("new.txt"), "not committed\n").unwrap();
    std::fs::write(s.wt.join("README"), "one\ntwo\nthree\nfour\n").unwrap();
    let main_before = s.main_state();
    let wt_head = git(&s.wt, &["rev-parse", "HEAD"]);
    let err = refused(&s.land(&[]));
    assert!(
        err.contains("uncommitted changes") && err.contains("--commit"),
        "{err}"
    );
    assert_eq!(s.main_state(), main_before);
    assert_eq!(git(&s.wt, &["rev-parse", "HEAD"]), wt_head);

    let out = s.land(&["--commit", "finish the work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Committed in the worktree as the user, then landed.
    assert_eq!(
        git(&s.repo, &["log", "-1", "--format=%an <%ae> %s", &s.branch]),
        "Land User <land@example.com> finish the work"
    );
    assert_eq!(git(&s.wt, &["status", "--porcelain"]), "");
    assert_eq!(s.read("new.txt"), "not committed\n");
    assert_eq!(s.read("README"), "one\ntwo\nthree\nfour\n");
    assert!(stderr(&out).contains("finish the work"), "{}", stderr(&out));
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn a_conflict_is_refused_naming_the_files_and_leaves_no_half_merge() {
    require_docker!();
    let s = Scene::new("lconf");
    s.agent_commits("README", "one\nTWO by the agent\nthree\n", "agent: README");
    s.agent_commits("clean.txt", "fine\n", "agent: clean");
    s.user_commits("README", "one\nTWO by the user\nthree\n", "user: README");
    let main_before = s.main_state();
    let wt_before = (
        git(&s.wt, &["rev-parse", "HEAD"]),
        git(&s.wt, &["status", "--porcelain"]),
    );
    for strategy in ["--merge", "--squash", "--rebase"] {
        let err = refused(&s.land(&[strategy]));
        assert!(err.contains("README") && err.contains("conflict"), "{err}");
        assert!(
            err.contains(&format!("cd {} && git merge main", s.wt.display())),
            "{err}"
        );
        assert!(!err.contains("clean.txt"), "{err}");
        assert_eq!(s.main_state(), main_before, "{strategy}");
        let common = git(&s.repo, &["rev-parse", "--git-common-dir"]);
        assert!(!s.repo.join(&common).join("MERGE_HEAD").exists());
        assert!(!s.repo.join("clean.txt").exists());
        assert_eq!(
            (
                git(&s.wt, &["rev-parse", "HEAD"]),
                git(&s.wt, &["status", "--porcelain"]),
            ),
            wt_before
        );
    }
    s.env.ok(&["stop", &s.id]);
}

/// A PATH with git and nothing else (no `gh`).
fn path_without_gh(dir: &Path) -> String {
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    std::os::unix::fs::symlink(&real, dir.join("git")).unwrap();
    dir.to_str().unwrap().to_owned()
}

#[test]
fn pr_without_gh_pushes_nothing_and_prints_the_commands() {
    require_docker!();
    let s = Scene::new("lpr");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    let bin = tempfile::tempdir().unwrap();
    let out = s
        .cmd()
        .env("PATH", path_without_gh(bin.path()))
        .args(["land", &s.id, "--pr"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("gh") && err.contains("not installed"), "{err}");
    assert!(err.contains("nothing was pushed"), "{err}");
    assert!(
        err.contains(&format!(
            "git -C {} push -u origin {}",
            s.wt.display(),
            s.branch
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "gh pr create --head {} --base main --fill",
            s.branch
        )),
        "{err}"
    );
    // Nothing pushed, nothing merged locally.
    let pushed = Command::new("git")
        .arg("--git-dir")
        .arg(&s.origin)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{}", s.branch),
        ])
        .output()
        .unwrap();
    assert!(!pushed.status.success(), "the branch reached origin");
    assert!(!s.repo.join("a.txt").exists());
    s.env.ok(&["stop", &s.id]);
}

/// A fake `gh`: logged in; `pr create` records its arguments and answers
/// with a URL.
fn fake_gh(dir: &Path, record: &Path) {
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  auth) exit 0 ;;\n  pr) printf '%s\\n' \"$@\" > '{}'; echo https://github.example/o/r/pull/7 ;;\nesac\n",
        record.display()
    );
    let f = dir.join("gh");
    std::fs::write(&f, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn pr_with_gh_pushes_the_branch_to_origin_and_opens_the_pull_request() {
    require_docker!();
    let s = Scene::new("lprgh");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    // gh names the repository by its URL; the push goes to the bare one.
    git(
        &s.repo,
        &["remote", "set-url", "origin", "https://github.com/o/r.git"],
    );
    git(
        &s.repo,
        &[
            "remote",
            "set-url",
            "--push",
            "origin",
            s.origin.to_str().unwrap(),
        ],
    );
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("gh-args");
    let path = path_without_gh(bin.path());
    fake_gh(bin.path(), &record);
    let out = s
        .cmd()
        .env("PATH", path)
        .args(["land", &s.id, "--pr"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("https://github.example/o/r/pull/7"), "{err}");
    let branch_at_origin = Command::new("git")
        .arg("--git-dir")
        .arg(&s.origin)
        .args(["rev-parse", &format!("refs/heads/{}", s.branch)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&branch_at_origin.stdout).trim(),
        git(&s.wt, &["rev-parse", "HEAD"])
    );
    let args = std::fs::read_to_string(&record).unwrap();
    assert!(
        args.contains("github.com/o/r") && args.contains(&s.branch),
        "{args}"
    );
    assert!(args.contains("agent: add a"), "{args}");
    // Not merged locally.
    assert!(!s.repo.join("a.txt").exists());
    assert!(s.events().contains("pull request opened"));
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn no_hook_of_the_repository_runs() {
    require_docker!();
    let s = Scene::new("lhooks");
    let marker = s.home.path().join("hook-ran");
    let hook = format!("#!/bin/sh\necho \"$0\" >> '{}'\n", marker.display());
    let plant = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        for name in [
            "pre-merge-commit",
            "post-merge",
            "pre-commit",
            "commit-msg",
            "post-commit",
            "pre-rebase",
            "post-rewrite",
            "reference-transaction",
            "pre-push",
        ] {
            let f = dir.join(name);
            std::fs::write(&f, &hook).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    let common = s
        .repo
        .join(git(&s.repo, &["rev-parse", "--git-common-dir"]));
    plant(&common.join("hooks"));
    // The hooks run by the test's own git are off (it sets core.hooksPath
    // on its command line); the ones in the repository's config are not.
    std::fs::write(s.wt.join("new.txt"), "x\n").unwrap();
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    let out = s.land(&["--commit", "with hooks around"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.agent_commits("b.txt", "agent\n", "agent: add b");
    let out = s.land(&["--squash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // core.hooksPath in the repository's config.
    plant(&s.repo.join("myhooks"));
    git(
        &s.repo,
        &[
            "config",
            "core.hooksPath",
            s.repo.join("myhooks").to_str().unwrap(),
        ],
    );
    s.agent_commits("c.txt", "agent\n", "agent: add c");
    let out = s.land(&["--rebase"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.read("c.txt"), "agent\n");
    assert!(
        !marker.exists(),
        "{}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn land_through_the_api_answers_the_result_or_409_with_the_reason() {
    require_docker!();
    use crate::api_support::{token, Serve};
    let s = Scene::new("lapi");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    let mut cmd = s.cmd();
    cmd.current_dir("/");
    let mut srv = Serve::start_with_cmd(cmd, &["--addr", "127.0.0.1:0"]);
    let tok = token(&s.env);
    let path = format!("/api/v1/instances/{}/land", s.id);

    // Without the token: refused, nothing landed.
    let r = srv
        .req("POST", &path)
        .json(&serde_json::json!({"strategy": "squash"}))
        .send();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!s.repo.join("a.txt").exists());

    // A dirty main checkout: 409 with the reason.
    std::fs::write(s.repo.join("README"), "dirty\n").unwrap();
    let r = srv
        .req("POST", &path)
        .bearer(&tok)
        .json(&serde_json::json!({"strategy": "squash", "commit": null, "pr": false}))
        .send();
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("uncommitted changes"), "{}", r.text());
    git(&s.repo, &["checkout", "README"]);

    let r = srv
        .req("POST", &path)
        .bearer(&tok)
        .json(&serde_json::json!({"strategy": "squash", "commit": null, "pr": false}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"], "landed", "{v}");
    assert_eq!(v["strategy"], "squash", "{v}");
    assert_eq!(v["base"], "main", "{v}");
    assert_eq!(
        v["commit"]["sha"].as_str().unwrap(),
        git(&s.repo, &["rev-parse", "--short", "HEAD"])
    );
    assert_eq!(s.read("a.txt"), "agent\n");
    assert!(s.events().contains("land started through the API"));
    srv.terminate(std::time::Duration::from_secs(10));
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn an_untracked_file_the_merge_would_overwrite_stops_it_and_everything_is_put_back() {
    require_docker!();
    let s = Scene::new("luntr");
    s.user_commits("b.txt", "user\n", "user: add b");
    s.agent_commits("notes.txt", "the agent's\n", "agent: notes");
    std::fs::write(s.repo.join("notes.txt"), "the user's own, untracked\n").unwrap();
    let main_before = s.main_state();
    let wt_head = git(&s.wt, &["rev-parse", "HEAD"]);
    for strategy in ["--merge", "--squash", "--rebase"] {
        let err = refused(&s.land(&[strategy]));
        assert!(
            err.contains("notes.txt") && err.contains("nothing was changed"),
            "{strategy}: {err}"
        );
        assert!(
            err.contains("would overwrite untracked files"),
            "{strategy}: {err}"
        );
        assert_eq!(s.main_state(), main_before, "{strategy}");
        assert_eq!(s.read("notes.txt"), "the user's own, untracked\n");
        // The rebase replayed the branch, then was undone.
        assert_eq!(git(&s.wt, &["rev-parse", "HEAD"]), wt_head, "{strategy}");
        assert_eq!(git(&s.wt, &["status", "--porcelain"]), "", "{strategy}");
    }
    s.env.ok(&["stop", &s.id]);
}

#[test]
fn without_a_git_identity_land_refuses_and_says_how_to_set_it() {
    require_docker!();
    let s = Scene::new("lident");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    std::fs::write(s.home.path().join(".gitconfig"), "").unwrap();
    let before = s.main_state();
    let err = refused(&s.land(&[]));
    assert!(err.contains("git config --global user.name"), "{err}");
    assert!(err.contains("git config --global user.email"), "{err}");
    assert_eq!(s.main_state(), before);
    s.env.ok(&["stop", &s.id]);
}

/// On a terminal, after landing it asks: no to removing the worktree, yes
/// to stopping the instance; then yes to removing it on the next land.
#[test]
fn on_a_terminal_it_asks_what_to_do_after_landing() {
    require_docker!();
    if !crate::tmux_support::tools_or_skip("land_prompt", &["tmux"]) {
        return;
    }
    let s = Scene::new("lask");
    s.agent_commits("a.txt", "agent\n", "agent: add a");
    let envs: Vec<(String, String)> = [
        ("AI_SESSIONS_HOME", s.env.state().to_str().unwrap()),
        ("HOME", s.home.path().to_str().unwrap()),
        ("PATH", &std::env::var("PATH").unwrap()),
        ("NO_COLOR", "1"),
        ("TERM", "xterm"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let script = format!(
        "{} land {}; echo EXIT=$?; sleep 600",
        crate::common::BIN,
        s.id
    );
    let t = crate::tmux_support::Tmux::start(&s.repo, &envs, &["sh", "-c", &script]);
    t.wait_text("remove its worktree");
    t.line("n");
    t.wait_text(&format!("stop {}? [y/N]", s.id));
    t.line("y");
    t.wait_text("EXIT=0");
    assert_eq!(s.read("a.txt"), "agent\n");
    assert_eq!(s.env.instance(&s.id)["status"], "stopped");
    assert!(s.wt.exists());
    drop(t);

    s.agent_commits("b.txt", "agent\n", "agent: add b");
    let t = crate::tmux_support::Tmux::start(&s.repo, &envs, &["sh", "-c", &script]);
    t.wait_text("remove its worktree");
    t.line("y");
    t.wait_text("EXIT=0");
    assert_eq!(s.read("b.txt"), "agent\n");
    assert!(!s.wt.exists());
    assert!(s.env.instance(&s.id).is_null());
}

/// A step that fails midway (a squash of commits that cancel out: nothing
/// to commit) is undone: the main checkout is as it was.
#[test]
fn a_step_that_fails_midway_leaves_the_main_checkout_as_it_was() {
    require_docker!();
    let s = Scene::new("lundo");
    s.agent_commits("tmp.txt", "made\n", "agent: add tmp");
    git(&s.wt, &["rm", "-q", "tmp.txt"]);
    git(&s.wt, &["commit", "-q", "-m", "agent: remove tmp"]);
    let before = s.main_state();
    let err = refused(&s.land(&["--squash"]));
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(s.main_state(), before);
    let common = git(&s.repo, &["rev-parse", "--git-common-dir"]);
    assert!(!s.repo.join(&common).join("MERGE_HEAD").exists());
    assert!(!s.repo.join(&common).join("SQUASH_MSG").exists());
    s.env.ok(&["stop", &s.id]);
}
