//! `start --detach` against the real engine: what the container looks like
//! (labels, mounts, env, limits, user, security, port) and that secrets
//! reach the agent without ever being written under AI_SESSIONS_HOME.

use crate::common;

use crate::common::{inspect, stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use std::io::Read;
use std::time::Duration;

#[test]
fn detached_container_has_the_promised_shape() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("shape");
    let proj = env.project(&name);
    std::fs::write(proj.join("marker.txt"), "hello").unwrap();

    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_LISTEN", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start failed: {}", stderr(&out));
    let id = format!("{name}-claude");
    assert_eq!(stdout(&out).trim(), id, "start prints the id");
    let cname = common::cname(&id);

    let entry = env.instance(&id);
    assert_eq!(entry["status"], "running", "{entry}");
    assert_eq!(entry["runtime"], "docker");
    let port = entry["port"].as_u64().expect("port recorded") as u16;
    assert!((env.port_base..env.port_base + 100).contains(&port));

    let c = inspect(&cname).expect("container ai-<id> exists");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(entry["container_id"], c["Id"]);

    // Labels.
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["ai.instance"], id.as_str());
    assert_eq!(labels["ai.mode"], "claude");
    assert_eq!(labels["ai.project"], name.as_str());
    assert_eq!(labels["ai.project_path"], proj.to_str().unwrap());
    assert_eq!(labels["ai.managed-by"], "ai-sessctl");

    // Mounts: the project at its host path (the working dir), the state dir
    // at the agent's state_dir, and no Docker socket.
    let workdir = proj.to_str().unwrap().to_owned();
    assert_eq!(c["Config"]["WorkingDir"], workdir.as_str());
    let mounts = c["Mounts"].as_array().unwrap();
    // Agent state is the instance's own (only the login is shared).
    let state_dir = env.state().join("states").join(&id);
    let state_target = env
        .ok(&["config", "get", "--global", "agents.claude.state_dir"])
        .trim()
        .to_owned();
    let has = |src: &std::path::Path, dst: &str| {
        mounts.iter().any(|m| {
            m["Type"] == "bind" && m["Source"] == src.to_str().unwrap() && m["Destination"] == dst
        })
    };
    assert!(has(&proj, &workdir), "project mount missing: {mounts:?}");
    assert!(
        has(&state_dir, &state_target),
        "state mount missing: {mounts:?}"
    );
    assert!(
        !mounts
            .iter()
            .any(|m| m["Source"].as_str().unwrap_or("").contains("docker.sock")),
        "the docker socket must not be mounted: {mounts:?}"
    );
    let ls = docker_ok(&["exec", &cname, "ls", &workdir]);
    assert!(ls.contains("marker.txt"), "{ls}");
    let pwd = docker_ok(&["exec", &cname, "pwd"]);
    assert_eq!(pwd.trim(), workdir);
    // Agent state written inside lands in states/<id> on the host.
    docker_ok(&[
        "exec",
        &cname,
        "sh",
        "-c",
        &format!("echo kept > {state_target}/auth.json"),
    ]);
    assert_eq!(
        std::fs::read_to_string(state_dir.join("auth.json")).unwrap(),
        "kept\n"
    );

    // Environment.
    let envs: Vec<String> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for want in [
        "AI_MODE=claude".to_owned(),
        format!("AI_INSTANCE_ID={id}"),
        format!("AI_PORT={port}"),
    ] {
        assert!(envs.contains(&want), "{want} missing from {envs:?}");
    }
    assert!(
        envs.iter().any(|e| e.starts_with("AI_SOCKET_PATH=/")),
        "{envs:?}"
    );

    // Limits, user, security, terminal.
    let hc = &c["HostConfig"];
    assert_eq!(hc["Memory"], 128 * 1024 * 1024);
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(c["Config"]["User"], host_user().as_str());
    assert!(
        hc["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("no-new-privileges")),
        "{}",
        hc["SecurityOpt"]
    );
    assert_eq!(hc["Init"], true);
    assert_eq!(hc["Privileged"], false);
    assert_eq!(c["Config"]["Tty"], true);
    assert_eq!(c["Config"]["OpenStdin"], true);
    let uid = docker_ok(&["exec", &cname, "id", "-u"]);
    assert_eq!(uid.trim(), host_user().split(':').next().unwrap());

    // Port: published on 127.0.0.1 only, and the agent answers there.
    let key = format!("{port}/tcp");
    let bindings = hc["PortBindings"][&key].as_array().expect("port binding");
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0]["HostIp"], "127.0.0.1");
    assert_eq!(bindings[0]["HostPort"], port.to_string().as_str());
    for b in c["NetworkSettings"]["Ports"][&key].as_array().unwrap() {
        assert_eq!(b["HostIp"], "127.0.0.1", "published beyond loopback: {b}");
    }
    let mut answer = String::new();
    let reached = wait_until(Duration::from_secs(10), || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        answer.clear();
        s.read_to_string(&mut answer).is_ok() && answer.trim() == "ok"
    });
    assert!(
        reached,
        "nothing answered `ok` on 127.0.0.1:{port} ({answer:?})"
    );
    // `port` says where that is, from the project or by id.
    let from_project = env.run_in(&proj, &["port"]);
    assert!(from_project.status.success(), "{}", stderr(&from_project));
    assert_eq!(stdout(&from_project).trim(), format!("127.0.0.1:{port}"));
    assert_eq!(env.ok(&["port", &id]).trim(), format!("127.0.0.1:{port}"));

    // Starting again from the same project reports the running instance.
    let again = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!("{id} is already running")),
        "{}",
        stderr(&again)
    );

    env.ok(&["stop", &id]);
    assert!(
        wait_until(Duration::from_secs(5), || !container_exists(&cname)),
        "auto_cleanup leaves no container behind"
    );
    assert_eq!(env.instance(&id)["status"], "stopped");
}

