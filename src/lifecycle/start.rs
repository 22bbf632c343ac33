//! Start: reserve an id and port under the lock, launch without it,
//! record what runs.

use super::docker::DockerEngine;
use super::stop::stop_one;
use super::stop::Stopper;
use super::{agent_env, choose, host, LaunchSpec, Launched, Runtime};
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode, Port, Status};
use crate::state::config::{self, Effective, RuntimeChoice};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::{
    derive_id, project_name_of, Instance, ProcRef, Registry, RuntimeKind,
};
use chrono::Utc;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

pub struct InstanceStart {
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
    /// `--clone` (`Some(true)`) or `--mount` (`Some(false)`); `None`: as
    /// the instance was before, else `project.mode`, else a clone when
    /// the engine is on another machine.
    pub clone: Option<bool>,
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

/// Starts an instance in three phases: [`reserve`] settles the id and
/// registers it as `initializing` with its port under the lock; [`launch`]
/// starts the agent without holding the lock; [`record`] writes down what
/// runs (or undoes the launch when a stop or removal came meanwhile). A
/// failed launch leaves no half-registered entry behind.
pub fn start(ctx: &Ctx, req: InstanceStart) -> Result<Started> {
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
    if matches!(started, Started::Container { .. }) {
        super::networks::top_up_pool(&ctx.dirs);
    }
    crate::features::activity::watch::ensure(ctx);
    Ok(started)
}

/// What [`reserve`] registered, for the later phases.
pub(super) struct Reserved {
    /// The entry as registered (`initializing`, port held).
    inst: Instance,
    /// The entry it replaced (stopped, error), restored if the launch fails.
    previous: Option<Instance>,
    eff: Effective,
    kind: RuntimeKind,
    engine: Option<DockerEngine>,
    /// Where the agent's key goes (the broker's, in memory only).
    keys: crate::features::egress::broker::Keys,
}

pub(super) enum Reserve {
    Running(Box<Instance>),
    Reserved(Box<Reserved>),
}

/// The id a start is for, decided against `reg`: the one asked for (which
/// must belong to this project), or the one derived from the project path.
pub(super) fn settle_id(reg: &Registry, req: &InstanceStart) -> Result<InstanceId> {
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
pub(super) fn reserve(ctx: &Ctx, req: &InstanceStart) -> Result<Reserve> {
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
        let clone = clone_of(req, &eff, snapshot.get(&guess), choice)?;
        let (kind, engine) = choose(choice, &eff, &req.mode, clone.is_some())?;
        crate::features::egress::check_runtime(&eff, kind)?;
        let logins =
            crate::features::agent_state::credential_mounts(&ctx.dirs, &eff.agent, &req.mode);
        let keys =
            crate::features::egress::broker::keys(&eff, kind == RuntimeKind::Docker, &logins)?;
        let brokered = keys.broker.is_some();
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
            register(ctx, reg, req, &id, &eff, kind).map(|(mut inst, previous)| {
                inst.brokered = brokered;
                inst.clone = clone.clone().map(|mut c| {
                    c.branch = crate::features::clone::branch(&id);
                    c.volume = crate::features::clone::volume_name(&super::docker::object_name(
                        &id,
                        &ctx.dirs.home_label(),
                    ));
                    c
                });
                if let Some(i) = reg.instances.get_mut(&id) {
                    i.brokered = brokered;
                    i.clone = inst.clone.clone();
                }
                Some(Ok((inst, previous)))
            })
        })?;
        match reserved {
            None => continue,
            Some(Err(running)) => return Ok(Reserve::Running(Box::new(running))),
            Some(Ok((inst, previous))) => {
                return Ok(Reserve::Reserved(Box::new(Reserved {
                    inst,
                    previous,
                    eff,
                    kind,
                    engine,
                    keys,
                })))
            }
        }
    }
    Err(Error::Other(
        "the registry kept changing under this start; try again".into(),
    ))
}

