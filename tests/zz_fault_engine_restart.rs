//! Fault injection, part 3: the container engine goes away in the middle of
//! things and comes back. This machine's own `dockerd` is stopped (SIGTERM)
//! and restarted the way it was started (same argv, environment and working
//! directory; output to a temp log), so the test needs root and a local
//! dockerd; it is skipped loudly otherwise (and fails with
//! AI_SESSIONS_REQUIRE_DOCKER=1 when DOCKER_HOST is unset, as in CI).
//!
//! Every other test binary uses the same engine, so this one must not run
//! beside them: cargo runs integration test binaries one after another in
//! the order of their names, and `zz_` sorts last (checked: `cargo test`
//! prints the `Running tests/zz_fault_engine_restart.rs` line last). It also
//! takes the flock /tmp/ai-sessions-engine.lock exclusively, so two runs of
//! it never overlap. Tests run in another `cargo test` at the same time on
//! the same machine would see the engine vanish for a few seconds: run it
//! alone (or last, as cargo does) on a shared machine. The engine is
//! restored even when an assertion fails (a guard with Drop), and the
//! containers of others that were running before are started again.
//!
//! Scenario: instance A runs; a start of C is under way when the engine
//! stops; with the engine down, a start of B fails within ~2 s with exit 4
//! and leaves nothing; `list` still answers; after the restart `list`
//! reconciles every entry with what the engine really has (without
//! live-restore the engine stopped A's container), `gc` removes what a
//! half-done start left, `resume` brings A back with its port and state
//! (the agent asked to continue), and everything starts again.

// The support modules of tests/it, compiled into this binary too.
#[macro_use]
#[path = "it/common.rs"]
mod common;
#[path = "it/docker_support.rs"]
mod docker_support;
#[path = "it/fault_support.rs"]
mod fault_support;

use common::{stderr, Env};
use fault_support::*;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The budget for "fails fast": 2 s, plus slack for a loaded 2-core box.
const FAST: Duration = Duration::from_millis(2500);

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn pid_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| !s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// How the running dockerd was started.
struct Daemon {
    pid: i32,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
}

fn find_dockerd() -> Result<Daemon, String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "dockerd" && pid_running(pid) {
            found.push(pid);
        }
    }
    let pid = match found[..] {
        [pid] => pid,
        [] => return Err("no dockerd process is visible".into()),
        _ => return Err(format!("several dockerd processes ({found:?})")),
    };
    let split = |bytes: Vec<u8>| -> Vec<OsString> {
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| OsString::from_vec(s.to_vec()))
            .collect()
    };
    let argv = split(std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?);
    let env = split(std::fs::read(format!("/proc/{pid}/environ")).map_err(|e| e.to_string())?)
        .into_iter()
        .filter_map(|kv| {
            let b = kv.into_vec();
            let i = b.iter().position(|c| *c == b'=')?;
            Some((
                OsString::from_vec(b[..i].to_vec()),
                OsString::from_vec(b[i + 1..].to_vec()),
            ))
        })
        .collect();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
    if argv.is_empty() {
        return Err(format!("cannot read the command line of dockerd {pid}"));
    }
    Ok(Daemon {
        pid,
        argv,
        env,
        cwd,
    })
}

/// Stops the engine, and starts it again at the latest when dropped.
struct EngineGuard {
    daemon: Daemon,
    down: bool,
    log: PathBuf,
    /// Running containers of other tests and users, started again after.
    others: Vec<String>,
    _lock: std::fs::File,
}

impl EngineGuard {
    fn new(daemon: Daemon, lock: std::fs::File, ours: &str) -> Self {
        let out = Command::new("docker")
            .args(["ps", "-q", "--no-trunc"])
            .output()
            .unwrap();
        let mut others: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mine: Vec<String> = engine_containers(ours).into_iter().map(|c| c.id).collect();
        others.retain(|c| !mine.contains(c));
        let log = std::env::temp_dir().join(format!(
            "ai-sessions-dockerd-restart-{}.log",
            std::process::id()
        ));
        EngineGuard {
            daemon,
            down: false,
            log,
            others,
            _lock: lock,
        }
    }

