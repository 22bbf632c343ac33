//! What the engine says about a container: its state and the state of its
//! image's HEALTHCHECK, as types rather than the engine's words.

use std::fmt;
use std::str::FromStr;

/// A container's state, as Docker names them (Podman's compatible API uses
/// the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// The engine said nothing, or a word this version does not know (an
    /// engine may add states): treated as none of the above.
    #[default]
    Unknown,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        }
    }

    /// The engine's word for it, in any case; unknown words are `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }

    /// Its agent has ended: the container will not run again by itself.
    pub fn has_ended(self) -> bool {
        matches!(self, ContainerState::Exited | ContainerState::Dead)
    }
}

impl FromStr for ContainerState {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a container's HEALTHCHECK. A container without one has
/// none (`Option<HealthState>`: the engine's `none` and empty are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }

    /// The engine's word for it; `None` for `none`, empty, or a word this
    /// version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "starting" => Some(HealthState::Starting),
            "healthy" => Some(HealthState::Healthy),
            "unhealthy" => Some(HealthState::Unhealthy),
            _ => None,
        }
    }

    /// The state in a container's status text (`docker ps`: `Up 5 seconds
    /// (unhealthy)`), for engines whose listing has no health field.
    pub fn from_status_text(status: &str) -> Option<Self> {
        if status.ends_with("(unhealthy)") {
            Some(HealthState::Unhealthy)
        } else if status.ends_with("(healthy)") {
            Some(HealthState::Healthy)
        } else if status.ends_with("(health: starting)") {
            Some(HealthState::Starting)
        } else {
            None
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_print_as_the_engine_says_them() {
        for s in [
            "created",
            "running",
            "paused",
            "restarting",
            "removing",
            "exited",
            "dead",
        ] {
            assert_eq!(ContainerState::parse(s).as_str(), s);
        }
        assert_eq!(ContainerState::parse("RUNNING"), ContainerState::Running);
        assert_eq!(ContainerState::parse(""), ContainerState::Unknown);
        assert_eq!(
            ContainerState::parse("hibernating"),
            ContainerState::Unknown
        );
        assert!(ContainerState::Dead.has_ended() && !ContainerState::Paused.has_ended());
    }

    #[test]
    fn health_from_the_field_and_the_status_text() {
        assert_eq!(HealthState::parse("healthy"), Some(HealthState::Healthy));
        assert_eq!(HealthState::parse("none"), None);
        assert_eq!(HealthState::parse(""), None);
        assert_eq!(
            HealthState::from_status_text("Up 5 seconds (unhealthy)"),
            Some(HealthState::Unhealthy)
        );
        assert_eq!(
            HealthState::from_status_text("Up 2 minutes (healthy)"),
            Some(HealthState::Healthy)
        );
        assert_eq!(
            HealthState::from_status_text("Up 1 second (health: starting)"),
            Some(HealthState::Starting)
        );
        assert_eq!(HealthState::from_status_text("Up 5 seconds"), None);
    }
}
