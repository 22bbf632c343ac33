//! What an egress policy changes about an instance's container, set up
//! before it is created: under `allowlist` and `none` an internal network
//! of its own (no route off it, no DNS forwarded out) and, for
//! `allowlist`, the proxy sidecar and the agent's proxy variables.

use super::{broker, sidecar};
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::engine::network::OwnNetwork;
use crate::engine::{Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::launch::{LaunchPlan, LaunchSpec, PlannedNetwork, PlannedVolume, INSTANCE_LABEL};
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
/// On an engine on another machine the sidecar's files are sent to a
/// volume of its own there (see [`super::remote`]); what cannot be sent is
/// refused before anything is made: a subscription login the broker
/// refreshes is a file of this machine, written back in place.
fn refuse_remote(spec: &LaunchSpec) -> Result<()> {
    let brokered_login = spec
        .credential
        .as_ref()
        .and_then(|c| c.oauth.as_ref())
        .is_some_and(|o| o.brokered);
    if !brokered_login {
        return Ok(());
    }
    let Some(why) = crate::engine::endpoint::current()
        .ok()
        .and_then(|e| e.mount_refusal())
    else {
        return Ok(());
    };
    Err(Error::Invalid(format!(
        "{why}: the credential broker refreshes the subscription login in its file on this \
         machine, which is not there; on that engine use an API key (brokered), or \
         agents.{mode}.credentials.mode = \"env\" or \"none\"",
        mode = spec.mode
    )))
}

pub fn contribute(engine: &Engine, spec: &LaunchSpec, plan: &mut LaunchPlan) -> Result<()> {
    let net = &spec.eff.settings.networking;
    let name = plan.agent.name.clone();
    if spec.credential.is_some() {
        refuse_remote(spec)?;
    }
    if net.egress != EgressPolicy::Open {
        plan.networks.clear();
        plan.agent.publish = None;
    }
    plan.agent
        .labels
        .insert(EGRESS_LABEL.to_owned(), net.egress.to_string());
    if net.egress == EgressPolicy::Open {
        // Nothing to confine: a sidecar only to broker the key, on the
        // agent's own network.
        let Some(cred) = &spec.credential else {
            plan.agent.labels.remove(EGRESS_LABEL);
            return Ok(());
        };
        let what = match &cred.oauth {
            Some(o) if o.brokered => "the subscription login's tokens".to_owned(),
            _ => cred.api.key_vars().join("/"),
        };
        if engine.is_podman() {
            // Its sidecar image is built from this binary, which Podman's
            // build API does not do as Docker's does.
            return Err(Error::Invalid(format!(
                "the credential broker keeps {what} out of the box in a sidecar that is not built on \
                 Podman yet: set agents.{}.credentials.mode = \"env\" to pass the credential into \
                 the box, or \"none\", or use a Docker engine",
                spec.mode
            )));
        }
        let Some(own) = plan.agent.network_mode.clone() else {
            return Err(Error::Invalid(format!(
                "the credential broker keeps {what} out of the box, and is reached on a network of \
                 the instance's own: set networking.mode = \"isolated\", or \
                 agents.{}.credentials.mode = \"env\" to put the credential in the box",
                spec.mode
            )));
        };
        let dirs = StateDir::new(PathBuf::from(&spec.home));
        super::write_rules(&dirs, spec.id, spec.eff)?;
        let mut sidecar = sidecar_of(engine, spec, &dirs, &name, own.clone(), None)?;
        sidecar.broker = Some(broker_of(spec, &dirs, cred, plan)?);
        send_files(engine, spec, &dirs, &sidecar, plan)?;
        plan.sidecars.push(sidecar::spec(&sidecar)?);
        plan.stdin.insert(sidecar.name.clone(), cred.key.clone());
        return Ok(());
    }
    if net.egress == EgressPolicy::None {
        // No network at all: no route, no DNS (Podman's aardvark forwards
        // queries out of an internal network), no IPv6 link-local to the
        // host; nothing published.
        plan.agent.network_mode = Some("none".to_owned());
        if let Some(o) = &spec.hidden_login {
            let dirs = StateDir::new(PathBuf::from(&spec.home));
            dirs.ensure_sub(&dirs.root().join("net"))?;
            crate::core::paths::ensure_private_dir(&super::net_dir(&dirs, spec.id))?;
            bind_placeholder_login(&dirs, spec, o, &broker::oauth::placeholder(), plan)?;
        }
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
    let dirs = StateDir::new(PathBuf::from(&spec.home));
    super::write_rules(&dirs, spec.id, spec.eff)?;
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
    let mut sidecar = sidecar_of(engine, spec, &dirs, &name, name.clone(), Some(outer))?;
    if let Some(cred) = &spec.credential {
        sidecar.broker = Some(broker_of(spec, &dirs, cred, plan)?);
        plan.stdin.insert(sidecar.name.clone(), cred.key.clone());
    }
    send_files(engine, spec, &dirs, &sidecar, plan)?;
    plan.sidecars.push(sidecar::spec(&sidecar)?);
    plan.agent.env.extend(sidecar::agent_env());
    Ok(())
}

/// On an engine on another machine: the sidecar's volume, made before it,
/// and its files (rules, broker settings, ledgers), unpacked in it before
/// it starts. Its volume goes with the instance (`rm`).
fn send_files(
    engine: &Engine,
    spec: &LaunchSpec,
    dirs: &StateDir,
    sidecar: &sidecar::Sidecar,
    plan: &mut LaunchPlan,
) -> Result<()> {
    let Some(volume) = &sidecar.volume else {
        return Ok(());
    };
    let fresh = !engine.volume_exists(volume)?;
    plan.volumes.push(PlannedVolume {
        name: volume.clone(),
        labels: HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), spec.home.clone()),
            (INSTANCE_LABEL.to_owned(), spec.id.to_string()),
            (super::remote::FOR_LABEL.to_owned(), spec.id.to_string()),
        ]),
    });
    plan.sidecar_seeds.insert(
        sidecar.name.clone(),
        (
            super::remote::MOUNT.to_owned(),
            super::remote::seed(dirs, spec.id, fresh)?,
        ),
    );
    Ok(())
}

