//! `ai-sessctl serve` over real HTTP on loopback: the REST endpoints against
//! the real engine, the JSON error shape, and what keeps the API safe
//! (token, Host and Origin checks, body cap, one-time login link, remote
//! binding, nothing written or leaked on refused requests, clean SIGTERM).

use crate::api_support::{bytes, token, Req, Serve};
use crate::common::{stderr, wait_until, Env};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A registry with one stopped instance, so refused requests have
/// something they could have changed.
fn plant_stopped(env: &Env, name: &str) -> String {
    let id = format!("{name}-claude");
    let path = env.project(name).to_string_lossy().into_owned();
    let reg = json!({"version": 1, "instances": {&id: {
        "id": id, "project_path": path, "project_name": name, "mode": "claude",
        "status": "stopped", "port": env.port_base + 1,
        "resources": {}, "timestamps": {"created": "2026-01-01T00:00:00Z", "stopped": "2026-01-01T01:00:00Z"},
        "config": {},
    }}});
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec_pretty(&reg).unwrap(),
    )
    .unwrap();
    id
}

fn list_ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array of instances")
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn instance_lifecycle_over_http() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("apilife");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let srv = Serve::start(&env);
    let tok = token(&env);

    // The event feed is open before anything happens.
    let mut feed = srv.req("GET", "/api/v1/events").bearer(&tok).stream();
    assert_eq!(feed.head.status, 200);
    assert!(
        feed.head
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        feed.head
    );

    // Create.
    let t0 = Instant::now();
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .json(&json!({"project_path": proj, "mode": "claude"}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    let inst = r.json();
    assert_eq!(inst["id"], id.as_str());
    assert_eq!(inst["status"], "running", "{inst}");
    assert_eq!(inst["project_path"], proj.to_str().unwrap());
    eprintln!("create took {:?}", t0.elapsed());
    let line = feed
        .wait_for_line(&id, Duration::from_secs(10))
        .expect("an event about the new instance on /api/v1/events");
    assert!(
        line.starts_with("data:") && line.contains("instance started"),
        "{line}"
    );

    // Creating again is idempotent: the running instance, 200.
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .json(&json!({"project_path": proj, "mode": "claude"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());

    // List and get.
    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(r.status, 200);
    assert_eq!(list_ids(&r.json()), vec![id.clone()]);
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "running");

    // Stats.
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/stats"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert!(s["cpu_percent"].is_number(), "{s}");
    assert!(s["memory_usage"].as_u64().is_some_and(|m| m > 0), "{s}");
    assert_eq!(
        s["memory_limit"],
        128 * 1024 * 1024,
        "the configured limit: {s}"
    );

    // Logs.
    let mut logs = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        let r = srv
            .req("GET", &format!("/api/v1/instances/{id}/logs?tail=5"))
            .bearer(&tok)
            .send();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")));
        logs = r.text();
        logs.contains("fake-agent ready")
    });
    assert!(seen, "logs: {logs:?}");
    assert!(logs.lines().count() <= 5, "tail=5: {logs:?}");
    // As the screen showed it (the dashboard's log panel): no escape of
    // the agent's stream; `raw=true` is the stream.
    let cname = crate::common::cname_in(&env, &id);
    crate::docker_support::docker_ok(&[
        "exec",
        &cname,
        "sh",
        "-c",
        r"printf '\033[1mbold\033[0m\r\n' > /dev/console",
    ]);
    let get = |q: &str| {
        srv.req("GET", &format!("/api/v1/instances/{id}/logs{q}"))
            .bearer(&tok)
            .send()
            .text()
    };
    assert!(
        wait_until(Duration::from_secs(10), || get("?tail=3")
            .lines()
            .any(|l| l == "bold")),
        "{}",
        get("")
    );
    assert!(!get("").contains('\x1b'), "{:?}", get(""));
    assert!(
        get("?raw=true").contains("\x1b[1mbold"),
        "{:?}",
        get("?raw=true")
    );

    // Restart: a new container, still running.
    let before = env.instance(&id)["container_id"].clone();
    let r = srv
        .req("PUT", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .json(&json!({"action": "restart"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "running", "{}", r.text());
    assert_ne!(
        env.instance(&id)["container_id"],
        before,
        "restart made a new container"
    );

    // Bad requests against a real instance.
    let r = srv
        .req("PUT", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .json(&json!({"action": "explode"}))
        .send();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "bad_request");
    let r = srv
        .req("PUT", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .json(&json!({"action": "stop", "extra": 1}))
        .send();
    assert_eq!(r.status, 422, "unknown fields are refused: {}", r.text());
    assert_eq!(r.error_code(), "invalid_body");
    assert_eq!(env.instance(&id)["status"], "running", "nothing happened");

    // Delete stops it; the record stays, stopped.
    let r = srv
        .req("DELETE", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "stopped", "{}", r.text());
    assert!(
        feed.wait_for_line("stopped", Duration::from_secs(10))
            .is_some(),
        "a stop event"
    );

    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/stats"))
        .bearer(&tok)
        .send();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "invalid"),
        "no stats when stopped"
    );

    // A stopped instance still has its saved logs.
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/logs"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("fake-agent ready"), "{}", r.text());

    // Unknown id, bad id.
    for path in ["", "/stats", "/logs"] {
        let r = srv
            .req(
                "GET",
                &format!("/api/v1/instances/nope-{}-claude{path}", env.token),
            )
            .bearer(&tok)
            .send();
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.error_code(), "not_found");
        let r = srv
            .req("GET", &format!("/api/v1/instances/bad..id{path}"))
            .bearer(&tok)
            .send();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request");
    }
    let r = srv
        .req(
            "PUT",
            &format!("/api/v1/instances/nope-{}-claude", env.token),
        )
        .bearer(&tok)
        .json(&json!({"action": "restart"}))
        .send();
    assert_eq!(r.status, 404);
    let r = srv
        .req(
            "DELETE",
            &format!("/api/v1/instances/nope-{}-claude", env.token),
        )
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
}

#[test]
fn create_validates_its_body() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let proj = env.project("valid");
    let post = |body: &str| {
        srv.req("POST", "/api/v1/instances")
            .bearer(&tok)
            .header("Content-Type", "application/json")
            .body(body.as_bytes().to_vec())
            .send()
    };
    let cases: &[(&str, String, u16, &str)] = &[
        (
            "relative path",
            json!({"project_path": "rel/dir", "mode": "claude"}).to_string(),
            400,
            "absolute",
        ),
        (
            "missing path",
            json!({"mode": "claude"}).to_string(),
            422,
            "project_path",
        ),
        (
            "missing mode",
            json!({"project_path": proj}).to_string(),
            422,
            "mode",
        ),
        (
            "unknown agent",
            json!({"project_path": proj, "mode": "nosuchagent"}).to_string(),
            400,
            "unknown agent \"nosuchagent\"",
        ),
        (
            "bad agent name",
            json!({"project_path": proj, "mode": "cl4ude"}).to_string(),
            400,
            "invalid agent name",
        ),
        (
            "not a directory",
            json!({"project_path": "/nonexistent/x", "mode": "claude"}).to_string(),
            400,
            "not a directory",
        ),
        (
            "wrong type",
            json!({"project_path": 7, "mode": "claude"}).to_string(),
            422,
            "project_path",
        ),
        (
            "unknown field",
            json!({"project_path": proj, "mode": "claude", "rm": true}).to_string(),
            422,
            "rm",
        ),
        (
            "bad port",
            json!({"project_path": proj, "mode": "claude", "port": 0}).to_string(),
            400,
            "port",
        ),
        ("not JSON", "{nope".to_owned(), 400, "JSON"),
    ];
    for (case, body, status, needle) in cases {
        let r = post(body);
        assert_eq!(r.status, *status, "{case}: {}", r.text());
        r.error_code();
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains(needle),
            "{case}: message {msg:?} should mention {needle:?}"
        );
    }
    // JSON without the content type.
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .body(
            json!({"project_path": proj, "mode": "claude"})
                .to_string()
                .into_bytes(),
        )
        .send();
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_media_type");
    // Unknown endpoint and method, bad query: JSON errors too.
    let r = srv.req("GET", "/api/v1/nope").bearer(&tok).send();
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = srv.req("PATCH", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );
    assert!(
        r.header("allow").is_some_and(|a| a.contains("POST")),
        "{r:?}"
    );
    let r = srv
        .req("GET", "/api/v1/instances/a-claude/logs?tail=x")
        .bearer(&tok)
        .send();
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"));
    assert!(
        !env.state().join("registry.json").exists(),
        "nothing was created"
    );
}

