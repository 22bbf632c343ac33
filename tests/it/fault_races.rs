//! Fault injection, races: many real processes at once against one state
//! home, repeated, with zero bad outcomes allowed. Decisions that depend on
//! the registry are taken under its lock, and a user's intent wins over
//! automation.

use crate::api_support;
use crate::common;
use crate::docker_support;
use crate::health_support;

use crate::common::{stderr, stdout, Env};
use crate::fault_support::*;
use std::process::{Child, Stdio};

fn spawn_in(env: &Env, dir: &std::path::Path, args: &[&str]) -> Child {
    env.cmd()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Projects with the same basename started at the same moment each get
/// their own instance: never the other's, never "already running".
#[test]
fn same_basename_projects_started_at_once_get_their_own_instances() {
    require_docker!();
    const ROUNDS: usize = 20;
    const AT_ONCE: usize = 3;
    let env = Env::new();
    fault_config(&env, 100, "[]");
    let _rm = RmHome(home_label(&env));
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        let name = env.unique(&format!("twin{round}"));
        let dirs: Vec<_> = (0..AT_ONCE)
            .map(|k| env.project(&format!("p{k}/{name}")))
            .collect();
        let kids: Vec<_> = dirs
            .iter()
            .map(|d| spawn_in(&env, d, &["start", "--mode", "claude", "--detach"]))
            .collect();
        let outs: Vec<_> = kids
            .into_iter()
            .map(|k| k.wait_with_output().unwrap())
            .collect();
        let mut ids = Vec::new();
        for (d, o) in dirs.iter().zip(&outs) {
            let id = stdout(o).trim().to_owned();
            if !o.status.success() || id.is_empty() {
                bad.push(format!(
                    "round {round} {}: exit {:?}, said {id:?} / {}",
                    d.display(),
                    o.status.code(),
                    stderr(o).trim()
                ));
                continue;
            }
            let e = env.instance(&id);
            if e["project_path"] != d.to_str().unwrap() || e["status"] != "running" {
                bad.push(format!(
                    "round {round}: {} was handed {id}: {e}",
                    d.display()
                ));
            }
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        if ids.len() != outs.iter().filter(|o| o.status.success()).count() {
            bad.push(format!(
                "round {round}: two starts share an instance: {ids:?}"
            ));
        }
        let _ = env.run(&["stop", "--all", "--force"]);
    }
    assert!(
        bad.is_empty(),
        "{} bad outcomes:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert_consistent(&env, "after the twin starts", true);
}

/// `gc` looping while instances start never removes a container that a
/// start just created: strays are decided under the registry's lock, from
/// a listing taken before it.
#[test]
fn gc_never_removes_a_container_a_concurrent_start_created() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    const ROUNDS: usize = 20;
    const STARTS: usize = 6;
    let env = std::sync::Arc::new(Env::new());
    fault_config(&env, 100, "[]");
    let _rm = RmHome(home_label(&env));
    let mut bad = Vec::new();
    let mut gcs = 0;
    for round in 0..ROUNDS {
        let dirs: Vec<_> = (0..STARTS)
            .map(|k| env.project(&env.unique(&format!("gc{round}x{k}"))))
            .collect();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let looper = {
            let env = std::sync::Arc::clone(&env);
            let done = std::sync::Arc::clone(&done);
            std::thread::spawn(move || {
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = env.run(&["gc"]);
                    assert!(o.status.success(), "gc: {}", stderr(&o));
                    n += 1;
                }
                n
            })
        };
        let kids: Vec<_> = dirs
            .iter()
            .map(|d| spawn_in(&env, d, &["start", "--mode", "claude", "--detach"]))
            .collect();
        let outs: Vec<_> = kids
            .into_iter()
            .map(|k| k.wait_with_output().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        gcs += looper.join().unwrap();
        for (d, o) in dirs.iter().zip(&outs) {
            let id = stdout(o).trim().to_owned();
            if !o.status.success() {
                bad.push(format!(
                    "round {round} {}: {}",
                    d.display(),
                    stderr(o).trim()
                ));
                continue;
            }
            let cname = common::cname(&id);
            if docker_support::container_state(&cname).as_deref() != Some("running") {
                bad.push(format!(
                    "round {round}: {id} started but its container is gone"
                ));
            }
        }
        assert_consistent(&env, &format!("round {round}"), true);
        let _ = env.run(&["stop", "--all", "--force"]);
    }
    eprintln!("gc race: {ROUNDS} rounds of {STARTS} starts against {gcs} gc runs");
    assert!(
        bad.is_empty(),
        "{} bad outcomes:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A user's stop that lands while `health watch` heals a crash wins: the
/// stop succeeds and the instance stays stopped (the heal re-checks under
/// the lock before it starts anything).
#[test]
fn a_users_stop_mid_heal_wins() {
    require_docker!();
    const ROUNDS: usize = 20;
    let env = Env::new();
    health_support::monitor_config(&env, "");
    let _rm = RmHome(home_label(&env));
    let mut rng = Rng::seeded("a_users_stop_mid_heal_wins");
    let mut watch = health_support::Watch::spawn(&env, &[]);
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        let id = health_support::start(&env, &format!("mid{round}"), &[]);
        let out = docker_support::docker(&["kill", &common::cname(&id)]);
        assert!(out.status.success());
        std::thread::sleep(std::time::Duration::from_millis(rng.below(900)));
        let out = env.run(&["stop", &id]);
        if !out.status.success() {
            bad.push(format!(
                "round {round}: stop failed: {}",
                stderr(&out).trim()
            ));
        }
        // A stop that lands on a heal's start is handed to that starter,
        // which stops what it launched once it is recorded: wait (bounded)
        // for the instance to settle, however slow the machine. A heal that
        // ignored the stop settles as `running` and is caught below.
        let mut e = env.instance(&id);
        common::wait_until(std::time::Duration::from_secs(60), || {
            e = env.instance(&id);
            e["status"] != "initializing"
        });
        std::thread::sleep(std::time::Duration::from_millis(2500));
        e = env.instance(&id);
        if e["status"] != "stopped" || e["status_reason"] != "stopped by user" {
            bad.push(format!("round {round}: after the user's stop: {e}"));
        }
        if docker_support::container_state(&common::cname(&id)).as_deref() == Some("running") {
            bad.push(format!(
                "round {round}: {id} runs again after the user's stop"
            ));
        }
    }
    assert!(watch.running(), "health watch ended:\n{}", watch.output());
    assert!(
        bad.is_empty(),
        "{} bad outcomes:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert_consistent(&env, "after the stops mid-heal", true);
}

/// The same race through the API: concurrent `POST /api/v1/instances` for
/// projects with one basename each create their own instance.
#[test]
fn same_basename_projects_created_at_once_over_http_get_their_own_instances() {
    require_docker!();
    const ROUNDS: usize = 20;
    const AT_ONCE: usize = 3;
    let env = Env::new();
    fault_config(&env, 100, "[]");
    let _rm = RmHome(home_label(&env));
    let srv = api_support::Serve::start(&env);
    let tok = api_support::token(&env);
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        let name = env.unique(&format!("http{round}"));
        let dirs: Vec<_> = (0..AT_ONCE)
            .map(|k| env.project(&format!("h{k}/{name}")))
            .collect();
        let answers: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = dirs
                .iter()
                .map(|d| {
                    let req = srv
                        .req("POST", "/api/v1/instances")
                        .bearer(&tok)
                        .json(&serde_json::json!({"project_path": d, "mode": "claude"}));
                    s.spawn(move || req.send())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids = Vec::new();
        for (d, r) in dirs.iter().zip(&answers) {
            if r.status != 201 {
                bad.push(format!(
                    "round {round} {}: {} {}",
                    d.display(),
                    r.status,
                    r.text()
                ));
                continue;
            }
            let inst = r.json();
            if inst["project_path"] != d.to_str().unwrap() {
                bad.push(format!("round {round}: {} was handed {inst}", d.display()));
            }
            ids.push(inst["id"].as_str().unwrap_or("").to_owned());
        }
        ids.sort();
        ids.dedup();
        if ids.len() != answers.iter().filter(|r| r.status == 201).count() {
            bad.push(format!("round {round}: shared instances {ids:?}"));
        }
        let _ = env.run(&["stop", "--all", "--force"]);
    }
    assert!(
        bad.is_empty(),
        "{} bad outcomes:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
