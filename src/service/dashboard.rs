//! The dashboard's data (`dashboard --json`, `GET /resources`): the
//! seed's `generate_dashboard_data` shape.

use crate::core::error::Result;
use crate::core::types::Status;
use crate::core::warning::Warnings;
use crate::state::context::Ctx;
use serde_json::json;

fn system_metrics() -> serde_json::Value {
    let l: Vec<f64> = crate::core::procinfo::load_average()
        .map(Vec::from)
        .unwrap_or_default();
    let mem = crate::core::procinfo::host_memory();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (total, avail) = (mem.map(|m| m.total), mem.and_then(|m| m.available));
    json!({
        "cpus": cpus,
        "load": l,
        "cpu_percent": l.first().map(|x| (x / cpus as f64 * 100.0 * 10.0).round() / 10.0),
        "memory_total_bytes": total,
        "memory_available_bytes": avail,
        "memory_free_percent": match (total, avail) {
            (Some(t), Some(a)) if t > 0 => Some((a as f64 / t as f64 * 1000.0).round() / 10.0),
            _ => None,
        },
    })
}

/// The seed's dashboard data, with live metrics of running instances
/// (sampled now) and their last health.
pub fn value(ctx: &Ctx, warnings: &mut Warnings) -> Result<serde_json::Value> {
    crate::features::activity::sync_quietly(ctx, warnings);
    let samples = super::stats::sample(ctx, None)?;
    let reg = ctx.store.load()?;
    let count = |s: Status| reg.instances.values().filter(|i| i.status == s).count();
    let spend = super::spend::by_instance(ctx, &reg);
    let over_time = super::spend::summary(ctx)?;
    let instances: Vec<_> = reg
        .instances
        .values()
        .map(|i| {
            let live = samples.iter().find(|s| s.id == i.id.as_str());
            json!({
                "instance": i.id,
                "mode": i.mode,
                "status": i.status,
                "activity": i.activity,
                "activity_since": i.activity_since,
                "needs_you": i.needs_you(),
                "port": i.port,
                "cpu": i.resources.cpu_usage,
                "memory": i.resources.memory_usage,
                "cpu_percent": live.map(|s| s.cpu_percent),
                "memory_usage": live.map(|s| s.memory_usage),
                "memory_limit": live.map(|s| s.memory_limit),
                "memory_percent": live.map(|s| s.memory_percent),
                "health": i.health.as_ref().map(|h| &h.status),
                "last_health_check": i.timestamps.last_health_check,
                "spend": spend.get(&i.id).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({
        "timestamp": chrono::Utc::now(),
        "system": system_metrics(),
        "instances": instances,
        "spend": over_time,
        "summary": {
            "total": reg.instances.len(),
            "running": count(Status::Running),
            "paused": count(Status::Paused),
            "stopped": count(Status::Stopped),
            "error": count(Status::Error),
            "needs_you": reg.needs_you_count(),
        }
    }))
}

/// The dashboard page's data: as [`value`], with the activity watcher
/// running (it notifies, and the page shows its notifications) while
/// instances run.
pub fn for_page(ctx: &Ctx) -> Result<serde_json::Value> {
    if ctx.store.load().is_ok_and(|r| r.live_count() > 0) {
        crate::features::activity::watch::ensure(ctx);
    }
    value(ctx, &mut Warnings::new())
}
