//! Container limits and isolation: a pids limit (a fork loop stops there),
//! a nofile ulimit, output capped on disk (by the engine while it runs, in
//! `logs/<id>.log` after) and never held in memory whole, an optional
//! read-only root, a network per instance (instances cannot reach each
//! other), and engine names carrying a digest of the state home.

use crate::api_support;
use crate::common;

use crate::common::{cname, home_label, inspect, stderr, stdout, wait_until, Env};
use crate::docker_support::no_network_pool;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn start(env: &Env, dir: &Path, mode: &str) -> String {
    let out = env.run_in(dir, &["start", "--mode", mode, "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// GNU time, which reports a command's peak resident memory.
const GNU_TIME: &str = "/usr/bin/time";

/// Skips loudly without GNU time; fails when CI says it must be here.
fn gnu_time_or_skip(test: &str) -> bool {
    if Path::new(GNU_TIME).is_file() {
        return true;
    }
    if std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: {GNU_TIME} (Debian: time) not installed and AI_SESSIONS_REQUIRE_DOCKER=1");
    }
    eprintln!("\n*** SKIPPED {test}: {GNU_TIME} (Debian: time) not installed ***\n");
    false
}

/// Runs `cmd` and returns its output and peak resident memory in bytes.
///
/// Measured by GNU time (a small process) around it: the `ru_maxrss` of a
/// child spawned straight from this process starts at this process's own
/// peak (exec records the memory it leaves, and a vfork-spawned child
/// leaves ours), and this process runs every integration test, so that is
/// hundreds of MB.
fn run_measured(cmd: Command) -> (Output, u64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new(GNU_TIME);
    c.args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    // GNU time exits with the command's status; its report ends with the
    // figure (kB), after a line about a non-zero exit if there was one.
    let text = std::fs::read_to_string(report.path()).unwrap();
    let kb: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{GNU_TIME} reported {text:?}"));
    (out, kb * 1024)
}

const MB: u64 = 1_000_000;

#[test]
fn a_fork_loop_stops_at_the_pids_limit_and_limits_are_set() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("[agents.gemini.resources.pids]\nlimit = 64\n");
    let a = start(&env, &env.project(&env.unique("limits")), "claude");
    let c = inspect(&cname(&a)).unwrap();
    assert_eq!(c["HostConfig"]["PidsLimit"], 1024, "default pids limit");
    let nofile = &c["HostConfig"]["Ulimits"];
    assert!(
        nofile
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["Name"] == "nofile" && u["Soft"] == 8192 && u["Hard"] == 8192),
        "{nofile}"
    );
    let log = &c["HostConfig"]["LogConfig"];
    assert_eq!(log["Type"], "json-file");
    assert_eq!(log["Config"]["max-size"], (10u64 << 20).to_string());
    assert_eq!(log["Config"]["max-file"], "3");
    let soft = docker(&["exec", &cname(&a), "sh", "-c", "ulimit -n"]);
    assert_eq!(stdout(&soft).trim(), "8192");

    let b = start(&env, &env.project(&env.unique("bomb")), "gemini");
    let name = cname(&b);
    assert_eq!(inspect(&name).unwrap()["HostConfig"]["PidsLimit"], 64);
    // A fork loop: 300 sleepers asked for, the kernel stops it at 64.
    let _ = docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do sleep 600 & i=$((i+1)); done 2>/dev/null; true",
    ]);
    let top = docker(&["top", &name, "-eo", "pid"]);
    let procs = stdout(&top).lines().skip(1).count();
    eprintln!("processes in the container after the fork loop: {procs}");
    assert!(procs <= 64, "{procs} processes, over the limit");
    assert!(procs >= 40, "the loop did run into the limit: {procs}");
    // The instance is still manageable.
    env.ok(&["stop", &b]);
    env.ok(&["stop", &a]);
}

