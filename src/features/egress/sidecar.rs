//! The egress proxy's sidecar container: an image built `FROM scratch`
//! from this very binary (plus the shared libraries it links, when it is
//! not static), nothing pulled; attached to the instance's internal
//! network (as `egress-proxy`) and to a normal one.

use crate::core::error::{Error, Result};
use crate::core::types::Port;
use crate::engine::container::{Bind, ContainerSpec, LogCap, Publish};
use crate::engine::image::Build;
use crate::engine::state::ContainerState;
use crate::engine::{Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The proxy's name on the instance's network, and its port.
pub const PROXY_ALIAS: &str = "egress-proxy";
pub const PROXY_PORT: u16 = 3128;
/// Label marking a sidecar (value: its instance id).
pub const ROLE_LABEL: &str = "ai.role";

/// Variables that send the agent's HTTP(S) through the proxy; both
/// spellings, as tools disagree on which they read.
pub fn agent_env() -> Vec<String> {
    let url = format!("http://{PROXY_ALIAS}:{PROXY_PORT}");
    let mut env = Vec::new();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.push(format!("{k}={url}"));
    }
    // The broker beside the proxy is reached directly.
    for k in ["NO_PROXY", "no_proxy"] {
        env.push(format!("{k}=localhost,127.0.0.1,{PROXY_ALIAS}"));
    }
    env
}

/// The binary the sidecar runs: `AI_SESSIONS_PROXY_BINARY` (a Linux build
/// of ai-sessctl, for hosts whose own binary is not one), else this one.
fn proxy_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AI_SESSIONS_PROXY_BINARY").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if !cfg!(target_os = "linux") {
        return Err(Error::Invalid(
            "networking.egress = \"allowlist\" runs ai-sessctl as the proxy inside a Linux container; \
             set AI_SESSIONS_PROXY_BINARY to a Linux build of ai-sessctl, or use egress = \"open\" or \"none\""
                .into(),
        ));
    }
    std::env::current_exe().map_err(|e| Error::Other(format!("own binary: {e}")))
}

/// The shared libraries `bin` needs (with the loader), as `ldd` lists
/// them; none for a static binary.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(bin).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The image tag for `bin`: changes whenever the binary does.
fn tag_for(bin: &Path) -> Result<String> {
    let m = std::fs::metadata(bin).map_err(|e| Error::io(bin, e))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.len(), m.modified().ok(), env!("CARGO_PKG_VERSION")).hash(&mut h);
    Ok(format!("ai-sessions-egress:{:016x}", h.finish()))
}

fn context(bin: &Path) -> Result<Vec<u8>> {
    let err = |e: std::io::Error| Error::Other(format!("egress proxy image context: {e}"));
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    // The engine refuses GNU sparse entries (header type S).
    tar.sparse(false);
    let dockerfile = format!(
        "FROM scratch\nLABEL {MANAGED_LABEL}={MANAGED_VALUE}\nCOPY rootfs/ /\nENTRYPOINT [\"/ai-sessctl\"]\n"
    );
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(err)?;
    tar.append_path_with_name(bin, "rootfs/ai-sessctl")
        .map_err(err)?;
    for lib in libraries(bin) {
        let name = Path::new("rootfs").join(lib.strip_prefix("/").unwrap_or(&lib));
        tar.append_path_with_name(&lib, name).map_err(err)?;
    }
    tar.into_inner().map_err(err)
}

/// The sidecar image, built once per binary, labelled with the state home
/// that built it (`home`, as its containers are): only that home prunes
/// it. Another home with the same binary uses it meanwhile (and builds it
/// again if it was pruned).
pub fn image(engine: &Engine, home: &str) -> Result<String> {
    let bin = proxy_binary()?;
    let tag = tag_for(&bin)?;
    if engine.image_exists(&tag)? {
        return Ok(tag);
    }
    let build = Build {
        tag: tag.clone(),
        labels: HashMap::from([(HOME_LABEL.to_owned(), home.to_owned())]),
        ..Build::default()
    };
    engine
        .build_image(context(&bin)?, &build, &mut |_| {})
        .map_err(|e| Error::Other(format!("building the egress proxy image {tag}: {e}")))?;
    // This home's images of earlier binaries (another home's, or one
    // without a home, made before the label, is not ours to remove).
    let repo = tag.split(':').next().unwrap_or(&tag);
    engine.prune_images(repo, &format!("{HOME_LABEL}={home}"), &tag);
    Ok(tag)
}

