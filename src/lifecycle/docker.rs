//! The Docker runtime, spoken natively through bollard: version negotiated,
//! the engine found as the docker CLI finds it (see `endpoint`), every call
//! bounded by a timeout.

use super::{LaunchSpec, Observed};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::engine::attach::{self, AttachEnd};
use crate::engine::network;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, PortBinding,
    ResourcesUlimits,
};
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub const MANAGED_LABEL: &str = "ai.managed-by";
pub const MANAGED_VALUE: &str = "ai-sessctl";
/// The state home (`$AI_SESSIONS_HOME`) an instance belongs to: the engine
/// is shared by every user and home, `gc` and `registry repair` are not.
pub const HOME_LABEL: &str = "ai.home";

/// The value of `ai.home` for a state home (canonical when possible).
pub fn home_label(dirs: &crate::core::paths::StateDir) -> String {
    let root = dirs.root();
    root.canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .to_string_lossy()
        .into_owned()
}
/// Deadline for answering at all; an engine slower than this is "down".
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Deadline for ordinary calls (create, inspect, list, remove).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Six hex digits of the state home: engine object names differ between
/// homes (two users, two `AI_SESSIONS_HOME`s) with a project of one name.
pub fn home_digest(home_label: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(home_label.as_bytes());
    d[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of an instance's container and network: `ai-<id>-<digest>`.
/// Code finds them by label; the name only has to be unique and readable.
pub fn object_name(id: &InstanceId, home_label: &str) -> String {
    format!("ai-{id}-{}", home_digest(home_label))
}

pub struct DockerEngine {
    rt: tokio::runtime::Runtime,
    docker: Docker,
}

fn engine_err(e: impl std::fmt::Display) -> Error {
    match crate::engine::endpoint::current() {
        Ok(ep) => Error::Engine(format!("container engine at {ep} is not answering: {e}")),
        Err(bad) => Error::Engine(format!("container engine not reachable: {bad}")),
    }
}

/// The endpoint to connect to, or why the configured one cannot be used.
fn endpoint() -> Result<&'static crate::engine::endpoint::Endpoint> {
    crate::engine::endpoint::current()
        .map_err(|e| Error::Engine(format!("no container engine: {e}")))
}

/// A client for any endpoint (tcp, ssh, unix), its version negotiated.
async fn connect_negotiated(host: &str) -> Result<Docker> {
    let docker = Docker::connect_with_host(host)
        .map_err(engine_err)?
        .with_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(engine_err(e)),
        Err(_) => Err(engine_err(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

pub(crate) fn api_error(what: &str, e: bollard::errors::Error) -> Error {
    api_err(what, e)
}

fn api_err(what: &str, e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(format!("{what}: {message}")),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            Error::Other(format!("{what}: {message}"))
        }
        // The engine took the call and is slow to finish it (a queue of
        // network creates): that call timed out, the engine is up.
        bollard::errors::Error::RequestTimeoutError => Error::Other(format!(
            "{what}: the container engine did not finish in time (it is busy); try again"
        )),
        other => engine_err(format!("{what}: {other}")),
    }
}

pub(crate) fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Asks the engine behind a unix socket for `/_ping` and returns the API
/// version to speak: the engine's, capped at what bollard knows.
fn ping_unix(path: &std::path::Path) -> Result<bollard::ClientVersion> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(engine_err)?;
    s.set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(engine_err)?;
    s.set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(engine_err)?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(engine_err)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // The headers are all we need; stop at their end.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(engine_err(format!("no answer within {CONNECT_TIMEOUT:?}")))
            }
            Err(e) => return Err(engine_err(e)),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    if !head.starts_with("HTTP/1.") {
        return Err(engine_err("not a Docker API endpoint"));
    }
    let version = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("api-version")
                .then(|| v.trim().to_owned())
        })
        .and_then(|v| {
            let (maj, min) = v.split_once('.')?;
            Some((maj.parse::<usize>().ok()?, min.parse::<usize>().ok()?))
        });
    let ours = bollard::API_DEFAULT_VERSION;
    Ok(match version {
        Some((maj, min)) if (maj, min) < (ours.major_version, ours.minor_version) => {
            bollard::ClientVersion {
                major_version: maj,
                minor_version: min,
            }
        }
        _ => *ours,
    })
}

