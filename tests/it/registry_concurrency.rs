//! The registry under concurrent writers and writers killed mid-write:
//! real `ai-sessctl` processes, no engine needed.

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn_quiet(env: &Env, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `reserved_ports` as port -> instance id, asserting its shape.
fn reservations(reg: &serde_json::Value) -> BTreeMap<u16, String> {
    let Some(map) = reg.get("reserved_ports") else {
        return BTreeMap::new();
    };
    map.as_object()
        .expect("reserved_ports is an object")
        .iter()
        .map(|(port, r)| {
            let port: u16 = port.parse().expect("reserved port key is a number");
            let id = r["instance"]
                .as_str()
                .expect("reservation names an instance");
            assert!(r["at"].is_string(), "reservation has a timestamp: {r}");
            (port, id.to_owned())
        })
        .collect()
}

fn check_ok(env: &Env) -> String {
    let out = env.run(&["registry", "check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "registry check failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn fifty_concurrent_allocations_get_fifty_distinct_ports() {
    let env = Env::new();
    let ids: Vec<String> = (0..50).map(|i| format!("p{i}-claude")).collect();
    // Start all 50 before waiting for any, so they really overlap.
    let children: Vec<Child> = ids
        .iter()
        .map(|id| spawn_quiet(&env, &["port", "alloc", "--for", id]))
        .collect();
    let mut printed = BTreeMap::new();
    for (id, child) in ids.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "port alloc --for {id} failed: {}",
            stderr(&out)
        );
        let port: u16 = stdout(&out)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port alloc printed {:?}", stdout(&out)));
        assert!(
            (env.port_base..env.port_base + 100).contains(&port),
            "port {port} is outside the configured range {}-{}",
            env.port_base,
            env.port_base + 99
        );
        printed.insert(id.clone(), port);
    }
    let distinct: BTreeSet<u16> = printed.values().copied().collect();
    assert_eq!(
        distinct.len(),
        50,
        "two processes got the same port: {printed:?}"
    );

    // Every reservation was recorded (none lost to a concurrent writer),
    // under the port that process printed.
    let reserved = reservations(&env.registry());
    assert_eq!(
        reserved.len(),
        50,
        "registry lost reservations: {reserved:?}"
    );
    for (id, port) in &printed {
        assert_eq!(reserved.get(port), Some(id), "reservation of {id}");
    }
    let report = check_ok(&env);
    assert!(report.contains("OK"), "{report}");
    // Clean exits leave no temp files behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn readers_never_see_a_half_written_registry() {
    let env = Env::new();
    env.ok(&["port", "alloc", "--for", "first-claude"]);
    // Writers and lock-free readers interleaved.
    let mut children = Vec::new();
    for i in 0..20 {
        let id = format!("w{i}-gemini");
        children.push((
            "writer",
            spawn_quiet(&env, &["port", "alloc", "--for", &id]),
        ));
        children.push(("reader", spawn_quiet(&env, &["list", "--json"])));
        children.push(("checker", spawn_quiet(&env, &["registry", "check"])));
    }
    for (role, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{role} failed ({:?}): {}",
            out.status.code(),
            stderr(&out)
        );
        if role == "reader" {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!("list --json printed invalid JSON ({e}): {}", stdout(&out))
            });
            assert!(v.is_array());
        }
    }
    assert_eq!(reservations(&env.registry()).len(), 21);
}

/// xorshift64*: enough randomness for kill delays without a dependency.
struct Rng(u64);
impl Rng {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn writers_killed_at_random_moments_never_corrupt_the_registry() {
    let env = Env::new();
    // State that must survive every crash.
    let anchor_port: u16 = env
        .ok(&["port", "alloc", "--for", "anchor-claude"])
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    let mut rng = Rng::seeded();
    let (mut killed, mut finished) = (0, 0);
    for round in 0..200 {
        // A bounded set of ids: each new reservation replaces the id's old
        // one, so the 100-port range never runs out.
        let id = format!("k{}-claude", round % 20);
        let args: Vec<&str> = if round % 5 == 4 {
            vec!["port", "alloc"] // a write that records nothing new
        } else {
            vec!["port", "alloc", "--for", &id]
        };
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(15_001)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        match status.signal() {
            Some(9) => killed += 1,
            _ => finished += 1,
        }

        let path = env.state().join("registry.json");
        if !path.exists() {
            continue; // killed before the first write ever happened
        }
        check_ok(&env);
        let reg = env.registry();
        let reserved = reservations(&reg);
        assert_eq!(
            reserved.get(&anchor_port).map(String::as_str),
            Some("anchor-claude"),
            "round {round}: earlier state lost: {reg}"
        );
        let per_id: BTreeSet<&String> = reserved.values().collect();
        assert_eq!(
            per_id.len(),
            reserved.len(),
            "round {round}: an id holds two reservations: {reserved:?}"
        );
        // The prompt file is replaced atomically too: whole lines only.
        if let Ok(text) = std::fs::read_to_string(env.state().join("prompt.tsv")) {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "prompt.tsv: {text:?}"
            );
        }
    }
    assert!(
        killed >= 20,
        "only {killed} of 200 writers were killed before finishing; the test did not exercise crashes"
    );

    // A crash never leaves the lock held: the next writer goes through.
    env.ok(&["port", "alloc", "--for", "after-claude"]);
    check_ok(&env);
    let leftovers: Vec<String> = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    // Temp files of killed writers may stay (they are never read); the
    // real files are always whole.
    for name in &leftovers {
        assert_ne!(name, "registry.json");
    }
    eprintln!(
        "200 writers: {killed} killed mid-run, {finished} finished; {} stray .tmp-* files; {:.1}s",
        leftovers.len(),
        started.elapsed().as_secs_f64()
    );
}
