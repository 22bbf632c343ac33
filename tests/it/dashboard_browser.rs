//! The web dashboard in a real browser: headless Chromium driven through
//! chromedriver's W3C WebDriver endpoint (plain JSON over HTTP, spoken with
//! the same small client as the API tests). An instance started from the
//! CLI shows up as running; its stop button stops it for real.
//!
//! Skips loudly without chromium/chromedriver; fails instead with
//! AI_SESSIONS_REQUIRE_BROWSER=1 (CI).

use crate::api_support;

use crate::api_support::{Req, Serve};
use crate::common::{stderr, stdout, wait_until, Env};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// (chromium, chromedriver), or a loud skip (a failure when
/// AI_SESSIONS_REQUIRE_BROWSER=1).
pub(crate) fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    let browser = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    if let (Some(b), Some(d)) = (&browser, &driver) {
        return Some((b.clone(), d.clone()));
    }
    let what = format!("chromium: {browser:?}, chromedriver: {driver:?}");
    if std::env::var("AI_SESSIONS_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("{test}: no browser ({what}) and AI_SESSIONS_REQUIRE_BROWSER=1 (apt-get install chromium chromium-driver)");
    }
    eprintln!(
        "\n*** SKIPPED {test}: no browser ({what}); apt-get install chromium chromium-driver ***\n"
    );
    None
}

/// chromedriver on a free loopback port; killed on drop.
pub(crate) struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    pub(crate) fn start(bin: &Path, log: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut d = Driver { child, addr };
        let ready = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).is_ok()
                && Req::new(addr, "GET", "/status").send().json()["value"]["ready"] == true
        });
        if !ready {
            let _ = d.child.kill();
            panic!(
                "chromedriver not ready within 20 s (log: {})",
                log.display()
            );
        }
        d
    }

    /// A WebDriver command; returns `value`, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let mut req = Req::new(self.addr, method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send();
        let v = r.json();
        if r.status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session; quits the browser on drop.