/// Connects on the caller's own tokio runtime (for async front ends).
pub async fn connect_async() -> Result<Docker> {
    connect_negotiated(&endpoint()?.host).await
}

/// Options for an instance's output: both streams, `tail` lines or all.
pub fn logs_options(follow: bool, tail: Option<usize>) -> q::LogsOptions {
    let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
    q::LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail)
        .build()
}

impl DockerEngine {
    /// Connects and negotiates the API version, or says within about two
    /// seconds that the engine does not answer.
    pub fn connect() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("tokio: {e}")))?;
        let endpoint = endpoint()?;
        // On a unix socket, `/_ping` tells the engine's API version in a
        // fraction of a millisecond (as the docker CLI does it); `/version`,
        // which bollard's negotiation asks, costs several.
        if let Some(path) = endpoint.unix_path() {
            let version = ping_unix(path)?;
            let docker =
                Docker::connect_with_unix(&endpoint.host, CALL_TIMEOUT.as_secs(), &version)
                    .map_err(engine_err)?;
            return Ok(DockerEngine { rt, docker });
        }
        let docker = rt.block_on(connect_negotiated(&endpoint.host))?;
        Ok(DockerEngine { rt, docker })
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The engine's event stream for the containers this tool manages (any
    /// state home: callers tell theirs apart by label).
    pub fn managed_container_events(
        &self,
    ) -> impl futures_util::Stream<
        Item = std::result::Result<bollard::models::EventMessage, bollard::errors::Error>,
    > + '_ {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![format!("{MANAGED_LABEL}={MANAGED_VALUE}")],
            ),
        ]);
        let opts = q::EventsOptionsBuilder::new().filters(&filters).build();
        self.docker.events(Some(opts))
    }

    async fn timed<T>(
        what: &str,
        f: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(r) => r.map_err(|e| api_err(what, e)),
            Err(_) => Err(engine_err(format!(
                "{what}: no answer within {CALL_TIMEOUT:?}"
            ))),
        }
    }

    pub fn version(&self) -> Result<String> {
        let v = self.block_on(Self::timed("version", self.docker.version()))?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    pub fn image_exists(&self, image: &str) -> Result<bool> {
        match self.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, self.docker.inspect_image(image)).await
        }) {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_404(&e) => Ok(false),
            Ok(Err(e)) => Err(api_err("inspect image", e)),
            Err(_) => Err(engine_err("inspect image: timeout")),
        }
    }

    /// Copies `files` (path inside, contents) into a created container,
    /// owned by root, mode 0644, in directories of root's (0755).
    async fn place_files(&self, container: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let tar = root_files_tar(files)
            .map_err(|e| Error::Other(format!("packing files for the container: {e}")))?;
        let opts = q::UploadToContainerOptionsBuilder::new().path("/").build();
        Self::timed(
            "copy files into the container",
            self.docker
                .upload_to_container(container, Some(opts), bollard::body_full(tar.into())),
        )
        .await
    }

    /// Creates and starts the container for an instance; returns its id.
    pub fn launch_container(&self, spec: &LaunchSpec) -> Result<String> {
        let name = object_name(spec.id, &spec.home);
        let port_key = format!("{}/tcp", spec.port);
        let settings = &spec.eff.settings;
        let agent = &spec.eff.agent;
        // The project at its host path, as on the host: the agent's
        // per-project state (Claude Code's `projects/<path>/`) is keyed by
        // it, so two projects of one name never share it, and it matches
        // the host's own.
        let workdir = spec.project.to_string_lossy().into_owned();
        let labels = HashMap::from([
            ("ai.instance".to_owned(), spec.id.to_string()),
            ("ai.mode".to_owned(), spec.mode.to_string()),
            ("ai.project".to_owned(), spec.project_name.to_owned()),
            (
                "ai.project_path".to_owned(),
                spec.project.to_string_lossy().into_owned(),
            ),
            ("ai.port".to_owned(), spec.port.to_string()),
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), spec.home.clone()),
        ]);
        let mut cmd = agent.command.clone();
        cmd.extend(spec.args.iter().cloned());
        let cmd = crate::features::worktree::setup::wrap(&spec.setup, cmd);
        // An egress policy brings an internal network of its own; else the
        // instance gets its own network unless the user shares the bridge.
        let egress = crate::features::egress::launch::prepare(self, spec, &name)?;
        let net = match &egress.network {
            Some(_) => network::Plan::Shared,
            None => network::plan(settings.networking.mode, &name, &labels),
        };
        let mut labels = labels;
        labels.extend(egress.labels.iter().cloned());
        if let network::Plan::Own(own) = &net {
            labels.insert(network::NETWORK_LABEL.to_owned(), own.name.clone());
        }
        let mut env = spec.env.clone();
        env.extend(egress.env.iter().cloned());
        let bind = |source: &Path, target: &str| Mount {
            source: Some(source.to_string_lossy().into_owned()),
            target: Some(target.to_owned()),
            typ: Some(MountType::BIND),
            ..Default::default()
        };
        let read_only = |source: &Path, target: &str| Mount {
            read_only: Some(true),
            ..bind(source, target)
        };
        let body = ContainerCreateBody {
            image: Some(agent.image.clone()),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            tty: Some(true),
            open_stdin: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            working_dir: Some(workdir.clone()),
            user: Some(format!(
                "{}:{}",
                nix::unistd::getuid(),
                nix::unistd::getgid()
            )),
            exposed_ports: Some(vec![port_key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: egress.publish.then(|| {
                    HashMap::from([(
                        port_key,
                        Some(vec![PortBinding {
                            host_ip: Some(settings.networking.bind.to_string()),
                            host_port: Some(spec.port.to_string()),
                        }]),
                    )])
                }),
                network_mode: egress.network.clone().or_else(|| net.network_mode()),
                dns: egress.dns.clone(),
                memory: Some(settings.resources.memory.limit.0 as i64),
                nano_cpus: Some(settings.resources.cpu.limit.nano_cpus()),
                init: Some(true),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                cap_drop: Some(vec!["ALL".to_owned()]),
                mounts: Some(
                    [
                        bind(spec.project, &workdir),
                        bind(&spec.state_dir, &agent.state_dir),
                    ]
                    .into_iter()
                    .chain(spec.mounts.iter().map(|(src, dst)| bind(src, dst)))
                    // After the state dir: bound over the files in it.
                    .chain(spec.read_only.iter().map(|(src, dst)| read_only(src, dst)))
                    .collect(),
                ),
                pids_limit: Some(i64::from(settings.resources.pids.limit)),
                // 0: the engine's default. (Podman, given any limit, adds
                // its own process limit, which some hosts refuse.)
                ulimits: (settings.resources.nofile.limit > 0).then(|| {
                    vec![ResourcesUlimits {
                        name: Some("nofile".to_owned()),
                        soft: Some(i64::from(settings.resources.nofile.limit)),
                        hard: Some(i64::from(settings.resources.nofile.limit)),
                    }]
                }),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_owned()),
                    config: Some(HashMap::from([
                        (
                            "max-size".to_owned(),
                            settings.logging.max_size.0.max(1024).to_string(),
                        ),
                        (
                            "max-file".to_owned(),
                            settings.logging.max_files.max(1).to_string(),
                        ),
                    ])),
                }),
                readonly_rootfs: Some(settings.resources.read_only_root),
                tmpfs: settings
                    .resources
                    .read_only_root
                    .then(|| scratch_dirs(&agent.state_dir)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let agent = async {
            // A stopped container of the same name is ours and stale.
            let _ = self
                .docker
                .remove_container(
                    &name,
                    Some(q::RemoveContainerOptionsBuilder::new().force(false).build()),
                )
                .await;
            if let network::Plan::Own(own) = &net {
                network::ensure(&self.docker, own).await?;
            }
            let create = self.docker.create_container(
                Some(q::CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            );
            let created = tokio::time::timeout(CALL_TIMEOUT, create).await;
            if !matches!(created, Ok(Ok(_))) {
                if let network::Plan::Own(own) = &net {
                    let _ = network::remove(&self.docker, &own.name).await;
                }
            }
            let created = match created {
                Ok(Ok(c)) => c,
                // The name is taken by a live container the registry does
                // not list (registry lost, or another state home).
                Ok(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    ..
                })) => {
                    return Err(Error::Invalid(format!(
                        "container {name} already exists but is not in this registry; \
                         `ai-sessctl registry repair` adopts it if it is yours, \
                         or start with another --id"
                    )))
                }
                Ok(Err(e)) => return Err(api_err("create container", e)),
                Err(_) => {
                    return Err(engine_err(format!(
                        "create container: no answer within {CALL_TIMEOUT:?}"
                    )))
                }
            };
            // Best effort: an agent without its hook settings still runs
            // (its activity stays unknown).
            if !spec.files.is_empty() && !settings.resources.read_only_root {
                if let Err(e) = self.place_files(&created.id, &spec.files).await {
                    if std::env::var_os("AI_SESSIONS_DEBUG").is_some() {
                        eprintln!("ai-sessctl: placing files in {name}: {e}");
                    }
                }
            }
            if let Err(e) = Self::timed(
                "start container",
                self.docker
                    .start_container(&created.id, None::<q::StartContainerOptions>),
            )
            .await
            {
                let _ = self
                    .docker
                    .remove_container(
                        &created.id,
                        Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                    )
                    .await;
                if let network::Plan::Own(own) = &net {
                    let _ = network::remove(&self.docker, &own.name).await;
                }
                return Err(e);
            }
            Ok(created.id)
        };
        // The egress proxy starts alongside the agent, not before it.
        let sidecar = async {
            match &egress.sidecar {
                Some(s) => Some(crate::features::egress::sidecar::start(&self.docker, s).await),
                None => None,
            }
        };
        let launched = self.block_on(async {
            match tokio::join!(agent, sidecar) {
                (Ok(id), Some(Err(e))) => {
                    let _ = self
                        .docker
                        .remove_container(
                            &id,
                            Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                        )
                        .await;
                    Err(e)
                }
                (agent, _) => agent,
            }
        });
        if launched.is_err() && egress.network.is_some() {
            crate::features::egress::launch::cleanup(self, &name);
        }
        launched
    }

    /// Every container labelled ours, by instance id, in one listing; of
    /// this process's state home only (or unlabelled, made before the
    /// label): another home may run an instance of the same id.
    pub fn observe(&self) -> Result<HashMap<String, Observed>> {
        let home = crate::core::paths::StateDir::from_env()
            .ok()
            .map(|d| home_label(&d));
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{MANAGED_LABEL}={MANAGED_VALUE}")],
        )]);
        let list = self.block_on(Self::timed(
            "list containers",
            self.docker.list_containers(Some(
                q::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            )),
        ))?;
        let mut out = HashMap::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let Some(id) = labels.get("ai.instance").cloned() else {
                continue;
            };
            let theirs = match (&home, labels.get(HOME_LABEL)) {
                (Some(mine), Some(h)) => h != mine,
                _ => false,
            };
            if theirs {
                continue;
            }
            let state = c
                .state
                .map(|s| crate::engine::state::ContainerState::parse(s.as_ref()))
                .unwrap_or_default();
            let exit_code = c.status.as_deref().and_then(parse_exit_code);
            // The list's `Health` field is new (API 1.49); older engines
            // only say it in the status text, e.g. "Up 5 s (unhealthy)".
            let health = c
                .health
                .and_then(|h| h.status)
                .and_then(|s| crate::engine::state::HealthState::parse(s.as_ref()))
                .or_else(|| c.status.as_deref().and_then(parse_health));
            out.insert(
                id,
                Observed {
                    container_id: c.id.unwrap_or_default(),
                    state,
                    exit_code,
                    health,
                    labels,
                },
            );
        }
        Ok(out)
    }

    /// One container by id, as `observe` describes it; `None` when it is gone.
    pub fn observe_one(&self, container: &str) -> Option<Observed> {
        let i = self
            .block_on(Self::timed(
                "inspect container",
                self.docker
                    .inspect_container(container, None::<q::InspectContainerOptions>),
            ))
            .ok()?;
        let st = i.state.unwrap_or_default();
        Some(Observed {
            container_id: i.id.unwrap_or_default(),
            state: st
                .status
                .map(|s| crate::engine::state::ContainerState::parse(s.as_ref()))
                .unwrap_or_default(),
            exit_code: st.exit_code.filter(|_| !st.running.unwrap_or(false)),
            health: st
                .health
                .and_then(|h| h.status)
                .and_then(|s| crate::engine::state::HealthState::parse(s.as_ref())),
            labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
        })
    }

    pub fn stop_container(&self, container: &str, timeout: Duration, force: bool) -> Result<()> {
        self.block_on(async {
            let r = if force {
                self.docker
                    .kill_container(container, None::<q::KillContainerOptions>)
                    .await
            } else {
                let t = timeout.as_secs().min(i32::MAX as u64) as i32;
                tokio::time::timeout(
                    timeout + CALL_TIMEOUT,
                    self.docker.stop_container(
                        container,
                        Some(q::StopContainerOptionsBuilder::new().t(t).build()),
                    ),
                )
                .await
                .unwrap_or_else(|_| Ok(()))
            };
            match r {
                Ok(()) => Ok(()),
                // Already gone or already stopped: the goal is reached.
                Err(e) if is_404(&e) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => Ok(()),
                Err(e) => Err(api_err("stop container", e)),
            }
        })
    }

    pub fn exit_code(&self, container: &str) -> Option<i64> {
        self.block_on(async {
            let i = self
                .docker
                .inspect_container(container, None::<q::InspectContainerOptions>)
                .await
                .ok()?;
            let st = i.state?;
            if st.running.unwrap_or(false) {
                None
            } else {
                st.exit_code
            }
        })
    }

    pub fn pause_container(&self, container: &str, paused: bool) -> Result<()> {
        self.block_on(async {
            if paused {
                Self::timed("pause", self.docker.pause_container(container)).await
            } else {
                Self::timed("resume", self.docker.unpause_container(container)).await
            }
        })
    }

    /// Saves the container's output to `log` (when given, keeping the
    /// newest `cap` bytes) and removes it, and the network made for it.
    pub fn remove(&self, container: &str, log: Option<(&Path, u64)>) -> Result<()> {
        if let Some((path, cap)) = log {
            let _ = self.save_log(container, path, cap);
        }
        if let Some(net) = self.remove_leaving_network(container)? {
            self.block_on(network::remove(&self.docker, &net))?;
        }
        Ok(())
    }

    /// Removes the container (and an egress policy's sidecar and network),
    /// but not the network made for it: its name is returned, for the
    /// caller to remove (the engine removes networks one at a time, about
    /// a quarter second each, so a batch hands them to `reap_networks`).
    pub fn remove_leaving_network(&self, container: &str) -> Result<Option<String>> {
        // What goes with the container: an egress policy's sidecar and
        // network, or the network made for it.
        let labels = self
            .block_on(
                self.docker
                    .inspect_container(container, None::<q::InspectContainerOptions>),
            )
            .ok()
            .and_then(|c| Some((c.name?, c.config?.labels?)));
        let egress_name = labels
            .as_ref()
            .filter(|(_, l)| l.contains_key(crate::features::egress::launch::EGRESS_LABEL))
            .map(|(n, _)| n.trim_start_matches('/').to_owned());
        let own_net = labels.and_then(|(_, mut l)| l.remove(network::NETWORK_LABEL));
        let removed = self.block_on(async {
            match self
                .docker
                .remove_container(
                    container,
                    Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if is_404(&e) => Ok(()),
                // Another stopper is removing it already: the goal is reached.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    message,
                }) if message.contains("already in progress") => Ok(()),
                Err(e) => Err(api_err("remove container", e)),
            }
        });
        if let Some(name) = egress_name {
            crate::features::egress::launch::cleanup(self, &name);
        }
        removed.map(|()| own_net)
    }

    /// Streams the container's output into `dest` (replacing the previous
    /// run's), keeping the newest `cap` bytes; never held in memory whole.
    /// A container whose output cannot be read leaves `dest` alone; an
    /// error means it could not be written (full disk).
    pub fn save_log(&self, container: &str, dest: &Path, cap: u64) -> Result<()> {
        let mut log = crate::engine::logfile::CappedLog::create(dest, cap)?;
        if self
            .block_on(self.copy_logs(container, false, None, &mut log))
            .is_ok()
        {
            log.finish()?;
        }
        Ok(())
    }

    /// This state home's networks that no container uses, with the
    /// instance each was made for.
    pub fn unused_networks(&self, home: &str) -> Result<Vec<(String, Option<String>)>> {
        self.block_on(network::unused(&self.docker, home))
    }

    /// Removes a network (gone already or still in use: left alone).
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.block_on(network::remove(&self.docker, name))
    }

    pub async fn copy_logs(
        &self,
        container: &str,
        follow: bool,
        tail: Option<usize>,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        let mut stream = self
            .docker
            .logs(container, Some(logs_options(follow, tail)));
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    if out.write_all(&chunk.into_bytes()).is_err() {
                        break;
                    }
                    let _ = out.flush();
                }
                Err(e) if is_404(&e) => {
                    return Err(Error::NotFound(format!("container {container} is gone")))
                }
                Err(e) => return Err(api_err("logs", e)),
            }
        }
        Ok(())
    }

    /// `replay`: include the output printed before the attach (see
    /// `attach::attach_container`); for a container that was just started.
    pub fn attach(&self, container: &str, detach_keys: &[u8], replay: bool) -> Result<AttachEnd> {
        self.block_on(attach::attach_container(
            &self.docker,
            container,
            detach_keys,
            replay,
        ))
    }
}

