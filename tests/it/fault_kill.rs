//! Fault injection, part 2: `ai-sessctl start --detach` and `stop` killed
//! with SIGKILL at random moments (0–400 ms after spawn), 100 rounds over a
//! few projects. After every kill the registry parses (`registry check`).
//! At the end, reconcile (`list`) and `gc`, then `registry repair`, `gc`
//! and `list`, converge: no container of this home without its entry, no
//! `initializing` entry left, no port held twice or held by nothing.
//!
//! An interrupted start is known by its dead starter process (recorded in
//! the entry), so reconcile settles it at once; the 60 s start grace only
//! protects starts whose process still runs. No timestamp is faked.

use crate::common;
use crate::docker_support;

use crate::common::{stderr, Env};
use crate::fault_support::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ROUNDS: usize = 100;
const PROJECTS: usize = 8;

fn check(env: &Env, what: &str) {
    let out = env.run(&["registry", "check"]);
    assert!(
        out.status.success(),
        "{what}: registry check failed ({:?}): {}\n{}",
        out.status.code(),
        stderr(&out),
        std::fs::read_to_string(env.state().join("registry.json")).unwrap_or_default()
    );
}

#[test]
fn starts_and_stops_killed_at_random_moments_converge() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    fault_config(&env, 100, "[]");
    let _rm = RmHome(home_label(&env));
    let mut rng = Rng::seeded("fault_kill");
    let names: Vec<String> = (0..PROJECTS)
        .map(|i| env.unique(&format!("k{i}")))
        .collect();
    let dirs: Vec<_> = names.iter().map(|n| env.project(n)).collect();

    let t0 = Instant::now();
    let (mut killed, mut finished) = (0, 0);
    let mut tried = std::collections::BTreeMap::<String, usize>::new();
    let mut outcomes = std::collections::BTreeMap::<i32, usize>::new();
    for round in 0..ROUNDS {
        let i = rng.below(PROJECTS as u64) as usize;
        let id = format!("{}-claude", names[i]);
        let status = env.instance(&id)["status"]
            .as_str()
            .unwrap_or("none")
            .to_owned();
        let live = matches!(status.as_str(), "running" | "initializing" | "paused");
        // Mostly the useful action, sometimes the other one.
        let stop = live != (rng.below(5) == 0);
        let mut cmd = env.cmd();
        if stop {
            cmd.args(["stop", &id]);
        } else {
            cmd.current_dir(&dirs[i])
                .args(["start", "--mode", "claude", "--detach"]);
        }
        let action = format!("{} on {status}", if stop { "stop" } else { "start" });
        if std::env::var_os("AIS_FAULT_VERBOSE").is_some() {
            let e = env.instance(&id);
            eprintln!(
                "{round} {action} {id}: reason {} cid {} container {:?}",
                e["status_reason"],
                e["container_id"].as_str().map(|c| &c[..8]).unwrap_or("-"),
                docker_support::container_state(&common::cname(&id))
            );
        }
        *tried.entry(action.clone()).or_default() += 1;
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // 0–400 ms, skewed towards the short end where the processes
        // still work (most finish within about 300 ms here).
        let delay = rng.below(401).min(rng.below(401));
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        match out.status.signal() {
            Some(9) => killed += 1,
            _ => {
                finished += 1;
                *outcomes.entry(out.status.code().unwrap_or(-1)).or_default() += 1;
                if std::env::var_os("AIS_FAULT_VERBOSE").is_some() {
                    eprintln!(
                        "{round} {action} {id}: {:?} {}",
                        out.status.code(),
                        stderr(&out).trim()
                    );
                }
                assert!(
                    !stderr(&out).contains("panicked"),
                    "round {round}: {}",
                    stderr(&out)
                );
            }
        }
        check(&env, &format!("round {round} ({action} {id})"));
    }
    let storm = t0.elapsed();
    assert!(
        killed >= ROUNDS / 3,
        "only {killed} of {ROUNDS} processes were killed before finishing"
    );

    // What the kills left, before anything else looks at it.
    let left = env.registry();
    let left_initializing = left["instances"]
        .as_object()
        .map(|m| m.values().filter(|e| e["status"] == "initializing").count())
        .unwrap_or(0);
    let left_containers = engine_containers(&home_label(&env)).len();

    // 1. Reconcile alone and gc converge (once the engine has finished the
    // requests of killed clients).
    settle_engine(&home_label(&env));
    env.ok(&["list"]);
    env.ok(&["gc"]);
    let after_reconcile = assert_consistent(&env, "after list + gc", true);

    // 2. Repair (rebuild from the engine), gc and a reconcile change
    // nothing that matters: still consistent, nothing lost.
    let out = env.run(&["registry", "repair"]);
    assert!(out.status.success(), "repair: {}", stderr(&out));
    env.ok(&["gc"]);
    env.ok(&["list"]);
    check(&env, "after repair");
    let after_repair = assert_consistent(&env, "after repair + gc + list", true);
    // Ended containers still recorded by their (stopped) entries: a stop
    // killed between `docker stop` and the removal leaves one behind.
    let ended_kept = engine_containers(&home_label(&env))
        .iter()
        .filter(|c| c.state != "running")
        .count();
    assert_eq!(
        after_repair.running, after_reconcile.running,
        "repair changed what runs"
    );
    let reg = env.registry();
    assert!(
        reg["reserved_ports"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "a start left a port reservation: {}",
        reg["reserved_ports"]
    );
    // Every entry still belongs to one of our projects, none is lost.
    for (id, e) in reg["instances"].as_object().unwrap() {
        assert!(
            names.iter().any(|n| id == &format!("{n}-claude")),
            "unexpected entry {id}: {e}"
        );
    }

    // And everything still works: every project starts and stops cleanly.
    for d in &dirs {
        let out = env.run_in(d, &["start", "--mode", "claude", "--detach"]);
        assert!(
            out.status.success(),
            "start after the storm: {}",
            stderr(&out)
        );
    }
    assert_consistent(&env, "after starting every project", true);
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "stop --all: {}", stderr(&out));
    let end = assert_consistent(&env, "after stop --all", true);
    assert_eq!(end.running, 0);
    let tmp_left = std::fs::read_dir(env.state())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    eprintln!(
        "fault_kill: {ROUNDS} rounds in {:.1}s ({killed} killed, {finished} finished first); \
         actions {tried:?}; exit codes of the unkilled {outcomes:?}; left {left_initializing} initializing, \
         {left_containers} containers; after reconcile {:?}, after repair {:?} \
         ({ended_kept} ended containers kept by their entries); {tmp_left} stray .tmp-* files; total {:.1}s",
        storm.as_secs_f64(),
        after_reconcile.by_status,
        after_repair.by_status,
        t0.elapsed().as_secs_f64()
    );
}