#[test]
fn api_key_reaches_the_agent_and_is_never_written() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("secret");
    let proj = env.project(&name);
    let secret = format!(
        "sk-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("AIS_TEST_SECRET", &secret)
        .env("SOME_OTHER_SECRET", "not-passed-through")
        .args([
            "start",
            "--mode",
            "claude",
            "--detach",
            "--",
            "--model",
            "two words; $(x)",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let cname = common::cname(&id);

    // Agent arguments arrive as given, never split or interpreted (after
    // the generated hooks settings claude is handed).
    let c = inspect(&cname).unwrap();
    assert_eq!(
        c["Config"]["Cmd"],
        serde_json::json!([
            "claude",
            "--settings",
            "/run/ai-sessions/claude-settings.json",
            "--model",
            "two words; $(x)"
        ])
    );
    let mut logs = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            logs = env.ok(&["logs", &id]);
            logs.contains(
                "args=--settings /run/ai-sessions/claude-settings.json --model two words; $(x)",
            )
        }),
        "{logs}"
    );

    let seen = docker_ok(&["exec", &cname, "env"]);
    assert!(
        seen.lines()
            .any(|l| l == format!("AIS_TEST_SECRET={secret}")),
        "the agent does not see the key:\n{seen}"
    );
    assert!(
        !seen.contains("SOME_OTHER_SECRET"),
        "only configured names pass through:\n{seen}"
    );

    // Exercise everything that writes state, then stop (saves the log).
    env.ok(&["list"]);
    env.ok(&["show", &id, "--json"]);
    env.ok(&["stop", &id]);
    env.ok(&["list", "--json"]);
    env.ok(&["events"]);

    let files = walk_files(env.state());
    assert!(
        files.iter().any(|f| f.ends_with("registry.json")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("session-manager.log")),
        "{files:?}"
    );
    // Private: files 0600 (the test wrote config.toml itself), dirs 0700.
    use std::os::unix::fs::PermissionsExt;
    for f in files.iter().filter(|f| !f.ends_with("config.toml")) {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", f.display());
    }
    for d in [
        "logs".to_owned(),
        "states".to_owned(),
        format!("states/{id}"),
    ] {
        let mode = std::fs::metadata(env.state().join(&d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{d} is {mode:o}");
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&secret),
            "the secret was written to {}",
            f.display()
        );
    }
}

/// `networking.bind = "::"` publishes on every IPv6 (and IPv4) address:
/// what `start` and `show` print says so, not 127.0.0.1.
#[test]
fn the_printed_address_is_the_bound_one() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let mut cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    cfg = cfg.replacen("[networking]\n", "[networking]\nbind = \"::\"\n", 1);
    std::fs::write(env.state().join("config.toml"), cfg).unwrap();
    let name = env.unique("bind6");
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let port = env.instance(&id)["port"].as_u64().unwrap();
    let c = inspect(&common::cname(&id)).unwrap();
    assert_eq!(
        c["HostConfig"]["PortBindings"][format!("{port}/tcp")][0]["HostIp"],
        "::"
    );
    let want = format!("[::]:{port}");
    assert!(stderr(&out).contains(&want), "start said: {}", stderr(&out));
    assert!(!stderr(&out).contains("127.0.0.1"), "{}", stderr(&out));
    let shown = env.ok(&["show", &id]);
    assert!(shown.contains(&want), "{shown}");
    assert!(!shown.contains("127.0.0.1"), "{shown}");
    env.ok(&["stop", &id]);
}
