//! The registry file format: the seed's schema plus our additions. Every
//! object keeps fields it does not know in `extra`, so a newer version's
//! data survives a rewrite by this one.

use super::records::{AlertLevels, CloneInfo, DayAlert, Recovery, WorktreeInfo};
use crate::core::types::{Activity, InstanceId, Mode, Port, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub instances: BTreeMap<InstanceId, Instance>,
    /// Ports set aside by `port alloc --for ID` before an instance exists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserved_ports: BTreeMap<String, Reservation>,
    /// How far today's brokered calls of the whole home are over
    /// `budget.daily_usd` (so the alert is raised once per crossing).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub daily_budget: Option<DayAlert>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub instance: InstanceId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Docker,
    Host,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    #[serde(default)]
    pub project_path: String,
    pub project_name: String,
    pub mode: Mode,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Start time of `pid` (clock ticks since boot), so a reused pid is
    /// never mistaken for our process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// The host address `port` is published on (absent: 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<std::net::IpAddr>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub timestamps: Timestamps,
    #[serde(default)]
    pub config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The interactive shell that started the instance (for `shell-exit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The egress policy it runs under (`networking.egress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::state::config::EgressPolicy>,
    /// Its API key is added outside the box, by the broker in its sidecar.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub brokered: bool,
    /// `--egress` given at start: a restart keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_flag: Option<crate::state::config::EgressPolicy>,
    /// Why the status last changed when it was not the user's doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default)]
    pub restarts: u32,
    /// What the agent last reported (see `crate::features::activity`).
    #[serde(default)]
    pub activity: Activity,
    /// When `activity` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_since: Option<DateTime<Utc>>,
    /// The `activity_since` of the change last notified (or judged not
    /// worth a notification), so each change is considered once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_notified: Option<DateTime<Utc>>,
    /// The rate limit on the events its activity changes log (the box
    /// writes its activity: see `crate::state::registry::LogBudget`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub activity_log: Option<crate::state::registry::LogBudget>,
    /// While `initializing`: the process that is starting it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub starter: Option<ProcRef>,
    /// A stop under way (or handed to the starter while `initializing`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub stopping: Option<StopMarker>,
    /// `health watch` is restarting it (this process); a user's stop
    /// clears it, and the heal goes ahead only while it is still there.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub healing: Option<ProcRef>,
    /// Terminals attached right now (`run`/`attach` processes), each with
    /// the shell it runs in: ownership passes to one of them when the
    /// owner's shell exits, and while one is attached it records the
    /// agent's end itself.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_vec"
    )]
    pub clients: Vec<Client>,
    /// The arguments the user gave the agent at its start (not ours: hook
    /// settings, resume arguments), so a resume, `claude` after an engine
    /// restart and `restart` run it as it was. User-typed; API keys go by
    /// environment variable name, never here.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_vec"
    )]
    pub args: Vec<String>,
    /// The git worktree it works in (`--worktree`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub worktree: Option<WorktreeInfo>,
    /// The clone it works in (`--clone`): none for a mounted project.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub clone: Option<CloneInfo>,
    /// The engine its container runs on (`unix:///var/run/docker.sock`,
    /// `ssh://user@host`, …), as the start found it: a shell that reaches
    /// another engine must not take the container for gone.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub engine: Option<String>,
    /// The level each resource alert is at (see
    /// `crate::features::monitor::alerts`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub alerts: Option<AlertLevels>,
    /// `health watch` gave up healing it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub recovery: Option<Recovery>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One attached terminal: the attaching process and its shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    #[serde(flatten)]
    pub process: ProcRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ProcRef>,
}

impl Instance {
    /// Attached terminals whose process still runs.
    pub fn live_clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.iter().filter(|c| c.process.alive())
    }
}

/// A process of ours, named with its start time so that a reused pid is
/// never taken for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

impl ProcRef {
    pub fn me() -> Self {
        let pid = std::process::id();
        ProcRef {
            pid,
            start_time: crate::core::procinfo::start_time(pid),
        }
    }

    /// Alive and the same process (an unknown start time is trusted: these
    /// are always written with one, by us).
    pub fn alive(&self) -> bool {
        crate::core::procinfo::alive(self.pid, self.start_time)
    }
}