pub(crate) struct Session<'a> {
    d: &'a Driver,
    id: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl<'a> Session<'a> {
    pub(crate) fn new(d: &'a Driver, browser: &Path, profile: &Path) -> Session<'a> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1440,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": args},
        }}});
        let v = d.call("POST", "/session", Some(caps));
        let id = v["sessionId"].as_str().expect("sessionId").to_owned();
        Session { d, id }
    }

    pub(crate) fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.d
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub(crate) fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Clicks the element matching `css`, with WebDriver's real click (the
    /// dashboard re-renders its rows, so a stale element is retried).
    pub(crate) fn click(&self, css: &str) {
        let mut last = Value::Null;
        for _ in 0..10 {
            let found = self.d.try_call(
                "POST",
                &format!("/session/{}/element", self.id),
                Some(json!({"using": "css selector", "value": css})),
            );
            let el = match found {
                Ok(v) => v[ELEMENT].as_str().unwrap().to_owned(),
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            match self.d.try_call(
                "POST",
                &format!("/session/{}/element/{el}/click", self.id),
                Some(json!({})),
            ) {
                Ok(_) => return,
                Err(e) => last = e,
            }
        }
        panic!("could not click {css}: {last}");
    }

    pub(crate) fn screenshot(&self, to: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
        eprintln!("screenshot: {}", to.display());
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .d
            .try_call("DELETE", &format!("/session/{}", self.id), None);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

pub(crate) fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

/// The status cell of the instance's row (null while there is no row).
pub(crate) const ROW_STATUS: &str =
    "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`); \
     return r ? r.children[1].textContent : null;";

pub(crate) fn cli_status(env: &Env, id: &str) -> String {
    let out = env.run(&["list", "--json", "--status", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("list --json");
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn dashboard_shows_and_stops_an_instance() {
    let Some((browser, driver_bin)) = browser_or_skip("dashboard_shows_and_stops_an_instance")
    else {
        return;
    };
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("dash");
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    assert_eq!(stdout(&out).trim(), id);
    // A second instance, in a git worktree, stopped from the CLI while the
    // page is open.
    let other = env.project(&env.unique("docs"));
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&other)
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    }
    let out = env.run_in(
        &other,
        &["start", "--mode", "gemini", "--detach", "-w", "fix"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let other_id = stdout(&out).trim().to_owned();

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));

    // The one-time link logs in and lands on the dashboard.
    s.goto(&srv.login_url);
    assert_eq!(
        s.url(),
        format!("http://{}/", srv.addr),
        "redirected to the dashboard"
    );
    let status = || s.js(ROW_STATUS, json!([id]));
    assert!(
        wait_until(Duration::from_secs(15), || status() == "running"),
        "row for {id} shows running; got {} (page: {})",
        status(),
        s.js("return document.body.innerText", json!([]))
    );
    assert_eq!(s.js(ROW_STATUS, json!([other_id])), "running");
    // Its branch is shown with its project.
    let other_row = s.js(
        "return document.querySelector(`tr[data-id=\"${arguments[0]}\"] td.id`).innerText",
        json!([other_id]),
    );
    assert!(
        other_row
            .as_str()
            .is_some_and(|t| t.contains("worktree-fix")),
        "{other_row}"
    );
    assert_eq!(
        s.js("return document.cookie", json!([])),
        "",
        "the session cookie is HttpOnly: page scripts cannot read it"
    );

    // A change made outside the browser shows up live: row and event feed.
    env.ok(&["stop", &other_id]);
    let other_status = || s.js(ROW_STATUS, json!([other_id]));
    assert!(
        wait_until(Duration::from_secs(10), || other_status() == "stopped"),
        "{other_id} shows stopped; got {}",
        other_status()
    );
    let feed = || {
        s.js(
            "return document.getElementById('feed').innerText",
            json!([]),
        )
    };
    let feed_has = |what: &str| {
        feed()
            .as_str()
            .is_some_and(|t| t.contains(what) && t.contains("stopped"))
    };
    assert!(
        wait_until(Duration::from_secs(10), || feed_has(&other_id)),
        "event feed: {}",
        feed()
    );

    // The logs button shows the agent's output.
    s.click(&format!(
        "tr[data-id=\"{id}\"] button[data-action=\"logs\"]"
    ));
    let logs = || {
        s.js(
            "return document.getElementById('logs').textContent",
            json!([]),
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || logs()
            .as_str()
            .is_some_and(|t| t.contains("fake-agent ready"))),
        "logs panel: {}",
        logs()
    );
    // Let a few samples land in the sparklines before the picture.
    std::thread::sleep(Duration::from_secs(5));
    s.screenshot(&artifacts().join("dashboard.png"));

    // At 1400 px nothing scrolls sideways: not the page, not a panel.
    s.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 1400, "height": 900})),
    );
    let inner = s.js("return window.innerWidth", json!([]));
    assert!(
        inner.as_i64().is_some_and(|w| (1300..=1400).contains(&w)),
        "viewport {inner}"
    );
    let sideways = s.js(
        "return [document.documentElement, ...document.querySelectorAll('section')]
           .filter(e => e.scrollWidth > e.clientWidth + 1)
           .map(e => ((e.querySelector('h2') || {}).textContent || e.tagName)
                     + ' ' + e.scrollWidth + '>' + e.clientWidth)
           .join(', ')",
        json!([]),
    );
    s.screenshot(&artifacts().join("dashboard-1400.png"));
    assert_eq!(sideways, "", "scrolls sideways at 1400 px");

    // Stop through the button, which asks first.
    s.click(&format!(
        "tr[data-id=\"{id}\"] button[data-action=\"stop\"]"
    ));
    s.click(&format!(
        "tr[data-id=\"{id}\"] button[data-action=\"confirm-stop\"]"
    ));
    assert!(
        wait_until(Duration::from_secs(10), || cli_status(&env, &id)
            == "stopped"),
        "the instance stopped; list says {:?}",
        cli_status(&env, &id)
    );
    assert!(
        wait_until(Duration::from_secs(10), || status() == "stopped"),
        "the row shows stopped; got {}",
        status()
    );
    // The event feed saw it (live, over server-sent events).
    assert!(
        wait_until(Duration::from_secs(10), || feed_has(&id)),
        "event feed: {}",
        feed()
    );
    s.screenshot(&artifacts().join("dashboard-stopped.png"));

    // The login link was spent by the browser.
    let r = srv.req("GET", &srv.login_path()).send();
    assert_eq!(r.status, 401);
}

