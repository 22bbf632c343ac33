//! Reconcile: make the registry say what really runs. One label-filtered
//! container listing per call (and only when a Docker instance is live);
//! host agents by pid + start time; orphans of dead shells per policy.

use super::docker::DockerEngine;
use crate::core::error::Result;
use crate::core::types::{InstanceId, Status};
use crate::engine::state::ContainerState;
use crate::state::config::ShellExitPolicy;
use crate::state::context::Ctx;
use crate::state::registry::{Registry, RuntimeKind};
use chrono::Utc;

/// How long an `initializing` entry may wait for its launch to finish
/// before it is taken for an interrupted start (sooner when the process
/// that was starting it is gone).
const START_GRACE_SECS: i64 = 60;

struct Change {
    id: InstanceId,
    container_id: Option<String>,
    pid: Option<u32>,
    status: Status,
    reason: Option<String>,
    exit_code: Option<i64>,
    /// A container that ended: save its output and (auto_cleanup) remove it.
    ended_container: Option<String>,
    /// The container an interrupted start left running, to record.
    adopt: Option<String>,
    /// A container no entry recorded, to remove (output saved) before the
    /// change is written: if that fails, or this process dies first, the
    /// entry still says `initializing` and the next reconcile tries again.
    remove_first: Option<String>,
}

/// The registry, corrected against the engine and /proc, with changes
/// written back. An engine that does not answer leaves Docker entries as
/// they were (with a warning): listing must work without it.
pub fn refresh(ctx: &Ctx) -> Result<Registry> {
    refresh_with(ctx, true)
}

/// `refresh`, saying nothing when the engine does not answer (for callers
/// that report that themselves, e.g. a start that needs the engine).
pub fn refresh_quietly(ctx: &Ctx) -> Result<Registry> {
    refresh_with(ctx, false)
}

