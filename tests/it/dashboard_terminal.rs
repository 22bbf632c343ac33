//! The dashboard's live terminal: the agent's terminal in the page
//! (xterm.js served by `serve`) over the attach WebSocket. Read-only until
//! the user turns typing on, in the page and on the server; resizing the
//! panel resizes the agent's terminal; leaving never stops the agent; a
//! socket without a login, or from another origin, is refused.

use crate::api_support::{self, Serve};
use crate::common::{stderr, stdout, wait_until, Env};
use crate::dashboard_browser::{
    agent_says, artifacts, browser_or_skip, cli_status, type_into, Driver, Session, ROW_STATUS,
};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use tungstenite::Message;

/// A running fake agent started from the CLI: (id, container id).
fn started(env: &Env, prefix: &str) -> (String, String) {
    env.use_test_image("");
    let name = env.unique(prefix);
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    (id, cid)
}

/// The agent's terminal size as its own `stty` sees it ("rows cols").
fn tty_size(cid: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", cid, "stty", "-F", "/dev/console", "size"])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn events(env: &Env) -> String {
    stdout(&env.run(&["events", "--json"]))
}

type Socket = tungstenite::WebSocket<TcpStream>;

/// A WebSocket to the attach route with the token, as a script would open
/// it (no browser, no Origin).
fn connect(srv: &Serve, token: &str, id: &str) -> Socket {
    connect_with(srv, id, &[("Authorization", &format!("Bearer {token}"))])
}

/// The same, from a page of `origin` (as a browser names it).
fn connect_from(srv: &Serve, token: &str, id: &str, origin: &str) -> Socket {
    let bearer = format!("Bearer {token}");
    connect_with(srv, id, &[("Authorization", &bearer), ("Origin", origin)])
}