/// Writes `word` into the instance's status file from inside its
/// container, as the agent's hook does (same user, same variable).
pub(crate) fn agent_says(cid: &str, word: &str) {
    let out = Command::new("docker")
        .args(["exec", cid, "sh", "-c"])
        .arg(format!("printf '{word}\\n' >\"$AI_SESSION_STATUS_FILE\""))
        .output()
        .expect("run docker");
    assert!(out.status.success(), "docker exec: {}", stderr(&out));
}

/// The row's activity: the row's `data-activity` and the cell's text.
const ROW_ACTIVITY: &str = "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`); \
     const c = r && r.querySelector('td.activity'); \
     return r ? [r.dataset.activity || null, c ? c.textContent : null] : null;";

/// The "needs you" entries of the page, as [id, state, text].
const ALERTS: &str = "return [...document.querySelectorAll('#alerts .alert')] \
     .map(a => [a.dataset.id, a.dataset.state, a.innerText]);";

#[test]
fn dashboard_shows_when_an_agent_needs_you() {
    let Some((browser, driver_bin)) = browser_or_skip("dashboard_shows_when_an_agent_needs_you")
    else {
        return;
    };
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("needs");
    let proj = env.project(&name);
    // Started without the activity watcher (as after a watcher was killed):
    // the open dashboard brings one up, and its notifications reach the page.
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("AI_SESSIONS_NO_WATCHER", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));
    s.goto(&srv.login_url);
    let status = || s.js(ROW_STATUS, json!([id]));
    assert!(
        wait_until(Duration::from_secs(15), || status() == "running"),
        "row for {id} shows running; got {}",
        status()
    );
    let activity = || s.js(ROW_ACTIVITY, json!([id]));
    let alerts = || s.js(ALERTS, json!([]));
    let title = || s.js("return document.title", json!([]));
    assert_eq!(activity()[0], "unknown", "nothing said yet: {}", activity());
    assert_eq!(alerts(), json!([]), "no notification yet");
    assert_eq!(title(), "ai-sessions");

    // The agent asks a question while nobody is attached: the row turns,
    // without a reload, and a notification appears in the page.
    agent_says(&cid, "waiting");
    let waiting = || {
        let a = activity();
        a[0] == "waiting" && a[1].as_str().is_some_and(|t| t.contains('?'))
    };
    assert!(
        wait_until(Duration::from_secs(5), waiting),
        "the row shows the waiting mark; got {}",
        activity()
    );
    let open_alert = || {
        alerts().as_array().unwrap().iter().any(|a| {
            a[0] == id.as_str()
                && a[1] == "open"
                && a[2].as_str().is_some_and(|t| t.contains("needs you"))
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), open_alert),
        "a notification for {id}; page has {}",
        alerts()
    );
    // Enough of the path to tell two projects of one name apart.
    assert!(
        alerts().to_string().contains(&proj.display().to_string()),
        "the project's path: {}",
        alerts()
    );
    assert!(
        title().as_str().is_some_and(|t| t.starts_with("(1) ")),
        "the tab's title counts who waits: {}",
        title()
    );
    s.screenshot(&artifacts().join("dashboard-needs-you.png"));

    // Answered: back to working; the notification is marked as answered.
    agent_says(&cid, "working");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let a = activity();
            a[0] == "working" && a[1].as_str().is_some_and(|t| t.contains("working"))
        }),
        "the row shows working; got {}",
        activity()
    );
    assert!(
        wait_until(Duration::from_secs(5), || alerts()
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a[0] == id.as_str() && a[1] == "answered")
            && !alerts().as_array().unwrap().is_empty()),
        "the notification is answered; page has {}",
        alerts()
    );
    assert_eq!(title(), "ai-sessions");

    env.ok(&["stop", &id]);
}

