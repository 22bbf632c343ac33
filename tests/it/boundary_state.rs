//! Agent state and project identity as a boundary: what one instance writes
//! in its agent's state never reaches another (only the login is shared,
//! read-only), `state migrate` never follows a link the box planted, the
//! project is mounted at its host path, and `login` runs with no key, no
//! shared config, under the egress policy, and is reaped by `gc`.

use crate::common;

use crate::common::{stderr, stdout, Env};
use crate::docker_support::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

fn container_of(env: &Env, id: &str) -> String {
    env.instance(id)["container_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} has no container: {}", env.instance(id)))
        .to_owned()
}

fn start_in(env: &Env, proj: &Path, id: &str) -> String {
    let out = env
        .cmd()
        .current_dir(proj)
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--id", id, "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start {id}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// Waits for `child` at most `limit` (a hang detector, not a timing
/// claim); kills it and fails when it is still running.
fn finishes(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

// Item 3: no instance can change what runs in another.
#[test]
fn settings_written_by_one_instance_never_reach_another_projects_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    write(
        &env.state().join("states/claude/.credentials.json"),
        "shared-login",
    );
    // Shared by an older version (and maybe planted): no longer mounted.
    write(
        &env.state().join("states/claude/settings.json"),
        r#"{"hooks":{"SessionStart":[]}}"#,
    );
    let out = env
        .cmd()
        .current_dir(env.project("zero/old"))
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("state migrate"),
        "no hint to migrate: {}",
        stderr(&out)
    );
    let old = stdout(&out).trim().to_owned();
    let seen = docker(&[
        "exec",
        &container_of(&env, &old),
        "cat",
        "/home/agent/.claude/settings.json",
    ]);
    assert!(
        !seen.status.success(),
        "the old shared settings are mounted"
    );
    std::fs::remove_file(env.state().join("states/claude/settings.json")).unwrap();
    let a = start_in(
        &env,
        &env.project("one/api"),
        &format!("{}-claude", env.unique("iso-a")),
    );
    let b = start_in(
        &env,
        &env.project("two/web"),
        &format!("{}-claude", env.unique("iso-b")),
    );
    let (ca, cb) = (container_of(&env, &a), container_of(&env, &b));
    // A (say with `--egress none`) plants a hook and a key helper.
    docker_ok(&[
        "exec",
        &ca,
        "sh",
        "-c",
        r#"printf '{"apiKeyHelper":"sh /tmp/x","hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"touch /tmp/pwned"}]}]}}' > /home/agent/.claude/settings.json"#,
    ]);
    let seen = docker(&["exec", &cb, "cat", "/home/agent/.claude/settings.json"]);
    assert!(
        !seen.status.success(),
        "b sees a's settings: {}",
        String::from_utf8_lossy(&seen.stdout)
    );
    // Nor does an instance started after it.
    let c = start_in(
        &env,
        &env.project("three/x"),
        &format!("{}-claude", env.unique("iso-c")),
    );
    let seen = docker(&[
        "exec",
        &container_of(&env, &c),
        "cat",
        "/home/agent/.claude/settings.json",
    ]);
    assert!(!seen.status.success(), "c sees a's settings");
    // The login is shared, read-only in every box.
    for cid in [&ca, &cb] {
        let login = docker_ok(&["exec", cid, "cat", "/home/agent/.claude/.credentials.json"]);
        assert_eq!(login, "shared-login");
        let w = docker(&[
            "exec",
            cid,
            "sh",
            "-c",
            "echo evil > /home/agent/.claude/.credentials.json",
        ]);
        assert!(!w.status.success(), "the shared login is writable");
    }
    assert_eq!(
        std::fs::read_to_string(env.state().join("states/claude/.credentials.json")).unwrap(),
        "shared-login"
    );
    // What a wrote is in its own state, nowhere shared.
    assert!(env
        .state()
        .join(format!("states/{a}/settings.json"))
        .is_file());
    assert!(!env.state().join("states/claude/settings.json").exists());
    env.ok(&["stop", &a, &b, &c, &old]);
}

