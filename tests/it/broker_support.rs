//! What the tests of the credential broker around a real box share: the
//! host address a box reaches the fake API at, a call made from inside
//! the box as its agent would, and the search of a box for secrets.

use crate::common::{cname_in, stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use crate::fake_model::{FakeApi, Seen};
use std::path::Path;
use std::time::Duration;

/// An address of this host every container of the engine reaches (the
/// default bridge's gateway), where the fake API listens on all addresses.
pub fn host_address() -> String {
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

/// A secret nobody else has (`<prefix>REAL-<pid>-<nanos>`): found anywhere
/// means it leaked.
pub fn unique_secret(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}REAL-{}-{nanos:x}", std::process::id())
}

/// How the box's agent proves itself to the broker.
#[derive(Clone, Copy)]
pub enum Auth {
    /// The key it was given, in `x-api-key`.
    Key,
    /// Its login file's access token, as `Authorization: Bearer`.
    Login,
}

/// One streamed Messages call from inside the box, to the base URL it was
/// given, as its agent would make it. The raw response.
pub fn call_from_box(cid: &str, auth: Auth) -> String {
    let out = docker(&["exec", cid, "sh", "-c", &call_script(auth)]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shell script of [`call_from_box`], for a box on any engine.
pub fn call_script(auth: Auth) -> String {
    let (token, header) = match auth {
        Auth::Key => ("tok=$ANTHROPIC_API_KEY", "x-api-key: %s"),
        Auth::Login => (
            r#"tok=$(sed 's/.*"accessToken":"\([^"]*\)".*/\1/' /home/agent/.claude/.credentials.json)"#,
            "authorization: Bearer %s\\r\\nanthropic-beta: oauth-2025-04-20",
        ),
    };
    format!(
        r#"url=${{ANTHROPIC_BASE_URL#http://}}; host=${{url%%:*}}; port=${{url##*:}}
{token}
body='{{"model":"claude-sonnet-4-5","stream":true,"max_tokens":5,"messages":[{{"role":"user","content":"ping"}}]}}'
printf 'POST /v1/messages?beta=true HTTP/1.1\r\nHost: %s\r\n{header}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %s\r\n\r\n%s' "$url" "$tok" "${{#body}}" "$body" | nc "$host" "$port""#
    )
}

/// Calls until the broker answers (it listens a moment after the start);
/// says what its log holds when it never does.
pub fn first_call(cid: &str, auth: Auth) -> String {
    let mut last = String::new();
    wait_until(Duration::from_secs(20), || {
        last = call_from_box(cid, auth);
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

/// None of `secrets` in the box: not in `docker inspect` of it or of its
/// broker, not in any process's environment, not in any file it can read.
/// Returns the box's environment, for more checks.
pub fn assert_box_holds_none(cid: &str, secrets: &[&str]) -> String {
    let sidecar = format!("{cid}-egress");
    for c in [cid, sidecar.as_str()] {
        // No sidecar without a network.
        if c != cid && !container_exists(c) {
            continue;
        }
        let inspect = docker_ok(&["inspect", c]);
        for s in secrets {
            assert!(!inspect.contains(s), "docker inspect {c} shows {s}");
        }
    }
    let environ = docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'",
    ]);
    let environ = String::from_utf8_lossy(&environ.stdout).into_owned();
    for s in secrets {
        assert!(!environ.contains(s), "a process of the box has {s}");
        // Every file the box can read (its image, its mounts), /proc and
        // /sys aside.
        let found = docker(&[
            "exec",
            cid,
            "sh",
            "-c",
            &format!("grep -rl -s --exclude-dir=proc --exclude-dir=sys -e '{s}' / ; true"),
        ]);
        assert_eq!(stdout(&found).trim(), "", "files in the box hold {s}");
    }
    environ
}

/// Runs `ai-sessctl ARGS` as a user whose shell has `key` (or no key) set,
/// and asserts it succeeded. The fake agent stays up once detached.
pub fn run_with_key(env: &Env, key: Option<&str>, args: &[&str]) {
    let mut cmd = env.cmd();
    match key {
        Some(k) => cmd.env("ANTHROPIC_API_KEY", k),
        None => cmd
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL"),
    };
    let out = cmd.env("FAKE_AGENT_STAY", "1").args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// `start PROJECT --mode claude --detach EXTRA…` with `key` (or none).
pub fn start_with_key(env: &Env, proj: &Path, key: Option<&str>, extra: &[&str]) {
    let mut args = vec![
        "start",
        proj.to_str().unwrap(),
        "--mode",
        "claude",
        "--detach",
    ];
    args.extend_from_slice(extra);
    run_with_key(env, key, &args);
}

/// Waits for a one-shot agent (`claude -p …`) of instance `id` to end and
/// returns what it printed; says what the box, its broker and the API saw
/// when it does not end.
pub fn output_once_ended(env: &Env, id: &str, fake: &FakeApi) -> String {
    let ended = wait_until(Duration::from_secs(120), || {
        // `list` reconciles: the registry learns the agent ended.
        env.run(&["list"]);
        let s = env.instance(id)["status"].as_str().unwrap_or("").to_owned();
        s == "stopped" || s == "error"
    });
    if !ended {
        let cid = cname_in(env, id);
        let logs = |c: &str| {
            let o = docker(&["logs", c]);
            format!("{}{}", stdout(&o), stderr(&o))
        };
        panic!(
            "the agent did not end: {}\nits output:\n{}\nthe broker's:\n{}\nthe API saw: {:?}",
            env.instance(id),
            logs(&cid),
            logs(&format!("{cid}-egress")),
            fake.seen()
        );
    }
    stdout(&env.run(&["logs", id]))
}

/// The model calls the API received.
pub fn model_calls(fake: &FakeApi) -> Vec<Seen> {
    fake.seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/v1/messages"))
        .collect()
}
