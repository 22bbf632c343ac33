//! Reconcile's last step: carry the decisions out, under the registry lock
//! (each only onto the entry it was made from), then log the ends and
//! collect ended containers.

use super::classify::{Decision, End};
use crate::core::types::{InstanceId, Status};
use crate::core::warning::Warnings;
use crate::lifecycle::docker::DockerEngine;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry};
use chrono::Utc;

/// One correction, with what identifies the entry it was decided on.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub id: InstanceId,
    pub container_id: Option<String>,
    pub pid: Option<u32>,
    pub status: Status,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    /// A container that ended: save its output and (auto_cleanup) remove it.
    pub ended_container: Option<String>,
    /// The container an interrupted start left running, to record.
    pub adopt: Option<String>,
    /// A container no entry recorded, to remove (output saved) before the
    /// change is written: if that fails, or this process dies first, the
    /// entry still says `initializing` and the next reconcile tries again.
    pub remove_first: Option<String>,
}

impl Change {
    /// The change `decision` makes to `inst`; `None` for none.
    pub(super) fn of(inst: &Instance, decision: Decision) -> Option<Change> {
        let change = |status, reason: String| Change {
            id: inst.id.clone(),
            container_id: inst.container_id.clone(),
            pid: inst.pid,
            status,
            reason: Some(reason),
            exit_code: None,
            ended_container: None,
            adopt: None,
            remove_first: None,
        };
        match decision {
            Decision::Leave => None,
            Decision::Runs {
                status,
                reason,
                container,
            } => Some(Change {
                adopt: Some(container),
                ..change(status, reason.to_owned())
            }),
            Decision::Ended(End {
                status,
                reason,
                exit_code,
                adopt,
                collect,
                remove_first,
            }) => Some(Change {
                exit_code,
                adopt,
                ended_container: collect,
                remove_first,
                ..change(status, reason)
            }),
        }
    }
}

/// Writes `changes` (what cannot be written, e.g. on a full disk, is still
/// what is true: returned, said in `warnings`, and written by the next
/// reconcile); returns the registry as it now is.
pub(super) fn settle(
    ctx: &Ctx,
    reg: Registry,
    engine: Option<&DockerEngine>,
    mut changes: Vec<Change>,
    warnings: &mut Warnings,
) -> Registry {
    if changes.iter().any(|c| c.remove_first.is_some()) {
        remove_first(ctx, engine, &mut changes, warnings);
    }
    if changes.is_empty() {
        return reg;
    }
    let written = ctx.store.update(|reg| {
        apply(reg, &mut changes);
        Ok(reg.clone())
    });
    let reg = match written {
        Ok(reg) => reg,
        Err(e) => {
            warnings.warn(format!("corrections not saved: {e}"));
            let mut reg = reg;
            apply(&mut reg, &mut changes);
            reg
        }
    };
    for c in changes.iter().filter(|c| !c.status.is_live()) {
        ctx.events().log(
            if c.status == Status::Error {
                crate::state::events::Level::Warn
            } else {
                crate::state::events::Level::Info
            },
            "reconcile",
            "instance state corrected",
            serde_json::json!({"instance": c.id, "status": c.status, "reason": c.reason}),
        );
        if let (Some(engine), Some(cid)) = (engine, &c.ended_container) {
            let cleanup = ctx
                .effective(&c.id)
                .map(|e| e.settings.global.auto_cleanup)
                .unwrap_or(true);
            if cleanup {
                let _ = crate::lifecycle::save_and_remove(ctx, engine, &c.id, cid, warnings);
            }
        }
    }
    reg
}

