//! Port allocator: a port is free when no live instance or reservation
//! holds it and a bind on the bind address succeeds. Callers allocate
//! inside `Store::update`, so allocation and registration are one step.

use crate::core::error::{Error, Result};
use crate::core::types::Port;
use crate::state::config::PortRange;
use crate::state::registry::Registry;
use std::collections::HashSet;
use std::net::{IpAddr, TcpListener};

pub fn bindable(bind: IpAddr, port: Port) -> bool {
    TcpListener::bind((bind, port.get())).is_ok()
}

/// Picks a port: `preferred` when free, else the first free in `range`.
pub fn allocate(
    reg: &Registry,
    range: PortRange,
    preferred: Option<Port>,
    bind: IpAddr,
) -> Result<Port> {
    let held: HashSet<Port> = reg.held_ports().collect();
    let free = |p: Port| !held.contains(&p) && bindable(bind, p);
    if let Some(p) = preferred {
        if free(p) {
            return Ok(p);
        }
    }
    (range.start..=range.end)
        .filter_map(|n| Port::new(n).ok())
        .find(|p| free(*p))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no free port in {}-{} ({} held by instances, the rest in use on {bind}); widen it with `ai-sessctl config set --global networking.port_range '[{}, {}]'` or stop instances",
                range.start,
                range.end,
                held.iter().filter(|p| range.contains(**p)).count(),
                range.start,
                range.end.saturating_add(1000),
            ))
        })
}
