//! Containers: created from plain data ([`ContainerSpec`]), started,
//! stopped, paused, inspected, listed and removed.

use super::state::{ContainerState, HealthState};
use super::{api_err, call_timeout, is_404, timeout_error, Engine};
use crate::core::error::{Error, Result};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkConnectRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters as q;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A host path bound into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// A container port published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: IpAddr,
    pub port: u16,
}

/// The engine's json-file log, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCap {
    pub max_size: u64,
    pub max_files: u32,
}

/// Everything a container is created with, as plain data. Hardening that
/// every container of ours gets (no new privileges, all capabilities
/// dropped, the caller's uid) is not optional and not here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    /// A container of this name left by an earlier start is removed even
    /// while it runs (else only a stopped one is: a running one is
    /// somebody's, and creating fails with [`Created::NameTaken`]).
    pub replace: bool,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub working_dir: Option<String>,
    /// A terminal and an open stdin, for an agent to attach to.
    pub interactive: bool,
    /// An open stdin without a terminal, closed when the first attach
    /// ends: a secret is written to it once, and kept nowhere else.
    pub stdin_once: bool,
    /// The container port to expose, and where it is published (if it is).
    pub port: Option<u16>,
    pub publish: Option<Publish>,
    /// `HostConfig.NetworkMode`: a network's name, `none`, or the default.
    pub network_mode: Option<String>,
    /// Names the container has on its `network_mode` network.
    pub aliases: Vec<String>,
    /// More networks joined after creation, before the start.
    pub extra_networks: Vec<String>,
    pub dns: Option<Vec<String>>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Open files limit (soft and hard); `None`: the engine's default.
    pub nofile: Option<u32>,
    pub init: bool,
    pub auto_remove: bool,
    pub read_only_root: bool,
    /// In-memory directories (path, mount options).
    pub tmpfs: HashMap<String, String>,
    pub binds: Vec<Bind>,
    /// Named volumes mounted (volume name, path inside).
    pub volumes: Vec<(String, String)>,
    pub log: Option<LogCap>,
}

impl ContainerSpec {
    fn body(&self) -> ContainerCreateBody {
        let port_key = self.port.map(|p| format!("{p}/tcp"));
        let port_bindings = match (&port_key, self.publish) {
            (Some(key), Some(p)) => Some(HashMap::from([(
                key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(p.host_ip.to_string()),
                    host_port: Some(p.port.to_string()),
                }]),
            )])),
            _ => None,
        };
        let networking_config = match (&self.network_mode, self.aliases.is_empty()) {
            (Some(net), false) => Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    net.clone(),
                    EndpointSettings {
                        aliases: Some(self.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            _ => None,
        };
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.cmd.clone()),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            labels: Some(self.labels.clone()),
            tty: self.interactive.then_some(true),
            open_stdin: (self.interactive || self.stdin_once).then_some(true),
            stdin_once: (self.stdin_once && !self.interactive).then_some(true),
            attach_stdin: (self.interactive || self.stdin_once).then_some(true),
            attach_stdout: self.interactive.then_some(true),
            attach_stderr: self.interactive.then_some(true),
            working_dir: self.working_dir.clone(),
            user: Some(format!(
                "{}:{}",
                nix::unistd::getuid(),
                nix::unistd::getgid()
            )),
            exposed_ports: port_key.map(|k| vec![k]),
            networking_config,
            host_config: Some(self.host_config(port_bindings)),
            ..Default::default()
        }
    }

    fn host_config(
        &self,
        port_bindings: Option<HashMap<String, Option<Vec<PortBinding>>>>,
    ) -> HostConfig {
        HostConfig {
            port_bindings,
            network_mode: self.network_mode.clone(),
            dns: self.dns.clone(),
            memory: self.memory,
            nano_cpus: self.nano_cpus,
            init: self.init.then_some(true),
            auto_remove: self.auto_remove.then_some(true),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            mounts: Some(
                self.binds
                    .iter()
                    .map(mount)
                    .chain(self.volumes.iter().map(|(name, target)| Mount {
                        source: Some(name.clone()),
                        target: Some(target.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    }))
                    .collect(),
            ),
            pids_limit: self.pids_limit,
            ulimits: self.nofile.map(|n| {
                vec![ResourcesUlimits {
                    name: Some("nofile".to_owned()),
                    soft: Some(i64::from(n)),
                    hard: Some(i64::from(n)),
                }]
            }),
            log_config: self.log.map(|cap| HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), cap.max_size.to_string()),
                    ("max-file".to_owned(), cap.max_files.to_string()),
                ])),
            }),
            readonly_rootfs: Some(self.read_only_root),
            tmpfs: (!self.tmpfs.is_empty()).then(|| self.tmpfs.clone()),
            ..Default::default()
        }
    }
}

