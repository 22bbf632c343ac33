//! `send ID TEXT`: a message typed into a detached agent as if the user had
//! typed it and pressed Enter (the fake agent answers each line it reads
//! with `echo: <line>` in its log), refused with the reason while the agent
//! is not waiting for input unless `--force`; the same through the API.

use crate::api_support::{token, Serve};
use crate::common::{stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use serde_json::json;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

fn set_activity(env: &Env, id: &str, word: &str) {
    let status = env.state().join("activity").join(id).join("status");
    std::fs::write(status, format!("{word}\n")).unwrap();
}

fn log_has(env: &Env, id: &str, line: &str) -> bool {
    wait_until(Duration::from_secs(20), || {
        stdout(&env.run(&["logs", id])).contains(line)
    })
}

#[test]
fn send_types_into_a_waiting_agent_and_refuses_one_that_is_not() {
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "send");

    // The agent has said nothing: refused, with the way out named.
    let o = env.run(&["send", &id, "too early"]);
    assert!(!o.status.success(), "refused: {}", stdout(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    set_activity(&env, &id, "working");
    let o = env.run(&["send", &id, "while", "working"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is working"), "{}", stderr(&o));

    // Waiting: typed and submitted, words joined as one message.
    set_activity(&env, &id, "waiting");
    let o = env.run(&["send", &id, "fix", "the tests"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Sent to"), "{}", stdout(&o));
    assert!(log_has(&env, &id, "echo: fix the tests"));

    // From stdin with `-`.
    let mut child = env
        .cmd()
        .args(["send", &id, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(log_has(&env, &id, "echo: from stdin"));

    // --force types into a working agent; what was refused never arrived.
    set_activity(&env, &id, "working");
    let o = env.run(&["send", "--force", &id, "forced in"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(log_has(&env, &id, "echo: forced in"));
    let log = stdout(&env.run(&["logs", &id]));
    assert!(
        !log.contains("too early") && !log.contains("while working"),
        "{log}"
    );

    // A control sequence in the message is not typed.
    set_activity(&env, &id, "idle");
    let o = env.run(&["send", &id, "bell\x07 and \x1b[2J clear"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(log_has(&env, &id, "echo: bell and [2J clear"));

    // Every send is an event (its length, never its text).
    let events = env.ok(&["events", "--json"]);
    assert!(
        events.contains("message typed into the agent from the command line"),
        "{events}"
    );
    assert!(!events.contains("fix the tests"), "{events}");

    // A stopped instance: nothing to type into.
    env.ok(&["stop", &id]);
    let o = env.run(&["send", "--force", &id, "anyone?"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("stopped"), "{}", stderr(&o));
}

#[test]
fn the_api_sends_and_answers_409_with_the_reason() {
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "sendapi");
    let srv = Serve::start(&env);
    let tok = token(&env);
    let path = format!("/api/v1/instances/{id}/send");

    set_activity(&env, &id, "working");
    let r = srv
        .req("POST", &path)
        .bearer(&tok)
        .json(&json!({"text": "from the dashboard"}))
        .send();
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is working"),
        "{}",
        r.text()
    );
    // Without the token: refused before anything is typed.
    let r = srv
        .req("POST", &path)
        .json(&json!({"text": "no token", "force": true}))
        .send();
    assert_eq!(r.status, 401, "{}", r.text());

    let r = srv
        .req("POST", &path)
        .bearer(&tok)
        .json(&json!({"text": "from the dashboard", "force": true}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sent"], true);
    assert!(log_has(&env, &id, "echo: from the dashboard"));
    let log = stdout(&env.run(&["logs", &id]));
    assert!(!log.contains("no token"), "{log}");
}