/// An agent that already waited before the page opened is in the "Needs
/// you" panel at once (from the instances' state, not only the live
/// notifications), and the panel, the tab's title and the API agree.
#[test]
fn dashboard_lists_who_already_waits_when_it_opens() {
    let Some((browser, driver_bin)) =
        browser_or_skip("dashboard_lists_who_already_waits_when_it_opens")
    else {
        return;
    };
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("early");
    let proj = env.project(&name);
    let out = env
        .cmd()
        .current_dir(&proj)
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    agent_says(&cid, "waiting");
    assert!(
        wait_until(Duration::from_secs(15), || env.instance(&id)["activity"]
            == "waiting"),
        "recorded: {:#}",
        env.instance(&id)
    );
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["needs_you"], true, "{listed:#}");
    let text = env.ok(&["dashboard"]);
    assert!(
        text.contains("1 running, 0 paused, 0 stopped, 0 error, 1 need you"),
        "{text}"
    );

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));
    s.goto(&srv.login_url);
    let alerts = || s.js(ALERTS, json!([]));
    let title = || s.js("return document.title", json!([]));
    let listed_open = || {
        alerts().as_array().is_some_and(|l| {
            l.iter().any(|a| {
                a[0] == id.as_str()
                    && a[1] == "open"
                    && a[2].as_str().is_some_and(|t| t.contains("needs you"))
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(15), listed_open),
        "the panel lists {id}; page has {}",
        alerts()
    );
    assert_eq!(title(), "(1) ai-sessions");
    let empty = s.js(
        "return document.getElementById('noalerts').hidden",
        json!([]),
    );
    assert_eq!(empty, true, "no 'Nothing waits for you' beside it");
    s.screenshot(&artifacts().join("dashboard-already-waiting.png"));

    // It moves on: the entry greys, the title stops counting it.
    agent_says(&cid, "working");
    assert!(
        wait_until(Duration::from_secs(15), || title() == "ai-sessions"
            && alerts()
                .as_array()
                .is_some_and(|l| l.iter().all(|a| a[1] == "answered"))),
        "answered; page has {} titled {}",
        alerts(),
        title()
    );
    env.ok(&["stop", &id]);
}

/// A loopback listener that records every request it gets.
fn recording_listener() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&got));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
        }
    });
    (addr, seen)
}

#[test]
fn the_browser_holds_a_session_not_the_token_and_other_ports_never_see_it() {
    let Some((browser, driver_bin)) =
        browser_or_skip("the_browser_holds_a_session_not_the_token_and_other_ports_never_see_it")
    else {
        return;
    };
    let env = Env::new();
    let srv = Serve::start(&env);
    let token = api_support::token(&env);
    let (other, seen) = recording_listener();
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));

    s.goto(&srv.login_url);
    assert_eq!(s.url(), format!("http://{}/", srv.addr));
    // Logged in: the page loads its data with the cookie alone.
    let logged_in = || {
        s.js("return document.getElementById('login').hidden && !document.getElementById('app').hidden", json!([])) == true
    };
    assert!(
        wait_until(Duration::from_secs(10), logged_in),
        "the dashboard shows, not the login form"
    );
    let cookies = s.cmd("GET", "/cookie", None);
    let ours: Vec<&Value> = cookies
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["domain"]
                .as_str()
                .is_some_and(|d| d.contains("127.0.0.1"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "one cookie: {cookies}");
    assert_eq!(
        ours[0]["name"],
        format!("ai_sessions_{}", srv.addr.port()),
        "named after the port"
    );
    let value = ours[0]["value"].as_str().unwrap();
    assert!(
        value != token && !value.contains(&token),
        "the cookie is not the token"
    );
    assert_eq!(ours[0]["httpOnly"], true);

    // Another loopback port (an agent's dev server the user previews, or
    // another user's listener) gets the browser's cookies for 127.0.0.1:
    // never the token.
    s.goto(&format!("http://{other}/preview"));
    assert!(
        wait_until(Duration::from_secs(10), || seen
            .lock()
            .unwrap()
            .contains("/preview")),
        "the listener was visited"
    );
    let got = seen.lock().unwrap().clone();
    assert!(
        !got.contains(&token),
        "the token reached another port:\n{got}"
    );
    assert!(
        !std::fs::read_to_string(work.path().join("chromedriver.log"))
            .unwrap_or_default()
            .contains(&token),
        "nor the browser's log"
    );
}

