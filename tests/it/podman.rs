//! Podman through its Docker-compatible API: the test runs a real
//! `podman system service` on a socket of its own, loads the test image into
//! it (`docker save | podman load`) and drives start, list, health check,
//! logs, stats, attach and stop with `DOCKER_HOST=unix://…`.
//!
//! Needs root and Debian's `podman` + `catatonit`; skipped loudly without
//! them, a failure with AI_SESSIONS_REQUIRE_PODMAN=1. The engine's rlimit
//! defaults are switched off in a containers.conf of the test's own
//! (CONTAINERS_CONF): setting them fails in some containers.

use crate::common::{stderr, stdout, test_image_tag, wait_until, Env, BIN};
use rexpect::session::spawn_command;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn skip(why: &str) {
    if std::env::var("AI_SESSIONS_REQUIRE_PODMAN").as_deref() == Ok("1") {
        panic!("{why} and AI_SESSIONS_REQUIRE_PODMAN=1");
    }
    eprintln!("\n*** SKIPPED podman tests: {why} ***\n");
}

/// A `podman system service` on a private socket, stopped on drop.
struct Podman {
    child: Child,
    dir: tempfile::TempDir,
}

impl Podman {
    fn start() -> Option<Podman> {
        if Command::new("podman").arg("--version").output().is_err() {
            skip("no podman (apt-get install podman catatonit)");
            return None;
        }
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            skip("rootless podman is not set up here; run as root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("ais-podman")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )
        .unwrap();
        let sock = dir.path().join("podman.sock");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .env("CONTAINERS_CONF", dir.path().join("containers.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Podman { child, dir };
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "podman system service did not create {}",
            sock.display()
        );
        Some(p)
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("podman.sock").display())
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"));
        c
    }

    /// The test image, moved over from the Docker engine.
    fn load_test_image(&self) -> String {
        let mut load = self
            .podman()
            .arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let test_image = test_image_tag();
        let save = Command::new("docker")
            .args(["save", test_image])
            .stdout(load.stdin.take().unwrap())
            .status()
            .unwrap();
        assert!(save.success(), "docker save {test_image}");
        let out = load.wait_with_output().unwrap();
        assert!(out.status.success(), "podman load: {}", stderr(&out));
        format!("localhost/{test_image}")
    }

    fn exists(&self, container: &str) -> bool {
        self.podman()
            .args(["container", "exists", container])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for the agent `claude` on Podman with the test image: no
/// rlimit of ours (see above), the variables `passthrough` passed in.
fn podman_config(env: &Env, image: &str, passthrough: &[&str]) {
    let names: Vec<String> = passthrough.iter().map(|n| format!("{n:?}")).collect();
    let passthrough = match names.is_empty() {
        true => String::new(),
        false => format!("env_passthrough = [{}]\n", names.join(", ")),
    };
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [resources.nofile]\nlimit = 0\n\n\
         [agents.claude]\nimage = \"{image}\"\n{passthrough}"
    ));
}

fn via(env: &Env, podman: &Podman, dir: &Path, args: &[&str]) -> std::process::Output {
    env.cmd()
        .current_dir(dir)
        .env("DOCKER_HOST", podman.host())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn start_list_health_logs_stats_attach_stop_on_podman() {
    require_docker!();
    let Some(podman) = Podman::start() else {
        return;
    };
    let image = podman.load_test_image();
    let env = Env::new();
    // Given any rlimit, Podman 4.3 also sets its maximum process limit,
    // which this kind of host (an engine inside a restricted container)
    // refuses, like the default ulimits above: leave nofile to the engine.
    podman_config(&env, &image, &[]);
    let name = env.unique("pod");
    let proj: PathBuf = env.project(&name);
    let id = format!("{name}-claude");

    let out = via(&env, &podman, &proj, &["doctor"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("engine") && l.contains(&podman.host())),
        "{}",
        stdout(&out)
    );

    let out = via(
        &env,
        &podman,
        &proj,
        &["start", "--mode", "claude", "--detach"],
    );
    assert!(out.status.success(), "start on podman: {}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(podman.exists(&cid), "the container is Podman's");

    let out = via(&env, &podman, &proj, &["list"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let out = via(&env, &podman, &proj, &["health", "check", &id]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("healthy"), "{}", stdout(&out));

    assert!(
        wait_until(Duration::from_secs(10), || {
            stdout(&via(&env, &podman, &proj, &["logs", &id, "--tail", "20"]))
                .contains("fake-agent ready mode=claude")
        }),
        "no banner in the logs"
    );

    // Podman streams stats every 5 s: a sample must still come back.
    let out = via(&env, &podman, &proj, &["stats", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let samples: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mine = samples
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no sample for {id}: {samples}"));
    assert!(mine["memory_usage"].as_u64().unwrap() > 0, "{mine}");
    assert!(mine["pids"].as_u64().unwrap() >= 1, "{mine}");

    // Attach: typed input reaches the agent, ctrl-p ctrl-q detaches.
    let mut c = Command::new(BIN);
    c.args(["attach", &id])
        .current_dir(&proj)
        .env("AI_SESSIONS_HOME", env.state())
        .env("DOCKER_HOST", podman.host())
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut p = spawn_command(c, Some(20_000)).unwrap();
    p.exp_string("attached to").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send_line("hello-podman").unwrap();
    p.exp_string("echo: hello-podman").unwrap();
    p.send_control('p').unwrap();
    p.send_control('q').unwrap();
    p.exp_string("detached").unwrap();
    assert_eq!(env.instance(&id)["status"], "running");

    let out = via(&env, &podman, &proj, &["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.instance(&id)["status"], "stopped");
    assert!(!podman.exists(&cid), "the container is removed");
}

/// Egress policies on Podman (netavark/aardvark): under `none` the agent
/// has no network at all (no DNS forwarded out, no IPv6 link-local to the
/// host); `allowlist`, which Podman's internal networks cannot hold, is
/// refused with the reason (not "engine not answering").
#[test]
fn egress_policies_hold_on_podman_or_are_refused() {
    require_docker!();
    let Some(podman) = Podman::start() else {
        return;
    };
    let image = podman.load_test_image();
    let env = Env::new();
    podman_config(&env, &image, &["FAKE_AGENT_STAY"]);
    let name = env.unique("podeg");
    let proj: PathBuf = env.project(&name);
    let id = format!("{name}-claude");

    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", podman.host())
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach", "--egress", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "none on podman: {}", stderr(&out));
    assert_eq!(env.instance(&id)["egress"], "none");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inside = podman
        .podman()
        .args(["exec", &cid, "sh", "-c"])
        .arg(
            "ls /sys/class/net | tr '\\n' ' '; echo; \
             nslookup -timeout=2 example.com 2>&1 | grep -q '^Address.*[0-9]' && echo RESOLVED; \
             ip -6 addr | grep -q fe80 && echo LINK-LOCAL; true",
        )
        .output()
        .unwrap();
    let seen = stdout(&inside);
    assert_eq!(seen.lines().next().map(str::trim), Some("lo"), "{seen}");
    assert!(
        !seen.contains("RESOLVED") && !seen.contains("LINK-LOCAL"),
        "{seen}"
    );
    let out = via(&env, &podman, &proj, &["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = via(
        &env,
        &podman,
        &proj,
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--egress",
            "allowlist",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Podman") && err.contains("allowlist") && !err.contains("not answering"),
        "{err}"
    );

    // A key to broker: its sidecar is not built on Podman, so the start
    // says how to pass the key instead of running a box with it unasked.
    podman_config(&env, &image, &["ANTHROPIC_API_KEY", "FAKE_AGENT_STAY"]);
    let keyed = |args: &[&str]| {
        env.cmd()
            .current_dir(&proj)
            .env("DOCKER_HOST", podman.host())
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-podman-test")
            .env("FAKE_AGENT_STAY", "1")
            .args(args)
            .output()
            .unwrap()
    };
    let out = keyed(&["start", "--mode", "claude", "--detach", "--egress", "open"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Podman") && err.contains("credentials.mode = \"env\""),
        "{err}"
    );
    assert!(
        !podman.exists(&crate::common::cname_in(&env, &id)),
        "a box was left"
    );
    env.ok(&[
        "config",
        "set",
        "--global",
        "agents.claude.credentials.mode",
        "env",
    ]);
    let out = keyed(&["start", "--mode", "claude", "--detach", "--egress", "open"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = via(&env, &podman, &proj, &["rm", "-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Clone mode on Podman: the repository goes into a volume of the
/// instance (no bind mount), the box works on its own branch, its work
/// comes back with `fetch --uncommitted` after it stopped (through a copy
/// container), and `rm` removes the volumes.
#[test]
fn a_clone_instance_works_on_podman() {
    use crate::common::git;
    require_docker!();
    let Some(podman) = Podman::start() else {
        return;
    };
    let image = podman.load_test_image();
    let env = Env::new();
    podman_config(&env, &image, &["FAKE_AGENT_STAY"]);
    let name = env.unique("podcl");
    let repo: PathBuf = env.project(&name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "one\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join("README"), "one\ntwo\n").unwrap();
    let id = format!("{name}-claude");
    let top = repo.to_str().unwrap().to_owned();

    let out = env
        .cmd()
        .current_dir(&repo)
        .env("DOCKER_HOST", podman.host())
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--clone", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "--clone on podman: {}", stderr(&out));
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inspect = podman.podman().args(["inspect", &cid]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let binds: Vec<&serde_json::Value> = v[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] != "volume")
        .collect();
    assert!(binds.is_empty(), "host paths mounted: {binds:?}");
    let seen = podman
        .podman()
        .args(["exec", &cid, "sh", "-c"])
        .arg(format!(
            "cd '{top}' && cat .git/HEAD README && echo wip > wip.txt"
        ))
        .output()
        .unwrap();
    let seen = stdout(&seen);
    assert!(seen.contains(&format!("ref: refs/heads/ai/{id}")), "{seen}");
    assert!(seen.contains("one\ntwo\n"), "{seen}");

    let out = via(&env, &podman, &repo, &["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = via(&env, &podman, &repo, &["fetch", &id, "--uncommitted"]);
    assert!(out.status.success(), "fetch on podman: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("ai-sessions/{id}-uncommitted at")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        git(
            &repo,
            &[
                "show",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:wip.txt")
            ]
        ),
        "wip"
    );
    let vols = || {
        let out = podman
            .podman()
            .args(["volume", "ls", "-q", "--filter"])
            .arg(format!("label=ai.instance={id}"))
            .output()
            .unwrap();
        stdout(&out).lines().count()
    };
    assert_eq!(vols(), 3, "the repository, the state, the activity");
    let out = via(&env, &podman, &repo, &["rm", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(vols(), 0, "rm left the clone's volumes");
}
