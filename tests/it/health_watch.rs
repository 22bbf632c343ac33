//! `health watch` against the real engine: a killed container shows in the
//! registry within a second and is healed; an agent that keeps crashing is
//! restarted `max_retries` times, `retry_delay` apart, then left in `error`
//! with a RECOVERY_FAILED alert; what the user stops stays stopped; ctrl-c
//! ends the watch at once, and nothing else does.

use crate::common;

use crate::common::{stderr, wait_until, Env};
use crate::health_support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Stops the watch with SIGINT: it must exit 0, quickly.
fn interrupt(watch: &mut Watch) {
    let (status, took) = watch.interrupt();
    let status =
        status.unwrap_or_else(|| panic!("health watch ignored SIGINT:\n{}", watch.output()));
    assert!(
        status.success(),
        "health watch exited {status:?}:\n{}",
        watch.output()
    );
    assert!(
        took < Duration::from_secs(2),
        "health watch took {took:?} to stop"
    );
    eprintln!("health watch stopped {took:?} after SIGINT");
    assert!(
        watch.output().contains("stopped watching"),
        "{}",
        watch.output()
    );
}

/// Index of the first event at or after `from` with this component and
/// message.
fn find(evs: &[Value], from: usize, component: &str, msg: &str) -> Option<usize> {
    (from..evs.len()).find(|&i| evs[i]["component"] == component && message(&evs[i]) == msg)
}

