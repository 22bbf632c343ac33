//! Reading a container's counters straight from its cgroup, when the
//! engine runs on this host: two readings half a second apart give CPU %
//! at once, where the engine's stats API needs one to two collection ticks
//! (about a second each) per call. cgroup v1 and v2, cgroupfs and systemd
//! layouts; anything else falls back to the API.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone)]
enum Layout {
    /// One directory per controller (cgroup v1).
    V1 { leaf: String },
    /// The unified hierarchy (cgroup v2).
    V2 { dir: PathBuf },
}

#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub cpu_ns: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

/// Whether the engine is local (a unix socket): only then are its
/// containers' cgroups ours to read.
pub fn engine_is_local() -> bool {
    crate::engine::endpoint::current().is_ok_and(|e| e.unix_path().is_some())
}

fn locate(cid: &str) -> Option<Layout> {
    if !cid.bytes().all(|b| b.is_ascii_hexdigit()) || cid.len() < 12 {
        return None;
    }
    for leaf in [
        format!("docker/{cid}"),
        format!("system.slice/docker-{cid}.scope"),
    ] {
        if Path::new(ROOT)
            .join("cpuacct")
            .join(&leaf)
            .join("cpuacct.usage")
            .is_file()
        {
            return Some(Layout::V1 { leaf });
        }
        let dir = Path::new(ROOT).join(&leaf);
        if dir.join("cpu.stat").is_file() && dir.join("memory.current").is_file() {
            return Some(Layout::V2 { dir });
        }
    }
    None
}

fn num(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(path: PathBuf, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn host_memory() -> u64 {
    crate::core::procinfo::mem_total_bytes().unwrap_or(u64::MAX)
}

/// Network bytes of the container's namespace (all but loopback), seen
/// through one of its processes.
fn net_of(procs: PathBuf) -> (u64, u64) {
    let pid = std::fs::read_to_string(procs)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned));
    let Some(dev) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
    else {
        return (0, 0);
    };
    let (mut rx, mut tx) = (0, 0);
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

fn read(layout: &Layout) -> Option<Reading> {
    let mut r = Reading::default();
    match layout {
        Layout::V1 { leaf } => {
            let c = |ctl: &str, file: &str| Path::new(ROOT).join(ctl).join(leaf).join(file);
            r.cpu_ns = num(c("cpuacct", "cpuacct.usage"))?;
            let raw = num(c("memory", "memory.usage_in_bytes"))?;
            let cache = keyed(c("memory", "memory.stat"), "total_inactive_file").unwrap_or(0);
            r.memory_usage = raw.saturating_sub(cache);
            r.memory_limit = num(c("memory", "memory.limit_in_bytes"))
                .unwrap_or(u64::MAX)
                .min(host_memory());
            r.pids = num(c("pids", "pids.current")).unwrap_or(0);
            if let Ok(t) = std::fs::read_to_string(c("blkio", "blkio.throttle.io_service_bytes")) {
                for l in t.lines() {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    match (f.get(1), f.get(2).and_then(|v| v.parse::<u64>().ok())) {
                        (Some(&"Read"), Some(v)) => r.block_read += v,
                        (Some(&"Write"), Some(v)) => r.block_write += v,
                        _ => {}
                    }
                }
            }
            (r.net_rx, r.net_tx) = net_of(c("cpuacct", "cgroup.procs"));
        }
        Layout::V2 { dir } => {
            r.cpu_ns = keyed(dir.join("cpu.stat"), "usage_usec")? * 1000;
            let raw = num(dir.join("memory.current"))?;
            let cache = keyed(dir.join("memory.stat"), "inactive_file").unwrap_or(0);
            r.memory_usage = raw.saturating_sub(cache);
            r.memory_limit = num(dir.join("memory.max"))
                .unwrap_or(u64::MAX)
                .min(host_memory());
            r.pids = num(dir.join("pids.current")).unwrap_or(0);
            if let Ok(t) = std::fs::read_to_string(dir.join("io.stat")) {
                for field in t.split_whitespace() {
                    if let Some(v) = field
                        .strip_prefix("rbytes=")
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        r.block_read += v;
                    }
                    if let Some(v) = field
                        .strip_prefix("wbytes=")
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        r.block_write += v;
                    }
                }
            }
            (r.net_rx, r.net_tx) = net_of(dir.join("cgroup.procs"));
        }
    }
    Some(r)
}

/// Two readings of every container `window` apart: `(id, before, after,
/// elapsed ns)`. `None` when any container's cgroup cannot be read (the
/// caller then asks the engine).
pub fn sample(
    targets: &[(String, String)],
    window: std::time::Duration,
) -> Option<Vec<(String, Reading, Reading, u64)>> {
    if !engine_is_local() {
        return None;
    }
    let layouts: Vec<Layout> = targets
        .iter()
        .map(|(_, cid)| locate(cid))
        .collect::<Option<_>>()?;
    let t0 = std::time::Instant::now();
    let first: Vec<Reading> = layouts.iter().map(read).collect::<Option<_>>()?;
    std::thread::sleep(window);
    let elapsed = t0.elapsed().as_nanos() as u64;
    let second: Vec<Reading> = layouts.iter().map(read).collect::<Option<_>>()?;
    Some(
        targets
            .iter()
            .zip(first.into_iter().zip(second))
            .map(|((id, _), (a, b))| (id.clone(), a, b, elapsed))
            .collect(),
    )
}
