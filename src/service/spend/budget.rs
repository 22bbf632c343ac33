//! Budget alerts: an instance's brokered calls at 80 % of
//! `budget.instance_usd` (`BUDGET` warning) or at 100 % (critical: its
//! broker refuses further calls), and the same for the whole home's calls
//! today and `budget.daily_usd` (`DAILY_BUDGET`). Each is raised once per
//! crossing: the level reached is kept in the registry (an instance's
//! `alerts`, the home's `daily_budget`), so every checker (`health
//! watch`, `serve`, `spend`, `list`) agrees and none repeats it. A raised
//! budget lowers the level again (logged), re-arming the alert.
//!
//! Raising goes through the monitor's alerts (an event, `alerts.command`)
//! and the "needs you" terminal notification of the owning shells.

use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::features::monitor::alerts::{self, Alert};
use crate::state::context::Ctx;
use crate::state::events::Level as LogLevel;
use crate::state::registry::{AlertKind, DayAlert, Severity};
use crate::state::spend::ledger::Ledgers;
use crate::state::spend::prices::Prices;
use crate::state::spend::{start_of_day, Spend};
use chrono::{NaiveDate, Utc};
use serde_json::json;

/// The share of a budget at which the warning is raised.
pub const WARN_AT: f64 = 0.8;

