//! `run claude` in a real terminal (a PTY driven by rexpect): start and
//! attach, detach with ctrl-p ctrl-q leaving the agent running, re-attach to
//! the same process, exit code propagated, state recorded, terminal restored.

use crate::common;

use crate::common::{wait_until, Env, BIN};
use crate::docker_support::*;
use rexpect::process::wait::WaitStatus;
use rexpect::session::{spawn_command, PtySession};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TIMEOUT_MS: u64 = 20_000;

/// `bash -c script` in a fresh PTY, in `dir`, with this test's state home.
fn spawn_in_pty(env: &Env, dir: &Path, script: &str) -> PtySession {
    let mut c = Command::new("bash");
    c.args(["--norc", "--noprofile", "-c", script])
        .current_dir(dir)
        .env("AI_SESSIONS_HOME", env.state())
        .env("NO_COLOR", "1")
        .env("AIS_BIN", BIN)
        .env("TERM", "xterm")
        .env_remove("COMPLETE");
    spawn_command(c, Some(TIMEOUT_MS)).expect("spawn in a pty")
}

/// Waits until the attach is live (raw mode on, agent answering): the
/// `attached to` notice, then a probe line echoed back by the agent.
fn wait_attached(p: &mut PtySession, probe: &str) {
    p.exp_string("attached to").expect("attached notice");
    p.exp_string("ctrl-p,ctrl-q").expect("detach keys shown");
    // Give the client a moment to switch the terminal to raw mode, then
    // make sure the agent reads what we type.
    std::thread::sleep(Duration::from_millis(300));
    p.send_line(probe).unwrap();
    p.exp_string(&format!("echo: {probe}"))
        .expect("the agent answers typed input");
}

/// Resizes the PTY (as a terminal emulator does); the kernel sends SIGWINCH
/// to the program in it.
fn set_window_size(p: &PtySession, rows: u16, cols: u16) {
    use std::os::fd::AsRawFd;
    let master = p.process.get_file_handle().unwrap();
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer we pass.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0, "TIOCSWINSZ failed");
}

fn stty_flag_on(stty: &str, flag: &str) -> bool {
    stty.split_whitespace().any(|w| w == flag)
}

