//! Fault injection, part 6 and 7: hostile input through the entry points
//! hostile_input.rs and api.rs do not cover, and exhausted limits.
//!
//! - environment values (newlines, `$(…)`, quotes, 64 KiB) reach the agent
//!   byte for byte, in a container and on the host, and are never run;
//! - config values (an agent command or image that looks like shell code)
//!   are argv / an image reference, never given to a shell;
//! - project paths with `..` and symlinks resolve to one canonical project;
//!   the API refuses `..` and absurdly long fields with 400;
//! - a planted API key shows up in no file, log, listing or `ps` output of
//!   ours (Docker keeps it in the container's config: engine state);
//! - a port range with no free port fails with exit 5, naming the range
//!   and how to widen it.

use crate::api_support;
use crate::common;

use crate::common::{inspect, stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use crate::fault_support::*;
use std::collections::BTreeMap;

use std::time::Duration;

/// The environment of a process, from /proc, byte-exact.
fn environ(pid: u32) -> BTreeMap<String, Vec<u8>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let i = kv.iter().position(|b| *b == b'=')?;
            Some((
                String::from_utf8_lossy(&kv[..i]).into_owned(),
                kv[i + 1..].to_vec(),
            ))
        })
        .collect()
}

/// The agent process of a container: the child of its init (`--init`).
fn agent_pid(container: &str) -> Option<u32> {
    let init = inspect(container)?["State"]["Pid"].as_u64()? as u32;
    children_of(init).first().copied()
}

/// Hostile values, all valid UTF-8 (Docker's API is JSON).
fn hostile_values(markers: &[String]) -> Vec<(&'static str, String)> {
    let subst = markers
        .iter()
        .map(|m| format!("$(touch {m}) `touch {m}`; touch {m} && touch {m} | touch {m}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut big = String::new();
    while big.len() < 64 * 1024 {
        big.push_str("0123456789 $(x) `y` 'q' \"d\" \\ \n\t%s ");
    }
    big.truncate(64 * 1024);
    vec![
        ("AIS_H_NEWLINES", "first line\nsecond line\n\nlast\n".into()),
        ("AIS_H_SUBST", subst),
        (
            "AIS_H_QUOTES",
            "it's \"double\" 'single' \\back\\slash $HOME ${PATH} %s %n \u{1b}[31m é ✓".into(),
        ),
        ("AIS_H_EQUALS", "a=b==c=".into()),
        ("AIS_H_SPACES", "  leading and trailing  \t".into()),
        ("AIS_H_BIG", big),
    ]
}

fn passthrough(values: &[(&str, String)]) -> String {
    let names: Vec<String> = values.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    format!("[{}, \"FAKE_AGENT_STAY\"]", names.join(", "))
}

fn assert_verbatim(
    env_of_agent: &BTreeMap<String, Vec<u8>>,
    values: &[(&str, String)],
    what: &str,
) {
    for (name, value) in values {
        let got = env_of_agent
            .get(*name)
            .unwrap_or_else(|| panic!("{what}: {name} did not reach the agent"));
        assert!(
            got == value.as_bytes(),
            "{what}: {name} changed on the way ({} bytes sent, {} arrived)",
            value.len(),
            got.len()
        );
    }
    assert!(
        !env_of_agent.contains_key("AIS_H_NOT_LISTED"),
        "{what}: a variable outside env_passthrough reached the agent"
    );
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "reads the container's processes through the host's /proc"
)]
fn environment_values_reach_the_agent_verbatim_and_never_run() {
    require_docker!();
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    let name = env.unique("envh");
    let proj = env.project(&name);
    let host_marker = env.projects.path().join("pwned-host");
    let in_container = proj.join("pwned-container").display().to_string();
    let values = hostile_values(&[host_marker.display().to_string(), in_container]);
    fault_config(&env, 10, &passthrough(&values));

    // In a container.
    let out = env
        .cmd()
        .current_dir(&proj)
        .envs(values.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AIS_H_NOT_LISTED", "x")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let cname = common::cname(&id);
    let mut pid = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            pid = agent_pid(&cname);
            pid.is_some_and(|p| environ(p).contains_key("AI_PORT"))
        }),
        "no agent process in {cname}"
    );
    let seen = environ(pid.unwrap());
    assert_verbatim(&seen, &values, "docker");
    let listed = docker_ok(&["exec", &cname, "ls", "-a", proj.to_str().unwrap()]);
    assert!(
        !listed.contains("pwned"),
        "ran inside the container: {listed}"
    );
    env.ok(&["stop", &id]);

    // On the host (the fake agent as `claude` on PATH).
    let bin = fake_agent_bin(env.projects.path());
    let hname = env.unique("envhost");
    let hproj = env.project(&hname);
    let out = env
        .cmd()
        .current_dir(&hproj)
        .env("PATH", path_with(&bin))
        .envs(values.iter().map(|(k, v)| (*k, v.as_str())))
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach", "--runtime", "host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let hid = format!("{hname}-claude");
    let hpid = env.instance(&hid)["pid"].as_u64().unwrap() as u32;
    assert!(wait_until(Duration::from_secs(5), || environ(hpid)
        .contains_key("AI_PORT")));
    assert_verbatim(&environ(hpid), &values, "host");
    env.ok(&["stop", &hid]);

    assert!(
        !host_marker.exists(),
        "a value was run by a shell on the host"
    );
    assert!(!proj.join("pwned-container").exists());
    // And none of it was written to our state (values are secrets too).
    for f in walk_files(env.state()) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains("second line") && !text.contains("a=b==c="),
            "an environment value was written to {}",
            f.display()
        );
    }
}

