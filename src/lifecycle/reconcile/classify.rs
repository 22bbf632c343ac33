//! Reconcile's decision, made without asking anything: from an entry and
//! the facts observed about it to what the registry should say.

use super::observe::{Facts, Seen};
use crate::core::types::Status;
use crate::engine::state::ContainerState;
use crate::state::registry::{Instance, RuntimeKind};

/// What reconcile does with one live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// What it says is true, or cannot be known now.
    Leave,
    /// Its container runs (or is paused) though the entry says otherwise:
    /// recorded so, with the container (a start that died after creating
    /// it recorded none).
    Runs {
        status: Status,
        reason: &'static str,
        container: String,
    },
    /// It is over: recorded as `end` says.
    Ended(End),
}

/// How an entry ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct End {
    pub status: Status,
    pub reason: String,
    pub exit_code: Option<i64>,
    /// Its container, recorded on an entry that has none yet.
    pub adopt: Option<String>,
    /// Its container, whose output is saved and which (`auto_cleanup`) is
    /// removed once the end is recorded.
    pub collect: Option<String>,
    /// A container that no entry recorded (an interrupted start's): removed
    /// (output saved) before the end is recorded.
    pub remove_first: Option<String>,
}

impl End {
    fn new(status: Status, reason: impl Into<String>) -> Self {
        End {
            status,
            reason: reason.into(),
            exit_code: None,
            adopt: None,
            collect: None,
            remove_first: None,
        }
    }
}

fn ended(status: Status, reason: impl Into<String>) -> Decision {
    Decision::Ended(End::new(status, reason))
}

/// What the registry should say of the live entry `inst`, given `facts`.
pub(super) fn classify(inst: &Instance, facts: &Facts) -> Decision {
    if facts.young {
        return Decision::Leave;
    }
    // Seed-format entries carry no runtime: infer it from what they hold.
    let runtime = inst.runtime.or_else(|| {
        if inst.container_id.is_some() {
            Some(RuntimeKind::Docker)
        } else {
            inst.pid.map(|_| RuntimeKind::Host)
        }
    });
    match runtime {
        Some(RuntimeKind::Docker) => in_container(inst, facts),
        // Without a start time (a seed-format entry) the pid may be
        // anyone's by now: never taken for the agent.
        Some(RuntimeKind::Host) if facts.process_alive => Decision::Leave,
        Some(RuntimeKind::Host) => match &facts.setup_failure {
            Some(why) => ended(Status::Error, why.clone()),
            None => ended(Status::Stopped, "agent process ended"),
        },
        None if inst.status == Status::Initializing => {
            ended(Status::Error, "start was interrupted")
        }
        None => ended(Status::Stopped, "no container or process recorded"),
    }
}

