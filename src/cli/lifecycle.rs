//! `stop`, `restart`, `pause`/`resume`, `rm`, `gc`.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::lifecycle;
use crate::lifecycle::docker::DockerEngine;

pub fn stop(ctx: &Ctx, ids: Vec<InstanceId>, all: bool, force: bool) -> Result<u8> {
    let ids = if all {
        let reg = crate::lifecycle::refresh(ctx)?;
        // An entry in error may still hold a running container.
        reg.instances
            .values()
            .filter(|i| {
                i.status.is_live()
                    || (i.status == crate::core::types::Status::Error && i.container_id.is_some())
            })
            .map(|i| i.id.clone())
            .collect()
    } else {
        ids
    };
    if ids.is_empty() {
        eprintln!("no instances running");
        return Ok(0);
    }
    // The user waits here: a stop that takes long says why.
    lifecycle::say_when_waiting();
    let failed = lifecycle::stop_many(ctx, &ids, force, "stopped by user");
    let after = ctx.store.load().ok();
    for id in ids
        .iter()
        .filter(|id| !failed.iter().any(|(f, _)| f == *id))
    {
        let starting = after
            .as_ref()
            .and_then(|r| r.get(id))
            .is_some_and(|i| i.status == crate::core::types::Status::Initializing);
        if starting {
            eprintln!("{id} is still starting: it stops as soon as its start completes");
        } else {
            eprintln!("stopped {id}");
        }
    }
    match failed.into_iter().next() {
        None => Ok(0),
        // Keep the kind (and so the exit code and hint) of the failure.
        Some((id, e)) => Err(match e {
            Error::NotFound(m) => Error::NotFound(m),
            Error::NoInstance(m) => Error::NoInstance(m),
            Error::Engine(m) => Error::Engine(format!("{id}: {m}")),
            Error::EngineTimeout(m) => Error::EngineTimeout(format!("{id}: {m}")),
            Error::Invalid(m) => Error::Invalid(format!("{id}: {m}")),
            other => Error::Other(format!("{id}: {other}")),
        }),
    }
}

pub fn restart(ctx: &Ctx, id: InstanceId) -> Result<u8> {
    let inst = lifecycle::restart(ctx, &id, false, "restarting")?;
    eprintln!(
        "restarted {id} {}; attach with `ai-sessctl attach {id}`",
        super::list::started_at(&inst)
    );
    Ok(0)
}

pub fn pause(ctx: &Ctx, id: InstanceId, paused: bool) -> Result<u8> {
    lifecycle::set_paused(ctx, &id, paused)?;
    eprintln!("{} {id}", if paused { "paused" } else { "resumed" });
    Ok(0)
}

/// `resume ID`: unpause, or bring back an instance an engine restart
/// ended; `resume`: bring back all of those.
pub fn resume(ctx: &Ctx, id: Option<InstanceId>) -> Result<u8> {
    let Some(id) = id else {
        let done = crate::service::resume::resume_all(ctx)?;
        if done.is_empty() {
            eprintln!("nothing to resume: no instance was ended by an engine restart or reboot");
        }
        let mut code = 0;
        for (id, r) in done {
            match r {
                Ok(i) => eprintln!("resumed {id} {}", super::list::started_at(&i)),
                Err(e) => {
                    eprintln!("ai-sessctl: {id}: {e}");
                    code = e.exit_code() as u8;
                }
            }
        }
        return Ok(code);
    };
    let reg = crate::lifecycle::refresh(ctx)?;
    let inst = reg
        .get(&id)
        .ok_or_else(|| crate::core::error::Error::not_found(&id))?;
    if crate::service::resume::interrupted(inst) {
        let back = crate::service::resume::bring_back(ctx, inst)?;
        eprintln!("resumed {id} {}", super::list::started_at(&back));
        return Ok(0);
    }
    pause(ctx, id, false)
}

/// What `rm` does with an instance's worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorktreeChoice {
    /// `--worktree`: remove it (refused, removing nothing, when it holds
    /// work, unless forced).
    Remove,
    /// Offer a clean one on a terminal; else keep it and say so.
    Ask,
    /// Keep it and say so (`rm --all`: no question per instance).
    Keep,
}

impl WorktreeChoice {
    pub fn from_flag(flag: bool) -> Self {
        if flag {
            WorktreeChoice::Remove
        } else {
            WorktreeChoice::Ask
        }
    }
}

/// `rm IDS` or `rm --all`.
pub fn rm_command(ctx: &Ctx, a: super::RmArgs) -> Result<u8> {
    let wt = WorktreeChoice::from_flag(a.worktree);
    if a.all {
        rm_all(ctx, a.force, a.state, wt)
    } else {
        rm(ctx, a.ids, a.force, a.state, wt)
    }
}

pub fn rm(
    ctx: &Ctx,
    ids: Vec<InstanceId>,
    force: bool,
    state: bool,
    wt: WorktreeChoice,
) -> Result<u8> {
    use crate::features::worktree::remove as wtrm;
    // Every refusal before anything is removed.
    let reg = crate::lifecycle::refresh_quietly(ctx)?;
    let mut plans = Vec::new();
    for id in &ids {
        let mut plan = wtrm::plan(ctx, &reg, id)?;
        if plan.is_none() && reg.get(id).is_none() && wt == WorktreeChoice::Remove {
            // Again after an `rm --worktree` killed once the instance went.
            plan = wtrm::interrupted(ctx, id)?;
        }
        if let (WorktreeChoice::Remove, Some(p), false) = (wt, &plan, force) {
            if let Some(why) = wtrm::refusal(p) {
                return Err(crate::core::error::Error::Invalid(format!(
                    "{id}: {why}; nothing was removed (commit and push or merge that work, or add --force to remove the worktree anyway; its branch {} is kept)",
                    p.info.branch
                )));
            }
        }
        plans.push(plan);
    }
    for (id, plan) in ids.iter().zip(plans) {
        if reg.get(id).is_some() || plan.is_none() {
            if let (WorktreeChoice::Remove, Some(p)) = (wt, &plan) {
                wtrm::begin(ctx, id, p)?;
            }
            lifecycle::remove(ctx, id, force, state)?;
            eprintln!("removed {id}");
        }
        if let Some(mut p) = plan {
            // Who else uses it now (an instance removed by this same `rm`
            // no longer counts).
            p.shared_with =
                crate::features::worktree::remove::users(&ctx.store.load()?, &p.info.path, id);
            settle_worktree(&p, wt)?;
        }
        wtrm::done(ctx, id);
    }
    Ok(0)
}