#[test]
fn an_output_flood_stays_within_the_cap_on_disk_and_in_memory() {
    require_docker!();
    if !gnu_time_or_skip("an_output_flood_stays_within_the_cap_on_disk_and_in_memory") {
        return;
    }
    let env = Env::new();
    // 50 MB of output, then the agent waits.
    env.use_test_image(&format!(
        "[agents.flood]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"yes 'flood 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c 50000000; echo; echo flood-done; exec sleep 100000\"]\n",
        common::test_image_tag()
    ));
    let id = start(&env, &env.project(&env.unique("flood")), "flood");
    let name = cname(&id);
    let done = wait_until(Duration::from_secs(240), || {
        stdout(&env.run(&["logs", &id, "--tail", "3"])).contains("flood-done")
    });
    assert!(done, "the agent printed its 50 MB");
    let cap = 30u64 << 20;
    let c = inspect(&name).unwrap();
    let log_path = c["LogPath"].as_str().unwrap().to_owned();
    let dir = Path::new(&log_path).parent().unwrap();
    let engine_bytes: u64 = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    eprintln!("engine log on disk: {engine_bytes} bytes (cap {cap})");
    assert!(engine_bytes <= cap, "engine log {engine_bytes} > {cap}");

    let mut stop = env.cmd();
    stop.args(["stop", &id]);
    let (out, rss) = run_measured(stop);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("stop: peak RSS {} MB", rss / MB);
    assert!(rss < 50 * MB, "stop held {rss} bytes");
    let saved = env.state().join(format!("logs/{id}.log"));
    let size = std::fs::metadata(&saved).unwrap().len();
    eprintln!("saved log: {size} bytes");
    assert!(size <= cap && size > MB, "saved log {size}");

    let mut logs = env.cmd();
    logs.args(["logs", &id, "--tail", "2"]);
    let (out, rss) = run_measured(logs);
    eprintln!("logs --tail 2: peak RSS {} MB", rss / MB);
    assert!(stdout(&out).contains("flood-done"), "{}", stderr(&out));
    assert!(stdout(&out).lines().count() <= 2);
    assert!(rss < 50 * MB, "logs held {rss} bytes");

    // The API reads the saved log from its end too.
    let srv = api_support::Serve::start(&env);
    let tok = api_support::token(&env);
    let r = srv
        .req("GET", &format!("/api/v1/instances/{id}/logs?tail=2"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("flood-done"), "{}", r.text());
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", srv.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap();
    eprintln!("serve after logs?tail=2: peak RSS {} MB", hwm * 1024 / MB);
    assert!(hwm * 1024 < 50 * MB, "serve held {hwm} kB");
}

#[test]
fn a_read_only_root_leaves_scratch_project_and_state_writable() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("[resources]\nread_only_root = true\n");
    let proj = env.project(&env.unique("ro"));
    let id = start(&env, &proj, "claude");
    let name = cname(&id);
    assert!(wait_until(Duration::from_secs(10), || stdout(
        &env.run(&["logs", &id])
    )
    .contains("fake-agent ready")));
    let try_write = |p: &str| {
        docker(&["exec", &name, "sh", "-c", &format!("echo x > {p}")])
            .status
            .success()
    };
    assert!(!try_write("/rootfile"), "the root is read-only");
    assert!(!try_write("/usr/local/bin/planted"));
    for p in [
        "/tmp/x".to_owned(),
        "/home/agent/cache".to_owned(),
        proj.join("written").display().to_string(),
        "/home/agent/.claude/login".to_owned(),
    ] {
        assert!(try_write(&p), "{p} is writable");
    }
    assert!(proj.join("written").exists(), "the project is the real one");
    let state = env.state().join("states").join(&id).join("login");
    assert!(state.exists(), "state persists on the host");
    env.ok(&["stop", &id]);
}