/// The sidecar of the agent `name`, on `network` (with the agent); with
/// an `outer` network it is also the allowlisting proxy.
fn sidecar_of(
    engine: &Engine,
    spec: &LaunchSpec,
    dirs: &StateDir,
    name: &str,
    network: String,
    outer: Option<String>,
) -> Result<sidecar::Sidecar> {
    dirs.ensure_sub(&dirs.logs_dir())?;
    Ok(sidecar::Sidecar {
        name: sidecar_name(name),
        image: sidecar::image(engine, &spec.home)?,
        instance: spec.id.to_string(),
        agent: name.to_owned(),
        internal_network: network,
        outer_network: outer,
        port: spec.port,
        bind: spec.eff.settings.networking.bind,
        net_dir: super::net_dir(dirs, spec.id),
        logs_dir: dirs.logs_dir(),
        home: spec.home.clone(),
        broker: None,
        volume: super::remote::is_remote().then(|| super::remote::volume_name(name)),
    })
}

/// Sets up the broker for `cred`: its settings file (keeping the
/// instance's placeholder across starts, so the agent's memory of an
/// approved key holds), its ledger, and the agent's placeholder key and
/// base URL in place of the real ones.
fn broker_of(
    spec: &LaunchSpec,
    dirs: &StateDir,
    cred: &crate::launch::Credential,
    plan: &mut LaunchPlan,
) -> Result<sidecar::BrokerMounts> {
    let bearer = cred.oauth.as_ref().is_some_and(|o| o.brokered);
    let placeholder = broker::BrokerFile::read(&broker::settings::path(dirs, spec.id))
        .ok()
        .filter(|f| f.api == cred.api && f.oauth.is_some() == bearer)
        .map(|f| f.placeholder)
        .unwrap_or_else(|| match bearer {
            true => broker::oauth::placeholder(),
            false => broker::placeholder(cred.api),
        });
    let mut file = broker::BrokerFile::new(
        spec.id,
        spec.eff,
        cred.api,
        cred.upstream.clone(),
        placeholder.clone(),
        spec.created,
    );
    let login_dir = match &cred.oauth {
        Some(o) => {
            // With a key brokered, the box's login holds a token worth
            // nothing even at the broker.
            let token = match bearer {
                true => placeholder.clone(),
                false => broker::oauth::placeholder(),
            };
            placeholder_login(dirs, spec, o, &token, plan, &mut file)?
        }
        None => None,
    };
    file.write(dirs, spec.id)?;
    let meter = crate::state::spend::ledger::ensure(dirs, spec.id)?;
    let url = format!("http://{}:{}", sidecar::PROXY_ALIAS, broker::BROKER_PORT);
    // A login needs no key variable (one set would win over the login).
    if !bearer {
        for var in cred.api.key_vars().iter().take(1) {
            plan.agent.env.push(format!("{var}={placeholder}"));
        }
    }
    if let Some(var) = cred.api.base_url_var() {
        plan.agent.env.push(format!("{var}={url}"));
    }
    Ok(sidecar::BrokerMounts {
        meter,
        meter_all: dirs.meter_dir(),
        login_dir,
    })
}

