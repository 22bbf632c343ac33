//! Threshold alerts (`HIGH_CPU`, `HIGH_MEM`, `RECOVERY_FAILED`): raised once
//! per crossing with hysteresis, and a resource alert only on sustained
//! pressure (`alerts.sustain`, not within `alerts.grace` of a start: every
//! turn of an agent is a burst), the state kept in the registry so any
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

use crate::state::registry::Pressure;
/// Alert kinds and levels are recorded in the registry: defined there.
pub use crate::state::registry::{AlertKind, Severity};
use chrono::{DateTime, Utc};

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

/// The threshold set in absolute terms, else `percent` of `limit` (none
/// at 0).
fn threshold(absolute: Option<f64>, limit: f64, percent: f64) -> Option<f64> {
    absolute.or_else(|| (percent > 0.0 && limit > 0.0).then(|| limit * percent / 100.0))
}

/// CPU thresholds in millicores.
fn cpu_thresholds(s: &Settings) -> Thresholds {
    let c = &s.resources.cpu;
    let limit = c.limit.0 as f64;
    Thresholds {
        warning: threshold(
            c.warning_threshold.map(|c| c.0 as f64),
            limit,
            s.alerts.cpu_percent,
        ),
        critical: threshold(
            c.critical_threshold.map(|c| c.0 as f64),
            limit,
            s.alerts.cpu_critical_percent,
        ),
    }
}

/// Memory thresholds in bytes, of the container's own limit when known.
fn mem_thresholds(s: &Settings, limit: u64) -> Thresholds {
    let m = &s.resources.memory;
    let limit = if limit > 0 { limit } else { m.limit.0 } as f64;
    Thresholds {
        warning: threshold(
            m.warning_threshold.map(|b| b.0 as f64),
            limit,
            s.alerts.memory_percent,
        ),
        critical: threshold(
            m.critical_threshold.map(|b| b.0 as f64),
            limit,
            s.alerts.memory_critical_percent,
        ),
    }
}

/// Samples further apart than this do not make one stretch of pressure.
const MAX_GAP: Duration = Duration::from_secs(120);

/// When a level may rise: a value above the current level for `sustain`
/// (samples no further apart than [`MAX_GAP`], or `sustain` when longer),
/// not within `grace` of the start.
struct Rise {
    now: DateTime<Utc>,
    sustain: Duration,
    in_grace: bool,
}

impl Rise {
    /// The level to record and the pressure to keep, from the current
    /// level, the sample and the pressure kept so far. A level falls at
    /// once (below the hysteresis band).
    fn step(
        &self,
        th: &Thresholds,
        cur: Severity,
        v: f64,
        kept: Option<Pressure>,
    ) -> (Severity, Option<Pressure>) {
        let target = th.next(cur, v);
        if target <= cur {
            return (target, None);
        }
        if self.in_grace {
            return (cur, None);
        }
        let gap =
            chrono::Duration::from_std(MAX_GAP.max(self.sustain)).unwrap_or(chrono::Duration::MAX);
        let since = kept
            .filter(|p| self.now - p.seen <= gap && p.since <= self.now)
            .map_or(self.now, |p| p.since);
        let held = (self.now - since).to_std().unwrap_or_default();
        if held >= self.sustain {
            (target, None)
        } else {
            let p = Pressure {
                level: target,
                since,
                seen: self.now,
            };
            (cur, Some(p))
        }
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
            let now = Utc::now();
            let started = inst.timestamps.started.unwrap_or(now);
            let rise = Rise {
                now,
                sustain: cfg.alerts.sustain.0,
                in_grace: (now - started).to_std().unwrap_or_default() < cfg.alerts.grace.0,
            };
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
                let key = kind.as_str();
                let kept = inst
                    .alerts
                    .as_ref()
                    .and_then(|a| a.pressure.get(key).copied());
                let (next, pressure) = rise.step(&th, cur, v, kept);
                if pressure != kept {
                    let levels = inst.alerts.get_or_insert_with(Default::default);
                    match pressure {
                        Some(p) => levels.pressure.insert(key.to_owned(), p),
                        None => levels.pressure.remove(key),
                    };
                }
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

    #[test]
    fn a_burst_is_no_alert_and_sustained_pressure_is() {
        let th = Thresholds {
            warning: Some(400.0),
            critical: Some(480.0),
        };
        let t0 = Utc::now();
        let at = |s: i64, in_grace: bool| Rise {
            now: t0 + chrono::Duration::seconds(s),
            sustain: Duration::from_secs(30),
            in_grace,
        };
        // A turn: two seconds at the limit, then calm.
        let (lvl, p) = at(0, false).step(&th, Severity::Ok, 500.0, None);
        assert_eq!(lvl, Severity::Ok);
        let (lvl, p) = at(2, false).step(&th, lvl, 500.0, p);
        assert_eq!(lvl, Severity::Ok);
        let (lvl, p) = at(4, false).step(&th, lvl, 50.0, p);
        assert_eq!((lvl, p), (Severity::Ok, None), "the pressure is forgotten");
        // Thirty seconds above the threshold: raised, to the level of now.
        let mut state = (Severity::Ok, None);
        for s in (10..=40).step_by(5) {
            state = at(s, false).step(&th, state.0, 500.0, state.1);
        }
        assert_eq!(state, (Severity::Critical, None));
        // Falls at once.
        assert_eq!(at(45, false).step(&th, state.0, 10.0, None).0, Severity::Ok);
        // In the grace period after a start: nothing, nothing kept.
        assert_eq!(
            at(0, true).step(&th, Severity::Ok, 500.0, None),
            (Severity::Ok, None)
        );
        // Samples far apart are not one stretch.
        let (_, p) = at(0, false).step(&th, Severity::Ok, 500.0, None);
        let (lvl, p) = at(600, false).step(&th, Severity::Ok, 500.0, p);
        assert_eq!(lvl, Severity::Ok);
        assert_eq!(p.unwrap().since, t0 + chrono::Duration::seconds(600));
    }

    #[test]
    fn thresholds_follow_the_limit_unless_set() {
        let mut s = Settings::default();
        s.resources.memory.limit = crate::state::config::units::Bytes(512 << 20);
        let th = mem_thresholds(&s, 0);
        assert_eq!(th.warning, Some(512.0 * 1048576.0 * 0.85));
        assert_eq!(th.critical, Some(512.0 * 1048576.0 * 0.95));
        let th = cpu_thresholds(&s);
        assert_eq!((th.warning, th.critical), (Some(400.0), Some(475.0)));
        s.alerts.cpu_critical_percent = 0.0;
        s.resources.cpu.warning_threshold = Some(crate::state::config::units::Cpu(100));
        let th = cpu_thresholds(&s);
        assert_eq!((th.warning, th.critical), (Some(100.0), None));
    }
}