#[test]
fn run_attach_detach_reattach_exit() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("att");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let cname = common::cname_in(&env, &id);

    // 1. `run claude` starts the agent and attaches; detach; the terminal is
    // back in cooked mode with echo (stty in the same PTY, after `run`).
    let mut p = spawn_in_pty(
        &env,
        &proj,
        r#"stty sane; stty echo icanon; "$AIS_BIN" run claude; echo "run-rc=$?"; echo "STTY[$(stty -a | tr '\n' ' ')]"; "#,
    );
    wait_attached(&mut p, "probe-one");
    p.send_line("remember banana").unwrap();
    p.exp_string("remembered").expect("agent remembers");
    p.send_control('p').unwrap();
    p.send_control('q').unwrap();
    p.exp_string("detached").expect("detach message");
    p.exp_string("run-rc=0").expect("run exits 0 on detach");
    let (_, stty) = p.exp_regex(r"STTY\[[^\]]*\]").expect("stty output");
    assert!(
        stty_flag_on(&stty, "icanon") && stty_flag_on(&stty, "echo"),
        "terminal not restored after detach: {stty}"
    );
    p.exp_eof().ok();
    assert!(
        matches!(p.process.wait(), Ok(WaitStatus::Exited(_, 0))),
        "the shell in the pty should end normally"
    );

    // The agent keeps running.
    assert_eq!(container_state(&cname).as_deref(), Some("running"));
    let entry = env.instance(&id);
    assert_eq!(entry["status"], "running", "{entry}");
    let port = entry["port"].as_u64().unwrap();
    let container_id = entry["container_id"].as_str().unwrap().to_owned();
    let pid1 = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &cname]);

    // 2. `run claude` again re-attaches to the same process (after a pause:
    // attaching resumes it).
    env.ok(&["pause", &id]);
    assert_eq!(container_state(&cname).as_deref(), Some("paused"));
    let mut p = spawn_in_pty(
        &env,
        &proj,
        r#"stty sane; stty echo icanon; "$AIS_BIN" run claude; echo "run-rc=$?"; echo "STTY[$(stty -a | tr '\n' ' ')]"; "#,
    );
    wait_attached(&mut p, "probe-two");
    assert_eq!(container_state(&cname).as_deref(), Some("running"));
    assert_eq!(env.instance(&id)["status"], "running");
    p.send_line("recall").unwrap();
    p.exp_string("recalled: banana")
        .expect("same agent process remembers");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Pid}}", &cname]),
        pid1,
        "re-attached to another process"
    );

    // 3. `exit 3` ends the agent; `run` exits 3.
    p.send_line("exit 3").unwrap();
    p.exp_string("bye 3").expect("agent says bye");
    p.exp_string("run-rc=3")
        .expect("run exits with the agent's code");
    let (_, stty) = p.exp_regex(r"STTY\[[^\]]*\]").expect("stty output");
    assert!(
        stty_flag_on(&stty, "icanon") && stty_flag_on(&stty, "echo"),
        "terminal not restored after the agent exited: {stty}"
    );
    p.exp_eof().ok();

    let entry = env.instance(&id);
    assert_eq!(entry["status"], "stopped", "{entry}");
    assert_eq!(entry["exit_code"], 3, "{entry}");
    assert_eq!(entry["container_id"], container_id.as_str());
    let log = std::fs::read_to_string(env.state().join("logs").join(format!("{id}.log")))
        .expect("logs/<id>.log saved");
    for want in ["remembered", "recalled: banana", "bye 3"] {
        assert!(
            log.contains(want),
            "{want:?} missing from the saved log:\n{log}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || !container_exists(&cname)),
        "auto_cleanup removes the container"
    );
    // The port is free again: a reservation asking for it gets it.
    let got = env.ok(&["port", "alloc", "--preferred", &port.to_string()]);
    assert_eq!(got.trim(), port.to_string(), "port {port} was not released");
    // `logs` serves the saved output.
    let logs = env.ok(&["logs", &id]);
    assert!(logs.contains("bye 3"), "{logs}");
}

#[test]
fn attach_command_and_detach_keep_instance() {
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "att2");

    // `attach ID` from anywhere (not the project dir).
    let mut p = spawn_in_pty(
        &env,
        env.projects.path(),
        &format!(r#"exec "$AIS_BIN" attach {id}"#),
    );
    wait_attached(&mut p, "hello-attach");
    p.send_line("pwd").unwrap();
    // The project at its host path.
    let workdir = env.instance(&id)["project_path"]
        .as_str()
        .unwrap()
        .to_owned();
    p.exp_string(&workdir).expect("working dir");

    // Window size: a change of our terminal reaches the agent's terminal.
    let cname = common::cname(&id);
    for (rows, cols) in [(40u16, 120u16), (25, 91)] {
        set_window_size(&p, rows, cols);
        let want = format!("{rows} {cols}");
        let mut seen = String::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                seen = docker_ok(&["exec", &cname, "stty", "-F", "/dev/console", "size"]);
                seen.trim() == want
            }),
            "agent terminal is {seen:?}, want {want:?}"
        );
    }
    p.send_control('p').unwrap();
    p.send_control('q').unwrap();
    p.exp_string("detached").unwrap();
    p.exp_eof().ok();
    assert!(matches!(p.process.wait(), Ok(WaitStatus::Exited(_, 0))));
    assert_eq!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running")
    );
    env.ok(&["stop", "--force", &id]);
}

