//! Stops, one or many at once, on behalf of the user or of a heal.

use super::docker::DockerEngine;
use super::finish::{save_and_remove_as, starter_alive, Ended};
use super::networks::{hand_off, Leftovers};
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Status};
use crate::core::warning::Warnings;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, ProcRef, Registry, RuntimeKind, StopMarker};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Who asks for a stop. The user's intent wins over automation: a user's
/// stop cancels a heal under way, and a heal only goes ahead while nobody
/// stopped the instance meanwhile (both decided under the registry lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopper {
    /// The user: CLI, API, dashboard, their shell's exit.
    User,
    /// `health watch` restarting it.
    Heal,
    /// `health watch` giving up on it: it ends in `error`.
    GiveUp,
}

/// Whether a graceful stop that takes a while says so on stderr: set by
/// the commands a user waits on in a terminal (`stop`), not by the server
/// or the helper that finishes a shell's exit.
static SAY_WAITS: AtomicBool = AtomicBool::new(false);

/// How long a graceful stop may take before it says it waits.
const QUIET_WAIT: Duration = Duration::from_secs(2);

/// From now on a graceful stop still under way after a moment says on
/// stderr that it waits, for how long at most, and how not to.
pub fn say_when_waiting() {
    SAY_WAITS.store(true, Ordering::Relaxed);
}

/// Runs `stop` (the agent's graceful stop, up to `timeout`); when it has
/// not returned after [`QUIET_WAIT`], says why the user waits.
fn noting_a_wait<T>(
    id: &InstanceId,
    timeout: Duration,
    force: bool,
    stop: impl FnOnce() -> T,
) -> T {
    if force || !SAY_WAITS.load(Ordering::Relaxed) || timeout <= QUIET_WAIT {
        return stop();
    }
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(QUIET_WAIT) {
                eprintln!(
                    "waiting up to {} for {id} to stop (it ignores SIGTERM?); `--force` kills it now",
                    crate::state::config::units::Dur(timeout)
                );
            }
        });
        let out = stop();
        drop(done);
        out
    })
}

/// Stops instances in parallel at the user's request: gracefully with the
/// configured timeout, then by force. Returns the ids that failed, with why.
pub fn stop_many(
    ctx: &Ctx,
    ids: &[InstanceId],
    force: bool,
    reason: &str,
) -> Vec<(InstanceId, Error)> {
    stop_many_as(ctx, ids, force, reason, Stopper::User)
}

/// `stop_many` on behalf of `by`. Says on stderr what went wrong without
/// failing a stop; [`stop_many_with_warnings`] returns it instead.
pub fn stop_many_as(
    ctx: &Ctx,
    ids: &[InstanceId],
    force: bool,
    reason: &str,
    by: Stopper,
) -> Vec<(InstanceId, Error)> {
    let (failed, warnings) = stop_many_with_warnings(ctx, ids, force, reason, by);
    super::reconcile::say(&warnings);
    failed
}

/// The registered instances of `ids`, and those on another engine than
/// this process reaches, with why: not this one's to stop (nor to mark
/// stopping).
fn reachable_targets(
    reg: &Registry,
    ids: &[InstanceId],
) -> (Vec<Instance>, Vec<(InstanceId, Error)>) {
    let mut elsewhere = Vec::new();
    let targets = ids
        .iter()
        .filter_map(|id| reg.get(id).cloned())
        .filter(|i| match super::reachable(i) {
            Ok(()) => true,
            Err(e) => {
                elsewhere.push((i.id.clone(), e));
                false
            }
        })
        .collect();
    (targets, elsewhere)
}

