//! `ai-sessctl resume`: what an engine restart or a reboot leaves (agents
//! killed, containers gone) is simulated by killing and removing the
//! containers behind the registry's back; `resume` brings those instances
//! back with their id, port and state, the agent continuing its last
//! conversation (`resume_args`), and leaves alone what the user stopped.
//! The real engine restart is in zz_fault_engine_restart.rs.

mod common;
mod docker_support;

use common::{stderr, wait_until, Env};
use docker_support::*;
use std::time::Duration;

fn start(env: &Env, name: &str, mode: &str) -> (String, std::path::PathBuf) {
    let name = env.unique(name);
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", mode, "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (format!("{name}-{mode}"), proj)
}

fn cid(env: &Env, id: &str) -> String {
    env.instance(id)["container_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn resume_brings_back_what_the_engine_ended_and_nothing_else() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (killed, _) = start(&env, "rk", "claude");
    let (removed, _) = start(&env, "rr", "gemini");
    let (stopped, _) = start(&env, "rs", "claude");
    let port_k = env.instance(&killed)["port"].clone();
    let port_r = env.instance(&removed)["port"].clone();
    // Claude has a previous session in its state (shared by its instances).
    let state_target = env
        .ok(&["config", "get", "--global", "agents.claude.state_dir"])
        .trim()
        .to_owned();
    docker_ok(&[
        "exec",
        &cid(&env, &killed),
        "sh",
        "-c",
        &format!("echo conversation > {state_target}/session.jsonl"),
    ]);

    // What an engine restart leaves: one agent killed, one container gone;
    // the user stopped the third.
    env.ok(&["stop", &stopped]);
    docker_ok(&["kill", &cid(&env, &killed)]);
    docker_ok(&["rm", "-f", &cid(&env, &removed)]);
    env.ok(&["list"]);
    assert_ne!(env.instance(&killed)["status"], "running");
    assert_ne!(env.instance(&removed)["status"], "running");

    let out = env.run(&["resume"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains(&format!("resumed {killed}")), "{said}");
    assert!(said.contains(&format!("resumed {removed}")), "{said}");
    for (id, port) in [(&killed, &port_k), (&removed, &port_r)] {
        let i = env.instance(id);
        assert_eq!(i["status"], "running", "{i:#}");
        assert_eq!(&i["port"], port, "same port: {i:#}");
        assert!(i["restarts"].as_u64().unwrap_or(0) >= 1, "{i:#}");
    }
    assert_eq!(
        env.instance(&stopped)["status"],
        "stopped",
        "a stop of the user's is not undone"
    );
    // Its state is there, and the agent was asked to continue.
    let seen = docker_ok(&[
        "exec",
        &cid(&env, &killed),
        "cat",
        &format!("{state_target}/session.jsonl"),
    ]);
    assert_eq!(seen.trim(), "conversation");
    let mut logs = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            logs = env.ok(&["logs", &killed]);
            logs.contains("args=--settings /run/ai-sessions/claude-settings.json --continue")
        }),
        "claude continues its conversation: {logs}"
    );

    // Nothing left to resume: a second run says so and starts nothing.
    let out = env.run(&["resume"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("nothing to resume"),
        "{}",
        stderr(&out)
    );
    env.ok(&["stop", "--all"]);
}
