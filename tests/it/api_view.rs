//! `GET /api/v1/instances` (and `/instances/{id}`) serve an in-memory view
//! of the instances: it must still say what is true. Changes made through
//! the CLI, and a container killed or removed behind the registry's back
//! (the engine's events), show up within a bounded wait.

use crate::api_support::{token, Serve};
use crate::common::{wait_until, Env};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Generous: the machine may be busy; nothing here is a timing assertion.
const WAIT: Duration = Duration::from_secs(20);

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The instance `id` as the list says it (Null when it is not listed).
fn listed(srv: &Serve, tok: &str, id: &str) -> Value {
    let r = srv.req("GET", "/api/v1/instances").bearer(tok).send();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .expect("an array")
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn one(srv: &Serve, tok: &str, id: &str) -> Value {
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}"))
        .bearer(tok)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls the list until the instance's status is `want`; returns it.
fn wait_status(srv: &Serve, tok: &str, id: &str, want: &[&str], what: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = listed(srv, tok, id);
        want.iter().any(|w| last["status"] == *w)
    });
    assert!(ok, "{what}: still {last} (wanted {want:?})");
    last
}

#[test]
fn the_list_follows_the_cli_and_the_engine() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("apiview");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let srv = Serve::start(&env);
    let tok = token(&env);
    let path = proj.to_str().unwrap();

    // Empty, then the view is read once; a CLI start shows.
    assert_eq!(listed(&srv, &tok, &id), Value::Null);
    env.ok(&["start", path, "--mode", "claude", "--detach"]);
    let inst = wait_status(&srv, &tok, &id, &["running"], "after a CLI start");
    assert_eq!(one(&srv, &tok, &id)["status"], "running");
    let cid = inst["container_id"]
        .as_str()
        .expect("a container")
        .to_owned();

    // Killed behind the registry's back: the engine's event brings it in.
    docker(&["kill", &cid]);
    let inst = wait_status(&srv, &tok, &id, &["error", "stopped"], "after docker kill");
    assert_eq!(inst["exit_code"], 137, "{inst}");
    assert_eq!(one(&srv, &tok, &id)["status"], inst["status"]);
    // The reconcile that recorded it also saves its output and removes it.
    assert!(
        wait_until(WAIT, || !Command::new("docker")
            .args(["inspect", &cid])
            .output()
            .unwrap()
            .status
            .success()),
        "the killed container is removed"
    );

    // Started again and stopped through the CLI.
    env.ok(&["start", path, "--mode", "claude", "--detach"]);
    let inst = wait_status(&srv, &tok, &id, &["running"], "after a second CLI start");
    let cid = inst["container_id"].as_str().unwrap().to_owned();
    env.ok(&["stop", &id]);
    wait_status(&srv, &tok, &id, &["stopped"], "after a CLI stop");

    // Removed behind its back while running.
    env.ok(&["start", path, "--mode", "claude", "--detach"]);
    let inst = wait_status(&srv, &tok, &id, &["running"], "after a third CLI start");
    let cid2 = inst["container_id"].as_str().unwrap().to_owned();
    assert_ne!(cid, cid2, "a new container");
    docker(&["rm", "-f", &cid2]);
    let inst = wait_status(&srv, &tok, &id, &["stopped"], "after docker rm -f");
    assert!(
        inst["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside")),
        "{inst}"
    );

    // A removed entry leaves the list.
    env.ok(&["rm", &id]);
    assert!(
        wait_until(WAIT, || listed(&srv, &tok, &id).is_null()),
        "rm: still listed"
    );
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A registry that turns unreadable is reported (not served stale); fixed,
/// it is served again.
#[test]
fn a_corrupt_registry_is_an_error_not_a_stale_list() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let reg = env.state().join("registry.json");
    std::fs::write(&reg, r#"{"version": 1, "instances": {}}"#).unwrap();
    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!([]));
    std::fs::write(&reg, "{ not json").unwrap();
    let r = srv.req("GET", "/api/v1/instances").bearer(&tok).send();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.error_code(), "corrupt_state", "{}", r.text());
}