/// How far `spent` is over `budget` (none or not positive: no budget).
pub fn level(spent: f64, budget: Option<f64>) -> Severity {
    match budget {
        Some(b) if b > 0.0 && spent >= b => Severity::Critical,
        Some(b) if b > 0.0 && spent >= b * WARN_AT => Severity::Warning,
        _ => Severity::Ok,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Instance(InstanceId),
    Day(NaiveDate),
}

/// A level that differs from the one recorded.
#[derive(Debug, Clone)]
struct Change {
    target: Target,
    level: Severity,
    spent: f64,
    budget: f64,
}

/// What the ledgers (`all`, by instance) say each level should be, where
/// it differs from the registry's.
fn wanted(ctx: &Ctx, all: &Ledgers) -> Result<Vec<Change>> {
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let reg = ctx.store.load()?;
    let global = ctx.global()?;
    let now = Utc::now();
    let mut today = 0.0;
    let mut out = Vec::new();
    for (id, records) in all {
        let inst = InstanceId::parse(id).ok().and_then(|i| reg.get(&i));
        let settings = inst
            .and_then(|i| ctx.effective(&i.id).ok())
            .map(|e| e.settings)
            .unwrap_or_else(|| global.clone());
        let prices = Prices::new(&settings.prices);
        today += Spend::of(records, Some(start_of_day(now)), &prices).cost_usd;
        let Some(inst) = inst else { continue };
        // Since it was created; the day counts every call of it.
        let spent = Spend::of(records, inst.timestamps.created, &prices).cost_usd;
        let next = level(spent, settings.budget.instance_usd);
        let cur = inst
            .alerts
            .as_ref()
            .map_or(Severity::Ok, |a| a.level(AlertKind::Budget));
        if next != cur {
            out.push(Change {
                target: Target::Instance(inst.id.clone()),
                level: next,
                spent,
                budget: settings.budget.instance_usd.unwrap_or(0.0),
            });
        }
    }
    let day = now.date_naive();
    let next = level(today, global.budget.daily_usd);
    if next != DayAlert::level_on(reg.daily_budget.as_ref(), day) {
        out.push(Change {
            target: Target::Day(day),
            level: next,
            spent: today,
            budget: global.budget.daily_usd.unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// Brings the recorded budget levels up to date; raises (event,
/// `alerts.command`, terminal notification) the alerts whose level went up
/// and returns them.
pub fn check(ctx: &Ctx) -> Result<Vec<Alert>> {
    check_with(ctx, &super::ledgers(ctx))
}

/// [`check`] with the home's ledgers already read (`list` reads them once
/// for its SPEND column and this).
pub fn check_with(ctx: &Ctx, all: &Ledgers) -> Result<Vec<Alert>> {
    let wanted = wanted(ctx, all)?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // Under the lock, against the freshest registry: another checker may
    // have recorded (and raised) the same crossing meanwhile.
    let (changed, reg) = ctx.store.update(|reg| {
        let mut out = Vec::new();
        for w in wanted {
            let cur = match &w.target {
                Target::Instance(id) => {
                    let Some(i) = reg.instances.get_mut(id) else {
                        continue;
                    };
                    let a = i.alerts.get_or_insert_with(Default::default);
                    let cur = a.level(AlertKind::Budget);
                    a.set(AlertKind::Budget, w.level);
                    cur
                }
                Target::Day(day) => {
                    let cur = DayAlert::level_on(reg.daily_budget.as_ref(), *day);
                    reg.daily_budget = Some(DayAlert {
                        day: *day,
                        level: w.level,
                    });
                    cur
                }
            };
            if cur != w.level {
                out.push((w, cur));
            }
        }
        Ok((out, reg.clone()))
    })?;
    let settings = ctx.global()?;
    let mut raised = Vec::new();
    for (w, cur) in changed {
        let (kind, instance) = match &w.target {
            Target::Instance(id) => (AlertKind::Budget, id.to_string()),
            Target::Day(_) => (AlertKind::DailyBudget, String::new()),
        };
        if w.level < cur {
            ctx.events().log(
                LogLevel::Info,
                "monitor",
                &format!("{kind} back to {}", w.level.as_str()),
                json!({"alert": kind, "instance": instance, "value": usd(w.spent), "threshold": usd(w.budget)}),
            );
            continue;
        }
        let a = Alert {
            kind,
            level: w.level,
            message: message(&w, &instance),
            instance,
            value: usd(w.spent),
            threshold: usd(w.budget),
        };
        alerts::emit(ctx, &a);
        // The owners' terminals: the instance's, or every live one's for
        // the home's daily budget.
        let mut told = Vec::new();
        for i in reg.instances.values().filter(|i| i.status.is_live()) {
            let ours = match &w.target {
                Target::Instance(id) => &i.id == id,
                Target::Day(_) => true,
            };
            if ours && i.owner_pid.is_some_and(|p| !told.contains(&p)) {
                told.extend(i.owner_pid);
                crate::features::activity::notify::to_owner(&settings, i, &a.message);
            }
        }
        raised.push(a);
    }
    Ok(raised)
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

fn message(w: &Change, instance: &str) -> String {
    let pct = if w.budget > 0.0 {
        w.spent / w.budget * 100.0
    } else {
        0.0
    };
    let (spent, budget) = (usd(w.spent), usd(w.budget));
    match (&w.target, w.level) {
        (Target::Instance(_), Severity::Critical) => format!(
            "budget spent: {instance} has spent {spent} of its {budget} budget: the broker refuses further calls; raise it with `ai-sessctl config set {instance} budget.instance_usd N` (or --global)"
        ),
        (Target::Instance(_), _) => format!(
            "BUDGET warning on {instance}: {spent} spent, {pct:.0} % of its {budget} budget (budget.instance_usd)"
        ),
        (Target::Day(_), Severity::Critical) => format!(
            "daily budget spent: {spent} of {budget} today: the broker refuses further calls; raise it with `ai-sessctl config set --global budget.daily_usd N`"
        ),
        (Target::Day(_), _) => format!(
            "DAILY_BUDGET warning: {spent} spent today, {pct:.0} % of the {budget} daily budget (budget.daily_usd)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_at_80_and_100_percent() {
        assert_eq!(level(3.99, Some(5.0)), Severity::Ok);
        assert_eq!(level(4.0, Some(5.0)), Severity::Warning);
        assert_eq!(level(4.99, Some(5.0)), Severity::Warning);
        assert_eq!(level(5.0, Some(5.0)), Severity::Critical);
        assert_eq!(level(500.0, None), Severity::Ok);
        assert_eq!(level(1.0, Some(0.0)), Severity::Ok);
    }
}
