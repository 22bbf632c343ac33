//! Lifecycle operations, shared by the CLI (and any other front end): one
//! implementation of start, finish, stop, pause, remove.

use super::docker::DockerEngine;
use super::{agent_env, choose, host, LaunchSpec, Launched, Runtime};
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode, Port, Status};
use crate::state::config::{self, Effective, RuntimeChoice};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{
    derive_id, project_name_of, Instance, ProcRef, Registry, RuntimeKind, StopMarker,
};
use chrono::Utc;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub struct StartRequest {
    pub project: PathBuf,
    pub mode: Mode,
    pub id: Option<InstanceId>,
    pub port: Option<Port>,
    pub runtime: Option<RuntimeChoice>,
    /// `--egress`: overrides `networking.egress` for this instance.
    pub egress: Option<config::EgressPolicy>,
    /// The user's arguments for the agent, recorded with the instance.
    pub args: Vec<String>,
    /// Appended to `args` for this run only (`resume_args`: continue the
    /// last conversation); not recorded.
    pub continue_args: Vec<String>,
    pub shell_pid: Option<u32>,
    /// Host runtime only: run without a terminal, output to the log.
    pub detach: bool,
    /// A heal by `health watch`: goes ahead only while the entry still
    /// carries this process's healing marker (a user's stop clears it).
    pub heal: bool,
    /// A `--worktree` start: recorded on the entry (`extra["worktree"]`),
    /// which makes every start of it run `worktree.setup` first.
    pub worktree: Option<crate::features::worktree::Info>,
}

pub enum Started {
    /// The instance already runs (attach to it instead).
    AlreadyRunning(Instance),
    Container {
        inst: Instance,
        engine: DockerEngine,
    },
    /// A host agent; in the foreground the caller waits for the child.
    Process { inst: Instance, child: Child },
}

fn mode_of(id: &InstanceId) -> Result<Mode> {
    Mode::parse(id.mode_suffix())
}

pub fn effective_for(ctx: &Ctx, id: &InstanceId) -> Result<Effective> {
    config::load_for(&ctx.dirs, &mode_of(id)?, Some(id))
}

/// Starts an instance in three phases: [`reserve`] settles the id and
/// registers it as `initializing` with its port under the lock; [`launch`]
/// starts the agent without holding the lock; [`record`] writes down what
/// runs (or undoes the launch when a stop or removal came meanwhile). A
/// failed launch leaves no half-registered entry behind.
pub fn start(ctx: &Ctx, req: StartRequest) -> Result<Started> {
    let plan = match reserve(ctx, &req)? {
        Reserve::Running(inst) => return Ok(Started::AlreadyRunning(*inst)),
        Reserve::Reserved(plan) => plan,
    };
    let launched = match launch(ctx, &req, &plan) {
        Ok(l) => l,
        Err(e) => {
            unreserve(ctx, &plan);
            ctx.events().log(
                Level::Error,
                "runtime",
                "start failed",
                json!({"instance": plan.inst.id, "error": e.to_string()}),
            );
            return Err(e);
        }
    };
    let started = record(ctx, plan, launched)?;
    crate::features::activity::watch::ensure(ctx);
    Ok(started)
}

/// What [`reserve`] registered, for the later phases.
struct Plan {
    /// The entry as registered (`initializing`, port held).
    inst: Instance,
    /// The entry it replaced (stopped, error), restored if the launch fails.
    previous: Option<Instance>,
    eff: Effective,
    kind: RuntimeKind,
    engine: Option<DockerEngine>,
}

enum Reserve {
    Running(Box<Instance>),
    Reserved(Box<Plan>),
}

/// The id a start is for, decided against `reg`: the one asked for (which
/// must belong to this project), or the one derived from the project path.
fn settle_id(reg: &Registry, req: &StartRequest) -> Result<InstanceId> {
    let id = match &req.id {
        Some(id) => id.clone(),
        None => derive_id(reg, &req.project, &req.mode)?,
    };
    if id.mode_suffix() != req.mode.as_str() {
        return Err(Error::Usage(format!(
            "instance id {id} names the agent {:?}, not {}; an id ends with its agent (e.g. NAME-{})",
            id.mode_suffix(),
            req.mode,
            req.mode
        )));
    }
    if let Some(inst) = reg.get(&id) {
        let project = req.project.to_string_lossy();
        if inst.project_path != project && !inst.project_path.is_empty() {
            return Err(Error::Invalid(format!(
                "instance {id} belongs to {}; pick another --id",
                inst.project_path
            )));
        }
    }
    Ok(id)
}

