//! Helpers for the monitor and health tests (health_monitor.rs,
//! health_watch.rs), on top of `common`: a config with tight thresholds and
//! short health intervals, an alert command that records what it got, the
//! event log, commands run inside an instance's container, and
//! `health watch` as a child process.
#![allow(dead_code)]

use crate::common::{stderr, test_image_tag, wait_until, Env};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Variables the fake agent understands, passed through to containers.
pub const PASSTHROUGH: &str = r#"["FAKE_AGENT_LISTEN", "FAKE_AGENT_EXIT"]"#;

/// Writes the config these tests share: the test image, a 1-core / 64Mi
/// instance with thresholds a busy loop or a few dozen MiB cross, health
/// checks every second, and the recording alert command; alerts at the
/// first sample over a threshold (no sustain, no grace). `agent_extra`
/// goes into `[agents.claude]`. The CPU warning is low (100m; an idle
/// agent uses about 15m): a busy loop takes a whole core on a quiet host,
/// but Docker's containers share one CPU weight against the host's other
/// processes, so when others load the 2 cores it may get only 200m.
pub fn monitor_config(env: &Env, agent_extra: &str) {
    let script = alert_script(env);
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"64Mi\"\nwarning_threshold = \"24Mi\"\ncritical_threshold = \"40Mi\"\n\n\
         [resources.cpu]\nlimit = \"1\"\nwarning_threshold = \"100m\"\n\n\
         [health]\ncheck_interval = \"1s\"\ntimeout = \"1s\"\nretry_delay = \"1s\"\nmax_retries = 3\n\n\
         [alerts]\ncommand = [\"{}\"]\ncpu_critical_percent = 0\nsustain = \"0s\"\ngrace = \"0s\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = {PASSTHROUGH}\n{agent_extra}\n",
        script.display()
    ));
}

fn alert_log(env: &Env) -> PathBuf {
    env.projects.path().join("alerts.log")
}

/// An executable that appends one line per run to `alerts.log`:
/// `KIND|LEVEL|INSTANCE|VALUE|THRESHOLD|<stdin JSON>`.
fn alert_script(env: &Env) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = env.projects.path().join("on-alert.sh");
    let text = format!(
        "#!/bin/sh\njson=$(cat)\nprintf '%s|%s|%s|%s|%s|%s\\n' \"$AI_ALERT_KIND\" \"$AI_ALERT_LEVEL\" \
         \"$AI_ALERT_INSTANCE\" \"$AI_ALERT_VALUE\" \"$AI_ALERT_THRESHOLD\" \"$json\" >>'{}'\n",
        alert_log(env).display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// One run of the alert command.
#[derive(Debug)]
pub struct AlertRun {
    pub kind: String,
    pub level: String,
    pub instance: String,
    pub value: String,
    pub threshold: String,
    pub stdin: Value,
}

/// Every run of the alert command so far.
pub fn alert_runs(env: &Env) -> Vec<AlertRun> {
    std::fs::read_to_string(alert_log(env))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, '|').collect();
            assert_eq!(f.len(), 6, "alert log line: {l}");
            AlertRun {
                kind: f[0].into(),
                level: f[1].into(),
                instance: f[2].into(),
                value: f[3].into(),
                threshold: f[4].into(),
                stdin: serde_json::from_str(f[5])
                    .unwrap_or_else(|e| panic!("alert stdin {:?}: {e}", f[5])),
            }
        })
        .collect()
}