#[test]
fn killed_container_shows_within_a_second_and_is_healed() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "killme", &[]);
    let old = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = Watch::spawn(&env, &[]);
    let seen_before = events_of(&env, &id).len();

    let registry = env.state().join("registry.json");
    let t0 = Instant::now();
    let out = docker_out(&["kill", &common::cname(&id)]);
    assert!(out.status.success(), "docker kill: {}", stderr(&out));
    let killed = t0.elapsed();

    // Poll the file itself, as the prompt does, every 50 ms.
    let mut noticed = None;
    while t0.elapsed() < Duration::from_secs(5) {
        let reg: Value = std::fs::read_to_string(&registry)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let inst = &reg["instances"][&id];
        if inst["status"] != "running" || inst["container_id"] != old.as_str() {
            noticed = Some((t0.elapsed(), inst["status"].clone()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (at, status) =
        noticed.unwrap_or_else(|| panic!("still running 5 s after the kill:\n{}", watch.output()));
    eprintln!(
        "kill -> registry not running: {at:?} after issuing `docker kill` ({:?} after it returned; {killed:?} for the kill), status {status}",
        at.saturating_sub(killed)
    );
    assert!(
        at.saturating_sub(killed) <= Duration::from_secs(1),
        "registry showed the kill {at:?} after it (kill took {killed:?})"
    );

    // Healed: running again in a new container, and counted.
    let healed = wait_until(Duration::from_secs(10), || {
        let i = env.instance(&id);
        i["status"] == "running"
            && i["container_id"].as_str().is_some_and(|c| c != old)
            && i["restarts"].as_u64().unwrap_or(0) >= 1
    });
    let inst = env.instance(&id);
    assert!(healed, "not healed: {inst}\n{}", watch.output());
    assert!(inst["restarts"].as_u64().unwrap() >= 1, "{inst}");
    let c = common::inspect(&common::cname(&id)).unwrap();
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["Id"], inst["container_id"]);

    // The story in the event log, in order.
    let evs: Vec<Value> = events_of(&env, &id).split_off(seen_before);
    let corrected =
        find(&evs, 0, "reconcile", "instance state corrected").expect("no reconcile event");
    assert_eq!(
        evs[corrected]["metadata"]["status"], "error",
        "{}",
        evs[corrected]
    );
    assert!(
        evs[corrected]["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("137"),
        "{}",
        evs[corrected]
    );
    let restarting = find(&evs, corrected, "health", "restarting unhealthy instance")
        .unwrap_or_else(|| panic!("no restart after the correction: {evs:#?}"));
    assert_eq!(evs[restarting]["metadata"]["attempt"], 1);
    find(&evs, restarting, "runtime", "instance started")
        .unwrap_or_else(|| panic!("no start after the restart: {evs:#?}"));
    assert!(
        watch.output().contains(&format!("{id}: restarted (1/3)")),
        "{}",
        watch.output()
    );

    interrupt(&mut watch);
}

#[test]
fn crash_loop_gives_up_after_max_retries() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "crashy", &[]);
    // Every start by the watch passes FAKE_AGENT_EXIT on: the agent exits
    // with 1 right away, so no restart can help.
    let mut watch = Watch::spawn(&env, &[("FAKE_AGENT_EXIT", "1")]);
    let seen_before = events_of(&env, &id).len();
    let out = docker_out(&["kill", &common::cname(&id)]);
    assert!(out.status.success(), "docker kill: {}", stderr(&out));

    let gave_up = wait_until(Duration::from_secs(60), || {
        let i = env.instance(&id);
        i["status"] == "error"
            && i["status_reason"]
                .as_str()
                .is_some_and(|r| r.contains("recovery"))
            && alert_runs(&env).iter().any(|r| r.kind == "RECOVERY_FAILED")
            && watch.output().contains("recovery failed after 3 restarts")
    });
    let inst = env.instance(&id);
    assert!(gave_up, "never gave up: {inst}\n{}", watch.output());
    assert!(
        inst["status_reason"].as_str().unwrap().contains("3"),
        "{inst}"
    );

    let evs: Vec<Value> = events_of(&env, &id).split_off(seen_before);
    let starts = evs
        .iter()
        .filter(|e| e["component"] == "runtime" && message(e) == "instance started")
        .count();
    assert_eq!(starts, 3, "{evs:#?}");
    // Each try begins retry_delay after the one before (a start itself
    // takes a varying fraction of a second).
    let tries: Vec<&Value> = evs
        .iter()
        .filter(|e| message(e) == "restarting unhealthy instance")
        .collect();
    let attempts: Vec<u64> = tries
        .iter()
        .map(|e| e["metadata"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{evs:#?}");
    let gaps: Vec<f64> = tries
        .windows(2)
        .map(|w| (time_of(w[1]) - time_of(w[0])).num_milliseconds() as f64 / 1000.0)
        .collect();
    eprintln!(
        "tries {} s apart (retry_delay = 1s)",
        gaps.iter()
            .map(|g| format!("{g:.3}"))
            .collect::<Vec<_>>()
            .join(" s, ")
    );
    // Backing off exponentially from the end of each try: at least
    // retry_delay before the second try, at least twice that before the
    // third (a start's own time comes on top).
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(gaps[0] >= 0.99, "first retry before retry_delay: {gaps:?}");
    assert!(
        gaps[1] >= 1.99,
        "second retry before twice retry_delay: {gaps:?}"
    );

    // The alert: in the event log and through alerts.command, once.
    let failed = alert_events(&env, &id, "RECOVERY_FAILED");
    assert_eq!(failed.len(), 1, "{evs:#?}");
    assert_eq!(failed[0]["level"], "ERROR");
    let runs: Vec<_> = alert_runs(&env)
        .into_iter()
        .filter(|r| r.kind == "RECOVERY_FAILED")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        (runs[0].level.as_str(), runs[0].instance.as_str()),
        ("critical", id.as_str())
    );

    // Given up for good: nothing restarts it any more.
    let restarts = inst["restarts"].clone();
    std::thread::sleep(Duration::from_secs(3));
    let after = env.instance(&id);
    assert_eq!(after["status"], "error", "{after}");
    assert_eq!(after["restarts"], restarts, "{after}");
    let later: Vec<Value> = events_of(&env, &id).split_off(seen_before);
    assert_eq!(
        later
            .iter()
            .filter(|e| message(e) == "instance started")
            .count(),
        3,
        "{later:#?}"
    );
    assert_eq!(alert_events(&env, &id, "RECOVERY_FAILED").len(), 1);
    let out = env.run(&["health", "check", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an instance in error is unhealthy"
    );

    interrupt(&mut watch);
}

#[test]
fn what_the_user_stops_stays_stopped() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "byuser", &[]);
    let mut watch = Watch::spawn(&env, &[]);

    let out = env.run(&["stop", &id]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    // And a start stopped right away (its container barely created when
    // the watch looks).
    let quick = start(&env, "quick", &[]);
    let out = env.run(&["stop", &quick]);
    assert!(out.status.success(), "stop: {}", stderr(&out));

    std::thread::sleep(Duration::from_secs(3));
    for id in [&id, &quick] {
        let inst = env.instance(id);
        assert_eq!(inst["status"], "stopped", "{inst}\n{}", watch.output());
        assert_eq!(inst["status_reason"], "stopped by user", "{inst}");
        assert_eq!(inst["restarts"].as_u64().unwrap_or(0), 0, "{inst}");
        assert!(
            common::inspect(&common::cname(id)).is_none(),
            "container of {id} still there"
        );
        let evs = events_of(&env, id);
        assert!(
            !evs.iter()
                .any(|e| message(e) == "restarting unhealthy instance"),
            "{evs:#?}"
        );
    }
    assert!(!watch.output().contains("restarted"), "{}", watch.output());

    interrupt(&mut watch);
}

#[test]
fn failing_healthcheck_gets_the_instance_restarted() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "unwell", &[]);
    let old = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = Watch::spawn(&env, &[]);

    // The image's HEALTHCHECK fails (it looks for /tmp/unhealthy every 1 s).
    exec(&id, "touch /tmp/unhealthy");
    let healed = wait_until(Duration::from_secs(15), || {
        let i = env.instance(&id);
        i["status"] == "running"
            && i["container_id"].as_str().is_some_and(|c| c != old)
            && i["restarts"] == 1
    });
    let inst = env.instance(&id);
    assert!(healed, "not restarted: {inst}\n{}", watch.output());
    assert_eq!(inst["restarts"], 1, "{inst}");
    let evs = events_of(&env, &id);
    let restarting = evs
        .iter()
        .find(|e| message(e) == "restarting unhealthy instance")
        .unwrap_or_else(|| panic!("{evs:#?}"));
    assert!(
        restarting["metadata"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("healthcheck"),
        "{restarting}"
    );
    assert!(
        watch.output().contains(&format!("{id}: unhealthy")),
        "{}",
        watch.output()
    );

    // The new container starts well: it stays, and checks healthy.
    assert!(wait_until(Duration::from_secs(10), || docker_health(&id)
        .as_deref()
        == Some("healthy")));
    std::thread::sleep(Duration::from_millis(1500));
    let now = env.instance(&id);
    assert_eq!(
        now["container_id"], inst["container_id"],
        "restarted again: {now}"
    );
    assert_eq!(now["health"]["status"], "healthy", "{now}");

    interrupt(&mut watch);
}

/// An agent that stays unhealthy through every restart: when healing gives
/// up, its container is stopped (output kept), not left running in `error`
/// where nothing would ever stop it.
#[test]
fn giving_up_stops_the_container_and_keeps_its_output() {
    require_docker!();
    let env = Env::new();
    // Unhealthy from the start, every time (the image's HEALTHCHECK looks
    // for /tmp/unhealthy).
    monitor_config(
        &env,
        r#"command = ["sh", "-c", "touch /tmp/unhealthy; exec fake-agent"]"#,
    );
    let id = start(&env, "sickly", &[]);
    let mut watch = Watch::spawn(&env, &[]);
    let gave_up = wait_until(Duration::from_secs(60), || {
        env.instance(&id)["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("recovery failed"))
    });
    let inst = env.instance(&id);
    assert!(gave_up, "never gave up: {inst}\n{}", watch.output());
    assert_eq!(inst["status"], "error", "{inst}");
    assert!(
        wait_until(Duration::from_secs(10), || common::inspect(&common::cname(
            &id
        ))
        .is_none_or(|c| c["State"]["Status"] != "running")),
        "the container still runs after healing gave up: {inst}\n{}",
        watch.output()
    );
    let logs = env.ok(&["logs", &id]);
    assert!(logs.contains("fake-agent ready"), "output kept: {logs:?}");
    assert!(
        wait_until(Duration::from_secs(5), || watch
            .output()
            .contains("stopped it")),
        "the watch says it stopped it: {}",
        watch.output()
    );
    // Nothing lists it as live, and a start begins afresh.
    assert!(!env
        .ok(&["list", "--quiet", "--status", "running"])
        .contains(&id));
    interrupt(&mut watch);
}

/// `stop` and `rm` act on an entry whatever its status: an `error` entry
/// whose container still runs (as healing that gave up used to leave it)
/// is stopped and recorded, and `stop --all` includes it.
#[test]
fn stop_works_on_an_entry_in_error_whose_container_runs() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let one = start(&env, "errone", &[]);
    let two = start(&env, "errtwo", &[]);
    let path = env.state().join("registry.json");
    let mut reg = env.registry();
    for id in [&one, &two] {
        reg["instances"][id]["status"] = "error".into();
        reg["instances"][id]["status_reason"] = "recovery failed after 3 restarts".into();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&reg).unwrap()).unwrap();

    let out = env.run(&["stop", &one]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::inspect(&common::cname(&one)).is_none(),
        "{one} still there"
    );
    assert_eq!(
        env.instance(&one)["status"],
        "stopped",
        "{}",
        env.instance(&one)
    );
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::inspect(&common::cname(&two)).is_none(),
        "stop --all left {two}: {}",
        stderr(&out)
    );
    assert_eq!(env.instance(&two)["status"], "stopped");
}