/// Who stops an instance, and why. `by: None` is a stop handed to the
/// starter of an `initializing` instance (it carries it out when its
/// launch completes); otherwise the stop holds while `by` runs, so a
/// stopper killed before it reached the engine leaves no lasting mark.
/// On disk `{"reason", "pid", "start_time"}`; a bare reason string (the
/// older form of a handed stop) still loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct StopMarker {
    pub reason: String,
    #[serde(flatten)]
    pub by: Option<ProcRef>,
}

impl TryFrom<Value> for StopMarker {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match v {
            Value::String(reason) => Ok(StopMarker { reason, by: None }),
            Value::Object(m) => {
                let reason = m
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stopped")
                    .to_owned();
                let by = m
                    .get("pid")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .map(|pid| ProcRef {
                        pid,
                        start_time: m.get("start_time").and_then(Value::as_u64),
                    });
                Ok(StopMarker { reason, by })
            }
            other => Err(format!("not a stop marker: {other}")),
        }
    }
}

impl StopMarker {
    /// The reason, while the stop still holds: handed to the starter, or
    /// its stopper still runs.
    pub fn in_force(&self) -> Option<&str> {
        self.by
            .as_ref()
            .is_none_or(ProcRef::alive)
            .then_some(self.reason.as_str())
    }
}

fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(lenient(d)?.unwrap_or_default())
}

/// [`lenient`], an unreadable value read as the type's empty one.
pub(super) fn lenient_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(lenient(d)?.unwrap_or_default())
}

/// Markers are advisory: one this version cannot read is dropped rather
/// than making the whole registry unreadable.
pub(super) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<String>,
    /// When the usage above was sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timestamps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Health {
    pub status: super::HealthStatus,
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Instance {
    /// Where the agent's port can be reached, as the user types it:
    /// `127.0.0.1:9001`, `[::]:9001`.
    pub fn address(&self) -> String {
        let ip = self
            .bind
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        std::net::SocketAddr::new(ip, self.port.get()).to_string()
    }

    /// Whether its port is published now: a live instance that does not
    /// run with `egress = "none"` (which publishes nothing). A stopped
    /// instance's port may be another's by now.
    pub fn publishes_port(&self) -> bool {
        self.status.is_live() && self.egress != Some(crate::state::config::EgressPolicy::None)
    }

    /// A live instance whose agent waits for an answer
    /// ([`crate::core::types::Activity::needs_you`]); a stopped one's last
    /// word is history.
    pub fn needs_you(&self) -> bool {
        self.status.is_live() && self.activity.needs_you()
    }
}

impl Registry {
    /// Checks what the types alone cannot: keys match ids.
    pub fn validate(&self) -> Result<(), String> {
        for (key, inst) in &self.instances {
            if key != &inst.id {
                return Err(format!(
                    "instance under key {:?} has id {:?}",
                    key.as_str(),
                    inst.id.as_str()
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.get(id)
    }

    /// Ports held by live instances and reservations.
    pub fn held_ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.instances
            .values()
            .filter(|i| i.status.is_live())
            .map(|i| i.port)
            .chain(
                self.reserved_ports
                    .keys()
                    .filter_map(|p| p.parse::<Port>().ok()),
            )
    }

    pub fn live_count(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.status.is_live())
            .count()
    }

    /// How many instances need you (see [`Instance::needs_you`]).
    pub fn needs_you_count(&self) -> usize {
        self.instances.values().filter(|i| i.needs_you()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::{AlertKind, HealthStatus, Recovery, Severity};
    use super::*;

    const SEED: &str = r#"{
  "instances": {
    "project-a-claude": {
      "id": "project-a-claude",
      "project_path": "/Users/dev/project-a",
      "project_name": "project-a",
      "mode": "claude",
      "status": "running",
      "pid": 12345,
      "container_id": "abc123def456",
      "port": 9001,
      "socket_path": "/Users/dev/.ai-sessions/sockets/project-a-claude.sock",
      "resources": {"memory_limit": "1Gi", "cpu_limit": "500m", "memory_usage": "512Mi", "cpu_usage": "15%"},
      "timestamps": {"created": "2025-12-11T10:30:00Z", "started": "2025-12-11T10:30:05Z", "last_health_check": "2025-12-11T10:35:00Z"},
      "config": {"model": "claude-3-5-sonnet-20241022", "max_tokens": 4096, "temperature": 0.7}
    }
  }
}"#;

    #[test]
    fn seed_file_loads_and_round_trips() {
        let r: Registry = serde_json::from_str(SEED).unwrap();
        r.validate().unwrap();
        let i = &r.instances[&InstanceId::parse("project-a-claude").unwrap()];
        assert_eq!(i.port.get(), 9001);
        assert_eq!(i.status, Status::Running);
        assert_eq!(i.config["max_tokens"], 4096);
        let again: Registry = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again.instances.len(), 1);
        // A registry without activity loads as unknown and says so after.
        assert_eq!(i.activity, crate::core::types::Activity::Unknown);
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["instances"]["project-a-claude"]["activity"], "unknown");
    }

    #[test]
    fn unknown_fields_survive() {
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        v["future"] = serde_json::json!({"x": 1});
        v["instances"]["project-a-claude"]["gpu"] = serde_json::json!("a100");
        v["instances"]["project-a-claude"]["timestamps"]["frozen"] = serde_json::json!("t");
        let r: Registry = serde_json::from_value(v).unwrap();
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["future"]["x"], 1);
        assert_eq!(out["instances"]["project-a-claude"]["gpu"], "a100");
        assert_eq!(
            out["instances"]["project-a-claude"]["timestamps"]["frozen"],
            "t"
        );
    }