#[test]
fn closing_the_terminal_leaves_the_agent_running() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("hup");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let mut p = spawn_in_pty(&env, &proj, r#"exec "$AIS_BIN" run claude"#);
    wait_attached(&mut p, "before-hangup");
    p.send_line("remember kiwi").unwrap();
    p.exp_string("remembered").unwrap();
    // The terminal window goes away: the client gets SIGHUP.
    p.process
        .signal(rexpect::process::signal::Signal::SIGHUP)
        .unwrap();
    let status = p.process.wait();
    assert!(
        matches!(
            status,
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..))
        ),
        "{status:?}"
    );
    assert_eq!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running"),
        "a hangup must not stop the agent"
    );
    assert_eq!(env.instance(&id)["status"], "running");

    // And it is all still there.
    let mut p = spawn_in_pty(&env, &proj, r#"exec "$AIS_BIN" run claude"#);
    wait_attached(&mut p, "after-hangup");
    p.send_line("recall").unwrap();
    p.exp_string("recalled: kiwi").unwrap();
    p.send_line("exit 0").unwrap();
    p.exp_eof().ok();
    assert!(matches!(p.process.wait(), Ok(WaitStatus::Exited(_, 0))));
    assert_eq!(env.instance(&id)["status"], "stopped");
}

#[test]
fn agent_that_dies_at_once_is_reported() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("crash");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let mut p = spawn_in_pty(
        &env,
        &proj,
        r#"FAKE_AGENT_EXIT=5 "$AIS_BIN" run claude; echo "run-rc=$?""#,
    );
    // What the agent said before dying reaches the user.
    p.exp_string("fake-agent ready")
        .expect("the agent's last words are shown");
    p.exp_string("run-rc=5")
        .expect("run exits with the agent's code");
    p.exp_eof().ok();
    let e = env.instance(&id);
    assert!(e["status"] == "stopped" || e["status"] == "error", "{e}");
    assert_eq!(e["exit_code"], 5, "{e}");
    assert!(
        wait_until(Duration::from_secs(5), || !container_exists(
            &common::cname(&id)
        )),
        "the dead container is cleaned up"
    );
    let log = std::fs::read_to_string(env.state().join(format!("logs/{id}.log"))).unwrap();
    assert!(log.contains("fake-agent ready"), "{log}");
    // The port is not held by the dead instance.
    let port = e["port"].as_u64().unwrap().to_string();
    assert_eq!(
        env.ok(&["port", "alloc", "--preferred", &port]).trim(),
        port
    );
}

/// The README's word: an agent killed while you are attached returns you
/// to your prompt with its exit code and is not restarted behind you, even
/// with `health watch` running.
#[test]
fn killed_while_attached_returns_the_code_and_is_not_healed() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let mut cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    cfg.push_str("\n[health]\ncheck_interval = \"1s\"\nretry_delay = \"1s\"\n");
    std::fs::write(env.state().join("config.toml"), cfg).unwrap();
    let name = env.unique("attkill");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let mut watch = env
        .cmd()
        .args(["health", "watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut p = spawn_in_pty(&env, &proj, r#""$AIS_BIN" run claude; echo "run-rc=$?""#);
    wait_attached(&mut p, "probe-kill");
    let out = docker(&["kill", &common::cname(&id)]);
    assert!(out.status.success());
    p.exp_string("run-rc=137")
        .expect("the kill's exit code comes back");
    std::thread::sleep(Duration::from_secs(4));
    let inst = env.instance(&id);
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(inst["status"], "stopped", "{inst}");
    assert_eq!(inst["exit_code"], 137, "{inst}");
    assert_eq!(
        inst["restarts"].as_u64().unwrap_or(0),
        0,
        "not restarted: {inst}"
    );
    assert_ne!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running"),
        "restarted behind the user"
    );
}