/// The spend of each row and the totals, from ledgers written by hand (a
/// stopped instance: no engine needed); a model name of escapes and markup
/// is text in the row's tooltip, never markup.
#[test]
fn dashboard_shows_spend_per_row_and_in_total() {
    let Some((browser, driver_bin)) = browser_or_skip("dashboard_shows_spend_per_row_and_in_total")
    else {
        return;
    };
    let env = Env::new();
    let id = "spent-claude";
    let path = env.project("spent").to_string_lossy().into_owned();
    let reg = json!({"version": 1, "instances": {id: {
        "id": id, "project_path": path, "project_name": "spent", "mode": "claude",
        "status": "stopped", "port": env.port_base + 1, "resources": {},
        "timestamps": {"created": "2026-01-01T00:00:00Z"}, "config": {},
    }}});
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec(&reg).unwrap(),
    )
    .unwrap();
    let dir = env.state().join("meter").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let lines = [
        json!({"ts": now, "model": "claude-sonnet-4-5", "output_tokens": 300_000}),
        json!({"ts": now, "model": "<img src=x onerror=alert(1)>\u{1b}[2J", "input_tokens": 9}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("usage.jsonl"), text).unwrap();

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));
    s.goto(&srv.login_url);
    let cell = || {
        s.js(
            "const c = document.querySelector(`tr[data-id=\"${arguments[0]}\"] td.spend`); \
             return c ? c.textContent : null;",
            json!([id]),
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || cell() == "$4.50+?"),
        "the row's spend: {} (page: {})",
        cell(),
        s.js("return document.body.innerText", json!([]))
    );
    let text = |sel: &str| {
        s.js(
            &format!("return document.querySelector('{sel}').textContent"),
            json!([]),
        )
    };
    assert_eq!(text("#spend-today"), "spend today $4.50+?");
    assert_eq!(text("#spend-total"), "all time $4.50+?");
    let title = s.js(
        "return document.querySelector(`tr[data-id=\"${arguments[0]}\"] td.spend`).title",
        json!([id]),
    );
    assert!(
        title.as_str().is_some_and(|t| t.contains("<img src=x")),
        "the model name is text: {title}"
    );
    assert_eq!(
        s.js("return document.querySelectorAll('img').length", json!([])),
        0,
        "no markup from a ledger"
    );
}

/// Types `text` into the element matching `css` with WebDriver's real key
/// input.
pub(crate) fn type_into(s: &Session, css: &str, text: &str) {
    let found = s.cmd(
        "POST",
        "/element",
        Some(json!({"using": "css selector", "value": css})),
    );
    let el = found[ELEMENT].as_str().unwrap().to_owned();
    s.cmd(
        "POST",
        &format!("/element/{el}/value"),
        Some(json!({ "text": text })),
    );
}

