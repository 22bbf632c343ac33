//! Where a setup said how it went: a clone's box says it in its activity
//! volume, which the host reaches only through the engine.

use super::docker::DockerEngine;
use crate::features::worktree::setup;
use crate::state::context::Ctx;
use crate::state::registry::Instance;

/// Copies a clone box's setup outcome (in its activity volume) here,
/// where the setup's outcome of any instance is read.
pub fn bring_home(ctx: &Ctx, engine: &DockerEngine, inst: &Instance) {
    let (Some(_), Some(cid)) = (&inst.clone, &inst.container_id) else {
        return;
    };
    if let Some(raw) = crate::features::activity::from_box(engine, cid, setup::FILE, 4096) {
        setup::record(&ctx.dirs, &inst.id, &raw);
    }
}
