//! `top` in a real terminal (tmux): the full-screen table shows the
//! instances with live figures and what each agent does (ACTIVITY, the
//! count that needs you in the title), sort keys work, `q` restores the screen.

use crate::common;

use crate::common::Env;
use crate::tmux_support::Tmux;
use std::process::Command;
use std::time::Duration;

/// Waits (15 s) until the visible screen shows `what`.
fn wait_for(tmux: &Tmux, what: &str) -> String {
    tmux.wait_screen(&format!("{what:?}"), Duration::from_secs(15), |s| {
        s.contains(what)
    })
}

#[test]
fn top_shows_instances_live_and_restores_the_screen() {
    require_docker!();
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "tmux is missing"
        );
        eprintln!("*** SKIPPED top test: tmux is missing ***");
        return;
    }
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("topper");
    let dir = env.project(&name);
    let out = env.run_in(&dir, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let id = format!("{name}-claude");

    // A bash with this test's environment, its state home and a colour
    // terminal.
    let mut envs: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !["TMUX", "AI_SESSIONS_HOME", "TERM"].contains(&k.as_str()))
        .collect();
    envs.push(("AI_SESSIONS_HOME".into(), env.state().display().to_string()));
    envs.push(("TERM".into(), "xterm-256color".into()));
    let tmux = Tmux::start_sized(&dir, &envs, &["bash", "--norc", "--noprofile"], (160, 30));
    tmux.line("echo before-top");
    wait_for(&tmux, "before-top");
    tmux.line(&format!("{} top", common::BIN));
    let screen = wait_for(&tmux, "1 running of 1");
    assert!(screen.contains(&id), "{screen}");
    assert!(screen.contains("running"), "{screen}");
    assert!(screen.contains("ACTIVITY"), "{screen}");
    // The agent says it waits: its row and the title say so.
    let status = env.state().join("activity").join(&id).join("status");
    std::fs::write(&status, "waiting\n").unwrap();
    let screen = wait_for(&tmux, "1 need you");
    let row = screen
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{screen}"));
    assert!(row.contains("running") && row.contains("waiting"), "{row}");
    std::fs::write(&status, "working\n").unwrap();
    let screen = tmux.wait_screen("working", Duration::from_secs(15), |s| {
        s.lines().any(|l| l.contains(&id) && l.contains("working"))
    });
    assert!(!screen.contains("need you"), "{screen}");
    // Live figures arrive from the background sampler.
    let screen = wait_for(&tmux, "%");
    assert!(screen.contains("MiB") || screen.contains("KiB"), "{screen}");
    assert!(
        !screen.contains("before-top"),
        "top uses the alternate screen:\n{screen}"
    );
    tmux.keys(&["m"]);
    tmux.keys(&["q"]);
    let screen = wait_for(&tmux, "before-top");
    assert!(
        !screen.contains("1 running of 1"),
        "screen restored:\n{screen}"
    );
    tmux.line("echo rc=$?");
    wait_for(&tmux, "rc=0");
}