/// Two `claude` in the same project at the same moment: the second waits
/// for the first one's start and attaches to the same instance (repeated).
#[test]
fn two_runs_at_once_share_one_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let mut bad = Vec::new();
    for round in 0..20 {
        let name = env.unique(&format!("twice{round}"));
        let proj = env.project(&name);
        let id = format!("{name}-claude");
        let script = r#""$AIS_BIN" run claude; echo "run-rc=$?""#;
        let mut a = spawn_in_pty(&env, &proj, script);
        let mut b = spawn_in_pty(&env, &proj, script);
        for (who, p) in [("first", &mut a), ("second", &mut b)] {
            if let Err(e) = p.exp_string("attached to") {
                bad.push(format!("round {round}: the {who} did not attach: {e}"));
            }
        }
        if bad
            .iter()
            .any(|b| b.starts_with(&format!("round {round}:")))
        {
            let _ = env.run(&["stop", "--force", &id]);
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
        // One agent: what one terminal types, the other sees answered.
        a.send_line(&format!("from-a-{round}")).unwrap();
        if b.exp_string(&format!("echo: from-a-{round}")).is_err() {
            bad.push(format!(
                "round {round}: the two terminals are not on one agent"
            ));
        }
        for p in [&mut a, &mut b] {
            p.send_control('p').unwrap();
            p.send_control('q').unwrap();
            let _ = p.exp_string("run-rc=0");
        }
        let names = containers_with_label("ai.instance", &id);
        if names.len() != 1 {
            bad.push(format!("round {round}: containers {names:?}"));
        }
        env.ok(&["stop", "--force", &id]);
    }
    assert!(
        bad.is_empty(),
        "{} bad outcomes:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Arguments given to `claude` while its instance already runs are not
/// silently dropped: it says it attached to the running instance and that
/// the arguments apply at its next start.
#[test]
fn arguments_for_a_running_instance_are_explained() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("args");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut p = spawn_in_pty(
        &env,
        &proj,
        r#""$AIS_BIN" run claude -- --model opus-x; echo "run-rc=$?""#,
    );
    p.exp_string("already running").expect("says it is running");
    p.exp_string("--model opus-x").expect("names the arguments");
    p.exp_string("next start").expect("says when they apply");
    wait_attached(&mut p, "probe-args");
    p.send_control('p').unwrap();
    p.send_control('q').unwrap();
    p.exp_string("run-rc=0").unwrap();
    env.ok(&["stop", &id]);
}

/// Whether the PTY is back in the shell's cooked mode (signals on), read
/// from the master side without spawning anything.
fn cooked(p: &PtySession) -> bool {
    use std::os::fd::AsRawFd;
    let master = p.process.get_file_handle().unwrap();
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes a termios into the pointer we pass.
    let r = unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) };
    r == 0 && t.c_lflag & libc::ISIG != 0
}

#[test]
fn keys_typed_right_after_a_detach_reach_the_shell() {
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "att-ahead");
    // Detach and type on as soon as the terminal is the shell's again, as a
    // user does: the client on its way out must not read what the shell is
    // owed.
    for i in 0..3 {
        let mut p = spawn_in_pty(
            &env,
            env.projects.path(),
            &format!(r#""$AIS_BIN" attach {id}; IFS= read -r next; echo "shell got: $next""#),
        );
        wait_attached(&mut p, &format!("hello-ahead-{i}"));
        p.send_control('p').unwrap();
        p.send_control('q').unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !cooked(&p) {
            assert!(std::time::Instant::now() < end, "the terminal stayed raw");
            std::thread::sleep(Duration::from_micros(200));
        }
        p.send_line(&format!("typed-after-detach-{i}")).unwrap();
        p.exp_string(&format!("shell got: typed-after-detach-{i}"))
            .unwrap_or_else(|e| panic!("the line typed after the detach was lost: {e}"));
    }
    env.ok(&["stop", "--force", &id]);
}

/// The attach lock lives in the agent's activity directory, which the box
/// can write and lock: a box holding it exclusively (`flock -x
/// /run/ai-sessions/attach.lock sleep infinity`) must not hang `attach`.
/// Held here on the same file as the host sees it (the test image has no
/// `flock`): the kernel makes no difference between the two.
#[test]
fn a_lock_the_box_holds_on_its_attach_lock_does_not_hang_attach() {
    use std::os::fd::AsRawFd;
    require_docker!();
    let env = Env::new();
    let id = start_detached(&env, "attlock");
    let lock = env.state().join("activity").join(&id).join("attach.lock");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock)
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let mut p = spawn_in_pty(
        &env,
        env.projects.path(),
        &format!(r#"exec "$AIS_BIN" attach {id}"#),
    );
    wait_attached(&mut p, "despite-the-lock");
    p.send_control('p').unwrap();
    p.send_control('q').unwrap();
    p.exp_string("detached").unwrap();
    p.exp_eof().ok();
    drop(held);
    env.ok(&["stop", "--force", &id]);
}
