//! Reconcile: make the registry say what really runs. In three steps:
//! `observe` asks the engine (one label-filtered container listing per
//! call, and only when a Docker instance is live) and /proc; `classify`
//! decides, entry by entry, without asking anything; `settle` writes the
//! decisions under the lock. Then orphans of dead shells get their
//! shell's `on_shell_exit`.

mod classify;
mod observe;
mod settle;

use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::core::warning::{Warning, Warnings};
use crate::state::config::ShellExitPolicy;
use crate::state::context::Ctx;
use crate::state::registry::Registry;
use settle::Change;

/// The registry, corrected against the engine and /proc, with changes
/// written back. An engine that does not answer leaves Docker entries as
/// they were (with a warning): listing must work without it. Says its
/// warnings on stderr; [`refresh_with_warnings`] returns them instead.
pub fn refresh(ctx: &Ctx) -> Result<Registry> {
    let (reg, warnings) = refresh_with(ctx, true)?;
    say(&warnings);
    Ok(reg)
}

/// `refresh`, saying nothing when the engine does not answer (for callers
/// that report that themselves, e.g. a start that needs the engine).
pub fn refresh_quietly(ctx: &Ctx) -> Result<Registry> {
    let (reg, warnings) = refresh_with(ctx, false)?;
    say(&warnings);
    Ok(reg)
}

/// `refresh`, returning its warnings (the engine not answering, changes
/// not saved, …) instead of writing them.
pub fn refresh_with_warnings(ctx: &Ctx) -> Result<(Registry, Warnings)> {
    refresh_with(ctx, true)
}

/// Hands warnings to the process's warning sink (the CLI prints them as it
/// always said them), for the callers that cannot hand them on yet.
pub fn say(warnings: &Warnings) {
    for w in warnings.iter() {
        crate::core::warning::report(Warning {
            loudness: w.loudness,
            text: format!("ai-sessctl: warning: {w}"),
        });
    }
}

fn refresh_with(ctx: &Ctx, engine_warnings: bool) -> Result<(Registry, Warnings)> {
    let reg = ctx.store.load()?;
    let mut warnings = Warnings::new();
    let mut engine_said = Warnings::new();
    let seen = observe::observe(ctx, &reg, &mut engine_said);
    if engine_warnings {
        warnings.extend(engine_said);
    }
    let Some(seen) = seen else {
        return Ok((reg, warnings));
    };
    let changes: Vec<Change> = reg
        .instances
        .values()
        .filter_map(|inst| {
            let facts = seen.facts.get(&inst.id)?;
            Change::of(inst, classify::classify(inst, facts))
        })
        .collect();
    let reg = settle::settle(ctx, reg, seen.engine.as_ref(), changes, &mut warnings);
    let reg = reap_orphans(ctx, reg, &mut warnings)?;
    Ok((reg, warnings))
}

/// Instances whose owning shell died without running its exit hook (e.g.
/// SIGKILL): apply `on_shell_exit` as the hook would have.
fn reap_orphans(ctx: &Ctx, reg: Registry, warnings: &mut Warnings) -> Result<Registry> {
    let orphans: Vec<_> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .filter(|i| {
            i.owner_pid
                .is_some_and(|p| !crate::core::procinfo::alive(p, i.owner_start_time))
        })
        .map(|i| i.id.clone())
        .collect();
    if orphans.is_empty() {
        return Ok(reg);
    }
    warnings.extend(shell_exit(ctx, &orphans, "owner shell is gone")?);
    ctx.store.load()
}

/// Applies `on_shell_exit` to instances whose shell ended. An instance
/// that another terminal is attached to is kept for that terminal: its
/// shell becomes the owner (said in the event log).
/// Says on stderr what could not be stopped.
pub fn apply_shell_exit(ctx: &Ctx, ids: &[InstanceId], why: &str) -> Result<()> {
    say(&shell_exit(ctx, ids, why)?);
    Ok(())
}

/// `apply_shell_exit`, returning what could not be stopped.
fn shell_exit(ctx: &Ctx, ids: &[InstanceId], why: &str) -> Result<Warnings> {
    let mut warnings = Warnings::new();
    let ids = pass_ownership(ctx, ids)?;
    let policy = ctx.global()?.global.on_shell_exit;
    let (stop, keep): (Vec<_>, Vec<_>) = ids.iter().cloned().partition(|id| {
        ctx.effective(id)
            .map(|e| e.settings.global.on_shell_exit)
            .unwrap_or(policy)
            == ShellExitPolicy::Stop
    });
    if !keep.is_empty() {
        ctx.store.update(|reg| {
            for id in &keep {
                if let Some(i) = reg.instances.get_mut(id) {
                    i.owner_pid = None;
                    i.owner_start_time = None;
                }
            }
            Ok(())
        })?;
    }
    if !stop.is_empty() {
        let (failed, said) =
            super::stop_many_with_warnings(ctx, &stop, false, why, super::Stopper::User);
        warnings.extend(said);
        for (id, e) in failed {
            warnings.warn(format!("could not stop {id}: {e}"));
        }
    }
    Ok(warnings)
}

/// Hands each instance that a terminal in another (live) shell is attached
/// to over to that shell, under the lock; returns the others.
fn pass_ownership(ctx: &Ctx, ids: &[InstanceId]) -> Result<Vec<InstanceId>> {
    let mut passed = Vec::new();
    let rest = ctx.store.update(|reg| {
        let mut rest = Vec::new();
        for id in ids {
            let Some(inst) = reg.instances.get_mut(id) else {
                continue;
            };
            let owner = inst.owner_pid;
            let heir = inst
                .live_clients()
                .filter_map(|c| c.shell.clone())
                .find(|s| Some(s.pid) != owner && s.alive());
            match heir {
                Some(shell) => {
                    passed.push((id.clone(), owner, shell.pid));
                    inst.owner_pid = Some(shell.pid);
                    inst.owner_start_time = shell.start_time;
                }
                None => rest.push(id.clone()),
            }
        }
        Ok(rest)
    })?;
    for (id, from, to) in passed {
        ctx.events().log(
            crate::state::events::Level::Info,
            "shell",
            "ownership passed to an attached terminal",
            serde_json::json!({"instance": id, "from_shell": from, "to_shell": to}),
        );
    }
    Ok(rest)
}