/// After its instance went: removes its worktree, asks, or says it stays.
fn settle_worktree(p: &crate::features::worktree::remove::Plan, wt: WorktreeChoice) -> Result<()> {
    use crate::features::worktree::remove as wtrm;
    use std::io::{BufRead, IsTerminal, Write};
    let path = super::list::project_shown(&p.info.path.to_string_lossy());
    if !p.shared_with.is_empty() {
        let others: Vec<String> = p.shared_with.iter().map(|i| i.to_string()).collect();
        eprintln!(
            "kept its worktree {path}: {} runs in it too",
            others.join(", ")
        );
        return Ok(());
    }
    let remove = match wt {
        WorktreeChoice::Remove => true,
        _ if !p.changes.clean() => {
            eprintln!(
                "kept its worktree {path} ({}; branch {})",
                p.changes.describe(),
                p.info.branch
            );
            return Ok(());
        }
        WorktreeChoice::Ask
            if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() =>
        {
            eprint!(
                "remove its worktree {path} too (clean; branch {} is kept)? [y/N] ",
                p.info.branch
            );
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
        }
        _ => false,
    };
    if remove {
        wtrm::remove(p)?;
        eprintln!(
            "removed its worktree {path} (branch {} is kept)",
            p.info.branch
        );
    } else {
        eprintln!(
            "kept its worktree {path} (clean; `git worktree remove {}` removes it)",
            p.info.path.display()
        );
    }
    Ok(())
}

/// `rm --all`: every entry of this state home, and containers labelled
/// with this home that the registry lost. Refuses (removing nothing) while
/// any runs, unless `force`.
pub fn rm_all(ctx: &Ctx, force: bool, state: bool, wt: WorktreeChoice) -> Result<u8> {
    let reg = crate::lifecycle::refresh_quietly(ctx)?;
    let live: Vec<String> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .map(|i| i.id.to_string())
        .collect();
    if !force && !live.is_empty() {
        return Err(crate::core::error::Error::Invalid(format!(
            "{} still running ({}); stop them first or use --force",
            live.len(),
            live.join(", ")
        )));
    }
    let ids: Vec<InstanceId> = reg.instances.keys().cloned().collect();
    let wt = match wt {
        WorktreeChoice::Ask => WorktreeChoice::Keep,
        w => w,
    };
    rm(ctx, ids, force, state, wt)?;
    if let Ok(engine) = DockerEngine::connect() {
        let home = ctx.dirs.home_label();
        for (id, o) in engine.observe()? {
            if o.labels.get(crate::lifecycle::docker::HOME_LABEL) == Some(&home) {
                engine.remove(&o.container_id, None)?;
                eprintln!("removed container {id}");
            }
        }
    }
    Ok(0)
}

/// Removes stopped entries older than `log_retention`, stale port
/// reservations, and containers labelled ours that the registry does not know.
pub fn gc(ctx: &Ctx, dry_run: bool) -> Result<u8> {
    let done = crate::service::gc::gc(ctx, dry_run)?;
    let did = if dry_run { "would remove " } else { "removed " };
    for name in &done.logins {
        println!("{did}login container {name} (its login is gone)");
    }
    for name in &done.fetches {
        println!("{did}fetch container {name} (its fetch is gone)");
    }
    for id in &done.entries {
        println!("{did}entry {id}");
    }
    for (id, cid) in &done.containers {
        println!("{did}container {} ({id})", &cid[..cid.len().min(12)]);
    }
    for id in &done.ledgers {
        println!("{did}spend ledger of {id} (removed; its last call is over 2 days old)");
    }
    if done.entries.is_empty()
        && done.containers.is_empty()
        && done.ledgers.is_empty()
        && done.logins.is_empty()
        && done.fetches.is_empty()
    {
        println!("nothing to remove");
    }
    for net in &done.networks {
        println!("removed network {net}");
    }
    for v in &done.volumes {
        println!("removed volume {v}");
    }
    for (v, id) in &done.kept_volumes {
        let id = crate::core::untrusted::printable(id);
        println!(
            "kept volume {v}: the repository of clone instance {id}, which nothing records any more; \
             its agent's work may be there (`docker volume rm {v}` removes it)"
        );
    }
    Ok(0)
}

/// The detached helper of a batch of stops: removes the containers and
/// networks it left (see `lifecycle::reap`).
pub fn reap_networks(ctx: &Ctx, containers: Vec<String>, networks: Vec<String>) -> Result<u8> {
    let engine = DockerEngine::connect()?;
    let left = lifecycle::Leftovers {
        containers,
        networks,
    };
    lifecycle::say_warnings(&lifecycle::reap(ctx, &engine, &left));
    Ok(0)
}

/// The detached helper of a start that left the network pool short.
pub fn fill_network_pool(ctx: &Ctx) -> Result<u8> {
    let engine = lifecycle::engine_for(ctx)?;
    lifecycle::pool::fill(&ctx.dirs, &engine)?;
    Ok(0)
}
