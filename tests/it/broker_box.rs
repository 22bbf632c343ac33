//! The credential broker around a real box: an instance started with an
//! API key set on the host holds only a placeholder (environment, every
//! file it can see, `/proc/*/environ`, `docker inspect`), its calls reach
//! the fake model API with the real key, `spend` shows what they cost, and
//! a budget stops the next call with a message the agent shows. Under
//! `open` and `allowlist`, with the fake agent's busybox as the client;
//! then the real Claude Code CLI completing `claude -p` through it.

use crate::broker_support::{
    self, assert_box_holds_none, host_address, model_calls, output_once_ended, run_with_key,
    start_with_key, unique_secret, Auth,
};
use crate::common::{self, cname_in, Env};
use crate::docker_support::*;
use crate::fake_model::{FakeApi, Reply, Usage};

fn config(env: &Env, image: &str, fake: &FakeApi, extra: &str) {
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"512Mi\"\n\n\
         [agents.claude]\nimage = \"{image}\"\nenv_passthrough = [\"ANTHROPIC_API_KEY\", \"ANTHROPIC_BASE_URL\", \"FAKE_AGENT_STAY\"]\n\n\
         [agents.claude.credentials]\nupstream = \"http://{}:{}\"\n\n{extra}",
        host_address(),
        fake.port
    ));
}

/// Every place of the box and of the engine's record of it, searched for
/// `key`: none may hold it; nor may the state home or the project.
fn assert_box_never_held(env: &Env, cid: &str, key: &str) {
    let environ = assert_box_holds_none(cid, &[key]);
    assert!(
        environ.contains("ANTHROPIC_API_KEY=sk-ant-api03-aisessions-"),
        "no placeholder: {environ}"
    );
    for dir in [env.state(), env.projects.path()] {
        for f in walk_files(dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key),
                "{} holds the key",
                f.display()
            );
        }
    }
}

fn real_key() -> String {
    unique_secret("sk-ant-api03-")
}

fn first_call(cid: &str) -> String {
    broker_support::first_call(cid, Auth::Key)
}

fn call_from_box(cid: &str) -> String {
    broker_support::call_from_box(cid, Auth::Key)
}

#[test]
fn the_box_holds_a_placeholder_and_its_calls_reach_the_api_with_the_real_key() {
    require_docker!();
    for egress in ["open", "allowlist"] {
        let fake = FakeApi::with(Reply {
            usage: Usage {
                input: 1000,
                output: 500,
                cache_creation: 0,
                cache_read: 0,
            },
            ..Reply::default()
        });
        let env = Env::new();
        config(&env, common::test_image(), &fake, "");
        let key = real_key();
        let name = env.unique(&format!("brk-{egress}"));
        let proj = env.project(&name);
        start_with_key(&env, &proj, Some(&key), &["--egress", egress]);
        let id = format!("{name}-claude");
        let cid = cname_in(&env, &id);

        let reply = first_call(&cid);
        assert!(reply.starts_with("HTTP/1.1 200"), "{egress}: {reply}");
        assert!(
            reply.contains("\"text\":\"pong\""),
            "{egress}: the reply is not streamed back whole: {reply}"
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 1, "{egress}: {seen:?}");
        assert_eq!(
            seen[0].x_api_key.as_deref(),
            Some(key.as_str()),
            "{egress}: the API did not get the real key"
        );
        assert_box_never_held(&env, &cid, &key);
        // The box cannot forge its usage: its ledger and its broker's
        // settings are no mount of its own.
        let mounts = docker_ok(&["inspect", "-f", "{{json .Mounts}}", &cid]);
        assert!(
            !mounts.contains("/meter") && !mounts.contains("/net/"),
            "{egress}: {mounts}"
        );

        // What it cost, counted outside the box: 1000 in, 500 out of
        // claude-sonnet-4-5 at $3 and $15 per million.
        let spend: serde_json::Value =
            serde_json::from_str(&env.ok(&["spend", &id, "--json"])).unwrap();
        let row = &spend["instances"][0];
        assert_eq!(row["requests"], 1, "{egress}: {spend}");
        assert_eq!(row["input_tokens"], 1000, "{egress}: {spend}");
        assert_eq!(row["output_tokens"], 500, "{egress}: {spend}");
        let cost = row["cost_usd"].as_f64().unwrap();
        assert!((cost - 0.0105).abs() < 1e-9, "{egress}: cost {cost}");

        // A budget already spent stops the next call, in words the agent
        // shows; raising it lets the next one through, no restart.
        env.ok(&["config", "set", "--global", "budget.instance_usd", "0.01"]);
        let refused = call_from_box(&cid);
        assert!(refused.starts_with("HTTP/1.1 400"), "{egress}: {refused}");
        assert!(
            refused.contains("budget.instance_usd") && refused.contains("ai-sessctl config set"),
            "{egress}: the refusal does not say how to raise the budget: {refused}"
        );
        assert_eq!(
            fake.seen().len(),
            1,
            "{egress}: a refused call reached the API"
        );
        // The command the refusal names, run as written, raises it.
        let said = refused
            .split('`')
            .find(|part| part.starts_with("ai-sessctl config set"))
            .unwrap_or_else(|| panic!("{egress}: no command in {refused}"));
        let words: Vec<&str> = said.split_whitespace().skip(1).collect();
        env.ok(&words);
        assert!(
            call_from_box(&cid).starts_with("HTTP/1.1 200"),
            "{egress}: a budget raised by `{said}` still refuses"
        );
        assert_eq!(fake.seen().len(), 2);
        env.ok(&["rm", "-f", &id]);
        assert!(
            !container_exists(&format!("{cid}-egress")),
            "{egress}: the broker outlived its instance"
        );
    }
}