fn in_container(inst: &Instance, facts: &Facts) -> Decision {
    let found = match &facts.container {
        Seen::Unknown => return Decision::Leave,
        Seen::Gone => None,
        Seen::Found(o) => Some(o),
    };
    // A start whose starter died (the entry is past the grace): a stop
    // handed to it is carried out here, else the container it left (if
    // any) is recorded as it is.
    if inst.status == Status::Initializing {
        if let Some(m) = &inst.stopping {
            return Decision::Ended(End {
                remove_first: found.map(|o| o.container_id.clone()),
                ..End::new(Status::Stopped, m.reason.clone())
            });
        }
        match found {
            None => return ended(Status::Error, "start was interrupted"),
            // Its start request may still be under way in the engine:
            // removed for good before saying so.
            Some(o) if o.state == ContainerState::Created => {
                return Decision::Ended(End {
                    remove_first: Some(o.container_id.clone()),
                    ..End::new(
                        Status::Error,
                        "start was interrupted (container created but never started)",
                    )
                })
            }
            Some(_) => {}
        }
    }
    let Some(o) = found else {
        return ended(Status::Stopped, "container removed outside ai-sessctl");
    };
    if inst
        .container_id
        .as_deref()
        .is_some_and(|c| c != o.container_id)
    {
        return ended(Status::Stopped, "container replaced outside ai-sessctl");
    }
    match o.state {
        ContainerState::Running if inst.status != Status::Running => Decision::Runs {
            status: Status::Running,
            reason: "running",
            container: o.container_id.clone(),
        },
        ContainerState::Paused if inst.status != Status::Paused => Decision::Runs {
            status: Status::Paused,
            reason: "paused outside ai-sessctl",
            container: o.container_id.clone(),
        },
        // A terminal attached to it sees the end and records it (with its
        // exit code, as the user saw it): not a crash behind anyone's back.
        s if s.has_ended() && facts.attached => Decision::Leave,
        // Being stopped: the stopper saves the logs and removes the
        // container.
        s if s.has_ended() => match &facts.stopping {
            Some(why) => Decision::Ended(End {
                exit_code: o.exit_code,
                ..End::new(Status::Stopped, why.clone())
            }),
            None => {
                let (status, reason) = match o.exit_code {
                    Some(c) if c != 0 && facts.setup_failure.is_some() => (
                        Status::Error,
                        facts.setup_failure.clone().unwrap_or_default(),
                    ),
                    Some(0) => (Status::Stopped, "agent exited".to_owned()),
                    Some(c) => (Status::Error, format!("agent exited with code {c}")),
                    None => (Status::Error, "container died".to_owned()),
                };
                Decision::Ended(End {
                    exit_code: o.exit_code,
                    adopt: Some(o.container_id.clone()),
                    collect: Some(o.container_id.clone()),
                    ..End::new(status, reason)
                })
            }
        },
        ContainerState::Created => Decision::Ended(End {
            collect: Some(o.container_id.clone()),
            ..End::new(Status::Error, "container created but never started")
        }),
        _ => Decision::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::ContainerState as S;
    use crate::lifecycle::Observed;
    use crate::state::registry::StopMarker;

    fn entry(status: &str, runtime: Option<&str>, container: Option<&str>) -> Instance {
        let mut v = serde_json::json!({
            "id": "p-claude", "project_name": "p", "mode": "claude",
            "status": status, "port": 41000,
        });
        if let Some(r) = runtime {
            v["runtime"] = r.into();
        }
        if let Some(c) = container {
            v["container_id"] = c.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn docker(status: &str) -> Instance {
        entry(status, Some("docker"), Some("c1"))
    }

    fn facts(container: Seen) -> Facts {
        Facts {
            young: false,
            container,
            process_alive: false,
            attached: false,
            stopping: None,
            setup_failure: None,
        }
    }

    fn seen(cid: &str, state: S, exit_code: Option<i64>) -> Seen {
        Seen::Found(Observed {
            container_id: cid.into(),
            state,
            exit_code,
            health: None,
            labels: Default::default(),
        })
    }

    fn end_of(d: Decision) -> End {
        match d {
            Decision::Ended(e) => e,
            other => panic!("not an end: {other:?}"),
        }
    }

    #[test]
    fn what_is_not_known_is_left_alone() {
        assert_eq!(
            classify(&docker("running"), &facts(Seen::Unknown)),
            Decision::Leave
        );
        let young = Facts {
            young: true,
            ..facts(Seen::Gone)
        };
        assert_eq!(classify(&docker("initializing"), &young), Decision::Leave);
        let same = facts(seen("c1", S::Running, None));
        assert_eq!(classify(&docker("running"), &same), Decision::Leave);
    }

    #[test]
    fn a_container_that_runs_is_recorded() {
        let d = classify(
            &docker("initializing"),
            &facts(seen("c1", S::Running, None)),
        );
        assert_eq!(
            d,
            Decision::Runs {
                status: Status::Running,
                reason: "running",
                container: "c1".into()
            }
        );
        let d = classify(&docker("running"), &facts(seen("c1", S::Paused, None)));
        assert!(matches!(
            d,
            Decision::Runs {
                status: Status::Paused,
                ..
            }
        ));
    }

    #[test]
    fn ended_containers_end_their_entries() {
        let e = end_of(classify(
            &docker("running"),
            &facts(seen("c1", S::Exited, Some(0))),
        ));
        assert_eq!(
            (e.status, e.reason.as_str()),
            (Status::Stopped, "agent exited")
        );
        assert_eq!(e.collect.as_deref(), Some("c1"));
        let e = end_of(classify(
            &docker("running"),
            &facts(seen("c1", S::Dead, Some(137))),
        ));
        assert_eq!(
            (e.status, e.reason.as_str(), e.exit_code),
            (Status::Error, "agent exited with code 137", Some(137))
        );
        let e = end_of(classify(
            &docker("running"),
            &facts(seen("c1", S::Exited, None)),
        ));
        assert_eq!(e.reason, "container died");
        // A failed worktree setup says why.
        let f = Facts {
            setup_failure: Some("worktree.setup failed".into()),
            ..facts(seen("c1", S::Exited, Some(2)))
        };
        let e = end_of(classify(&docker("running"), &f));
        assert_eq!(
            (e.status, e.reason.as_str()),
            (Status::Error, "worktree.setup failed")
        );
        // A stop under way: its stopper collects the container.
        let f = Facts {
            stopping: Some("stopped by user".into()),
            ..facts(seen("c1", S::Exited, Some(137)))
        };
        let e = end_of(classify(&docker("running"), &f));
        assert_eq!(
            (e.status, e.reason.as_str()),
            (Status::Stopped, "stopped by user")
        );
        assert_eq!((e.collect, e.adopt), (None, None));
        // An attached terminal records the end itself.
        let f = Facts {
            attached: true,
            ..facts(seen("c1", S::Exited, Some(1)))
        };
        assert_eq!(classify(&docker("running"), &f), Decision::Leave);
    }

    #[test]
    fn containers_gone_or_replaced() {
        let e = end_of(classify(&docker("running"), &facts(Seen::Gone)));
        assert_eq!(e.reason, "container removed outside ai-sessctl");
        let e = end_of(classify(
            &docker("running"),
            &facts(seen("c2", S::Running, None)),
        ));
        assert_eq!(e.reason, "container replaced outside ai-sessctl");
        let e = end_of(classify(
            &docker("running"),
            &facts(seen("c1", S::Created, None)),
        ));
        assert_eq!(
            (e.status, e.collect.as_deref()),
            (Status::Error, Some("c1"))
        );
    }

    #[test]
    fn interrupted_starts() {
        let start = entry("initializing", Some("docker"), None);
        let e = end_of(classify(&start, &facts(Seen::Gone)));
        assert_eq!(
            (e.status, e.reason.as_str()),
            (Status::Error, "start was interrupted")
        );
        let e = end_of(classify(&start, &facts(seen("c9", S::Created, None))));
        assert_eq!(e.remove_first.as_deref(), Some("c9"));
        let mut handed = start.clone();
        handed.stopping = Some(StopMarker {
            reason: "stopped by user".into(),
            by: None,
        });
        let e = end_of(classify(&handed, &facts(seen("c9", S::Running, None))));
        assert_eq!(
            (e.status, e.reason.as_str(), e.remove_first.as_deref()),
            (Status::Stopped, "stopped by user", Some("c9"))
        );
    }

    #[test]
    fn host_agents_and_entries_without_a_runtime() {
        let mut host = entry("running", Some("host"), None);
        host.pid = Some(4242);
        let alive = Facts {
            process_alive: true,
            ..facts(Seen::Unknown)
        };
        assert_eq!(classify(&host, &alive), Decision::Leave);
        let e = end_of(classify(&host, &facts(Seen::Unknown)));
        assert_eq!(
            (e.status, e.reason.as_str()),
            (Status::Stopped, "agent process ended")
        );
        let e = end_of(classify(
            &entry("running", None, None),
            &facts(Seen::Unknown),
        ));
        assert_eq!(e.reason, "no container or process recorded");
        let e = end_of(classify(
            &entry("initializing", None, None),
            &facts(Seen::Unknown),
        ));
        assert_eq!(e.reason, "start was interrupted");
        // A seed-format entry with a container is a Docker one.
        let seed = entry("running", None, Some("c1"));
        let e = end_of(classify(&seed, &facts(Seen::Gone)));
        assert_eq!(e.reason, "container removed outside ai-sessctl");
    }
}
