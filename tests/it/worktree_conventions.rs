//! `-w` the way Claude Code does it, in a box: `<repo>/.claude/worktrees/NAME`
//! on a new branch `worktree-NAME` from the default remote branch
//! (`origin/HEAD`; `worktree.base_ref = "head"`: `HEAD`), a made-up name
//! when none is given, the ignored files `.worktreeinclude` lists copied
//! in; worktrees made the older way (`<repo>.worktrees/NAME`, `ai/NAME`)
//! still found, reused, listed and removed; a link planted on the way
//! refused; and the agent commits as the user. Real git, a real remote (a
//! bare repository), the real engine.

use crate::common::{self, git, stderr, stdout, Env};
use crate::docker_support::*;
use std::path::{Path, PathBuf};

/// A project cloned from a bare `origin` (so `origin/HEAD` is set), whose
/// main checkout is then on another branch, one commit ahead, while origin's
/// `main` moved on too: what each base gives is told apart by its commit.
struct Scene {
    repo: PathBuf,
    /// origin/main (newer than the local main).
    remote_tip: String,
    /// The main checkout's HEAD, on branch `other`.
    head: String,
}

fn scene(env: &Env, name: &str) -> Scene {
    let crate::common::Cloned { repo, bare, seed } =
        crate::common::cloned(env, name, &[("README", "hi\n")]);
    assert_eq!(
        git(&repo, &["symbolic-ref", "refs/remotes/origin/HEAD"]),
        "refs/remotes/origin/main"
    );
    // origin moves on (someone else pushed) and is fetched.
    std::fs::write(seed.join("remote.txt"), "r\n").unwrap();
    git(&seed, &["add", "remote.txt"]);
    git(&seed, &["commit", "-q", "-m", "remote ahead"]);
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(&repo, &["fetch", "-q", "origin"]);
    // The user works on another branch, ahead of main.
    git(&repo, &["checkout", "-q", "-b", "other"]);
    std::fs::write(repo.join("local.txt"), "l\n").unwrap();
    git(&repo, &["add", "local.txt"]);
    git(&repo, &["commit", "-q", "-m", "local ahead"]);
    Scene {
        remote_tip: git(&repo, &["rev-parse", "origin/main"]),
        head: git(&repo, &["rev-parse", "HEAD"]),
        repo,
    }
}

fn with_config(env: &Env, extra: &str) {
    docker_config(env, "");
    let text = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(env.state().join("config.toml"), text + extra).unwrap();
}

fn start_w(env: &Env, repo: &Path, w: &[&str]) -> std::process::Output {
    let mut args = vec!["start", "--mode", "claude", "--detach"];
    args.extend(w);
    env.run_in(repo, &args)
}

#[test]
fn w_name_makes_claude_codes_worktree_from_the_default_remote_branch() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "");
    let name = env.unique("cc");
    let s = scene(&env, &name);

    let out = start_w(&env, &s.repo, &["-w", "feat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-feat-claude");
    let inst = env.instance(&id);
    let wt = s.repo.join(".claude/worktrees/feat");
    assert_eq!(inst["project_path"], wt.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "worktree-feat", "{inst:#}");
    // It lands into main, the local branch of origin's default.
    assert_eq!(inst["worktree"]["base"], "main", "{inst:#}");
    assert_eq!(
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "worktree-feat"
    );
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), s.remote_tip);
    assert!(wt.join("remote.txt").exists());
    assert!(!wt.join("local.txt").exists());
    // The main checkout does not show the worktrees as untracked.
    assert_eq!(git(&s.repo, &["status", "--porcelain"]), "");
    // Git resolves inside the box.
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    let script = "d=$(sed -n 's/^gitdir: //p' .git) && cat \"$d/HEAD\"";
    let seen = docker_ok(&["exec", &cid, "sh", "-c", script]);
    assert!(seen.contains("ref: refs/heads/worktree-feat"), "{seen}");
    // Again: the same worktree, the same instance; the base stays.
    let out = start_w(&env, &s.repo, &["--worktree", "feat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    env.ok(&["stop", &id]);
    let out = start_w(&env, &s.repo, &["-w", "feat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.instance(&id)["worktree"]["base"], "main");

    // `worktree.base_ref = "head"` (Claude Code's spelling `baseRef` too):
    // from the main checkout's HEAD, landing into its branch.
    with_config(&env, "\n[worktree]\nbaseRef = \"head\"\n");
    let out = start_w(&env, &s.repo, &["-w", "fromhead"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wt = s.repo.join(".claude/worktrees/fromhead");
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), s.head);
    assert_eq!(
        env.instance(&format!("{name}-fromhead-claude"))["worktree"]["base"],
        "other"
    );
    // An existing branch of that name is used as it is.
    git(&s.repo, &["branch", "mine", "main"]);
    let main = git(&s.repo, &["rev-parse", "main"]);
    with_config(&env, "");
    let out = start_w(&env, &s.repo, &["-w", "mine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wt = s.repo.join(".claude/worktrees/mine");
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]), "mine");
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), main);
    env.ok(&["stop", "--all"]);
}

