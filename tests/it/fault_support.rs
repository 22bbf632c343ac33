//! Helpers shared by the fault-injection tests (`fault_*.rs`,
//! `zz_fault_engine_restart.rs`), on top of `common` and `docker_support`:
//! a small random source, the engine's view of one state home, and the
//! invariant "the registry says what the engine runs".
#![allow(dead_code)]

use crate::common::{test_image_tag, Env};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};

/// xorshift64*: enough randomness for delays and choices, seed printed so
/// that a failing run can be replayed (`AIS_FAULT_SEED=…`).
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str) -> Self {
        let seed = std::env::var("AIS_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: AIS_FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn seeded_with(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The `ai.home` label value of an env: its canonical state directory.
pub fn home_label(env: &Env) -> String {
    env.state()
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A container of ours as `docker ps -a` shows it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub name: String,
    pub state: String,
    pub instance: String,
}

/// Every container labelled with this state home, any state.
pub fn engine_containers(home: &str) -> Vec<Seen> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=ai.home={home}"),
            "--format",
            "{{.ID}}\t{{.Names}}\t{{.State}}\t{{.Label \"ai.instance\"}}",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Seen {
                id: f[0].to_owned(),
                name: f[1].to_owned(),
                state: f[2].to_owned(),
                instance: f.get(3).copied().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// Waits (up to 15 s) until the engine has finished what killed clients
/// asked of it: no container of this home is being removed or restarted,
/// and two listings half a second apart agree. Requests already sent go on
/// in the daemon after their client died; a check before they end would
/// see a transition, not a state.
pub fn settle_engine(home: &str) {
    let snap = || {
        let mut v: Vec<(String, String)> = engine_containers(home)
            .into_iter()
            .map(|c| (c.id, c.state))
            .collect();
        v.sort();
        v
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut last = snap();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = snap();
        let busy = now
            .iter()
            .any(|(_, s)| s == "removing" || s == "restarting");
        if (now == last && !busy) || std::time::Instant::now() > end {
            return;
        }
        last = now;
    }
}

/// Host port the container publishes for `port/tcp` on 127.0.0.1.
pub fn published_port(container: &str, port: u64) -> Option<u64> {
    let c = crate::common::inspect(container)?;
    let key = format!("{port}/tcp");
    let b = c["NetworkSettings"]["Ports"][&key]
        .as_array()?
        .first()?
        .clone();
    if b["HostIp"] != "127.0.0.1" {
        return None;
    }
    b["HostPort"].as_str()?.parse().ok()
}

/// What one consistency check found, for the report line.
#[derive(Debug, Default)]
pub struct Census {
    pub entries: usize,
    pub running: usize,
    pub by_status: BTreeMap<String, usize>,
    pub containers: usize,
}

/// The invariant of the fault tests: the registry says what the engine
/// runs for this home. Every live entry has a container in that state
/// (same container id) publishing its port on 127.0.0.1; every container of
/// this home belongs to an entry; no two live entries share a port or a
/// container; no `initializing` entry when `settled`. Panics with `what`
/// and the full picture otherwise.
pub fn assert_consistent(env: &Env, what: &str, settled: bool) -> Census {
    let home = home_label(env);
    let reg = env.registry();
    let empty = serde_json::Map::new();
    let entries = reg["instances"].as_object().unwrap_or(&empty);
    let seen = engine_containers(&home);
    let picture = || {
        format!(
            "{what}\nregistry: {}\nengine: {seen:#?}",
            serde_json::to_string_pretty(&reg).unwrap()
        )
    };
    let mut census = Census {
        entries: entries.len(),
        containers: seen.len(),
        ..Default::default()
    };
    let mut ports = HashSet::new();
    let mut cids = HashSet::new();
    for (id, e) in entries {
        let status = e["status"].as_str().unwrap_or("?").to_owned();
        *census.by_status.entry(status.clone()).or_default() += 1;
        let live = matches!(status.as_str(), "running" | "paused" | "initializing");
        if settled {
            assert_ne!(
                status,
                "initializing",
                "{id} left initializing: {}",
                picture()
            );
        }
        if let Some(cid) = e["container_id"].as_str() {
            assert!(
                cids.insert(cid.to_owned()),
                "{id}: container {cid} recorded twice: {}",
                picture()
            );
        }
        if !live {
            continue;
        }
        let port = e["port"].as_u64().unwrap();
        assert!(
            ports.insert(port),
            "port {port} shared by live entries ({id}): {}",
            picture()
        );
        if status == "initializing" {
            continue;
        }
        let c = seen.iter().find(|c| c.instance == *id);
        let c = c.unwrap_or_else(|| panic!("{id} is {status} without a container: {}", picture()));
        let want = if status == "paused" {
            "paused"
        } else {
            "running"
        };
        assert_eq!(c.state, want, "{id} is {status}: {}", picture());
        assert_eq!(
            e["container_id"].as_str(),
            Some(c.id.as_str()),
            "{id}: the registry records another container: {}",
            picture()
        );
        assert_eq!(
            published_port(&c.name, port),
            Some(port),
            "{id}: port {port} is not published by its container: {}",
            picture()
        );
        census.running += 1;
    }
    for c in &seen {
        let e = &entries.get(&c.instance);
        let Some(e) = e else {
            panic!("phantom container {} ({}): {}", c.name, c.state, picture());
        };
        let status = e["status"].as_str().unwrap_or("?");
        if status == "initializing" && !settled {
            continue;
        }
        if c.state == "running" || c.state == "paused" {
            assert!(
                status == "running" || status == "paused",
                "{} runs but its entry is {status}: {}",
                c.name,
                picture()
            );
        }
        assert!(
            e["container_id"].as_str() == Some(c.id.as_str()),
            "container {} ({}) is not the one its entry records: {}",
            c.name,
            c.state,
            picture()
        );
    }
    // Container names are unique per engine; one per instance is implied.
    census
}

/// Removes every container of a state home when dropped, even those the
/// registry forgot (the harness only removes what the registry lists).
pub struct RmHome(pub String);

impl Drop for RmHome {
    fn drop(&mut self) {
        let ids: Vec<String> = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=ai.home={}", self.0),
            ])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Config for the fault tests: the fake agent on Docker, quick stops,
/// small containers, room for `max_instances`.
pub fn fault_config(env: &Env, max_instances: u32, passthrough: &str) {
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"1s\"\nmax_instances = {max_instances}\n\n\
         [resources.memory]\nlimit = \"32Mi\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = {passthrough}\n"
    ));
}

/// The names of every network labelled with this state home.
pub fn home_networks(home: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "network",
            "ls",
            "--filter",
            &format!("label=ai.home={home}"),
            "--format",
            "{{.Name}}",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}
