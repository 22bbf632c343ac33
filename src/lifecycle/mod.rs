//! Runtimes run instances: Docker or the host. A file per verb holds the
//! lifecycle operations shared by every front end; `reconcile` keeps the
//! registry true to what actually runs.

pub mod docker;
mod finish;
pub mod host;
pub mod input;
mod networks;
mod pause;
pub mod pool;
mod reconcile;
mod remove;
mod restart;
pub mod setup_outcome;
pub mod setup_wait;
mod start;
mod stop;

pub use finish::*;
pub use networks::*;
pub use pause::*;
pub use reconcile::{
    apply_shell_exit, refresh, refresh_quietly, refresh_with_warnings, say as say_warnings,
};
pub use remove::*;
pub use restart::*;
pub use start::*;
pub use stop::*;

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode, Port};
use crate::engine::state::{ContainerState, HealthState};
pub use crate::launch::LaunchSpec;
use crate::state::config::{Effective, RuntimeChoice};
use crate::state::context::Ctx;
use crate::state::registry::{Instance, RuntimeKind};
use docker::DockerEngine;
use std::collections::HashMap;
use std::time::Duration;

/// What a runtime started.
pub enum Launched {
    Container(String),
    Process(std::process::Child),
}

/// The operations each runtime provides; the lifecycle in `ops` is written
/// once against them.
pub trait Runtime {
    /// Starts the agent that `spec` describes.
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched>;
    /// Ends the instance's agent: gracefully within `timeout`, then killed
    /// (at once with `force`). Returns its exit code when known.
    fn stop(&self, inst: &Instance, timeout: Duration, force: bool) -> Result<Option<i64>>;
    /// Freezes or thaws the agent's processes.
    fn set_paused(&self, inst: &Instance, paused: bool) -> Result<()>;
}

/// Why this process cannot act on `inst`'s container: it runs on another
/// engine than the one this process reaches (another `DOCKER_HOST` or
/// docker context). `None` when it is this one (or was never recorded).
pub fn on_another_engine(inst: &Instance) -> Option<String> {
    let theirs = inst.engine.as_deref()?;
    let ours = crate::engine::endpoint::current().ok()?;
    (!ours.names(theirs)).then(|| {
        format!(
            "{} runs on the engine at {theirs}, and this shell reaches {ours}: \
             set DOCKER_HOST={theirs} (or `docker context use` the context naming it) to reach it",
            inst.id
        )
    })
}

/// [`on_another_engine`] as an error.
pub fn reachable(inst: &Instance) -> Result<()> {
    match on_another_engine(inst) {
        Some(why) => Err(Error::Invalid(why)),
        None => Ok(()),
    }
}

/// The runtime that runs `inst`: its container's engine (connected once,
/// or the one given) or the host. `None` when it has neither yet. An
/// instance on another engine than this process's is refused (see
/// [`on_another_engine`]): that engine's container is not this one's to
/// find missing.
pub fn runtime_of<'a>(
    inst: &Instance,
    engine: Option<&'a DockerEngine>,
    own: &'a mut Option<DockerEngine>,
) -> Result<Option<&'a dyn Runtime>> {
    if inst.container_id.is_some() {
        reachable(inst)?;
        let engine = match engine {
            Some(e) => e,
            None => own.insert(DockerEngine::connect()?),
        };
        return Ok(Some(engine));
    }
    Ok(inst.pid.map(|_| &host::HostRuntime as &dyn Runtime))
}

/// One of our containers as the engine reports it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub container_id: String,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    /// Its HEALTHCHECK's state (`None`: it has none).
    pub health: Option<HealthState>,
    pub labels: HashMap<String, String>,
}

impl Observed {
    /// Whether this container belongs to the state home `home`: its
    /// `ai.home` label says so, or it has none (made before the label
    /// existed, or by hand). Another home's containers are not ours to
    /// collect or adopt.
    pub fn belongs_to(&self, home: &str) -> bool {
        self.labels
            .get(docker::HOME_LABEL)
            .is_none_or(|h| h == home)
    }
}