/// Whether a new start of `mode` would run on a clone of its project
/// (`--clone`, `project.mode`, an engine on another machine; `--mount` on
/// such an engine counts too, for the start to refuse it): then `-w`
/// makes no worktree on this machine, the box's clone is one.
pub fn runs_as_clone(
    ctx: &Ctx,
    mode: &Mode,
    clone: Option<bool>,
    runtime: Option<RuntimeChoice>,
) -> Result<bool> {
    let eff = config::load_for(&ctx.dirs, mode, None)?;
    if runtime.unwrap_or(eff.settings.global.runtime) == RuntimeChoice::Host {
        return Ok(clone == Some(true));
    }
    let configured = eff.settings.project.mode == config::ProjectMode::Clone;
    Ok(clone == Some(true) || super::remote_engine().is_some() || (clone.is_none() && configured))
}

/// Whether a start runs on a clone of the project (and of which
/// repository): asked for, or as the instance was (its work is in its
/// volume), or `project.mode`; always with an engine on another machine,
/// where the project cannot be mounted (said once; `--mount` is refused).
pub(super) fn clone_of(
    req: &InstanceStart,
    eff: &Effective,
    prev: Option<&Instance>,
    choice: RuntimeChoice,
) -> Result<Option<crate::state::registry::CloneInfo>> {
    let configured = eff.settings.project.mode == config::ProjectMode::Clone;
    let was = prev.is_some_and(|p| p.clone.is_some());
    let mut clone = req.clone.unwrap_or(was || configured);
    if choice != RuntimeChoice::Host {
        if let Some(why) = super::remote_engine() {
            if req.clone == Some(false) {
                return Err(Error::Usage(format!(
                    "{why}; --mount needs a local engine (start with --clone, or without --mount: \
                     the project is then cloned into a volume there)"
                )));
            }
            if !clone {
                crate::core::warning::report_warn(format!(
                    "ai-sessctl: {why}: using clone mode (the repository is sent to it; \
                     `ai-sessctl fetch ID` brings the agent's branch back)"
                ));
            }
            clone = true;
        }
    }
    if !clone {
        return Ok(None);
    }
    if choice == RuntimeChoice::Host {
        return Err(Error::Usage(
            "clone mode runs the agent in a container: not with --runtime host".into(),
        ));
    }
    if req.worktree.is_some() {
        return Err(Error::Usage(
            "--worktree and clone mode do not go together: a clone instance works on a branch of its own already".into(),
        ));
    }
    if let Some(info) = prev.and_then(|p| p.clone.clone()).filter(|_| was) {
        return Ok(Some(info));
    }
    let top = crate::features::clone::top_of(&req.project)?;
    Ok(Some(crate::state::registry::CloneInfo {
        base: crate::features::clone::current_branch(&top),
        repo: top,
        branch: String::new(),
        volume: String::new(),
        extra: Default::default(),
    }))
}

/// The `--egress` of a start: the one given, else the one the instance
/// was started with before.
pub(super) fn egress_flag(
    req: &InstanceStart,
    prev: Option<&Instance>,
) -> Option<config::EgressPolicy> {
    req.egress.or(prev.and_then(|p| p.egress_flag))
}

/// Writes the `initializing` entry for `id` into `reg` (under the lock):
/// limit checked, port allocated, history of a previous entry kept.
pub(super) fn register(
    ctx: &Ctx,
    reg: &mut Registry,
    req: &InstanceStart,
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
        inst.worktree = prev.worktree.clone();
        // A fresh start begins with no alert or recovery history.
        inst.timestamps.created = prev.timestamps.created;
        // But the spend carries over, and so does how far it is over its
        // budget: a restart does not raise the budget alert again.
        if let Some(level) = prev.alerts.as_ref().and_then(|a| a.budget) {
            inst.alerts.get_or_insert_with(Default::default).budget = Some(level);
        }
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
    inst.engine = (kind == RuntimeKind::Docker)
        .then(|| {
            crate::engine::endpoint::current()
                .ok()
                .map(|e| e.host.clone())
        })
        .flatten();
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
        // A reused worktree does not know its base: the one recorded when
        // it was made stays.
        let kept = inst
            .worktree
            .as_ref()
            .filter(|w| w.path == info.path)
            .and_then(|w| w.base.clone());
        let mut info = info.clone();
        info.base = info.base.or(kept);
        inst.worktree = Some(info);
    }
    inst.args = req.args.clone();
    reg.instances.insert(id.clone(), inst.clone());
    Ok((inst, previous))
}

