//! Fault injection: a reader that goes away. `ai-sessctl list | true`,
//! `doctor | head -1`: with stdout closed, every printing command exits
//! quietly (no panic, no exit 101), as other Unix tools do.

use crate::common::{stderr, Env};
use serde_json::json;
use std::process::Stdio;

/// A registry with one stopped instance, so there is something to print.
fn plant_stopped(env: &Env, name: &str) -> String {
    let id = format!("{name}-claude");
    let path = env.project(name).to_string_lossy().into_owned();
    let reg = json!({"version": 1, "instances": {&id: {
        "id": id, "project_path": path, "project_name": name, "mode": "claude",
        "status": "stopped", "port": env.port_base + 1,
        "resources": {}, "timestamps": {"created": "2026-01-01T00:00:00Z"},
        "config": {},
    }}});
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec_pretty(&reg).unwrap(),
    )
    .unwrap();
    id
}

#[test]
fn printing_to_a_closed_pipe_exits_quietly() {
    let env = Env::new();
    let name = env.unique("pipe");
    let id = plant_stopped(&env, &name);
    let cases: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--json"],
        vec!["list", "--status", "all"],
        vec!["doctor"],
        vec!["show", &id],
        vec!["show", &id, "--json"],
        vec!["dashboard"],
        vec!["dashboard", "--json"],
        vec!["health", "check"],
        vec!["find", &name],
        vec!["config", "--global"],
        vec!["completions", "zsh"],
        vec!["init", "zsh"],
    ];
    let mut bad = Vec::new();
    for args in &cases {
        // Repeated: the reader is gone before the first write every time.
        for _ in 0..20 {
            let mut child = env
                .cmd()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = stderr(&out);
            if err.contains("panicked") || out.status.code() == Some(101) {
                bad.push(format!("{args:?}: {:?} {err}", out.status));
                break;
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
