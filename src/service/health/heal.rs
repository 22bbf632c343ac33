//! Auto-recovery: restart an unhealthy or crashed instance, backing off
//! exponentially (`retry_delay`, then twice that, …) and at most
//! `max_retries` times; then stop it (output kept), mark it `error` with a
//! `RECOVERY_FAILED` alert, and try no more. What the user stopped, and an
//! agent that exited normally, are never "healed"; a user's stop that
//! lands mid-heal cancels the heal (decided under the registry lock).

use crate::core::error::Result;
use crate::core::types::{InstanceId, Status};
use crate::features::monitor::alerts::{emit, Alert, Severity};
use crate::lifecycle::{self, Stopper};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{
    AlertKind, HealthStatus, Instance, ProcRef, Recovery, Registry, RuntimeKind,
};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The reason a heal gives its stop.
const HEALING: &str = "healing";

/// Restarts one instance now, at the user's request (`heal ID`): forced,
/// for an instance that hangs.
pub fn heal(ctx: &Ctx, id: &InstanceId) -> Result<()> {
    lifecycle::restart(ctx, id, true, HEALING)?;
    ctx.events().log(
        Level::Info,
        "health",
        "instance healed",
        json!({"instance": id}),
    );
    Ok(())
}

/// What one automatic heal came to.
enum Healed {
    Restarted,
    /// Nothing to do any more: it was stopped, or is well, meanwhile.
    NotNeeded,
}

/// The watch's heal: claims the instance under the lock (it must still
/// need healing and no stop be under way), then restarts it. A user's stop
/// clears the claim, and the restart then stops short.
fn heal_automatically(ctx: &Ctx, id: &InstanceId) -> Result<Healed> {
    let me = ProcRef::me();
    let claimed = ctx.store.update(|reg| {
        let Some(cur) = reg.instances.get_mut(id) else {
            return Ok(false);
        };
        if !needs_healing(cur) || lifecycle::stop_in_progress(cur).is_some() {
            return Ok(false);
        }
        cur.healing = Some(me.clone());
        Ok(true)
    })?;
    if !claimed {
        return Ok(Healed::NotNeeded);
    }
    match lifecycle::restart_as(ctx, id, true, HEALING, Stopper::Heal) {
        Ok(_) => {
            ctx.events().log(
                Level::Info,
                "health",
                "instance healed",
                json!({"instance": id}),
            );
            Ok(Healed::Restarted)
        }
        Err(e) => {
            // Not cancelled by a stop (that clears the claim): the entry is
            // left in error, to be tried again after the backoff.
            let _ = ctx.store.update(|reg| {
                if let Some(cur) = reg.instances.get_mut(id) {
                    if cur.healing.as_ref() == Some(&me) {
                        cur.healing = None;
                        if !cur.status.is_live() {
                            cur.status = Status::Error;
                            cur.status_reason = Some(format!("restart failed: {e}"));
                        }
                    }
                }
                Ok(())
            });
            Err(e)
        }
    }
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
    if inst.recovery == Some(Recovery::Failed) {
        return false;
    }
    match inst.status {
        Status::Error => true,
        Status::Running => inst
            .health
            .as_ref()
            .is_some_and(|h| h.status == HealthStatus::Unhealthy),
        _ => false,
    }
}

/// The wait before try `attempts + 1`, from the end of the last one:
/// `retry_delay` after the first try, doubling after each one after that.
fn backoff(retry_delay: Duration, attempts: u32) -> Duration {
    retry_delay.saturating_mul(1 << attempts.saturating_sub(1).min(16))
}

impl Healer {
    /// One pass: heals what needs it and is due. Returns what it did.
    pub fn pass(&mut self, ctx: &Ctx, reg: &Registry) -> Vec<String> {
        let mut said = Vec::new();
        for inst in reg.instances.values() {
            let Ok(eff) = ctx.effective(&inst.id) else {
                continue;
            };
            let h = &eff.settings.health;
            let delay: Duration = h.retry_delay.0;
            let tries = self.tries.entry(inst.id.clone()).or_default();
            if !needs_healing(inst) {
                // Healthy for a while after the last try: the slate is clean.
                // "A while" counts from when it was first checked healthy,
                // not from the try (a slow start, or checks not yet run on
                // the new container, must not wipe a crash loop's count).
                let well = inst.status == Status::Running
                    && inst
                        .health
                        .as_ref()
                        .is_some_and(|h| h.status == HealthStatus::Healthy);
                if !well {
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
            if tries
                .last
                .is_some_and(|t| t.elapsed() < backoff(delay, tries.attempts))
            {
                continue;
            }
            if tries.attempts >= h.max_retries {
                if let Some(line) = give_up(ctx, inst, tries.attempts) {
                    said.push(line);
                }
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
            let healed = heal_automatically(ctx, &inst.id);
            // The wait counts from the end of this try: a slow start must
            // not eat the backoff.
            tries.last = Some(Instant::now());
            match healed {
                Ok(Healed::Restarted) => {
                    said.push(format!("{}: restarted ({n}/{})", inst.id, h.max_retries))
                }
                Ok(Healed::NotNeeded) => said.push(format!("{}: no longer needs healing", inst.id)),
                Err(e) => said.push(format!(
                    "{}: restart {n}/{} failed: {e}",
                    inst.id, h.max_retries
                )),
            }
        }
        said
    }
}

/// Gives up on an instance that still needs healing (checked under the
/// lock): marks it, stops what still runs (output kept) and raises the
/// alert. `None` when it no longer needs healing.
fn give_up(ctx: &Ctx, inst: &Instance, attempts: u32) -> Option<String> {
    let reason = format!("recovery failed after {attempts} restarts");
    let claimed = ctx.store.update(|reg| {
        let Some(cur) = reg.instances.get_mut(&inst.id) else {
            return Ok(None);
        };
        if !needs_healing(cur) || lifecycle::stop_in_progress(cur).is_some() {
            return Ok(None);
        }
        cur.recovery = Some(Recovery::Failed);
        if !cur.status.is_live() {
            cur.status = Status::Error;
            cur.status_reason = Some(reason.clone());
        }
        Ok(Some(cur.clone()))
    });
    let cur = match claimed {
        Ok(Some(cur)) => cur,
        Ok(None) => return None,
        Err(e) => return Some(format!("{}: giving up failed: {e}", inst.id)),
    };
    let mut said = format!("{}: {reason}", inst.id);
    if cur.status.is_live() {
        // Still running (its checks fail): stopped gracefully, its output
        // kept, so that nothing runs that no one will look after.
        match lifecycle::stop_many_as(
            ctx,
            std::slice::from_ref(&cur.id),
            false,
            &reason,
            Stopper::GiveUp,
        )
        .pop()
        {
            None => said.push_str("; stopped it (see `ai-sessctl logs` for its output)"),
            Some((_, e)) => said.push_str(&format!("; stopping it failed: {e}")),
        }
    }
    emit(
        ctx,
        &Alert {
            kind: AlertKind::RecoveryFailed,
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
    Some(said)
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_retry_delay() {
        let d = Duration::from_secs(10);
        let got: Vec<u64> = (1..=4).map(|n| backoff(d, n).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 80]);
        assert!(backoff(d, 200) >= d);
    }
}