#[test]
fn health_and_resources_shapes() {
    let env = Env::new();
    let id = plant_stopped(&env, "shapes");
    let srv = Serve::start(&env);
    let tok = token(&env);

    let r = srv.req("GET", "/api/v1/health").bearer(&tok).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert!(h["healthy"].is_boolean(), "{h}");
    assert!(h["instances"].is_array(), "{h}");

    let r = srv.req("GET", "/api/v1/resources").bearer(&tok).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["timestamp"].is_string(), "{v}");
    assert!(v["system"].is_object(), "{v}");
    assert_eq!(v["summary"]["total"], 1, "{v}");
    assert_eq!(v["summary"]["stopped"], 1, "{v}");
    let inst = &v["instances"][0];
    assert_eq!(inst["instance"], id.as_str(), "{v}");
    assert_eq!(inst["status"], "stopped");
    for key in ["cpu_percent", "memory_usage", "memory_limit", "health"] {
        assert!(inst.get(key).is_some(), "{key} in {inst}");
    }

    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(list_ids(&r.json()), vec![id.clone()]);
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/logs"))
        .bearer(&tok)
        .send();
    assert_eq!((r.status, r.text().as_str()), (200, ""), "no saved log yet");

    // The dashboard page itself: no token needed, locked down.
    let r = srv.req("GET", "/").send();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<title>ai-sessions</title>"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("frame-ancestors 'none'")));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}

