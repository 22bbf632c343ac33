//! The host runtime with the fake agent installed on PATH as `claude`:
//! detached start tracked by pid + start time, stop, a dead agent noticed,
//! the foreground exit code passed on, and shell functions never used.

use crate::common;

use crate::common::{stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use std::time::Duration;

fn host_env() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    env.write_config("[global]\nruntime = \"host\"\nstop_timeout = \"3s\"\n");
    let bin = fake_agent_bin(env.projects.path());
    (env, bin)
}

/// What the registry records for `pid`.
fn start_time(pid: u32) -> u64 {
    ai_sessions::core::procinfo::start_time(pid).unwrap()
}

fn start_detached(env: &Env, bin: &std::path::Path, name: &str) -> (String, u32) {
    let name = env.unique(name);
    let proj = env.project(&name);
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("PATH", path_with(bin))
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach", "--runtime", "host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    assert_eq!(stdout(&out).trim(), id);
    let e = env.instance(&id);
    assert_eq!(e["status"], "running", "{e}");
    assert_eq!(e["runtime"], "host", "{e}");
    assert!(e["container_id"].is_null(), "{e}");
    let pid = e["pid"].as_u64().expect("pid recorded") as u32;
    assert_eq!(
        e["pid_start_time"].as_u64(),
        Some(start_time(pid)),
        "pid_start_time recorded: {e}"
    );
    (id, pid)
}

/// Kills what a SIGKILLed fake agent leaves behind (its background sleep).
struct KillOnDrop(Vec<u32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &p in &self.0 {
            if pid_alive(p) {
                kill_pid(p, libc::SIGKILL);
            }
        }
    }
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "reads the agent's /proc entry")]
fn detached_host_agent_start_and_stop() {
    let (env, bin) = host_env();
    let (id, pid) = start_detached(&env, &bin, "hoststop");
    let _guard = KillOnDrop(vec![pid]);
    assert!(pid_alive(pid));
    // The real program ran (not some shell function), with our variables.
    let log = env.state().join(format!("logs/{id}.log"));
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("fake-agent ready mode=claude"))),
        "no banner in {}",
        log.display()
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains(&format!("AI_INSTANCE_ID={id}")),
        "{environ}"
    );

    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );
    let out = env.run(&["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pid_alive(pid), "stop waits until the agent is gone");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("terminated"),
        "graceful: SIGTERM first"
    );
    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("stopped")),
        "{list}"
    );
    assert_eq!(env.instance(&id)["status"], "stopped");
}

#[test]
fn killed_host_agent_is_noticed() {
    let (env, bin) = host_env();
    let (id, pid) = start_detached(&env, &bin, "hostkill");
    let mut leftovers = children_of(pid);
    leftovers.push(pid);
    let _guard = KillOnDrop(leftovers);
    kill_pid(pid, libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)));
    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("stopped")),
        "{list}"
    );
    let show = env.ok(&["show", &id]);
    assert!(show.contains("reason:"), "{show}");
    // It can be started again under the same id.
    let (id2, pid2) = start_detached(&env, &bin, "hostkill");
    let _guard2 = KillOnDrop(vec![pid2]);
    assert_eq!(id2, id);
    assert_ne!(pid2, pid);
    env.ok(&["stop", "--force", &id]);
    assert!(!pid_alive(pid2));
}

#[test]
fn foreground_host_run_passes_the_exit_code() {
    let (env, bin) = host_env();
    let name = env.unique("hostfg");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("PATH", path_with(&bin))
        .env("FAKE_AGENT_EXIT", "7")
        .args(["run", "claude"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("fake-agent ready"),
        "{}",
        stdout(&out)
    );
    let e = env.instance(&id);
    assert_eq!(e["status"], "stopped", "{e}");
    assert_eq!(e["exit_code"], 7, "{e}");
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "reads the agent's /proc entry")]
fn shell_functions_are_never_the_agent() {
    let (env, bin) = host_env();
    let name = env.unique("hostfn");
    let proj = env.project(&name);
    let marker = env.projects.path().join("function-ran");
    // An exported bash function `claude` and no `claude` program on PATH.
    let script = format!(
        r#"claude() {{ touch '{}'; }}; export -f claude; exec "$0" start --mode claude --detach --runtime host"#,
        marker.display()
    );
    let out = std::process::Command::new("bash")
        .current_dir(&proj)
        .env("AI_SESSIONS_HOME", env.state())
        .env("NO_COLOR", "1")
        .env("PATH", "/usr/bin:/bin")
        .args(["-c", &script, common::BIN])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not on PATH"), "{}", stderr(&out));
    assert!(!marker.exists(), "the shell function was run");
    assert!(
        env.registry()["instances"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "nothing registered"
    );

    // With the program on PATH, the program runs, not the function.
    let out = std::process::Command::new("bash")
        .current_dir(&proj)
        .env("AI_SESSIONS_HOME", env.state())
        .env("NO_COLOR", "1")
        .env("PATH", path_with(&bin))
        .env("FAKE_AGENT_STAY", "1")
        .args(["-c", &script, common::BIN])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let pid = env.instance(&id)["pid"].as_u64().unwrap() as u32;
    let _guard = KillOnDrop(vec![pid]);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(bin.join("claude").to_str().unwrap()),
        "agent is {exe:?} {cmdline}"
    );
    assert!(!marker.exists(), "the shell function was run");
    env.ok(&["stop", &id]);
}

/// A seed-format host entry (a pid and no start time) names no process we
/// can recognise: whatever has that pid now is never taken for the agent,
/// never adopted as running and never signalled by `stop` or `stop --all`.
#[test]
fn a_pid_without_start_time_is_never_taken_for_the_agent() {
    let env = Env::new();
    env.write_config("[global]\nruntime = \"host\"\nstop_timeout = \"1s\"\n");
    // An unrelated process of ours, in its own process group.
    let mut bystander = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let pid = bystander.id();
    let proj = env.project("seedhost");
    let ids = ["seedhost-claude", "seedhost-gemini"];
    let mut instances = serde_json::Map::new();
    for (n, id) in ids.iter().enumerate() {
        instances.insert(
            id.to_string(),
            serde_json::json!({
                "id": id, "project_path": proj, "project_name": "seedhost",
                "mode": id.rsplit('-').next().unwrap(), "status": "running", "pid": pid,
                "port": env.port_base + n as u16,
                "resources": {}, "timestamps": {}, "config": {}
            }),
        );
    }
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec_pretty(&serde_json::json!({"instances": instances})).unwrap(),
    )
    .unwrap();

    // Stopped directly (no reconcile first), then all.
    let out = env.run(&["stop", ids[0]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a process that merely has the recorded pid was killed"
    );
    env.ok(&["list"]);
    for id in ids {
        assert_ne!(
            env.instance(id)["status"],
            "running",
            "{}",
            env.instance(id)
        );
    }
    let _ = bystander.kill();
    let _ = bystander.wait();
}