/// Without `origin/HEAD` a new worktree starts from `HEAD`.
#[test]
fn without_a_remote_the_worktree_starts_from_head() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "");
    let name = env.unique("norem");
    let repo = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
    git(&repo, &["checkout", "-q", "-b", "topic"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "topic"]);
    let out = start_w(&env, &repo, &["-w", "t"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wt = repo.join(".claude/worktrees/t");
    assert_eq!(
        git(&wt, &["rev-parse", "HEAD"]),
        git(&repo, &["rev-parse", "topic"])
    );
    assert_eq!(
        env.instance(&format!("{name}-t-claude"))["worktree"]["base"],
        "topic"
    );
    env.ok(&["stop", "--all"]);
}

#[test]
fn w_without_a_name_makes_one_up_and_says_it() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "");
    let name = env.unique("anon");
    let s = scene(&env, &name);
    let mut made = Vec::new();
    // `-w` before another option, and `--worktree` last.
    for args in [
        &["start", "--mode", "claude", "-w", "--detach"][..],
        &["start", "--mode", "claude", "--detach", "--worktree"][..],
    ] {
        let out = env.run_in(&s.repo, args);
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.starts_with("worktree "))
            .unwrap_or_else(|| panic!("no name said: {err}"));
        let w = line.split_whitespace().nth(1).unwrap().to_owned();
        assert!(line.contains(&format!("(branch worktree-{w})")), "{line}");
        let wt = s.repo.join(".claude/worktrees").join(&w);
        assert!(line.ends_with(wt.to_str().unwrap()), "{line}");
        assert_eq!(git(&wt, &["rev-parse", "HEAD"]), s.remote_tip);
        let parts: Vec<&str> = w.split('-').collect();
        assert_eq!(parts.len(), 3, "{w}");
        assert!(env.instance(&format!("{name}-{w}-claude")).is_object());
        made.push(w);
    }
    assert_ne!(made[0], made[1]);
    // The name given back is one `-w NAME` takes again.
    let listed = stdout(&env.run_in(&s.repo, &["worktree", "list", "--quiet"]));
    for w in &made {
        assert!(listed.lines().any(|l| l == w), "{w}: {listed}");
    }
    env.ok(&["stop", "--all"]);
}

