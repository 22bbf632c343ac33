//! The egress proxy's sidecar container: an image built `FROM scratch`
//! from this very binary (plus the shared libraries it links, when it is
//! not static), nothing pulled; attached to the instance's internal
//! network (as `egress-proxy`) and to a normal one.

use crate::core::error::{Error, Result};
use crate::core::types::Port;
use crate::lifecycle::docker::{DockerEngine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkConnectRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters as q;
use futures_util::StreamExt;
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
    for k in ["NO_PROXY", "no_proxy"] {
        env.push(format!("{k}=localhost,127.0.0.1"));
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
pub fn image(engine: &DockerEngine, home: &str) -> Result<String> {
    let bin = proxy_binary()?;
    let tag = tag_for(&bin)?;
    if engine.image_exists(&tag)? {
        return Ok(tag);
    }
    let tar = context(&bin)?;
    let labels = HashMap::from([(HOME_LABEL, home)]);
    let opts = q::BuildImageOptionsBuilder::new()
        .t(&tag)
        .rm(true)
        .labels(&labels)
        .build();
    engine.block_on(async {
        let body = bollard::body_full(tar.into());
        let mut stream = engine.client().build_image(opts, None, Some(body));
        while let Some(item) = stream.next().await {
            let info = item
                .map_err(|e| Error::Other(format!("building the egress proxy image {tag}: {e}")))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::Other(format!(
                    "building the egress proxy image {tag}: {e}"
                )));
            }
        }
        Ok(())
    })?;
    prune_old_images(engine, &tag, home);
    Ok(tag)
}