    #[test]
    fn markers_load_in_every_form_and_round_trip() {
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        let e = &mut v["instances"]["project-a-claude"];
        e["stopping"] = serde_json::json!("removed");
        e["starter"] = serde_json::json!({"pid": 7, "start_time": 9});
        let r: Registry = serde_json::from_value(v.clone()).unwrap();
        let i = r.instances.values().next().unwrap();
        assert_eq!(
            i.stopping,
            Some(StopMarker {
                reason: "removed".into(),
                by: None
            })
        );
        assert_eq!(i.starter.as_ref().unwrap().pid, 7);
        assert!(i.extra.is_empty(), "{:?}", i.extra);
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(
            out["instances"]["project-a-claude"]["stopping"],
            serde_json::json!({"reason": "removed"})
        );
        let again: Registry = serde_json::from_value(out).unwrap();
        assert_eq!(
            again.instances.values().next().unwrap().stopping,
            i.stopping
        );

        let e = &mut v["instances"]["project-a-claude"];
        e["stopping"] = serde_json::json!({"reason": "user", "pid": 5, "start_time": 1});
        let r: Registry = serde_json::from_value(v.clone()).unwrap();
        let m = r
            .instances
            .values()
            .next()
            .unwrap()
            .stopping
            .clone()
            .unwrap();
        assert_eq!(m.by.unwrap().start_time, Some(1));
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["instances"]["project-a-claude"]["stopping"]["pid"], 5);