fn refresh_with(ctx: &Ctx, warn: bool) -> Result<Registry> {
    let reg = ctx.store.load()?;
    let live: Vec<_> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .collect();
    if live.is_empty() {
        return Ok(reg);
    }
    let now = Utc::now();
    // A start under way, by a process that still runs: leave it alone.
    let young = |i: &crate::state::registry::Instance| {
        i.status == Status::Initializing
            && super::starter_alive(i)
            && i.timestamps
                .started
                .or(i.timestamps.created)
                .is_some_and(|c| (now - c).num_seconds() < START_GRACE_SECS)
    };
    let wants_engine = live.iter().any(|i| {
        (i.runtime == Some(RuntimeKind::Docker)
            || (i.runtime.is_none() && i.container_id.is_some()))
            && !young(i)
    });
    let engine = if wants_engine {
        match DockerEngine::connect() {
            Ok(e) => Some(e),
            Err(e) => {
                if warn {
                    eprintln!(
                        "ai-sessctl: warning: {e}; container instances shown as last recorded"
                    );
                }
                None
            }
        }
    } else {
        None
    };
    let observed = match &engine {
        Some(e) => match e.observe() {
            Ok(mut o) => {
                // Under many concurrent creates the engine's listing can miss
                // a container for a moment: ask for each missing one by id
                // before calling it gone.
                for inst in &live {
                    if let Some(cid) = &inst.container_id {
                        if !o.contains_key(inst.id.as_str()) {
                            if let Some(one) = e.observe_one(cid) {
                                o.insert(inst.id.to_string(), one);
                            }
                        }
                    }
                }
                Some(o)
            }
            Err(err) => {
                if warn {
                    eprintln!("ai-sessctl: warning: {err}");
                }
                None
            }
        },
        None => None,
    };

    let home = super::docker::home_label(&ctx.dirs);
    let mut changes = Vec::new();
    for inst in &live {
        if young(inst) {
            continue;
        }
        let change = |status, reason: &str, exit_code, ended: Option<String>| Change {
            id: inst.id.clone(),
            container_id: inst.container_id.clone(),
            pid: inst.pid,
            status,
            reason: Some(reason.to_owned()),
            exit_code,
            ended_container: ended,
            adopt: None,
            remove_first: None,
        };
        // Seed-format entries carry no runtime: infer it from what they hold.
        let runtime = inst.runtime.or_else(|| {
            if inst.container_id.is_some() {
                Some(RuntimeKind::Docker)
            } else {
                inst.pid.map(|_| RuntimeKind::Host)
            }
        });
        match runtime {
            Some(RuntimeKind::Docker) => {
                let Some(observed) = &observed else { continue };
                let found = observed
                    .get(inst.id.as_str())
                    .filter(|o| inst.container_id.is_some() || o.belongs_to(&home));
                // A start whose starter died (the entry is past the grace):
                // a stop handed to it is carried out here, else the
                // container it left (if any) is recorded as it is.
                if inst.status == Status::Initializing {
                    if let Some(m) = &inst.stopping {
                        changes.push(Change {
                            remove_first: found.map(|o| o.container_id.clone()),
                            ..change(Status::Stopped, &m.reason, None, None)
                        });
                        continue;
                    }
                    match found {
                        None => {
                            changes.push(change(
                                Status::Error,
                                "start was interrupted",
                                None,
                                None,
                            ));
                            continue;
                        }
                        // Its start request may still be under way in the
                        // engine: remove it for good before saying so.
                        Some(o) if o.state == ContainerState::Created => {
                            changes.push(Change {
                                remove_first: Some(o.container_id.clone()),
                                ..change(
                                    Status::Error,
                                    "start was interrupted (container created but never started)",
                                    None,
                                    None,
                                )
                            });
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                match found {
                    None => changes.push(change(
                        Status::Stopped,
                        "container removed outside ai-sessctl",
                        None,
                        None,
                    )),
                    Some(o)
                        if inst
                            .container_id
                            .as_deref()
                            .is_some_and(|c| c != o.container_id) =>
                    {
                        changes.push(change(
                            Status::Stopped,
                            "container replaced outside ai-sessctl",
                            None,
                            None,
                        ))
                    }
                    Some(o) => match o.state {
                        ContainerState::Running if inst.status != Status::Running => {
                            changes.push(Change {
                                adopt: Some(o.container_id.clone()),
                                ..change(Status::Running, "running", None, None)
                            })
                        }
                        ContainerState::Paused if inst.status != Status::Paused => {
                            changes.push(Change {
                                adopt: Some(o.container_id.clone()),
                                ..change(Status::Paused, "paused outside ai-sessctl", None, None)
                            })
                        }
                        // A terminal attached to it sees the end and
                        // records it (with its exit code, as the user saw
                        // it): not a crash behind anyone's back.
                        s if s.has_ended() && inst.live_clients().next().is_some() => {}
                        s if s.has_ended() => {
                            let code = o.exit_code;
                            if let Some(why) = super::stop_in_progress(inst) {
                                // Being stopped: the stopper saves the logs
                                // and removes the container.
                                changes.push(change(Status::Stopped, &why, code, None));
                                continue;
                            }
                            let setup = crate::features::worktree::setup::failure_reason(
                                &ctx.dirs, &inst.id,
                            );
                            let (status, reason) = match code {
                                Some(c) if c != 0 && setup.is_some() => {
                                    (Status::Error, setup.unwrap_or_default())
                                }
                                Some(0) => (Status::Stopped, "agent exited".to_owned()),
                                Some(c) => (Status::Error, format!("agent exited with code {c}")),
                                None => (Status::Error, "container died".to_owned()),
                            };
                            changes.push(Change {
                                adopt: Some(o.container_id.clone()),
                                ..change(status, &reason, code, Some(o.container_id.clone()))
                            });
                        }
                        ContainerState::Created => changes.push(change(
                            Status::Error,
                            "container created but never started",
                            None,
                            Some(o.container_id.clone()),
                        )),
                        _ => {}
                    },
                }
            }
            // Without a start time (a seed-format entry) the pid may be
            // anyone's by now: never taken for the agent.
            Some(RuntimeKind::Host) => match (inst.pid, inst.pid_start_time) {
                (Some(pid), Some(start)) if crate::core::procinfo::alive(pid, Some(start)) => {}
                _ => changes.push(
                    match crate::features::worktree::setup::failure_reason(&ctx.dirs, &inst.id) {
                        Some(why) => change(Status::Error, &why, None, None),
                        None => change(Status::Stopped, "agent process ended", None, None),
                    },
                ),
            },
            None if inst.status == Status::Initializing => {
                changes.push(change(Status::Error, "start was interrupted", None, None))
            }
            None => changes.push(change(
                Status::Stopped,
                "no container or process recorded",
                None,
                None,
            )),
        }
    }

    if changes.iter().any(|c| c.remove_first.is_some()) {
        // Removing the container of a dead start is only right if the entry
        // still says so now: the observation may predate the start's
        // completion. Checked and done under the lock, which the starter
        // takes to record its container.
        let mut removed = Vec::new();
        let checked = ctx.store.update(|reg| {
            for c in changes.iter().filter(|c| c.remove_first.is_some()) {
                let still = reg.instances.get(&c.id).is_some_and(|cur| {
                    cur.status == Status::Initializing
                        && cur.container_id.is_none()
                        && !super::starter_alive(cur)
                });
                let done = still
                    && match (&engine, &c.remove_first) {
                        (Some(engine), Some(cid)) => {
                            super::save_and_remove(ctx, engine, &c.id, cid).is_ok()
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
            eprintln!("ai-sessctl: warning: interrupted starts not settled: {e}");
        }
        changes.retain(|c| c.remove_first.is_none() || removed.contains(&c.id));
    }
    let reg = if changes.is_empty() {
        reg
    } else {
        // What cannot be written (full disk) is still what is true: show
        // it, say why it is not kept, and the next reconcile writes it.
        let written = ctx.store.update(|reg| {
            apply(reg, &mut changes);
            Ok(reg.clone())
        });
        let reg = match written {
            Ok(reg) => reg,
            Err(e) => {
                eprintln!("ai-sessctl: warning: corrections not saved: {e}");
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
            if let (Some(engine), Some(cid)) = (&engine, &c.ended_container) {
                let cleanup = ctx
                    .effective(&c.id)
                    .map(|e| e.settings.global.auto_cleanup)
                    .unwrap_or(true);
                if cleanup {
                    let _ = super::save_and_remove(ctx, engine, &c.id, cid);
                }
            }
        }
        reg
    };
    reap_orphans(ctx, reg)
}

/// Writes reconcile's findings into `reg`, each only to the entry it was
/// made from (not a newer start of the same id).
fn apply(reg: &mut Registry, changes: &mut [Change]) {
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
            if let Some(why) = super::stop_in_progress(cur) {
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

/// Instances whose owning shell died without running its exit hook (e.g.
/// SIGKILL): apply `on_shell_exit` as the hook would have.
fn reap_orphans(ctx: &Ctx, reg: Registry) -> Result<Registry> {
    let orphans: Vec<_> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .filter(|i| {
            i.owner_pid
                .is_some_and(|p| !crate::core::procinfo::alive(p, i.owner_start_time))
        })
        .map(|i| i.id.clone())
        .collect();
    if orphans.is_empty() {
        return Ok(reg);
    }
    apply_shell_exit(ctx, &orphans, "owner shell is gone")?;
    ctx.store.load()
}

/// Applies `on_shell_exit` to instances whose shell ended. An instance
/// that another terminal is attached to is kept for that terminal: its
/// shell becomes the owner (said in the event log).
pub fn apply_shell_exit(ctx: &Ctx, ids: &[InstanceId], why: &str) -> Result<()> {
    let ids = pass_ownership(ctx, ids)?;
    let policy = ctx.global()?.global.on_shell_exit;
    let (stop, keep): (Vec<_>, Vec<_>) = ids.iter().cloned().partition(|id| {
        ctx.effective(id)
            .map(|e| e.settings.global.on_shell_exit)
            .unwrap_or(policy)
            == ShellExitPolicy::Stop
    });
    if !keep.is_empty() {
        ctx.store.update(|reg| {
            for id in &keep {
                if let Some(i) = reg.instances.get_mut(id) {
                    i.owner_pid = None;
                    i.owner_start_time = None;
                }
            }
            Ok(())
        })?;
    }
    if !stop.is_empty() {
        for (id, e) in super::stop_many(ctx, &stop, false, why) {
            eprintln!("ai-sessctl: warning: could not stop {id}: {e}");
        }
    }
    Ok(())
}

/// Hands each instance that a terminal in another (live) shell is attached
/// to over to that shell, under the lock; returns the others.
fn pass_ownership(ctx: &Ctx, ids: &[InstanceId]) -> Result<Vec<InstanceId>> {
    let mut passed = Vec::new();
    let rest = ctx.store.update(|reg| {
        let mut rest = Vec::new();
        for id in ids {
            let Some(inst) = reg.instances.get_mut(id) else {
                continue;
            };
            let owner = inst.owner_pid;
            let heir = inst
                .live_clients()
                .filter_map(|c| c.shell.clone())
                .find(|s| Some(s.pid) != owner && s.alive());
            match heir {
                Some(shell) => {
                    passed.push((id.clone(), owner, shell.pid));
                    inst.owner_pid = Some(shell.pid);
                    inst.owner_start_time = shell.start_time;
                }
                None => rest.push(id.clone()),
            }
        }
        Ok(rest)
    })?;
    for (id, from, to) in passed {
        ctx.events().log(
            crate::state::events::Level::Info,
            "shell",
            "ownership passed to an attached terminal",
            serde_json::json!({"instance": id, "from_shell": from, "to_shell": to}),
        );
    }
    Ok(rest)
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
