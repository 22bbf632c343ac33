//! 20 concurrent `start --detach` processes against the real engine: every
//! one gets its own container, port and registry entry; nothing extra.

use crate::common;

use crate::common::{stderr, Env};
use crate::docker_support::*;
use std::collections::{BTreeSet, HashSet};

const N: usize = 20;

#[test]
fn twenty_concurrent_starts() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "max_instances = 30");
    let names: Vec<String> = (0..N).map(|i| env.unique(&format!("c{i:02}"))).collect();
    let dirs: Vec<_> = names.iter().map(|n| env.project(n)).collect();

    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            env.cmd()
                .current_dir(d)
                .args(["start", "--mode", "claude", "--detach"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (n, o) in names.iter().zip(&outs) {
        assert!(o.status.success(), "start {n}: {}", stderr(o));
    }

    let want: BTreeSet<String> = names.iter().map(|n| format!("{n}-claude")).collect();
    let reg = env.registry();
    let instances = reg["instances"].as_object().unwrap();
    let got: BTreeSet<String> = instances.keys().cloned().collect();
    assert_eq!(got, want, "exactly the 20 entries");
    let mut ports = HashSet::new();
    for (id, e) in instances {
        assert_eq!(e["status"], "running", "{id}: {e}");
        assert!(
            ports.insert(e["port"].as_u64().unwrap()),
            "port shared: {id}"
        );
        let c = common::inspect(&common::cname(id)).expect("container");
        assert_eq!(c["State"]["Status"], "running", "{id}");
        assert_eq!(c["Id"], e["container_id"], "{id}");
        let key = format!("{}/tcp", e["port"]);
        assert_eq!(
            c["HostConfig"]["PortBindings"][&key][0]["HostPort"],
            e["port"].to_string().as_str(),
            "{id}"
        );
    }
    assert_eq!(ports.len(), N);
    assert!(reg["reserved_ports"]
        .as_object()
        .is_none_or(|r| r.is_empty()));

    // Nothing extra on the engine for these ids, and `list` agrees.
    for id in &want {
        let found = containers_with_label("ai.instance", id);
        assert_eq!(found, vec![common::cname(id)], "containers for {id}");
    }
    let quiet = env.ok(&["list", "--status", "running", "--quiet"]);
    let listed: BTreeSet<String> = quiet.lines().map(str::to_owned).collect();
    assert_eq!(listed, want);
    assert!(!env.ok(&["list"]).contains("initializing"));

    // And they all stop: recorded and ended by the time it returns; the
    // batch's helper removes the containers right after.
    env.ok(&["stop", "--all", "--force"]);
    for id in &want {
        assert_eq!(env.instance(id)["status"], "stopped", "{id}");
        let c = common::inspect(&common::cname(id));
        assert!(
            c.as_ref().is_none_or(|c| c["State"]["Running"] == false),
            "{id}: {c:?}"
        );
    }
    let mut left = Vec::new();
    assert!(
        common::wait_until(std::time::Duration::from_secs(60), || {
            left = want
                .iter()
                .flat_map(|id| containers_with_label("ai.instance", id))
                .collect();
            left.is_empty()
        }),
        "containers left after stop --all: {left:?}"
    );
}

#[test]
fn concurrent_starts_of_one_project_make_one_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("same");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let children: Vec<_> = (0..5)
        .map(|_| {
            env.cmd()
                .current_dir(&proj)
                .args(["start", "--mode", "claude", "--detach"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut started = 0;
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
        if common::stdout(o).trim() == id {
            started += 1;
        } else {
            assert!(
                stderr(o).contains(&format!("{id} is already")),
                "{}",
                stderr(o)
            );
        }
    }
    assert_eq!(started, 1, "exactly one process starts the instance");
    assert_eq!(
        containers_with_label("ai.instance", &id),
        vec![common::cname(&id)]
    );
    let reg = env.registry();
    assert_eq!(reg["instances"].as_object().unwrap().len(), 1, "{reg}");
    assert_eq!(reg["instances"][&id]["status"], "running");
}
