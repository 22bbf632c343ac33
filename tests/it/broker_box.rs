//! The credential broker around a real box: an instance started with an
//! API key set on the host holds only a placeholder (environment, every
//! file it can see, `/proc/*/environ`, `docker inspect`), its calls reach
//! the fake model API with the real key, `spend` shows what they cost, and
//! a budget stops the next call with a message the agent shows. Under
//! `open` and `allowlist`, with the fake agent's busybox as the client;
//! then the real Claude Code CLI completing `claude -p` through it.

use crate::common::{self, cname_in, stdout, wait_until, Env};
use crate::docker_support::*;
use crate::fake_model::{FakeApi, Reply, Usage};
use std::time::Duration;

/// An address of this host every container of the engine reaches (the
/// default bridge's gateway), where the fake API listens on all addresses.
fn host_address() -> String {
    let ipam = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}}",
        "bridge",
    ]);
    let cfg: serde_json::Value = serde_json::from_str(ipam.trim()).unwrap();
    let cfg = &cfg[0];
    if let Some(gw) = cfg["Gateway"].as_str().filter(|g| !g.is_empty()) {
        return gw.to_owned();
    }
    // Not always recorded: the bridge takes the subnet's first address.
    let subnet = cfg["Subnet"].as_str().unwrap();
    let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
}

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

/// A key nobody else has: found anywhere means it leaked.
fn real_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("sk-ant-api03-REAL-{}-{nanos:x}", std::process::id())
}

/// One call from inside the box, as its agent would make it: to the base
/// URL it was given, with the key it was given. The raw response.
fn call_from_box(cid: &str) -> String {
    let script = r#"url=${ANTHROPIC_BASE_URL#http://}; host=${url%%:*}; port=${url##*:}
body='{"model":"claude-sonnet-4-5","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"ping"}]}'
printf 'POST /v1/messages?beta=true HTTP/1.1\r\nHost: %s\r\nx-api-key: %s\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %s\r\n\r\n%s' "$url" "$ANTHROPIC_API_KEY" "${#body}" "$body" | nc "$host" "$port""#;
    let out = docker(&["exec", cid, "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Calls until the broker answers (it listens a moment after the start).
fn first_call(cid: &str) -> String {
    let mut last = String::new();
    wait_until(Duration::from_secs(20), || {
        last = call_from_box(cid);
        last.starts_with("HTTP/1.1")
    });
    if !last.starts_with("HTTP/1.1") {
        let logs = docker(&["logs", &format!("{cid}-egress")]);
        eprintln!(
            "no answer from the broker; its log:\n{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
    last
}

/// Every place of the box and of the engine's record of it, searched for
/// `key`: none may hold it.
fn assert_box_never_held(env: &Env, cid: &str, key: &str) {
    let sidecar = format!("{cid}-egress");
    for c in [cid, sidecar.as_str()] {
        let inspect = docker_ok(&["inspect", c]);
        assert!(!inspect.contains(key), "docker inspect {c} shows the key");
    }
    let environ = docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'",
    ]);
    let environ = String::from_utf8_lossy(&environ.stdout);
    assert!(
        environ.contains("ANTHROPIC_API_KEY=sk-ant-api03-aisessions-"),
        "no placeholder: {environ}"
    );
    assert!(
        !environ.contains(key),
        "a process of the box has the key in its environment"
    );
    // Every file the box can read (its image, its mounts), /proc and /sys aside.
    let found = docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        &format!("grep -rl -s --exclude-dir=proc --exclude-dir=sys -e '{key}' / ; true"),
    ]);
    assert_eq!(stdout(&found).trim(), "", "files in the box hold the key");
    // And on the host: the state home and the project, which the box mounts.
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
        let out = env
            .cmd()
            .env("ANTHROPIC_API_KEY", &key)
            .args([
                "start",
                proj.to_str().unwrap(),
                "--mode",
                "claude",
                "--detach",
                "--egress",
                egress,
            ])
            .env("FAKE_AGENT_STAY", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{egress}: start failed: {}",
            common::stderr(&out)
        );
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
        env.ok(&["config", "set", "--global", "budget.instance_usd", "5"]);
        assert!(
            call_from_box(&cid).starts_with("HTTP/1.1 200"),
            "{egress}: a raised budget still refuses"
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
    let start = || {
        let out = env
            .cmd()
            .env("ANTHROPIC_API_KEY", &key)
            .env("FAKE_AGENT_STAY", "1")
            .args([
                "start",
                proj.to_str().unwrap(),
                "--mode",
                "claude",
                "--detach",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
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
        let out = env
            .cmd()
            .env("ANTHROPIC_API_KEY", &key)
            .args([
                "start",
                proj.to_str().unwrap(),
                "--mode",
                "claude",
                "--detach",
                "--",
                "-p",
                "say pong",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        let ended = wait_until(Duration::from_secs(120), || {
            // `list` reconciles: the registry learns the agent ended.
            env.run(&["list"]);
            let s = env.instance(&id)["status"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            s == "stopped" || s == "error"
        });
        if !ended {
            let cid = cname_in(&env, &id);
            let logs = |c: &str| {
                let o = docker(&["logs", c]);
                format!("{}{}", stdout(&o), common::stderr(&o))
            };
            panic!(
                "claude -p did not end: {}\nits output:\n{}\nthe broker's:\n{}\nthe API saw: {:?}",
                env.instance(&id),
                logs(&cid),
                logs(&format!("{cid}-egress")),
                fake.seen()
            );
        }
        stdout(&env.run(&["logs", &id]))
    };
    let logs = run();
    assert!(
        logs.contains("pong from the fake API"),
        "the reply is not shown: {logs}"
    );
    let calls: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/v1/messages"))
        .collect();
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
    let ended = wait_until(Duration::from_secs(120), || {
        env.run(&["list"]);
        let s = env.instance(&id)["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        s == "stopped" || s == "error"
    });
    let logs = stdout(&env.run(&["logs", &id]));
    let broker = {
        let o = docker(&["logs", &format!("{cid}-egress")]);
        format!("{}{}", stdout(&o), common::stderr(&o))
    };
    assert!(
        ended && logs.contains("pong from the fake API"),
        "gemini -p did not show the reply: {}\nits output:\n{logs}\nthe broker's:\n{broker}\nthe API saw: {:?}",
        env.instance(&id),
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
