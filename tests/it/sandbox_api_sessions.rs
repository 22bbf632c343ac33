//! The dashboard's cookie is a session, not the API token: a random id the
//! server maps to a session in memory, named after the port, expiring (idle
//! and absolute, configurable) and dying with the server. The token itself
//! never appears in a cookie, a URL after login, a page or a log.

use crate::api_support::{token, Resp, Serve};
use crate::common::Env;
use std::time::Duration;

/// Logs in with the one-time link; returns (cookie name, value).
fn login(srv: &Serve) -> (String, String) {
    let r = srv.req("GET", &srv.login_path()).send();
    assert_eq!(r.status, 303, "{}", r.text());
    cookie_of(&r)
}

fn cookie_of(r: &Resp) -> (String, String) {
    let set = r.header("set-cookie").expect("a session cookie");
    let pair = set.split(';').next().unwrap();
    let (k, v) = pair.split_once('=').unwrap();
    (k.to_owned(), v.to_owned())
}

fn with_cookie(srv: &Serve, c: &(String, String)) -> u16 {
    srv.req("GET", "/api/v1/instances")
        .header("Cookie", &format!("{}={}", c.0, c.1))
        .send()
        .status
}

#[test]
fn the_cookie_is_a_random_session_named_after_the_port() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let r = srv.req("GET", &srv.login_path()).send();
    assert_eq!(r.status, 303);
    let location = r.header("location").unwrap_or_default();
    assert!(
        !location.contains(&tok) && !location.contains("code="),
        "{location}"
    );
    let (name, value) = cookie_of(&r);
    assert_eq!(name, format!("ai_sessions_{}", srv.addr.port()));
    assert!(
        !value.contains(&tok) && value != tok,
        "the cookie is not the token"
    );
    assert!(
        value.len() >= 32 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "at least 128 random bits: {value}"
    );
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert_eq!(with_cookie(&srv, &(name.clone(), value.clone())), 200);
    // The token pasted into the form gives a session too (never the token).
    let r = srv
        .req("POST", "/login")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={tok}").into_bytes())
        .send();
    assert_eq!(r.status, 303, "{}", r.text());
    let (name2, value2) = cookie_of(&r);
    assert_eq!(name2, name);
    assert_ne!(value2, value, "a fresh session per login");
    assert!(!value2.contains(&tok));
    // The token as a cookie is not a way in (only as a bearer header).
    for cookie in [
        format!("ai_sessions_token={tok}"),
        format!("{name}={tok}"),
        format!("{name}=00{value}"),
    ] {
        let r = srv
            .req("GET", "/api/v1/instances")
            .header("Cookie", &cookie)
            .send();
        assert_eq!(r.status, 401, "{cookie}");
    }
    // The dashboard page never carries it.
    let page = srv
        .req("GET", "/")
        .header("Cookie", &format!("{name}={value}"))
        .send()
        .text();
    assert!(!page.contains(&tok));
    // Logging out ends the session.
    let r = srv
        .req("POST", "/logout")
        .header("Cookie", &format!("{name}={value}"))
        .send();
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(with_cookie(&srv, &(name.clone(), value)), 401);
    assert_eq!(with_cookie(&srv, &(name, value2)), 200);
    // Nor is it in anything the server printed or logged.
    let log =
        std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap_or_default();
    assert!(!log.contains(&tok) && !srv.banner.contains(&tok) && !srv.stderr().contains(&tok));
}

#[test]
fn sessions_expire_when_idle_and_in_any_case() {
    let env = Env::new();
    env.write_config("[api]\nsession_idle = \"2s\"\nsession_max = \"5s\"\n");
    let srv = Serve::start(&env);
    let c = login(&srv);
    assert_eq!(with_cookie(&srv, &c), 200);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        with_cookie(&srv, &c),
        401,
        "idle for longer than session_idle"
    );

    // Kept busy, it still ends at session_max.
    let mut srv = srv;
    srv.terminate(Duration::from_secs(10));
    let srv = Serve::start(&env);
    let c = login_with_form(&srv, &token(&env));
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        assert_eq!(with_cookie(&srv, &c), 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(with_cookie(&srv, &c), 401, "older than session_max");
}

fn login_with_form(srv: &Serve, tok: &str) -> (String, String) {
    let r = srv
        .req("POST", "/login")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={tok}").into_bytes())
        .send();
    assert_eq!(r.status, 303, "{}", r.text());
    cookie_of(&r)
}

#[test]
fn sessions_die_with_the_server() {
    let env = Env::new();
    let mut srv = Serve::start(&env);
    let addr = srv.addr;
    let c = login(&srv);
    assert_eq!(with_cookie(&srv, &c), 200);
    srv.terminate(Duration::from_secs(10)).expect("serve stops");
    let srv = Serve::start_with(&env, &["--addr", &addr.to_string()]);
    assert_eq!(srv.addr, addr);
    assert_eq!(with_cookie(&srv, &c), 401, "a session of the old server");
}

#[test]
fn a_stream_opened_in_a_session_ends_with_its_logout() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let c = login(&srv);
    let other = login_with_form(&srv, &token(&env));
    let cookie = |c: &(String, String)| format!("{}={}", c.0, c.1);
    let mut mine = srv
        .req("GET", "/api/v1/events")
        .header("Cookie", &cookie(&c))
        .stream();
    let mut theirs = srv
        .req("GET", "/api/v1/events")
        .header("Cookie", &cookie(&other))
        .stream();
    let r = srv
        .req("POST", "/logout")
        .header("Cookie", &cookie(&c))
        .send();
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        mine.closed_within(Duration::from_secs(5)),
        "the event stream of a logged-out session still flows"
    );
    assert!(
        !theirs.closed_within(Duration::from_secs(1)),
        "another session's stream goes on"
    );
}