#[test]
fn a_restart_keeps_the_placeholder_and_the_count() {
    require_docker!();
    let fake = FakeApi::start();
    let env = Env::new();
    config(&env, common::test_image(), &fake, "");
    let key = real_key();
    let name = env.unique("brk-restart");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let start = || start_with_key(&env, &proj, Some(&key), &[]);
    let placeholder = |cid: &str| {
        let e = docker_ok(&["exec", cid, "sh", "-c", "echo $ANTHROPIC_API_KEY"]);
        e.trim().to_owned()
    };
    start();
    let cid = cname_in(&env, &id);
    assert!(first_call(&cid).starts_with("HTTP/1.1 200"));
    let before = placeholder(&cid);
    env.ok(&["stop", &id]);
    start();
    assert_eq!(
        placeholder(&cid),
        before,
        "a new placeholder: the agent would ask to approve a new key"
    );
    assert!(first_call(&cid).starts_with("HTTP/1.1 200"));
    let spend: serde_json::Value =
        serde_json::from_str(&env.ok(&["spend", &id, "--json"])).unwrap();
    assert_eq!(spend["instances"][0]["requests"], 2, "{spend}");
    // Started without the key: nothing to broker, and no sidecar.
    env.ok(&["stop", &id]);
    env.ok(&[
        "start",
        proj.to_str().unwrap(),
        "--mode",
        "claude",
        "--detach",
    ]);
    assert!(!container_exists(&format!("{cid}-egress")));
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn the_real_claude_code_completes_a_turn_through_the_broker_and_a_budget_stops_it() {
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "pong from the fake API".into(),
        ..Reply::default()
    });
    let env = Env::new();
    config(&env, &image, &fake, "");
    let key = real_key();
    let name = env.unique("brk-claude");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let run = || {
        start_with_key(&env, &proj, Some(&key), &["--", "-p", "say pong"]);
        output_once_ended(&env, &id, &fake)
    };
    let logs = run();
    assert!(
        logs.contains("pong from the fake API"),
        "the reply is not shown: {logs}"
    );
    let calls = model_calls(&fake);
    assert!(!calls.is_empty());
    for c in &calls {
        assert_eq!(c.x_api_key.as_deref(), Some(key.as_str()), "{c:?}");
    }
    let spend = env.ok(&["spend", &id]);
    assert!(spend.contains(&id), "{spend}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["spend", &id, "--json"])).unwrap();
    assert!(
        json["instances"][0]["output_tokens"].as_u64().unwrap() >= 34,
        "{json}"
    );

    env.ok(&[
        "config",
        "set",
        "--global",
        "budget.instance_usd",
        "0.000001",
    ]);
    fake.clear();
    let logs = run();
    assert!(
        logs.contains("budget.instance_usd"),
        "Claude Code does not show the broker's refusal: {logs}"
    );
    assert!(
        fake.seen()
            .iter()
            .all(|s| !s.target.starts_with("/v1/messages")),
        "a call past the budget reached the API"
    );
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn restart_heal_resume_and_the_api_broker_the_key_too() {
    require_docker!();
    let fake = FakeApi::start();
    let env = Env::new();
    config(&env, common::test_image(), &fake, "");
    let key = real_key();
    let name = env.unique("brk-paths");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let with_key = |args: &[&str]| run_with_key(&env, Some(&key), args);
    // Each path must leave a box with the placeholder whose calls reach
    // the API with the real key.
    let brokered = |path: &str| {
        let cid = cname_in(&env, &id);
        assert!(first_call(&cid).starts_with("HTTP/1.1 200"), "{path}");
        let seen = fake.seen();
        assert_eq!(
            seen.last().unwrap().x_api_key.as_deref(),
            Some(key.as_str()),
            "{path}"
        );
        assert_box_never_held(&env, &cid, &key);
    };
    // The API: `serve` started where the key is set.
    let mut cmd = env.cmd();
    cmd.env("ANTHROPIC_API_KEY", &key)
        .env("FAKE_AGENT_STAY", "1");
    let srv = crate::api_support::Serve::start_with_cmd(cmd, &["--addr", "127.0.0.1:0"]);
    let tok = crate::api_support::token(&env);
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .json(&serde_json::json!({"project_path": proj, "mode": "claude"}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    brokered("the API");
    drop(srv);
    with_key(&["restart", &id]);
    brokered("restart");
    with_key(&["heal", &id]);
    brokered("heal");
    // What an engine restart leaves: the agent and its broker gone.
    let cid = cname_in(&env, &id);
    docker_ok(&["rm", "-f", &cid, &format!("{cid}-egress")]);
    env.ok(&["list"]);
    with_key(&["resume"]);
    brokered("resume");
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn mode_env_puts_the_key_in_the_box_and_mode_none_passes_none() {
    require_docker!();
    let fake = FakeApi::start();
    for (mode, expect_key) in [("env", true), ("none", false)] {
        let env = Env::new();
        config(&env, common::test_image(), &fake, "");
        let text = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
        std::fs::write(
            env.state().join("config.toml"),
            text.replace(
                "[agents.claude.credentials]\n",
                &format!("[agents.claude.credentials]\nmode = \"{mode}\"\n"),
            ),
        )
        .unwrap();
        let key = real_key();
        let name = env.unique(&format!("brk-{mode}"));
        let proj = env.project(&name);
        let id = format!("{name}-claude");
        start_with_key(&env, &proj, Some(&key), &[]);
        let cid = cname_in(&env, &id);
        let environ = docker_ok(&["exec", &cid, "sh", "-c", "echo \"[$ANTHROPIC_API_KEY]\""]);
        let want = if expect_key {
            format!("[{key}]")
        } else {
            "[]".to_owned()
        };
        assert_eq!(environ.trim(), want, "mode {mode}");
        assert!(
            !container_exists(&format!("{cid}-egress")),
            "mode {mode}: a broker"
        );
        assert_eq!(
            env.instance(&id)["brokered"],
            serde_json::Value::Null,
            "mode {mode}"
        );
        env.ok(&["rm", "-f", &id]);
    }
}

#[test]
fn the_real_gemini_cli_completes_a_turn_through_the_broker() {
    require_docker!();
    let Some(image) = real_image("gemini") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "pong from the fake API".into(),
        ..Reply::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"1Gi\"\n\n\
         [agents.gemini]\nimage = \"{image}\"\nenv_passthrough = [\"GEMINI_API_KEY\", \"GOOGLE_GEMINI_BASE_URL\"]\n\n\
         [agents.gemini.credentials]\nupstream = \"http://{}:{}\"\n",
        host_address(),
        fake.port
    ));
    let key = format!("AIza-REAL-{}", real_key());
    let name = env.unique("brk-gemini");
    let proj = env.project(&name);
    let id = format!("{name}-gemini");
    let out = env
        .cmd()
        .env("GEMINI_API_KEY", &key)
        .args([
            "start",
            proj.to_str().unwrap(),
            "--mode",
            "gemini",
            "--detach",
            "--",
            "--skip-trust",
            "-p",
            "say pong",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let cid = cname_in(&env, &id);
    let inspect = docker_ok(&["inspect", "-f", "{{json .Config.Env}}", &cid]);
    assert!(
        inspect.contains("GOOGLE_GEMINI_BASE_URL=http://egress-proxy:3129"),
        "{inspect}"
    );
    assert!(!inspect.contains(&key), "the box's environment has the key");
    let logs = output_once_ended(&env, &id, &fake);
    assert!(
        logs.contains("pong from the fake API"),
        "gemini -p did not show the reply: {logs}\nthe API saw: {:?}",
        fake.seen()
    );
    let calls: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.target.contains("/models/"))
        .collect();
    assert!(!calls.is_empty(), "{:?}", fake.seen());
    for c in &calls {
        let sent = c.x_goog_api_key.as_deref().or(c.query_key.as_deref());
        assert_eq!(sent, Some(key.as_str()), "{c:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["spend", &id, "--json"])).unwrap();
    assert!(
        json["instances"][0]["output_tokens"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );
}
