//! Log in once per agent: instances of different projects share the
//! agent's state dir, `login --from-host` copies the host's login (0600,
//! never printed), `login MODE` runs a login container on the shared
//! state, and `state migrate` merges old per-instance dirs losing nothing.

mod common;
mod docker_support;

use common::{stderr, stdout, Env};
use docker_support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn container_of(env: &Env, id: &str) -> String {
    env.instance(id)["container_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} has no container: {}", env.instance(id)))
        .to_owned()
}

fn start_detached(env: &Env, name: &str) -> String {
    let proj = env.project(name);
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start {name}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn a_login_written_by_one_instance_is_seen_by_another_project() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let a = start_detached(&env, &env.unique("login-a"));
    let b = start_detached(&env, &env.unique("login-b"));
    let (ca, cb) = (container_of(&env, &a), container_of(&env, &b));
    docker_ok(&[
        "exec",
        &ca,
        "sh",
        "-c",
        "echo token-from-a > /home/agent/.claude/.credentials.json",
    ]);
    let seen = docker_ok(&["exec", &cb, "cat", "/home/agent/.claude/.credentials.json"]);
    assert_eq!(seen.trim(), "token-from-a", "b sees a's login");
    let shared = env.state().join("states/claude/.credentials.json");
    assert_eq!(std::fs::read_to_string(shared).unwrap(), "token-from-a\n");
    // A third instance started later is logged in from its first second.
    let c = start_detached(&env, &env.unique("login-c"));
    let seen = docker_ok(&[
        "exec",
        &container_of(&env, &c),
        "cat",
        "/home/agent/.claude/.credentials.json",
    ]);
    assert_eq!(seen.trim(), "token-from-a");
    env.ok(&["stop", &a, &b, &c]);
}

#[test]
fn state_instance_keeps_a_dir_per_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        cfg.replace(
            "[agents.claude]\n",
            "[agents.claude]\nstate = \"instance\"\n",
        ),
    )
    .unwrap();
    let a = start_detached(&env, &env.unique("own-a"));
    let b = start_detached(&env, &env.unique("own-b"));
    docker_ok(&[
        "exec",
        &container_of(&env, &a),
        "sh",
        "-c",
        "echo mine > /home/agent/.claude/.credentials.json",
    ]);
    let out = docker(&[
        "exec",
        &container_of(&env, &b),
        "cat",
        "/home/agent/.claude/.credentials.json",
    ]);
    assert!(!out.status.success(), "b must not see a's own state");
    assert!(env
        .state()
        .join(format!("states/{a}/.credentials.json"))
        .is_file());
    env.ok(&["stop", &a, &b]);
}

#[test]
fn login_in_a_container_writes_the_shared_state() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        cfg.replace(
            "[agents.claude]\n",
            "[agents.claude]\nlogin_command = [\"sh\", \"-c\", \"echo logged-in > /home/agent/.claude/.credentials.json; echo done\"]\n",
        ),
    )
    .unwrap();
    let out = env.run(&["login", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));
    let f = env.state().join("states/claude/.credentials.json");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "logged-in\n");
    // The throwaway container is gone.
    let home = env.state().canonicalize().unwrap();
    let left = containers_with_label("ai.home", home.to_str().unwrap());
    assert!(left.is_empty(), "login container left behind: {left:?}");
}

#[test]
fn login_from_host_copies_the_hosts_file_privately_and_silently() {
    let env = Env::new();
    let host_home = tempfile::tempdir().unwrap();
    let secret = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET-xyz"}}"#;
    std::fs::create_dir_all(host_home.path().join(".claude")).unwrap();
    let src = host_home.path().join(".claude/.credentials.json");
    std::fs::write(&src, secret).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .cmd()
        .env("HOME", host_home.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["login", "claude", "--from-host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("SECRET"), "the login was printed: {all}");
    let dst = env.state().join("states/claude/.credentials.json");
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), secret);
    let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "copied with {mode:o}");
    let dir_mode = std::fs::metadata(dst.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let events = std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap();
    assert!(!events.contains("SECRET"), "{events}");

    // Nothing to copy: a clear error, exit 3, nothing written.
    let empty = tempfile::tempdir().unwrap();
    let env2 = Env::new();
    let out = env2
        .cmd()
        .env("HOME", empty.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["login", "claude", "--from-host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(".credentials.json"),
        "{}",
        stderr(&out)
    );
    assert!(!env2
        .state()
        .join("states/claude/.credentials.json")
        .exists());
}

fn write(p: &Path, text: &str, age_secs: u64) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn state_migrate_merges_per_instance_dirs_and_loses_nothing() {
    let env = Env::new();
    let s = env.state().join("states");
    // Two old per-instance dirs and an existing shared one.
    write(&s.join("a-claude/.credentials.json"), "newest", 10);
    write(&s.join("a-claude/projects/a/1.jsonl"), "a history", 100);
    write(&s.join("b-claude/.credentials.json"), "oldest", 1000);
    write(&s.join("b-claude/projects/b/1.jsonl"), "b history", 100);
    write(&s.join("b-claude/settings.json"), "same", 100);
    write(&s.join("claude/.credentials.json"), "middle", 500);
    write(&s.join("claude/settings.json"), "same", 50);
    write(&s.join("x-gemini/oauth_creds.json"), "gem", 100);

    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let read = |rel: &str| std::fs::read_to_string(s.join(rel)).unwrap();
    assert_eq!(read("claude/.credentials.json"), "newest", "newest wins");
    assert_eq!(read("claude/projects/a/1.jsonl"), "a history");
    assert_eq!(read("claude/projects/b/1.jsonl"), "b history");
    assert_eq!(read("claude/settings.json"), "same");
    assert_eq!(read("gemini/oauth_creds.json"), "gem");
    // The losers are kept aside and named.
    assert_eq!(read(".migrated/a-claude/.credentials.json"), "middle");
    assert_eq!(read(".migrated/b-claude/.credentials.json"), "oldest");
    assert!(
        text.contains(".migrated/a-claude/.credentials.json"),
        "{text}"
    );
    assert!(
        text.contains(".migrated/b-claude/.credentials.json"),
        "{text}"
    );
    for old in ["a-claude", "b-claude", "x-gemini"] {
        assert!(!s.join(old).exists(), "{old} should be merged away: {text}");
    }
    // Every byte is still somewhere: count the files.
    let mut n = 0;
    let mut stack = vec![s.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    // 8 written, 1 identical copy dropped.
    assert_eq!(n, 7, "{text}");
    // A second run has nothing left to do.
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
