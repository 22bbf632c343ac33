//! What brokered model calls cost, as `spend`, `list`, the API and the
//! dashboard show it: the ledgers the brokers append to
//! (`meter/<id>/usage.jsonl`, see `state::spend`) summed with the price
//! table of each instance's settings. Ledgers of instances the registry no
//! longer holds still count (toward the day) and are shown as removed.
//! `budget` raises the 80 % and 100 % alerts.

pub mod budget;

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::warning::Warnings;
use crate::state::config::units::Dur;
use crate::state::config::Budget;
use crate::state::context::Ctx;
use crate::state::registry::{Instance, Registry};
use crate::state::spend::prices::Prices;
use crate::state::spend::{ledger, start_of_day, Record, Spend};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where a `--since` window starts: a duration back from now, or the
/// start of today (the daily budget's day, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Dur),
    Today,
}

impl std::str::FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("today") {
            return Ok(Since::Today);
        }
        s.parse::<Dur>()
            .map(Since::Ago)
            .map_err(|e| format!("{e}, or `today`"))
    }
}

impl Since {
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Today => start_of_day(now),
            Since::Ago(d) => now - chrono::Duration::from_std(d.0).unwrap_or_default(),
        }
    }
}

/// One instance's spend, as `spend --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub instance: String,
    /// The registry no longer holds it (its ledger is kept a while: it
    /// still counts toward the day).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    #[serde(flatten)]
    pub spend: Spend,
}

/// `spend [ID] [--since …]`: a row per instance with a ledger, and their
/// total.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The start of the window; none for all time.
    pub since: Option<DateTime<Utc>>,
    pub instances: Vec<Row>,
    pub total: Spend,
    /// The budgets of the home's config (an instance may have its own).
    pub budget: Budget,
}

/// One ledger with the prices it is costed at (the instance's own
/// settings, the global ones for a removed instance).
struct Ledger {
    records: Vec<Record>,
    prices: Prices,
    removed: bool,
    /// When the registered instance was created: an instance's spend counts
    /// from then (an earlier instance of the same id left the older calls).
    created: Option<DateTime<Utc>>,
}

/// The ledgers of the home.
struct Ledgers {
    by_id: BTreeMap<String, Ledger>,
}

/// The later of two window starts.
fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    a.max(b)
}

impl Ledgers {
    fn read(ctx: &Ctx, reg: &Registry) -> Ledgers {
        let global = ctx
            .global()
            .map(|s| Prices::new(&s.prices))
            .unwrap_or_else(|_| Prices::new(&BTreeMap::new()));
        let by_id = ledgers(ctx)
            .into_iter()
            .map(|(id, records)| {
                let known = InstanceId::parse(&id).ok().and_then(|i| reg.get(&i));
                let prices = known
                    .and_then(|i| ctx.effective(&i.id).ok())
                    .map(|e| Prices::new(&e.settings.prices))
                    .unwrap_or_else(|| global.clone());
                let ledger = Ledger {
                    records,
                    prices,
                    removed: known.is_none(),
                    created: known.and_then(|i| i.timestamps.created),
                };
                (id, ledger)
            })
            .collect();
        Ledgers { by_id }
    }

    fn rows(&self, since: Option<DateTime<Utc>>) -> Vec<Row> {
        self.by_id
            .iter()
            .map(|(id, l)| Row {
                instance: id.clone(),
                removed: l.removed,
                spend: Spend::of(&l.records, later(since, l.created), &l.prices),
            })
            .collect()
    }
}

fn total(rows: &[Row]) -> Spend {
    let mut t = Spend::default();
    for r in rows {
        t.merge(&r.spend);
    }
    t
}

/// The spend of every ledger (or of `id`'s) since `since`. An id the
/// registry does not hold and that has no ledger is an error.
pub fn report(ctx: &Ctx, id: Option<&InstanceId>, since: Option<Since>) -> Result<Report> {
    let reg = ctx.store.load()?;
    if let Some(id) = id {
        if reg.get(id).is_none() && !ctx.dirs.meter_of(id).is_dir() {
            return Err(Error::not_found(id));
        }
    }
    let since = since.map(|s| s.start(Utc::now()));
    let mut rows = Ledgers::read(ctx, &reg).rows(since);
    if let Some(id) = id {
        rows.retain(|r| r.instance == id.as_str());
        // Known, but no call brokered yet: a row of zeros says so.
        if rows.is_empty() {
            rows.push(Row {
                instance: id.to_string(),
                removed: false,
                spend: Spend::default(),
            });
        }
    }
    Ok(Report {
        since,
        total: total(&rows),
        instances: rows,
        budget: ctx.global().map(|s| s.budget).unwrap_or_default(),
    })
}

/// The spend of each registered instance that has a ledger, since it was
/// created (what `list`, the API's instances and its budget count).
pub fn by_instance(ctx: &Ctx, reg: &Registry) -> BTreeMap<InstanceId, Spend> {
    by_instance_of(ctx, reg, &ledgers(ctx))
}

