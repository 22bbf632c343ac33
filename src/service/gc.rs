//! `gc`: removes stopped entries older than `log_retention`, stale port
//! reservations, containers labelled ours that the registry does not know
//! (or the ended one of a stopped entry that a batch's reaper did not get to),
//! networks no container uses, login containers whose `login` is gone,
//! and the spend ledgers (`meter/<id>/`) of instances no longer registered
//! once their newest call is older than [`LEDGER_KEEP`] (until then they
//! count toward the daily budget and show in `spend` as removed).

use crate::core::error::Result;
use crate::core::types::{InstanceId, Status};
use crate::lifecycle::docker::DockerEngine;
use crate::state::context::Ctx;
use crate::state::registry::Registry;

/// What a `gc` removed (or, dry, would remove).
#[derive(Debug, Default)]
pub struct Collected {
    /// Login containers whose `login` was killed (they are not instances).
    pub logins: Vec<String>,
    /// Containers a killed `fetch` copied a clone's repository through.
    pub fetches: Vec<String>,
    /// Registry entries.
    pub entries: Vec<InstanceId>,
    /// Containers the registry does not know: (instance id, container id).
    pub containers: Vec<(String, String)>,
    /// Networks no container used (never in a dry run).
    pub networks: Vec<String>,
    /// Spend ledgers of instances no longer registered, by instance id.
    pub ledgers: Vec<String>,
    /// Volumes of instances no longer registered (a clone's state, its
    /// activity, its sidecar's; never in a dry run).
    pub volumes: Vec<String>,
    /// Repository volumes of clone instances no longer registered, kept:
    /// (volume, instance id). The agent's work may be there unfetched (a
    /// registry lost or repaired forgets a stopped clone).
    pub kept_volumes: Vec<(String, String)>,
}

/// How long the ledger of a removed instance is kept after its newest
/// call: past the daily budget's day, and a day more to look at it.
pub const LEDGER_KEEP: chrono::Duration = chrono::Duration::days(2);

/// Ledgers of instances `reg` does not hold (or that are `removing`) whose
/// newest call (or, without a readable call, the ledger directory's last
/// change) is older than [`LEDGER_KEEP`].
fn stale_ledgers(ctx: &Ctx, reg: &Registry, removing: &[InstanceId]) -> Vec<String> {
    let cutoff = chrono::Utc::now() - LEDGER_KEEP;
    crate::state::spend::ledger::read_all(&ctx.dirs)
        .into_iter()
        .filter(|(id, _)| {
            InstanceId::parse(id).is_ok_and(|i| reg.get(&i).is_none() || removing.contains(&i))
        })
        .filter(|(id, records)| {
            let newest = records.iter().map(|r| r.ts).max().or_else(|| {
                let dir = ctx.dirs.meter_dir().join(id);
                let changed = std::fs::symlink_metadata(&dir).and_then(|m| m.modified());
                changed.ok().map(chrono::DateTime::<chrono::Utc>::from)
            });
            newest.is_none_or(|t| t < cutoff)
        })
        .map(|(id, _)| id)
        .collect()
}

/// After the entries went: their ledgers are judged as any removed
/// instance's (a start registers before its broker writes).
fn remove_stale_ledgers(ctx: &Ctx) -> Result<Vec<String>> {
    let ledgers = stale_ledgers(ctx, &ctx.store.load()?, &[]);
    for id in &ledgers {
        let _ = std::fs::remove_dir_all(ctx.dirs.meter_dir().join(id));
    }
    Ok(ledgers)
}

/// Removes the networks of `idle` (no container uses them) that no start
/// under way made or took and is about to attach its container to (under
/// the registry lock, as `reg`); the pool keeps its ready ones.
fn reap_networks(
    ctx: &Ctx,
    engine: &DockerEngine,
    reg: &Registry,
    idle: &[(String, Option<String>)],
) -> Result<Vec<String>> {
    let starting = |id: &str| {
        reg.instances
            .values()
            .any(|i| i.id.as_str() == id && i.status == Status::Initializing)
    };
    let (pooled, own): (Vec<_>, Vec<_>) = idle
        .iter()
        .partition(|(net, _)| crate::lifecycle::pool::is_pool_network(net));
    let pooled: Vec<String> = pooled.into_iter().map(|(n, _)| n.clone()).collect();
    let mut removed = crate::lifecycle::pool::reap(&ctx.dirs, engine, &pooled, starting)?;
    for (net, inst) in own {
        if !inst.as_deref().is_some_and(starting) {
            engine.remove_network(net)?;
            removed.push(net.clone());
        }
    }
    Ok(removed)
}

/// Whether `o` is the ended container of the stopped entry `i` that a
/// batch's reaper was to remove (killed before it did): its output was
/// kept when it stopped. One kept on purpose (`auto_cleanup = false`)
/// stays.
fn left_by_reaper(
    ctx: &Ctx,
    i: &crate::state::registry::Instance,
    o: &crate::lifecycle::Observed,
) -> bool {
    use crate::engine::state::ContainerState;
    !i.status.is_live()
        && matches!(o.state, ContainerState::Exited | ContainerState::Dead)
        && ctx
            .effective(&i.id)
            .map_or(true, |e| e.settings.global.auto_cleanup)
}