/// Phase 2, without the lock: state dirs, then the runtime's launch.
pub(super) fn launch(ctx: &Ctx, req: &InstanceStart, plan: &Reserved) -> Result<Launched> {
    let inst = &plan.inst;
    let id = &inst.id;
    let state_dir =
        crate::features::agent_state::dir_for(&ctx.dirs, plan.eff.agent.state, &req.mode, id);
    ctx.dirs.ensure_sub(&ctx.dirs.states_dir())?;
    crate::core::paths::ensure_private_dir(&state_dir)?;
    if let Some(note) =
        crate::features::agent_state::unmigrated_note(&ctx.dirs, &plan.eff.agent, &req.mode)
    {
        crate::core::warning::report_warn(format!("ai-sessctl: note: {note}"));
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
    let keys = &plan.keys;
    let passthrough: Vec<String> = plan
        .eff
        .agent
        .env_passthrough
        .iter()
        .filter(|v| !keys.withheld.contains(v))
        .cloned()
        .collect();
    give_answers(ctx, req, plan, &state_dir, &passthrough);
    let mut env = agent_env(id, &req.mode, inst.port, &socket, &passthrough);
    env.extend(wiring.env);
    if plan.kind == RuntimeKind::Docker {
        // The agent commits as the user, without the user's git config
        // (which may name programs) in the box.
        env.extend(crate::features::worktree::identity_env(&req.project));
    }
    // A worktree and a clone are fresh checkouts: their setup runs.
    let setup = if inst.worktree.is_some() || inst.clone.is_some() {
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
        home: ctx.dirs.home_label(),
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
        credential: keys.broker.clone(),
        hidden_login: keys.login.clone(),
        created: inst.timestamps.created,
        clone: inst.clone.as_ref(),
    };
    let runtime: &dyn Runtime = match &plan.engine {
        Some(engine) if plan.kind == RuntimeKind::Docker => engine,
        _ => &host::HostRuntime,
    };
    runtime.launch(&spec)
}

/// The first-run answers kept with the agent's login, into the instance's
/// state (`state = "instance"` shares nothing); a convenience, so a
/// failure only warns. With a key the agent signs in with the key, not
/// with the method the login chose.
fn give_answers(
    ctx: &Ctx,
    req: &InstanceStart,
    plan: &Reserved,
    state_dir: &std::path::Path,
    passthrough: &[String],
) {
    let agent = &plan.eff.agent;
    if agent.state == crate::state::config::StateScope::Instance {
        return;
    }
    let keyed = plan.keys.broker.is_some()
        || agent.api().is_some_and(|api| {
            api.key_vars().iter().any(|v| {
                passthrough.iter().any(|p| p == v)
                    && std::env::var_os(v).is_some_and(|k| !k.is_empty())
            })
        });
    if let Err(e) = crate::features::agent_state::apply_answers(
        &ctx.dirs,
        &req.mode,
        state_dir,
        &req.project,
        keyed,
    ) {
        crate::core::warning::report_warn(format!(
            "ai-sessctl: warning: the agent's first-run answers were not written into its state: {e}"
        ));
    }
}

/// Takes back a registration whose launch failed: nothing was started. An
/// entry that was there before (stopped, error) comes back as it was.
pub(super) fn unreserve(ctx: &Ctx, plan: &Reserved) {
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
pub(super) fn record(ctx: &Ctx, plan: Box<Reserved>, launched: Launched) -> Result<Started> {
    let Reserved { inst, engine, .. } = *plan;
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
pub(super) fn undo_launch(
    engine: Option<&DockerEngine>,
    container: Option<&str>,
    pid: Option<u32>,
) {
    match (container, engine) {
        (Some(cid), Some(engine)) => {
            if let Err(e) = engine.remove(cid, None) {
                crate::core::warning::report_warn(format!(
                    "ai-sessctl: warning: could not remove container {cid}: {e}"
                ));
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