/// `stop_many_as`, returning (the ids that failed, with why; what went
/// wrong without failing a stop: output not kept, an end not recorded).
pub fn stop_many_with_warnings(
    ctx: &Ctx,
    ids: &[InstanceId],
    force: bool,
    reason: &str,
    by: Stopper,
) -> (Vec<(InstanceId, Error)>, Warnings) {
    let reg = match ctx.store.load() {
        Ok(r) => r,
        Err(e) => {
            let failed = ids
                .iter()
                .map(|id| (id.clone(), Error::Other(e.to_string())))
                .collect();
            return (failed, Warnings::new());
        }
    };
    let (targets, elsewhere) = reachable_targets(&reg, ids);
    let needs_engine = targets
        .iter()
        .any(|i| i.runtime == Some(RuntimeKind::Docker) && i.container_id.is_some());
    let engine = if needs_engine {
        match super::engine_for(ctx) {
            Ok(e) => Some(e),
            Err(e) => {
                let failed = targets
                    .iter()
                    .map(|i| (i.id.clone(), Error::Engine(e.to_string())))
                    .collect();
                return (failed, Warnings::new());
            }
        }
    } else {
        None
    };
    let mut failed: Vec<(InstanceId, Error)> = ids
        .iter()
        .filter(|id| reg.get(id).is_none())
        .map(|id| (id.clone(), Error::not_found(id)))
        .collect();
    failed.extend(elsewhere);
    // The whole batch is marked in one registry update (each write is
    // fsync'd under the lock: one per instance made a batch wait in line).
    // An initializing entry goes its own way (see `stop_one_at`).
    let me = ProcRef::me();
    let mut marks: Vec<Option<Result<Then>>> = match ctx.store.update(|reg| {
        Ok(targets
            .iter()
            .map(|inst| {
                (inst.status != Status::Initializing).then(|| mark(reg, inst, reason, by, &me))
            })
            .collect::<Vec<_>>())
    }) {
        Ok(marks) => marks.into_iter().map(|m| m.map(Ok)).collect(),
        // Not being able to write (full disk) must not keep agents running.
        Err(e) => targets
            .iter()
            .map(|i| (i.status != Status::Initializing).then(|| Err(Error::Other(e.to_string()))))
            .collect(),
    };
    // Each agent's end is recorded as soon as it is stopped, together with
    // whatever others ended meanwhile (one registry update for them), and
    // its output is kept right after. A batch leaves its containers and
    // their networks to a detached helper: the engine removes networks one
    // at a time (about a quarter second each), and removing containers
    // while others still stop made those stops wait.
    let recorder = Recorder::new(ctx, reason);
    let batch = targets.len() > 1;
    let left = Mutex::new(Leftovers::default());
    let warnings = Mutex::new(Warnings::new());
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .zip(marks.drain(..))
            .map(|(inst, pre)| {
                let engine = engine.as_ref();
                let (recorder, left, warnings) = (&recorder, &left, &warnings);
                s.spawn(move || {
                    let call = StopCall {
                        ctx,
                        engine,
                        force,
                        reason,
                        by,
                        warnings,
                    };
                    let end = call
                        .stop_one_at(inst, DEPTH, pre)
                        .map_err(|e| (inst.id.clone(), e))?;
                    if let Some(end) = end {
                        let applied = recorder.record(&end);
                        let left = batch.then_some(left);
                        let mut said = Warnings::new();
                        let done =
                            end.aftermath(ctx, Some(reason), engine, applied, left, &mut said);
                        if let Err(e) = done {
                            said.warn(not_recorded(&end.inst, &e));
                        }
                        call.warn(said);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            if let Ok(Err(f)) = h.join() {
                failed.push(f);
            }
        }
    });
    let left = left.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut warnings = warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    let nothing_left = left.containers.is_empty() && left.networks.is_empty();
    if let (Some(engine), false) = (&engine, nothing_left) {
        warnings.extend(hand_off(ctx, engine, left));
    }
    (failed, warnings)
}

/// Records the ends of a batch's stops as they come, in as few registry
/// updates as it takes (each one is fsync'd under the lock): a stop that
/// finds others waiting writes theirs with its own.
pub(super) struct Recorder<'a> {
    ctx: &'a Ctx,
    reason: &'a str,
    /// Ends not written yet, by ticket.
    queue: Mutex<Vec<(usize, Ended)>>,
    /// Written ends: whether each applied (`Err`: why none could be).
    done: Mutex<HashMap<usize, std::result::Result<bool, String>>>,
    /// Held by the one stop writing.
    writer: Mutex<()>,
    tickets: AtomicUsize,
}

impl<'a> Recorder<'a> {
    fn new(ctx: &'a Ctx, reason: &'a str) -> Self {
        Recorder {
            ctx,
            reason,
            queue: Mutex::new(Vec::new()),
            done: Mutex::new(HashMap::new()),
            writer: Mutex::new(()),
            tickets: AtomicUsize::new(0),
        }
    }

    /// Writes `end` down (with the ends queued meanwhile); whether it
    /// applied, as [`Ended::record`] says.
    fn record(&self, end: &Ended) -> Result<bool> {
        fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
            m.lock().unwrap_or_else(|p| p.into_inner())
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        lock(&self.queue).push((ticket, end.clone()));
        let _writing = lock(&self.writer);
        let written = lock(&self.done).remove(&ticket);
        let result = match written {
            Some(r) => r,
            None => {
                let batch = std::mem::take(&mut *lock(&self.queue));
                let applied = self.ctx.store.update(|reg| {
                    Ok(batch
                        .iter()
                        .map(|(_, end)| end.record(reg, Some(self.reason)))
                        .collect::<Vec<_>>())
                });
                let mut done = lock(&self.done);
                for (i, (t, _)) in batch.iter().enumerate() {
                    let r = match &applied {
                        Ok(v) => Ok(v[i]),
                        Err(e) => Err(e.to_string()),
                    };
                    done.insert(*t, r);
                }
                done.remove(&ticket)
                    .unwrap_or_else(|| Err("its stop was not recorded".to_owned()))
            }
        };
        result.map_err(Error::Other)
    }
}

/// The warning for a stop whose end could not be recorded.
pub(super) fn not_recorded(inst: &Instance, e: &Error) -> String {
    format!(
        "{} is stopped, but that could not be recorded: {e}",
        inst.id
    )
}

/// Stops one instance, its end recorded at once. Says on stderr what went
/// wrong without failing it.
pub(super) fn stop_one(
    ctx: &Ctx,
    inst: &Instance,
    engine: Option<&DockerEngine>,
    force: bool,
    reason: &str,
    by: Stopper,
) -> Result<()> {
    let warnings = Mutex::new(Warnings::new());
    let call = StopCall {
        ctx,
        engine,
        force,
        reason,
        by,
        warnings: &warnings,
    };
    let stopped = call.stop_one_at(inst, DEPTH, None);
    if let Ok(Some(end)) = &stopped {
        call.warn(finish_now(ctx, end, reason, engine));
    }
    super::reconcile::say(&warnings.into_inner().unwrap_or_else(|p| p.into_inner()));
    stopped.map(|_| ())
}

/// Records one stopped agent's end on its own; what went wrong (not fatal)
/// is returned.
pub(super) fn finish_now(
    ctx: &Ctx,
    end: &Ended,
    reason: &str,
    engine: Option<&DockerEngine>,
) -> Warnings {
    let applied = ctx.store.update(|reg| Ok(end.record(reg, Some(reason))));
    let mut warnings = Warnings::new();
    if let Err(e) = end.aftermath(ctx, Some(reason), engine, applied, None, &mut warnings) {
        warnings.warn(not_recorded(&end.inst, &e));
    }
    warnings
}

/// What a stop does with an entry, decided on it as it is now.
pub(super) enum Then {
    Stop,
    /// The entry changed since it was read (a heal started it again,
    /// a reconcile settled it): stop what it says now.
    Changed(Box<Instance>),
    /// A start is under way now: the stop is handed to its starter.
    Handed,
    Cancelled,
}

/// Decides (under the lock) what stopping `inst` does, and marks it.
/// Said before the agent goes: a reconcile that sees it end meanwhile
/// (`health watch` follows the engine) takes it for this stop, not for
/// a crash to heal. Also where the user's intent overrides automation:
/// their stop clears a heal's marker (an entry in error, or stopped by
/// a heal that is about to start it again, is stopped for good); a
/// heal's own stop needs its marker still there.
pub(super) fn mark(
    reg: &mut Registry,
    inst: &Instance,
    reason: &str,
    by: Stopper,
    me: &ProcRef,
) -> Then {
    let live = inst.status.is_live();
    let Some(cur) = reg.instances.get_mut(&inst.id) else {
        return Then::Stop;
    };
    let was_healing = match by {
        Stopper::User => cur.healing.take().is_some(),
        Stopper::Heal if cur.healing.as_ref() != Some(me) => return Then::Cancelled,
        _ => false,
    };
    if cur.status == Status::Initializing {
        cur.stopping = Some(StopMarker {
            reason: reason.to_owned(),
            by: None,
        });
        return Then::Handed;
    }
    if cur.container_id != inst.container_id || cur.pid != inst.pid || cur.status.is_live() != live
    {
        return Then::Changed(Box::new(cur.clone()));
    }
    if live {
        // Who stops it: a marker left by a stopper that was killed
        // before it got to the engine must not turn a later crash
        // into a "stop".
        cur.stopping = Some(StopMarker {
            reason: reason.to_owned(),
            by: Some(me.clone()),
        });
    } else if by == Stopper::User && (cur.status == Status::Error || was_healing) {
        cur.status = Status::Stopped;
        cur.status_reason = Some(reason.to_owned());
        cur.timestamps.stopped = Some(Utc::now());
    }
    Then::Stop
}

/// One stop's whole context: who asks, why, the engine connection to use
/// (`None`: one is made when needed), and where what goes wrong without
/// failing it is collected (a batch's stops share it).
#[derive(Clone, Copy)]
pub(super) struct StopCall<'a> {
    pub ctx: &'a Ctx,
    pub engine: Option<&'a DockerEngine>,
    pub force: bool,
    pub reason: &'a str,
    pub by: Stopper,
    pub warnings: &'a Mutex<Warnings>,
}