/// Phase 1: under the lock, settle the id (a concurrent start of another
/// project with the same name may have taken it), check the limits,
/// allocate the port and register the instance as `initializing`.
///
/// The id decides which config applies and so which runtime, and choosing
/// a runtime asks the engine: that is done from a snapshot, outside the
/// lock, and redone if the id settled under the lock differs.
fn reserve(ctx: &Ctx, req: &StartRequest) -> Result<Reserve> {
    for _ in 0..8 {
        let snapshot = ctx.store.load()?;
        let guess = settle_id(&snapshot, req)?;
        // The policy is part of the instance: a start without `--egress`
        // (the agent exited, the user runs it again) keeps the flag's.
        let flag = egress_flag(req, snapshot.get(&guess));
        let mut eff = config::load_for(&ctx.dirs, &req.mode, Some(&guess))?;
        if let Some(e) = flag {
            eff.settings.networking.egress = e;
        }
        let choice = req.runtime.unwrap_or(eff.settings.global.runtime);
        let (kind, engine) = choose(choice, &eff, &req.mode)?;
        crate::features::egress::check_runtime(&eff, kind)?;
        let reserved = ctx.store.update(|reg| {
            let id = settle_id(reg, req)?;
            if id != guess || egress_flag(req, reg.get(&id)) != flag {
                return Ok(None);
            }
            if req.heal && reg.get(&id).and_then(|i| i.healing.as_ref()) != Some(&ProcRef::me()) {
                return Err(Error::Invalid(format!(
                    "healing {id} was cancelled: it was stopped meanwhile"
                )));
            }
            if let Some(inst) = reg.get(&id) {
                if inst.status.is_live() {
                    return Ok(Some(Err(inst.clone())));
                }
            }
            register(ctx, reg, req, &id, &eff, kind).map(|r| Some(Ok(r)))
        })?;
        match reserved {
            None => continue,
            Some(Err(running)) => return Ok(Reserve::Running(Box::new(running))),
            Some(Ok((inst, previous))) => {
                return Ok(Reserve::Reserved(Box::new(Plan {
                    inst,
                    previous,
                    eff,
                    kind,
                    engine,
                })))
            }
        }
    }
    Err(Error::Other(
        "the registry kept changing under this start; try again".into(),
    ))
}

/// The `--egress` of a start: the one given, else the one the instance
/// was started with before.
fn egress_flag(req: &StartRequest, prev: Option<&Instance>) -> Option<config::EgressPolicy> {
    req.egress.or(prev.and_then(|p| p.egress_flag))
}

