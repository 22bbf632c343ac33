//! What an egress policy changes about an instance's container, set up
//! before it is created: under `allowlist` and `none` an internal network
//! of its own (no route off it, no DNS forwarded out) and, for
//! `allowlist`, the proxy sidecar and the agent's proxy variables.

use super::sidecar;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::lifecycle::docker::{DockerEngine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::lifecycle::LaunchSpec;
use crate::state::config::EgressPolicy;
use bollard::models::NetworkCreateRequest;
use std::collections::HashMap;
use std::path::PathBuf;

/// Container label naming the egress network made for it (removed with it).
pub const EGRESS_LABEL: &str = "ai.egress";

#[derive(Debug, Default)]
pub struct Prepared {
    /// Added to the agent's environment.
    pub env: Vec<String>,
    /// The network to attach the agent to instead of the default.
    pub network: Option<String>,
    /// Upstream DNS for the agent: a dead end, so names are never resolved
    /// (or leaked) off the internal network.
    pub dns: Option<Vec<String>>,
    /// Whether the agent's own container publishes its port (else the
    /// sidecar does, or nothing can reach it).
    pub publish: bool,
    pub labels: Vec<(String, String)>,
    /// The proxy to start alongside the agent (`allowlist`).
    pub sidecar: Option<sidecar::Sidecar>,
}

pub fn sidecar_name(container: &str) -> String {
    format!("{container}-egress")
}

/// The network the sidecar of `container` reaches out through, unless
/// `networking.proxy_network` names one: its own, so that no other
/// container can reach the proxy or the agent's port it forwards.
pub fn outer_network_name(container: &str) -> String {
    format!("{container}-out")
}

/// Sets up the policy of `spec` for the container `name`.
pub fn prepare(engine: &DockerEngine, spec: &LaunchSpec, name: &str) -> Result<Prepared> {
    let net = &spec.eff.settings.networking;
    if net.egress == EgressPolicy::Open {
        return Ok(Prepared {
            publish: true,
            ..Prepared::default()
        });
    }
    if net.egress == EgressPolicy::None {
        // No network at all: no route, no DNS (Podman's aardvark forwards
        // queries out of an internal network), no IPv6 link-local to the
        // host; nothing published.
        return Ok(Prepared {
            network: Some("none".to_owned()),
            publish: false,
            labels: vec![(EGRESS_LABEL.to_owned(), net.egress.to_string())],
            ..Prepared::default()
        });
    }
    if is_podman(engine) {
        return Err(Error::Invalid(
            "networking.egress = \"allowlist\" cannot be enforced on Podman: its internal networks \
             forward DNS out (a tunnel around the proxy) and give the agent an IPv6 link-local way to \
             the host; use egress = \"none\" or \"open\" there, or a Docker engine"
                .into(),
        ));
    }
    let labels = HashMap::from([
        (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
        (HOME_LABEL.to_owned(), spec.home.clone()),
        ("ai.instance".to_owned(), spec.id.to_string()),
    ]);
    create_internal_network(engine, name, labels.clone())?;
    let mut out = Prepared {
        network: Some(name.to_owned()),
        dns: Some(vec!["127.0.0.1".to_owned()]),
        publish: false,
        labels: vec![(EGRESS_LABEL.to_owned(), net.egress.to_string())],
        ..Prepared::default()
    };
    if net.egress == EgressPolicy::Allowlist {
        let dirs = StateDir::new(PathBuf::from(&spec.home));
        let planned = (|| {
            super::write_rules(&dirs, spec.id, spec.eff)?;
            dirs.ensure_sub(&dirs.logs_dir())?;
            let outer = if net.proxy_network.is_empty() {
                let outer = outer_network_name(name);
                create_outer_network(engine, &outer, labels)?;
                outer
            } else {
                net.proxy_network.clone()
            };
            Ok::<_, Error>(sidecar::Sidecar {
                name: sidecar_name(name),
                image: sidecar::image(engine, &spec.home)?,
                instance: spec.id.to_string(),
                agent: name.to_owned(),
                internal_network: name.to_owned(),
                outer_network: outer,
                port: spec.port,
                bind: net.bind,
                net_dir: super::net_dir(&dirs, spec.id),
                logs_dir: dirs.logs_dir(),
                home: spec.home.clone(),
            })
        })();
        match planned {
            Ok(s) => out.sidecar = Some(s),
            Err(e) => {
                cleanup(engine, name);
                return Err(e);
            }
        }
        out.env = sidecar::agent_env();
    }
    Ok(out)
}

/// Whether the engine is Podman (its version lists a "Podman Engine").
fn is_podman(engine: &DockerEngine) -> bool {
    engine
        .block_on(engine.client().version())
        .ok()
        .and_then(|v| v.components)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.name.to_ascii_lowercase().contains("podman"))
        })
}

