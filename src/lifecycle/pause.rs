//! Pause and unpause.

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Status};
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde_json::json;

pub fn set_paused(ctx: &Ctx, id: &InstanceId, paused: bool) -> Result<()> {
    let reg = super::refresh(ctx)?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
    let want = if paused {
        Status::Running
    } else {
        Status::Paused
    };
    if inst.status != want {
        return Err(Error::Invalid(format!(
            "{id} is {}, not {want}",
            inst.status
        )));
    }
    let mut own = None;
    match super::runtime_of(inst, None, &mut own)? {
        Some(runtime) => runtime.set_paused(inst, paused)?,
        None => return Err(Error::Invalid(format!("{id} has no container or process"))),
    }
    ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(id) {
            i.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
        }
        Ok(())
    })?;
    ctx.events().log(
        Level::Info,
        "runtime",
        if paused {
            "instance paused"
        } else {
            "instance resumed"
        },
        json!({"instance": id}),
    );
    Ok(())
}
