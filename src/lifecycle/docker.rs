//! The Docker runtime: an instance as a container (with its network and
//! sidecars) on the engine. It turns a launch spec into a
//! [`LaunchPlan`], lets features add to it, and carries it out.

use super::{LaunchSpec, Observed};
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::engine::container::{Bind, ContainerSpec, Created, LogCap, Publish};
use crate::engine::network::OwnNetwork;
use crate::engine::Engine;
use crate::launch::{LaunchPlan, PlannedNetwork};
use crate::state::config::NetworkMode;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::engine::{HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};

pub use crate::launch::{INSTANCE_LABEL, NETWORK_LABEL};

pub use crate::core::paths::home_digest;

/// The name of an instance's container and network: `ai-<id>-<digest>`.
/// Code finds them by label; the name only has to be unique and readable.
pub fn object_name(id: &InstanceId, home_label: &str) -> String {
    format!("ai-{id}-{}", home_digest(home_label))
}

/// The instance-aware side of the engine: the process's one connection
/// (see [`Engine::shared`]), with what instances need of it.
#[derive(Clone, Copy)]
pub struct DockerEngine {
    engine: &'static Engine,
}

impl Deref for DockerEngine {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        self.engine
    }
}

/// What [`DockerEngine::remove_later`] leaves for the reaper.
#[derive(Debug, Default)]
pub struct Later {
    pub container: Option<String>,
    pub network: Option<String>,
}

/// Where an instance's container is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NetPlan {
    /// The engine's default bridge, shared with every other container.
    Shared,
    /// A network of its own.
    Own(OwnNetwork),
}