pub fn gc(ctx: &Ctx, dry_run: bool) -> Result<Collected> {
    let settings = ctx.global()?;
    let reg = crate::lifecycle::refresh(ctx)?;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(settings.global.log_retention.0).unwrap_or_default();
    let old: Vec<InstanceId> = reg
        .instances
        .values()
        .filter(|i| !i.status.is_live())
        .filter(|i| {
            i.timestamps
                .stopped
                .or(i.timestamps.created)
                .is_none_or(|t| t < cutoff)
        })
        .map(|i| i.id.clone())
        .collect();
    crate::engine::set_call_timeout(settings.global.engine_timeout.0);
    let engine = DockerEngine::connect().ok();
    let home = ctx.dirs.home_label();
    // The listing is taken first and the strays decided from the registry
    // under its lock: a start registers its instance before it creates the
    // container, so every container in the listing that a start made is
    // known to the registry read after it (and no start records meanwhile).
    let observed = match &engine {
        Some(e) => e.observe()?,
        None => Default::default(),
    };
    let strays_in = |reg: &Registry| -> Vec<(String, String)> {
        observed
            .iter()
            // Another state home's instances are not strays of ours.
            .filter(|(_, o)| o.belongs_to(&home))
            .filter(|(id, o)| {
                reg.instances
                    .values()
                    .find(|i| i.id.as_str() == id.as_str())
                    .is_none_or(|i| {
                        // A start in progress has no container id recorded yet.
                        i.status != Status::Initializing
                            && (i.container_id.as_deref() != Some(&o.container_id)
                                || left_by_reaper(ctx, i, o))
                    })
            })
            .map(|(id, o)| (id.clone(), o.container_id.clone()))
            .collect()
    };
    let (logins, fetches) = match &engine {
        Some(e) => reap_scratch(ctx, e, &home, dry_run)?,
        None => Default::default(),
    };
    if dry_run {
        let reg = ctx.store.load()?;
        return Ok(Collected {
            logins,
            fetches,
            containers: strays_in(&reg),
            ledgers: stale_ledgers(ctx, &reg, &old),
            entries: old,
            ..Collected::default()
        });
    }
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    // Networks no container uses, listed first like the containers.
    let idle_nets = match &engine {
        Some(e) => e.unused_instance_networks(&home)?,
        None => Vec::new(),
    };
    let mut networks = Vec::new();
    let containers = ctx.store.update(|reg| {
        let strays = strays_in(reg);
        if let Some(engine) = &engine {
            for (_, cid) in &strays {
                engine.remove(cid, None)?;
            }
            networks = reap_networks(ctx, engine, reg, &idle_nets)?;
        }
        for id in &old {
            if reg.get(id).is_some_and(|i| !i.status.is_live()) {
                reg.instances.remove(id);
            }
        }
        reg.reserved_ports.retain(|_, r| r.at > day_ago);
        Ok(strays)
    })?;
    for id in &old {
        let _ = std::fs::remove_file(ctx.dirs.instance_log(id));
        // The egress proxy's own log directory (the box's: not followed).
        let _ = std::fs::remove_dir_all(crate::state::events::box_log_dir(
            &ctx.dirs.logs_dir(),
            id.as_str(),
        ));
    }
    let ledgers = remove_stale_ledgers(ctx)?;
    let (volumes, kept_volumes) = reap_volumes(ctx, engine.as_ref(), &home)?;
    Ok(Collected {
        volumes,
        kept_volumes,
        logins,
        fetches,
        entries: old,
        containers,
        networks,
        ledgers,
    })
}

/// Containers that a killed `login` or `fetch` of this home left (removed
/// unless `dry_run`): their names.
fn reap_scratch(
    ctx: &Ctx,
    engine: &DockerEngine,
    home: &str,
    dry_run: bool,
) -> Result<(Vec<String>, Vec<String>)> {
    let logins = crate::features::agent_state::reap_logins(engine, &ctx.dirs, dry_run)?;
    let ours = [format!("{}={home}", crate::engine::HOME_LABEL)];
    let fetches = engine
        .reap_orphans(crate::features::clone::FETCH_LABEL, &ours, dry_run)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    Ok((logins, fetches))
}

/// Removes this home's volumes whose instance the registry no longer has
/// (a removal that was killed, a registry lost); one a container still
/// uses is left.
type Volumes = (Vec<String>, Vec<(String, String)>);

/// Removes the volumes of instances the registry does not hold, but a
/// clone's repository: removed and kept ones.
fn reap_volumes(ctx: &Ctx, engine: Option<&DockerEngine>, home: &str) -> Result<Volumes> {
    let Some(engine) = engine else {
        return Ok(Volumes::default());
    };
    let listed = engine.instance_volumes(home)?;
    let reg = ctx.store.load()?;
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (name, of) in listed {
        let known = of
            .as_deref()
            .is_some_and(|id| reg.instances.keys().any(|k| k.as_str() == id));
        if known {
            continue;
        }
        if crate::features::clone::is_repo_volume(&name) {
            kept.push((name, of.unwrap_or_default()));
        } else if engine.remove_volume(&name).is_ok() {
            removed.push(name);
        }
    }
    Ok((removed, kept))
}