/// A briefly unreadable registry does not end `health watch`: it says so,
/// backs off, and goes on healing.
#[test]
fn watch_carries_on_through_transient_errors() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "steady", &[]);
    let mut watch = Watch::spawn(&env, &[]);
    let path = env.state().join("registry.json");
    let old = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{ not json").unwrap();
    // An engine event while the registry is unreadable, and checks.
    let out = docker_out(&["kill", &common::cname(&id)]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        watch.running(),
        "health watch ended on an unreadable registry:\n{}",
        watch.output()
    );
    std::fs::write(&path, &good).unwrap();
    let healed = wait_until(Duration::from_secs(20), || {
        let i = env.instance(&id);
        i["status"] == "running" && i["container_id"].as_str().is_some_and(|c| c != old)
    });
    assert!(
        healed,
        "not healed after the registry came back:\n{}\nevents: {:#?}\nentry: {}",
        watch.output(),
        events(&env),
        env.instance(&id)
    );
    assert!(
        watch.output().contains("registry.json"),
        "the error was said: {}",
        watch.output()
    );
    interrupt(&mut watch);
}

/// The README's word: a container removed by hand (`docker rm -f`) counts
/// as stopped by its user, and is not restarted.
#[test]
fn a_container_removed_by_hand_is_not_healed() {
    require_docker!();
    let env = Env::new();
    monitor_config(&env, "");
    let id = start(&env, "byhand", &[]);
    let mut watch = Watch::spawn(&env, &[]);
    let out = docker_out(&["rm", "-f", &common::cname(&id)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(5), || env.instance(&id)
        ["status"]
        == "stopped"));
    std::thread::sleep(Duration::from_secs(4));
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "stopped", "{inst}\n{}", watch.output());
    assert_eq!(inst["restarts"].as_u64().unwrap_or(0), 0, "{inst}");
    assert!(common::inspect(&common::cname(&id)).is_none());
    interrupt(&mut watch);
}
