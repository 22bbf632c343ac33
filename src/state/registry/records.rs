//! What features record on an instance entry: its worktree, the level of
//! each resource alert, whether `health watch` gave up on it. Typed here
//! (older versions kept them as untyped extra keys: the JSON is the same).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;

/// The git worktree an instance works in (`--worktree NAME`): on disk
/// `"worktree": {"name", "branch", "path", "repo"}`. A field missing (a
/// hand-edited or older entry) reads as empty, so what is there is still
/// shown and written back; no git work is done on an empty path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorktreeInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub repo: PathBuf,
    /// The branch of the main checkout the worktree was based on and lands
    /// into (`main`); none for a worktree made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Fields a newer version added, kept through a rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_empty_path(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

impl WorktreeInfo {
    pub fn new(name: String, branch: String, path: PathBuf, repo: PathBuf) -> Self {
        WorktreeInfo {
            name,
            branch,
            path,
            repo,
            base: None,
            extra: Map::new(),
        }
    }
}

/// A clone instance (`--clone`): its project is a copy of the repository
/// in a volume of the engine, not a mount. On disk `"clone": {"repo",
/// "branch", "volume"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneInfo {
    /// The host repository it was cloned from (its top), where `fetch`
    /// brings the work back.
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub repo: PathBuf,
    /// The agent's branch in the box.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// The engine volume holding the clone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume: String,
    /// The branch the host repository was on when the clone was sent:
    /// where `land` brings the work (none: a detached `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Fields a newer version added, kept through a rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How far a measured value is over its thresholds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Ok,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert is about; written `HIGH_CPU`, `HIGH_MEM`,
/// `RECOVERY_FAILED` (events, `AI_ALERT_KIND`, the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    HighCpu,
    HighMem,
    RecoveryFailed,
    /// An instance's brokered calls at 80 % (warning) or 100 % (critical)
    /// of `budget.instance_usd`.
    Budget,
    /// The home's brokered calls today at 80 % or 100 % of
    /// `budget.daily_usd`.
    DailyBudget,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::HighCpu => "HIGH_CPU",
            AlertKind::HighMem => "HIGH_MEM",
            AlertKind::RecoveryFailed => "RECOVERY_FAILED",
            AlertKind::Budget => "BUDGET",
            AlertKind::DailyBudget => "DAILY_BUDGET",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level each threshold alert is at (`"alerts": {"HIGH_CPU":
/// "warning", …}`), so every sampler agrees on what was already raised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertLevels {
    #[serde(
        rename = "HIGH_CPU",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::schema::lenient"
    )]
    pub high_cpu: Option<Severity>,
    #[serde(
        rename = "HIGH_MEM",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::schema::lenient"
    )]
    pub high_mem: Option<Severity>,
    #[serde(
        rename = "BUDGET",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::schema::lenient"
    )]
    pub budget: Option<Severity>,
    /// Resource alerts above their level but not yet for long enough
    /// (`alerts.sustain`), by kind (`HIGH_CPU`).
    #[serde(
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty",
        deserialize_with = "super::schema::lenient_or_default"
    )]
    pub pressure: std::collections::BTreeMap<String, Pressure>,
    /// Alerts a newer version added, kept through a rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AlertLevels {
    /// The recorded level of `kind` (`Ok` when none is).
    pub fn level(&self, kind: AlertKind) -> Severity {
        match kind {
            AlertKind::HighCpu => self.high_cpu,
            AlertKind::HighMem => self.high_mem,
            AlertKind::Budget => self.budget,
            // Home-wide: kept in `Registry::daily_budget`.
            AlertKind::RecoveryFailed | AlertKind::DailyBudget => None,
        }
        .unwrap_or_default()
    }

    /// Records the level of a threshold alert (`RecoveryFailed` has none).
    pub fn set(&mut self, kind: AlertKind, level: Severity) {
        match kind {
            AlertKind::HighCpu => self.high_cpu = Some(level),
            AlertKind::HighMem => self.high_mem = Some(level),
            AlertKind::Budget => self.budget = Some(level),
            AlertKind::RecoveryFailed | AlertKind::DailyBudget => {}
        }
    }
}

/// A value above its alert's level since `since`, last sampled at `seen`,
/// high enough for `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub level: Severity,
    pub since: chrono::DateTime<chrono::Utc>,
    pub seen: chrono::DateTime<chrono::Utc>,
}

/// The level the home's daily budget alert reached on `day` (UTC): a new
/// day starts at `ok` again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayAlert {
    pub day: chrono::NaiveDate,
    pub level: Severity,
}

impl DayAlert {
    /// The level recorded for `day` (`Ok` when another day's is).
    pub fn level_on(this: Option<&DayAlert>, day: chrono::NaiveDate) -> Severity {
        this.filter(|a| a.day == day)
            .map_or(Severity::Ok, |a| a.level)
    }
}

/// What `health watch` concluded about healing an instance: `"failed"`,
/// it gave up (nothing heals it again until it is started anew).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recovery {
    Failed,
}
/// The last health check's word on an instance (`health.status`):
/// `healthy`, `unhealthy`, `starting`, or the status of one that was not
/// live. A word this version does not know is kept as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Starting,
    Other(String),
}

impl HealthStatus {
    pub fn as_str(&self) -> &str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Starting => "starting",
            HealthStatus::Other(s) => s,
        }
    }
}

impl Default for HealthStatus {
    fn default() -> Self {
        HealthStatus::Other(String::new())
    }
}

impl From<String> for HealthStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "healthy" => HealthStatus::Healthy,
            "unhealthy" => HealthStatus::Unhealthy,
            "starting" => HealthStatus::Starting,
            _ => HealthStatus::Other(s),
        }
    }
}

impl From<HealthStatus> for String {
    fn from(h: HealthStatus) -> String {
        match h {
            HealthStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