        // Unreadable markers are dropped, the registry still loads.
        let e = &mut v["instances"]["project-a-claude"];
        e["stopping"] = serde_json::json!(42);
        e["starter"] = serde_json::json!("me");
        let r: Registry = serde_json::from_value(v).unwrap();
        let i = r.instances.values().next().unwrap();
        assert!(i.stopping.is_none() && i.starter.is_none());
    }

    /// `health.status` loads typed; a word this version does not know is
    /// written back as it was.
    #[test]
    fn health_status_is_typed_and_keeps_unknown_words() {
        for (word, typed) in [
            ("healthy", Some(HealthStatus::Healthy)),
            ("unhealthy", Some(HealthStatus::Unhealthy)),
            ("starting", Some(HealthStatus::Starting)),
            ("stopped", None),
            ("degraded", None),
        ] {
            let mut v: Value = serde_json::from_str(SEED).unwrap();
            v["instances"]["project-a-claude"]["health"] =
                serde_json::json!({"status": word, "failures": 2});
            let r: Registry = serde_json::from_value(v).unwrap();
            let h = r.instances.values().next().unwrap().health.clone().unwrap();
            if let Some(t) = typed {
                assert_eq!(h.status, t);
            }
            assert_eq!(h.status.as_str(), word);
            let out = serde_json::to_value(&r).unwrap();
            assert_eq!(
                out["instances"]["project-a-claude"]["health"]["status"],
                serde_json::json!(word)
            );
        }
    }

    /// Registries written when `worktree`, `alerts` and `recovery` were
    /// untyped extra keys load into the typed fields and are written back
    /// the same, with keys this version does not know.
    #[test]
    fn recorded_extras_load_typed_and_round_trip() {
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        v["future"] = serde_json::json!([1, 2]);
        let e = &mut v["instances"]["project-a-claude"];
        e["worktree"] = serde_json::json!({
            "name": "fix", "branch": "ai/fix",
            "path": "/src/p.worktrees/fix", "repo": "/src/p",
            "base": "main"
        });
        e["alerts"] =
            serde_json::json!({"HIGH_CPU": "warning", "HIGH_MEM": "ok", "HIGH_GPU": "critical"});
        e["recovery"] = serde_json::json!("failed");
        e["gpu"] = serde_json::json!({"model": "a100"});
        let r: Registry = serde_json::from_value(v.clone()).unwrap();
        let i = r.instances.values().next().unwrap();
        let w = i.worktree.as_ref().unwrap();
        assert_eq!((w.name.as_str(), w.branch.as_str()), ("fix", "ai/fix"));
        assert_eq!(w.path, std::path::Path::new("/src/p.worktrees/fix"));
        let a = i.alerts.as_ref().unwrap();
        assert_eq!(a.level(AlertKind::HighCpu), Severity::Warning);
        assert_eq!(a.level(AlertKind::HighMem), Severity::Ok);
        assert_eq!(i.recovery, Some(Recovery::Failed));
        assert_eq!(
            i.extra.keys().collect::<Vec<_>>(),
            ["gpu"],
            "only unknown keys stay untyped"
        );
        let mut expected = v.clone();
        // What this version adds to every registry and entry it writes.
        expected["version"] = Value::Null;
        expected["instances"]["project-a-claude"]["activity"] = serde_json::json!("unknown");
        expected["instances"]["project-a-claude"]["restarts"] = serde_json::json!(0);
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out, expected);
        // And again: what was written reads back to the same.
        let again: Registry = serde_json::from_value(out.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), out);

        // An empty alert record stays one; absent ones stay absent.
        let e = &mut v["instances"]["project-a-claude"];
        e["alerts"] = serde_json::json!({});
        e.as_object_mut().unwrap().remove("worktree");
        e.as_object_mut().unwrap().remove("recovery");
        let out = serde_json::to_value(serde_json::from_value::<Registry>(v).unwrap()).unwrap();
        let e = &out["instances"]["project-a-claude"];
        assert_eq!(e["alerts"], serde_json::json!({}));
        assert!(e.get("worktree").is_none() && e.get("recovery").is_none());
    }

    /// What a recorded field this version cannot read is dropped, as an
    /// unreadable marker is: the registry still loads.
    #[test]
    fn unreadable_records_are_dropped() {
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        let e = &mut v["instances"]["project-a-claude"];
        e["worktree"] = serde_json::json!("fix");
        e["alerts"] = serde_json::json!({"HIGH_CPU": "scorching", "HIGH_MEM": "critical"});
        e["recovery"] = serde_json::json!("maybe");
        let r: Registry = serde_json::from_value(v).unwrap();
        let i = r.instances.values().next().unwrap();
        assert!(i.worktree.is_none() && i.recovery.is_none());
        // A worktree record missing fields still loads, and is written
        // back with what it had.
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        v["instances"]["project-a-claude"]["worktree"] =
            serde_json::json!({"branch": "ai/fix", "name": "fix"});
        let r: Registry = serde_json::from_value(v).unwrap();
        let w = r
            .instances
            .values()
            .next()
            .unwrap()
            .worktree
            .clone()
            .unwrap();
        assert_eq!((w.name.as_str(), w.branch.as_str()), ("fix", "ai/fix"));
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(
            out["instances"]["project-a-claude"]["worktree"]["branch"],
            "ai/fix"
        );
        let a = i.alerts.as_ref().unwrap();
        assert_eq!(a.level(AlertKind::HighCpu), Severity::Ok);
        assert_eq!(a.level(AlertKind::HighMem), Severity::Critical);
    }

    #[test]
    fn bad_values_are_rejected() {
        for (field, value) in [
            ("status", serde_json::json!("sleeping")),
            ("port", serde_json::json!(80)),
            ("port", serde_json::json!("9001")),
            ("id", serde_json::json!("../../etc-claude")),
            ("mode", serde_json::json!("cl aude")),
        ] {
            let mut v: Value = serde_json::from_str(SEED).unwrap();
            v["instances"]["project-a-claude"][field] = value;
            let r = serde_json::from_value::<Registry>(v);
            assert!(r.is_err() || r.unwrap().validate().is_err(), "{field}");
        }
        let mut v: Value = serde_json::from_str(SEED).unwrap();
        v["instances"]["project-a-claude"]["id"] = serde_json::json!("other-claude");
        assert!(serde_json::from_value::<Registry>(v)
            .unwrap()
            .validate()
            .is_err());
    }
}