/// Every way a request is refused; none of them touches the state.
#[test]
fn refused_requests_change_nothing() {
    let env = Env::new();
    let id = plant_stopped(&env, "refused");
    let srv = Serve::start(&env);
    let tok = token(&env);
    let registry = env.state().join("registry.json");
    let events = env.state().join("logs/session-manager.log");
    // The start event is written just after the banner.
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("API server started"))
    }));
    let before = (bytes(&registry), bytes(&events));
    assert!(before.0.is_some() && before.1.is_some());
    let inst = format!("/api/v1/instances/{id}");
    let create = json!({"project_path": env.project("refused"), "mode": "claude"});
    let port = srv.addr.port();

    // No token, wrong token (header and cookie), wrong scheme.
    for (method, path) in [
        ("GET", "/api/v1/instances"),
        ("GET", inst.as_str()),
        ("DELETE", inst.as_str()),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/health"),
    ] {
        let r = srv.req(method, path).send();
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "no_token"),
            "{method} {path}"
        );
        let r = srv.req(method, path).bearer("0123456789abcdef").send();
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "bad_token"),
            "{method} {path}"
        );
        let r = srv.req(method, path).bearer(&format!("{tok}0")).send();
        assert_eq!(r.status, 401, "a longer token with our token as prefix");
        let r = srv
            .req(method, path)
            .header("Cookie", &format!("ai_sessions_{port}=deadbeef"))
            .send();
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "bad_token"),
            "{method} {path}"
        );
        let r = srv
            .req(method, path)
            .header("Authorization", &format!("Basic {tok}"))
            .send();
        assert_eq!(r.status, 401, "only Bearer");
    }
    let r = srv.req("POST", "/api/v1/instances").json(&create).send();
    assert_eq!(r.status, 401);
    let r = srv
        .req("PUT", &inst)
        .bearer("nope")
        .json(&json!({"action": "start"}))
        .send();
    assert_eq!(r.status, 401);

    // Wrong Host (DNS rebinding), even with the right token; none at all.
    for host in [
        Some(format!("evil.example:{port}")),
        Some(format!("127.0.0.1:{}", port.wrapping_add(1))),
        Some("127.0.0.1".to_owned()),
        Some(format!("localhost.evil.example:{port}")),
        None,
    ] {
        for (method, path) in [
            ("GET", "/api/v1/instances"),
            ("DELETE", inst.as_str()),
            ("GET", "/"),
        ] {
            let r = srv
                .req(method, path)
                .bearer(&tok)
                .host(host.as_deref())
                .send();
            assert_eq!(r.status, 421, "Host {host:?}: {method} {path}");
            assert_eq!(r.error_code(), "bad_host");
        }
    }
    let r = srv
        .req("GET", &srv.login_path())
        .host(Some(&format!("evil.example:{port}")))
        .send();
    assert_eq!(
        r.status, 421,
        "the login code is not spent on a rebound host"
    );

    // Cross-origin, even with the token (and with a cookie, as a browser would).
    for origin in [
        "http://evil.example",
        &format!("http://evil.example:{port}"),
        &format!("https://127.0.0.1:{port}"),
        "null",
    ] {
        let r = srv
            .req("DELETE", &inst)
            .bearer(&tok)
            .header("Origin", origin)
            .send();
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (403, "cross_origin"),
            "{origin}"
        );
        let r = srv
            .req("POST", "/api/v1/instances")
            .header("Cookie", &format!("ai_sessions_token={tok}"))
            .header("Origin", origin)
            .json(&create)
            .send();
        assert_eq!(r.status, 403, "{origin}");
        let r = srv
            .req("POST", "/login")
            .header("Origin", origin)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={tok}").into_bytes())
            .send();
        assert_eq!(r.status, 403, "{origin}: login CSRF");
        assert!(r.header("set-cookie").is_none());
    }
    // No CORS pre-flight support either.
    let r = srv
        .req("OPTIONS", "/api/v1/instances")
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "DELETE")
        .send();
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());

    // Oversized bodies (with the token; without, it is a plain 401).
    let big = {
        let mut s = format!(
            "{{\"project_path\": \"{}\", \"mode\": \"claude\", \"args\": [\"",
            env.project("refused").display()
        );
        s.push_str(&"a".repeat(70 * 1024));
        s.push_str("\"]}");
        s.into_bytes()
    };
    assert!(big.len() > 64 * 1024);
    let r = srv
        .req("POST", "/api/v1/instances")
        .bearer(&tok)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send();
    assert_eq!((r.status, r.error_code().as_str()), (413, "body_too_large"));
    let r = srv
        .req("PUT", &inst)
        .bearer(&tok)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send();
    assert_eq!(r.status, 413);
    let r = srv.req("POST", "/api/v1/instances").body(big).send();
    assert_eq!(r.status, 401);

    assert_eq!(
        bytes(&registry),
        before.0,
        "registry.json unchanged by refused requests"
    );
    assert_eq!(
        bytes(&events),
        before.1,
        "event log unchanged by refused requests"
    );
    assert_eq!(env.instance(&id)["status"], "stopped");

    // The server is still fine.
    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(r.status, 200);
}

