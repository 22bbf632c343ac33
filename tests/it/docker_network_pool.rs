//! The pool of ready networks (`networking.pool`): a start takes a network
//! made ahead, a stop gives it back, and `gc` reaps what a start killed
//! midway left (its network, container, claim) without touching a live
//! instance.

use crate::common::{home_label, inspect, stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use crate::fault_support::{engine_containers, home_networks, settle_engine};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

/// The network of its own a container is on (its `ai.network` label).
fn own_network(container: &str) -> String {
    inspect(container).unwrap()["Config"]["Labels"]["ai.network"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The container running an instance.
fn container_of(env: &Env, id: &str) -> String {
    env.instance(id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn files(env: &Env, which: &str) -> BTreeSet<String> {
    std::fs::read_dir(env.state().join("net-pool").join(which))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn containers_on(net: &str) -> usize {
    let o = docker(&["network", "inspect", "-f", "{{len .Containers}}", net]);
    stdout(&o).trim().parse().unwrap_or(0)
}

fn start(env: &Env, name: &str) -> String {
    let out = env.run_in(
        &env.project(&env.unique(name)),
        &["start", "--mode", "claude", "--detach"],
    );
    assert!(out.status.success(), "start {name}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn a_start_takes_a_ready_network_and_its_stop_gives_it_back() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let home = home_label(env.state());
    let a = start(&env, "first");
    let net_a = own_network(&container_of(&env, &a));
    assert!(net_a.starts_with("ai-pool-"), "{net_a}");
    // The start left the pool short: a helper fills it (4 by default).
    assert!(
        wait_until(Duration::from_secs(60), || files(&env, "ready").len() == 4),
        "pool filled: {:?}",
        files(&env, "ready")
    );
    let ready = files(&env, "ready");
    for n in &ready {
        assert_eq!(containers_on(n), 0, "{n} is ready, so unused");
    }
    // The next start takes one of them.
    let b = start(&env, "second");
    let net_b = own_network(&container_of(&env, &b));
    assert!(ready.contains(&net_b), "{net_b} not one of {ready:?}");
    assert_ne!(net_a, net_b);
    // A stop gives its network back (the pool being short by one).
    assert!(
        wait_until(Duration::from_secs(60), || files(&env, "ready").len() == 4),
        "refilled"
    );
    env.ok(&["stop", &b]);
    let left = home_networks(&home);
    assert!(left.contains(&net_a), "A's network stays: {left:?}");
    assert!(
        files(&env, "ready").len() <= 4 && containers_on(&net_b) == 0,
        "B's network is back in the pool, or removed with the pool full"
    );
    // gc keeps the ready ones and A's, and A runs on.
    env.ok(&["gc"]);
    assert_eq!(env.instance(&a)["status"], "running");
    assert_eq!(containers_on(&net_a), 1);
    let ready = files(&env, "ready");
    assert!(ready.len() <= 4);
    for n in home_networks(&home) {
        assert!(n == net_a || ready.contains(&n), "{n} kept but not ready");
    }
    env.ok(&["stop", "--all"]);
}

#[test]
fn gc_reaps_what_killed_starts_left_and_leaves_a_live_instance_alone() {
    require_docker!();
    let _strays = crate::common::gc_turn();
    let env = Env::new();
    docker_config(&env, "");
    let home = home_label(env.state());
    let live = start(&env, "live");
    let live_cid = container_of(&env, &live);
    let live_net = own_network(&live_cid);
    // Starts killed at moments spread over their course: before, while and
    // after their network and container are made.
    for (round, ms) in [30u64, 80, 150, 250, 400, 600, 900].iter().enumerate() {
        let dir = env.project(&env.unique(&format!("killed{round}")));
        let mut child = env
            .cmd()
            .current_dir(&dir)
            .args(["start", "--mode", "claude", "--detach"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    settle_engine(&home);
    // Fill helpers started by the live start may still be making networks.
    wait_until(Duration::from_secs(60), || files(&env, "making").is_empty());
    env.ok(&["gc"]);
    let reg = env.registry();
    let ids: Vec<&String> = reg["instances"].as_object().unwrap().keys().collect();
    for id in &ids {
        let e = &reg["instances"][id.as_str()];
        assert_ne!(e["status"], "initializing", "{id}: {e}");
    }
    // Of the killed starts: no container (those that got as far as
    // running are recorded and stopped now by the user's `stop --all`,
    // below); of the live one: all, untouched.
    assert_eq!(env.instance(&live)["status"], "running");
    assert_eq!(container_of(&env, &live), live_cid);
    assert_eq!(containers_on(&live_net), 1);
    let running: BTreeSet<String> = reg["instances"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["status"] == "running")
        .filter_map(|e| e["container_id"].as_str().map(str::to_owned))
        .collect();
    for c in engine_containers(&home) {
        assert!(
            running.contains(&c.id),
            "a container no running entry records is left: {c:?}"
        );
    }
    let ready = files(&env, "ready");
    assert!(ready.len() <= 4, "{ready:?}");
    for n in home_networks(&home) {
        assert!(
            containers_on(&n) == 1 || ready.contains(&n),
            "network {n} left: neither in use nor ready"
        );
    }
    let claimed = files(&env, "claimed");
    for f in &claimed {
        let id = f.split_once('@').map(|(_, id)| id).unwrap_or("");
        assert_eq!(
            reg["instances"][id]["status"], "running",
            "a claim of an instance that does not run is left: {f}"
        );
    }
    env.ok(&["stop", "--all"]);
}

#[test]
fn gc_removes_a_stopped_instance_container_a_killed_helper_left() {
    require_docker!();
    let _strays = crate::common::gc_turn();
    let env = Env::new();
    docker_config(&env, "");
    let id = start(&env, "left");
    let cid = container_of(&env, &id);
    let net = own_network(&cid);
    // What `stop --all` leaves when its helper is killed before removing
    // the container: the end recorded (output kept), the container ended.
    let mut reg = env.registry();
    reg["instances"][id.as_str()]["status"] = "stopped".into();
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec_pretty(&reg).unwrap(),
    )
    .unwrap();
    docker(&["stop", "-t", "5", &cid]);
    assert!(inspect(&cid).is_some());
    // `list` leaves it alone (the entry says stopped already).
    env.ok(&["list"]);
    assert!(inspect(&cid).is_some());
    env.ok(&["gc"]);
    assert!(inspect(&cid).is_none(), "the container left is removed");
    assert_eq!(containers_on(&net), 0);
    assert!(
        !files(&env, "claimed").iter().any(|f| f.starts_with(&net)),
        "its network is no longer claimed: {:?}",
        files(&env, "claimed")
    );
    assert_eq!(env.instance(&id)["status"], "stopped");
    // It starts again.
    let again = start(&env, "left");
    assert_ne!(again, "");
    env.ok(&["stop", "--all"]);
}