#[test]
fn config_values_are_argv_and_image_names_never_shell_code() {
    require_docker!();
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    let marker = env.projects.path().join("pwned");
    let m = marker.display().to_string();
    let name = env.unique("cfgh");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let cname = common::cname_in(&env, &id);
    let start = |runtime: &str| {
        env.cmd()
            .current_dir(&proj)
            .env("PATH", path_with(&fake_agent_bin(env.projects.path())))
            .env("FAKE_AGENT_STAY", "1")
            .args([
                "start",
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                runtime,
            ])
            .output()
            .unwrap()
    };
    let no_trace = |what: &str| {
        assert!(!marker.exists(), "{what}: config text was run by a shell");
        let e = env.instance(&id);
        assert!(
            e.is_null() || !matches!(e["status"].as_str(), Some("running" | "initializing")),
            "{what}: a failed start left {e}"
        );
        assert!(
            !container_exists(&cname),
            "{what}: a failed start left its container"
        );
    };

    // A command that is shell code: the program named `$(touch …)` does
    // not exist, in the container or on the host.
    let set = |key: &str, value: &str| env.ok(&["config", "set", "--global", key, value]);
    fault_config(&env, 10, "[\"FAKE_AGENT_STAY\"]");
    let cmd = format!("[\"$(touch {m})\", \"; touch {m}\"]");
    set("agents.claude.command", &cmd);
    assert_eq!(
        env.ok(&["config", "get", "--global", "agents.claude.command"])
            .trim(),
        format!("[\"$(touch {m})\", \"; touch {m}\"]"),
        "stored literally"
    );
    // In a container the init process execs it as a file name and fails
    // (exit 127): the instance ends in error, nothing else happens.
    let out = start("docker");
    if out.status.success() {
        let c = inspect(&cname).unwrap();
        assert_eq!(
            c["Config"]["Cmd"],
            serde_json::json!([format!("$(touch {m})"), format!("; touch {m}")]),
            "argv as configured"
        );
        assert!(
            wait_until(Duration::from_secs(10), || {
                env.ok(&["list"]);
                env.instance(&id)["status"] == "error"
            }),
            "{}",
            env.instance(&id)
        );
        assert_eq!(env.instance(&id)["exit_code"], 127, "{}", env.instance(&id));
    } else {
        assert!(stderr(&out).contains("$(touch"), "{}", stderr(&out));
    }
    no_trace("docker");
    // On the host no such program is found: refused before anything runs.
    let out = start("host");
    assert_eq!(out.status.code(), Some(3), "host: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("ai-sessctl: error:") && err.contains("$(touch"),
        "host: the error names the program: {err}"
    );
    no_trace("host");
    // The shell integration never carries the command either.
    let init = env.ok(&["init", "bash"]);
    assert!(!init.contains("touch"), "init embeds config values");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("eval \"$1\"; claude --help >/dev/null 2>&1; true")
        .arg("bash")
        .arg(&init)
        .env("AI_SESSIONS_HOME", env.state())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    no_trace("init bash");

    // Shell code as arguments of a real program: passed as they are.
    fault_config(&env, 10, "[\"FAKE_AGENT_STAY\"]");
    set(
        "agents.claude.command",
        &format!("[\"claude\", \"$(touch {m})\", \"a b;c\", \"\"]"),
    );
    let out = start("docker");
    assert!(out.status.success(), "{}", stderr(&out));
    let c = inspect(&cname).unwrap();
    assert_eq!(
        c["Config"]["Cmd"],
        serde_json::json!([
            "claude",
            format!("$(touch {m})"),
            "a b;c",
            "",
            "--settings",
            "/run/ai-sessions/claude-settings.json"
        ])
    );
    let mut logs = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            logs = env.ok(&["logs", &id]);
            logs.contains(&format!(
                "args=$(touch {m}) a b;c  --settings /run/ai-sessions/claude-settings.json"
            ))
        }),
        "{logs}"
    );
    env.ok(&["stop", &id]);
    assert!(!marker.exists());

    // Image references that are not: refused by the engine, nothing made.
    for image in [
        "bad image name".to_owned(),
        format!("{}; touch {m}", common::test_image_tag()),
        "$(touch x)".to_owned(),
        "UPPER/Case:tag".to_owned(),
    ] {
        fault_config(&env, 10, "[]");
        set("agents.claude.image", &image);
        let out = start("docker");
        let err = stderr(&out);
        assert!(!out.status.success(), "{image:?}: started");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("error:")).count(),
            1,
            "{image:?}: {err}"
        );
        no_trace(&format!("image {image:?}"));
    }
}