/// The Docker bridge option that keeps the host's address off a network.
const NO_HOST_ADDRESS: &str = "com.docker.network.bridge.inhibit_ipv4";

fn create_internal_network(
    engine: &DockerEngine,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<()> {
    let req = |no_host: bool| NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        internal: Some(true),
        // An internal bridge still gives the host an address on it, and
        // through it every host port (and the host's other addresses):
        // no address, no way to the host.
        options: no_host.then(|| HashMap::from([(NO_HOST_ADDRESS.to_owned(), "true".to_owned())])),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    engine.block_on(async {
        // The engine creates networks one at a time: wait as for our own.
        let client = &crate::engine::network::queued(engine.client());
        let mut created = crate::engine::subnet::create_network(client, req(true)).await?;
        // Podman (netavark) knows no such option and refuses it; its
        // internal network still has no route out (see SECURITY.md).
        if let Err(bollard::errors::Error::DockerResponseServerError { message, .. }) = &created {
            if message.contains(NO_HOST_ADDRESS) {
                created = crate::engine::subnet::create_network(client, req(false)).await?;
            }
        }
        match created {
            Ok(_) => Ok(()),
            // Left by an earlier start of this instance: reuse it only if
            // it is internal.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                let n = engine
                    .client()
                    .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
                    .await
                    .map_err(|e| Error::Engine(format!("inspect network {name}: {e}")))?;
                // Ours (this home's, managed), internal, and with no host
                // address on it: anything less is a way out or to the host.
                let theirs = n.labels.unwrap_or_default();
                let ours = [HOME_LABEL, MANAGED_LABEL]
                    .iter()
                    .all(|k| theirs.contains_key(*k) && theirs.get(*k) == labels.get(*k));
                let no_host = n
                    .options
                    .unwrap_or_default()
                    .get(NO_HOST_ADDRESS)
                    .is_some_and(|v| v == "true");
                if n.internal == Some(true) && ours && no_host {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!(
                        "network {name} exists and is not an internal network of this state home without a host address; remove it (`docker network rm {name}`) and start again"
                    )))
                }
            }
            Err(e) => Err(Error::Engine(format!("create network {name}: {e}"))),
        }
    })
}

/// The sidecar's own way out: a plain bridge (with a route off the host)
/// that only the sidecar joins. One left by an earlier start is reused if
/// it is this home's.
fn create_outer_network(
    engine: &DockerEngine,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<()> {
    let net = crate::engine::network::OwnNetwork {
        name: name.to_owned(),
        internal: false,
        labels,
    };
    engine.block_on(crate::engine::network::ensure(engine.client(), &net))
}

/// Removes the sidecar and the networks of container `name` (each gone
/// already is fine).
pub fn cleanup(engine: &DockerEngine, name: &str) {
    sidecar::remove(engine, &sidecar_name(name));
    let _ = engine.block_on(engine.client().remove_network(name));
    let _ = engine.block_on(engine.client().remove_network(&outer_network_name(name)));
}