#[test]
fn login_link_works_once() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let tok = token(&env);
    assert!(
        srv.login_url
            .starts_with(&format!("http://{}/login?code=", srv.addr)),
        "{}",
        srv.banner
    );
    let login = srv.login_path();

    // A wrong code does not burn the right one.
    let r = srv.req("GET", "/login?code=0000").send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "bad_login"));

    let r = srv.req("GET", &login).send();
    assert!(matches!(r.status, 302 | 303), "{r:?}");
    assert_eq!(r.header("location"), Some("/"));
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    // A session id, never the token (sandbox_api_sessions.rs).
    assert!(
        cookie.starts_with(&format!("ai_sessions_{}=", srv.addr.port())) && !cookie.contains(&tok),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let pair = cookie.split(';').next().unwrap();

    // The cookie opens the API, from our own origin too.
    let r = srv
        .req("GET", "/api/v1/instances")
        .header("Cookie", pair)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = srv
        .req("GET", "/api/v1/instances")
        .header("Cookie", &format!("theme=dark; {pair}"))
        .header("Origin", &format!("http://{}", srv.addr))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());

    // Second use of the link: refused, no cookie.
    let r = srv.req("GET", &login).send();
    assert_eq!((r.status, r.error_code().as_str()), (401, "bad_login"));
    assert!(r.header("set-cookie").is_none());

    // Pasting the token into the form still works (and a wrong one does not).
    let form = |t: &str| {
        srv.req("POST", "/login")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Origin", &format!("http://{}", srv.addr))
            .body(format!("token={t}").into_bytes())
            .send()
    };
    let r = form("wrong");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = form(&tok);
    assert!(matches!(r.status, 302 | 303), "{r:?}");
    assert!(r.header("set-cookie").is_some());
}

