//! The event log as a user reads it: JSON lines written by operations,
//! `events` with its filters, `--follow`, and concurrent writers.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn log_path(env: &Env) -> std::path::PathBuf {
    env.state().join("logs").join("session-manager.log")
}

fn log_lines(env: &Env) -> Vec<String> {
    std::fs::read_to_string(log_path(env))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Parses one event line and checks the schema every line must have.
fn event(line: &str) -> Value {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    let ts = v["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no timestamp: {line}"));
    chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
    assert!(
        matches!(
            v["level"].as_str(),
            Some("DEBUG" | "INFO" | "WARN" | "ERROR")
        ),
        "level: {line}"
    );
    assert!(
        v["component"].as_str().is_some_and(|c| !c.is_empty()),
        "component: {line}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message: {line}"
    );
    assert!(v["metadata"].is_object(), "metadata: {line}");
    v
}

fn planted(ts: chrono::DateTime<chrono::Utc>, level: &str, message: &str) -> String {
    serde_json::json!({
        "timestamp": ts.to_rfc3339(),
        "level": level,
        "component": "test",
        "message": message,
        "metadata": {"planted": true},
    })
    .to_string()
}

fn plant(env: &Env, lines: &[String]) {
    std::fs::create_dir_all(env.state().join("logs")).unwrap();
    let mut text = std::fs::read_to_string(log_path(env)).unwrap_or_default();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(log_path(env), text).unwrap();
}

#[test]
fn operations_write_json_lines_and_events_prints_them() {
    let env = Env::new();
    assert!(log_lines(&env).is_empty());
    env.ok(&["config", "set", "p-claude", "resources.cpu.limit", "250m"]);
    let lines = log_lines(&env);
    assert_eq!(lines.len(), 1, "one event per config change: {lines:?}");
    let e = event(&lines[0]);
    assert_eq!(e["level"], "INFO");
    assert_eq!(e["component"], "config");
    assert_eq!(e["metadata"]["key"], "resources.cpu.limit");
    assert!(
        e["metadata"]["file"]
            .as_str()
            .unwrap()
            .ends_with("configs/p-claude.toml"),
        "{e}"
    );

    // A failed set logs nothing.
    let out = env.run(&["config", "set", "p-claude", "resources.cpu.limit", "lots"]);
    assert!(!out.status.success());
    assert_eq!(log_lines(&env).len(), 1);

    // --json prints the raw lines, byte for byte.
    let raw = env.ok(&["events", "--json"]);
    assert_eq!(raw.lines().collect::<Vec<_>>(), lines);
    // The human form is one readable line per event, without colour here.
    let human = env.ok(&["events"]);
    assert_eq!(human.lines().count(), 1, "{human}");
    assert!(
        human.contains("INFO") && human.contains("config changed"),
        "{human}"
    );
    assert!(human.contains("key=resources.cpu.limit"), "{human}");
    assert!(
        !human.contains('\x1b'),
        "colour without a terminal: {human:?}"
    );
}

#[test]
fn level_and_since_filter() {
    let env = Env::new();
    let now = chrono::Utc::now();
    plant(
        &env,
        &[
            planted(now - chrono::Duration::hours(3), "ERROR", "old error"),
            planted(now - chrono::Duration::minutes(5), "DEBUG", "recent debug"),
            planted(now - chrono::Duration::minutes(4), "INFO", "recent info"),
            planted(now - chrono::Duration::minutes(3), "WARN", "recent warn"),
            "this line is not JSON and is skipped".to_owned(),
            planted(now - chrono::Duration::minutes(2), "ERROR", "recent error"),
        ],
    );
    let messages = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["events", "--json"];
        full.extend_from_slice(args);
        env.ok(&full)
            .lines()
            .map(|l| event(l)["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        messages(&[]),
        [
            "old error",
            "recent debug",
            "recent info",
            "recent warn",
            "recent error"
        ]
    );
    assert_eq!(
        messages(&["--level", "warn"]),
        ["old error", "recent warn", "recent error"]
    );
    assert_eq!(
        messages(&["--level", "ERROR"]),
        ["old error", "recent error"]
    );
    assert_eq!(
        messages(&["--since", "1h"]),
        ["recent debug", "recent info", "recent warn", "recent error"]
    );
    assert_eq!(
        messages(&["--since", "1h", "--level", "warning"]),
        ["recent warn", "recent error"]
    );
    assert_eq!(messages(&["--since", "150s"]), ["recent error"]);
    // Bad filter values are usage errors.
    for bad in [&["--since", "soon"][..], &["--level", "loud"]] {
        let mut args = vec!["events"];
        args.extend_from_slice(bad);
        assert_eq!(env.run(&args).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn follow_prints_new_events_as_they_come() {
    let env = Env::new();
    env.ok(&["config", "set", "a-claude", "resources.cpu.limit", "250m"]);
    let mut child = env
        .cmd()
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("existing event printed");
    assert!(first.contains("a-claude"), "{first}");

    let t = Instant::now();
    env.ok(&["config", "set", "b-claude", "resources.cpu.limit", "300m"]);
    let next = rx.recv_timeout(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    let next = next.expect("the new event did not arrive within 3 s");
    let e = event(&next);
    assert!(
        e["metadata"]["file"].as_str().unwrap().contains("b-claude"),
        "{next}"
    );
    eprintln!("follow latency {:?}", t.elapsed());
}

#[test]
fn follow_starts_before_the_log_exists() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "events --follow exited without a log"
    );
    env.ok(&["config", "set", "c-claude", "resources.cpu.limit", "300m"]);
    let got = rx.recv_timeout(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.expect("no event within 3 s").contains("c-claude"));
}

#[test]
fn concurrent_writers_never_interleave() {
    let env = Env::new();
    // Twenty processes at once, each appending one event.
    let children: Vec<_> = (0..20)
        .map(|i| {
            env.cmd()
                .args([
                    "config",
                    "set",
                    &format!("w{i}-claude"),
                    &format!("ai_config.claude.note_{}", "x".repeat(40)),
                    &"y".repeat(2000),
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(log_path(&env)).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    let mut files: Vec<String> = lines
        .iter()
        .map(|l| event(l)["metadata"]["file"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 20, "each writer's event exactly once");
    // `events` reads them all back.
    assert_eq!(env.ok(&["events", "--json"]).lines().count(), 20);
}
