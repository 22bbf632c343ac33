//! Log in once per agent: every instance has a state dir of its own and
//! mounts the agent's login file read-only, `login --from-host` copies the
//! host's login (0600, never printed), `login MODE` runs a login container
//! and keeps only the login file, and `state migrate` copies an old shared
//! state dir into each instance losing nothing.

use crate::common::{stderr, stdout, Env};
use crate::docker_support::*;
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
fn the_agents_login_is_seen_read_only_by_every_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let shared = env.state().join("states/claude/.credentials.json");
    std::fs::create_dir_all(shared.parent().unwrap()).unwrap();
    std::fs::write(&shared, "token-from-login\n").unwrap();
    let a = start_detached(&env, &env.unique("login-a"));
    let b = start_detached(&env, &env.unique("login-b"));
    for id in [&a, &b] {
        let c = container_of(&env, id);
        let seen = docker_ok(&["exec", &c, "cat", "/home/agent/.claude/.credentials.json"]);
        assert_eq!(seen.trim(), "token-from-login", "{id} is logged in");
        let w = docker(&[
            "exec",
            &c,
            "sh",
            "-c",
            "echo token-from-a > /home/agent/.claude/.credentials.json",
        ]);
        assert!(!w.status.success(), "{id} can rewrite the shared login");
    }
    assert_eq!(
        std::fs::read_to_string(&shared).unwrap(),
        "token-from-login\n"
    );
    env.ok(&["stop", &a, &b]);
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
    // Nor the agent's shared login: `state = "instance"` shares nothing.
    std::fs::create_dir_all(env.state().join("states/claude")).unwrap();
    std::fs::write(env.state().join("states/claude/.credentials.json"), "x").unwrap();
    let c = start_detached(&env, &env.unique("own-c"));
    let out = docker(&[
        "exec",
        &container_of(&env, &c),
        "cat",
        "/home/agent/.claude/.credentials.json",
    ]);
    assert!(!out.status.success(), "c mounts the shared login");
    assert!(env
        .state()
        .join(format!("states/{a}/.credentials.json"))
        .is_file());
    env.ok(&["stop", &a, &b, &c]);
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
            // The login answers first-run questions on the way too.
            r#"[agents.claude]
login_command = ["sh", "-c", "echo logged-in > /home/agent/.claude/.credentials.json; echo '{\"hasCompletedOnboarding\":true,\"theme\":\"dark\",\"primaryApiKey\":\"SECRET-key\",\"projects\":{\"/\":{\"hasTrustDialogAccepted\":true}}}' > /home/agent/.claude/.claude.json; echo done"]
"#,
        ),
    )
    .unwrap();
    let out = env.run(&["login", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));
    let f = env.state().join("states/claude/.credentials.json");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "logged-in\n");
    // Its answers are kept, not its other settings, nor the trust of the
    // login container's folder.
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state().join("states/.answers/claude.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kept,
        serde_json::json!({"settings": {"hasCompletedOnboarding": true, "theme": "dark"},
            "trusted": {}})
    );
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
fn state_migrate_copies_the_shared_state_into_each_instance_and_loses_nothing() {
    let env = Env::new();
    let s = env.state().join("states");
    // An old shared dir, two instances (one with files of its own).
    write(&s.join("claude/.credentials.json"), "login", 10);
    write(&s.join("claude/projects/a/1.jsonl"), "a history", 100);
    write(&s.join("claude/settings.json"), "shared", 500);
    write(&s.join("a-claude/settings.json"), "a's own", 1000);
    write(&s.join("b-claude/projects/b/1.jsonl"), "b history", 100);
    write(&s.join("gemini/history"), "gem", 100);
    write(&s.join("x-gemini/y"), "x", 100);

    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let read = |rel: &str| std::fs::read_to_string(s.join(rel)).unwrap();
    assert_eq!(read("claude/.credentials.json"), "login", "the login stays");
    assert_eq!(read("a-claude/settings.json"), "a's own", "its own wins");
    assert_eq!(read("b-claude/settings.json"), "shared");
    for i in ["a-claude", "b-claude"] {
        assert_eq!(read(&format!("{i}/projects/a/1.jsonl")), "a history");
    }
    assert_eq!(read("b-claude/projects/b/1.jsonl"), "b history");
    assert_eq!(read("x-gemini/history"), "gem");
    assert_eq!(read(".migrated/claude/settings.json"), "shared");
    assert!(text.contains(".migrated/claude"), "{text}");
    assert!(!s.join("claude/settings.json").exists());
    assert!(!s.join("claude/projects").exists());
    // Copied with their times (history order), privately.
    let m = std::fs::metadata(s.join("b-claude/settings.json")).unwrap();
    let orig = std::fs::metadata(s.join(".migrated/claude/settings.json")).unwrap();
    assert_eq!(m.modified().unwrap(), orig.modified().unwrap());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // A second run has nothing left to do.
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to migrate"),
        "{}",
        stdout(&out)
    );
}

