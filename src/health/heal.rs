//! Auto-recovery: restart an unhealthy or crashed instance, `retry_delay`
//! apart and at most `max_retries` times; then status `error` and a
//! `RECOVERY_FAILED` alert, and no more tries. What the user stopped, and
//! an agent that exited normally, are never "healed".

use crate::context::Ctx;
use crate::error::Result;
use crate::events::Level;
use crate::monitor::alerts::{emit, Alert, Severity};
use crate::registry::{Instance, Registry, RuntimeKind};
use crate::runtime::ops;
use crate::types::{InstanceId, Status};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Restarts one instance now (stop if needed, start detached, same id).
pub fn heal(ctx: &Ctx, id: &InstanceId) -> Result<()> {
    ops::restart(ctx, id, true, "healing")?;
    ctx.events().log(
        Level::Info,
        "health",
        "instance healed",
        json!({"instance": id}),
    );
    Ok(())
}

#[derive(Default)]
struct Tries {
    attempts: u32,
    last: Option<Instant>,
    /// Since when it has been seen running and not needing healing.
    well_since: Option<Instant>,
}

/// Remembers recovery attempts across the passes of `health watch`.
#[derive(Default)]
pub struct Healer {
    tries: HashMap<InstanceId, Tries>,
}

/// Whether an instance needs healing: it crashed behind our back, or runs
/// while its checks fail. Never what the user stopped or a clean exit.
fn needs_healing(inst: &Instance) -> bool {
    if inst.runtime != Some(RuntimeKind::Docker) {
        return false;
    }
    if inst.extra.get("recovery").and_then(|v| v.as_str()) == Some("failed") {
        return false;
    }
    match inst.status {
        Status::Error => true,
        Status::Running => inst
            .health
            .as_ref()
            .is_some_and(|h| h.status == "unhealthy"),
        _ => false,
    }
}

impl Healer {
    /// One pass: heals what needs it and is due. Returns what it did.
    pub fn pass(&mut self, ctx: &Ctx, reg: &Registry) -> Vec<String> {
        let mut said = Vec::new();
        for inst in reg.instances.values() {
            let Ok(eff) = ops::effective_for(ctx, &inst.id) else {
                continue;
            };
            let h = &eff.settings.health;
            let delay: Duration = h.retry_delay.0;
            let tries = self.tries.entry(inst.id.clone()).or_default();
            if !needs_healing(inst) {
                // Healthy for a while after the last try: the slate is clean.
                // "A while" counts from when it was first seen well, not from
                // the try (a slow start must not wipe a crash loop's count).
                if inst.status != Status::Running {
                    tries.well_since = None;
                } else if tries.last.is_some() {
                    let since = *tries.well_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > delay.max(h.check_interval.0) * 2 {
                        *tries = Tries::default();
                    }
                }
                continue;
            }
            tries.well_since = None;
            if tries.last.is_some_and(|t| t.elapsed() < delay) {
                continue;
            }
            if tries.attempts >= h.max_retries {
                said.push(format!(
                    "{}: recovery failed after {} restarts",
                    inst.id, tries.attempts
                ));
                give_up(ctx, inst, tries.attempts);
                continue;
            }
            tries.attempts += 1;
            tries.last = Some(Instant::now());
            let n = tries.attempts;
            ctx.events().log(
                Level::Warn,
                "health",
                "restarting unhealthy instance",
                json!({"instance": inst.id, "attempt": n, "max_retries": h.max_retries,
                       "reason": inst.status_reason.clone().or_else(|| inst.health.as_ref().and_then(|h| h.last_error.clone()))}),
            );
            match heal(ctx, &inst.id) {
                Ok(()) => said.push(format!("{}: restarted ({n}/{})", inst.id, h.max_retries)),
                Err(e) => said.push(format!(
                    "{}: restart {n}/{} failed: {e}",
                    inst.id, h.max_retries
                )),
            }
        }
        said
    }
}

fn give_up(ctx: &Ctx, inst: &Instance, attempts: u32) {
    let _ = ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(&inst.id) {
            i.status = Status::Error;
            i.status_reason = Some(format!("recovery failed after {attempts} restarts"));
            i.extra.insert("recovery".into(), json!("failed"));
        }
        Ok(())
    });
    emit(
        ctx,
        &Alert {
            kind: "RECOVERY_FAILED",
            level: Severity::Critical,
            instance: inst.id.to_string(),
            value: attempts.to_string(),
            threshold: attempts.to_string(),
            message: format!(
                "RECOVERY_FAILED on {}: still failing after {attempts} restarts",
                inst.id
            ),
        },
    );
}
