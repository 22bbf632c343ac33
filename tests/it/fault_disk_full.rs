//! Fault injection, part 4: the state directory on a tiny tmpfs that fills
//! up. Writes (`port alloc --for`, `config set`) fail with one clear line
//! naming the file and the cause; registry.json, config.toml and prompt.tsv
//! keep their bytes; no temp file is left behind; once space is back
//! everything works again.
//!
//! Needs root (mount). Without it the test is skipped loudly, except with
//! AI_SESSIONS_REQUIRE_DOCKER=1 (CI runs as root): then it fails.

use crate::common;
use crate::docker_support;
use crate::fault_support;

use crate::common::{stderr, stdout, Env};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts the tmpfs when dropped (lazily if something still holds it).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn mount_tiny(dir: &Path) -> Option<Mounted> {
    mount_sized(dir, "64k")
}

fn mount_sized(dir: &Path, size: &str) -> Option<Mounted> {
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mounted(dir.to_owned())),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            if std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("cannot mount a tmpfs ({why}) and AI_SESSIONS_REQUIRE_DOCKER=1 (CI runs as root)");
            }
            eprintln!(
                "\n*** SKIPPED fault_disk_full: cannot mount a tmpfs ({why}); run as root ***\n"
            );
            None
        }
    }
}

/// Fills the file system: writes until ENOSPC, in ever smaller pieces, so
/// that at most a few bytes of the last page stay free.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut total = 0u64;
    for size in [4096usize, 512, 64, 8, 1] {
        let buf = vec![b'x'; size];
        while f.write_all(&buf).is_ok() {
            total += size as u64;
        }
    }
    let _ = f.sync_all();
    total
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if name.starts_with(".tmp") || name.starts_with(".edit-") {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// The failure every write on the full disk must produce: non-zero exit,
/// exactly one error line (plus at most a hint) naming the cause.
fn assert_clean_failure(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded on a full disk");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: one error line: {err}");
    assert!(
        errors[0].starts_with("ai-sessctl: error:"),
        "{args:?}: {err}"
    );
    assert!(
        errors[0].contains("No space left on device"),
        "{args:?}: the error names the cause: {err}"
    );
    assert!(
        err.lines().count() <= 2,
        "{args:?}: error plus at most a hint: {err}"
    );
    err
}

#[test]
fn a_full_state_directory_fails_cleanly_and_loses_nothing() {
    let env = Env::new();
    let Some(_mount) = mount_tiny(env.state()) else {
        return;
    };
    // The mount hides what Env wrote: write the config again, on the tmpfs.
    env.write_config("[global]\nmax_instances = 5\n");
    let reg_path = env.state().join("registry.json");
    let cfg_path = env.state().join("config.toml");
    let prompt_path = env.state().join("prompt.tsv");
    let first = env.ok(&["port", "alloc", "--for", "first-claude"]);
    env.ok(&["config", "set", "p-claude", "resources.cpu.limit", "250m"]);
    let reg_before = std::fs::read(&reg_path).unwrap();
    let cfg_before = std::fs::read(&cfg_path).unwrap();
    let inst_cfg = env.state().join("configs/p-claude.toml");
    let inst_before = std::fs::read(&inst_cfg).unwrap();
    let prompt_before = std::fs::read(&prompt_path).ok();

    let filler = env.state().join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);

    // Registry writes.
    let err = assert_clean_failure(&env, &["port", "alloc", "--for", "x-claude"]);
    eprintln!("port alloc on a full disk: {err}");
    assert!(err.contains("registry.json"), "names the file: {err}");
    assert_clean_failure(&env, &["port", "alloc"]);
    // Config writes, global and per instance (existing and new file).
    let err = assert_clean_failure(
        &env,
        &["config", "set", "--global", "global.max_instances", "7"],
    );
    assert!(err.contains("config.toml"), "names the file: {err}");
    let err = assert_clean_failure(
        &env,
        &["config", "set", "p-claude", "resources.cpu.limit", "1"],
    );
    assert!(err.contains("p-claude.toml"), "names the file: {err}");
    let out = env.run(&["config", "set", "q-claude", "resources.cpu.limit", "1"]);
    assert!(!out.status.success(), "a new file on a full disk");
    assert!(
        !env.state().join("configs/q-claude.toml").exists(),
        "half-written instance config"
    );

    // Nothing changed, nothing left behind.
    assert_eq!(
        std::fs::read(&reg_path).unwrap(),
        reg_before,
        "registry.json"
    );
    assert_eq!(std::fs::read(&cfg_path).unwrap(), cfg_before, "config.toml");
    assert_eq!(
        std::fs::read(&inst_cfg).unwrap(),
        inst_before,
        "p-claude.toml"
    );
    assert_eq!(
        std::fs::read(&prompt_path).ok(),
        prompt_before,
        "prompt.tsv"
    );
    assert_eq!(temp_files(env.state()), Vec::<String>::new(), "temp files");
    // Readers are unaffected.
    env.ok(&["registry", "check"]);
    env.ok(&["list"]);
    assert_eq!(
        env.ok(&["config", "get", "--global", "global.max_instances"])
            .trim(),
        "5"
    );

    // Space back: the same writes go through.
    std::fs::remove_file(&filler).unwrap();
    let x = env.ok(&["port", "alloc", "--for", "x-claude"]);
    assert_ne!(x.trim(), first.trim(), "a fresh port for x");
    env.ok(&["config", "set", "--global", "global.max_instances", "7"]);
    assert_eq!(
        env.ok(&["config", "get", "--global", "global.max_instances"])
            .trim(),
        "7"
    );
    env.ok(&["registry", "check"]);
    assert!(env.registry()["reserved_ports"][first.trim()].is_object());
    eprintln!("fault_disk_full: filled {filled} bytes; every write failed cleanly");
}