fn mount(b: &Bind) -> Mount {
    Mount {
        source: Some(b.source.to_string_lossy().into_owned()),
        target: Some(b.target.clone()),
        typ: Some(MountType::BIND),
        read_only: b.read_only.then_some(true),
        ..Default::default()
    }
}

/// How many times a create waits for a stale container of its name to go
/// (50 ms apart: a reaper removing it is done well within that).
const STALE_TRIES: u32 = 40;

/// A container as the engine lists or inspects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    /// The HEALTHCHECK's state, when the image has one.
    pub health: Option<HealthState>,
    pub labels: HashMap<String, String>,
}

/// What creating a container came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Id(String),
    /// The name is taken by another container.
    NameTaken,
}

impl Engine {
    /// Creates a container (replacing one of the same name that is
    /// stale: stopped, or any with `spec.replace`), joins its extra
    /// networks, and places `files` in it (best effort: `Err` in the second
    /// part of the answer).
    pub async fn create(
        &self,
        spec: &ContainerSpec,
        files: &[(String, Vec<u8>)],
    ) -> Result<(Created, Option<Error>)> {
        // A stale container of the same name (a stopped instance's, whose
        // removal was left to a batch's reaper) is only looked at when the
        // name is taken: the common start pays no round trip for it.
        if spec.replace {
            self.remove_stale(&spec.name, true).await;
        }
        let after = call_timeout();
        let mut tries = 0;
        let id = loop {
            let create = self.docker.create_container(
                Some(
                    q::CreateContainerOptionsBuilder::new()
                        .name(&spec.name)
                        .build(),
                ),
                spec.body(),
            );
            match tokio::time::timeout(after, create).await {
                Ok(Ok(c)) => break c.id,
                Ok(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    ..
                })) => {
                    // Taken by a live container: not ours to replace. One
                    // that ended goes (it may be going already: a reaper
                    // removing it makes the name free shortly).
                    let live = match self
                        .docker
                        .inspect_container(&spec.name, None::<q::InspectContainerOptions>)
                        .await
                    {
                        Ok(i) => i.state.and_then(|s| s.running).unwrap_or(false),
                        Err(e) => !is_404(&e),
                    };
                    tries += 1;
                    if live || tries > STALE_TRIES {
                        return Ok((Created::NameTaken, None));
                    }
                    if tries > 1 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    self.remove_stale(&spec.name, false).await;
                }
                Ok(Err(e)) => return Err(api_err("create container", e)),
                Err(_) => return Err(timeout_error("create container", after)),
            }
        };
        for net in &spec.extra_networks {
            let joined = Self::timed_change(
                "connect to a network",
                self.docker.connect_network(
                    net,
                    NetworkConnectRequest {
                        container: id.clone(),
                        ..Default::default()
                    },
                ),
            )
            .await;
            if let Err(e) = joined {
                self.remove_async(&id).await;
                return Err(e);
            }
        }
        let placed = match files.is_empty() {
            true => None,
            false => self.place_files(&id, files).await.err(),
        };
        Ok((Created::Id(id), placed))
    }

    /// Removes the container named `name` if it is not running (or, with
    /// `force`, even then); whether it could is seen by the create after.
    async fn remove_stale(&self, name: &str, force: bool) {
        let _ = Self::timed_change(
            "remove a stale container",
            self.docker.remove_container(
                name,
                Some(q::RemoveContainerOptionsBuilder::new().force(force).build()),
            ),
        )
        .await;
    }

    /// Starts a created container; one that does not start is removed.
    pub async fn start(&self, id: &str) -> Result<()> {
        let started = Self::timed_change(
            "start container",
            self.docker
                .start_container(id, None::<q::StartContainerOptions>),
        )
        .await;
        if started.is_err() {
            self.remove_async(id).await;
        }
        started
    }

    /// Writes `bytes` to the standard input of a running container made
    /// with `stdin_once`, and closes it: nothing of it is kept by the
    /// engine (not in its config, its logs or `inspect`).
    pub async fn write_stdin(&self, id: &str, bytes: &[u8]) -> Result<()> {
        let input = self.attach_stdin(id).await?;
        Self::write_input(input, bytes).await
    }

    /// The standard input of container `id` (created, or running), attached.
    pub async fn attach_stdin(
        &self,
        id: &str,
    ) -> Result<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>> {
        let opts = q::AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stream(true)
            .build();
        let attached =
            Self::timed("attach stdin", self.docker.attach_container(id, Some(opts))).await?;
        Ok(attached.input)
    }

    /// Writes `bytes` to an attached standard input, and closes it.
    pub async fn write_input(
        mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        bytes: &[u8],
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let wrote = async {
            input.write_all(bytes).await?;
            input.flush().await?;
            input.shutdown().await
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), wrote)
            .await
            .map_err(|_| Error::Engine("writing to the container's stdin: timed out".into()))?
            .map_err(|e| Error::Engine(format!("writing to the container's stdin: {e}")))
    }

    /// Types `chunks` into the terminal of running container `id`, one
    /// write each, `gap` apart: a terminal program reads a text and the
    /// Enter after it in one read as a paste, not as a submit.
    pub async fn type_input(&self, id: &str, chunks: &[Vec<u8>], gap: Duration) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut input = self.attach_stdin(id).await?;
        let typed = async {
            for (n, chunk) in chunks.iter().enumerate() {
                if n > 0 {
                    tokio::time::sleep(gap).await;
                }
                input.write_all(chunk).await?;
                input.flush().await?;
            }
            input.shutdown().await
        };
        tokio::time::timeout(Duration::from_secs(20), typed)
            .await
            .map_err(|_| Error::Engine("typing into the container: timed out".into()))?
            .map_err(|e| Error::Engine(format!("typing into the container: {e}")))
    }

    /// Removes a container by force; gone already is fine.
    pub async fn remove_async(&self, container: &str) {
        let _ = Self::timed_change(
            "remove container",
            self.docker.remove_container(
                container,
                Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
            ),
        )
        .await;
    }

    /// Removes a container by force: gone already, or being removed by
    /// another caller, is the goal reached.
    pub fn remove_container(&self, container: &str) -> Result<()> {
        let after = call_timeout();
        self.block_on(async {
            let removed = tokio::time::timeout(
                after,
                self.docker.remove_container(
                    container,
                    Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                ),
            );
            match removed
                .await
                .map_err(|_| timeout_error("remove container", after))?
            {
                Ok(()) => Ok(()),
                Err(e) if is_404(&e) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    message,
                }) if message.contains("already in progress") => Ok(()),
                Err(e) => Err(api_err("remove container", e)),
            }
        })
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

    /// Every container carrying all of `labels` (`key=value`), stopped ones too.
    pub fn list(&self, labels: &[String]) -> Result<Vec<ContainerInfo>> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let list = self.block_on(Self::timed(
            "list containers",
            self.docker.list_containers(Some(
                q::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            )),
        ))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let exit_code = c.status.as_deref().and_then(parse_exit_code);
                // The list's `Health` field is new (API 1.49); older engines
                // only say it in the status text, e.g. "Up 5 s (unhealthy)".
                let health = c
                    .health
                    .and_then(|h| h.status)
                    .and_then(|s| HealthState::parse(s.as_ref()))
                    .or_else(|| c.status.as_deref().and_then(HealthState::from_status_text));
                ContainerInfo {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    state: c
                        .state
                        .map(|s| ContainerState::parse(s.as_ref()))
                        .unwrap_or_default(),
                    exit_code,
                    health,
                    labels: c.labels.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// One container by id or name; `None` when it is gone (or the engine
    /// does not say).
    pub fn inspect(&self, container: &str) -> Option<ContainerInfo> {
        let i = self
            .block_on(Self::timed(
                "inspect container",
                self.docker
                    .inspect_container(container, None::<q::InspectContainerOptions>),
            ))
            .ok()?;
        let st = i.state.unwrap_or_default();
        Some(ContainerInfo {
            id: i.id.unwrap_or_default(),
            name: i
                .name
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            state: st
                .status
                .map(|s| ContainerState::parse(s.as_ref()))
                .unwrap_or_default(),
            exit_code: st.exit_code.filter(|_| !st.running.unwrap_or(false)),
            health: st
                .health
                .and_then(|h| h.status)
                .and_then(|s| HealthState::parse(s.as_ref())),
            labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
        })
    }

    pub fn stop_container(&self, container: &str, timeout: Duration, force: bool) -> Result<()> {
        self.block_on(async {
            let r = if force {
                let after = call_timeout();
                tokio::time::timeout(
                    after,
                    self.docker
                        .kill_container(container, None::<q::KillContainerOptions>),
                )
                .await
                .map_err(|_| timeout_error("kill container", after))?
            } else {
                let t = timeout.as_secs().min(i32::MAX as u64) as i32;
                tokio::time::timeout(
                    timeout + call_timeout(),
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
                    status_code: 304 | 409,
                    ..
                }) => Ok(()),
                Err(e) => Err(api_err("stop container", e)),
            }
        })
    }

    /// The exit code of a container that ended (`None` while it runs).
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

    /// `replay`: include the output printed before the attach (see
    /// `attach::attach_container`); for a container that was just started.
    pub fn attach(
        &self,
        container: &str,
        detach_keys: &[u8],
        replay: bool,
    ) -> Result<super::attach::AttachEnd> {
        self.block_on(super::attach::attach_container(
            &self.docker,
            container,
            detach_keys,
            replay,
        ))
    }
}

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

/// `Exited (3) 2 minutes ago` → 3.
fn parse_exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

#[cfg(test)]
mod tests {
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
