//! Networks: made on a free subnet of their own, labelled, reused when a
//! crash left them, removed when nothing uses them.

use super::{api_err, is_404, Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::core::error::{Error, Result};
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters as q;
use bollard::Docker;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnNetwork {
    pub name: String,
    /// No route off the network (for an egress policy with a proxy).
    pub internal: bool,
    pub labels: HashMap<String, String>,
}

/// Creates the network. One of ours that is still there (its container
/// was removed behind our back, or a start crashed) is reused: engines
/// before API 1.44 accept a second network of the same name, which makes
/// the name ambiguous, so look first. A network of that name that is not
/// ours is an error.
pub async fn ensure(docker: &Docker, net: &OwnNetwork) -> Result<()> {
    match ensure_once(docker, net).await {
        // The engine may have made it after all (a create is not undone
        // when its caller stops waiting), or the connection broke: asking
        // again looks first, so it never makes a second one.
        Err(Error::EngineTimeout(_) | Error::Engine(_)) => ensure_once(docker, net).await,
        done => done,
    }
}

async fn ensure_once(docker: &Docker, net: &OwnNetwork) -> Result<()> {
    let after = super::read_timeout();
    let inspected = tokio::time::timeout(
        after,
        docker.inspect_network(&net.name, None::<q::InspectNetworkOptions>),
    )
    .await
    .map_err(|_| super::timeout_error("inspect network", after))?;
    match inspected {
        Ok(existing) => {
            let labels = existing.labels.unwrap_or_default();
            return if labels.get(HOME_LABEL) == net.labels.get(HOME_LABEL)
                && labels.get(MANAGED_LABEL).map(String::as_str) == Some(MANAGED_VALUE)
            {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "network {} exists and is not this state home's; remove it or start with another --id",
                    net.name
                )))
            };
        }
        Err(e) if is_404(&e) => {}
        Err(e) if is_ambiguous(&e) => return keep_one(docker, net).await,
        Err(e) => return Err(api_err("inspect network", e)),
    }
    let req = NetworkCreateRequest {
        name: net.name.clone(),
        driver: Some("bridge".to_owned()),
        internal: Some(net.internal),
        labels: Some(net.labels.clone()),
        ..Default::default()
    };
    super::subnet::create_network(docker, req)
        .await?
        .map_err(|e| api_err("create network", e))
}

/// Engines before API 1.44 create a second network of a name that exists
/// (a start killed while its create was under way, then started again):
/// the name is then ambiguous and no container can join it.
fn is_ambiguous(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 400, message }
            if message.contains("ambiguous")
    )
}

/// Of several networks named `net.name`, all ours, keeps the one in use
/// (else the oldest) and removes the others.
async fn remove_call(docker: &Docker, id: &str) -> std::result::Result<(), bollard::errors::Error> {
    let after = super::call_timeout();
    tokio::time::timeout(after, docker.remove_network(id))
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
}

async fn keep_one(docker: &Docker, net: &OwnNetwork) -> Result<()> {
    let mut same = Vec::new();
    for n in named(docker, &net.name).await? {
        let Some(id) = n.id else { continue };
        let labels = n.labels.unwrap_or_default();
        if labels.get(HOME_LABEL) != net.labels.get(HOME_LABEL)
            || labels.get(MANAGED_LABEL).map(String::as_str) != Some(MANAGED_VALUE)
        {
            return Err(Error::Invalid(format!(
                "network {} exists and is not this state home's; remove it or start with another --id",
                net.name
            )));
        }
        // The listing does not say which containers are attached.
        let in_use = docker
            .inspect_network(&id, None::<q::InspectNetworkOptions>)
            .await
            .ok()
            .and_then(|d| d.containers)
            .is_some_and(|c| !c.is_empty());
        same.push((!in_use, n.created.unwrap_or_default(), id));
    }
    same.sort();
    for (_, _, id) in same.iter().skip(1) {
        remove_call(docker, id).await.or_else(|e| {
            if is_404(&e) {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "network {} exists more than once and one of them cannot be removed ({}); remove the extra ones with `docker network rm`",
                    net.name,
                    api_err("remove network", e)
                )))
            }
        })?;
    }
    Ok(())
}