/// In-memory scratch for a read-only root: `/tmp`, and the agent's home
/// (the parent of its state dir) that the shipped images write caches to.
/// A tar of `files` (absolute paths inside), every entry root's: the
/// engine keeps the owner an archive names.
fn root_files_tar(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size as u64);
        h
    };
    for (path, data) in files {
        let rel = Path::new(path.trim_start_matches('/'));
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, parent, std::io::empty())?;
        }
        let mut h = header(tar::EntryType::Regular, 0o644, data.len());
        tar.append_data(&mut h, rel, data.as_slice())?;
    }
    tar.into_inner()
}

fn scratch_dirs(state_dir: &str) -> HashMap<String, String> {
    let opts = "rw,nosuid,nodev,size=256m".to_owned();
    let mut dirs = HashMap::from([("/tmp".to_owned(), opts.clone())]);
    if let Some(home) = Path::new(state_dir).parent() {
        let home = home.to_string_lossy();
        if home != "/" && !home.is_empty() {
            dirs.insert(home.into_owned(), format!("{opts},mode=1777"));
        }
    }
    dirs
}

/// `Exited (3) 2 minutes ago` → 3.
fn parse_exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// The HEALTHCHECK state in a container's status text (`docker ps`).
fn parse_health(status: &str) -> Option<crate::engine::state::HealthState> {
    crate::engine::state::HealthState::from_status_text(status)
}

