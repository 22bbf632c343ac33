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
    // Its container and volumes are on an engine this process does not
    // reach: removing the entry alone would leave them running unseen.
    if inst.container_id.is_some() || inst.clone.is_some() {
        super::reachable(inst)?;
    }
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
    // A clone's volumes hold its work: they go with it (an engine that
    // does not answer now leaves them to `gc`).
    if let Some(info) = &inst.clone {
        if let Ok(engine) = DockerEngine::connect() {
            engine.remove_instance_volumes(id, &ctx.dirs.home_label())?;
        }
        // Best effort: the repository may be gone or moved.
        let _ = crate::features::clone::forget(&info.repo, id);
    }
    ctx.store.update(|reg| {
        reg.instances.remove(id);
        reg.reserved_ports.retain(|_, r| &r.instance != id);
        Ok(())
    })?;
    let _ = std::fs::remove_file(ctx.dirs.socket_of(id));
    let _ = crate::features::forward::close(&ctx.dirs, id);
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