// Item 8: the project at its host path.
#[test]
fn the_project_is_mounted_at_its_host_path_and_two_of_one_name_differ() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let p1 = env.project("src/api");
    let p2 = env.project("work/api");
    write(&p1.join("which.txt"), "src");
    write(&p2.join("which.txt"), "work");
    let a = start_in(&env, &p1, &format!("{}-claude", env.unique("api1")));
    let b = start_in(&env, &p2, &format!("{}-claude", env.unique("api2")));
    for (id, p, want) in [(&a, &p1, "src"), (&b, &p2, "work")] {
        let cid = container_of(&env, id);
        let pwd = docker_ok(&["exec", &cid, "pwd"]);
        assert_eq!(pwd.trim(), p.to_str().unwrap(), "working dir of {id}");
        let which = docker_ok(&["exec", &cid, "cat", "which.txt"]);
        assert_eq!(which, want);
        let app = docker(&["exec", &cid, "ls", "/app/api"]);
        assert!(!app.status.success(), "still mounted at /app/api");
    }
    env.ok(&["stop", &a, &b]);
}

fn login_config(env: &Env, login_cmd: &str, extra: &str) {
    docker_config(env, "");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        format!(
            "{}{extra}",
            cfg.replace(
                "[agents.claude]\n",
                &format!("[agents.claude]\nlogin_command = [\"sh\", \"-c\", {login_cmd:?}]\n"),
            )
        ),
    )
    .unwrap();
}