/// Removes the containers of dead starts, keeping only the changes whose
/// container went. Only right if the entry still says so now: the
/// observation may predate the start's completion. Checked and done under
/// the lock, which the starter takes to record its container.
fn remove_first(
    ctx: &Ctx,
    engine: Option<&DockerEngine>,
    changes: &mut Vec<Change>,
    warnings: &mut Warnings,
) {
    let mut removed = Vec::new();
    let checked = ctx.store.update(|reg| {
        for c in changes.iter().filter(|c| c.remove_first.is_some()) {
            let still = reg.instances.get(&c.id).is_some_and(|cur| {
                cur.status == Status::Initializing
                    && cur.container_id.is_none()
                    && !crate::lifecycle::starter_alive(cur)
            });
            let done = still
                && match (engine, &c.remove_first) {
                    (Some(engine), Some(cid)) => {
                        crate::lifecycle::save_and_remove(ctx, engine, &c.id, cid, warnings).is_ok()
                    }
                    _ => false,
                };
            if done {
                removed.push(c.id.clone());
            }
        }
        Ok(())
    });
    if let Err(e) = checked {
        warnings.warn(format!("interrupted starts not settled: {e}"));
    }
    changes.retain(|c| c.remove_first.is_none() || removed.contains(&c.id));
}

/// Writes reconcile's findings into `reg`, each only to the entry it was
/// made from (not a newer start of the same id).
pub(super) fn apply(reg: &mut Registry, changes: &mut [Change]) {
    for c in changes {
        let Some(cur) = reg.instances.get_mut(&c.id) else {
            continue;
        };
        // Apply only to the entry we looked at, not a newer start.
        if cur.container_id != c.container_id || cur.pid != c.pid || !cur.status.is_live() {
            continue;
        }
        // A stop marked since the entry was read: the end is that stop's,
        // not a crash for `health watch` to heal, and its stopper keeps
        // the output and removes the container.
        if !c.status.is_live() {
            if let Some(why) = crate::lifecycle::stop_in_progress(cur) {
                c.status = Status::Stopped;
                c.reason = Some(why);
                c.ended_container = None;
            }
        }
        cur.status = c.status;
        if cur.container_id.is_none() {
            cur.container_id = c.adopt.clone();
        }
        if c.status != Status::Initializing {
            cur.starter = None;
        }
        if !c.status.is_live() {
            cur.stopping = None;
        }
        if c.status.is_live() {
            cur.status_reason = None;
        } else {
            cur.status_reason = c.reason.clone();
            cur.exit_code = c.exit_code;
            cur.timestamps.stopped = Some(Utc::now());
            cur.resources.cpu_usage = None;
            cur.resources.memory_usage = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::registry::{ProcRef, StopMarker};

    fn registry_with(stopping: Option<StopMarker>) -> (Registry, InstanceId) {
        let mut reg: Registry = serde_json::from_value(serde_json::json!({
            "instances": {"p-claude": {
                "id": "p-claude", "project_name": "p", "mode": "claude",
                "status": "running", "container_id": "c1", "port": 41000,
                "runtime": "docker"
            }}
        }))
        .unwrap();
        let id: InstanceId = "p-claude".parse().unwrap();
        reg.instances.get_mut(&id).unwrap().stopping = stopping;
        (reg, id)
    }

    fn crash(id: &InstanceId) -> Change {
        Change {
            id: id.clone(),
            container_id: Some("c1".into()),
            pid: None,
            status: Status::Error,
            reason: Some("agent exited with code 137".into()),
            exit_code: Some(137),
            ended_container: Some("c1".into()),
            adopt: None,
            remove_first: None,
        }
    }

    /// Read before a user's stop marked the entry, written after: the end
    /// is the user's stop, not a crash `health watch` would heal.
    #[test]
    fn a_crash_seen_before_a_stop_was_marked_is_that_stop() {
        let by = ProcRef::me();
        let (mut reg, id) = registry_with(Some(StopMarker {
            reason: "stopped by user".into(),
            by: Some(by),
        }));
        let mut changes = vec![crash(&id)];
        apply(&mut reg, &mut changes);
        let e = &reg.instances[&id];
        assert_eq!(e.status, Status::Stopped);
        assert_eq!(e.status_reason.as_deref(), Some("stopped by user"));
        assert_eq!(e.exit_code, Some(137));
        assert!(
            changes[0].ended_container.is_none(),
            "the stopper removes it"
        );

        let (mut reg, id) = registry_with(None);
        apply(&mut reg, &mut [crash(&id)]);
        assert_eq!(reg.instances[&id].status, Status::Error);
    }
}
