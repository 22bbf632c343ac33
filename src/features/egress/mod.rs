//! Egress policy: `networking.egress = open | allowlist | none`. Under
//! `allowlist` and `none` the instance sits on an internal network with no
//! route out; under `allowlist` a sidecar running `ai-sessctl net proxy`
//! (the only other member of that network) lets through what the rules
//! allow and logs every refusal.

pub mod broker;
pub mod launch;
pub mod proxy;
pub mod relay;
pub mod reload;
pub mod remote;
pub mod rules;
pub mod sidecar;

use crate::core::paths::StateDir;
use crate::core::types::InstanceId;
use crate::state::config::Effective;
use std::path::PathBuf;

/// The agent's allowlist: its built-in hosts plus every layer's `allow`.
pub fn allow_list(eff: &Effective) -> Vec<String> {
    let mut all = eff.agent.egress_allow.clone();
    for h in &eff.settings.networking.allow {
        if !all.contains(h) {
            all.push(h.clone());
        }
    }
    all
}

/// `net/<id>/`: the dir mounted (read-only) into the instance's proxy
/// (on an engine on another machine: sent to it, see [`remote`]).
pub fn net_dir(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    dirs.root().join("net").join(id.as_str())
}

pub fn rules_path(dirs: &StateDir, id: &InstanceId) -> PathBuf {
    net_dir(dirs, id).join("rules.json")
}

/// Writes the rules the instance's proxy enforces (it re-reads them).
pub fn write_rules(
    dirs: &StateDir,
    id: &InstanceId,
    eff: &Effective,
) -> crate::core::error::Result<()> {
    dirs.ensure_sub(&dirs.root().join("net"))?;
    crate::core::paths::ensure_private_dir(&net_dir(dirs, id))?;
    let allow = allow_list(eff);
    let file = rules::RuleFile {
        instance: id.to_string(),
        allow,
        deny: eff.settings.networking.deny.clone(),
        allow_private: eff.settings.networking.allow_private.clone(),
    };
    // Checked here so a bad rule fails the start, not the proxy.
    rules::RuleSet::from_file(&file)?;
    file.write(&rules_path(dirs, id))
}

/// The host runtime cannot confine an agent's network: a policy other
/// than `open` there is refused, never silently dropped.
pub fn check_runtime(
    eff: &Effective,
    kind: crate::state::registry::RuntimeKind,
) -> crate::core::error::Result<()> {
    let policy = eff.settings.networking.egress;
    if kind == crate::state::registry::RuntimeKind::Host
        && policy != crate::state::config::EgressPolicy::Open
    {
        return Err(crate::core::error::Error::Invalid(format!(
            "networking.egress = \"{policy}\" is enforced in containers only, and this instance would run on the host; build the image (`ai-sessctl image build`) or use --egress open"
        )));
    }
    Ok(())
}