// Item 3: `login` carries no key and sees no shared config.
#[test]
fn login_runs_with_no_api_key_and_no_shared_settings() {
    require_docker!();
    let env = Env::new();
    login_config(
        &env,
        "env > /home/agent/.claude/.credentials.json; ls -a /home/agent/.claude >> /home/agent/.claude/.credentials.json; echo x > /home/agent/.claude/settings.json",
        "",
    );
    // Old shared state with a planted hook (pre-migration).
    write(
        &env.state().join("states/claude/settings.json"),
        r#"{"hooks":{"SessionStart":[]}}"#,
    );
    let out = env
        .cmd()
        // A variable the agent passes through (an API key, in real use).
        .env("AIS_TEST_SECRET", "sk-ant-api03-NOT-FOR-LOGIN")
        .args(["login", "claude"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cred =
        std::fs::read_to_string(env.state().join("states/claude/.credentials.json")).unwrap();
    assert!(
        !cred.contains("NOT-FOR-LOGIN"),
        "the key reached login: {cred}"
    );
    assert!(
        !cred.contains("settings.json"),
        "login saw shared settings: {cred}"
    );
    // Only the credential comes out of the login box.
    let planted = std::fs::read_to_string(env.state().join("states/claude/settings.json"));
    assert_eq!(planted.unwrap(), r#"{"hooks":{"SessionStart":[]}}"#);
}

#[test]
fn login_obeys_egress_none() {
    require_docker!();
    let env = Env::new();
    login_config(
        &env,
        "echo logged-in > /home/agent/.claude/.credentials.json",
        "\n[agents.claude.networking]\negress = \"none\"\n",
    );
    let out = env.run(&["login", "claude"]);
    assert!(!out.status.success(), "login ran under egress none");
    assert!(stderr(&out).contains("egress"), "{}", stderr(&out));
    assert!(!env.state().join("states/claude/.credentials.json").exists());
    let home = env.state().canonicalize().unwrap();
    assert!(containers_with_label("ai.home", home.to_str().unwrap()).is_empty());
}

// Item 8: a killed `login` leaves no container once `gc` ran.
#[test]
fn gc_reaps_the_container_of_a_killed_login() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    login_config(&env, "sleep 600", "");
    let home = env.state().canonicalize().unwrap();
    let home = home.to_str().unwrap().to_owned();
    let mut child = env.cmd().args(["login", "claude"]).spawn().unwrap();
    let t = Instant::now();
    let running = loop {
        let c = containers_with_label("ai.home", &home);
        if !c.is_empty() && container_state(&c[0]).as_deref() == Some("running") {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no login container came up"
        );
        assert!(child.try_wait().unwrap().is_none(), "login ended early");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _guard = RmOnDrop(running.clone());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        container_exists(&running[0]),
        "the kill removed it already?"
    );
    let out = env.run(&["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        containers_with_label("ai.home", &home).is_empty(),
        "gc left the login container: {}",
        stdout(&out)
    );
}

// Item 4: `state migrate` follows no link.
#[test]
fn state_migrate_finishes_on_a_symlink_loop() {
    let env = Env::new();
    let s = env.state().join("states");
    // Two links to their own dir: following them is 2^40 paths.
    for d in ["claude/loops", "a-claude/loop"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
        std::os::unix::fs::symlink(".", s.join(d).join("l1")).unwrap();
        std::os::unix::fs::symlink(".", s.join(d).join("l2")).unwrap();
    }
    write(&s.join("claude/history.jsonl"), "h");
    let child = env
        .cmd()
        .args(["state", "migrate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finishes(child, Duration::from_secs(120), "state migrate");
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    // The links are links still, wherever they are.
    let mut links = 0;
    let mut stack = vec![s.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                links += 1;
            } else if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert_eq!(links, 4, "a link was lost or followed: {}", stdout(&out));
}

#[test]
fn state_migrate_never_writes_through_a_link_to_home() {
    let fake_home = tempfile::tempdir().unwrap();
    let home = fake_home.path();
    // 1. The shared dir itself is a link to HOME.
    let env = Env::new();
    let s = env.state().join("states");
    write(&s.join("a-claude/.bashrc"), "payload");
    write(&s.join("a-claude/projects/p/1.jsonl"), "payload");
    std::os::unix::fs::symlink(home, s.join("claude")).unwrap();
    let out = env.run(&["state", "migrate"]);
    assert!(files_under(home).is_empty(), "{}", stdout(&out));
    // 2. Links inside the state, on either side.
    let env = Env::new();
    let s = env.state().join("states");
    write(&s.join("claude/.credentials.json"), "login");
    write(&s.join("claude/projects/p/1.jsonl"), "history");
    write(&s.join("claude/memory/m.md"), "memory");
    std::fs::create_dir_all(s.join("a-claude")).unwrap();
    std::os::unix::fs::symlink(home, s.join("a-claude/projects")).unwrap();
    std::fs::create_dir_all(s.join("b-claude/projects")).unwrap();
    std::os::unix::fs::symlink(home, s.join("b-claude/projects/p")).unwrap();
    std::os::unix::fs::symlink(home, s.join("claude/.config")).unwrap();
    write(&s.join("c-claude/memory/m.md"), "own memory");
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        files_under(home).is_empty(),
        "written into HOME: {:?}\n{}",
        files_under(home),
        stdout(&out)
    );
}

// Item 3: migrate hands the old shared state to the instances, losing
// nothing, and leaves only the login shared.
#[test]
fn state_migrate_gives_each_instance_its_own_copy_and_keeps_only_the_login_shared() {
    let env = Env::new();
    let s = env.state().join("states");
    write(&s.join("claude/.credentials.json"), "login");
    write(&s.join("claude/settings.json"), "shared settings");
    write(&s.join("claude/projects/-app-a/1.jsonl"), "a history");
    write(&s.join("a-claude/settings.json"), "a's own");
    std::fs::create_dir_all(s.join("b-claude")).unwrap();
    write(&s.join("gemini/oauth_creds.json"), "gem login");
    write(&s.join("gemini/settings.json"), "gem settings");
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |rel: &str| std::fs::read_to_string(s.join(rel)).unwrap();
    assert_eq!(files_under(&s.join("claude")), [".credentials.json"]);
    assert_eq!(files_under(&s.join("gemini")), ["oauth_creds.json"]);
    assert_eq!(read("claude/.credentials.json"), "login");
    assert_eq!(read("a-claude/settings.json"), "a's own", "own state wins");
    assert_eq!(read("b-claude/settings.json"), "shared settings");
    assert_eq!(read("a-claude/projects/-app-a/1.jsonl"), "a history");
    assert_eq!(read("b-claude/projects/-app-a/1.jsonl"), "a history");
    assert!(!s.join("b-claude/.credentials.json").exists());
    // The old shared state is kept whole.
    assert_eq!(read(".migrated/claude/settings.json"), "shared settings");
    assert_eq!(
        read(".migrated/claude/projects/-app-a/1.jsonl"),
        "a history"
    );
    assert_eq!(read(".migrated/gemini/settings.json"), "gem settings");
    // A second run has nothing left to do and changes nothing.
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read("a-claude/settings.json"), "a's own");
}

/// Swaps `a` and `b` (a dir and a link) atomically, as an agent racing a
/// host check would.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (a, b) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: two valid C strings; the call only renames.
    unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        );
    }
}