/// The network for an instance named `name` (its container's name),
/// labelled like the container.
fn net_plan(mode: NetworkMode, name: &str, labels: &HashMap<String, String>) -> NetPlan {
    match mode {
        NetworkMode::Shared => NetPlan::Shared,
        NetworkMode::Isolated => {
            let keep = [INSTANCE_LABEL, HOME_LABEL, MANAGED_LABEL];
            NetPlan::Own(OwnNetwork {
                name: name.to_owned(),
                internal: false,
                labels: labels
                    .iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
        }
    }
}

impl NetPlan {
    /// `HostConfig.NetworkMode` for the container.
    fn network_mode(&self) -> Option<String> {
        match self {
            NetPlan::Shared => None,
            NetPlan::Own(n) => Some(n.name.clone()),
        }
    }
}

impl DockerEngine {
    /// The process's connection to the engine (made on first use).
    pub fn connect() -> Result<Self> {
        Ok(DockerEngine {
            engine: Engine::shared()?,
        })
    }

    /// Creates and starts the container for an instance; returns its id.
    pub fn launch_container(&self, spec: &LaunchSpec) -> Result<String> {
        let mut plan = plan(spec);
        self.take_pool_network(spec, &mut plan)?;
        let contributed = crate::features::egress::launch::contribute(self, spec, &mut plan)
            // After egress: a clone instance mounts nothing of the host.
            .and_then(|()| crate::features::clone::contribute(self, spec, &mut plan))
            .and_then(|()| boxed_activity(spec, &mut plan));
        if let Err(e) = contributed {
            // Refused before anything was made: what it took goes back.
            if let Some(net) = plan.agent.network_mode.as_deref() {
                if super::pool::is_pool_network(net) {
                    let dirs = crate::core::paths::StateDir::new(PathBuf::from(&spec.home));
                    if plan.networks.is_empty() {
                        let _ = super::pool::release(&dirs, self, net);
                    } else {
                        super::pool::unclaim(&dirs, net);
                    }
                }
            }
            return Err(e);
        }
        if spec
            .credential
            .as_ref()
            .is_some_and(|c| c.api == crate::state::config::ApiKind::Gemini)
        {
            crate::features::activity::hooks::gemini_key_auth(&mut plan);
        }
        // The network of its own it is attached to goes with it (an egress
        // policy's networks go with its sidecar).
        let own = plan.networks.iter().find_map(|n| match n {
            PlannedNetwork::Own(o) if plan.agent.network_mode.as_ref() == Some(&o.name) => {
                Some(o.name.clone())
            }
            _ => None,
        });
        if let Some(own) = own {
            plan.agent.labels.insert(NETWORK_LABEL.to_owned(), own);
        }
        self.carry_out(plan)
    }

    /// An instance with a network of its own (and egress `open`, which
    /// keeps it on that network) takes one from the home's pool: a ready
    /// one, or else one named now and made by this start.
    fn take_pool_network(&self, spec: &LaunchSpec, plan: &mut LaunchPlan) -> Result<()> {
        let net = &spec.eff.settings.networking;
        let own = matches!(plan.networks.as_slice(),
            [PlannedNetwork::Own(o)] if plan.agent.network_mode.as_ref() == Some(&o.name));
        if !own || net.pool == 0 || net.egress != crate::state::config::EgressPolicy::Open {
            return Ok(());
        }
        let dirs = crate::core::paths::StateDir::new(PathBuf::from(&spec.home));
        let ready = loop {
            match super::pool::claim(&dirs, spec.id) {
                // Removed behind our back (`docker network prune`): next.
                Some(name) if !self.network_exists(&name) => super::pool::unclaim(&dirs, &name),
                found => break found,
            }
        };
        let name = match ready {
            Some(name) => {
                plan.networks.clear();
                name
            }
            None => {
                let name = super::pool::claim_new(&dirs, spec.id)?;
                plan.networks = vec![PlannedNetwork::Own(super::pool::network(&spec.home, &name))];
                name
            }
        };
        plan.agent.network_mode = Some(name.clone());
        plan.agent
            .labels
            .insert(NETWORK_LABEL.to_owned(), name.clone());
        Ok(())
    }

    /// Gives back (pool) or removes the network a container was on.
    pub fn dispose_network(&self, net: &str) -> Result<()> {
        if super::pool::is_pool_network(net) {
            if let Ok(dirs) = crate::core::paths::StateDir::from_env() {
                return super::pool::release(&dirs, self, net);
            }
        }
        self.remove_network(net)
    }

    /// Makes the plan's networks, then its containers side by side; what a
    /// failed start made is removed again.
    fn carry_out(&self, plan: LaunchPlan) -> Result<String> {
        let launched = self.block_on(async {
            let mut made = Vec::new();
            let mut new_volumes = Vec::new();
            for v in &plan.volumes {
                match self.ensure_volume(&v.name, &v.labels).await {
                    Ok(crate::engine::volume::Volume::Created) => new_volumes.push(v.name.clone()),
                    Ok(crate::engine::volume::Volume::Existed) => {}
                    Err(e) => return (Err(e), made, new_volumes),
                }
            }
            for net in &plan.networks {
                let result = match net {
                    PlannedNetwork::Own(own) => self.ensure_network(own).await,
                    PlannedNetwork::Internal { name, labels } => {
                        self.ensure_internal_network(name, labels).await
                    }
                };
                if let Err(e) = result {
                    // A create that timed out may still be carried out.
                    if matches!(e, Error::EngineTimeout(_) | Error::Engine(_)) {
                        made.push(net.name().to_owned());
                    }
                    return (Err(e), made, new_volumes);
                }
                made.push(net.name().to_owned());
            }
            // A read-only root takes no files (it has nowhere to put them).
            let files: &[(String, Vec<u8>)] = match plan.agent.read_only_root {
                true => &[],
                false => &plan.files,
            };
            let seed = plan.seed.as_deref().map(|t| ("/", t));
            let agent = self.create_and_start(&plan.agent, files, None, seed, &plan.uploads);
            let sidecars = futures_util::future::join_all(plan.sidecars.iter().map(|s| {
                let seed = plan
                    .sidecar_seeds
                    .get(&s.name)
                    .map(|(at, t)| (at.as_str(), t.as_slice()));
                self.create_and_start(s, &[], plan.stdin.get(&s.name), seed, &[])
            }));
            let (agent, sidecars) = tokio::join!(agent, sidecars);
            let result = match (agent, sidecars.into_iter().find_map(|s| s.err())) {
                (Ok(id), Some(e)) => {
                    self.remove_async(&id).await;
                    Err(e)
                }
                (agent, _) => agent,
            };
            (result, made, new_volumes)
        });
        match launched {
            (Ok(id), _, _) => Ok(id),
            (Err(e), made, new_volumes) => {
                for v in &new_volumes {
                    let _ = self.remove_volume(v);
                }
                for s in &plan.sidecars {
                    let _ = self.remove_container(&s.name);
                }
                // What this start made goes; a ready network it took from
                // the pool goes back to it.
                let dirs = crate::core::paths::StateDir::from_env().ok();
                for net in made.iter().rev() {
                    let _ = self.remove_network(net);
                    if let Some(dirs) = &dirs {
                        super::pool::unclaim(dirs, net);
                    }
                }
                if let Some(net) = plan.agent.network_mode.as_deref() {
                    if super::pool::is_pool_network(net) && !made.iter().any(|m| m == net) {
                        let _ = self.dispose_network(net);
                    }
                }
                Err(e)
            }
        }
    }

    async fn create_and_start(
        &self,
        spec: &ContainerSpec,
        files: &[(String, Vec<u8>)],
        stdin: Option<&crate::core::types::Secret>,
        seed: Option<(&str, &[u8])>,
        uploads: &[crate::launch::Upload],
    ) -> Result<String> {
        let name = &spec.name;
        let (created, placed) = self.create(spec, files).await?;
        // Best effort: an agent without its hook settings still runs (its
        // activity stays unknown).
        if let Some(e) = placed {
            crate::core::warning::report_debug(format!("ai-sessctl: placing files in {name}: {e}"));
        }
        let id = match created {
            Created::Id(id) => id,
            // The name is taken by a live container the registry does not
            // list (registry lost, or another state home).
            Created::NameTaken => {
                return Err(Error::Invalid(format!(
                    "container {name} already exists but is not in this registry; \
                     `ai-sessctl registry repair` adopts it if it is yours, \
                     or start with another --id"
                )))
            }
        };
        if let Some((at, seed)) = seed {
            if let Err(e) = self.upload_tar_into(&id, at, seed.to_vec()).await {
                self.remove_async(&id).await;
                return Err(e);
            }
        }
        for u in uploads {
            let tar = u
                .tar()
                .map_err(|e| Error::Other(format!("packing files for {name}: {e}")));
            let uploaded = match tar {
                Ok(tar) => self.upload_tar_into(&id, &u.at, tar).await,
                Err(e) => Err(e),
            };
            if let Err(e) = uploaded {
                self.remove_async(&id).await;
                return Err(e);
            }
        }
        let Some(secret) = stdin else {
            self.start(&id).await?;
            return Ok(id);
        };
        // Attached while it starts (one round trip less than after); the
        // key is written once it runs.
        let (started, attached) = tokio::join!(self.start(&id), self.attach_stdin(&id));
        let mut line = secret.expose().as_bytes().to_vec();
        line.push(b'\n');
        let written = match (started, attached) {
            (Ok(()), Ok(input)) => crate::engine::Engine::write_input(input, &line).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = written {
            self.remove_async(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Every container labelled ours, by instance id, in one listing; of
    /// this process's state home only (or unlabelled, made before the
    /// label): another home may run an instance of the same id.
    pub fn observe(&self) -> Result<HashMap<String, Observed>> {
        let home = crate::core::paths::StateDir::from_env()
            .ok()
            .map(|d| d.home_label());
        let list = self.list(&[format!("{MANAGED_LABEL}={MANAGED_VALUE}")])?;
        let mut out = HashMap::new();
        for c in list {
            let Some(id) = c.labels.get(INSTANCE_LABEL).cloned() else {
                continue;
            };
            let theirs = match (&home, c.labels.get(HOME_LABEL)) {
                (Some(mine), Some(h)) => h != mine,
                _ => false,
            };
            if !theirs {
                out.insert(id, observed(c));
            }
        }
        Ok(out)
    }

    /// One container by id, as `observe` describes it; `None` when it is gone.
    pub fn observe_one(&self, container: &str) -> Option<Observed> {
        self.inspect(container).map(observed)
    }

    /// Saves the container's output to `log` (when given, keeping the
    /// newest `cap` bytes) and removes it, and the network made for it.
    pub fn remove(&self, container: &str, log: Option<(&Path, u64)>) -> Result<()> {
        if let Some((path, cap)) = log {
            let _ = self.save_log(container, path, cap);
        }
        if let Some(net) = self.remove_leaving_network(container)? {
            self.dispose_network(&net)?;
        }
        Ok(())
    }

    /// Removes the container (and an egress policy's sidecar and network),
    /// but not the network made for it: its name is returned, for the
    /// caller to remove (the engine removes networks one at a time, about
    /// a quarter second each, so a batch hands them to `reap_networks`).
    pub fn remove_leaving_network(&self, container: &str) -> Result<Option<String>> {
        let info = self.inspect(container);
        let egress = info.as_ref().and_then(|c| {
            let policy = c
                .labels
                .get(crate::features::egress::launch::EGRESS_LABEL)?;
            Some((c.name.clone(), policy.clone()))
        });
        let own_net = info.and_then(|mut c| c.labels.remove(NETWORK_LABEL));
        if let Some((name, _)) = &egress {
            crate::features::egress::launch::before_removal(self, name);
        }
        let removed = self.remove_container(container);
        if let Some((name, policy)) = egress {
            crate::features::egress::launch::cleanup(self, &name, &policy);
        }
        removed.map(|()| own_net)
    }

    /// For a batch's reaper: the stopped container (unless an egress
    /// policy's sidecar goes with it, which is removed now: its sidecar
    /// and networks are found by the instance's name, which a start right
    /// after may take again) and the network made for it.
    pub fn remove_later(&self, container: &str) -> Result<Later> {
        let Some(info) = self.inspect(container) else {
            return Ok(Later::default());
        };
        if info
            .labels
            .contains_key(crate::features::egress::launch::EGRESS_LABEL)
        {
            return Ok(Later {
                container: None,
                network: self.remove_leaving_network(container)?,
            });
        }
        Ok(Later {
            container: Some(info.id).filter(|i| !i.is_empty()),
            network: info.labels.get(NETWORK_LABEL).cloned(),
        })
    }

    /// The volumes of this state home (a clone instance's repository and
    /// state), with the instance each is for.
    pub fn instance_volumes(&self, home: &str) -> Result<Vec<(String, Option<String>)>> {
        Ok(self
            .volumes(&[
                format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
                format!("{HOME_LABEL}={home}"),
            ])?
            .into_iter()
            .map(|(name, mut labels)| (name, labels.remove(INSTANCE_LABEL)))
            .collect())
    }

    /// Removes the volumes of instance `id` of this state home (its work,
    /// when it was a clone: `rm` is the end of it).
    pub fn remove_instance_volumes(&self, id: &InstanceId, home: &str) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for (name, of) in self.instance_volumes(home)? {
            if of.as_deref() == Some(id.as_str()) {
                self.remove_volume(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// This state home's networks that no container uses, with the
    /// instance each was made for.
    pub fn unused_instance_networks(&self, home: &str) -> Result<Vec<(String, Option<String>)>> {
        Ok(self
            .unused_networks(home)?
            .into_iter()
            .map(|(name, mut labels)| (name, labels.remove(INSTANCE_LABEL)))
            .collect())
    }
}

fn observed(c: crate::engine::container::ContainerInfo) -> Observed {
    Observed {
        container_id: c.id,
        state: c.state,
        exit_code: c.exit_code,
        health: c.health,
        labels: c.labels,
    }
}

/// The plan for an instance's container before features add to it: the
/// agent with its limits and mounts, and its own network (unless the user
/// shares the default bridge).
fn plan(spec: &LaunchSpec) -> LaunchPlan {
    let name = object_name(spec.id, &spec.home);
    let settings = &spec.eff.settings;
    let agent = &spec.eff.agent;
    // The project at its host path, as on the host: the agent's
    // per-project state (Claude Code's `projects/<path>/`) is keyed by it,
    // so two projects of one name never share it, and it matches the
    // host's own.
    let workdir = spec.project.to_string_lossy().into_owned();
    let labels = HashMap::from([
        (INSTANCE_LABEL.to_owned(), spec.id.to_string()),
        ("ai.mode".to_owned(), spec.mode.to_string()),
        ("ai.project".to_owned(), spec.project_name.to_owned()),
        ("ai.project_path".to_owned(), workdir.clone()),
        ("ai.port".to_owned(), spec.port.to_string()),
        (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
        (HOME_LABEL.to_owned(), spec.home.clone()),
    ]);
    let mut cmd = agent.command.clone();
    cmd.extend(spec.args.iter().cloned());
    let cmd = crate::features::worktree::setup::wrap(&spec.setup, cmd);
    let net = net_plan(settings.networking.mode, &name, &labels);
    let bind = |source: &Path, target: &str, read_only: bool| Bind {
        source: source.to_path_buf(),
        target: target.to_owned(),
        read_only,
    };
    let binds = [
        bind(spec.project, &workdir, false),
        bind(&spec.state_dir, &agent.state_dir, false),
    ]
    .into_iter()
    .chain(spec.mounts.iter().map(|(src, dst)| bind(src, dst, false)))
    // After the state dir: bound over the files in it.
    .chain(spec.read_only.iter().map(|(src, dst)| bind(src, dst, true)))
    .collect();
    let resources = &settings.resources;
    LaunchPlan {
        agent: ContainerSpec {
            name,
            image: agent.image.clone(),
            cmd,
            env: spec.env.clone(),
            labels,
            working_dir: Some(workdir),
            interactive: true,
            port: Some(spec.port.get()),
            publish: Some(Publish {
                host_ip: settings.networking.bind,
                port: spec.port.get(),
            }),
            network_mode: net.network_mode(),
            memory: Some(resources.memory.limit.0 as i64),
            nano_cpus: Some(resources.cpu.limit.nano_cpus()),
            pids_limit: Some(i64::from(resources.pids.limit)),
            // 0: the engine's default. (Podman, given any limit, adds its
            // own process limit, which some hosts refuse.)
            nofile: (resources.nofile.limit > 0).then_some(resources.nofile.limit),
            init: true,
            read_only_root: resources.read_only_root,
            tmpfs: match resources.read_only_root {
                true => scratch_dirs(&agent.state_dir),
                false => HashMap::new(),
            },
            binds,
            log: Some(LogCap {
                max_size: settings.logging.max_size.0.max(1024),
                max_files: settings.logging.max_files.max(1),
            }),
            ..ContainerSpec::default()
        },
        files: spec.files.clone(),
        networks: match net {
            NetPlan::Own(own) => vec![PlannedNetwork::Own(own)],
            NetPlan::Shared => Vec::new(),
        },
        sidecars: Vec::new(),
        stdin: HashMap::new(),
        volumes: Vec::new(),
        seed: None,
        uploads: Vec::new(),
        sidecar_seeds: HashMap::new(),
    }
}

/// A clone instance mounts nothing of the host: its activity directory is
/// a volume of its own, which the background watcher reads through the
/// engine.
fn boxed_activity(spec: &LaunchSpec, plan: &mut LaunchPlan) -> Result<()> {
    if spec.clone.is_none() {
        return Ok(());
    }
    let dirs = crate::core::paths::StateDir::new(PathBuf::from(&spec.home));
    let volume = crate::features::clone::instance_volume(plan, "activity");
    let written = [crate::features::worktree::setup::FILE];
    crate::features::activity::boxed(&dirs, spec.id, plan, volume, &written)
}

/// In-memory scratch for a read-only root: `/tmp`, and the agent's home
/// (the parent of its state dir) that the shipped images write caches to.
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
