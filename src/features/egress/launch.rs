//! What an egress policy changes about an instance's container, set up
//! before it is created: under `allowlist` and `none` an internal network
//! of its own (no route off it, no DNS forwarded out) and, for
//! `allowlist`, the proxy sidecar and the agent's proxy variables.

use super::sidecar;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::engine::network::OwnNetwork;
use crate::engine::{Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::launch::{LaunchPlan, LaunchSpec, PlannedNetwork, INSTANCE_LABEL};
use crate::state::config::EgressPolicy;
use std::collections::HashMap;
use std::path::PathBuf;

/// Container label naming the egress network made for it (removed with it).
pub const EGRESS_LABEL: &str = "ai.egress";

pub fn sidecar_name(container: &str) -> String {
    format!("{container}-egress")
}

/// The network the sidecar of `container` reaches out through, unless
/// `networking.proxy_network` names one: its own, so that no other
/// container can reach the proxy or the agent's port it forwards.
pub fn outer_network_name(container: &str) -> String {
    format!("{container}-out")
}

/// Adds the policy of `spec` to the plan of its container: under
/// `allowlist` and `none` the agent leaves the network of its own for an
/// internal one (or none), publishes nothing, and resolves no names; under
/// `allowlist` the proxy sidecar joins the plan, with the network it
/// reaches out through.
pub fn contribute(engine: &Engine, spec: &LaunchSpec, plan: &mut LaunchPlan) -> Result<()> {
    let net = &spec.eff.settings.networking;
    if net.egress == EgressPolicy::Open {
        return Ok(());
    }
    let name = plan.agent.name.clone();
    plan.networks.clear();
    plan.agent.publish = None;
    plan.agent
        .labels
        .insert(EGRESS_LABEL.to_owned(), net.egress.to_string());
    if net.egress == EgressPolicy::None {
        // No network at all: no route, no DNS (Podman's aardvark forwards
        // queries out of an internal network), no IPv6 link-local to the
        // host; nothing published.
        plan.agent.network_mode = Some("none".to_owned());
        return Ok(());
    }
    if engine.is_podman() {
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
        (INSTANCE_LABEL.to_owned(), spec.id.to_string()),
    ]);
    plan.networks.push(PlannedNetwork::Internal {
        name: name.clone(),
        labels: labels.clone(),
    });
    plan.agent.network_mode = Some(name.clone());
    plan.agent.dns = Some(vec!["127.0.0.1".to_owned()]);
    if net.egress != EgressPolicy::Allowlist {
        return Ok(());
    }
    let dirs = StateDir::new(PathBuf::from(&spec.home));
    super::write_rules(&dirs, spec.id, spec.eff)?;
    dirs.ensure_sub(&dirs.logs_dir())?;
    let outer = if net.proxy_network.is_empty() {
        let outer = outer_network_name(&name);
        plan.networks.push(PlannedNetwork::Own(OwnNetwork {
            name: outer.clone(),
            internal: false,
            labels,
        }));
        outer
    } else {
        net.proxy_network.clone()
    };
    let sidecar = sidecar::Sidecar {
        name: sidecar_name(&name),
        image: sidecar::image(engine, &spec.home)?,
        instance: spec.id.to_string(),
        agent: name.clone(),
        internal_network: name,
        outer_network: outer,
        port: spec.port,
        bind: net.bind,
        net_dir: super::net_dir(&dirs, spec.id),
        logs_dir: dirs.logs_dir(),
        home: spec.home.clone(),
    };
    plan.sidecars.push(sidecar::spec(&sidecar)?);
    plan.agent.env.extend(sidecar::agent_env());
    Ok(())
}

/// Removes the sidecar and the networks of container `name` (each gone
/// already is fine).
pub fn cleanup(engine: &Engine, name: &str) {
    let _ = engine.remove_container(&sidecar_name(name));
    let _ = engine.remove_network(name);
    let _ = engine.remove_network(&outer_network_name(name));
}
