//! The checks that apply to an instance: container running, the image's own
//! HEALTHCHECK, the port answering (when the agent listens), the socket
//! answering (when it exists), the host process alive with its start time.

use crate::core::error::Result;
use crate::core::types::{InstanceId, Status};
use crate::engine::state::{ContainerState, HealthState};
use crate::lifecycle::docker::DockerEngine;
use crate::lifecycle::Observed;
use crate::state::context::Ctx;
use crate::state::registry::{Health, Instance, RuntimeKind};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub status: Verdict,
    pub checks: Vec<Check>,
}

/// What a health check concluded about an instance; written (JSON, the
/// registry, the terminal) as `healthy`, `unhealthy`, `starting`,
/// `unknown`, or the status of one that is not live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// Its start, or its image's HEALTHCHECK, has not finished yet.
    Starting,
    /// The engine did not answer: nothing is known (not recorded).
    Unknown,
    /// Not live (`stopped`; `error` is `Unhealthy`): not checked.
    NotLive(Status),
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy => "unhealthy",
            Verdict::Starting => "starting",
            Verdict::Unknown => "unknown",
            Verdict::NotLive(s) => s.as_str(),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Report {
    pub fn unhealthy(&self) -> bool {
        self.status == Verdict::Unhealthy
    }

    /// The engine's error when it could not be asked about this instance.
    pub fn outage(&self) -> Option<&str> {
        (self.status == Verdict::Unknown)
            .then(|| self.checks.iter().find(|c| c.name == "engine"))
            .flatten()
            .map(|c| c.detail.as_str())
    }
}