impl super::Runtime for DockerEngine {
    fn launch(&self, spec: &LaunchSpec) -> Result<super::Launched> {
        self.launch_container(spec).map(super::Launched::Container)
    }

    fn stop(
        &self,
        inst: &crate::state::registry::Instance,
        timeout: Duration,
        force: bool,
    ) -> Result<Option<i64>> {
        let Some(cid) = &inst.container_id else {
            return Ok(None);
        };
        self.stop_container(cid, timeout, force)?;
        Ok(self.exit_code(cid))
    }

    fn set_paused(&self, inst: &crate::state::registry::Instance, paused: bool) -> Result<()> {
        match &inst.container_id {
            Some(cid) => self.pause_container(cid, paused),
            None => Err(Error::Invalid(format!("{} has no container", inst.id))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_from_status() {
        use crate::engine::state::HealthState;
        assert_eq!(
            super::parse_health("Up 5 seconds (unhealthy)"),
            Some(HealthState::Unhealthy)
        );
        assert_eq!(
            super::parse_health("Up 2 minutes (healthy)"),
            Some(HealthState::Healthy)
        );
        assert_eq!(
            super::parse_health("Up 1 second (health: starting)"),
            Some(HealthState::Starting)
        );
        assert_eq!(super::parse_health("Up 5 seconds"), None);
    }

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(super::parse_exit_code("Exited (3) 2 minutes ago"), Some(3));
        assert_eq!(
            super::parse_exit_code("Exited (137) 1 second ago"),
            Some(137)
        );
        assert_eq!(super::parse_exit_code("Up 5 seconds"), None);
    }
}
