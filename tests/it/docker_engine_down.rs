//! An engine that is missing or never answers: `start --runtime docker`
//! fails fast (within 2 s) with exit 4, one error line plus a hint, and the
//! registry untouched; `runtime = "auto"` falls back to the host, saying so.

use crate::common;

use crate::common::{stderr, Env};
use crate::docker_support::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The budget is "within 2 s"; a little slack for a loaded 2-core machine.
const BUDGET: Duration = Duration::from_millis(2500);

fn assert_fails_fast(env: &Env, docker_host: &str) {
    let name = env.unique("down");
    let proj = env.project(&name);
    let reg_path = env.state().join("registry.json");
    let before = std::fs::read(&reg_path).ok();

    let t = Instant::now();
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", docker_host)
        .args([
            "start",
            "--detach",
            "--mode",
            "claude",
            "--runtime",
            "docker",
        ])
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = stderr(&out);
    assert!(
        took <= BUDGET,
        "DOCKER_HOST={docker_host}: took {took:?} to fail:\n{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "DOCKER_HOST={docker_host}:\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty(), "no error output");
    assert!(
        lines[0].starts_with("ai-sessctl: error:") && lines[0].contains("not answering"),
        "first line: {err}"
    );
    assert!(
        lines[0].contains(docker_host),
        "the error names the engine address: {err}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("error:")).count(),
        1,
        "one error line: {err}"
    );
    assert!(
        lines.len() == 2 && lines[1].contains("hint:"),
        "error line plus one hint line: {err}"
    );
    assert_eq!(
        std::fs::read(&reg_path).ok(),
        before,
        "registry.json changed although nothing started"
    );
}

#[test]
fn missing_socket_fails_fast_with_exit_4() {
    let env = Env::new();
    docker_config(&env, "");
    // No registry yet: it must stay absent.
    assert_fails_fast(&env, "unix:///nonexistent.sock");
    assert!(!env.state().join("registry.json").exists());
    // With an existing registry: same bytes afterwards.
    env.ok(&["port", "alloc"]);
    assert!(env.state().join("registry.json").exists());
    assert_fails_fast(&env, "unix:///nonexistent.sock");
}

#[test]
fn silent_tcp_engine_fails_fast_with_exit_4() {
    let env = Env::new();
    docker_config(&env, "");
    // Accepts connections (the kernel completes the handshake) and never
    // answers a byte.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    env.ok(&["port", "alloc"]);
    assert_fails_fast(&env, &format!("tcp://127.0.0.1:{port}"));
    assert!(
        !held.lock().unwrap().is_empty(),
        "the client never connected to the silent engine"
    );
}

#[test]
fn auto_runtime_falls_back_to_the_host() {
    let env = Env::new();
    // runtime left at its default ("auto"); the image is configured.
    env.write_config(&format!(
        "[global]\nstop_timeout = \"3s\"\n\n[agents.claude]\nimage = \"{}\"\n",
        common::test_image_tag()
    ));
    let bin = fake_agent_bin(env.projects.path());
    let name = env.unique("auto");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env("PATH", path_with(&bin))
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--detach", "--mode", "claude"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("host"), "the fallback is announced: {err}");
    assert!(err.contains("not answering"), "and explained: {err}");
    let e = env.instance(&id);
    assert_eq!(e["runtime"], "host", "{e}");
    assert_eq!(e["status"], "running", "{e}");
    let pid = e["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(pid));

    // A host-only registry works with the engine down, and stops cleanly.
    let out = env
        .cmd()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(["stop", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(common::wait_until(Duration::from_secs(5), || !pid_alive(
        pid
    )));
    assert_eq!(env.instance(&id)["status"], "stopped");

    // runtime = "docker" never falls back.
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env("PATH", path_with(&bin))
        .args([
            "start",
            "--detach",
            "--mode",
            "claude",
            "--runtime",
            "docker",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn list_and_stop_with_the_engine_gone() {
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "gone");
    let before = std::fs::read(env.state().join("registry.json")).unwrap();
    let down = |args: &[&str]| {
        let t = Instant::now();
        let out = env
            .cmd()
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .args(args)
            .output()
            .unwrap();
        (out, t.elapsed())
    };

    // Listing works without the engine: last recorded state plus a warning.
    let (out, took) = down(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(took <= BUDGET, "list took {took:?}");
    let list = common::stdout(&out);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));

    // Stopping needs its engine, which this shell does not reach: a fast,
    // clear failure naming both, nothing recorded.
    let (out, took) = down(&["stop", &id]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(took <= BUDGET, "stop took {took:?}");
    assert!(
        stderr(&out).contains("runs on the engine at ")
            && stderr(&out).contains("this shell reaches unix:///nonexistent.sock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(env.state().join("registry.json")).unwrap(),
        before
    );
    assert_eq!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running")
    );

    env.ok(&["stop", &id]);
}
