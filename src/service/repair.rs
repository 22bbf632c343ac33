//! `registry repair`: the registry rebuilt from what runs.

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Status};
use crate::core::warning::Warnings;
use crate::engine::state::ContainerState;
use crate::lifecycle::docker::DockerEngine;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry, RuntimeKind};
use serde_json::json;

/// Rebuilds the registry from our labelled containers and live host
/// agents. A registry that does not parse is moved aside first, never lost.
/// Returns how many instances it recovered; says in `warnings` what it
/// moved aside and what it could not reach.
pub fn repair(ctx: &Ctx, warnings: &mut Warnings) -> Result<usize> {
    let path = ctx.dirs.registry();
    let old = match ctx.store.load() {
        Ok(r) => r,
        Err(Error::Corrupt { msg, .. }) => {
            let aside = path.with_extension(format!(
                "json.corrupt-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S")
            ));
            std::fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
            warnings.warn(format!(
                "moved the unreadable registry ({msg}) to {}",
                aside.display()
            ));
            Registry::default()
        }
        Err(e) => return Err(e),
    };
    let observed = match DockerEngine::connect() {
        Ok(e) => e.observe()?,
        Err(e) => {
            warnings.warn(format!(
                "ai-sessctl: warning: {e}; only host instances can be recovered"
            ));
            Default::default()
        }
    };
    let hosts = crate::lifecycle::host::scan();
    let home = ctx.dirs.home_label();
    let mut found = 0;
    ctx.store.update(|reg| {
        for (id, o) in &observed {
            // Containers of another state home (user) are theirs, not ours.
            if !o.belongs_to(&home) {
                continue;
            }
            let Ok(id) = InstanceId::parse(id) else {
                continue;
            };
            let l = |k: &str| o.labels.get(k).cloned().unwrap_or_default();
            let Ok(port) = l("ai.port").parse() else {
                continue;
            };
            let status = match o.state {
                ContainerState::Running => Status::Running,
                ContainerState::Paused => Status::Paused,
                _ => Status::Stopped,
            };
            let mut inst: Instance = match serde_json::from_value(json!({
                "id": id, "project_path": l("ai.project_path"), "project_name": l("ai.project"),
                "mode": l("ai.mode"), "status": status, "port": port,
            })) {
                Ok(i) => i,
                Err(_) => continue,
            };
            if let Some(prev) = old.get(&id).or(reg.get(&id)) {
                inst = Instance {
                    status,
                    port,
                    ..prev.clone()
                };
            }
            inst.container_id = Some(o.container_id.clone());
            inst.runtime = Some(RuntimeKind::Docker);
            inst.exit_code = o.exit_code;
            reg.instances.insert(id, inst);
            found += 1;
        }
        for (id, pid) in &hosts {
            let Ok(id) = InstanceId::parse(id) else {
                continue;
            };
            if let Some(prev) = old.get(&id).or(reg.get(&id)) {
                let mut inst = prev.clone();
                inst.status = Status::Running;
                inst.pid = Some(*pid);
                inst.pid_start_time = crate::core::procinfo::start_time(*pid);
                inst.runtime = Some(RuntimeKind::Host);
                reg.instances.insert(id, inst);
                found += 1;
            }
        }
        // Entries nothing backs any more are kept, marked stopped.
        for (id, inst) in &old.instances {
            reg.instances.entry(id.clone()).or_insert_with(|| {
                let mut i = inst.clone();
                if i.status.is_live() {
                    i.status = Status::Stopped;
                    i.status_reason = Some("not found during repair".into());
                }
                i
            });
        }
        Ok(())
    })?;
    ctx.events().log(
        crate::state::events::Level::Warn,
        "registry",
        "registry repaired",
        json!({"recovered": found}),
    );
    Ok(found)
}