/// Starts `claude` detached in a new project; returns the instance id.
pub fn start(env: &Env, name: &str, vars: &[(&str, &str)]) -> String {
    let name = env.unique(name);
    let proj = env.project(&name);
    let mut cmd = env.cmd();
    cmd.current_dir(&proj)
        .args(["start", "--mode", "claude", "--detach"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "start {name}: {}", stderr(&out));
    format!("{name}-claude")
}

/// `ai-sessctl events --json`, parsed.
pub fn events(env: &Env) -> Vec<Value> {
    env.ok(&["events", "--json"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line {l:?}: {e}")))
        .collect()
}

/// Events about `id` (its `metadata.instance`).
pub fn events_of(env: &Env, id: &str) -> Vec<Value> {
    events(env)
        .into_iter()
        .filter(|e| e["metadata"]["instance"] == id)
        .collect()
}

pub fn message(e: &Value) -> &str {
    e["message"].as_str().unwrap_or("")
}

pub fn time_of(e: &Value) -> DateTime<Utc> {
    e["timestamp"].as_str().unwrap().parse().unwrap()
}

/// `HIGH_CPU` / `HIGH_MEM` / `RECOVERY_FAILED` events for `id`.
pub fn alert_events(env: &Env, id: &str, kind: &str) -> Vec<Value> {
    events_of(env, id)
        .into_iter()
        .filter(|e| e["metadata"]["alert"] == kind && e["metadata"]["level"].is_string())
        .collect()
}

pub fn docker_out(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI")
}

/// Runs `sh -c script` in the instance's container and waits for it.
pub fn exec(id: &str, script: &str) -> String {
    let out = docker_out(&["exec", &crate::common::cname(id), "sh", "-c", script]);
    assert!(
        out.status.success(),
        "docker exec {script:?}: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `sh -c script` in the container in the background.
pub fn exec_detached(id: &str, script: &str) {
    let out = docker_out(&["exec", "-d", &crate::common::cname(id), "sh", "-c", script]);
    assert!(
        out.status.success(),
        "docker exec -d {script:?}: {}",
        stderr(&out)
    );
}

/// `n` busy loops in the container, their pids in /tmp/burn.pids.
pub fn burn(id: &str, n: usize) {
    for _ in 0..n {
        exec_detached(id, "echo $$ >>/tmp/burn.pids; while :; do :; done");
    }
    assert!(
        wait_until(Duration::from_secs(5), || exec(
            id,
            "cat /tmp/burn.pids 2>/dev/null || true"
        )
        .lines()
        .count()
            >= n),
        "burners did not start"
    );
}

pub fn calm(id: &str) {
    exec(id, "kill $(cat /tmp/burn.pids); rm /tmp/burn.pids");
}

/// Holds `mib` MiB in the container: dd fills one block from /dev/zero and
/// then blocks writing it into a pipe that nobody reads.
pub fn hold_memory(id: &str, mib: u32) {
    exec_detached(
        id,
        &format!("dd if=/dev/zero bs={mib}M count=1 | sleep 1000"),
    );
}

/// `State.Health.Status` of the instance's container.
pub fn docker_health(id: &str) -> Option<String> {
    crate::common::inspect(&crate::common::cname(id))?["State"]["Health"]["Status"]
        .as_str()
        .map(str::to_owned)
}

/// Runs `stats --json` and returns this instance's sample.
pub fn stats_of(env: &Env, id: &str) -> Value {
    let v: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no sample for {id} in {v}"))
}

/// `health watch` running as a child; killed if still there when dropped.
pub struct Watch {
    child: Child,
    out: PathBuf,
}

impl Watch {
    /// Starts `health watch` and waits until it follows the engine.
    pub fn spawn(env: &Env, vars: &[(&str, &str)]) -> Watch {
        let out = env.projects.path().join("watch.out");
        let f = std::fs::File::create(&out).unwrap();
        let mut cmd = env.cmd();
        cmd.args(["health", "watch"])
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let w = Watch { child, out };
        assert!(
            wait_until(Duration::from_secs(10), || events(env)
                .iter()
                .any(|e| message(e) == "health watch started")),
            "health watch did not start:\n{}",
            w.output()
        );
        // Its engine event stream connects right after.
        std::thread::sleep(Duration::from_millis(500));
        w
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Whether the watch process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT, then waits (at most 10 s); returns the exit status and how
    /// long the exit took.
    pub fn interrupt(&mut self) -> (Option<ExitStatus>, Duration) {
        let t = Instant::now();
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (Some(st), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (None, t.elapsed())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