    /// SIGTERM, then wait until the process is gone (it stops its
    /// containers first: without live-restore that takes a few seconds).
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.down = true;
        // SAFETY: kill(2) on the dockerd pid found above.
        unsafe { libc::kill(self.daemon.pid, libc::SIGTERM) };
        assert!(
            wait_for(Duration::from_secs(60), || !pid_running(self.daemon.pid)),
            "dockerd {} did not stop within 60 s",
            self.daemon.pid
        );
        t.elapsed()
    }

    /// Starts dockerd as it was started, in its own session (it outlives
    /// this test), and waits until it answers.
    fn start(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.daemon.argv[0]);
        cmd.args(&self.daemon.argv[1..])
            .env_clear()
            .envs(self.daemon.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.daemon.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("spawn dockerd: {e}"))?;
        let pid = child.id() as i32;
        drop(child); // not waited for: it keeps running after this test
        if !wait_for(Duration::from_secs(90), docker_answers) {
            return Err(format!(
                "dockerd (pid {pid}) does not answer after 90 s; log: {}",
                self.log.display()
            ));
        }
        self.down = false;
        self.daemon.pid = pid;
        // Other people's containers the shutdown stopped: back as they were.
        if !self.others.is_empty() {
            let _ = Command::new("docker")
                .arg("start")
                .args(&self.others)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        Ok(t.elapsed())
    }
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if self.down {
            match self.start() {
                Ok(took) => eprintln!("engine restored by the guard in {took:?}"),
                Err(e) => eprintln!("\n*** COULD NOT RESTORE THE ENGINE: {e} ***\n"),
            }
        }
    }
}

fn lock_engine() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/ai-sessions-engine.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    f
}