/// Walks `dir`, returning every regular file.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn token_stays_in_its_file() {
    let env = Env::new();
    plant_stopped(&env, "secret");
    let srv = Serve::start(&env);
    let tok = token(&env);
    let token_file = env.state().join("api.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "api.token is private");
    assert_eq!(tok.len(), 64, "256 random bits, hex");
    assert!(
        !srv.banner.contains(&tok),
        "the token is not printed: {}",
        srv.banner
    );
    let code = srv.login_path().rsplit('=').next().unwrap().to_owned();

    // Use it every way, and get refused every way.
    srv.req("GET", &srv.login_path()).send();
    srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    srv.req("GET", "/api/v1/resources").bearer(&tok).send();
    srv.req("GET", "/api/v1/instances").bearer("bad").send();
    srv.req("GET", "/api/v1/instances")
        .bearer(&tok)
        .host(Some("evil.example"))
        .send();
    srv.req("GET", &format!("/login?code={tok}")).send();

    let mut srv = srv;
    srv.terminate(Duration::from_secs(10)).expect("serve exits");
    assert!(!srv.stderr().contains(&tok), "{}", srv.stderr());
    for f in files(env.state()) {
        if f == token_file {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(&tok),
            "the token leaked into {}",
            f.display()
        );
        assert!(
            !text.contains(&code),
            "the login code leaked into {}",
            f.display()
        );
    }
    let events = std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap();
    assert!(events.contains("API server started"), "{events}");

    // A restart reuses the token (clients keep working).
    let srv = Serve::start(&env);
    assert_eq!(token(&env), tok);
    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(r.status, 200);
}

#[test]
fn remote_addresses_need_allow_remote() {
    let env = Env::new();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let t0 = Instant::now();
        let out = env.run(&["serve", "--addr", addr]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "usage error for {addr}: {}",
            stderr(&out)
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        let err = stderr(&out);
        assert!(
            err.contains("not a loopback address") && err.contains("--allow-remote"),
            "{err}"
        );
    }
    assert!(
        !env.state().join("api.token").exists(),
        "refused before creating anything"
    );

    // With --allow-remote: the token is still required, loopback and
    // IP-literal Hosts work, names other than localhost do not.
    let srv = Serve::start_with(&env, &["--addr", "0.0.0.0:0", "--allow-remote"]);
    let tok = token(&env);
    let port = srv.addr.port();
    assert!(srv.addr.ip().is_unspecified(), "{}", srv.banner);
    let lo = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = Req::new(lo, "GET", "/api/v1/instances")
        .host(Some(&format!("127.0.0.1:{port}")))
        .send();
    assert_eq!(r.status, 401, "token still required");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("192.0.2.7:{port}"),
    ] {
        let r = Req::new(lo, "GET", "/api/v1/instances")
            .bearer(&tok)
            .host(Some(&host))
            .send();
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
    for host in [
        format!("evil.example:{port}"),
        format!("192.0.2.7:{}", port.wrapping_add(1)),
    ] {
        let r = Req::new(lo, "GET", "/api/v1/instances")
            .bearer(&tok)
            .host(Some(&host))
            .send();
        assert_eq!(r.status, 421, "Host {host}");
    }
}

#[test]
fn sigterm_stops_promptly_even_with_open_streams() {
    let env = Env::new();
    let mut srv = Serve::start(&env);
    let tok = token(&env);
    // An open event stream and a half-sent request must not hold it up.
    let mut feed = srv.req("GET", "/api/v1/events").bearer(&tok).stream();
    assert_eq!(feed.head.status, 200);
    let idle = std::net::TcpStream::connect(srv.addr).unwrap();
    let (status, took) = srv.terminate(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "serve did not exit within 10 s of SIGTERM:\n{}",
            srv.stderr()
        )
    });
    assert!(status.success(), "exit status {status:?}: {}", srv.stderr());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        feed.closed_within(Duration::from_secs(2)),
        "the event stream was ended"
    );
    drop(idle);
    let events = std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap();
    assert!(events.contains("API server stopped"), "{events}");
    // The port is free again.
    assert!(std::net::TcpListener::bind(srv.addr).is_ok());
}