/// Writes the `initializing` entry for `id` into `reg` (under the lock):
/// limit checked, port allocated, history of a previous entry kept.
fn register(
    ctx: &Ctx,
    reg: &mut Registry,
    req: &StartRequest,
    id: &InstanceId,
    eff: &Effective,
    kind: RuntimeKind,
) -> Result<(Instance, Option<Instance>)> {
    let net = &eff.settings.networking;
    let max = eff.settings.global.max_instances as usize;
    if reg.live_count() >= max {
        return Err(Error::Invalid(format!(
            "{} instances are running, the limit (global.max_instances = {max}); stop one (`ai-sessctl stop ID`) or raise the limit",
            reg.live_count()
        )));
    }
    let reserved = reg
        .reserved_ports
        .iter()
        .find(|(_, r)| &r.instance == id)
        .and_then(|(p, _)| p.parse::<Port>().ok());
    let port = match req.port {
        Some(p) => {
            if reg.held_ports().any(|h| h == p && Some(h) != reserved) {
                return Err(Error::Invalid(format!(
                    "port {p} is held by another instance"
                )));
            }
            if !crate::state::ports::bindable(net.bind, p) {
                return Err(Error::Invalid(format!(
                    "port {p} is in use on {}",
                    net.bind
                )));
            }
            p
        }
        None => {
            if let Some(p) = reserved {
                reg.reserved_ports.remove(&p.to_string());
            }
            crate::state::ports::allocate(
                reg,
                net.port_range,
                reserved.or(net.preferred_port),
                net.bind,
            )?
        }
    };
    reg.reserved_ports.retain(|_, r| &r.instance != id);
    let previous = reg.instances.remove(id);
    let now = Utc::now();
    let mut inst: Instance = serde_json::from_value(json!({
        "id": id, "project_path": req.project.to_string_lossy(),
        "project_name": project_name_of(&req.project),
        "mode": req.mode, "status": "initializing", "port": port,
    }))
    .map_err(|e| Error::Other(e.to_string()))?;
    if let Some(prev) = &previous {
        inst.restarts = prev.restarts;
        inst.extra = prev.extra.clone();
        // A fresh start begins with no alert or recovery history.
        inst.extra.remove("alerts");
        inst.extra.remove("recovery");
        inst.timestamps.created = prev.timestamps.created;
    }
    inst.timestamps.created.get_or_insert(now);
    // When this start began (set again once it runs): reconcile leaves
    // a young start alone, also the restart of an old instance.
    inst.timestamps.started = Some(now);
    inst.socket_path = Some(ctx.dirs.socket_of(id).to_string_lossy().into_owned());
    inst.runtime = Some(kind);
    inst.bind = Some(eff.settings.networking.bind);
    inst.egress = (kind == RuntimeKind::Docker).then_some(eff.settings.networking.egress);
    inst.egress_flag = egress_flag(req, previous.as_ref());
    inst.image = (kind == RuntimeKind::Docker).then(|| eff.agent.image.clone());
    inst.resources.memory_limit = Some(eff.settings.resources.memory.limit.to_string());
    inst.resources.cpu_limit = Some(eff.settings.resources.cpu.limit.to_string());
    if let Some(cfg) = eff.settings.ai_config.get(req.mode.as_str()) {
        inst.config = serde_json::to_value(cfg)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
    }
    if let Some(pid) = req.shell_pid {
        inst.owner_pid = Some(pid);
        inst.owner_start_time = crate::core::procinfo::start_time(pid);
    }
    inst.starter = Some(ProcRef::me());
    if let Some(info) = &req.worktree {
        if let Ok(v) = serde_json::to_value(info) {
            inst.extra.insert("worktree".to_owned(), v);
        }
    }
    inst.args = req.args.clone();
    reg.instances.insert(id.clone(), inst.clone());
    Ok((inst, previous))
}

