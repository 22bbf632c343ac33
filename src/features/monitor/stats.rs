//! Resource samples: CPU % from the delta of two samples (as `docker stats`
//! computes it), memory usage/limit, network and block I/O, pids. Docker
//! instances through the engine's stats API, host instances from /proc; all
//! instances sampled concurrently.

use crate::lifecycle::docker::DockerEngine;
use crate::state::registry::{Instance, RuntimeKind};
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;
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

fn docker_sample(id: &str, s: &bollard::models::ContainerStatsResponse) -> Sample {
    let cpu = s.cpu_stats.as_ref();
    let pre = s.precpu_stats.as_ref();
    let total = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let system = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.system_cpu_usage).unwrap_or(0)
    };
    let cpu_delta = total(cpu).saturating_sub(total(pre)) as f64;
    let sys_delta = system(cpu).saturating_sub(system(pre)) as f64;
    let online = cpu
        .and_then(|c| c.online_cpus)
        .map(f64::from)
        .or_else(|| {
            cpu.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|v| v.len() as f64)
        })
        .unwrap_or(1.0);
    let cpu_percent = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.as_ref();
    let raw = mem.and_then(|m| m.usage).unwrap_or(0);
    // Like the docker CLI: page cache that can be reclaimed is not "used".
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("total_inactive_file")
                .or_else(|| st.get("inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    let usage = raw.saturating_sub(cache);
    let limit = mem.and_then(|m| m.limit).unwrap_or(0);
    let (mut rx, mut tx) = (0, 0);
    for n in s.networks.iter().flat_map(|m| m.values()) {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut br, mut bw) = (0, 0);
    for e in s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => br += e.value.unwrap_or(0),
            Some("write") => bw += e.value.unwrap_or(0),
            _ => {}
        }
    }
    Sample {
        id: id.to_owned(),
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        memory_usage: usage,
        memory_limit: limit,
        memory_percent: if limit > 0 {
            (usage as f64 / limit as f64 * 10000.0).round() / 100.0
        } else {
            0.0
        },
        net_rx: rx,
        net_tx: tx,
        block_read: br,
        block_write: bw,
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

/// One sample per running Docker instance, all taken concurrently. Each
/// comes from a stats stream: its second reading carries the first as
/// `precpu_stats`, one collection tick (about a second) apart. (`docker
/// stats --no-stream` waits two ticks; one-shot readings wait for the
/// next tick anyway once a collector runs.)
pub fn sample_docker(engine: &DockerEngine, insts: &[&Instance]) -> Vec<Sample> {
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
    let docker = engine.client();
    engine.block_on(async {
        let futs = insts.iter().filter_map(|i| {
            let cid = i.container_id.clone()?;
            let id = i.id.to_string();
            Some(async move {
                let opts = StatsOptionsBuilder::new().stream(true).build();
                let mut s = docker.stats(&cid, Some(opts));
                let sample = async {
                    let first = s.next().await?.ok()?;
                    if let Ok(Some(Ok(second))) =
                        tokio::time::timeout(Duration::from_millis(2500), s.next()).await
                    {
                        return Some(second);
                    }
                    // An engine that streams slowly (Podman: every 5 s):
                    // a one-shot reading now, its CPU against the first.
                    let once = StatsOptionsBuilder::new().stream(false).build();
                    let mut now = docker.stats(&cid, Some(once)).next().await?.ok()?;
                    now.precpu_stats = first.cpu_stats;
                    Some(now)
                };
                match tokio::time::timeout(Duration::from_secs(6), sample).await {
                    Ok(Some(stats)) => Some(docker_sample(&id, &stats)),
                    _ => None,
                }
            })
        });
        futures_util::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect()
    })
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
            match DockerEngine::connect() {
                Ok(engine) => sample_docker(&engine, &docker),
                Err(e) => {
                    eprintln!("ai-sessctl: warning: {e}");
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