/// Where the broker sees the shared login's directory (read-write: it
/// writes a refreshed pair back).
const LOGIN_MOUNT: &str = "/ai/login";

/// A subscription login: the box's login file becomes a placeholder one
/// (written in the instance's `net/<id>/`, bound read-only where the real
/// one was); when its token is the one brokered, the broker learns where
/// to refresh it, and gets the directory of the real one.
fn placeholder_login(
    dirs: &StateDir,
    spec: &LaunchSpec,
    o: &crate::launch::OAuthLogin,
    placeholder: &str,
    plan: &mut LaunchPlan,
    file: &mut broker::BrokerFile,
) -> Result<Option<PathBuf>> {
    let name = bind_placeholder_login(dirs, spec, o, placeholder, plan)?;
    if !o.brokered {
        return Ok(None);
    }
    file.oauth = Some(broker::settings::OAuthSettings {
        token_url: o.token_url.clone(),
        login: format!("{LOGIN_MOUNT}/{name}"),
    });
    o.file
        .parent()
        .map(|p| Some(p.to_path_buf()))
        .ok_or_else(|| Error::Invalid(format!("{}: no directory", o.file.display())))
}

/// Writes the placeholder login file of `o` (holding `token`) in the
/// instance's `net/<id>/` and binds it read-only where the real one was.
/// The login file's name.
fn bind_placeholder_login(
    dirs: &StateDir,
    spec: &LaunchSpec,
    o: &crate::launch::OAuthLogin,
    token: &str,
    plan: &mut LaunchPlan,
) -> Result<String> {
    let name = o
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let login = broker::oauth::Login::read(&o.file).ok_or_else(|| {
        Error::NotFound(format!(
            "the login {} is gone or changed meanwhile; start again",
            o.file.display()
        ))
    })?;
    let boxed = super::net_dir(dirs, spec.id).join(format!("login-{name}"));
    crate::core::paths::atomic_write(&boxed, &login.placeholder_file(token))?;
    let mut bound = false;
    for b in plan.agent.binds.iter_mut() {
        if b.target == o.inside {
            b.source = boxed.clone();
            b.read_only = true;
            bound = true;
        }
    }
    if !bound {
        plan.agent.binds.push(crate::engine::container::Bind {
            source: boxed,
            target: o.inside.clone(),
            read_only: true,
        });
    }
    Ok(name)
}

/// Before the agent's container `name` is removed (its sidecar ends once
/// it is gone): on an engine on another machine, what the sidecar wrote
/// is copied back into the state home.
pub fn before_removal(engine: &Engine, name: &str) {
    super::remote::pull_before_removal(engine, &sidecar_name(name));
}

/// Removes the sidecar and the networks of container `name` (each gone
/// already is fine).
/// `policy`: the agent's `ai.egress` label; under `open` the network is
/// the agent's own, left to its owner.
pub fn cleanup(engine: &Engine, name: &str, policy: &str) {
    let _ = engine.remove_container(&sidecar_name(name));
    if policy == EgressPolicy::Open.to_string() {
        return;
    }
    let _ = engine.remove_network(name);
    let _ = engine.remove_network(&outer_network_name(name));
}