#[derive(Debug, Clone)]
pub struct Sidecar {
    /// The sidecar's container name.
    pub name: String,
    pub image: String,
    pub instance: String,
    /// The agent's container name (the proxy forwards to it, and exits
    /// once it no longer resolves).
    pub agent: String,
    /// The network it shares with the agent (the instance's internal one,
    /// or under `open` the agent's own), and, for the allowlisting proxy,
    /// the network out (`None`: a sidecar that only brokers keys).
    pub internal_network: String,
    pub outer_network: Option<String>,
    /// The instance's port, published here (the internal network has no
    /// published ports).
    pub port: Port,
    pub bind: IpAddr,
    pub net_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub home: String,
    /// The credential broker it also runs, with its ledger directories.
    pub broker: Option<BrokerMounts>,
    /// On an engine on another machine: the volume holding its files (see
    /// [`super::remote`]), in place of the mounts of the state home.
    pub volume: Option<String>,
}

/// The ledger of the instance (read-write) and of the home (read-only,
/// for the daily budget).
#[derive(Debug, Clone)]
pub struct BrokerMounts {
    pub meter: PathBuf,
    pub meter_all: PathBuf,
    /// The directory of the agent's shared login (a subscription login the
    /// broker refreshes), read-write at `/ai/login`.
    pub login_dir: Option<PathBuf>,
}

