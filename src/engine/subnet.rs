//! Address space for per-instance networks. Left to itself the engine
//! gives every new bridge network a whole /16 (or /20) from its default
//! pools, which run out after about thirty networks: the thirty-first
//! instance would fail to start. Each instance needs a handful of
//! addresses, so it gets a /28 carved from a few private /16s, skipping
//! every subnet the engine already uses and, on Linux, every route of the
//! host (a VPN's or LAN's addresses must stay reachable from the host).

use super::api_err;
use crate::core::error::{Error, Result};
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters as q;
use bollard::Docker;
use std::net::Ipv4Addr;

/// Where instance subnets come from: the top of the engine's own
/// 172.16.0.0/12 default pool, which it hands out last.
const POOLS: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(172, 30, 0, 0), 16),
    (Ipv4Addr::new(172, 29, 0, 0), 16),
    (Ipv4Addr::new(172, 28, 0, 0), 16),
];
/// 14 usable addresses: the gateway, the agent, a proxy and room to spare.
const PREFIX: u8 = 28;
/// Concurrent starts may pick the same subnet, and the engine may hold a
/// pool that no listing shows yet (a network being created or removed
/// meanwhile); the loser tries again elsewhere, after a pause.
const ATTEMPTS: u32 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    base: u32,
    prefix: u8,
}

impl Net {
    fn parse(cidr: &str) -> Option<Net> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok().filter(|p| *p <= 32)?;
        Some(Net::new(u32::from(ip), prefix))
    }

    fn new(addr: u32, prefix: u8) -> Net {
        Net {
            base: addr & Net::mask(prefix),
            prefix,
        }
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    fn overlaps(&self, other: &Net) -> bool {
        let p = self.prefix.min(other.prefix);
        self.base & Net::mask(p) == other.base & Net::mask(p)
    }

    fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    fn gateway(&self) -> String {
        Ipv4Addr::from(self.base + 1).to_string()
    }
}

/// Every /28 of the pools, starting at a place derived from `name` and
/// the `attempt` so that concurrent starts rarely try the same one first,
/// and a retry looks far from where the last try was refused.
fn candidates(name: &str, attempt: u32) -> impl Iterator<Item = Net> {
    let per_pool = 1usize << (PREFIX - 16);
    let total = per_pool * POOLS.len();
    let start = name
        .bytes()
        .chain(attempt.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) as usize
        % total;
    (0..total).map(move |i| {
        let k = (start + i) % total;
        let (pool, _) = POOLS[k / per_pool];
        let step = 1u32 << (32 - PREFIX);
        Net::new(u32::from(pool) + (k % per_pool) as u32 * step, PREFIX)
    })
}

/// IPv4 routes of the host (Linux); elsewhere the engine runs in a VM
/// whose routes are not the user's.
fn host_routes() -> Vec<Net> {
    let Ok(table) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // The kernel prints the network-order word as a native integer.
            let dest = u32::from_be(u32::from_str_radix(f.get(1)?, 16).ok()?);
            let mask = u32::from_be(u32::from_str_radix(f.get(7)?, 16).ok()?);
            // The default route covers everything; it is no reason to skip.
            (mask != 0).then(|| Net::new(dest, mask.leading_ones() as u8))
        })
        .collect()
}

async fn taken(docker: &Docker) -> Result<Vec<Net>> {
    let nets = super::Engine::timed(
        "list networks",
        docker.list_networks(None::<q::ListNetworksOptions>),
    )
    .await?;
    Ok(nets
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|c| Net::parse(c.subnet.as_deref()?))
        .collect())
}

fn is_overlap(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("overlap") || message.contains("already used") || message.contains("in use"))
}

/// Creates the network described by `req` on a free /28 of its own (its
/// `ipam` is filled in here). The outer error: no subnet could be had;
/// the inner one: the engine refused the network for another reason.
pub async fn create_network(
    docker: &Docker,
    mut req: NetworkCreateRequest,
) -> Result<std::result::Result<(), bollard::errors::Error>> {
    let routes = host_routes();
    let mut last = None;
    // A subnet the engine refused stays refused: it may hold a pool that
    // no listing shows yet (a network being created meanwhile).
    let mut refused: Vec<Net> = Vec::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let pause = 50 * u64::from(attempt.min(10)) + u64::from(std::process::id() % 50);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        let mut used = taken(docker).await?;
        used.extend(routes.iter().copied());
        used.extend(refused.iter().copied());
        let Some(net) =
            candidates(&req.name, attempt).find(|c| !used.iter().any(|u| u.overlaps(c)))
        else {
            break;
        };
        req.ipam = Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(net.cidr()),
                gateway: Some(net.gateway()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        // The engine makes networks one at a time: a create waits for the
        // ones queued before it.
        let after = super::call_timeout();
        let created = tokio::time::timeout(after, docker.create_network(req.clone()))
            .await
            .map_err(|_| super::timeout_error("create network", after))?;
        match created {
            Ok(_) => return Ok(Ok(())),
            Err(e) if is_overlap(&e) => {
                refused.push(net);
                last = Some(e);
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Err(match last {
        Some(e) => api_err("create network", e),
        None => Error::Invalid(format!(
            "no free /{PREFIX} subnet left in {} for network {}; remove unused networks (`ai-sessctl gc`, `docker network prune`) or use networking.mode = \"shared\"",
            POOLS.map(|(a, p)| format!("{a}/{p}")).join(", "),
            req.name
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_symmetric_and_respects_prefixes() {
        let a = Net::parse("172.30.0.0/16").unwrap();
        let b = Net::parse("172.30.4.16/28").unwrap();
        let c = Net::parse("172.29.0.0/28").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&b));
        assert_eq!(b.gateway(), "172.30.4.17");
    }

    #[test]
    fn candidates_are_distinct_aligned_and_inside_the_pools() {
        let all: Vec<Net> = candidates("ai-api-claude-abc123", 0).collect();
        assert_eq!(all.len(), 3 * 4096);
        let mut bases: Vec<u32> = all.iter().map(|n| n.base).collect();
        bases.sort_unstable();
        bases.dedup();
        assert_eq!(bases.len(), all.len());
        for n in &all {
            assert_eq!(n.base % 16, 0);
            assert!(POOLS
                .iter()
                .any(|(a, p)| Net::new(u32::from(*a), *p).overlaps(n)));
        }
    }

    #[test]
    fn host_routes_parse_from_the_kernel_table() {
        // Whatever the machine has, no route is the default route.
        assert!(host_routes().iter().all(|r| r.prefix > 0));
    }
}
