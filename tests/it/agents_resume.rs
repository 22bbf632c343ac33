//! `ai-sessctl resume`: what an engine restart or a reboot leaves (agents
//! killed, containers gone) is simulated by killing and removing the
//! containers behind the registry's back; `resume` brings those instances
//! back with their id, port and state, the agent continuing its last
//! conversation (`resume_args`), and leaves alone what the user stopped.
//! The real engine restart is in zz_fault_engine_restart.rs.

use crate::common::{stderr, wait_until, Env};
use crate::docker_support::*;
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

/// The arguments of the agent's latest run, as the fake agent printed them.
fn last_args(env: &Env, id: &str) -> String {
    env.ok(&["logs", id])
        .lines()
        .filter_map(|l| l.trim_end().split_once(" args="))
        .map(|(_, a)| a.to_owned())
        .next_back()
        .unwrap_or_default()
}

#[test]
fn resumed_and_restarted_agents_keep_the_arguments_they_were_started_with() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let start_with = |name: &str, args: &[&str]| {
        let name = env.unique(name);
        let proj = env.project(&name);
        let mut cmd = vec!["start", "--mode", "claude", "--detach", "--"];
        cmd.extend_from_slice(args);
        let out = env.run_in(&proj, &cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        (format!("{name}-claude"), proj)
    };
    let (by_resume, _) = start_with("ka", &["--model", "opus", "--verbose"]);
    let (by_claude, proj) = start_with("kb", &["--model", "sonnet"]);
    let hooks = "--settings /run/ai-sessions/claude-settings.json";
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = last_args(&env, &by_resume);
            seen == format!("{hooks} --model opus --verbose")
        }),
        "started with its arguments: {seen:?}"
    );
    // A previous conversation in each instance's own state.
    let state_target = env
        .ok(&["config", "get", "--global", "agents.claude.state_dir"])
        .trim()
        .to_owned();
    for id in [&by_resume, &by_claude] {
        docker_ok(&[
            "exec",
            &cid(&env, id),
            "sh",
            "-c",
            &format!("echo conversation > {state_target}/session.jsonl"),
        ]);
    }

    // An engine restart: one container gone, one agent killed.
    docker_ok(&["rm", "-f", &cid(&env, &by_resume)]);
    docker_ok(&["kill", &cid(&env, &by_claude)]);
    env.ok(&["list"]);

    // `resume` brings the first back with its arguments, continuing.
    let out = env.run(&["resume"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = last_args(&env, &by_resume);
            seen == format!("{hooks} --model opus --verbose --continue")
        }),
        "resume keeps the arguments: {seen:?}"
    );
    // Typing `claude` (no arguments) in the other project does the same.
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = last_args(&env, &by_claude);
            seen == format!("{hooks} --model sonnet --continue")
        }),
        "`claude` in the project keeps the arguments: {seen:?}"
    );
    // A restart is the same agent again, with the same arguments (its
    // conversation is the user's to continue: no resume arguments).
    env.ok(&["restart", &by_resume]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = last_args(&env, &by_resume);
            seen == format!("{hooks} --model opus --verbose")
        }),
        "restart keeps the arguments: {seen:?}"
    );
    // Arguments typed now replace the recorded ones for this and later runs.
    env.ok(&["stop", &by_claude]);
    let out = env.run_in(
        &proj,
        &["start", "--mode", "claude", "--detach", "--", "--debug"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = last_args(&env, &by_claude);
            seen == format!("{hooks} --debug")
        }),
        "new arguments: {seen:?}"
    );
    assert_eq!(
        env.instance(&by_claude)["args"],
        serde_json::json!(["--debug"])
    );
    env.ok(&["stop", "--all"]);
}