/// A WebSocket to the attach route with these `headers` (the login).
fn connect_with(srv: &Serve, id: &str, headers: &[(&str, &str)]) -> Socket {
    let stream = TcpStream::connect(srv.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut req = tungstenite::http::Request::builder();
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .uri(format!("ws://{}/api/v1/instances/{id}/attach", srv.addr))
        .header("Host", srv.addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (ws, resp) = tungstenite::client::client(req, stream).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// Reads the socket into `seen` until it holds `want` (or 20 s pass).
fn read_until(ws: &mut Socket, seen: &mut String, want: &str) -> bool {
    wait_until(Duration::from_secs(20), || {
        match ws.read() {
            Ok(Message::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("socket: {e}; seen: {seen}"),
        }
        seen.contains(want)
    })
}

/// The server, not only the page, keeps the terminal read-only: keys sent
/// before `{"input": true}` never reach the agent; after it they do. A
/// size message resizes the agent's terminal; closing leaves it running.
#[test]
fn attach_socket_is_read_only_until_input_is_turned_on() {
    require_docker!();
    let env = Env::new();
    let (id, cid) = started(&env, "wsro");
    let srv = Serve::start(&env);
    let token = api_support::token(&env);
    let mut ws = connect(&srv, &token, &id);
    let mut seen = String::new();
    assert!(
        read_until(&mut ws, &mut seen, "fake-agent ready"),
        "the output so far comes first: {seen:?}"
    );

    ws.send(Message::Binary(b"sneaked-in\r".to_vec().into()))
        .unwrap();
    ws.send(Message::Text(r#"{"input": true}"#.into())).unwrap();
    ws.send(Message::Binary(b"typed-in\r".to_vec().into()))
        .unwrap();
    assert!(
        read_until(&mut ws, &mut seen, "echo: typed-in"),
        "typed once input is on: {seen:?}"
    );
    // In order: had the first line got through, its echo would be first.
    assert!(!seen.contains("echo: sneaked-in"), "{seen}");
    assert!(!stdout(&env.run(&["logs", &id])).contains("sneaked-in"));

    ws.send(Message::Text(r#"{"cols": 101, "rows": 33}"#.into()))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || tty_size(&cid) == "33 101"),
        "the agent's terminal is {:?}",
        tty_size(&cid)
    );

    let _ = ws.close(None);
    drop(ws);
    assert!(
        wait_until(Duration::from_secs(10), || events(&env)
            .contains("terminal closed in the browser")),
        "events: {}",
        events(&env)
    );
    assert!(events(&env).contains("terminal opened in the browser"));
    assert_eq!(cli_status(&env, &id), "running", "detaching never stops it");
    env.ok(&["stop", &id]);
}

/// An upgrade request with `headers` (besides Host and the WebSocket ones).
fn upgrade_status(srv: &Serve, id: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = srv
        .req("GET", &format!("/api/v1/instances/{id}/attach"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().status
}

/// No login, a wrong token, a foreign page, a cookie with no page: refused
/// before any upgrade; the page's own socket ends at its logout.
#[test]
fn attach_socket_needs_a_login_and_our_own_origin() {
    require_docker!();
    let env = Env::new();
    let (id, _) = started(&env, "wsauth");
    let srv = Serve::start(&env);
    let token = api_support::token(&env);
    let bearer = format!("Bearer {token}");
    assert_eq!(upgrade_status(&srv, &id, &[]), 401, "no login");
    assert_eq!(
        upgrade_status(&srv, &id, &[("Authorization", "Bearer nope")]),
        401
    );
    assert_eq!(
        upgrade_status(
            &srv,
            &id,
            &[
                ("Authorization", &bearer),
                ("Origin", "http://evil.example")
            ]
        ),
        403,
        "a foreign page"
    );
    // A browser session's cookie without the page's Origin: not our page.
    let r = srv.req("GET", &srv.login_path()).send();
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").expect("a session cookie");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(
        upgrade_status(&srv, &id, &[("Cookie", &cookie)]),
        403,
        "a session cookie with no Origin"
    );
    assert_eq!(
        upgrade_status(
            &srv,
            &id,
            &[("Cookie", &cookie), ("Origin", "http://evil.example")]
        ),
        403,
        "a session cookie from a foreign page"
    );
    // Our own page's origin is let in (the handshake answers 101).
    let own = format!("http://{}", srv.addr);
    let mut ws = connect_from(&srv, &token, &id, &own);
    let mut seen = String::new();
    assert!(read_until(&mut ws, &mut seen, "fake-agent ready"), "{seen}");
    drop(ws);

    // The page's socket (cookie and Origin) ends with its session.
    let mut ws = connect_with(&srv, &id, &[("Cookie", &cookie), ("Origin", &own)]);
    let mut seen = String::new();
    assert!(read_until(&mut ws, &mut seen, "fake-agent ready"), "{seen}");
    let out = srv.req("POST", "/logout").header("Cookie", &cookie).send();
    assert_eq!(out.status, 303);
    assert!(
        wait_until(Duration::from_secs(10), || match ws.read() {
            Ok(Message::Close(_)) => true,
            Ok(_) => false,
            Err(tungstenite::Error::Io(e)) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Err(_) => true,
        }),
        "the socket closed at the logout"
    );
    assert_eq!(cli_status(&env, &id), "running", "and the agent runs on");
    env.ok(&["stop", &id]);
}

/// The text of the terminal on the page (xterm.js's rows).
const TERM_TEXT: &str = "const r = document.querySelector('#terminal .xterm-rows'); \
     return r ? r.innerText : null;";

#[test]
fn dashboard_terminal_shows_the_agent_and_types_only_when_asked() {
    let Some((browser, driver_bin)) =
        browser_or_skip("dashboard_terminal_shows_the_agent_and_types_only_when_asked")
    else {
        return;
    };
    require_docker!();
    let env = Env::new();
    let (id, cid) = started(&env, "term");
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
    assert_eq!(
        s.js(
            "return document.querySelectorAll(`tr[data-id=\"${arguments[0]}\"] button[data-action=terminal]`).length",
            json!([id])
        ),
        1,
        "a terminal button on the running instance's row"
    );
    // The agent asks: answered from its "Needs you" entry, in its terminal.
    agent_says(&cid, "waiting");
    let entry = format!("#alerts .alert[data-id=\"{id}\"] button[data-action=terminal]");
    assert!(
        wait_until(Duration::from_secs(15), || s.js(
            "return document.querySelector(arguments[0]) !== null",
            json!([entry])
        ) == true),
        "a needs-you entry with a terminal button; alerts: {}",
        s.js(
            "return document.getElementById('alerts').innerText",
            json!([])
        )
    );
    s.click(&entry);
    let text = || s.js(TERM_TEXT, json!([]));
    let shows = |what: &str| text().as_str().is_some_and(|t| t.contains(what));
    assert!(
        wait_until(Duration::from_secs(15), || shows("fake-agent ready")),
        "the terminal shows the agent's output; it shows {}; page: {}",
        text(),
        s.js("return document.body.innerText", json!([]))
    );

    // Read-only: keys typed into it go nowhere.
    let keys = "#terminal .xterm-helper-textarea";
    type_into(&s, keys, "not-sent\u{E007}");
    // Typing on: the fake agent echoes the line, in the page.
    s.click("#term-type");
    assert_eq!(
        s.js(
            "return document.getElementById('term-type').dataset.typing",
            json!([])
        ),
        "on"
    );
    type_into(&s, keys, "from-the-browser\u{E007}");
    assert!(
        wait_until(Duration::from_secs(15), || shows("echo: from-the-browser")),
        "the agent's echo in the page; it shows {}",
        text()
    );
    assert!(!shows("echo: not-sent"), "{}", text());
    assert!(!stdout(&env.run(&["logs", &id])).contains("not-sent"));
    s.screenshot(&artifacts().join("dashboard-terminal.png"));

    // A bigger panel and window: the agent's terminal follows.
    let before = tty_size(&cid);
    s.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 1000, "height": 900})),
    );
    s.js(
        "document.getElementById('terminal').style.height = '40em'",
        json!([]),
    );
    let page_size = || -> Value {
        s.js(
            "const t = document.querySelector('#terminal .xterm-rows'); \
             return t ? [t.childElementCount] : null;",
            json!([]),
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = tty_size(&cid);
            !now.is_empty() && now != before
        }),
        "the agent's terminal stayed {before} (page rows {})",
        page_size()
    );
    let rows: u64 = tty_size(&cid)
        .split_whitespace()
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap();
    assert_eq!(
        json!([rows]),
        page_size(),
        "the agent's terminal has the page's rows"
    );

    // Leaving the page detaches; the agent runs on.
    s.goto("about:blank");
    assert!(
        wait_until(Duration::from_secs(10), || events(&env)
            .contains("terminal closed in the browser")),
        "events: {}",
        events(&env)
    );
    assert_eq!(cli_status(&env, &id), "running");
    env.ok(&["stop", &id]);
}
