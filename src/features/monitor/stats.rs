//! Resource samples: CPU % from the delta of two samples (as `docker stats`
//! computes it), memory usage/limit, network and block I/O, pids. Docker
//! instances through the engine's stats API, host instances from /proc; all
//! instances sampled concurrently.

use crate::engine::Engine;
use crate::state::registry::{Instance, RuntimeKind};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub id: String,
    pub cpu_percent: f64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

impl Sample {
    /// CPU in millicores (100 % of one core = 1000m).
    pub fn cpu_millis(&self) -> u64 {
        (self.cpu_percent * 10.0).round().max(0.0) as u64
    }
}

/// One sample per running Docker instance, all taken concurrently. Each
/// comes from a stats stream: its second reading carries the first as
/// `precpu_stats`, one collection tick (about a second) apart. (`docker
/// stats --no-stream` waits two ticks; one-shot readings wait for the
/// next tick anyway once a collector runs.)
pub fn sample_docker(engine: &Engine, insts: &[&Instance]) -> Vec<Sample> {
    #[cfg(target_os = "linux")]
    {
        let targets: Vec<(String, String)> = insts
            .iter()
            .filter_map(|i| Some((i.id.to_string(), i.container_id.clone()?)))
            .collect();
        if let Some(readings) = super::cgroup::sample(&targets, Duration::from_millis(500)) {
            return readings
                .into_iter()
                .map(|(id, a, b, ns)| from_cgroup(id, &a, &b, ns))
                .collect();
        }
    }
    let targets: Vec<(String, String)> = insts
        .iter()
        .filter_map(|i| Some((i.id.to_string(), i.container_id.clone()?)))
        .collect();
    engine
        .sample_stats(&targets)
        .into_iter()
        .map(|(id, u)| Sample {
            id,
            cpu_percent: u.cpu_percent,
            memory_usage: u.memory_usage,
            memory_limit: u.memory_limit,
            memory_percent: u.memory_percent,
            net_rx: u.net_rx,
            net_tx: u.net_tx,
            block_read: u.block_read,
            block_write: u.block_write,
            pids: u.pids,
        })
        .collect()
}

/// A sample from two cgroup readings `ns` nanoseconds apart. CPU % is
/// relative to one core, as in `docker stats`.
#[cfg(target_os = "linux")]
fn from_cgroup(
    id: String,
    a: &super::cgroup::Reading,
    b: &super::cgroup::Reading,
    ns: u64,
) -> Sample {
    let cpu = if ns > 0 {
        b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / ns as f64 * 100.0
    } else {
        0.0
    };
    Sample {
        id,
        cpu_percent: (cpu * 100.0).round() / 100.0,
        memory_usage: b.memory_usage,
        memory_limit: b.memory_limit,
        memory_percent: if b.memory_limit > 0 {
            (b.memory_usage as f64 / b.memory_limit as f64 * 10000.0).round() / 100.0
        } else {
            0.0
        },
        net_rx: b.net_rx,
        net_tx: b.net_tx,
        block_read: b.block_read,
        block_write: b.block_write,
        pids: b.pids,
    }
}

/// Host instances from the process table, CPU over a short window.
pub fn sample_host(insts: &[&Instance]) -> Vec<Sample> {
    let live: Vec<(&Instance, u32)> = insts
        .iter()
        .filter_map(|i| Some((*i, i.pid?)))
        .filter(|(i, pid)| crate::core::procinfo::alive(*pid, i.pid_start_time))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    let window = Duration::from_millis(500);
    let before: Vec<Option<Duration>> = live
        .iter()
        .map(|(_, p)| crate::core::procinfo::cpu_time(*p))
        .collect();
    std::thread::sleep(window);
    let mem_total = crate::core::procinfo::mem_total_bytes().unwrap_or(0);
    live.iter()
        .zip(before)
        .map(|((inst, pid), b)| {
            let after = crate::core::procinfo::cpu_time(*pid);
            let used = after
                .zip(b)
                .map(|(a, b)| a.saturating_sub(b))
                .unwrap_or_default();
            let cpu_percent = used.as_secs_f64() / window.as_secs_f64() * 100.0;
            let rss = crate::core::procinfo::rss_bytes(*pid).unwrap_or(0);
            Sample {
                id: inst.id.to_string(),
                cpu_percent: (cpu_percent * 100.0).round() / 100.0,
                memory_usage: rss,
                memory_limit: mem_total,
                memory_percent: if mem_total > 0 {
                    (rss as f64 / mem_total as f64 * 10000.0).round() / 100.0
                } else {
                    0.0
                },
                net_rx: 0,
                net_tx: 0,
                block_read: 0,
                block_write: 0,
                pids: 1,
            }
        })
        .collect()
}

/// Samples every running instance in `insts`, Docker and host at once.
pub fn sample_all(insts: &[&Instance]) -> Vec<Sample> {
    let docker: Vec<&Instance> = insts
        .iter()
        .copied()
        .filter(|i| i.runtime == Some(RuntimeKind::Docker) && i.container_id.is_some())
        .collect();
    let host: Vec<&Instance> = insts
        .iter()
        .copied()
        .filter(|i| i.runtime == Some(RuntimeKind::Host))
        .collect();
    std::thread::scope(|s| {
        let h = s.spawn(|| sample_host(&host));
        let mut out = if docker.is_empty() {
            Vec::new()
        } else {
            match Engine::shared() {
                Ok(engine) => sample_docker(engine, &docker),
                Err(e) => {
                    crate::core::warning::report_warn(format!("ai-sessctl: warning: {e}"));
                    Vec::new()
                }
            }
        };
        out.extend(h.join().unwrap_or_default());
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    })
}

/// `1.5GiB`-style figures, as docker stats prints them.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}
