//! Threshold alerts (`HIGH_CPU`, `HIGH_MEM`, `RECOVERY_FAILED`): raised once
//! per crossing with hysteresis, the state kept in the registry so any
//! sampler (`stats`, `top`, `health watch`) agrees and none storms.

use super::stats::Sample;
use crate::core::error::Result;
use crate::state::config::Settings;
use crate::state::context::Ctx;
use crate::state::events::Level as LogLevel;
use crate::state::registry::Instance;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// Alert kinds and levels are recorded in the registry: defined there.
pub use crate::state::registry::{AlertKind, Severity};

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub level: Severity,
    pub instance: String,
    pub value: String,
    pub threshold: String,
    pub message: String,
}

/// A level drops only once the value is this far below the threshold.
const HYSTERESIS: f64 = 0.9;

struct Thresholds {
    warning: Option<f64>,
    critical: Option<f64>,
}

impl Thresholds {
    fn level(&self, v: f64) -> Severity {
        if self.critical.is_some_and(|t| v >= t) {
            Severity::Critical
        } else if self.warning.is_some_and(|t| v >= t) {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }

    /// Rises as soon as a threshold is crossed; falls only below
    /// `HYSTERESIS` × the threshold of the current level.
    fn next(&self, current: Severity, v: f64) -> Severity {
        let up = self.level(v);
        let hold = self.level(v / HYSTERESIS);
        up.max(current.min(hold))
    }

    fn threshold_of(&self, s: Severity) -> Option<f64> {
        match s {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Ok => None,
        }
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// CPU thresholds in millicores: the configured ones, and the percentage of
/// the limit (`alerts.cpu_percent`) as a warning.
fn cpu_thresholds(s: &Settings) -> Thresholds {
    let limit = s.resources.cpu.limit.0 as f64;
    Thresholds {
        warning: min_opt(
            s.resources.cpu.warning_threshold.map(|c| c.0 as f64),
            Some(limit * s.alerts.cpu_percent / 100.0),
        ),
        critical: s.resources.cpu.critical_threshold.map(|c| c.0 as f64),
    }
}

fn mem_thresholds(s: &Settings, limit: u64) -> Thresholds {
    let limit = if limit > 0 {
        limit
    } else {
        s.resources.memory.limit.0
    } as f64;
    Thresholds {
        warning: min_opt(
            s.resources.memory.warning_threshold.map(|b| b.0 as f64),
            Some(limit * s.alerts.memory_percent / 100.0),
        ),
        critical: s.resources.memory.critical_threshold.map(|b| b.0 as f64),
    }
}

fn stored(inst: &Instance, kind: AlertKind) -> Severity {
    inst.alerts.as_ref().map_or(Severity::Ok, |a| a.level(kind))
}

fn store(inst: &mut Instance, kind: AlertKind, s: Severity) {
    inst.alerts
        .get_or_insert_with(Default::default)
        .set(kind, s);
}

/// Records samples in the registry (`resources.cpu_usage`/`memory_usage`)
/// and raises the alerts whose level went up; returns them.
pub fn record(ctx: &Ctx, samples: &[Sample]) -> Result<Vec<Alert>> {
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let settings: Vec<Option<Settings>> = samples
        .iter()
        .map(|s| {
            crate::core::types::InstanceId::parse(&s.id)
                .ok()
                .and_then(|id| ctx.effective(&id).ok())
                .map(|e| e.settings)
        })
        .collect();
    let mut raised = Vec::new();
    let mut cleared = Vec::new();
    ctx.store.update(|reg| {
        for (s, cfg) in samples.iter().zip(&settings) {
            let Some(inst) = reg.instances.values_mut().find(|i| i.id.as_str() == s.id) else {
                continue;
            };
            if !inst.status.is_live() {
                continue;
            }
            inst.resources.cpu_usage = Some(format!("{:.1}%", s.cpu_percent));
            inst.resources.memory_usage = Some(super::stats::human_bytes(s.memory_usage));
            inst.resources.usage_at = Some(chrono::Utc::now());
            let Some(cfg) = cfg else { continue };
            let checks = [
                (
                    AlertKind::HighCpu,
                    cpu_thresholds(cfg),
                    s.cpu_millis() as f64,
                    format!("{}m", s.cpu_millis()),
                ),
                (
                    AlertKind::HighMem,
                    mem_thresholds(cfg, s.memory_limit),
                    s.memory_usage as f64,
                    super::stats::human_bytes(s.memory_usage),
                ),
            ];
            for (kind, th, v, shown) in checks {
                let cur = stored(inst, kind);
                let next = th.next(cur, v);
                if next == cur {
                    continue;
                }
                store(inst, kind, next);
                if next > cur {
                    let t = th.threshold_of(next).unwrap_or(0.0);
                    let t = if kind == AlertKind::HighCpu {
                        format!("{t:.0}m")
                    } else {
                        super::stats::human_bytes(t as u64)
                    };
                    raised.push(Alert {
                        kind,
                        level: next,
                        instance: s.id.clone(),
                        message: format!("{kind} {} on {}: {shown} ≥ {t}", next.as_str(), s.id),
                        value: shown,
                        threshold: t,
                    });
                } else {
                    cleared.push((kind, s.id.clone(), next));
                }
            }
        }
        Ok(())
    })?;
    for (kind, id, level) in cleared {
        ctx.events().log(
            LogLevel::Info,
            "monitor",
            &format!("{kind} back to {}", level.as_str()),
            json!({"instance": id, "alert": kind}),
        );
    }
    for a in &raised {
        emit(ctx, a);
    }
    Ok(raised)
}

/// Logs an alert and runs `alerts.command` for it.
pub fn emit(ctx: &Ctx, a: &Alert) {
    ctx.events().log(
        if a.level == Severity::Critical { LogLevel::Error } else { LogLevel::Warn },
        "monitor",
        &a.message,
        json!({"alert": a.kind, "level": a.level, "instance": a.instance, "value": a.value, "threshold": a.threshold}),
    );
    let Ok(settings) = ctx.global() else { return };
    if let Some(argv) = settings.alerts.command.filter(|a| !a.is_empty()) {
        if let Err(e) = run_command(&argv, a, settings.alerts.command_timeout.0) {
            ctx.events().log(
                LogLevel::Warn,
                "monitor",
                "alert command failed",
                json!({"error": e}),
            );
        }
    }
}

/// Runs the alert command without a shell: the alert in `AI_ALERT_*`
/// variables and as JSON on stdin; killed after `timeout`.
fn run_command(argv: &[String], a: &Alert, timeout: Duration) -> std::result::Result<(), String> {
    let env = [
        ("AI_ALERT_KIND", a.kind.as_str().to_owned()),
        ("AI_ALERT_LEVEL", a.level.as_str().to_owned()),
        ("AI_ALERT_INSTANCE", a.instance.clone()),
        ("AI_ALERT_VALUE", a.value.clone()),
        ("AI_ALERT_THRESHOLD", a.threshold.clone()),
        ("AI_ALERT_MESSAGE", a.message.clone()),
    ];
    let stdin = serde_json::to_string(a).unwrap_or_default();
    crate::core::spawn::run_program(argv, &env, &stdin, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_raises_once_and_falls_below_the_band() {
        let th = Thresholds {
            warning: Some(400.0),
            critical: Some(480.0),
        };
        let mut s = Severity::Ok;
        s = th.next(s, 410.0);
        assert_eq!(s, Severity::Warning);
        assert_eq!(
            th.next(s, 395.0),
            Severity::Warning,
            "inside the band: held"
        );
        assert_eq!(th.next(s, 500.0), Severity::Critical, "escalates");
        assert_eq!(th.next(Severity::Critical, 470.0), Severity::Critical);
        assert_eq!(th.next(Severity::Critical, 420.0), Severity::Warning);
        assert_eq!(th.next(Severity::Warning, 300.0), Severity::Ok);
    }
}
