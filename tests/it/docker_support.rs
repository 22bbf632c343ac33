//! Helpers shared by the runtime integration tests (docker_*.rs,
//! host_runtime.rs), on top of `common`: configs, `docker` CLI calls, the
//! fake agent as a host program, and cleanup guards.
#![allow(dead_code)]

use crate::common::{test_image_tag, Env};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Variables the fake agent understands, passed through to containers.
pub const PASSTHROUGH: &str =
    r#"["AIS_TEST_SECRET", "FAKE_AGENT_LISTEN", "FAKE_AGENT_STAY", "FAKE_AGENT_EXIT"]"#;

/// Like `Env::use_test_image`, but with room for `[global]` keys and with
/// the fake agent's knobs in `env_passthrough`.
pub fn docker_config(env: &Env, global_extra: &str) {
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n{global_extra}\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = {PASSTHROUGH}\n\n\
         [agents.gemini]\nimage = \"{agent_image}\"\nenv_passthrough = {PASSTHROUGH}\n"
    ));
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI")
}

pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `State.Status` of a container (`running`, `paused`, `exited`), or None
/// when it does not exist.
pub fn container_state(name: &str) -> Option<String> {
    crate::common::inspect(name).and_then(|v| v["State"]["Status"].as_str().map(str::to_owned))
}

pub fn container_exists(name: &str) -> bool {
    crate::common::inspect(name).is_some()
}

/// Names of every container (any state) carrying label `key=value`.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    let filter = format!("label={key}={value}");
    docker_ok(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes the named containers when dropped (things the registry does not
/// know, so the harness would miss them).
pub struct RmOnDrop(pub Vec<String>);

impl Drop for RmOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A bin dir holding the fake agent as `claude` (and `gemini`), for the
/// host runtime.
pub fn fake_agent_bin(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent/fake-agent");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["claude", "gemini"] {
        let p = bin.join(name);
        std::fs::copy(&src, &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// `PATH` with `bin` first.
pub fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    )
}

/// The host user, as the container's `User` should be.
pub fn host_user() -> String {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) }
}

/// Every regular file under `dir`, recursively.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Kills a process and waits (briefly) until it is gone or a zombie.
pub fn kill_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Children of `pid`, to clean up what a killed agent leaves.
pub fn children_of(pid: u32) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    #[cfg(not(target_os = "linux"))]
    let list = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    list.unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether `pid` runs (a zombie counts as ended).
pub fn pid_alive(pid: u32) -> bool {
    ai_sessions::core::procinfo::alive(pid, None)
}

/// A locally built real agent image (`.ci/run` builds them), or None with
/// a loud skip; AI_SESSIONS_REQUIRE_REAL_AGENTS=1 makes its absence fail.
pub fn real_image(agent: &str) -> Option<String> {
    let var = format!("AI_SESSIONS_REAL_{}_IMAGE", agent.to_uppercase());
    let tag = std::env::var(&var).unwrap_or_else(|_| format!("ai-sessions-ci/{agent}:latest"));
    if docker(&["image", "inspect", &tag]).status.success() {
        return Some(tag);
    }
    let msg = format!("no real {agent} image {tag} (built by .ci/run; set {var} to use another)");
    if std::env::var("AI_SESSIONS_REQUIRE_REAL_AGENTS").as_deref() == Ok("1") {
        panic!("{msg} and AI_SESSIONS_REQUIRE_REAL_AGENTS=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

/// A detached `claude` instance of the test image in a new project named
/// after `stem`; its id.
pub fn start_detached(env: &Env, stem: &str) -> String {
    docker_config(env, "");
    let name = env.unique(stem);
    let proj = env.project(&name);
    env.ok(&[
        "start",
        proj.to_str().unwrap(),
        "--mode",
        "claude",
        "--detach",
    ]);
    format!("{name}-claude")
}

/// `networking.pool = 0`: each start makes a network named after its
/// instance, and its stop removes it.
pub fn no_network_pool(env: &Env) {
    let cfg = env.state().join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replacen("[networking]\n", "[networking]\npool = 0\n", 1),
    )
    .unwrap();
}