/// `login --from-host` keeps the agent's answers to its first-run questions
/// (Gemini CLI: sign-in method, theme, trusted folders) and nothing else of
/// its settings; each instance gets those it has no answer of its own for,
/// and the trust of its own folder only.
#[test]
fn login_from_host_gives_each_instance_the_first_run_answers_it_lacks() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let a_name = env.unique("answers-a");
    let b_name = env.unique("answers-b");
    let (proj_a, proj_b) = (env.project(&a_name), env.project(&b_name));
    let host = tempfile::tempdir().unwrap();
    let g = host.path().join(".gemini");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("oauth_creds.json"), r#"{"access_token":"ya29.x"}"#).unwrap();
    std::fs::write(
        g.join("settings.json"),
        serde_json::json!({
            "security": {"auth": {"selectedType": "oauth-personal"}},
            "ui": {"theme": "GitHub"},
            "mcpServers": {"db": {"env": {"TOKEN": "SECRET-in-settings"}}},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        g.join("trustedFolders.json"),
        serde_json::json!({proj_a.to_str().unwrap(): "TRUST_FOLDER",
            "/elsewhere/SECRET-folder": "TRUST_FOLDER", "/untrusted": "DO_NOT_TRUST"})
        .to_string(),
    )
    .unwrap();
    let out = env
        .cmd()
        .env("HOME", host.path())
        .args(["login", "gemini", "--from-host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(
            "first-run questions (security.auth.selectedType, ui.theme, 2 trusted folders)"
        ),
        "{said}"
    );
    let kept = env.state().join("states/.answers/gemini.json");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(
        !text.contains("SECRET-in") && !text.contains("DO_NOT"),
        "{text}"
    );

    // A's instance chose its own theme before; B's folder is not trusted.
    let a_state = env.state().join(format!("states/{a_name}-gemini"));
    std::fs::create_dir_all(&a_state).unwrap();
    std::fs::write(a_state.join("settings.json"), r#"{"ui":{"theme":"Own"}}"#).unwrap();
    for proj in [&proj_a, &proj_b] {
        let out = env
            .cmd()
            .current_dir(proj)
            .env("FAKE_AGENT_STAY", "1")
            .env_remove("GEMINI_API_KEY")
            .env_remove("GOOGLE_API_KEY")
            .args(["start", "--mode", "gemini", "--detach"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (a, b) = (format!("{a_name}-gemini"), format!("{b_name}-gemini"));
    let seen = |id: &str, file: &str| -> serde_json::Value {
        let c = container_of(&env, id);
        let out = docker(&["exec", &c, "cat", &format!("/home/agent/.gemini/{file}")]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let sa = seen(&a, "settings.json");
    assert_eq!(
        sa["ui"]["theme"], "Own",
        "the instance's own answer wins: {sa}"
    );
    assert_eq!(
        sa["security"]["auth"]["selectedType"], "oauth-personal",
        "{sa}"
    );
    assert_eq!(
        seen(&a, "trustedFolders.json"),
        serde_json::json!({proj_a.to_str().unwrap(): "TRUST_FOLDER"})
    );
    let sb = seen(&b, "settings.json");
    assert_eq!(sb["ui"]["theme"], "GitHub", "{sb}");
    assert_eq!(seen(&b, "trustedFolders.json"), serde_json::Value::Null);
    env.ok(&["stop", &a, &b]);
}