#[test]
fn dotdot_and_symlinked_project_paths_resolve_to_one_canonical_project() {
    require_docker!();
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    fault_config(&env, 10, "[]");
    let b_name = env.unique("realb");
    let a = env.project("a/sub");
    let b = env.project(&b_name);
    let link = env.projects.path().join("link");
    std::os::unix::fs::symlink(&b, &link).unwrap();
    let id = format!("{b_name}-claude");

    // `start ../../<b>` from a/sub: the canonical b, wherever it is named from.
    let rel = format!("../../{b_name}");
    let out = env.run_in(&a, &["start", &rel, "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
    let e = env.instance(&id);
    assert_eq!(e["project_path"], b.to_str().unwrap());
    let c = inspect(&common::cname(&id)).unwrap();
    assert_eq!(
        c["Config"]["Labels"]["ai.project_path"],
        b.to_str().unwrap()
    );
    assert!(
        c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Source"] == b.to_str().unwrap()),
        "the mount is the canonical path: {}",
        c["Mounts"]
    );
    // Through the symlink and a detour: the same instance, not a new one.
    let detour = format!("{}/../../{b_name}/.", a.display());
    for p in [link.to_str().unwrap(), &detour] {
        let out = env.run(&["start", p, "--mode", "claude", "--detach"]);
        assert!(out.status.success(), "{p}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{id} is already running")),
            "{p}: {}",
            stderr(&out)
        );
    }
    assert_eq!(env.registry()["instances"].as_object().unwrap().len(), 1);
    // State stays inside the state home whatever the path said.
    assert!(env.state().join("states").join(&id).is_dir());
    assert!(!env.projects.path().join("states").exists());
    // `..` past the root is the root: not a way out of anything; `/` is
    // never a project (sandbox_project_root.rs).
    let out = env.run(&["find", &format!("{}/../../../../../../..", a.display())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/ cannot be a project root"),
        "{}",
        stderr(&out)
    );
    env.ok(&["stop", &id]);
}

#[test]
fn api_refuses_dotdot_paths_and_absurd_fields() {
    let env = Env::new();
    let srv = api_support::Serve::start(&env);
    let tok = api_support::token(&env);
    let proj = env.project("apiproj");
    let post = |body: serde_json::Value| {
        srv.req("POST", "/api/v1/instances")
            .bearer(&tok)
            .json(&body)
            .send()
    };
    let dotdot = format!("{}/../apiproj", proj.display());
    let long = "a".repeat(10_000);
    for (case, body) in [
        (
            "..",
            serde_json::json!({"project_path": dotdot, "mode": "claude"}),
        ),
        (
            "../ at the start",
            serde_json::json!({"project_path": "/../../etc", "mode": "claude"}),
        ),
        (
            "relative ..",
            serde_json::json!({"project_path": "../x", "mode": "claude"}),
        ),
        (
            "10k-char mode",
            serde_json::json!({"project_path": proj, "mode": long}),
        ),
        (
            "mode with a slash",
            serde_json::json!({"project_path": proj, "mode": "../claude"}),
        ),
        (
            "10k-char path",
            serde_json::json!({"project_path": format!("/{long}"), "mode": "claude"}),
        ),
    ] {
        let r = post(body);
        assert_eq!(r.status, 400, "{case}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.len() < 400, "{case}: a {} byte message", msg.len());
    }
    // Ids and actions of absurd length or shape.
    let r = srv
        .req("GET", &format!("/api/v1/instances/{long}-claude"))
        .bearer(&tok)
        .send();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = srv
        .req("GET", "/api/v1/instances/..%2F..%2Fetc-claude")
        .bearer(&tok)
        .send();
    assert!(matches!(r.status, 400 | 404), "{}", r.text());
    let r = srv
        .req("PUT", "/api/v1/instances/x-claude")
        .bearer(&tok)
        .json(&serde_json::json!({"action": long}))
        .send();
    assert!(matches!(r.status, 400 | 404), "{}", r.text());
    assert!(r.text().len() < 1000, "{} bytes", r.text().len());
    assert!(
        env.registry()["instances"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "nothing was created"
    );
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "reads the container's processes through the host's /proc"
)]
fn a_planted_api_key_is_in_no_file_log_listing_or_process_list_of_ours() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    fault_config(&env, 10, "[\"AIS_TEST_SECRET\"]");
    let secret = format!(
        "sk-ant-planted-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let name = env.unique("planted");
    let proj = env.project(&name);
    let id = format!("{name}-claude");

    // Watch every process's command line while we start, list and stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let secret = secret.clone();
        std::thread::spawn(move || {
            let mut samples = 0;
            let mut leaks = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = std::process::Command::new("ps")
                    .args(["-eo", "pid,args", "--no-headers"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                leaks.extend(
                    text.lines()
                        .filter(|l| l.contains(&secret))
                        .map(str::to_owned),
                );
                samples += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (samples, leaks)
        })
    };
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("AIS_TEST_SECRET", &secret)
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut outputs = vec![stdout(&out), stderr(&out)];
    // The agent got it (the point of passthrough)…
    let cname = common::cname(&id);
    let mut pid = None;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = agent_pid(&cname);
        pid.is_some_and(|p| environ(p).contains_key("AI_PORT"))
    }));
    assert_eq!(
        environ(pid.unwrap())
            .get("AIS_TEST_SECRET")
            .map(Vec::as_slice),
        Some(secret.as_bytes())
    );
    // Honest limit: the engine keeps a container's environment in its own
    // state (`docker inspect`, /var/lib/docker) until the container is
    // removed (at stop, with auto_cleanup). That is the engine's, not ours.
    let kept = inspect(&cname).unwrap()["Config"]["Env"].to_string();
    assert!(
        kept.contains(&secret),
        "docker inspect shows the environment"
    );
    // …and every command that shows or writes state runs with it set.
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", &id, "--json"],
        &["stats", "--json"],
        &["dashboard", "--json"],
        &["events"],
        &["logs", &id],
        &["health", "check"],
        &["stop", &id],
        &["gc"],
    ] {
        let out = env
            .cmd()
            .env("AIS_TEST_SECRET", &secret)
            .args(args)
            .output()
            .unwrap();
        outputs.push(stdout(&out));
        outputs.push(stderr(&out));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (samples, leaks) = watcher.join().unwrap();
    assert!(samples > 10, "ps sampled only {samples} times");
    assert!(leaks.is_empty(), "the key is on a command line: {leaks:?}");
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(&secret), "command output #{i} shows the key");
    }
    let files = walk_files(env.state());
    assert!(files.iter().any(|f| f.ends_with("session-manager.log")));
    assert!(files.iter().any(|f| f.ends_with(format!("{id}.log"))));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the key was written to {}",
            f.display()
        );
    }
    assert!(
        !container_exists(&cname),
        "stop removed the container, and the engine's copy of the key with it"
    );
    eprintln!(
        "fault_hostile: planted key absent from {} files, {} outputs, {samples} ps samples",
        files.len(),
        outputs.len()
    );
}