/// Removes this home's images of earlier binaries (one in use stays: no
/// force). Another home's, or one without a home (made before the label),
/// is not ours to remove.
fn prune_old_images(engine: &DockerEngine, keep: &str, home: &str) {
    let repo = keep.split(':').next().unwrap_or(keep);
    let filters = HashMap::from([
        ("reference".to_owned(), vec![repo.to_owned()]),
        ("label".to_owned(), vec![format!("{HOME_LABEL}={home}")]),
    ]);
    let opts = q::ListImagesOptionsBuilder::new().filters(&filters).build();
    engine.block_on(async {
        let Ok(images) = engine.client().list_images(Some(opts)).await else {
            return;
        };
        for img in images {
            // The engine's filter, checked again: an image untagged here is
            // gone for whoever else used it.
            let ours = img.labels.get(HOME_LABEL).map(String::as_str) == Some(home);
            if !ours || img.repo_tags.iter().any(|t| t == keep) {
                continue;
            }
            for t in &img.repo_tags {
                let _ = engine
                    .client()
                    .remove_image(t, None::<q::RemoveImageOptions>, None)
                    .await;
            }
        }
    });
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
    /// The instance's internal network, and the network out.
    pub internal_network: String,
    pub outer_network: String,
    /// The instance's port, published here (the internal network has no
    /// published ports).
    pub port: Port,
    pub bind: IpAddr,
    pub net_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub home: String,
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
fn own_log_dir(dir: &Path) -> Result<()> {
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

/// Creates and starts the sidecar; returns its container id. A sidecar
/// left from an earlier start of the instance is replaced. Async, so that
/// it runs alongside the agent's own create and start.
pub async fn start(docker: &bollard::Docker, s: &Sidecar) -> Result<String> {
    let image = s.image.clone();
    let own_log = crate::state::events::box_log_dir(&s.logs_dir, &s.instance);
    own_log_dir(&own_log)?;
    let port_key = format!("{}/tcp", s.port);
    let bind = |src: &Path, dst: &str, ro: bool| Mount {
        source: Some(src.to_string_lossy().into_owned()),
        target: Some(dst.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(ro),
        ..Default::default()
    };
    let cmd = vec![
        "net".to_owned(),
        "proxy".to_owned(),
        "--rules".to_owned(),
        "/ai/net/rules.json".to_owned(),
        "--events".to_owned(),
        format!("/ai/log/{}", crate::state::events::BOX_LOG),
        // Its address on the internal network only: nothing on the outer
        // network (the host, or others where `proxy_network` is shared)
        // can use the proxy.
        "--listen".to_owned(),
        format!("{PROXY_ALIAS}:{PROXY_PORT}"),
        "--watch".to_owned(),
        s.agent.clone(),
        "--forward".to_owned(),
        format!("{}={}:{}", s.port, s.agent, s.port),
    ];
    let mut cmd = cmd;
    for ip in machine_addresses() {
        cmd.push("--forbid".to_owned());
        cmd.push(ip.to_string());
    }
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(cmd),
        labels: Some(HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), s.home.clone()),
            (ROLE_LABEL.to_owned(), "egress-proxy".to_owned()),
            ("ai.egress-for".to_owned(), s.instance.clone()),
        ])),
        user: Some(format!(
            "{}:{}",
            nix::unistd::getuid(),
            nix::unistd::getgid()
        )),
        exposed_ports: Some(vec![port_key.clone()]),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                s.internal_network.clone(),
                EndpointSettings {
                    aliases: Some(vec![PROXY_ALIAS.to_owned()]),
                    ..Default::default()
                },
            )])),
        }),
        host_config: Some(HostConfig {
            network_mode: Some(s.internal_network.clone()),
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(s.bind.to_string()),
                    host_port: Some(s.port.to_string()),
                }]),
            )])),
            auto_remove: Some(true),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            memory: Some(64 << 20),
            pids_limit: Some(256),
            // Its stderr (a line per refusal it logs, at the log's rate)
            // goes to the engine's log of it, unbounded by default: capped
            // like the agent's, so a box refused for weeks fills no disk.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "1m".to_owned()),
                    ("max-file".to_owned(), "1".to_owned()),
                ])),
            }),
            // Its rules, read-only, and a directory of its own for its log:
            // nothing else of the state home (the host reads that
            // directory as the box's).
            mounts: Some(vec![
                bind(&s.net_dir, "/ai/net", true),
                bind(&own_log, "/ai/log", false),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    {
        let _ = docker
            .remove_container(
                &s.name,
                Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let api = |what: &'static str| {
            move |e: bollard::errors::Error| Error::Engine(format!("egress proxy: {what}: {e}"))
        };
        let created = docker
            .create_container(
                Some(
                    q::CreateContainerOptionsBuilder::new()
                        .name(&s.name)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(api("create"))?;
        let started = async {
            docker
                .connect_network(
                    &s.outer_network,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(api("connect to the outer network"))?;
            docker
                .start_container(&created.id, None::<q::StartContainerOptions>)
                .await
                .map_err(api("start"))
        }
        .await;
        if let Err(e) = started {
            let _ = docker
                .remove_container(
                    &created.id,
                    Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
            return Err(e);
        }
        Ok(created.id)
    }
}

/// Removes an instance's sidecar (gone already is fine).
pub fn remove(engine: &DockerEngine, name: &str) {
    let _ = engine.block_on(engine.client().remove_container(
        name,
        Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
    ));
}

/// The state of each sidecar of this state home, by the instance it serves
/// (`running`, `paused`, `exited`, …). One gone is not listed: it removes
/// itself when it ends.
pub fn observe(
    engine: &DockerEngine,
) -> Result<HashMap<String, crate::engine::state::ContainerState>> {
    let home = crate::core::paths::StateDir::from_env()
        .ok()
        .map(|d| crate::lifecycle::docker::home_label(&d));
    let mut labels = vec![
        format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
        format!("{ROLE_LABEL}=egress-proxy"),
    ];
    if let Some(h) = &home {
        labels.push(format!("{HOME_LABEL}={h}"));
    }
    let filters = HashMap::from([("label".to_owned(), labels)]);
    let list = engine
        .block_on(
            engine.client().list_containers(Some(
                q::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            )),
        )
        .map_err(|e| Error::Engine(format!("list egress proxies: {e}")))?;
    let mut out = HashMap::new();
    for c in list {
        let Some(inst) = c.labels.and_then(|mut l| l.remove("ai.egress-for")) else {
            continue;
        };
        let state = c
            .state
            .map(|s| crate::engine::state::ContainerState::parse(s.as_ref()))
            .unwrap_or_default();
        // A replaced one may linger a moment: a running one wins.
        if out
            .get(&inst)
            .is_none_or(|s| *s != crate::engine::state::ContainerState::Running)
        {
            out.insert(inst, state);
        }
    }
    Ok(out)
}
