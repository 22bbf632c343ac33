//! The project root an agent gets mounted: never `/`, `$HOME` itself, the
//! state directory or a directory holding it; the climb to the nearest
//! `.git` stops at `$HOME`, at a file system boundary and at anything owned
//! by another uid (git's CVE-2022-24765 rule). Paths are canonical first.

use crate::api_support;

use crate::common::{stderr, stdout, Env};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A fake `$HOME` for the child processes (never the real one).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("ais-fakehome")
            .tempdir()
            .unwrap();
        Home { dir }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }
}

fn start_in(env: &Env, home: &Home, dir: &Path, path: Option<&Path>) -> Output {
    let mut c = env.cmd();
    c.current_dir(dir).env("HOME", home.path());
    c.args(["start", "--mode", "claude", "--detach"]);
    if let Some(p) = path {
        c.arg(p);
    }
    c.output().unwrap()
}

/// Containers of this state home, by the `ai.home` label.
fn containers_of(env: &Env) -> Vec<String> {
    let home = env.state().canonicalize().unwrap();
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=ai.home={}", home.display()))
        .output()
        .unwrap();
    stdout(&out).split_whitespace().map(str::to_owned).collect()
}

fn assert_refused(out: &Output, dir: &Path) {
    let err = stderr(out);
    assert!(!out.status.success(), "refused: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(&dir.display().to_string()) && first.contains("ai-sessctl start PATH"),
        "one line naming the directory and the way out: {err}"
    );
}

#[test]
fn dotfiles_home_is_never_the_project() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let home = Home::new();
    // A dotfiles repository: $HOME is a git work tree.
    std::fs::create_dir(home.path().join(".git")).unwrap();
    let out = start_in(&env, &home, &home.path(), None);
    assert_refused(&out, &home.path());
    assert!(containers_of(&env).is_empty(), "no container was created");
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));

    // Below $HOME the climb stops at $HOME: the directory is the project.
    let sub = home.path().join(env.unique("notes"));
    std::fs::create_dir_all(sub.join("deep")).unwrap();
    let out = start_in(&env, &home, &sub.join("deep"), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(
        env.instance(&id)["project_path"],
        sub.join("deep").to_str().unwrap(),
        "the climb did not reach $HOME"
    );

    // An explicit path gets the same checks.
    let out = start_in(&env, &home, &sub, Some(&home.path()));
    assert_refused(&out, &home.path());
}

#[test]
fn filesystem_root_and_the_state_dir_are_refused() {
    let env = Env::new();
    let home = Home::new();
    let out = start_in(&env, &home, Path::new("/"), None);
    assert_refused(&out, Path::new("/"));
    let out = start_in(&env, &home, &home.path(), Some(Path::new("/")));
    assert_refused(&out, Path::new("/"));
    // The state dir, a directory holding it, and one inside it.
    let state = env.state().canonicalize().unwrap();
    std::fs::create_dir_all(state.join("states/x")).unwrap();
    for dir in [
        state.clone(),
        state.parent().unwrap().to_path_buf(),
        state.join("states/x"),
    ] {
        let out = start_in(&env, &home, &home.path(), Some(&dir));
        assert_refused(&out, &dir);
    }
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
}

#[test]
fn a_symlink_into_home_is_resolved_before_the_checks() {
    let env = Env::new();
    let home = Home::new();
    let link = env.projects.path().join("innocent");
    std::os::unix::fs::symlink(home.path(), &link).unwrap();
    let out = start_in(&env, &home, env.projects.path(), Some(&link));
    assert_refused(&out, &home.path());
    // Also as the current directory (a shell's $PWD may be the link).
    let mut c = env.cmd();
    c.current_dir(&link)
        .env("HOME", home.path())
        .env("PWD", &link)
        .args(["start", "--mode", "claude", "--detach"]);
    let out = c.output().unwrap();
    assert_refused(&out, &home.path());
}

#[test]
fn a_git_dir_planted_in_a_shared_directory_is_not_climbed_into() {
    require_docker!();
    if !nix::unistd::getuid().is_root() {
        eprintln!("*** SKIPPED: needs root to chown to another uid ***");
        return;
    }
    let env = Env::new();
    env.use_test_image("");
    let home = Home::new();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // A 1777 directory (like /tmp) where another user planted a `.git`.
    let shared = env.project(&env.unique("shared"));
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(shared.join(".git")).unwrap();
    for p in [&shared, &shared.join(".git")] {
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let mine = shared.join(env.unique("mine"));
    std::fs::create_dir(&mine).unwrap();
    let out = start_in(&env, &home, &mine, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(
        env.instance(&id)["project_path"],
        mine.to_str().unwrap(),
        "the climb stopped below the foreign directory"
    );
    // Inside a work tree of ours the climb still finds its top.
    let inner = mine.join("repo");
    std::fs::create_dir_all(inner.join(".git")).unwrap();
    std::fs::create_dir_all(inner.join("src")).unwrap();
    let out = start_in(&env, &home, &inner.join("src"), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(env.instance(&id)["project_path"], inner.to_str().unwrap());
    // `find` from a subdirectory resolves the same project.
    let out = env
        .cmd()
        .current_dir(inner.join("src"))
        .env("HOME", home.path())
        .args(["find", "."])
        .output()
        .unwrap();
    assert!(
        stdout(&out).starts_with(&format!("{id}\t")),
        "{}",
        stderr(&out)
    );
    let _ = std::process::Command::new("chown")
        .args(["-R", "0:0"])
        .arg(&shared)
        .status();
}

#[test]
fn api_create_applies_the_same_checks() {
    let env = Env::new();
    let home = Home::new();
    let mut c = env.cmd();
    c.env("HOME", home.path());
    let srv = api_support::Serve::start_with_cmd(c, &["--addr", "127.0.0.1:0"]);
    let token = api_support::token(&env);
    for dir in [
        PathBuf::from("/"),
        home.path(),
        env.state().canonicalize().unwrap(),
    ] {
        let r = srv
            .req("POST", "/api/v1/instances")
            .bearer(&token)
            .json(&serde_json::json!({"project_path": dir, "mode": "claude"}))
            .send();
        assert_eq!(r.status, 400, "{}: {}", dir.display(), r.text());
        assert!(r.text().contains("cannot be a project"), "{}", r.text());
    }
}