/// The dashboard's Changes view: a worktree instance's diff, the agent's
/// text shown as text (markup in a file stays text); a comment on a line
/// is typed into the agent with the file, the line and its text; one on
/// the whole change, refused while the agent works, goes with "send
/// anyway".
#[test]
fn dashboard_shows_the_changes_and_sends_a_line_comment_to_the_agent() {
    let Some((browser, driver_bin)) =
        browser_or_skip("dashboard_shows_the_changes_and_sends_a_line_comment_to_the_agent")
    else {
        return;
    };
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("chg");
    let repo = crate::review_diff::cloned_repo(&env, &name);
    let out = env.run_in(
        &repo,
        &["start", "--mode", "claude", "--detach", "-w", "fix"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let inst = env.instance(&id);
    let wt = PathBuf::from(inst["worktree"]["path"].as_str().unwrap());
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    std::fs::write(
        wt.join("src/app.py"),
        "def main():\n    x = 1\n    return x\n",
    )
    .unwrap();
    std::fs::write(
        wt.join("page.html"),
        "<img src=x onerror=\"document.title='pwned'\">\n",
    )
    .unwrap();
    agent_says(&cid, "waiting");

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));
    s.goto(&srv.login_url);
    assert!(
        wait_until(Duration::from_secs(15), || s.js(ROW_STATUS, json!([id]))
            == "running"),
        "row for {id}"
    );
    s.click(&format!("tr[data-id=\"{id}\"] button[data-action=changes]"));
    let line = "#changes tr.line.add[data-file=\"src/app.py\"][data-new=\"2\"]";
    let text_of = |css: &str| {
        s.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || text_of(line)
            .as_str()
            .is_some_and(|t| t.contains("+    x = 1"))),
        "the added line is shown; changes: {}",
        text_of("#changes")
    );
    let all = text_of("#changes");
    let all = all.as_str().unwrap();
    assert!(all.contains("-    x = 0"), "{all}");
    assert!(all.contains("against main"), "{all}");
    // The agent's markup is text, not an element.
    assert!(all.contains("+<img src=x onerror="), "{all}");
    assert_eq!(
        s.js(
            "return document.querySelectorAll('#changes img').length",
            json!([])
        ),
        0
    );
    assert_ne!(s.js("return document.title", json!([])), "pwned");
    s.screenshot(&artifacts().join("dashboard-changes.png"));

    // A comment on the line: typed into the agent, which echoes it.
    s.click(line);
    type_into(
        &s,
        "#changes tr.comment-row textarea",
        "use a named constant",
    );
    s.click("#changes tr.comment-row button[data-action=send]");
    let result = "#changes tr.comment-row .result";
    assert!(
        wait_until(Duration::from_secs(20), || text_of(result)
            .as_str()
            .is_some_and(|t| t.contains("sent"))),
        "sent; result: {}",
        text_of(result)
    );
    let want = "echo: In src/app.py line 2 (+    x = 1): use a named constant";
    assert!(
        wait_until(Duration::from_secs(20), || stdout(&env.run(&["logs", &id]))
            .contains(want)),
        "the agent got the comment; its log:\n{}",
        stdout(&env.run(&["logs", &id]))
    );

    // On the whole change while the agent works: refused with the reason,
    // then sent anyway.
    agent_says(&cid, "working");
    assert!(
        wait_until(Duration::from_secs(10), || env.instance(&id)["activity"]
            == "working"),
        "working"
    );
    s.click("#changes button[data-action=comment-all]");
    type_into(&s, "#changes .summary textarea", "also add a test");
    s.click("#changes .summary button[data-action=send]");
    let result = "#changes .summary .result";
    assert!(
        wait_until(Duration::from_secs(20), || text_of(result)
            .as_str()
            .is_some_and(|t| t.contains("not sent") && t.contains("working"))),
        "refused with the reason; result: {}",
        text_of(result)
    );
    s.click("#changes .summary button[data-action=send-anyway]");
    assert!(
        wait_until(Duration::from_secs(20), || text_of(result)
            .as_str()
            .is_some_and(|t| t.contains("sent to the agent"))),
        "sent anyway; result: {}",
        text_of(result)
    );
    assert!(
        wait_until(Duration::from_secs(20), || stdout(&env.run(&["logs", &id]))
            .contains("echo: About your changes so far: also add a test")),
        "the agent got the forced comment"
    );
    env.ok(&["stop", &id]);
}

/// The cells of the instance's row: [status, health, port].
const ROW_CELLS: &str = "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`); \
     return r ? [r.children[1].textContent, r.children[3].textContent, r.children[4].textContent] : null;";

/// What does not fit at `width`: the page scrolling sideways, or a column
/// of the instances table out of reach (its wrapper scrolled to the end).
const NOT_REACHABLE: &str = "const d = document.documentElement; \
     const out = []; \
     if (d.scrollWidth > d.clientWidth + 1) out.push('page ' + d.scrollWidth + '>' + d.clientWidth); \
     const t = document.getElementById('instances'); \
     let w = t.parentElement; \
     while (w && w !== document.body && getComputedStyle(w).overflowX === 'visible') w = w.parentElement; \
     w.scrollLeft = w.scrollWidth; \
     const right = Math.min(w.getBoundingClientRect().right, d.clientWidth); \
     for (const th of t.querySelectorAll('thead th')) { \
       const r = th.getBoundingClientRect(); \
       if (r.right > right + 1) out.push((th.textContent || 'actions') + ' at ' + Math.round(r.right) + '>' + Math.round(right)); \
     } \
     w.scrollLeft = 0; \
     return out.join(', ');";