/// Phase 2, without the lock: state dirs, then the runtime's launch.
fn launch(ctx: &Ctx, req: &StartRequest, plan: &Plan) -> Result<Launched> {
    let inst = &plan.inst;
    let id = &inst.id;
    let state_dir =
        crate::features::agent_state::dir_for(&ctx.dirs, plan.eff.agent.state, &req.mode, id);
    ctx.dirs.ensure_sub(&ctx.dirs.states_dir())?;
    crate::core::paths::ensure_private_dir(&state_dir)?;
    if let Some(note) =
        crate::features::agent_state::unmigrated_note(&ctx.dirs, &plan.eff.agent, &req.mode)
    {
        eprintln!("ai-sessctl: note: {note}");
    }
    ctx.dirs.ensure_sub(&ctx.dirs.logs_dir())?;
    let socket = match plan.kind {
        RuntimeKind::Docker => "/tmp/ai-sessions.sock".to_owned(),
        RuntimeKind::Host => inst.socket_path.clone().unwrap_or_default(),
    };
    let project_name = project_name_of(&req.project);
    let wiring = crate::features::activity::prepare(&ctx.dirs, id, &plan.eff.agent, plan.kind)?;
    let args: Vec<String> = wiring
        .args
        .iter()
        .chain(&req.args)
        .chain(&req.continue_args)
        .cloned()
        .collect();
    let mut env = agent_env(
        id,
        &req.mode,
        inst.port,
        &socket,
        &plan.eff.agent.env_passthrough,
    );
    env.extend(wiring.env);
    let setup = if inst.extra.contains_key("worktree") {
        plan.eff.settings.worktree.setup.clone()
    } else {
        Vec::new()
    };
    crate::features::worktree::setup::clear(&ctx.dirs, id);
    let spec = LaunchSpec {
        id,
        project: &req.project,
        project_name: &project_name,
        mode: &req.mode,
        port: inst.port,
        eff: &plan.eff,
        args: &args,
        state_dir,
        env,
        home: super::docker::home_label(&ctx.dirs),
        cwd: std::env::current_dir()
            .ok()
            .filter(|d| d.starts_with(&req.project))
            .unwrap_or_else(|| req.project.clone()),
        log: req.detach.then(|| ctx.dirs.instance_log(id)),
        read_only: crate::features::agent_state::credential_mounts(
            &ctx.dirs,
            &plan.eff.agent,
            &req.mode,
        ),
        mounts: wiring
            .mount
            .map(|m| (m, crate::features::activity::MOUNT.to_owned()))
            .into_iter()
            .chain(crate::features::worktree::git_mounts(&req.project))
            .collect(),
        setup,
        files: wiring.files,
    };
    let runtime: &dyn Runtime = match &plan.engine {
        Some(engine) if plan.kind == RuntimeKind::Docker => engine,
        _ => &host::HostRuntime,
    };
    runtime.launch(&spec)
}

/// Takes back a registration whose launch failed: nothing was started. An
/// entry that was there before (stopped, error) comes back as it was.
fn unreserve(ctx: &Ctx, plan: &Plan) {
    let id = &plan.inst.id;
    let _ = ctx.store.update(|reg| {
        if reg
            .get(id)
            .is_some_and(|i| i.status == Status::Initializing)
        {
            match &plan.previous {
                Some(p) => reg.instances.insert(id.clone(), p.clone()),
                None => reg.instances.remove(id),
            };
        }
        Ok(())
    });
}

/// Phase 3: records what runs, under the lock. A stop that came while it
/// launched is carried out now; an entry removed meanwhile (`rm --force`)
/// means nothing may keep running.
fn record(ctx: &Ctx, plan: Box<Plan>, launched: Launched) -> Result<Started> {
    let Plan { inst, engine, .. } = *plan;
    let id = inst.id;
    let (container_id, pid) = match &launched {
        Launched::Container(cid) => (Some(cid.clone()), None),
        Launched::Process(child) => (None, Some(child.id())),
    };
    let recorded = ctx.store.update(|reg| {
        let Some(inst) = reg.instances.get_mut(&id) else {
            return Ok(None);
        };
        inst.status = Status::Running;
        inst.container_id = container_id.clone();
        inst.pid = pid;
        inst.pid_start_time = pid.and_then(crate::core::procinfo::start_time);
        inst.timestamps.started = Some(Utc::now());
        inst.timestamps.stopped = None;
        inst.exit_code = None;
        inst.status_reason = None;
        inst.starter = None;
        crate::features::activity::set(inst, crate::core::types::Activity::Unknown);
        let why = inst.stopping.as_ref().map(|m| m.reason.clone());
        Ok(Some((inst.clone(), why)))
    });
    // Not recorded (e.g. the state disk is full): the start failed, and a
    // failed start leaves nothing running. The entry still says
    // `initializing` by a starter that is about to exit; reconcile settles it.
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => {
            undo_launch(engine.as_ref(), container_id.as_deref(), pid);
            ctx.events().log(
                Level::Error,
                "runtime",
                "start failed",
                json!({"instance": id, "error": e.to_string()}),
            );
            return Err(e);
        }
    };
    let inst = match recorded {
        Some((inst, None)) => inst,
        Some((inst, Some(why))) => {
            stop_one(ctx, &inst, engine.as_ref(), false, &why, Stopper::User)?;
            return Err(Error::Invalid(format!(
                "{id} was stopped while it was starting ({why})"
            )));
        }
        None => {
            // Nothing may run that no entry describes.
            undo_launch(engine.as_ref(), container_id.as_deref(), pid);
            return Err(Error::Invalid(format!(
                "{id} was removed from the registry while it was starting"
            )));
        }
    };
    ctx.events().log(
        Level::Info,
        "runtime",
        "instance started",
        json!({"instance": id, "runtime": inst.runtime, "port": inst.port, "project": inst.project_path}),
    );
    Ok(match (launched, engine) {
        (Launched::Container(_), Some(engine)) => Started::Container { inst, engine },
        (Launched::Process(child), _) => Started::Process { inst, child },
        (Launched::Container(_), None) => {
            unreachable!("a container is only launched with an engine")
        }
    })
}