#[test]
fn an_exhausted_port_range_fails_naming_the_range_and_the_fix() {
    require_docker!();
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    let p = env.port_base;
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"1s\"\n\n\
         [agents.claude]\nimage = \"{}\"\n",
        common::test_image_tag()
    ));
    // Env's config holds the range; narrow it to two ports.
    env.ok(&[
        "config",
        "set",
        "--global",
        "networking.port_range",
        &format!("[{p}, {}]", p + 1),
    ]);
    env.ok(&["port", "alloc", "--for", "first-claude"]);
    env.ok(&["port", "alloc", "--for", "second-claude"]);
    let name = env.unique("noport");
    let proj = env.project(&name);
    let check = |out: &std::process::Output, what: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(5), "{what}: {err}");
        let line = err.lines().next().unwrap_or("");
        assert!(line.starts_with("ai-sessctl: error:"), "{what}: {err}");
        assert!(
            line.contains(&format!("{p}-{}", p + 1)),
            "{what}: names the range: {err}"
        );
        assert!(
            line.contains("networking.port_range") && line.contains("config set"),
            "{what}: says how to widen it: {err}"
        );
        assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1);
    };
    let before = std::fs::read(env.state().join("registry.json")).unwrap();
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    check(&out, "start");
    check(&env.run(&["port", "alloc"]), "port alloc");
    assert_eq!(
        std::fs::read(env.state().join("registry.json")).unwrap(),
        before,
        "a refused start changed the registry"
    );
    assert!(!container_exists(&common::cname(&format!("{name}-claude"))));

    // A port taken by someone else's listener counts as used too.
    env.ok(&["port", "release", &(p + 1).to_string()]);
    let _held = std::net::TcpListener::bind(("127.0.0.1", p + 1)).unwrap();
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    check(&out, "start with a foreign listener");
    assert!(
        stderr(&out).contains("in use on 127.0.0.1"),
        "{}",
        stderr(&out)
    );

    // Widened as the message says: the start goes through.
    env.ok(&[
        "config",
        "set",
        "--global",
        "networking.port_range",
        &format!("[{p}, {}]", p + 2),
    ]);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.instance(&format!("{name}-claude"))["port"], p + 2);
    env.ok(&["stop", &format!("{name}-claude")]);
}