/// The dashboard at a glance: the one-time link opened twice shows the
/// login page with the reason; from 360 px to wide every column is in
/// reach and the page never scrolls sideways; a stopped instance shows no
/// health nor port, an `--egress none` one no port; stop asks first.
#[test]
fn dashboard_at_a_glance() {
    let Some((browser, driver_bin)) = browser_or_skip("dashboard_at_a_glance") else {
        return;
    };
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let start = |name: &str, extra: &[&str]| {
        let proj = env.project(&env.unique(name));
        let mut args = vec!["start", "--mode", "claude", "--detach"];
        args.extend_from_slice(extra);
        let out = env.run_in(&proj, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let open = start("glance", &[]);
    let closed = start("glance-none", &["--egress", "none"]);
    let stopped = start("glance-stopped", &[]);
    // Checked healthy while it ran, then stopped.
    let _ = env.run(&["health", "check", &stopped]);
    env.ok(&["stop", "--force", &stopped]);
    assert!(
        env.instance(&stopped)["health"]["status"].is_string(),
        "a health kept from when it ran: {}",
        env.instance(&stopped)
    );

    let srv = Serve::start(&env);
    let work = tempfile::Builder::new()
        .prefix("ais-chromium")
        .tempdir()
        .unwrap();
    let driver = Driver::start(&driver_bin, &work.path().join("chromedriver.log"));
    let s = Session::new(&driver, &browser, &work.path().join("profile"));
    s.goto(&srv.login_url);
    assert_eq!(s.url(), format!("http://{}/", srv.addr));

    // The link again, in a browser without the session: the login page,
    // saying why, not the API's JSON.
    s.cmd("DELETE", "/cookie", None);
    s.goto(&srv.login_url);
    assert_eq!(s.url(), format!("http://{}/?login=used", srv.addr));
    let login_shown = || {
        s.js(
            "const l = document.getElementById('login'); \
             return l && !l.hidden ? document.getElementById('loginwhy').textContent : null",
            json!([]),
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || login_shown()
            .as_str()
            .is_some_and(|t| t.contains("already used"))),
        "login page with the reason; page: {}",
        s.js("return document.body.innerText", json!([]))
    );
    let text = s.js("return document.body.innerText", json!([]));
    assert!(
        !text.as_str().unwrap().contains("bad_login"),
        "no raw JSON: {text}"
    );
    s.screenshot(&artifacts().join("dashboard-login-used.png"));
    // The token logs in from there.
    let token = std::fs::read_to_string(env.state().join("api.token")).unwrap();
    type_into(&s, "#login input[name=token]", token.trim());
    s.click("#login button[type=submit]");
    let row = |id: &str| s.js(ROW_CELLS, json!([id]));
    assert!(
        wait_until(Duration::from_secs(15), || row(&open)[0] == "running"),
        "row for {open}: {}",
        row(&open)
    );

    // What is true: a published port for the open one only.
    let port_of = |id: &str| env.instance(id)["port"].to_string();
    assert_eq!(row(&open)[2], port_of(&open).as_str(), "{}", row(&open));
    assert_eq!(row(&closed)[0], "running");
    assert_eq!(row(&closed)[2], "-", "--egress none publishes nothing");
    assert_eq!(row(&stopped)[0], "stopped");
    assert_eq!(row(&stopped)[1], "-", "no health for a stopped instance");
    assert_eq!(row(&stopped)[2], "-", "no port for a stopped instance");

    // Every column in reach, from a phone to a wide screen.
    for width in [360, 820, 1024, 1440] {
        s.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": 900})),
        );
        let cut = s.js(NOT_REACHABLE, json!([]));
        s.screenshot(&artifacts().join(format!("dashboard-{width}.png")));
        assert_eq!(cut, "", "at {width} px");
    }

    // Stop asks first: cancel keeps it running; confirm stops it.
    let stop = format!("tr[data-id=\"{open}\"] button[data-action=\"stop\"]");
    s.click(&stop);
    s.click(&format!(
        "tr[data-id=\"{open}\"] button[data-action=\"cancel\"]"
    ));
    s.click(&stop);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cli_status(&env, &open),
        "running",
        "one click stops nothing"
    );
    s.click(&format!(
        "tr[data-id=\"{open}\"] button[data-action=\"confirm-stop\"]"
    ));
    assert!(
        wait_until(Duration::from_secs(15), || cli_status(&env, &open)
            == "stopped"),
        "confirmed: stopped; list says {}",
        cli_status(&env, &open)
    );
    env.ok(&["stop", "--force", &closed]);
}