/// The environment an agent sees: our variables plus the passthrough names
/// that are set in the caller's environment.
pub fn agent_env(
    id: &InstanceId,
    mode: &Mode,
    port: Port,
    socket: &str,
    passthrough: &[String],
) -> Vec<String> {
    let mut env = vec![
        format!("AI_MODE={mode}"),
        format!("AI_INSTANCE_ID={id}"),
        format!("AI_PORT={port}"),
        format!("AI_SOCKET_PATH={socket}"),
    ];
    for name in passthrough {
        if let Some(v) = std::env::var_os(name) {
            env.push(format!("{name}={}", v.to_string_lossy()));
        }
    }
    // The terminal goes along: colours (TERM, COLORTERM) and the locale, so
    // a TUI draws as it would on the host.
    for (name, v) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let terminal =
            matches!(name, "TERM" | "COLORTERM" | "LANG" | "LANGUAGE") || name.starts_with("LC_");
        if terminal && !passthrough.iter().any(|p| p == name) {
            env.push(format!("{name}={}", v.to_string_lossy()));
        }
    }
    env
}

/// Why the configured engine cannot run an instance of a project here (it
/// is on another machine), checked before connecting to it.
pub(crate) fn remote_engine() -> Option<String> {
    crate::engine::endpoint::current()
        .ok()
        .and_then(|e| e.mount_refusal())
}

/// The engine, its calls bounded by this home's `global.engine_timeout`.
pub fn engine_for(ctx: &Ctx) -> Result<DockerEngine> {
    if let Ok(settings) = ctx.global() {
        crate::engine::set_call_timeout(settings.global.engine_timeout.0);
    }
    DockerEngine::connect()
}

/// Picks the runtime for a start. `auto` uses Docker when the engine
/// answers and the agent's image exists, else the host, saying so once.
pub fn choose(
    choice: RuntimeChoice,
    eff: &Effective,
    mode: &Mode,
    clone: bool,
) -> Result<(RuntimeKind, Option<DockerEngine>)> {
    crate::engine::set_call_timeout(eff.settings.global.engine_timeout.0);
    // A clone is sent to the engine, wherever it runs.
    let remote_engine = || remote_engine().filter(|_| !clone);
    match choice {
        RuntimeChoice::Host => Ok((RuntimeKind::Host, None)),
        RuntimeChoice::Docker => {
            if let Some(why) = remote_engine() {
                return Err(Error::Invalid(format!(
                    "{why}; use a local engine (unset DOCKER_HOST/DOCKER_CONTEXT, or `docker context use default`) or --runtime host"
                )));
            }
            let engine = DockerEngine::connect()?;
            if eff.agent.image.is_empty() {
                return Err(Error::Invalid(format!(
                    "agents.{mode}.image is not set; set it or use --runtime host"
                )));
            }
            if !engine.image_exists(&eff.agent.image)? {
                return Err(Error::NotFound(format!(
                    "image {} not found; build it with `ai-sessctl image build {mode}`",
                    eff.agent.image
                )));
            }
            Ok((RuntimeKind::Docker, Some(engine)))
        }
        RuntimeChoice::Auto => {
            // A remote engine cannot mount the project: as good as absent.
            let engine =
                remote_engine().map_or_else(DockerEngine::connect, |w| Err(Error::Invalid(w)));
            let why = match &engine {
                Err(Error::Invalid(why)) => why.clone(),
                Err(_) => "the container engine is not answering".to_owned(),
                Ok(_) if eff.agent.image.is_empty() => format!("agents.{mode}.image is not set"),
                Ok(e) => match e.image_exists(&eff.agent.image) {
                    Ok(true) => return Ok((RuntimeKind::Docker, engine.ok())),
                    Ok(false) => format!("image {} is not built", eff.agent.image),
                    Err(e) => e.to_string(),
                },
            };
            // The host is the fallback only when the agent is installed
            // there; else say what would make either runtime work.
            let program = eff.agent.command.first().map(String::as_str).unwrap_or("");
            if host::find_binary(program).is_err() {
                return Err(match engine {
                    Err(Error::Engine(e)) => Error::Engine(format!(
                        "{e}; and {program:?} is not installed on the host, so runtime = \"auto\" has nothing to run {mode} with"
                    )),
                    Err(e) => e,
                    Ok(_) if eff.agent.image.is_empty() => Error::Invalid(format!(
                        "{why} and {program:?} is not on PATH; set agents.{mode}.image, or install {program} on the host"
                    )),
                    Ok(_) => Error::NotFound(format!(
                        "{why} and {program:?} is not on PATH; build the image with `ai-sessctl image build {mode}`, or install {program} on the host"
                    )),
                });
            }
            crate::core::warning::report_warn(format!(
                "ai-sessctl: {why}; running {mode} on the host (runtime = \"auto\")"
            ));
            Ok((RuntimeKind::Host, None))
        }
    }
}