/// [`by_instance`] from the home's ledgers already read.
pub fn by_instance_of(
    ctx: &Ctx,
    reg: &Registry,
    all: &ledger::Ledgers,
) -> BTreeMap<InstanceId, Spend> {
    reg.instances
        .values()
        .filter_map(|inst| {
            let id = &inst.id;
            let records = all.get(id.as_str()).filter(|r| !r.is_empty())?;
            let prices = ctx
                .effective(id)
                .map(|e| Prices::new(&e.settings.prices))
                .or_else(|_| ctx.global().map(|s| Prices::new(&s.prices)))
                .unwrap_or_else(|_| Prices::new(&BTreeMap::new()));
            let spend = Spend::of(records, inst.timestamps.created, &prices);
            Some((id.clone(), spend))
        })
        .collect()
}

/// An instance as JSON with its `spend` (zeros before any brokered call)
/// and whether it `needs_you`:
/// `list --json` and the API's instances.
pub fn instance_json(inst: &Instance, spend: Option<&Spend>) -> serde_json::Value {
    let mut v = serde_json::json!(inst);
    if let Some(obj) = v.as_object_mut() {
        let s = spend.cloned().unwrap_or_default();
        obj.insert("spend".into(), serde_json::json!(s));
        // The one "needs you" (`Instance::needs_you`), so no client
        // works it out again from status and activity.
        obj.insert("needs_you".into(), serde_json::json!(inst.needs_you()));
    }
    v
}

/// Over time, for the dashboard: today's and all-time totals, and the
/// cost of each of the last 24 hours (oldest first).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub today: Spend,
    pub all_time: Spend,
    pub hourly_usd: Vec<f64>,
    pub budget: Budget,
}

pub fn summary(ctx: &Ctx) -> Result<Summary> {
    let reg = ctx.store.load()?;
    let now = Utc::now();
    let ledgers = Ledgers::read(ctx, &reg);
    let today = total(&ledgers.rows(Some(start_of_day(now))));
    let all_time = total(&ledgers.rows(None));
    let mut hourly_usd = vec![0.0; 24];
    for l in ledgers.by_id.values() {
        for r in &l.records {
            let age = (now - r.ts).num_hours();
            if (0..24).contains(&age) {
                let slot = 23 - age as usize;
                hourly_usd[slot] += l.prices.cost(&r.model, &r.tokens).unwrap_or(0.0);
            }
        }
    }
    Ok(Summary {
        today,
        all_time,
        hourly_usd,
        budget: ctx.global().map(|s| s.budget).unwrap_or_default(),
    })
}

/// Every ledger of the home; those of brokers on an engine on another
/// machine copied here first.
pub fn ledgers(ctx: &Ctx) -> ledger::Ledgers {
    crate::features::egress::remote::pull_all(&ctx.dirs);
    ledger::read_all(&ctx.dirs)
}

/// After `[budget]` or `[prices]` changed: rewrites the broker settings
/// file of every registered instance, so a running broker applies the new
/// budget or price without a restart. A failure is a warning: the change is
/// saved and applies at the next start anyway.
pub fn refresh_brokers(ctx: &Ctx) -> Warnings {
    let mut warnings = Warnings::new();
    let reg = match ctx.store.load() {
        Ok(r) => r,
        Err(e) => {
            warnings.warn(format!("ai-sessctl: warning: brokers not updated: {e}"));
            return warnings;
        }
    };
    use crate::features::egress::broker::settings;
    // Only brokered instances have a file (an instance whose agent left the
    // config has no settings to give it, and needs none without a file).
    for id in reg
        .instances
        .keys()
        .filter(|id| settings::path(&ctx.dirs, id).exists())
    {
        let done = ctx
            .effective(id)
            .and_then(|eff| settings::BrokerFile::refresh(&ctx.dirs, id, &eff))
            // A broker on an engine on another machine gets it sent.
            .and_then(|_| crate::features::egress::remote::push(&ctx.dirs, id));
        if let Err(e) = done {
            warnings.warn(format!(
                "ai-sessctl: warning: the broker of {id} keeps its old budget and prices until it restarts: {e}"
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_today() {
        let now = "2026-03-04T15:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let s: Since = "today".parse().unwrap();
        assert_eq!(s.start(now).to_rfc3339(), "2026-03-04T00:00:00+00:00");
        let s: Since = "90m".parse().unwrap();
        assert_eq!(s.start(now).to_rfc3339(), "2026-03-04T14:00:00+00:00");
        let s: Since = "2d".parse().unwrap();
        assert_eq!(s.start(now).to_rfc3339(), "2026-03-02T15:30:00+00:00");
        let e = "yesterday".parse::<Since>().unwrap_err();
        assert!(e.contains("today"), "{e}");
    }
}
