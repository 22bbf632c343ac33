//! `port alloc|release`.

use super::Ctx;
use crate::cli::PortCmd;
use crate::core::error::{Error, Result};
use crate::state::registry::Reservation;

pub fn port(ctx: &Ctx, cmd: PortCmd) -> Result<u8> {
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