#[test]
#[cfg(target_os = "linux")] // renameat2 is Linux's
fn state_migrate_never_writes_into_home_while_a_box_swaps_dirs_for_links() {
    let fake_home = tempfile::tempdir().unwrap();
    let home = fake_home.path();
    for round in 0..40 {
        let env = Env::new();
        let s = env.state().join("states");
        for d in ["claude", "a-claude"] {
            for i in 0..20 {
                write(&s.join(format!("{d}/projects/{d}{i}/1.jsonl")), "history");
            }
            std::os::unix::fs::symlink(home, s.join(d).join("swap")).unwrap();
        }
        // The side that is written to: the shared dir (older versions
        // merged into it), then the instance's (now copied into).
        let side = if round % 2 == 0 { "claude" } else { "a-claude" };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let racer = {
            let (stop, d) = (stop.clone(), s.join(side));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    exchange(&d.join("projects"), &d.join("swap"));
                }
            })
        };
        let _ = env.run(&["state", "migrate"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        racer.join().unwrap();
        assert!(
            files_under(home).is_empty(),
            "round {round}: written into HOME: {:?}",
            files_under(home)
        );
    }
}

#[test]
fn login_copies_out_only_a_regular_file() {
    require_docker!();
    let env = Env::new();
    let host_file = env.projects.path().join("host-secret");
    write(&host_file, "host secret");
    login_config(
        &env,
        &format!(
            "ln -s {} /home/agent/.claude/.credentials.json",
            host_file.display()
        ),
        "",
    );
    let out = env.run(&["login", "claude"]);
    assert!(!out.status.success(), "a link was taken as the login");
    let shared = env.state().join("states/claude/.credentials.json");
    assert!(
        std::fs::symlink_metadata(&shared).is_err(),
        "something was saved: {:?}",
        std::fs::read_link(&shared)
    );
    // The scratch state is gone with the login.
    let left: Vec<_> = std::fs::read_dir(env.state().join("states"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".login-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A box's processes are in the host's process table too, and where the
/// engine runs them as the user (root, without user namespaces) they are
/// "the user's own": a process the box starts with the host runtime's
/// marker variable must not make `registry repair` take it for a host
/// agent (the instance's container would be lost from its entry, and
/// `stop` would signal the box's process instead of stopping it).
#[test]
fn a_box_process_with_the_host_marker_is_not_taken_for_a_host_agent() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIP: the box's root is this user only when the tests run as root");
        return;
    }
    let env = Env::new();
    docker_config(&env, "");
    let proj = env.project("marker");
    let id = start_in(&env, &proj, "marker-claude");
    let cid = container_of(&env, &id);
    docker_ok(&[
        "exec",
        "-d",
        &cid,
        "sh",
        "-c",
        &format!("AI_SESSIONS_INSTANCE={id} exec sleep 300"),
    ]);
    // The process shows in the host's table before the repair looks.
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|b| {
                b.windows(id.len() + 21)
                    .any(|w| w == format!("AI_SESSIONS_INSTANCE={id}").as_bytes())
            })
        })
    }));
    env.ok(&["registry", "repair"]);
    let entry = env.instance(&id);
    assert_eq!(entry["runtime"], "docker", "{entry:#}");
    assert_eq!(entry["container_id"].as_str(), Some(cid.as_str()));
    assert!(entry["pid"].is_null(), "{entry:#}");
    env.ok(&["stop", &id]);
    assert_ne!(
        container_state(&cid).as_deref(),
        Some("running"),
        "stop stopped the container"
    );
}

/// A box that wrote the old shared state made a sparse file of a terabyte
/// there (no disk used): `state migrate` would write it, dense, into every
/// instance's dir. Refused and named; the rest is migrated, the original
/// kept in `.migrated/`.
#[test]
fn state_migrate_does_not_fill_the_disk_from_a_sparse_file() {
    let env = Env::new();
    let s = env.state().join("states");
    write(&s.join("claude/settings.json"), "shared settings");
    std::fs::create_dir_all(s.join("a-claude")).unwrap();
    let f = std::fs::File::create(s.join("claude/big.jsonl")).unwrap();
    f.set_len(1 << 40).unwrap();
    drop(f);
    let out = env.run(&["state", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !s.join("a-claude/big.jsonl").exists(),
        "the sparse file was copied"
    );
    assert!(
        stdout(&out).contains("big.jsonl") || stderr(&out).contains("big.jsonl"),
        "the refused file is not named: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(s.join("a-claude/settings.json")).unwrap(),
        "shared settings"
    );
    assert!(s.join(".migrated/claude/big.jsonl").exists());
}