fn skip_or_fail(why: &str) {
    let ci = std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1")
        && std::env::var_os("DOCKER_HOST").is_none();
    if ci {
        panic!("zz_fault_engine_restart: {why}, and AI_SESSIONS_REQUIRE_DOCKER=1");
    }
    eprintln!("\n*** SKIPPED zz_fault_engine_restart: {why} ***\n");
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "restarts a local dockerd found through /proc"
)]
fn engine_stopped_mid_start_then_restarted_is_reconciled() {
    require_docker!();
    if std::env::var_os("DOCKER_HOST").is_some_and(|h| h != "unix:///var/run/docker.sock") {
        skip_or_fail("DOCKER_HOST points elsewhere; only a local dockerd can be restarted");
        return;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("not root: cannot stop and start dockerd");
        return;
    }
    let lock = lock_engine();
    let daemon = match find_dockerd() {
        Ok(d) => d,
        Err(e) => {
            skip_or_fail(&e);
            return;
        }
    };
    // Under systemd socket activation (`-H fd://`) the same command line
    // would not come back up by hand: leave such an engine alone.
    if daemon
        .argv
        .iter()
        .any(|a| a.to_string_lossy().contains("fd://"))
    {
        eprintln!(
            "
*** SKIPPED zz_fault_engine_restart: dockerd uses socket activation ({:?}) ***
",
            daemon.argv
        );
        return;
    }
    let live_restore = Command::new("docker")
        .args(["info", "--format", "{{.LiveRestoreEnabled}}"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
        .unwrap_or(false);

    let env = Env::new();
    let home = home_label(&env);
    let _rm = RmHome(home.clone());
    fault_config(&env, 10, "[]");
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| env.unique(&format!("eng{n}")))
        .collect();
    let dirs: Vec<_> = names.iter().map(|n| env.project(n)).collect();
    let ids: Vec<String> = names.iter().map(|n| format!("{n}-claude")).collect();
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);

    let out = env.run_in(&dirs[0], &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_consistent(&env, "before", true);
    // A's state, to find again after `resume`.
    let a_port = env.instance(a)["port"].clone();
    let a_state = env
        .ok(&["config", "get", "--global", "agents.claude.state_dir"])
        .trim()
        .to_owned();
    let a_cid = env.instance(a)["container_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let wrote = Command::new("docker")
        .args(["exec", &a_cid, "sh", "-c"])
        .arg(format!("echo kept > {a_state}/resume-marker"))
        .status()
        .unwrap();
    assert!(wrote.success());

    let mut engine = EngineGuard::new(daemon, lock, &home);
    eprintln!(
        "stopping dockerd {} ({:?}); live-restore {live_restore}; {} other running containers",
        engine.daemon.pid,
        engine.daemon.argv,
        engine.others.len()
    );

    // C is being started when the engine goes.
    let t = Instant::now();
    let starting = env
        .cmd()
        .current_dir(&dirs[2])
        .args(["start", "--mode", "claude", "--detach"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 0–250 ms: from before the engine is even asked to well after.
    let delay = Rng::seeded("zz_fault_engine_restart").below(251);
    std::thread::sleep(Duration::from_millis(delay));
    let stop_took = engine.stop();
    let c_out = starting.wait_with_output().unwrap();
    let c_took = t.elapsed();
    assert!(!stderr(&c_out).contains("panicked"), "{}", stderr(&c_out));
    assert!(
        c_took < stop_took + Duration::from_secs(35),
        "the interrupted start hung for {c_took:?}"
    );
    let c_code = c_out.status.code();
    assert!(
        matches!(c_code, Some(0 | 1 | 4)),
        "start of C: {c_code:?} {}",
        stderr(&c_out)
    );
    let c_entry = env.instance(c);
    if c_code != Some(0) {
        assert!(
            c_entry.is_null() || c_entry["status"] != "initializing",
            "a failed start left {c_entry}"
        );
    }

    // Engine down: B fails fast with exit 4 and leaves nothing.
    let before = std::fs::read(env.state().join("registry.json")).unwrap();
    let t = Instant::now();
    let out = env.run_in(&dirs[1], &["start", "--mode", "claude", "--detach"]);
    let took = t.elapsed();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "start with the engine down: {err}"
    );
    assert!(took <= FAST, "took {took:?} to fail: {err}");
    assert!(
        err.starts_with("ai-sessctl: error:") && err.contains("not answering"),
        "{err}"
    );
    assert!(
        env.instance(b).is_null(),
        "B was registered: {}",
        env.registry()
    );
    assert_eq!(
        std::fs::read(env.state().join("registry.json")).unwrap(),
        before,
        "a refused start wrote the registry"
    );
    // Reading still works (last recorded state, with a warning).
    let t = Instant::now();
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(t.elapsed() <= FAST, "list took {:?}", t.elapsed());
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let out = env.run(&["stop", a]);
    assert_eq!(out.status.code(), Some(4), "stop: {}", stderr(&out));

    // Back again.
    let start_took = engine.start().expect("restart the engine");
    env.ok(&["list"]);
    env.ok(&["gc"]);
    env.ok(&["list"]);
    let census = assert_consistent(&env, "after the engine restart", true);
    let a_entry = env.instance(a);
    if live_restore {
        assert_eq!(a_entry["status"], "running", "{a_entry}");
    } else {
        // The engine stopped A's container on its way down.
        assert_ne!(a_entry["status"], "running", "{a_entry}");
        assert!(
            a_entry["status_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{a_entry}"
        );
    }
    assert!(env.instance(b).is_null());
    let c_entry = env.instance(c);
    assert!(
        c_entry.is_null() || c_entry["status"] != "initializing",
        "{c_entry}"
    );

    // `resume` brings A back as it was: same id and port, its state, the
    // agent asked to continue (claude's resume_args) since its state dir
    // holds a session.
    if !live_restore {
        let out = env.run(&["resume"]);
        assert!(out.status.success(), "resume: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("resumed {a}")),
            "{}",
            stderr(&out)
        );
        let back = env.instance(a);
        assert_eq!(back["status"], "running", "{back:#}");
        assert_eq!(back["port"], a_port, "same port: {back:#}");
        let cid = back["container_id"].as_str().unwrap_or_default().to_owned();
        let seen = Command::new("docker")
            .args(["exec", &cid, "cat", &format!("{a_state}/resume-marker")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&seen.stdout).trim(),
            "kept",
            "state kept across the restart"
        );
        let logs = env.ok(&["logs", a]);
        assert!(logs.contains("--continue"), "continues: {logs}");
        // C ran if its start got through before the engine went (on an
        // idle machine it often does): the engine's stop interrupted it and
        // resume brings it back too. A start that failed is not resumed.
        let c_now = env.instance(c);
        let c_ran = c_code == Some(0);
        assert_eq!(
            !c_now.is_null() && c_now["status"] == "running",
            c_ran,
            "resume starts only what was running; C before: {c_entry}, now: {c_now}, start of C: {c_code:?} {}",
            stderr(&c_out)
        );
    }

    // And life goes on: A and B start, C too.
    for d in &dirs {
        let out = env.run_in(d, &["start", "--mode", "claude", "--detach"]);
        assert!(
            out.status.success(),
            "start after the restart: {}",
            stderr(&out)
        );
    }
    let end = assert_consistent(&env, "after starting again", true);
    assert_eq!(end.running, 3);
    env.ok(&["stop", "--all"]);
    eprintln!(
        "zz_fault_engine_restart: engine stop {stop_took:?}, restart {start_took:?}; \
         C (engine stopped {delay} ms into it): exit {c_code:?} after {c_took:?} ({}); \
         B failed in {took:?}; \
         after restart {:?}; A: {} ({}); dockerd log {}",
        stderr(&c_out).lines().next().unwrap_or(""),
        census.by_status,
        a_entry["status"],
        a_entry["status_reason"],
        engine.log.display()
    );
}
