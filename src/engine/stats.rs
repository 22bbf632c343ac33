//! Resource usage of containers, from the engine's stats API.

use super::Engine;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;
use std::time::Duration;

/// One container's usage: CPU % (of one core, as `docker stats` computes
/// it from two readings), memory, network and block I/O, pids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
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

fn usage(s: &bollard::models::ContainerStatsResponse) -> Usage {
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
    Usage {
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

impl Engine {
    /// One reading per container of `targets` (key, container id), all
    /// taken concurrently. Each comes from a stats stream: its second
    /// reading carries the first as `precpu_stats`, one collection tick
    /// (about a second) apart. (`docker stats --no-stream` waits two
    /// ticks; one-shot readings wait for the next tick anyway once a
    /// collector runs.) A container that does not answer is left out.
    pub fn sample_stats(&self, targets: &[(String, String)]) -> Vec<(String, Usage)> {
        let docker = &self.docker;
        self.block_on(async {
            let futs = targets.iter().map(|(key, cid)| async move {
                let opts = StatsOptionsBuilder::new().stream(true).build();
                let mut s = docker.stats(cid, Some(opts));
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
                    let mut now = docker.stats(cid, Some(once)).next().await?.ok()?;
                    now.precpu_stats = first.cpu_stats;
                    Some(now)
                };
                match tokio::time::timeout(Duration::from_secs(6), sample).await {
                    Ok(Some(stats)) => Some((key.clone(), usage(&stats))),
                    _ => None,
                }
            });
            futures_util::future::join_all(futs)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }
}
