//! The credential broker as a host process (`net proxy --broker-…`, no
//! container): the test is the agent, talking plain HTTP to the broker,
//! and the fake model API (`fake_model`) is the upstream. A call carrying
//! the instance's placeholder reaches the upstream, and only it, with the
//! real key, and its reply comes back whole; any other call is refused
//! and never forwarded; usage lands in the ledger; budgets refuse calls
//! and are re-read without a restart; the key is nowhere on disk or in
//! the broker's output.

use crate::common::{Env, BIN};
use crate::docker_support::walk_files;
use crate::fake_model::client::{request, Resp};
use crate::fake_model::{FakeApi, Reply, Usage};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real key: shaped like one, unique enough to grep for.
const REAL: &str = "sk-ant-api03-REALKEY-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e";
const PLACEHOLDER: &str =
    "sk-ant-api03-aisessions-00112233445566778899aabbccddeeff0011223344556677";
/// Another instance's placeholder: worthless here.
const OTHER_PLACEHOLDER: &str =
    "sk-ant-api03-aisessions-ffeeddccbbaa99887766554433221100ffeeddccbbaa9988";
const GEMINI_REAL: &str = "AIzaSyREALKEY-4b9d2e7f1a3c5e7f9b1d3f5a7c9e";
const GEMINI_PLACEHOLDER: &str =
    "AIzaSy-aisessions-0123456789abcdef0123456789abcdef0123456789abcdef";
const ID: &str = "proj-claude";

/// `$3` in and `$15` out per million tokens: the price of the fake's
/// default model (and of nothing else, so an unpriced call costs nothing).
fn prices() -> Value {
    json!({"claude-sonnet-4-5": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
           "gemini-2.5-pro": {"input_per_mtok": 1.25, "output_per_mtok": 10.0}})
}

/// One broker process and its files: `broker.json`, the rules and events
/// files the proxy half wants, `meter/<id>/` (its ledger), its stdout and
/// stderr.
struct Broker {
    env: Env,
    dir: tempfile::TempDir,
    port: u16,
    key: String,
    child: Option<Child>,
    meter_all: bool,
}

impl Broker {
    /// A broker for `api` (`anthropic` or `gemini`) in front of `fake`,
    /// `budget` as in `broker.json`; started.
    fn start(fake: &FakeApi, api: &str, budget: Value) -> Broker {
        Broker::start_with(fake, api, budget, false)
    }

    fn start_with(fake: &FakeApi, api: &str, budget: Value, meter_all: bool) -> Broker {
        let env = Env::new();
        let dir = tempfile::Builder::new()
            .prefix("ais-broker")
            .tempdir()
            .unwrap();
        let (key, placeholder) = match api {
            "gemini" => (GEMINI_REAL, GEMINI_PLACEHOLDER),
            _ => (REAL, PLACEHOLDER),
        };
        std::fs::create_dir_all(dir.path().join("meter").join(ID)).unwrap();
        std::fs::write(
            dir.path().join("rules.json"),
            json!({"instance": ID, "allow": [], "deny": []}).to_string(),
        )
        .unwrap();
        let mut b = Broker {
            port: env.port_base + 7,
            env,
            dir,
            key: key.to_owned(),
            child: None,
            meter_all,
        };
        b.settings(json!({
            "instance": ID, "api": api,
            "upstream": {"tls": false, "host": "127.0.0.1", "port": fake.port, "base_path": ""},
            "placeholder": placeholder,
            "budget": budget,
            "prices": prices(),
        }));
        b.spawn();
        b
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn ledger_dir(&self) -> PathBuf {
        self.path("meter").join(ID)
    }

    /// Writes `broker.json` whole (temp file and rename, as the host does).
    fn settings(&self, v: Value) {
        let tmp = self.path("broker.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        std::fs::rename(&tmp, self.path("broker.json")).unwrap();
    }

    fn settings_now(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("broker.json")).unwrap()).unwrap()
    }

