//! The end of an agent: recorded, its output kept, its container removed.

use super::docker::DockerEngine;
use super::networks::Leftovers;
use crate::core::error::Result;
use crate::core::types::{InstanceId, Status};
use crate::core::warning::Warnings;
use crate::state::config::Effective;
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{Instance, ProcRef, Registry, StopMarker};
use chrono::Utc;
use serde_json::json;
use std::sync::Mutex;

/// The reason of a stop under way on a running instance, if its stopper
/// still runs (or it was handed to the starter).
pub fn stop_in_progress(inst: &Instance) -> Option<String> {
    inst.stopping
        .as_ref()
        .and_then(StopMarker::in_force)
        .map(str::to_owned)
}

/// Whether the process starting `inst` still runs (true when unknown: an
/// entry written before the marker existed waits for the start grace).
pub fn starter_alive(inst: &Instance) -> bool {
    inst.starter.as_ref().is_none_or(ProcRef::alive)
}

/// Records that an instance's agent ended: status, exit code, saved output,
/// container removal (with `auto_cleanup`), port released, event logged.
/// Only applies when the entry still describes the same container/process.
/// Says on stderr what went wrong without failing it (output not kept).
pub fn finish(
    ctx: &Ctx,
    inst: &Instance,
    exit_code: Option<i64>,
    status: Status,
    reason: Option<String>,
    engine: Option<&DockerEngine>,
) -> Result<()> {
    let reason = reason.as_deref();
    let end = Ended {
        inst: inst.clone(),
        code: exit_code,
        status,
        eff: engine
            .and(inst.container_id.as_ref())
            .and_then(|_| ctx.effective(&inst.id).ok()),
    };
    let applied = ctx.store.update(|reg| Ok(end.record(reg, reason)));
    let mut warnings = Warnings::new();
    let done = end.aftermath(ctx, reason, engine, applied, None, &mut warnings);
    super::reconcile::say(&warnings);
    done
}

/// An agent that ended, to be written down by [`finish`] (or, for a batch
/// of stops, many at once in one registry update).
#[derive(Clone)]
pub(super) struct Ended {
    pub(super) inst: Instance,
    pub(super) code: Option<i64>,
    pub(super) status: Status,
    /// Its configuration as read when stopping (`None`: the defaults).
    pub(super) eff: Option<Effective>,
}

impl Ended {
    /// Whether the entry still described the same live container/process
    /// and now says it ended.
    pub(super) fn record(&self, reg: &mut Registry, reason: Option<&str>) -> bool {
        let inst = &self.inst;
        let Some(cur) = reg.instances.get_mut(&inst.id) else {
            return false;
        };
        if cur.container_id != inst.container_id || cur.pid != inst.pid || !cur.status.is_live() {
            return false;
        }
        cur.status = self.status;
        cur.stopping = None;
        cur.exit_code = self.code.or(cur.exit_code);
        cur.status_reason = reason.map(str::to_owned);
        cur.timestamps.stopped = Some(Utc::now());
        cur.resources.cpu_usage = None;
        cur.resources.memory_usage = None;
        true
    }

    /// What follows the record: the container goes whether or not that
    /// could be recorded (a full state disk must not keep an ended agent's
    /// container around), then the event is logged. `warnings` gets what
    /// went wrong on the way without failing it.
    pub(super) fn aftermath(
        &self,
        ctx: &Ctx,
        reason: Option<&str>,
        engine: Option<&DockerEngine>,
        applied: Result<bool>,
        left: Option<&Mutex<Leftovers>>,
        warnings: &mut Warnings,
    ) -> Result<()> {
        let inst = &self.inst;
        let eff = self.eff.as_ref();
        // A forward of its port (`port ID` over ssh) leads nowhere now.
        let _ = crate::features::forward::close(&ctx.dirs, &inst.id);
        if let (Some(engine), Some(cid)) = (engine, &inst.container_id) {
            if eff.is_none_or(|e| e.settings.global.auto_cleanup) {
                save_and_remove_as(ctx, engine, &inst.id, cid, eff, left, warnings)?;
            }
        }
        if applied? {
            ctx.events().log(
                if self.status == Status::Error {
                    Level::Warn
                } else {
                    Level::Info
                },
                "runtime",
                "instance stopped",
                json!({"instance": inst.id, "exit_code": self.code, "reason": reason}),
            );
        }
        Ok(())
    }
}

/// Keeps the container's output in `logs/<id>.log` (replacing the previous
/// run's), then removes the container.
/// Saving is best effort: the removal happens even when the output cannot
/// be kept (full disk): `warnings` says so.
pub fn save_and_remove(
    ctx: &Ctx,
    engine: &DockerEngine,
    id: &InstanceId,
    cid: &str,
    warnings: &mut Warnings,
) -> Result<()> {
    let eff = ctx.effective(id).ok();
    save_and_remove_as(ctx, engine, id, cid, eff.as_ref(), None, warnings)
}

/// [`save_and_remove`] with the instance's configuration already read.
/// With `left`, the container (once its output is kept) and its own
/// network are left for the caller's reaper, and added there.
pub(super) fn save_and_remove_as(
    ctx: &Ctx,
    engine: &DockerEngine,
    id: &InstanceId,
    cid: &str,
    eff: Option<&Effective>,
    left: Option<&Mutex<Leftovers>>,
    warnings: &mut Warnings,
) -> Result<()> {
    if ctx.dirs.ensure_sub(&ctx.dirs.logs_dir()).is_ok() {
        let cap = eff.map_or_else(
            || crate::state::config::Logging::default().cap(),
            |e| e.settings.logging.cap(),
        );
        if let Err(e) = engine.save_log(cid, &ctx.dirs.instance_log(id), cap) {
            warnings.warn(format!("output of {id} not kept: {e}"));
        }
    }
    match left {
        None => engine.remove(cid, None),
        Some(left) => {
            let later = engine.remove_later(cid)?;
            let mut left = left.lock().unwrap_or_else(|p| p.into_inner());
            left.containers.extend(later.container);
            left.networks.extend(later.network);
            Ok(())
        }
    }
}
