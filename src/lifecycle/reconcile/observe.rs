//! Reconcile's first step: ask the engine (one label-filtered listing, and
//! only when a Docker instance is live) and /proc what is true of each
//! live entry. Nothing is decided or written here.

use crate::core::types::{InstanceId, Status};
use crate::core::warning::Warnings;
use crate::engine::state::ContainerState;
use crate::lifecycle::docker::DockerEngine;
use crate::lifecycle::Observed;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry, RuntimeKind};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// How long an `initializing` entry may wait for its launch to finish
/// before it is taken for an interrupted start (sooner when the process
/// that was starting it is gone).
const START_GRACE_SECS: i64 = 60;

/// What the engine says about an entry's container.
#[derive(Debug, Clone)]
pub(super) enum Seen {
    /// Not known: the engine was not asked, or did not answer.
    Unknown,
    /// No container of ours for it (of this state home, when the entry
    /// records none).
    Gone,
    Found(Observed),
}

/// What is true of one live entry right now, as far as reconcile needs.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    /// A start under way, by a process that still runs, within the grace.
    pub young: bool,
    pub container: Seen,
    /// Its host agent runs (pid and start time match).
    pub process_alive: bool,
    /// A terminal is attached to it.
    pub attached: bool,
    /// The reason of a stop under way (its stopper still runs).
    pub stopping: Option<String>,
    /// Why its `worktree.setup` failed, when it did.
    pub setup_failure: Option<String>,
}

/// What `observe` found: the engine connection (kept for settling) and
/// the facts of every live entry.
pub(super) struct Observation {
    pub engine: Option<DockerEngine>,
    pub facts: HashMap<InstanceId, Facts>,
}

/// A start under way, by a process that still runs: left alone.
fn young(inst: &Instance, now: DateTime<Utc>) -> bool {
    inst.status == Status::Initializing
        && crate::lifecycle::starter_alive(inst)
        && inst
            .timestamps
            .started
            .or(inst.timestamps.created)
            .is_some_and(|c| (now - c).num_seconds() < START_GRACE_SECS)
}

/// Whether `inst` runs (or ran) in a container; seed-format entries carry
/// no runtime, and say it by holding a container id.
pub(super) fn in_container(inst: &Instance) -> bool {
    inst.runtime == Some(RuntimeKind::Docker)
        || (inst.runtime.is_none() && inst.container_id.is_some())
}

/// The facts of each live entry of `reg`; `None` when none is live.
/// `warnings` gets why the engine could not be asked.
pub(super) fn observe(ctx: &Ctx, reg: &Registry, warnings: &mut Warnings) -> Option<Observation> {
    let live: Vec<&Instance> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .collect();
    if live.is_empty() {
        return None;
    }
    let now = Utc::now();
    let young: HashMap<&InstanceId, bool> = live.iter().map(|i| (&i.id, young(i, now))).collect();
    let wants_engine = live.iter().any(|i| in_container(i) && !young[&i.id]);
    let engine = if wants_engine {
        match DockerEngine::connect() {
            Ok(e) => Some(e),
            Err(e) => {
                warnings.warn(format!("{e}; container instances shown as last recorded"));
                None
            }
        }
    } else {
        None
    };
    let listed = engine.as_ref().and_then(|e| list(e, &live, warnings));
    let home = ctx.dirs.home_label();
    let facts = live
        .iter()
        .map(|inst| {
            let container = match &listed {
                None => Seen::Unknown,
                // Its engine is not the one asked: left as recorded.
                Some(_) if crate::lifecycle::on_another_engine(inst).is_some() => Seen::Unknown,
                Some(l) => match l
                    .get(inst.id.as_str())
                    .filter(|o| inst.container_id.is_some() || o.belongs_to(&home))
                {
                    Some(o) => Seen::Found(o.clone()),
                    None => Seen::Gone,
                },
            };
            // A clone box that failed says why in its own volume.
            if let (Some(e), Seen::Found(o)) = (&engine, &container) {
                let failed =
                    o.state == ContainerState::Exited && o.exit_code.is_some_and(|c| c != 0);
                if failed && inst.clone.is_some() {
                    crate::lifecycle::setup_outcome::bring_home(ctx, e, inst);
                }
            }
            let facts = Facts {
                young: young[&inst.id],
                container,
                process_alive: match (inst.pid, inst.pid_start_time) {
                    (Some(pid), Some(start)) => crate::core::procinfo::alive(pid, Some(start)),
                    _ => false,
                },
                attached: inst.live_clients().next().is_some(),
                stopping: crate::lifecycle::stop_in_progress(inst),
                setup_failure: crate::features::worktree::setup::failure_reason(
                    &ctx.dirs, &inst.id,
                ),
            };
            (inst.id.clone(), facts)
        })
        .collect();
    Some(Observation { engine, facts })
}

/// Our containers, by instance id. Under many concurrent creates the
/// engine's listing can miss a container for a moment: each live entry's
/// missing one is asked for by id before it is called gone.
fn list(
    engine: &DockerEngine,
    live: &[&Instance],
    warnings: &mut Warnings,
) -> Option<HashMap<String, Observed>> {
    match engine.observe() {
        Ok(mut o) => {
            for inst in live {
                if let Some(cid) = &inst.container_id {
                    if !o.contains_key(inst.id.as_str()) {
                        if let Some(one) = engine.observe_one(cid) {
                            o.insert(inst.id.to_string(), one);
                        }
                    }
                }
            }
            Some(o)
        }
        Err(err) => {
            warnings.warn(err.to_string());
            None
        }
    }
}