/// How many times a stop follows an entry that changed under it.
const DEPTH: u8 = 4;

impl StopCall<'_> {
    fn warn(&self, said: Warnings) {
        if !said.is_empty() {
            self.warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(said);
        }
    }

    /// Stops `inst`; its end, for the caller to record (`None`: recorded
    /// already, or nothing ended). `pre` is the batch's marking of it;
    /// `depth`, how many more changes of the entry it follows.
    pub(super) fn stop_one_at(
        &self,
        inst: &Instance,
        depth: u8,
        pre: Option<Result<Then>>,
    ) -> Result<Option<Ended>> {
        if inst.status == Status::Initializing {
            return self.stop_starting(inst, depth);
        }
        super::reachable(inst)?;
        let ctx = self.ctx;
        // Read once: the timeout, then whether and how its container goes.
        let eff = ctx.effective(&inst.id).ok();
        let timeout = eff.as_ref().map_or(Duration::from_secs(10), |e| {
            e.settings.global.stop_timeout.0
        });
        let live = inst.status.is_live();
        // Not being able to write the marker (full disk) must not keep the
        // agent running.
        let marked = match pre {
            Some(pre) => pre,
            None => {
                let me = ProcRef::me();
                ctx.store
                    .update(|reg| Ok(mark(reg, inst, self.reason, self.by, &me)))
            }
        };
        match marked {
            Ok(Then::Stop) | Err(_) => {}
            Ok(Then::Handed) => return Ok(None),
            Ok(Then::Changed(cur)) => {
                return match depth {
                    0 => Err(Error::Other(format!(
                        "{} kept changing while it was being stopped; try again",
                        inst.id
                    ))),
                    _ => self.stop_one_at(&cur, depth - 1, None),
                }
            }
            Ok(Then::Cancelled) => {
                return Err(Error::Invalid(format!(
                    "healing {} was cancelled: it was stopped meanwhile",
                    inst.id
                )))
            }
        }
        let mut code = None;
        let mut own = None;
        if let Some(runtime) = super::runtime_of(inst, self.engine, &mut own)? {
            code = noting_a_wait(&inst.id, timeout, self.force, || {
                runtime.stop(inst, timeout, self.force)
            })?;
        }
        let engine_used = self.engine.or(own.as_ref());
        if !live {
            // Its container (an entry in error may still have one running)
            // is stopped; it goes like any ended container.
            if let (Some(engine), Some(cid), true) =
                (engine_used, &inst.container_id, self.by == Stopper::User)
            {
                if eff.as_ref().is_none_or(|e| e.settings.global.auto_cleanup) {
                    let mut said = Warnings::new();
                    let removed = save_and_remove_as(
                        ctx,
                        engine,
                        &inst.id,
                        cid,
                        eff.as_ref(),
                        None,
                        &mut said,
                    );
                    self.warn(said);
                    removed?;
                }
            }
            return Ok(None);
        }
        let end = Ended {
            inst: inst.clone(),
            code,
            status: if self.by == Stopper::GiveUp {
                Status::Error
            } else {
                Status::Stopped
            },
            eff,
        };
        // The agent is stopped: its end is recorded by the caller, with the
        // rest of its batch, unless this stop made its own engine connection.
        match &own {
            Some(own) => {
                self.warn(finish_now(ctx, &end, self.reason, Some(own)));
                Ok(None)
            }
            None => Ok(Some(end)),
        }
    }

    /// Stops an `initializing` entry. Its starter owns the launch: a stop
    /// now would free the port the container is about to publish and be
    /// undone when the start records it. The stop is left to the starter,
    /// unless the start has completed meanwhile. A start whose starter died
    /// is settled by reconcile first (what it left running is then stopped).
    fn stop_starting(&self, inst: &Instance, depth: u8) -> Result<Option<Ended>> {
        let ctx = self.ctx;
        if !starter_alive(inst) {
            super::refresh(ctx)?;
        }
        let now = ctx.store.update(|reg| {
            let Some(cur) = reg.instances.get_mut(&inst.id) else {
                return Ok(None);
            };
            if self.by == Stopper::User {
                cur.healing = None;
            }
            if cur.status == Status::Initializing {
                cur.stopping = Some(StopMarker {
                    reason: self.reason.to_owned(),
                    by: None,
                });
                return Ok(None);
            }
            Ok(Some(cur.clone()))
        })?;
        let Some(cur) = now.filter(|cur| cur.status.is_live()) else {
            return Ok(None);
        };
        let own = match self.engine {
            None if cur.container_id.is_some() => Some(DockerEngine::connect()?),
            _ => None,
        };
        let again = StopCall {
            engine: self.engine.or(own.as_ref()),
            ..*self
        };
        let end = again.stop_one_at(&cur, depth.saturating_sub(1), None)?;
        match (end, &own) {
            // Its engine connection ends here: recorded now.
            (Some(end), Some(own)) => {
                self.warn(finish_now(ctx, &end, self.reason, Some(own)));
                Ok(None)
            }
            (end, _) => Ok(end),
        }
    }
}