    /// Starts the process, writes the key on its stdin, waits until it
    /// answers.
    fn spawn(&mut self) {
        let out = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))
                .unwrap()
        };
        let mut cmd = Command::new(BIN);
        cmd.env("AI_SESSIONS_HOME", self.env.state())
            .env("NO_COLOR", "1")
            .args(["net", "proxy", "--rules"])
            .arg(self.path("rules.json"))
            .arg("--events")
            .arg(self.path("events.jsonl"))
            .arg("--broker-settings")
            .arg(self.path("broker.json"))
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--meter")
            .arg(self.ledger_dir());
        if self.meter_all {
            cmd.arg("--meter-all").arg(self.path("meter"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", self.key).unwrap();
        drop(stdin);
        self.child = Some(child);
        let port = self.port;
        let up = crate::common::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the broker does not listen: {}", self.stderr());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// A call as the agent makes it, with the placeholder in `x-api-key`.
    fn call(&self, target: &str, body: &str) -> Resp {
        self.call_with(target, &[("x-api-key", PLACEHOLDER)], body)
    }

    fn call_with(&self, target: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut h = vec![
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ];
        h.extend_from_slice(headers);
        request(self.port, "POST", target, &h, body)
    }

    fn ledger(&self) -> Vec<Value> {
        ledger_of(&self.ledger_dir())
    }

    /// Neither the broker's output nor any file it or the test made holds
    /// the real key.
    fn assert_no_key(&self) {
        for f in walk_files(self.dir.path())
            .into_iter()
            .chain(walk_files(self.env.state()))
        {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            assert!(!text.contains(&self.key), "the key is in {}", f.display());
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ledger_of(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("usage.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const STREAM: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"say pong"}]}"#;
const PLAIN: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"say pong"}]}"#;

/// The records' token counts and status, as `(model, in, out, cache
/// write, cache read, status)`.
fn counts(ledger: &[Value]) -> Vec<(String, u64, u64, u64, u64, u64)> {
    ledger
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
            (
                r["model"].as_str().unwrap_or("?").to_owned(),
                n("input_tokens"),
                n("output_tokens"),
                n("cache_creation_input_tokens"),
                n("cache_read_input_tokens"),
                n("status"),
            )
        })
        .collect()
}

#[test]
fn a_call_with_the_placeholder_reaches_the_upstream_with_the_real_key_and_comes_back_whole() {
    let fake = FakeApi::start();
    let b = Broker::start(&fake, "anthropic", json!({}));
    // What the upstream answers when asked directly: the reference.
    let direct_stream = request(fake.port, "POST", "/v1/messages?beta=true", &[], STREAM);
    let direct_plain = request(fake.port, "POST", "/v1/messages", &[], PLAIN);
    fake.clear();

    let r = b.call("/v1/messages?beta=true", STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.text(), direct_stream.text());
    assert!(r.text().contains(r#""text":"pong""#));
    let r = b.call("/v1/messages", PLAIN);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), direct_plain.json());
    // `Authorization: Bearer <placeholder>` works too, and leaves no
    // Authorization upstream: the key goes in the API's own header.
    let r = b.call_with(
        "/v1/messages",
        &[("authorization", &format!("Bearer {PLACEHOLDER}"))],
        PLAIN,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let seen = fake.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for s in &seen {
        assert_eq!(s.credentials(), [REAL], "{s:#?}");
        assert_eq!(
            s.host.as_deref(),
            Some(&*format!("127.0.0.1:{}", fake.port))
        );
    }
    assert_eq!(seen[0].target, "/v1/messages?beta=true");
    assert_eq!(seen[0].body, STREAM);
    assert_eq!(seen[1].target, "/v1/messages");

    // A chunked request body arrives whole.
    {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", b.port)).unwrap();
        let (a, z) = PLAIN.split_at(10);
        write!(
            c,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {PLACEHOLDER}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             {:x}\r\n{a}\r\n{:x}\r\n{z}\r\n0\r\n\r\n",
            a.len(),
            z.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        assert_eq!(crate::fake_model::client::parse(&raw).status, 200);
        assert_eq!(fake.seen().last().unwrap().body, PLAIN);
    }

    // A stream of 8 MiB arrives byte for byte.
    fake.set_reply(Reply {
        big_mib: 8,
        ..Reply::default()
    });
    let direct = request(fake.port, "POST", "/v1/messages", &[], STREAM);
    let r = b.call("/v1/messages", STREAM);
    assert!(r.body.len() > 8 << 20);
    assert!(r.body == direct.body, "the big stream differs");
    b.assert_no_key();
}

#[test]
fn calls_without_this_instances_placeholder_are_refused_and_never_forwarded() {
    let fake = FakeApi::start();
    let b = Broker::start(&fake, "anthropic", json!({}));
    let other_bearer = format!("Bearer {OTHER_PLACEHOLDER}");
    let real_bearer = format!("Bearer {REAL}");
    let longer = format!("{PLACEHOLDER}0");
    let shorter = &PLACEHOLDER[..PLACEHOLDER.len() - 1];
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no key", vec![]),
        ("the real key", vec![("x-api-key", REAL)]),
        (
            "the real key as bearer",
            vec![("authorization", &real_bearer)],
        ),
        ("another instance's", vec![("x-api-key", OTHER_PLACEHOLDER)]),
        (
            "another's as bearer",
            vec![("authorization", &other_bearer)],
        ),
        ("one more character", vec![("x-api-key", &longer)]),
        ("one less", vec![("x-api-key", shorter)]),
        // Not a header Anthropic's clients use.
        ("in x-goog-api-key", vec![("x-goog-api-key", PLACEHOLDER)]),
        ("bare authorization", vec![("authorization", PLACEHOLDER)]),
    ];
    for (what, headers) in &cases {
        let r = b.call_with("/v1/messages", headers, STREAM);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{what}");
        assert_eq!(v["error"]["type"], "authentication_error", "{what}");
    }
    // `?key=` is Gemini's: an Anthropic broker does not take it.
    let r = b.call_with(&format!("/v1/messages?key={PLACEHOLDER}"), &[], STREAM);
    assert_eq!(r.status, 401);
    // A tunnel, even with the placeholder: nothing the broker could see.
    let r = request(
        b.port,
        "CONNECT",
        "api.anthropic.com:443",
        &[("x-api-key", PLACEHOLDER)],
        "",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(fake.seen().is_empty(), "{:#?}", fake.seen());
    assert!(b.ledger().is_empty());
    // The placeholder still works afterwards.
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    assert_eq!(fake.seen().len(), 1);
    b.assert_no_key();
}

#[test]
fn an_absolute_url_or_a_foreign_host_still_goes_to_the_upstream_only() {
    let fake = FakeApi::start();
    // Another server on this machine: what a box would like to reach.
    let evil = FakeApi::start();
    let b = Broker::start(&fake, "anthropic", json!({}));
    let evil_at = format!("127.0.0.1:{}", evil.port);
    let absolute = format!("http://{evil_at}/v1/messages");
    let r = request(
        b.port,
        "POST",
        &absolute,
        &[("x-api-key", PLACEHOLDER), ("host", &evil_at)],
        PLAIN,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        b.port,
        "POST",
        "/v1/messages",
        &[("x-api-key", PLACEHOLDER), ("host", "evil.example")],
        PLAIN,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        b.port,
        "POST",
        "http://evil.example/v1/messages",
        &[("x-api-key", PLACEHOLDER), ("host", "evil.example")],
        PLAIN,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A tunnel is not a model call: wherever it goes, never to `evil`.
    let r = request(
        b.port,
        "CONNECT",
        &evil_at,
        &[("x-api-key", PLACEHOLDER), ("host", &evil_at)],
        "",
    );
    assert_ne!(r.status, 200, "a CONNECT through the broker: {}", r.head);

    assert!(evil.seen().is_empty(), "{:#?}", evil.seen());
    let seen = fake.seen();
    let upstream = format!("127.0.0.1:{}", fake.port);
    assert!(seen.len() >= 3, "{seen:#?}");
    for s in &seen[..3] {
        assert_eq!(s.target, "/v1/messages");
        assert_eq!(s.host.as_deref(), Some(upstream.as_str()));
        assert_eq!(s.credentials(), [REAL]);
    }
    b.assert_no_key();
}

#[test]
fn usage_of_streamed_and_plain_calls_of_both_apis_is_in_the_broker_ledger() {
    let fake = FakeApi::start();
    let b = Broker::start(&fake, "anthropic", json!({}));
    assert_eq!(b.call("/v1/messages?beta=true", STREAM).status, 200);
    fake.set_reply(Reply {
        usage: Usage {
            input: 5,
            output: 6,
            cache_creation: 0,
            cache_read: 3,
        },
        ..Reply::default()
    });
    assert_eq!(
        b.call(
            "/v1/messages",
            r#"{"model":"claude-haiku-4-5","messages":[]}"#
        )
        .status,
        200
    );
    // An upstream error is recorded with its status.
    fake.set_reply(Reply {
        status: 429,
        ..Reply::default()
    });
    assert_eq!(b.call("/v1/messages", PLAIN).status, 429);
    let want = |m: &str, i, o, w, r, s| (m.to_owned(), i, o, w, r, s);
    let sonnet = "claude-sonnet-4-5-20250929";
    assert_eq!(
        counts(&b.ledger()),
        [
            want(sonnet, 12, 34, 100, 7, 200),
            want("claude-haiku-4-5", 5, 6, 0, 3, 200),
            want("", 0, 0, 0, 0, 429),
        ]
    );

    // The agent hangs up in the middle of a long stream: the call still
    // counts, with what it had reported so far.
    fake.set_reply(Reply {
        big_mib: 64,
        ..Reply::default()
    });
    {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", b.port)).unwrap();
        write!(
            c,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {PLACEHOLDER}\r\nContent-Length: {}\r\n\r\n{STREAM}",
            STREAM.len()
        )
        .unwrap();
        let mut buf = vec![0; 256 << 10];
        c.read_exact(&mut buf).unwrap();
    }
    let recorded = crate::common::wait_until(Duration::from_secs(10), || b.ledger().len() == 4);
    assert!(recorded, "{:#?}", b.ledger());
    assert_eq!(counts(&b.ledger())[3], want(sonnet, 12, 1, 100, 7, 200));

    // Gemini: streamed (`alt=sse`, key in the query), whole, tokens
    // counted: the key leaves the query and travels in its header.
    let fake = FakeApi::start();
    let g = Broker::start(&fake, "gemini", json!({}));
    let r = request(
        g.port,
        "POST",
        &format!(
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key={GEMINI_PLACEHOLDER}"
        ),
        &[],
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(r#""text":"pong""#));
    let r = request(
        g.port,
        "POST",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", GEMINI_PLACEHOLDER)],
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = fake.seen();
    assert_eq!(
        seen[0].target,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    for s in &seen {
        assert_eq!(s.x_goog_api_key.as_deref(), Some(GEMINI_REAL), "{s:#?}");
        assert_eq!(s.credentials(), [GEMINI_REAL], "{s:#?}");
    }
    // Gemini's prompt count includes the cached tokens: input is the rest.
    assert_eq!(
        counts(&g.ledger()),
        [
            want("gemini-2.5-pro", 12, 34, 0, 7, 200),
            want("gemini-2.5-flash", 12, 34, 0, 7, 200),
        ]
    );
    b.assert_no_key();
    g.assert_no_key();
}

/// A reply that costs `$3` (a million input tokens of the priced model).
fn three_dollars() -> Reply {
    Reply {
        usage: Usage {
            input: 1_000_000,
            output: 0,
            cache_creation: 0,
            cache_read: 0,
        },
        ..Reply::default()
    }
}

#[test]
fn a_spent_instance_budget_refuses_the_next_call_until_it_is_raised() {
    let fake = FakeApi::with(three_dollars());
    let b = Broker::start(&fake, "anthropic", json!({"instance_usd": 2.0}));
    assert_eq!(b.call("/v1/messages", STREAM).status, 200);
    let r = b.call("/v1/messages", STREAM);
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("budget.instance_usd"), "{msg}");
    assert!(msg.contains("ai-sessctl config set"), "{msg}");
    assert!(msg.contains("$2.00"), "{msg}");
    assert_eq!(fake.seen().len(), 1, "the refused call went upstream");
    assert_eq!(b.ledger().len(), 1);

    // A broker.json that does not parse keeps the budget it had.
    let mut s = b.settings_now();
    std::fs::write(b.path("broker.json"), "{\"instance\": ").unwrap();
    assert_eq!(b.call("/v1/messages", PLAIN).status, 400);
    assert!(
        b.stderr().contains("keeping the previous settings"),
        "{}",
        b.stderr()
    );

    // The host raises it (`config set` rewrites broker.json): the running
    // broker lets the next call through.
    s["budget"]["instance_usd"] = json!(10.0);
    b.settings(s);
    let r = b.call("/v1/messages", PLAIN);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fake.seen().len(), 2);
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    // $12 spent of $10.
    assert_eq!(b.call("/v1/messages", PLAIN).status, 400);
    assert_eq!(fake.seen().len(), 4);
    b.assert_no_key();
}

#[test]
fn the_daily_budget_counts_every_ledger_of_the_day() {
    let fake = FakeApi::with(Reply {
        usage: Usage {
            input: 100_000,
            output: 0,
            cache_creation: 0,
            cache_read: 0,
        },
        ..Reply::default()
    });
    // Not started yet: the other instance's ledger is written first.
    let b = Broker::start_with(&fake, "anthropic", json!({"daily_usd": 1.0}), true);
    let other = b.path("meter").join("other-claude");
    std::fs::create_dir_all(&other).unwrap();
    let now = chrono::Utc::now();
    let rec = |ts: chrono::DateTime<chrono::Utc>, input: u64| {
        json!({"ts": ts, "model": "claude-sonnet-4-5-20250929", "input_tokens": input,
               "output_tokens": 0, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "status": 200})
        .to_string()
    };
    // Yesterday's $30 is not today's; today's $0.60 is.
    let yesterday = now - chrono::Duration::days(1) - chrono::Duration::hours(1);
    std::fs::write(
        other.join("usage.jsonl"),
        format!("{}\n{}\n", rec(yesterday, 10_000_000), rec(now, 200_000)),
    )
    .unwrap();
    let before = std::fs::read(other.join("usage.jsonl")).unwrap();

    // $0.60, then $0.90 spent today: both under $1.
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    assert_eq!(b.call("/v1/messages", STREAM).status, 200);
    // $1.20 spent.
    let r = b.call("/v1/messages", PLAIN);
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("budget.daily_usd"), "{msg}");
    assert!(msg.contains("ai-sessctl config set"), "{msg}");
    assert!(msg.contains("$1.20"), "{msg}");
    assert_eq!(fake.seen().len(), 2);
    assert_eq!(b.ledger().len(), 2);
    assert_eq!(
        std::fs::read(other.join("usage.jsonl")).unwrap(),
        before,
        "the broker wrote into another instance's ledger"
    );
    // Without the other ledger's day this broker alone is under budget.
    std::fs::remove_dir_all(&other).unwrap();
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    b.assert_no_key();
}

#[test]
fn the_key_is_never_written_or_told_even_when_calls_fail() {
    let fake = FakeApi::start();
    let mut b = Broker::start(&fake, "anthropic", json!({"instance_usd": 0.000001}));
    let mut told = Vec::new();
    told.push(b.call("/v1/messages", STREAM));
    // Refused: no placeholder, and the budget spent.
    told.push(b.call_with("/v1/messages", &[("x-api-key", REAL)], PLAIN));
    told.push(b.call("/v1/messages", PLAIN));
    // The upstream gone: the broker's error names the upstream, not the key.
    let port = fake.port;
    drop(fake);
    let mut s = b.settings_now();
    s["budget"] = json!({});
    b.settings(s);
    let gone = b.call("/v1/messages", PLAIN);
    assert_eq!(gone.status, 502, "{}", gone.text());
    assert!(
        gone.text().contains(&format!("127.0.0.1:{port}")),
        "{}",
        gone.text()
    );
    told.push(gone);
    for r in &told {
        assert!(!r.head.contains(REAL) && !r.text().contains(REAL));
    }
    b.kill();
    assert!(
        b.stderr().contains("broker: listening on"),
        "{}",
        b.stderr()
    );
    b.assert_no_key();
    // The check can fail: the key is what the test wrote to the broker.
    std::fs::write(b.path("probe"), REAL).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.assert_no_key()));
    assert!(caught.is_err());
}

#[test]
fn a_restarted_broker_keeps_its_ledger_and_its_budget() {
    let fake = FakeApi::with(three_dollars());
    let mut b = Broker::start(&fake, "anthropic", json!({"instance_usd": 5.0}));
    assert_eq!(b.call("/v1/messages", STREAM).status, 200);
    b.kill();
    b.spawn();
    assert_eq!(b.ledger().len(), 1);
    assert_eq!(b.call("/v1/messages", PLAIN).status, 200);
    // $6 of $5, read back from the ledger by a fresh process.
    b.kill();
    b.spawn();
    let r = b.call("/v1/messages", PLAIN);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(counts(&b.ledger()).len(), 2);
    assert_eq!(fake.seen().len(), 2);
    b.assert_no_key();
}