/// The agent's IP on its own network (the first one listed).
fn ip_of(name: &str) -> String {
    let c = inspect(name).unwrap();
    c["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn reaches(from: &str, ip: &str, port: &str) -> bool {
    let out = docker(&[
        "exec",
        from,
        "sh",
        "-c",
        &format!("nc -w 3 {ip} {port} </dev/null"),
    ]);
    stdout(&out).contains("ok")
}

#[test]
fn instances_cannot_reach_each_other_unless_shared() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    for (mode, reach) in [("isolated", false), ("shared", true)] {
        let env = Env::new();
        env.use_test_image(&format!(
            "[agents.listener]\nimage = \"{}\"\ncommand = [\"fake-agent\"]\nenv_passthrough = [\"FAKE_AGENT_LISTEN\"]\n",
            common::test_image_tag()
        ));
        let cfg = env.state().join("config.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replacen(
            "[networking]\n",
            &format!("[networking]\nmode = \"{mode}\"\n"),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        let mut ids = Vec::new();
        for n in ["one", "two"] {
            let out = env
                .cmd()
                .current_dir(env.project(&env.unique(n)))
                .env("FAKE_AGENT_LISTEN", "1")
                .args(["start", "--mode", "listener", "--detach"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            ids.push(stdout(&out).trim().to_owned());
        }
        let (a, b) = (cname(&ids[0]), cname(&ids[1]));
        let port_b = env.instance(&ids[1])["port"].to_string();
        assert!(
            wait_until(Duration::from_secs(10), || reaches(
                &b,
                "127.0.0.1",
                &port_b
            )),
            "{mode}: the agent listens"
        );
        assert_eq!(
            reaches(&a, &ip_of(&b), &port_b),
            reach,
            "{mode}: one instance reaching the other's port"
        );
        let nets = inspect(&a).unwrap()["NetworkSettings"]["Networks"].clone();
        if mode == "isolated" {
            // A network of its own, taken from the home's pool of ready ones.
            let own = |c: &str| {
                inspect(c).unwrap()["Config"]["Labels"]["ai.network"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let (net_a, net_b) = (own(&a), own(&b));
            assert_ne!(net_a, net_b, "one network each");
            assert!(
                nets.get(&net_a).is_some(),
                "on a network of its own: {nets}"
            );
            assert_eq!(nets.as_object().unwrap().len(), 1, "and no other: {nets}");
            // Nor through the host: B is published on 127.0.0.1 only.
            let gateway = nets[&net_a]["Gateway"].as_str().unwrap().to_owned();
            assert!(
                !reaches(&a, &gateway, &port_b),
                "via the host's bridge address"
            );
            let n = docker(&["network", "inspect", &net_a]);
            let v: serde_json::Value = serde_json::from_slice(&n.stdout).unwrap();
            assert_eq!(v[0]["Labels"]["ai.pool"], "1");
            assert_eq!(v[0]["Labels"]["ai.home"], home_label(env.state()).as_str());
            assert_eq!(v[0]["Labels"]["ai.managed-by"], "ai-sessctl");
            env.ok(&["stop", &ids[0]]);
            let n = docker(&["network", "inspect", "-f", "{{len .Containers}}", &net_a]);
            assert!(
                !n.status.success() || stdout(&n).trim() == "0",
                "the network is back in the pool, or gone: nothing on it"
            );
            // One left behind by a crash is reaped by gc.
            let orphan = format!("ai-orphan-{}", env.token);
            let made = docker(&[
                "network",
                "create",
                "--label",
                "ai.managed-by=ai-sessctl",
                "--label",
                &format!("ai.home={}", home_label(env.state())),
                &orphan,
            ]);
            assert!(made.status.success(), "{}", stderr(&made));
            env.ok(&["gc"]);
            assert!(!docker(&["network", "inspect", &orphan]).status.success());
            assert!(
                docker(&["network", "inspect", &net_b]).status.success(),
                "in use: kept"
            );
        } else {
            assert!(nets.get("bridge").is_some(), "{nets}");
        }
    }
}

#[test]
fn two_homes_with_one_project_name_get_two_containers() {
    require_docker!();
    let (one, two) = (Env::new(), Env::new());
    one.use_test_image("");
    two.use_test_image("");
    let name = one.unique("same");
    let id1 = start(&one, &one.project(&name), "claude");
    let id2 = start(&two, &two.project(&name), "claude");
    assert_eq!(id1, id2, "one project name, one id");
    let c1 = one.instance(&id1)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c2 = two.instance(&id2)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(c1, c2);
    let n1 = inspect(&c1).unwrap()["Name"].as_str().unwrap().to_owned();
    let n2 = inspect(&c2).unwrap()["Name"].as_str().unwrap().to_owned();
    for (n, env) in [(&n1, &one), (&n2, &two)] {
        let digest = n.rsplit('-').next().unwrap();
        assert!(
            n.starts_with(&format!("/ai-{id1}-")) && digest.len() == 6,
            "ai-<id>-<6 hex>: {n}"
        );
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
        // list and show still speak of the id.
        assert!(env.ok(&["list"]).contains(&id1));
        assert!(env.ok(&["show", &id1]).contains(&id1));
    }
    assert_ne!(n1, n2);
    one.ok(&["stop", &id1]);
    assert_eq!(
        two.instance(&id2)["status"],
        "running",
        "the other home's instance is untouched"
    );
    two.ok(&["stop", &id2]);
}

#[test]
fn a_container_of_the_old_name_form_is_still_found_by_label() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    env.use_test_image("");
    let proj = env.project(&env.unique("old"));
    let id = format!("{}-claude", proj.file_name().unwrap().to_string_lossy());
    // As an older version named it: `ai-<id>`, same labels.
    let old = format!("ai-{id}");
    let made = docker(&[
        "run",
        "-d",
        "--name",
        &old,
        "--label",
        &format!("ai.instance={id}"),
        "--label",
        "ai.mode=claude",
        "--label",
        &format!("ai.project_path={}", proj.display()),
        "--label",
        &format!("ai.project={}", proj.file_name().unwrap().to_string_lossy()),
        "--label",
        "ai.port=20001",
        "--label",
        "ai.managed-by=ai-sessctl",
        "--label",
        &format!("ai.home={}", home_label(env.state())),
        "-e",
        "FAKE_AGENT_STAY=1",
        common::test_image_tag(),
        "fake-agent",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    env.ok(&["registry", "repair"]);
    let entry = env.instance(&id);
    assert_eq!(entry["status"], "running", "{entry}");
    env.ok(&["stop", &id]);
    assert!(
        inspect(&old).is_none(),
        "stopped and removed through its label"
    );
}

/// `POST /networks/create` straight to the engine's socket, as a start
/// killed mid-create leaves it: engines before API 1.44 then hold two
/// networks of one name (the docker CLI refuses to make that).
fn create_network_behind_our_back(name: &str, labels: &serde_json::Value) {
    use std::io::{Read, Write};
    let sock = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let body = serde_json::json!({ "Name": name, "Labels": labels }).to_string();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    write!(
        s,
        "POST /v1.41/networks/create HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 201") || reply.starts_with("HTTP/1.1 201"),
        "{reply}"
    );
}

#[test]
fn a_network_made_twice_behind_our_back_does_not_stop_a_start() {
    require_docker!();
    if std::env::var("DOCKER_HOST").is_ok_and(|h| !h.starts_with("unix://")) {
        eprintln!("*** SKIPPED: needs the engine's unix socket ***");
        return;
    }
    let env = Env::new();
    // Networks named after their instance (no pool of ready ones).
    env.use_test_image("");
    no_network_pool(&env);
    let name = env.unique("dupnet");
    let proj = env.project(&name);
    let id = start(&env, &proj, "claude");
    let net = cname(&id);
    let labels: serde_json::Value = serde_json::from_str(&stdout(&docker(&[
        "network",
        "inspect",
        "-f",
        "{{json .Labels}}",
        &net,
    ])))
    .unwrap();
    env.ok(&["stop", &id]);
    create_network_behind_our_back(&net, &labels);
    create_network_behind_our_back(&net, &labels);
    let listed = || {
        stdout(&docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{net}$"),
        ]))
        .lines()
        .count()
    };
    assert_eq!(listed(), 2);

    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.instance(&id)["status"], "running");
    assert_eq!(listed(), 1, "the extra network of that name is gone");
    env.ok(&["stop", &id]);
    assert_eq!(listed(), 0);
}