/// A state home on a 1 MiB tmpfs with the fake agent on Docker.
fn docker_home_on_tmpfs(env: &Env) -> Option<Mounted> {
    let m = mount_sized(env.state(), "1m")?;
    fault_support::fault_config(env, 100, "[]");
    Some(m)
}

fn start_one(env: &Env, name: &str) -> String {
    let dir = env.project(&env.unique(name));
    let out = env.run_in(&dir, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "start {name}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn runs(id: &str) -> bool {
    docker_support::container_state(&common::cname(id)).as_deref() == Some("running")
}

/// Exactly when a runaway agent must be stopped the disk may be full: the
/// container is stopped first, then the stop is recorded; a recording that
/// fails is reported and does not undo or block the stop.
#[test]
fn stops_work_on_a_full_state_disk() {
    require_docker!();
    let env = Env::new();
    let Some(_mount) = docker_home_on_tmpfs(&env) else {
        return;
    };
    let _rm = fault_support::RmHome(fault_support::home_label(&env));
    let ids: Vec<String> = (0..5)
        .map(|i| start_one(&env, &format!("full{i}")))
        .collect();
    let filler = env.state().join("filler");
    fill(&filler);

    let cases: [&[&str]; 3] = [
        &["stop", &ids[0]],
        &["stop", "--force", &ids[1]],
        &["rm", "--force", &ids[2]],
    ];
    for (args, id) in cases.iter().zip(&ids) {
        let out = env.run(args);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!runs(id), "{args:?} left {id} running: {err}");
        assert!(
            err.contains("No space left on device"),
            "{args:?}: the recording failure is reported: {err}"
        );
        eprintln!(
            "{args:?} on a full disk: exit {:?}: {err}",
            out.status.code()
        );
        if args[0] == "stop" {
            assert!(out.status.success(), "{args:?}: {err}");
        }
    }
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "stop --all: {}", stderr(&out));
    for id in &ids {
        assert!(!runs(id), "stop --all left {id} running: {}", stderr(&out));
    }

    // Space back: one reconcile makes the registry true again.
    std::fs::remove_file(&filler).unwrap();
    env.ok(&["list"]);
    for id in &ids {
        let e = env.instance(id);
        assert!(
            e.is_null() || e["status"] == "stopped",
            "{id} after the full disk: {e}"
        );
    }
    fault_support::assert_consistent(&env, "after stops on a full disk", true);
}

/// A start that the full disk interrupts at any moment either succeeds (and
/// runs) or fails and leaves nothing running, then or after a reconcile.
#[test]
fn a_start_interrupted_by_a_full_disk_leaves_nothing_running() {
    require_docker!();
    let env = Env::new();
    let Some(_mount) = docker_home_on_tmpfs(&env) else {
        return;
    };
    let _rm = fault_support::RmHome(fault_support::home_label(&env));
    let mut rng = fault_support::Rng::seeded("fault_disk_full start");
    let filler = env.state().join("filler");
    let (mut failed, mut ok) = (0, 0);
    let mut bad = Vec::new();
    for round in 0..24 {
        let name = env.unique(&format!("cut{round}"));
        let dir = env.project(&name);
        let id = format!("{name}-claude");
        let child = env
            .cmd()
            .current_dir(&dir)
            .args(["start", "--mode", "claude", "--detach"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(450)));
        fill(&filler);
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        if out.status.success() {
            ok += 1;
            if !runs(&id) {
                bad.push(format!("round {round}: start succeeded, nothing runs"));
            }
        } else {
            failed += 1;
            if runs(&id) {
                bad.push(format!("round {round}: start failed ({err}) but {id} runs"));
            }
        }
        // Still full: what anyone reads must not call it running either.
        let _ = env.run(&["list"]);
        std::fs::remove_file(&filler).unwrap();
        env.ok(&["list"]);
        let e = env.instance(&id);
        if !out.status.success() && e["status"] == "running" {
            bad.push(format!(
                "round {round}: failed start is recorded running: {e}"
            ));
        }
        if !out.status.success() && runs(&id) {
            bad.push(format!(
                "round {round}: failed start runs after a reconcile"
            ));
        }
        fault_support::assert_consistent(&env, &format!("round {round}"), true);
        let _ = env.run(&["stop", "--all", "--force"]);
    }
    eprintln!("fault_disk_full start: {ok} starts completed, {failed} cut by the full disk");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(failed > 0, "the disk never cut a start short");
}