/// Whether something serves the port. Docker's userland proxy accepts on a
/// published port even when nothing listens in the container, then closes
/// the connection at once: an immediate end of stream is not an answer.
fn port_answers(bind: std::net::IpAddr, port: u16, timeout: Duration) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&SocketAddr::new(bind, port), timeout) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(timeout.min(Duration::from_millis(300))));
    let mut buf = [0u8; 1];
    match std::io::Read::read(&mut conn, &mut buf) {
        Ok(n) => n > 0,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn socket_answers(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The check of an allowlist instance's proxy: its only way out, and the
/// way in to its port. `None` when the sidecars could not be listed.
fn sidecar_check(
    inst: &Instance,
    sidecars: Option<&HashMap<String, ContainerState>>,
) -> Option<Check> {
    let proxied = inst.egress == Some(crate::state::config::EgressPolicy::Allowlist);
    if !(proxied || inst.brokered) || inst.status != Status::Running {
        return None;
    }
    let state = sidecars?.get(inst.id.as_str());
    Some(Check {
        name: if proxied { "egress-proxy" } else { "broker" },
        ok: state == Some(&ContainerState::Running),
        detail: match state {
            Some(s) => s.to_string(),
            None => "gone (it exited, was killed or ran out of memory)".into(),
        },
    })
}

fn check_one(
    ctx: &Ctx,
    inst: &Instance,
    observed: Option<&HashMap<String, Observed>>,
    sidecars: Option<&HashMap<String, ContainerState>>,
) -> Report {
    let mut checks = Vec::new();
    let eff = ctx.effective(&inst.id).ok();
    let timeout = eff
        .as_ref()
        .map(|e| e.settings.health.timeout.0)
        .unwrap_or(Duration::from_secs(5));
    let mut starting = false;
    match inst.runtime {
        Some(RuntimeKind::Docker) => match observed.and_then(|o| o.get(inst.id.as_str())) {
            Some(o) => {
                checks.push(Check {
                    name: "container",
                    ok: matches!(o.state, ContainerState::Running | ContainerState::Paused),
                    detail: o.state.to_string(),
                });
                match o.health {
                    Some(HealthState::Unhealthy) => checks.push(Check {
                        name: "healthcheck",
                        ok: false,
                        detail: "image HEALTHCHECK reports unhealthy".into(),
                    }),
                    Some(HealthState::Healthy) => checks.push(Check {
                        name: "healthcheck",
                        ok: true,
                        detail: "healthy".into(),
                    }),
                    Some(HealthState::Starting) => starting = true,
                    None => {}
                }
            }
            None if observed.is_some() => checks.push(Check {
                name: "container",
                ok: false,
                detail: "missing".into(),
            }),
            None => checks.push(Check {
                name: "container",
                ok: false,
                detail: "engine not answering".into(),
            }),
        },
        Some(RuntimeKind::Host) => {
            let alive = inst
                .pid
                .is_some_and(|p| crate::core::procinfo::alive(p, inst.pid_start_time));
            checks.push(Check {
                name: "process",
                ok: alive,
                detail: format!("pid {}", inst.pid.unwrap_or(0)),
            });
        }
        None => {}
    }
    // Under egress = "none" nothing is published: there is no port to ask.
    let published = inst.egress != Some(crate::state::config::EgressPolicy::None);
    if eff.as_ref().is_some_and(|e| e.agent.listens) && inst.status == Status::Running && published
    {
        let bind = eff
            .as_ref()
            .map(|e| e.settings.networking.bind)
            .unwrap_or([127, 0, 0, 1].into());
        let ok = port_answers(bind, inst.port.get(), timeout);
        checks.push(Check {
            name: "port",
            ok,
            detail: format!("{bind}:{}", inst.port),
        });
    }
    if observed.is_some_and(|o| o.contains_key(inst.id.as_str())) {
        checks.extend(sidecar_check(inst, sidecars));
    }
    let sock = ctx.dirs.socket_of(&inst.id);
    if sock.exists() {
        checks.push(Check {
            name: "socket",
            ok: socket_answers(&sock),
            detail: sock.display().to_string(),
        });
    }
    let status = if checks.iter().any(|c| !c.ok) {
        Verdict::Unhealthy
    } else if starting {
        Verdict::Starting
    } else {
        Verdict::Healthy
    };
    Report {
        id: inst.id.to_string(),
        status,
        checks,
    }
}

/// Says in the event log that an instance's egress proxy is down, once:
/// when its last check did not already say so.
fn log_proxy_down(ctx: &Ctx, targets: &[&Instance], reports: &[Report]) {
    for r in reports {
        let Some(c) = r.checks.iter().find(|c| c.name == "egress-proxy" && !c.ok) else {
            continue;
        };
        let said = targets.iter().any(|i| {
            i.id.as_str() == r.id
                && i.health
                    .as_ref()
                    .and_then(|h| h.last_error.as_deref())
                    .is_some_and(|e| e.starts_with("egress-proxy:"))
        });
        if !said {
            ctx.events().log(
                crate::state::events::Level::Error,
                "health",
                "egress proxy down: the instance has no way out and its port no way in",
                serde_json::json!({"instance": r.id, "proxy": c.detail}),
            );
        }
    }
}

/// What the engine says about the instances checked: their containers, their
/// egress proxies (when one needs one), or why it could not be asked.
#[derive(Default)]
struct EngineView {
    observed: Option<HashMap<String, Observed>>,
    sidecars: Option<HashMap<String, ContainerState>>,
    /// The engine's error: reports about its instances say "unknown".
    outage: Option<String>,
}

/// Asks the engine about `targets`, when a live one is in a container.
fn ask_engine(targets: &[&Instance]) -> EngineView {
    let needs_engine = targets
        .iter()
        .any(|i| i.status.is_live() && i.runtime == Some(RuntimeKind::Docker));
    if !needs_engine {
        return EngineView::default();
    }
    // An engine that does not answer says nothing about the instances in
    // it: their reports say "unknown" (with the engine's error) and are
    // not stored.
    let proxied = targets
        .iter()
        .any(|i| i.egress == Some(crate::state::config::EgressPolicy::Allowlist) || i.brokered);
    match DockerEngine::connect().and_then(|e| {
        let sidecars = proxied
            .then(|| crate::features::egress::sidecar::observe(&e).ok())
            .flatten();
        Ok((e.observe()?, sidecars))
    }) {
        Ok((o, s)) => EngineView {
            observed: Some(o),
            sidecars: s,
            outage: None,
        },
        Err(e) => EngineView {
            outage: Some(e.to_string()),
            ..EngineView::default()
        },
    }
}

/// The report on one instance.
fn report(ctx: &Ctx, inst: &Instance, engine: &EngineView) -> Report {
    if inst.status == Status::Initializing {
        // Its container may exist but not run yet: that is a start in
        // progress, not a failure.
        Report {
            id: inst.id.to_string(),
            status: Verdict::Starting,
            checks: Vec::new(),
        }
    } else if let (Some(e), Some(RuntimeKind::Docker), true) =
        (&engine.outage, inst.runtime, inst.status.is_live())
    {
        Report {
            id: inst.id.to_string(),
            status: Verdict::Unknown,
            checks: vec![Check {
                name: "engine",
                ok: false,
                detail: e.clone(),
            }],
        }
    } else if inst.status.is_live() {
        check_one(
            ctx,
            inst,
            engine.observed.as_ref(),
            engine.sidecars.as_ref(),
        )
    } else {
        Report {
            id: inst.id.to_string(),
            status: if inst.status == Status::Error {
                Verdict::Unhealthy
            } else {
                Verdict::NotLive(inst.status)
            },
            checks: inst
                .status_reason
                .iter()
                .map(|r| Check {
                    name: "status",
                    ok: inst.status != Status::Error,
                    detail: r.clone(),
                })
                .collect(),
        }
    }
}

/// Checks live instances (or one), records the results in the registry and
/// returns one report per instance; stopped ones report their status.
pub fn check(ctx: &Ctx, only: Option<&InstanceId>) -> Result<Vec<Report>> {
    let reg = crate::lifecycle::refresh(ctx)?;
    if let Some(id) = only {
        reg.get(id)
            .ok_or_else(|| crate::core::error::Error::not_found(id))?;
    }
    let targets: Vec<&Instance> = reg
        .instances
        .values()
        .filter(|i| only.is_none_or(|id| &i.id == id))
        .collect();
    let engine = ask_engine(&targets);
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|inst| {
                let engine = &engine;
                s.spawn(move || report(ctx, inst, engine))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    // A container that ended between the reconcile above and the checks:
    // reconcile again, so the registry says so (and why) before anything
    // acts on "container: exited" (the results below are then not written).
    let ended = reports.iter().any(|r| {
        r.checks
            .iter()
            .any(|c| c.name == "container" && !c.ok && c.detail != "engine not answering")
    });
    if ended {
        let _ = crate::lifecycle::refresh(ctx);
    }
    log_proxy_down(ctx, &targets, &reports);
    record(ctx, &targets, &reports)?;
    Ok(reports)
}

/// Writes each report's result onto its entry, unless the entry was
/// restarted (new container or process) while the checks ran.
fn record(ctx: &Ctx, targets: &[&Instance], reports: &[Report]) -> Result<()> {
    let now = chrono::Utc::now();
    // What each report was about.
    let checked: HashMap<&str, (Option<&str>, Option<u32>, Status)> = targets
        .iter()
        .map(|i| (i.id.as_str(), (i.container_id.as_deref(), i.pid, i.status)))
        .collect();
    ctx.store.update(|reg| {
        for r in reports.iter().filter(|r| r.status != Verdict::Unknown) {
            let Some(inst) = reg.instances.values_mut().find(|i| i.id.as_str() == r.id) else {
                continue;
            };
            if !matches!(inst.status, Status::Running | Status::Paused)
                || checked.get(r.id.as_str())
                    != Some(&(inst.container_id.as_deref(), inst.pid, inst.status))
            {
                continue;
            }
            let failures = match (&inst.health, r.unhealthy()) {
                (Some(h), true) => h.failures + 1,
                (None, true) => 1,
                (_, false) => 0,
            };
            let last_error = r
                .checks
                .iter()
                .find(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail));
            inst.health = Some(Health {
                status: r.status.as_str().to_owned().into(),
                failures,
                last_check: Some(now),
                last_error,
                extra: Default::default(),
            });
            inst.timestamps.last_health_check = Some(now);
        }
        Ok(())
    })
}