/// Ends what a launch started (no output to keep: it never ran for anyone).
fn undo_launch(engine: Option<&DockerEngine>, container: Option<&str>, pid: Option<u32>) {
    match (container, engine) {
        (Some(cid), Some(engine)) => {
            if let Err(e) = engine.remove(cid, None) {
                eprintln!("ai-sessctl: warning: could not remove container {cid}: {e}");
            }
        }
        _ => {
            if let Some(pid) = pid {
                host::stop(
                    pid,
                    crate::core::procinfo::start_time(pid),
                    Duration::ZERO,
                    true,
                );
            }
        }
    }
}

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
            .and_then(|_| effective_for(ctx, &inst.id).ok()),
    };
    let applied = ctx.store.update(|reg| Ok(end.record(reg, reason)));
    end.aftermath(ctx, reason, engine, applied, None)
}

/// An agent that ended, to be written down by [`finish`] (or, for a batch
/// of stops, many at once in one registry update).
#[derive(Clone)]
struct Ended {
    inst: Instance,
    code: Option<i64>,
    status: Status,
    /// Its configuration as read when stopping (`None`: the defaults).
    eff: Option<Effective>,
}

impl Ended {
    /// Whether the entry still described the same live container/process
    /// and now says it ended.
    fn record(&self, reg: &mut Registry, reason: Option<&str>) -> bool {
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
    /// container around), then the event is logged.
    fn aftermath(
        &self,
        ctx: &Ctx,
        reason: Option<&str>,
        engine: Option<&DockerEngine>,
        applied: Result<bool>,
        nets: Option<&Mutex<Vec<String>>>,
    ) -> Result<()> {
        let inst = &self.inst;
        let eff = self.eff.as_ref();
        if let (Some(engine), Some(cid)) = (engine, &inst.container_id) {
            if eff.is_none_or(|e| e.settings.global.auto_cleanup) {
                save_and_remove_as(ctx, engine, &inst.id, cid, eff, nets)?;
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
/// be kept (full disk).
pub fn save_and_remove(ctx: &Ctx, engine: &DockerEngine, id: &InstanceId, cid: &str) -> Result<()> {
    save_and_remove_as(
        ctx,
        engine,
        id,
        cid,
        effective_for(ctx, id).ok().as_ref(),
        None,
    )
}

/// [`save_and_remove`] with the instance's configuration already read.
/// With `nets`, the container's own network is left for the caller and
/// its name added there.
fn save_and_remove_as(
    ctx: &Ctx,
    engine: &DockerEngine,
    id: &InstanceId,
    cid: &str,
    eff: Option<&Effective>,
    nets: Option<&Mutex<Vec<String>>>,
) -> Result<()> {
    if ctx.dirs.ensure_sub(&ctx.dirs.logs_dir()).is_ok() {
        let cap = eff.map_or_else(
            || crate::state::config::Logging::default().cap(),
            |e| e.settings.logging.cap(),
        );
        if let Err(e) = engine.save_log(cid, &ctx.dirs.instance_log(id), cap) {
            eprintln!("ai-sessctl: warning: output of {id} not kept: {e}");
        }
    }
    match nets {
        None => engine.remove(cid, None),
        Some(nets) => {
            if let Some(net) = engine.remove_leaving_network(cid)? {
                nets.lock().unwrap_or_else(|p| p.into_inner()).push(net);
            }
            Ok(())
        }
    }
}

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

/// `stop_many` on behalf of `by`.
pub fn stop_many_as(
    ctx: &Ctx,
    ids: &[InstanceId],
    force: bool,
    reason: &str,
    by: Stopper,
) -> Vec<(InstanceId, Error)> {
    let reg = match ctx.store.load() {
        Ok(r) => r,
        Err(e) => {
            return ids
                .iter()
                .map(|id| (id.clone(), Error::Other(e.to_string())))
                .collect()
        }
    };
    let targets: Vec<Instance> = ids.iter().filter_map(|id| reg.get(id).cloned()).collect();
    let needs_engine = targets
        .iter()
        .any(|i| i.runtime == Some(RuntimeKind::Docker) && i.container_id.is_some());
    let engine = if needs_engine {
        match DockerEngine::connect() {
            Ok(e) => Some(e),
            Err(e) => {
                return targets
                    .iter()
                    .map(|i| (i.id.clone(), Error::Engine(e.to_string())))
                    .collect()
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
    // its container goes right after (output kept first). Networks made
    // for the containers are removed last: the engine removes them one at
    // a time (about a quarter second each), so a batch hands them to a
    // detached helper instead of keeping the user waiting.
    let recorder = Recorder::new(ctx, reason);
    let batch = targets.len() > 1;
    let nets = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .zip(marks.drain(..))
            .map(|(inst, pre)| {
                let engine = engine.as_ref();
                let (recorder, nets) = (&recorder, &nets);
                s.spawn(move || {
                    let end = stop_one_at(ctx, inst, engine, force, reason, by, 4, pre)
                        .map_err(|e| (inst.id.clone(), e))?;
                    if let Some(end) = end {
                        let applied = recorder.record(&end);
                        let nets = batch.then_some(nets);
                        if let Err(e) = end.aftermath(ctx, Some(reason), engine, applied, nets) {
                            not_recorded(&end.inst, &e);
                        }
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
    let nets = nets.into_inner().unwrap_or_else(|p| p.into_inner());
    if let (Some(engine), false) = (&engine, nets.is_empty()) {
        hand_off_networks(ctx, engine, nets);
    }
    failed
}

/// Records the ends of a batch's stops as they come, in as few registry
/// updates as it takes (each one is fsync'd under the lock): a stop that
/// finds others waiting writes theirs with its own.
struct Recorder<'a> {
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

/// Removes the networks a batch of stops left: in a detached helper
/// (`ai-sessctl reap-networks`), or here when it cannot be started.
fn hand_off_networks(ctx: &Ctx, engine: &DockerEngine, nets: Vec<String>) {
    let mut args = vec!["reap-networks".to_owned()];
    args.extend(nets.iter().cloned());
    if let Err(e) = spawn_helper(&args) {
        eprintln!("ai-sessctl: warning: {e}; removing the networks in the foreground");
        reap_networks(ctx, engine, &nets);
    }
}

/// `ai-sessctl ARGS` in a new session with no terminal: it outlives this
/// process and its terminal's hangup. A long-running caller (`serve`)
/// reaps it from a thread.
pub fn spawn_helper(args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot locate ai-sessctl: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches from the terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::Other(format!(
            "cannot start the `ai-sessctl {}` helper: {e}",
            args.first().map_or("", String::as_str)
        ))
    })?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Removes the networks stopped instances left, one at a time, each under
/// the registry lock: a start takes the lock to become `initializing`
/// before it makes (or reuses) its network, so a network is either
/// removed before that start looks for it or kept for it. One in use, or
/// gone already, is left as it is.
pub fn reap_networks(ctx: &Ctx, engine: &DockerEngine, nets: &[String]) {
    let home = super::docker::home_label(&ctx.dirs);
    for net in nets {
        // A state home deleted meanwhile is not made again for its lock;
        // nothing can be starting in it.
        if !ctx.dirs.root().is_dir() {
            let _ = engine.remove_network(net);
            continue;
        }
        let removed = ctx.store.update(|reg| {
            let starting = reg.instances.values().any(|i| {
                i.status == Status::Initializing && super::docker::object_name(&i.id, &home) == *net
            });
            if starting {
                return Ok(());
            }
            engine.remove_network(net)
        });
        if let Err(e) = removed {
            eprintln!("ai-sessctl: warning: network {net} not removed: {e}");
        }
    }
}

fn not_recorded(inst: &Instance, e: &Error) {
    eprintln!(
        "ai-sessctl: warning: {} is stopped, but that could not be recorded: {e}",
        inst.id
    );
}

fn stop_one(
    ctx: &Ctx,
    inst: &Instance,
    engine: Option<&DockerEngine>,
    force: bool,
    reason: &str,
    by: Stopper,
) -> Result<()> {
    if let Some(end) = stop_one_at(ctx, inst, engine, force, reason, by, 4, None)? {
        finish_now(ctx, &end, reason, engine);
    }
    Ok(())
}

/// Records one stopped agent's end on its own (reported, not fatal).
fn finish_now(ctx: &Ctx, end: &Ended, reason: &str, engine: Option<&DockerEngine>) {
    let applied = ctx.store.update(|reg| Ok(end.record(reg, Some(reason))));
    if let Err(e) = end.aftermath(ctx, Some(reason), engine, applied, None) {
        not_recorded(&end.inst, &e);
    }
}

/// What a stop does with an entry, decided on it as it is now.
enum Then {
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
fn mark(reg: &mut Registry, inst: &Instance, reason: &str, by: Stopper, me: &ProcRef) -> Then {
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

// One stop's whole context; `pre` is the batch's marking of it.
#[allow(clippy::too_many_arguments)]
fn stop_one_at(
    ctx: &Ctx,
    inst: &Instance,
    engine: Option<&DockerEngine>,
    force: bool,
    reason: &str,
    by: Stopper,
    depth: u8,
    pre: Option<Result<Then>>,
) -> Result<Option<Ended>> {
    if inst.status == Status::Initializing {
        // Its starter owns the launch: a stop now would free the port the
        // container is about to publish and be undone when the start
        // records it. Leave the stop to the starter, unless the start has
        // completed meanwhile. A start whose starter died is settled by
        // reconcile first (what it left running is then stopped below).
        if !starter_alive(inst) {
            super::refresh(ctx)?;
        }
        let now = ctx.store.update(|reg| {
            let Some(cur) = reg.instances.get_mut(&inst.id) else {
                return Ok(None);
            };
            if by == Stopper::User {
                cur.healing = None;
            }
            if cur.status == Status::Initializing {
                cur.stopping = Some(StopMarker {
                    reason: reason.to_owned(),
                    by: None,
                });
                return Ok(None);
            }
            Ok(Some(cur.clone()))
        })?;
        return match now {
            Some(cur) if cur.status.is_live() => {
                let own = match engine {
                    None if cur.container_id.is_some() => Some(DockerEngine::connect()?),
                    _ => None,
                };
                let end = stop_one_at(
                    ctx,
                    &cur,
                    engine.or(own.as_ref()),
                    force,
                    reason,
                    by,
                    depth.saturating_sub(1),
                    None,
                )?;
                match (end, &own) {
                    // Its engine connection ends here: recorded now.
                    (Some(end), Some(own)) => {
                        finish_now(ctx, &end, reason, Some(own));
                        Ok(None)
                    }
                    (end, _) => Ok(end),
                }
            }
            _ => Ok(None),
        };
    }
    // Read once: the timeout, then whether and how its container goes.
    let eff = effective_for(ctx, &inst.id).ok();
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
            ctx.store.update(|reg| Ok(mark(reg, inst, reason, by, &me)))
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
                _ => stop_one_at(ctx, &cur, engine, force, reason, by, depth - 1, None),
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
    if let Some(runtime) = super::runtime_of(inst, engine, &mut own)? {
        code = runtime.stop(inst, timeout, force)?;
    }
    let engine_used = engine.or(own.as_ref());
    if !live {
        // Its container (an entry in error may still have one running) is
        // stopped; it goes like any ended container.
        if let (Some(engine), Some(cid), true) =
            (engine_used, &inst.container_id, by == Stopper::User)
        {
            if eff.as_ref().is_none_or(|e| e.settings.global.auto_cleanup) {
                save_and_remove_as(ctx, engine, &inst.id, cid, eff.as_ref(), None)?;
            }
        }
        return Ok(None);
    }
    let end = Ended {
        inst: inst.clone(),
        code,
        status: if by == Stopper::GiveUp {
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
            finish_now(ctx, &end, reason, Some(own));
            Ok(None)
        }
        None => Ok(Some(end)),
    }
}

pub fn set_paused(ctx: &Ctx, id: &InstanceId, paused: bool) -> Result<()> {
    let reg = super::refresh(ctx)?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
    let want = if paused {
        Status::Running
    } else {
        Status::Paused
    };
    if inst.status != want {
        return Err(Error::Invalid(format!(
            "{id} is {}, not {want}",
            inst.status
        )));
    }
    let mut own = None;
    match super::runtime_of(inst, None, &mut own)? {
        Some(runtime) => runtime.set_paused(inst, paused)?,
        None => return Err(Error::Invalid(format!("{id} has no container or process"))),
    }
    ctx.store.update(|reg| {
        if let Some(i) = reg.instances.get_mut(id) {
            i.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
        }
        Ok(())
    })?;
    ctx.events().log(
        Level::Info,
        "runtime",
        if paused {
            "instance paused"
        } else {
            "instance resumed"
        },
        json!({"instance": id}),
    );
    Ok(())
}

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
            save_and_remove(ctx, &engine, id, cid)?;
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

/// Stops (if it runs) and starts a container instance again at the
/// user's request, with the same id, port when still free, and owner;
/// counts the restart. `force` kills instead of the graceful stop.
pub fn restart(ctx: &Ctx, id: &InstanceId, force: bool, reason: &str) -> Result<Instance> {
    let inst = restart_as(ctx, id, force, reason, Stopper::User)?;
    ctx.events().log(
        Level::Info,
        "runtime",
        "instance restarted",
        json!({"instance": id, "by": "user", "reason": reason}),
    );
    Ok(inst)
}

/// `restart` on behalf of `by`: a heal (`Stopper::Heal`) goes ahead only
/// while its marker is on the entry, checked under the lock when it stops
/// and again when it starts.
pub fn restart_as(
    ctx: &Ctx,
    id: &InstanceId,
    force: bool,
    reason: &str,
    by: Stopper,
) -> Result<Instance> {
    let reg = super::refresh(ctx)?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?.clone();
    if inst.runtime == Some(RuntimeKind::Host) {
        return Err(Error::Invalid(format!(
            "{id} runs on the host in the terminal that started it; restart it there"
        )));
    }
    if inst.status.is_live() {
        if let Some((_, e)) = stop_many_as(ctx, std::slice::from_ref(id), force, reason, by).pop() {
            return Err(e);
        }
    }
    let bind = effective_for(ctx, id)?.settings.networking.bind;
    start(
        ctx,
        StartRequest {
            project: inst.project_path.clone().into(),
            mode: inst.mode.clone(),
            id: Some(id.clone()),
            port: Some(inst.port).filter(|p| crate::state::ports::bindable(bind, *p)),
            runtime: Some(RuntimeChoice::Docker),
            egress: inst.egress_flag,
            args: inst.args.clone(),
            continue_args: Vec::new(),
            shell_pid: None,
            detach: true,
            heal: by == Stopper::Heal,
            worktree: None,
        },
    )?;
    ctx.store.update(|reg| {
        let i = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| Error::not_found(id))?;
        i.restarts = inst.restarts + 1;
        i.owner_pid = inst.owner_pid;
        i.owner_start_time = inst.owner_start_time;
        Ok(i.clone())
    })
}

/// The project of `path` (default: the current directory).
pub fn project_of(path: Option<&Path>) -> Result<PathBuf> {
    let dir = match path {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir().map_err(|e| Error::io(".", e))?,
    };
    if !dir.is_dir() {
        // Named in full unless absurdly long (the API echoes it).
        let mut shown: String = dir.to_string_lossy().chars().take(300).collect();
        if shown.len() < dir.as_os_str().len() {
            shown.push('…');
        }
        return Err(Error::Usage(format!("{shown} is not a directory")));
    }
    crate::state::registry::resolve_project(&dir)
}