/// One field of /proc/<pid>/status (`Uid`, `CapEff`, `NoNewPrivs`, …).
fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "reads the container's processes through the host's /proc"
)]
fn the_agent_is_confined_as_promised() {
    require_docker!();
    let env = Env::new();
    let _rm = RmHome(home_label(&env));
    fault_config(&env, 10, "[\"FAKE_AGENT_LISTEN\"]");
    let name = env.unique("confined");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let cname = common::cname_in(&env, &id);
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_LISTEN", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let c = inspect(&cname).unwrap();
    let hc = &c["HostConfig"];
    assert_eq!(
        hc["CapDrop"],
        serde_json::json!(["ALL"]),
        "{}",
        hc["CapDrop"]
    );
    assert!(hc["CapAdd"].is_null() || hc["CapAdd"] == serde_json::json!([]));
    assert_eq!(hc["Privileged"], false);
    assert_eq!(c["Config"]["User"], host_user().as_str());
    for m in c["Mounts"].as_array().unwrap() {
        let src = m["Source"].as_str().unwrap_or("");
        assert!(
            !src.contains("docker.sock") && !src.ends_with("/run"),
            "{m}"
        );
        assert!(src != "/" && !src.starts_with("/var/lib/docker"), "{m}");
    }
    // What the kernel enforces on the agent process itself.
    let mut pid = None;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = agent_pid(&cname);
        pid.is_some()
    }));
    let pid = pid.unwrap();
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some(uid.to_string().as_str())
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().next(),
        Some(gid.to_string().as_str())
    );
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(
            u64::from_str_radix(&proc_status(pid, cap), 16).ok(),
            Some(0),
            "{cap} of the agent"
        );
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(
        proc_status(pid, "Seccomp"),
        "2",
        "the engine's seccomp filter"
    );
    // The port answers on loopback and nowhere else.
    let port = env.instance(&id)["port"].as_u64().unwrap() as u16;
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "not reachable on 127.0.0.1:{port}"
    );
    let ips = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut tried = 0;
    for ip in ips
        .split_whitespace()
        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
    {
        tried += 1;
        let r = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(ip, port),
            Duration::from_secs(1),
        );
        assert!(r.is_err(), "port {port} answers on {ip}");
    }
    eprintln!(
        "fault_hostile: confinement checked; port refused on {tried} non-loopback address(es)"
    );
    env.ok(&["stop", &id]);
}
