//! Fault injection, part 1: 50 concurrent `start --detach` processes (one
//! per project) interleaved with 20 `stop` processes that pick ids as they
//! appear and 20 `list` processes (each a reconcile that may write). At the
//! end the registry is exactly what the engine runs for this state home:
//! nothing lost, duplicated or phantom, running ⇔ running, ports distinct.

use crate::common::{stderr, stdout, Env};
use crate::fault_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STARTERS: usize = 50;
const STOPPERS: usize = 20;
const LISTERS: usize = 20;

fn spawn(env: &Env, dir: Option<&std::path::Path>, args: &[&str]) -> Child {
    let mut c = env.cmd();
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// When a process ended, relative to the start of the storm.
struct Done {
    id: String,
    out: Output,
    ended: Duration,
}

#[test]
fn fifty_starts_with_concurrent_stops_and_lists_leave_a_true_registry() {
    // 50 starts at once: no other engine test beside it (their time limits
    // assume a machine that is not this loaded).
    require_docker!(alone);
    let env = Arc::new(Env::new());
    fault_config(&env, 100, "[]");
    let _rm = RmHome(home_label(&env));
    let mut rng = Rng::seeded("fault_concurrency");
    let names: Vec<String> = (0..STARTERS)
        .map(|i| env.unique(&format!("f{i:02}")))
        .collect();
    let dirs: Vec<_> = names.iter().map(|n| env.project(n)).collect();
    let want: BTreeSet<String> = names.iter().map(|n| format!("{n}-claude")).collect();

    let t0 = Instant::now();
    // Starters: all at once, each waited for on its own thread so that the
    // end time of every process is known.
    let starters: Vec<_> = dirs
        .iter()
        .zip(&names)
        .map(|(d, n)| {
            let child = spawn(&env, Some(d), &["start", "--mode", "claude", "--detach"]);
            let id = format!("{n}-claude");
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                Done {
                    id,
                    out,
                    ended: t0.elapsed(),
                }
            })
        })
        .collect();

    // Stoppers: poll the registry and stop ids as they appear, some at
    // once (likely still `initializing`), some later (running).
    let picked: Arc<Mutex<Vec<(String, Duration)>>> = Arc::default();
    let stopper_seed = rng.below(u64::MAX);
    let stoppers = {
        let env = Arc::clone(&env);
        let picked = Arc::clone(&picked);
        std::thread::spawn(move || {
            let mut rng = Rng::seeded_with(stopper_seed);
            let mut running = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while picked.lock().unwrap().len() < STOPPERS && Instant::now() < deadline {
                let reg = env.registry();
                let visible: Vec<String> = reg["instances"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                // Half the time only a running one will do.
                let want_running = rng.below(2) == 0;
                let fresh: Vec<String> = visible
                    .into_iter()
                    .filter(|id| !picked.lock().unwrap().iter().any(|(p, _)| p == id))
                    .filter(|id| !want_running || reg["instances"][id]["status"] == "running")
                    .collect();
                if !fresh.is_empty() {
                    let id = fresh[rng.below(fresh.len() as u64) as usize].clone();
                    let status = reg["instances"][&id]["status"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned();
                    picked.lock().unwrap().push((id.clone(), t0.elapsed()));
                    let child = spawn(&env, None, &["stop", &id]);
                    running.push(std::thread::spawn(move || {
                        let out = child.wait_with_output().unwrap();
                        (
                            Done {
                                id,
                                out,
                                ended: t0.elapsed(),
                            },
                            status,
                        )
                    }));
                }
                std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
            }
            running
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };

    // Listers: spread over the storm.
    let lister_seed = rng.below(u64::MAX);
    let listers = {
        let env = Arc::clone(&env);
        std::thread::spawn(move || {
            let mut rng = Rng::seeded_with(lister_seed);
            let mut outs = Vec::new();
            let mut kids = Vec::new();
            for _ in 0..LISTERS {
                std::thread::sleep(Duration::from_millis(rng.below(400)));
                let args: &[&str] = if rng.below(2) == 0 {
                    &["list"]
                } else {
                    &["list", "--json"]
                };
                kids.push(spawn(&env, None, args));
            }
            for k in kids {
                outs.push(k.wait_with_output().unwrap());
            }
            outs
        })
    };

    let starts: Vec<Done> = starters.into_iter().map(|h| h.join().unwrap()).collect();
    let stops = stoppers.join().unwrap();
    let lists = listers.join().unwrap();
    let storm = t0.elapsed();

    // A start that a stop overtook says so (exit 5); nothing else fails.
    let overtaken = |d: &Done| {
        d.out.status.code() == Some(5) && stderr(&d.out).contains("stopped while it was starting")
    };
    let failed: Vec<String> = starts
        .iter()
        .filter(|d| !d.out.status.success() && !overtaken(d))
        .map(|d| format!("{}: {:?} {}", d.id, d.out.status.code(), stderr(&d.out)))
        .collect();
    assert!(
        failed.is_empty(),
        "starts failed:\n{}\nstops: {:?}\nregistry: {}",
        failed.join("\n"),
        stops
            .iter()
            .map(|(d, s)| (d.id.as_str(), s.as_str(), d.ended))
            .collect::<Vec<_>>(),
        serde_json::to_string_pretty(&env.registry()).unwrap()
    );
    for d in &starts {
        let said = stdout(&d.out);
        let err = stderr(&d.out);
        assert!(
            said.trim() == d.id || overtaken(d),
            "{}: start printed {said:?} / {err}",
            d.id
        );
    }
    for (d, _) in &stops {
        assert!(
            d.out.status.success(),
            "stop {}: {:?} {}",
            d.id,
            d.out.status.code(),
            stderr(&d.out)
        );
    }
    for o in &lists {
        assert!(o.status.success(), "list: {}", stderr(o));
        assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
    }
    assert_eq!(stops.len(), STOPPERS, "the stoppers found enough ids");

    // The registry as the storm left it, before anything reconciles again.
    let reg = env.registry();
    let got: BTreeSet<String> = reg["instances"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(got, want, "exactly one entry per project");
    env.ok(&["registry", "check"]);
    let census = assert_consistent(&env, "after the storm", true);
    // A stop that reported success is not undone by the start it raced:
    // the instance is not running afterwards.
    let stopped: BTreeMap<&str, &str> = stops
        .iter()
        .map(|(d, status)| (d.id.as_str(), status.as_str()))
        .collect();
    for (id, when) in &stopped {
        let e = env.instance(id);
        assert_ne!(
            e["status"], "running",
            "{id}: `stop` (issued while {when}) said stopped, but it runs: {e}"
        );
    }
    for id in want.iter().filter(|id| !stopped.contains_key(id.as_str())) {
        let e = env.instance(id);
        assert_eq!(e["status"], "running", "{id}: {e}");
    }
    assert_eq!(census.running, STARTERS - STOPPERS);
    assert!(
        reg["reserved_ports"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "no reservation left behind: {}",
        reg["reserved_ports"]
    );

    // One more reconcile changes nothing: the registry already was true.
    let before = std::fs::read(env.state().join("registry.json")).unwrap();
    env.ok(&["list"]);
    assert_eq!(
        std::fs::read(env.state().join("registry.json")).unwrap(),
        before,
        "a reconcile after the storm still had something to correct"
    );
    let mid = stops.iter().filter(|(_, s)| s == "initializing").count();
    let overtaken_n = starts.iter().filter(|d| overtaken(d)).count();
    eprintln!(
        "fault_concurrency: {STARTERS} starts, {STOPPERS} stops ({mid} while initializing), \
         {LISTERS} lists in {:.1}s; {overtaken_n} starts overtaken by their stop; {} running, {:?}",
        storm.as_secs_f64(),
        census.running,
        census.by_status
    );
    let _ = env.run(&["stop", "--all", "--force"]);
}

/// A hundred starts at once, nothing else: every one runs (the engine
/// makes their networks one at a time, which is a queue to wait in, not a
/// failure), and `stop --all` then `gc` leave nothing of them behind.
#[test]
fn a_hundred_concurrent_starts_all_run_and_leave_nothing_when_stopped() {
    const N: usize = 100;
    require_docker!(alone);
    let env = Env::new();
    fault_config(&env, N as u32 + 10, "[]");
    let home = home_label(&env);
    let _rm = RmHome(home.clone());
    let names: Vec<String> = (0..N).map(|i| env.unique(&format!("h{i:03}"))).collect();
    let kids: Vec<(String, Child)> = names
        .iter()
        .map(|n| {
            let dir = env.project(n);
            (
                format!("{n}-claude"),
                spawn(&env, Some(&dir), &["start", "--mode", "claude", "--detach"]),
            )
        })
        .collect();
    let failed: Vec<String> = kids
        .into_iter()
        .map(|(id, c)| (id, c.wait_with_output().unwrap()))
        .filter(|(_, o)| !o.status.success())
        .map(|(id, o)| format!("{id}: {:?} {}", o.status.code(), stderr(&o)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {N} starts failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let census = assert_consistent(&env, "after a hundred starts", true);
    assert_eq!(census.running, N);
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "stop --all: {}", stderr(&out));
    env.ok(&["gc"]);
    assert!(
        engine_containers(&home).is_empty(),
        "containers left: {:?}",
        engine_containers(&home)
    );
    // Only the home's pool of ready networks (4 by default) stays.
    let left = home_networks(&home);
    assert!(
        left.len() <= 4 && left.iter().all(|n| n.starts_with("ai-pool-")),
        "networks left: {left:?}"
    );
}

/// A call that takes longer than `global.engine_timeout` is reported as a
/// timeout of that call: the engine answered (it is busy), so neither
/// "not answering" nor the hint to start it. The failed start leaves
/// nothing behind.
#[test]
fn an_engine_call_past_its_timeout_is_reported_as_that_calls_timeout() {
    require_docker!();
    let env = Env::new();
    let home = home_label(&env);
    let _rm = RmHome(home.clone());
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nengine_timeout = \"1ms\"\n\n\
         [agents.claude]\nimage = \"{}\"\n",
        crate::common::test_image_tag()
    ));
    let dir = env.project(&env.unique("slow"));
    let out = env.run_in(&dir, &["start", "--mode", "claude", "--detach"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("timed out after 1 ms"), "{err}");
    // It names the call that timed out.
    assert!(
        ["inspect", "create", "list", "start", "remove"]
            .iter()
            .any(|call| err.contains(&format!("{call} "))),
        "{err}"
    );
    assert!(!err.contains("not answering"), "{err}");
    assert!(!err.contains("start the engine"), "{err}");
    assert!(
        err.contains("engine_timeout"),
        "the hint names the setting: {err}"
    );
    // Nothing of the failed start is left (the engine may finish a create
    // it was asked for after the caller stopped waiting: gc reaps that,
    // given the time to list).
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\n\n[agents.claude]\nimage = \"{}\"\n",
        crate::common::test_image_tag()
    ));
    env.ok(&["gc"]);
    assert!(engine_containers(&home).is_empty());
    assert_eq!(home_networks(&home), Vec::<String>::new());
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
}