/// The networks named exactly `name`.
async fn named(docker: &Docker, name: &str) -> Result<Vec<bollard::models::Network>> {
    let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
    let listed = docker
        .list_networks(Some(q::ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| api_err("list networks", e))?;
    // The filter matches on part of the name.
    Ok(listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect())
}

/// Removes a network; gone already, or still in use (by a container that
/// is not ours to remove), is left as it is.
pub async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let after = super::call_timeout();
    let removed = tokio::time::timeout(after, docker.remove_network(name))
        .await
        .map_err(|_| super::timeout_error("remove network", after))?;
    match removed {
        Ok(()) => Ok(()),
        Err(e) if is_ambiguous(&e) => {
            for id in named(docker, name).await?.into_iter().filter_map(|n| n.id) {
                Box::pin(remove(docker, &id)).await?;
            }
            Ok(())
        }
        Err(e) if is_404(&e) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 403 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(api_err("remove network", e)),
    }
}

/// Networks of this state home with no container attached, with their
/// labels: left by a crash, or made by a start that has not attached its
/// container yet (the caller tells them apart).
pub async fn unused(docker: &Docker, home: &str) -> Result<Vec<(String, HashMap<String, String>)>> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
            format!("{HOME_LABEL}={home}"),
        ],
    )]);
    let nets = docker
        .list_networks(Some(q::ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| api_err("list networks", e))?;
    let mut out = Vec::new();
    for n in nets {
        let Some(name) = n.name else { continue };
        // The listing does not say which containers are attached.
        let detail = docker
            .inspect_network(&name, None::<q::InspectNetworkOptions>)
            .await;
        if let Ok(d) = detail {
            if d.containers.unwrap_or_default().is_empty() {
                out.push((name, d.labels.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}

/// The Docker bridge option that keeps the host's address off a network.
const NO_HOST_ADDRESS: &str = "com.docker.network.bridge.inhibit_ipv4";

impl Engine {
    /// Creates `net`, or reuses one of ours a crash left (see [`ensure`]).
    pub async fn ensure_network(&self, net: &OwnNetwork) -> Result<()> {
        ensure(&self.docker, net).await
    }

    /// Whether network `name` exists (or the engine cannot say).
    pub fn network_exists(&self, name: &str) -> bool {
        !matches!(self.network_containers(name), Err(Error::NotFound(_)))
    }

    /// Whether network `name` has a container on it (or the engine cannot
    /// say: then it counts as used). A network that is gone is not.
    pub fn network_in_use(&self, name: &str) -> bool {
        match self.network_containers(name) {
            Ok(n) => n > 0,
            Err(Error::NotFound(_)) => false,
            Err(_) => true,
        }
    }

    /// How many containers network `name` has.
    fn network_containers(&self, name: &str) -> Result<usize> {
        let n = self.block_on(Self::timed(
            "inspect network",
            self.docker
                .inspect_network(name, None::<q::InspectNetworkOptions>),
        ))?;
        Ok(n.containers.map_or(0, |c| c.len()))
    }

    /// This state home's networks that no container uses, with their labels.
    pub fn unused_networks(&self, home: &str) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.block_on(unused(&self.docker, home))
    }

    /// Removes a network (gone already or still in use: left alone).
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.block_on(remove(&self.docker, name))
    }

    pub async fn remove_network_async(&self, name: &str) -> Result<()> {
        remove(&self.docker, name).await
    }

    /// Creates an internal network `name` (no route off it) that gives the
    /// host no address on it: an internal bridge still does, and through it
    /// every host port. One left by an earlier start is reused only if it
    /// is the same: internal, labelled with the same home, no host address.
    pub async fn ensure_internal_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<()> {
        let req = |no_host: bool| NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            internal: Some(true),
            options: no_host
                .then(|| HashMap::from([(NO_HOST_ADDRESS.to_owned(), "true".to_owned())])),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let client = &self.docker;
        let mut created = super::subnet::create_network(client, req(true)).await?;
        // Podman (netavark) knows no such option and refuses it; its
        // internal network still has no route out (see SECURITY.md).
        if let Err(bollard::errors::Error::DockerResponseServerError { message, .. }) = &created {
            if message.contains(NO_HOST_ADDRESS) {
                created = super::subnet::create_network(client, req(false)).await?;
            }
        }
        match created {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => self.check_internal(name, labels).await,
            Err(e) => Err(super::error(format!("create network {name}: {e}"))),
        }
    }

    /// Whether the existing network `name` is ours (this home's, managed),
    /// internal, and with no host address on it: anything less is a way
    /// out or to the host.
    async fn check_internal(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        let n = self
            .docker
            .inspect_network(name, None::<q::InspectNetworkOptions>)
            .await
            .map_err(|e| super::error(format!("inspect network {name}: {e}")))?;
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
}
