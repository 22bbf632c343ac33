//! `port [ID]` (where an instance's port is reached from here) and
//! `port alloc|release`.

use super::Ctx;
use crate::cli::{PortArgs, PortCmd};
use crate::core::error::{Error, Result};
use crate::features::forward::Reach;
use crate::state::registry::Reservation;

pub fn port(ctx: &Ctx, args: PortArgs) -> Result<u8> {
    match args.cmd {
        Some(cmd) => reserve(ctx, cmd),
        None => reach(ctx, args),
    }
}

/// Prints the address to use (stdout: one line a script can read) and,
/// on stderr, how it gets there.
fn reach(ctx: &Ctx, args: PortArgs) -> Result<u8> {
    let id = crate::service::control::given_or_here(ctx, args.id)?;
    if args.close {
        let closed = crate::features::forward::close(&ctx.dirs, &id)?;
        eprintln!(
            "{}",
            if closed {
                format!("closed the forward of {id}")
            } else {
                format!("no forward of {id} runs")
            }
        );
        return Ok(0);
    }
    let reg = ctx.store.load()?;
    let inst = reg
        .instances
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("no instance {id}")))?;
    if !inst.status.is_live() {
        return Err(Error::Invalid(format!(
            "{id} is {}: its port is published while it runs (`ai-sessctl resume {id}`)",
            inst.status
        )));
    }
    if inst.egress == Some(crate::state::config::EgressPolicy::None) {
        return Err(Error::Invalid(format!(
            "{id} runs with --egress none: nothing of it is published"
        )));
    }
    let bind = ctx.global()?.networking.bind.to_string();
    let reach = crate::features::forward::reach(&ctx.dirs, &id, &bind, inst.port)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&reach).map_err(|e| Error::Other(e.to_string()))?
        );
        return Ok(0);
    }
    match reach {
        Reach::Direct { address } => println!("{address}"),
        Reach::Forwarded {
            address,
            via,
            remote_port,
            started,
        } => {
            println!("{address}");
            eprintln!(
                "{} over ssh to {via} (port {remote_port} there); `ai-sessctl port {id} --close` stops it",
                if started { "forwarded" } else { "already forwarded" }
            );
        }
        Reach::Elsewhere { engine, run } => {
            eprintln!(
                "{id}'s port {} is published on the engine's machine ({engine}), not here; \
                 reach it with:\n  {run}",
                inst.port
            );
            return Ok(1);
        }
    }
    Ok(0)
}

fn reserve(ctx: &Ctx, cmd: PortCmd) -> Result<u8> {
    let net = ctx.global()?.networking;
    match cmd {
        PortCmd::Alloc { preferred, for_id } => {
            let port = ctx.store.update(|reg| {
                let p = crate::state::ports::allocate(
                    reg,
                    net.port_range,
                    preferred.or(net.preferred_port),
                    net.bind,
                )?;
                if let Some(id) = &for_id {
                    // One reservation per id: a new one replaces the old.
                    reg.reserved_ports.retain(|_, r| &r.instance != id);
                    reg.reserved_ports.insert(
                        p.to_string(),
                        Reservation {
                            instance: id.clone(),
                            at: chrono::Utc::now(),
                        },
                    );
                }
                Ok(p)
            })?;
            println!("{port}");
        }
        PortCmd::Release { port } => {
            ctx.store.update(|reg| {
                if let Some(i) = reg
                    .instances
                    .values()
                    .find(|i| i.port == port && i.status.is_live())
                {
                    return Err(Error::Invalid(format!(
                        "port {port} is held by {} ({}); stop it first",
                        i.id, i.status
                    )));
                }
                reg.reserved_ports
                    .remove(&port.to_string())
                    .map(|_| ())
                    .ok_or_else(|| Error::NotFound(format!("port {port} is not reserved")))
            })?;
        }
    }
    Ok(0)
}
