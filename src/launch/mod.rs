//! The launch plan: what a start creates, as plain data. The lifecycle
//! turns a [`LaunchSpec`] (what the user asked for, with its settings)
//! into a [`LaunchPlan`]; features add to the plan (egress: an internal
//! network and a proxy beside the agent; worktrees: steps before it) and
//! the lifecycle carries it out on the engine.

use crate::core::types::{InstanceId, Mode, Port, Secret, Upstream};
use crate::engine::container::ContainerSpec;
use crate::engine::network::OwnNetwork;
use crate::state::config::ApiKind;
use crate::state::config::Effective;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything needed to launch one instance. `env` holds secrets copied
/// from the caller's environment: it lives in memory only.
pub struct LaunchSpec<'a> {
    pub id: &'a InstanceId,
    pub project: &'a Path,
    pub project_name: &'a str,
    pub mode: &'a Mode,
    pub port: Port,
    pub eff: &'a Effective,
    pub args: &'a [String],
    pub state_dir: PathBuf,
    pub env: Vec<String>,
    /// The state home that owns the instance (label `ai.home`).
    pub home: String,
    /// Host runtime: the agent's working directory, and where a detached
    /// agent's output goes (`None`: it shares the caller's terminal).
    pub cwd: PathBuf,
    pub log: Option<PathBuf>,
    /// Containers: more host directories bound read-write (host path,
    /// path inside), e.g. the activity directory.
    pub mounts: Vec<(PathBuf, String)>,
    /// Containers: host files bound read-only (host path, path inside):
    /// the agent's shared login, over its own state dir.
    pub read_only: Vec<(PathBuf, String)>,
    /// `worktree.setup` steps run before the agent (see `worktree::setup`).
    pub setup: Vec<String>,
    /// Containers: files placed in it before it starts, owned by root and
    /// read-only to the agent (path inside, contents), e.g. gemini's hook
    /// settings. Not with `resources.read_only_root`.
    pub files: Vec<(String, Vec<u8>)>,
    /// The agent's key, to be added outside the box by the credential
    /// broker (`None`: not brokered).
    pub credential: Option<Credential>,
    /// A subscription login kept out of a box with no credential brokered
    /// (no network): its login file becomes a placeholder.
    pub hidden_login: Option<OAuthLogin>,
    /// When the instance was created: its budget counts calls since then
    /// (not an earlier instance's of the same id).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// A clone instance: the project is a copy of this repository in a
    /// volume, and nothing of the host is mounted.
    pub clone: Option<&'a crate::state::registry::CloneInfo>,
}

/// A key the broker adds to the agent's calls: its API, the key itself
/// (memory only; for a subscription login the line the broker reads, with
/// the access token) and the upstream its calls go to.
#[derive(Debug, Clone)]
pub struct Credential {
    pub api: ApiKind,
    pub key: Secret,
    pub upstream: Upstream,
    /// A subscription login brokered instead of a key.
    pub oauth: Option<OAuthLogin>,
}

/// The agent's shared login file (host path, path inside the box, which
/// gets a placeholder file instead) and where its tokens are refreshed.
#[derive(Debug, Clone)]
pub struct OAuthLogin {
    pub file: PathBuf,
    pub inside: String,
    pub token_url: Upstream,
    /// Its access token is what the broker adds (else an API key is, and
    /// the login is only kept out of the box).
    pub brokered: bool,
}

/// Label naming the instance a container or network is for.
pub const INSTANCE_LABEL: &str = "ai.instance";
/// Container label naming the network made for it (removed with it).
pub const NETWORK_LABEL: &str = "ai.network";

/// A network a start makes before its containers (and removes again when
/// the start fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedNetwork {
    /// A bridge of the instance's own (reused when a crash left it).
    Own(OwnNetwork),
    /// An internal network with no way off it and no host address on it.
    Internal {
        name: String,
        labels: HashMap<String, String>,
    },
}

impl PlannedNetwork {
    pub fn name(&self) -> &str {
        match self {
            PlannedNetwork::Own(n) => &n.name,
            PlannedNetwork::Internal { name, .. } => name,
        }
    }
}

/// A volume a start makes before its containers (kept across starts,
/// removed with the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// What a container start creates, in order: the networks, then the
/// agent's container and its sidecars side by side.
#[derive(Debug, Clone, Default)]
pub struct LaunchPlan {
    pub agent: ContainerSpec,
    /// Placed in the agent's container before it starts (path inside,
    /// contents), owned by root, read-only to the agent. Best effort.
    pub files: Vec<(String, Vec<u8>)>,
    pub networks: Vec<PlannedNetwork>,
    /// Started alongside the agent (the egress proxy); removed with it.
    pub sidecars: Vec<ContainerSpec>,
    /// Written to a sidecar's standard input once it started (by
    /// container name): the broker's key, which is kept nowhere else.
    pub stdin: HashMap<String, Secret>,
    /// Made before the containers; a new one is removed again when the
    /// start fails.
    pub volumes: Vec<PlannedVolume>,
    /// A tar unpacked at `/` of the agent's container (into its volumes)
    /// before it starts: a clone instance's repository, on its first start.
    pub seed: Option<Vec<u8>>,
    /// A tar unpacked in a sidecar before it starts (by container name):
    /// the directory (in a volume it mounts) and the tar. An egress
    /// sidecar's rules and settings on an engine on another machine.
    pub sidecar_seeds: HashMap<String, (String, Vec<u8>)>,
    /// Files copied into the agent's container (into its volumes) before
    /// it starts, after `files` and `seed`, owned as each says: what a
    /// clone instance gets in place of a mount of the host.
    pub uploads: Vec<Upload>,
}

/// Files unpacked in the directory `at` of a container (one that exists
/// there: a volume's mount point).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    pub at: String,
    pub files: Vec<BoxFile>,
}

/// A regular file in an [`Upload`]: its name in the directory, contents,
/// owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxFile {
    pub name: String,
    pub data: Vec<u8>,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
}

impl BoxFile {
    /// Owned by the box's user (the caller's uid, as the container runs),
    /// private to it.
    pub fn private(name: &str, data: Vec<u8>) -> BoxFile {
        BoxFile {
            name: name.to_owned(),
            data,
            uid: u64::from(nix::unistd::getuid().as_raw()),
            gid: u64::from(nix::unistd::getgid().as_raw()),
            mode: 0o600,
        }
    }

    /// Owned by root, readable by all: settings the agent reads and may
    /// not change.
    pub fn root(name: &str, data: Vec<u8>) -> BoxFile {
        BoxFile {
            name: name.to_owned(),
            data,
            uid: 0,
            gid: 0,
            mode: 0o644,
        }
    }
}

impl Upload {
    /// The tar of the files, named relative to `at` (later ones of a name
    /// win, as the engine unpacks in order).
    pub fn tar(&self) -> std::io::Result<Vec<u8>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut tar = tar::Builder::new(Vec::new());
        for f in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(f.mode);
            h.set_uid(f.uid);
            h.set_gid(f.gid);
            h.set_mtime(now);
            h.set_size(f.data.len() as u64);
            tar.append_data(&mut h, &f.name, f.data.as_slice())?;
        }
        tar.into_inner()
    }
}
