//! Removing entries and their containers.

use super::docker::DockerEngine;
use super::finish::save_and_remove;
use super::stop::stop_many;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde_json::json;

/// Removes entries (and their containers); `state` also deletes states/<id>.
pub fn remove(ctx: &Ctx, id: &InstanceId, force: bool, state: bool) -> Result<()> {
    let reg = super::refresh(ctx)?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
    if inst.status.is_live() {
        if !force {
            return Err(Error::Invalid(format!(
                "{id} is {}; stop it first or use --force",
                inst.status
            )));
        }
        if let Some((_, e)) = stop_many(ctx, std::slice::from_ref(id), true, "removed").pop() {
            return Err(e);
        }
    }
    if let Some(cid) = &inst.container_id {
        if let Ok(engine) = DockerEngine::connect() {
            let mut warnings = crate::core::warning::Warnings::new();
            let removed = save_and_remove(ctx, &engine, id, cid, &mut warnings);
            super::reconcile::say(&warnings);
            removed?;
        }
    }
    ctx.store.update(|reg| {
        reg.instances.remove(id);
        reg.reserved_ports.retain(|_, r| &r.instance != id);
        Ok(())
    })?;
    let _ = std::fs::remove_file(ctx.dirs.socket_of(id));
    let _ = crate::features::activity::remove(&ctx.dirs, id);
    if state {
        let dir = ctx.dirs.state_of(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    ctx.events().log(
        Level::Info,
        "runtime",
        "instance removed",
        json!({"instance": id, "state": state}),
    );
    Ok(())
}