/// This machine's own addresses (every interface's but loopback, which the
/// proxy refuses anyway): with a local engine the sidecar reaches them
/// through its gateway, and with them every service listening on all
/// addresses.
fn machine_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Makes the proxy's own log directory, 0700 (the proxy may have loosened
/// it: it is its own; it never is a symlink, as only we write its parent).
pub(super) fn own_log_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let m = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !m.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// The sidecar's container: its rules read-only, a log directory of its
/// own, its address on the internal network only, the instance's port
/// published, and a way out through the outer network.
pub fn spec(s: &Sidecar) -> Result<ContainerSpec> {
    let own_log = crate::state::events::box_log_dir(&s.logs_dir, &s.instance);
    if s.volume.is_none() {
        own_log_dir(&own_log)?;
    }
    let mut cmd = vec![
        "net".to_owned(),
        "proxy".to_owned(),
        "--rules".to_owned(),
        "/ai/net/rules.json".to_owned(),
        "--events".to_owned(),
        format!("/ai/log/{}", crate::state::events::BOX_LOG),
        "--watch".to_owned(),
        s.agent.clone(),
    ];
    if s.outer_network.is_some() {
        cmd.extend([
            // Its address on the internal network only: nothing on the
            // outer network (the host, or others where `proxy_network` is
            // shared) can use the proxy.
            "--listen".to_owned(),
            format!("{PROXY_ALIAS}:{PROXY_PORT}"),
            "--forward".to_owned(),
            format!("{}={}:{}", s.port, s.agent, s.port),
        ]);
        for ip in machine_addresses() {
            cmd.push("--forbid".to_owned());
            cmd.push(ip.to_string());
        }
    }
    if s.broker.is_some() {
        cmd.extend([
            "--broker-settings".to_owned(),
            format!("/ai/net/{}", super::broker::settings::FILE),
            "--broker-listen".to_owned(),
            format!("{PROXY_ALIAS}:{}", super::broker::BROKER_PORT),
            "--meter".to_owned(),
            match s.volume {
                None => "/ai/meter".to_owned(),
                // Beside the others' copies in the volume.
                Some(_) => super::remote::ledger_inside(&s.instance),
            },
            "--meter-all".to_owned(),
            "/ai/meter-all".to_owned(),
        ]);
    }
    Ok(ContainerSpec {
        name: s.name.clone(),
        // One left by an earlier start of the instance is replaced.
        replace: true,
        image: s.image.clone(),
        cmd,
        labels: HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), s.home.clone()),
            (ROLE_LABEL.to_owned(), "egress-proxy".to_owned()),
            (super::remote::FOR_LABEL.to_owned(), s.instance.clone()),
        ]),
        // The proxy publishes the instance's port (its internal network
        // has none); under `open` the agent publishes its own.
        port: s.outer_network.is_some().then_some(s.port.get()),
        publish: s.outer_network.is_some().then_some(Publish {
            host_ip: s.bind,
            port: s.port.get(),
        }),
        network_mode: Some(s.internal_network.clone()),
        aliases: vec![PROXY_ALIAS.to_owned()],
        extra_networks: s.outer_network.iter().cloned().collect(),
        stdin_once: s.broker.is_some(),
        // On an engine on another machine it stays once ended, for what it
        // wrote to be copied back (it goes with its instance's container).
        auto_remove: s.volume.is_none(),
        read_only_root: true,
        memory: Some(64 << 20),
        pids_limit: Some(256),
        // Its stderr (a line per refusal it logs, at the log's rate) goes
        // to the engine's log of it, unbounded by default: capped like the
        // agent's, so a box refused for weeks fills no disk.
        log: Some(LogCap {
            max_size: 1 << 20,
            max_files: 1,
        }),
        // Its rules, read-only, and a directory of its own for its log:
        // nothing else of the state home (the host reads that directory as
        // the box's). On an engine on another machine: a volume instead.
        binds: match s.volume {
            Some(_) => Vec::new(),
            None => local_binds(s, &own_log),
        },
        volumes: s
            .volume
            .iter()
            .map(|v| (v.clone(), super::remote::MOUNT.to_owned()))
            .collect(),
        ..ContainerSpec::default()
    })
}

/// The sidecar's mounts of the state home, with a local engine.
fn local_binds(s: &Sidecar, own_log: &Path) -> Vec<Bind> {
    let bind = |source: &Path, target: &str, read_only: bool| Bind {
        source: source.to_path_buf(),
        target: target.to_owned(),
        read_only,
    };
    [
        bind(&s.net_dir, "/ai/net", true),
        bind(own_log, "/ai/log", false),
    ]
    .into_iter()
    .chain(s.broker.iter().flat_map(|b| {
        // Every ledger of the home read-only, its own read-write.
        [
            bind(&b.meter_all, "/ai/meter-all", true),
            bind(&b.meter, "/ai/meter", false),
        ]
        .into_iter()
        .chain(b.login_dir.iter().map(|d| bind(d, "/ai/login", false)))
    }))
    .collect()
}

/// The state of each sidecar of this state home, by the instance it serves
/// (`running`, `paused`, `exited`, …). One gone is not listed: it removes
/// itself when it ends.
pub fn observe(engine: &Engine) -> Result<HashMap<String, ContainerState>> {
    let home = crate::core::paths::StateDir::from_env()
        .ok()
        .map(|d| d.home_label());
    let mut labels = vec![
        format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
        format!("{ROLE_LABEL}=egress-proxy"),
    ];
    if let Some(h) = &home {
        labels.push(format!("{HOME_LABEL}={h}"));
    }
    let mut out = HashMap::new();
    for c in engine.list(&labels)? {
        let Some(inst) = c.labels.get("ai.egress-for").cloned() else {
            continue;
        };
        // A replaced one may linger a moment: a running one wins.
        if out.get(&inst).is_none_or(|s| *s != ContainerState::Running) {
            out.insert(inst, c.state);
        }
    }
    Ok(out)
}