/// docs/openapi.yaml names every route the server has, and no other.
#[test]
fn openapi_documents_every_route() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("src/api/mod.rs")).unwrap();
    let spec = std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap();
    let (api, rest) = src
        .split_once(".nest(\"/api/v1\"")
        .expect("the API is nested under /api/v1");
    let routes = |text: &str| -> Vec<String> {
        text.match_indices(".route(")
            .filter_map(|(i, m)| {
                let s = text[i + m.len()..].trim_start().strip_prefix('"')?;
                Some(s[..s.find('"')?].to_owned())
            })
            .collect()
    };
    let mut served: Vec<String> = routes(api).iter().map(|r| format!("/api/v1{r}")).collect();
    served.extend(routes(rest));
    assert!(served.len() >= 9, "{served:?}");
    let documented: Vec<&str> = spec
        .lines()
        .filter(|l| l.starts_with("  /") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    for p in &served {
        assert!(
            documented.contains(&p.as_str()),
            "{p} is served but not in docs/openapi.yaml"
        );
    }
    for p in &documented {
        assert!(
            served.iter().any(|s| s == p),
            "{p} is documented but not served"
        );
    }
    assert!(spec.starts_with("openapi: 3."));
    assert!(spec.contains("scheme: bearer"));
}

/// A saved log holding bytes that are not UTF-8 is sent lossily (as the
/// CLI shows it), not as an empty 200.
#[test]
fn saved_logs_with_invalid_utf8_are_sent_lossily() {
    let env = Env::new();
    let name = env.unique("lossy");
    let id = plant_stopped(&env, &name);
    let logs = env.state().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join(format!("{id}.log")),
        b"before \xff after\nline two\n",
    )
    .unwrap();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/logs"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("before \u{fffd} after"), "{text:?}");
    assert!(text.contains("line two"), "{text:?}");
}

/// A restart from the API or dashboard is the user's: graceful (the agent
/// gets SIGTERM and its stop_timeout), logged as a user action, not as
/// healing. A start of a running instance changes nothing and says so.
#[test]
fn api_restart_is_graceful_and_start_on_running_is_a_no_op() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("apirestart");
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let old = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let put = |action: &str| {
        srv.req("PUT", &format!("/api/v1/instances/{id}"))
            .bearer(&tok)
            .json(&json!({"action": action}))
            .send()
    };

    let r = put("start");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["container_id"], old.as_str(), "start restarted it");
    assert!(
        r.header("x-ai-sessions-note")
            .is_some_and(|n| n.contains("already running")),
        "start on a running instance says so: {:?}",
        r.header("x-ai-sessions-note")
    );

    let r = put("restart");
    assert_eq!(r.status, 200, "{}", r.text());
    let now = r.json();
    assert_eq!(now["status"], "running", "{now}");
    assert_ne!(now["container_id"], old.as_str(), "{now}");
    let events: Vec<Value> = env
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["metadata"]["instance"] == id.as_str())
        .collect();
    let stopped = events
        .iter()
        .find(|e| e["message"] == "instance stopped")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        stopped["metadata"]["exit_code"], 143,
        "the agent got SIGTERM and ended on it, not SIGKILL: {stopped}"
    );
    assert!(
        !events.iter().any(|e| e["component"] == "health"),
        "a user's restart is not healing: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "instance restarted" && e["metadata"]["by"] == "user"),
        "{events:#?}"
    );
    let _ = env.run(&["stop", &id]);
}

#[test]
fn create_with_a_worktree_runs_the_instance_on_its_branch() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let srv = Serve::start(&env);
    let tok = token(&env);
    let name = env.unique("apiwt");
    let repo = env.project(&name);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hi\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "init"]);
    let post = |body: Value| {
        srv.req("POST", "/api/v1/instances")
            .bearer(&tok)
            .json(&body)
            .send()
    };
    let r = post(json!({"project_path": repo, "mode": "claude", "worktree": "feat"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let inst = r.json();
    let id = format!("{name}-feat-claude");
    assert_eq!(inst["id"], id.as_str(), "{inst:#}");
    let wt = repo.join(".claude/worktrees/feat");
    assert_eq!(inst["project_path"], wt.to_str().unwrap(), "{inst:#}");
    assert_eq!(inst["worktree"]["branch"], "worktree-feat", "{inst:#}");
    assert_eq!(
        git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "refs/heads/worktree-feat"
        ])
        .len(),
        40
    );
    // Again: the same instance.
    let r = post(json!({"project_path": repo, "mode": "claude", "worktree": "feat"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());
    // Bad names and a project that is no repository: 400, nothing made.
    let r = post(json!({"project_path": repo, "mode": "claude", "worktree": "../x"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid worktree name"), "{}", r.text());
    let plain = env.project(&env.unique("nogit"));
    let r = post(json!({"project_path": plain, "mode": "claude", "worktree": "feat"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not a git repository"), "{}", r.text());
    assert!(!plain.join(".claude").exists());
}