#[test]
fn worktreeinclude_copies_listed_ignored_files_and_nothing_else() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "\n[worktree]\ncopy = [\"notes.txt\"]\n");
    let name = env.unique("incl");
    let repo = env.project(&name);
    let outside = env.home.path().join("outside-secret");
    std::fs::write(&outside, "HOST SECRET\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".gitignore"), "*.env\n.env\n*.log\nnotes.txt\n").unwrap();
    std::fs::write(
        repo.join(".worktreeinclude"),
        ".env\nconfig/*.env\ntracked.env\nlinked.env\n",
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::write(repo.join("tracked.env"), "committed\n").unwrap();
    git(&repo, &["add", ".gitignore", ".worktreeinclude"]);
    git(&repo, &["add", "-f", "tracked.env"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    // Ignored and listed: copied.
    std::fs::write(repo.join(".env"), "KEY=1\n").unwrap();
    std::fs::write(repo.join("config/dev.env"), "DEV=1\n").unwrap();
    // Ignored, not listed: not copied.
    std::fs::write(repo.join("build.log"), "log\n").unwrap();
    // Listed but tracked (changed in the main checkout): the branch's.
    std::fs::write(repo.join("tracked.env"), "local change\n").unwrap();
    // Listed and ignored, but a link out of the repository: never followed.
    std::os::unix::fs::symlink(&outside, repo.join("linked.env")).unwrap();
    // `worktree.copy` still works beside it.
    std::fs::write(repo.join("notes.txt"), "mine\n").unwrap();

    let out = start_w(&env, &repo, &["-w", "inc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wt = repo.join(".claude/worktrees/inc");
    let read = |f: &str| std::fs::read_to_string(wt.join(f)).ok();
    assert_eq!(read(".env").as_deref(), Some("KEY=1\n"));
    assert_eq!(read("config/dev.env").as_deref(), Some("DEV=1\n"));
    assert_eq!(read("build.log"), None);
    assert_eq!(read("tracked.env").as_deref(), Some("committed\n"));
    assert!(wt.join("linked.env").symlink_metadata().is_err());
    assert_eq!(read("notes.txt").as_deref(), Some("mine\n"));
    let err = stderr(&out);
    assert!(err.contains("linked.env not copied"), "{err}");
    assert!(!err.contains("HOST SECRET"), "{err}");
    // The copies are no work of the agent's: the worktree is clean.
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok(&["worktree", "list", "--all", "--json"])).unwrap();
    assert_eq!(rows[0]["dirty"], false, "{rows:#}");
    env.ok(&["stop", "--all"]);
}

/// `.worktreeinclude` is the box's to write: a link there is not read.
#[test]
fn a_linked_worktreeinclude_is_not_read() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "");
    let name = env.unique("incl-link");
    let repo = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".gitignore"), ".env\n").unwrap();
    git(&repo, &["add", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join(".env"), "KEY=1\n").unwrap();
    let list = env.home.path().join("list");
    std::fs::write(&list, ".env\n").unwrap();
    std::os::unix::fs::symlink(&list, repo.join(".worktreeinclude")).unwrap();
    let out = start_w(&env, &repo, &["-w", "l"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!repo.join(".claude/worktrees/l/.env").exists());
    env.ok(&["stop", "--all"]);
}

#[test]
fn worktrees_made_the_old_way_are_found_reused_listed_and_removed() {
    require_docker!();
    let env = Env::new();
    with_config(&env, "");
    let name = env.unique("old");
    let repo = env.project(&name);
    // `<repo>.worktrees/NAME` on `ai/NAME`, as `-w NAME` made them before.
    common::repo_with_worktrees(&repo, &["legacy"]);
    let old = repo
        .with_file_name(format!("{name}.worktrees"))
        .join("legacy");
    assert!(old.join(".git").exists());

    let out = start_w(&env, &repo, &["-w", "legacy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-legacy-claude");
    let inst = env.instance(&id);
    assert_eq!(inst["project_path"], old.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "ai/legacy", "{inst:#}");
    assert!(!repo.join(".claude/worktrees/legacy").exists());
    // A new one beside it goes to the new place.
    let out = start_w(&env, &repo, &["-w", "fresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(repo.join(".claude/worktrees/fresh/.git").exists());

    // Both listed, names for completion from both places.
    let quiet = stdout(&env.run_in(&repo, &["worktree", "list", "--quiet"]));
    assert_eq!(
        quiet.lines().collect::<Vec<_>>(),
        ["fresh", "legacy"],
        "{quiet}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&stdout(&env.run_in(&repo, &["worktree", "list", "--json"]))).unwrap();
    let branches: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["branch"].as_str().unwrap())
        .collect();
    assert!(branches.contains(&"ai/legacy"), "{rows:#}");
    assert!(branches.contains(&"worktree-fresh"), "{rows:#}");

    // Removed with its instance; its branch stays.
    env.ok(&["stop", &id]);
    let out = env.run(&["rm", "--worktree", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!old.exists(), "{}", stderr(&out));
    assert_eq!(git(&repo, &["branch", "--list", "ai/legacy"]), "ai/legacy");
    // And a new-place one too.
    let fresh = format!("{name}-fresh-claude");
    env.ok(&["stop", &fresh]);
    env.ok(&["rm", "--worktree", &fresh]);
    assert!(!repo.join(".claude/worktrees/fresh").exists());
}

/// The project is the box's to write: `.claude`, `.claude/worktrees` or the
/// worktree itself planted as a link (to `~/.ssh`, say) must not lead git
/// to make or use a worktree there.
#[test]
fn a_linked_claude_worktrees_dir_is_refused() {
    let env = Env::new();
    with_config(&env, "");
    let target = env.home.path().join("dot-ssh");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("id_ed25519"), "KEY\n").unwrap();
    let before = walk_files(&target);

    let plant = |what: &str| {
        let name = env.unique(&format!("link-{}", what.replace('/', "-")));
        let repo = env.project(&name);
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
        let at = repo.join(what);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &at).unwrap();
        repo
    };
    for what in [".claude", ".claude/worktrees", ".claude/worktrees/x"] {
        let repo = plant(what);
        let out = start_w(&env, &repo, &["-w", "x"]);
        assert!(!out.status.success(), "{what}: started");
        let err = stderr(&out);
        assert!(err.contains("symlink"), "{what}: {err}");
        assert!(err.contains("refusing"), "{what}: {err}");
        assert_eq!(walk_files(&target), before, "{what}: written through");
        assert!(!git(&repo, &["worktree", "list"]).contains("worktrees/x"));
        assert_eq!(git(&repo, &["branch", "--list", "worktree-x"]), "");
    }
    // A file where a directory goes: refused too.
    let name = env.unique("file-claude");
    let repo = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
    std::fs::write(repo.join(".claude"), "x").unwrap();
    let out = start_w(&env, &repo, &["-w", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

/// The agent commits as the user: the name and email of the user's own
/// `~/.gitconfig`, which itself never goes in the box (it may name
/// programs and credential helpers).
#[test]
fn the_agent_commits_as_the_user_without_their_git_config() {
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let env = Env::new();
    let script = "set -e; echo from-the-box > boxed.txt; git add boxed.txt; \
                  git commit -q -m 'made in the box'; \
                  echo \"AUTHOR=$(git log -1 --format='%an <%ae>|%cn <%ce>')\"; \
                  if [ -e \"$HOME/.gitconfig\" ]; then echo HAS-GITCONFIG; fi; \
                  git config --global --get core.pager || echo NO-PAGER; echo COMMIT-DONE";
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\nauto_cleanup = false\n\n\
         [agents.claude]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{}\"]\n",
        script.replace('\\', "\\\\").replace('"', "\\\"")
    ));
    let user_home = env.home.path().join("user-home");
    std::fs::create_dir_all(&user_home).unwrap();
    std::fs::write(
        user_home.join(".gitconfig"),
        "[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n[core]\n\tpager = pager-of-the-host\n",
    )
    .unwrap();
    let name = env.unique("ident");
    let repo = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
    let mut c = env.cmd();
    c.current_dir(&repo)
        .env("HOME", &user_home)
        .env("XDG_CONFIG_HOME", user_home.join(".config"))
        .args(["start", "--mode", "claude", "--detach"]);
    for k in [
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ] {
        c.env_remove(k);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let mut logs = String::new();
    assert!(
        common::wait_until(std::time::Duration::from_secs(60), || {
            logs = stdout(&env.run(&["logs", &id]));
            logs.contains("COMMIT-DONE") || env.instance(&id)["status"] != "running"
        }),
        "{logs}"
    );
    logs = stdout(&env.run(&["logs", &id]));
    assert!(
        logs.contains("AUTHOR=Ada Lovelace <ada@example.com>|Ada Lovelace <ada@example.com>"),
        "{logs}"
    );
    assert!(logs.contains("NO-PAGER"), "{logs}");
    assert!(!logs.contains("HAS-GITCONFIG"), "{logs}");
    assert!(!logs.contains("pager-of-the-host"), "{logs}");
    // On the host: the commit is the user's.
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%an <%ae>"]),
        "Ada Lovelace <ada@example.com>"
    );
}

/// `worktree.dir` still sends worktrees elsewhere (a directory per
/// repository), with Claude Code's branch name; one made under its older
/// layout (`<dir>/<basename>/NAME`) is still used.
#[test]
fn worktree_dir_overrides_the_place_and_its_older_layout_is_still_used() {
    require_docker!();
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    with_config(
        &env,
        &format!("\n[worktree]\ndir = \"{}\"\n", dir_path.display()),
    );
    let name = env.unique("wdir");
    let s = scene(&env, &name);
    let out = start_w(&env, &s.repo, &["-w", "x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = env.instance(&format!("{name}-x-claude"));
    let path = PathBuf::from(inst["project_path"].as_str().unwrap());
    assert_eq!(
        path.parent().unwrap().parent().unwrap(),
        dir_path,
        "{inst:#}"
    );
    let per_repo = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert!(per_repo.starts_with(&format!("{name}-")), "{per_repo}");
    assert_eq!(inst["worktree"]["branch"], "worktree-x", "{inst:#}");
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), s.remote_tip);
    assert!(!s.repo.join(".claude").exists());
    // The older `<dir>/<basename>/NAME`.
    let older = dir_path.join(&name).join("y");
    git(
        &s.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "ai/y",
            older.to_str().unwrap(),
        ],
    );
    let out = start_w(&env, &s.repo, &["-w", "y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = env.instance(&format!("{name}-y-claude"));
    assert_eq!(inst["project_path"], older.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "ai/y", "{inst:#}");
    let quiet = stdout(&env.run_in(&s.repo, &["worktree", "list", "--quiet"]));
    assert_eq!(quiet.lines().collect::<Vec<_>>(), ["x", "y"], "{quiet}");
    env.ok(&["stop", "--all"]);
}
