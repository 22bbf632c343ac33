//! Small types that carry meaning: instance ids, agent modes, ports, status.

use crate::core::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An instance id: `^[a-zA-Z0-9_-]+-[a-zA-Z]+$` (the seed's pattern), at most
/// 128 bytes so it is always a safe single path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

pub const MAX_ID_LEN: usize = 128;

impl InstanceId {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if valid_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::Usage(format!(
                "invalid instance id {:?}: expected <project>-<mode> using only letters, digits, '_' and '-' (at most {MAX_ID_LEN} characters)",
                truncate_for_message(s)
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mode suffix (after the last `-`).
    pub fn mode_suffix(&self) -> &str {
        self.0.rsplit_once('-').map(|(_, m)| m).unwrap_or("")
    }
}

fn valid_id(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return false;
    }
    let Some((head, mode)) = s.rsplit_once('-') else {
        return false;
    };
    !head.is_empty()
        && !mode.is_empty()
        && mode.bytes().all(|b| b.is_ascii_alphabetic())
        && head
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn truncate_for_message(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        InstanceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl FromStr for InstanceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent mode (`claude`, `gemini`, or any configured agent): letters only,
/// because it is the id's suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Mode(String);

impl Mode {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(Error::Usage(format!(
                "invalid agent name {:?}: use letters only (e.g. claude, gemini, codex)",
                truncate_for_message(s)
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Mode::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port an instance may hold: 1024–65535 (the seed's schema range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub const MIN: u16 = 1024;
    pub fn new(n: u16) -> Result<Self, Error> {
        if n >= Self::MIN {
            Ok(Self(n))
        } else {
            Err(Error::Usage(format!("port {n} is outside 1024-65535")))
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, so a parser's error points at the
        // number itself rather than at the end of the enclosing object.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number 1024-65535")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Port, E> {
                u16::try_from(n)
                    .ok()
                    .and_then(|n| Port::new(n).ok())
                    .ok_or_else(|| E::custom(format!("port {n} is outside 1024-65535")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Port, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("port {n} is outside 1024-65535"))),
                }
            }
        }
        d.deserialize_u64(V)
    }
}

impl FromStr for Port {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let n: u16 = s
            .trim()
            .parse()
            .map_err(|_| Error::Usage(format!("invalid port {:?}", truncate_for_message(s))))?;
        Port::new(n)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Initializing,
    Running,
    Paused,
    Stopped,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initializing => "initializing",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Error => "error",
        }
    }
    /// Whether the instance holds its port and counts against `max_instances`.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Initializing | Status::Running | Status::Paused
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent is doing, as it reports it through the file named by
/// `AI_SESSION_STATUS_FILE`: working on a turn, waiting for the user (a
/// question or a permission), idle (its turn is over), or unknown (it has
/// not said, or cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    Working,
    Waiting,
    Idle,
    #[default]
    #[serde(other)]
    Unknown,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Working => "working",
            Activity::Waiting => "waiting",
            Activity::Idle => "idle",
            Activity::Unknown => "unknown",
        }
    }

    /// The word an agent wrote (surrounding white space and case ignored);
    /// `None` for anything else.
    pub fn parse(word: &str) -> Option<Activity> {
        match word.trim().to_ascii_lowercase().as_str() {
            "working" => Some(Activity::Working),
            "waiting" => Some(Activity::Waiting),
            "idle" => Some(Activity::Idle),
            "unknown" => Some(Activity::Unknown),
            _ => None,
        }
    }

    /// Whether the user is needed (or free to give the next task).
    pub fn wants_user(self) -> bool {
        matches!(self, Activity::Waiting | Activity::Idle)
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_words() {
        assert_eq!(Activity::parse(" Waiting\n"), Some(Activity::Waiting));
        assert_eq!(Activity::parse("idle"), Some(Activity::Idle));
        assert_eq!(Activity::parse("sleeping"), None);
        let a: Activity = serde_json::from_str("\"busy\"").unwrap();
        assert_eq!(a, Activity::Unknown, "a word of a newer version loads");
        assert_eq!(
            serde_json::to_string(&Activity::Working).unwrap(),
            "\"working\""
        );
    }

    #[test]
    fn ids_follow_the_seed_pattern() {
        for ok in ["project-a-claude", "x-gemini", "a_b-2-claude", "A-Z"] {
            assert!(InstanceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "claude",
            "-claude",
            "a-",
            "a-claude2",
            "../x-claude",
            "a;b-claude",
            "a b-claude",
            "$(x)-claude",
            "a\n-claude",
            "a/b-claude",
            "é-claude",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(InstanceId::parse(&format!("{}-claude", "a".repeat(10_000))).is_err());
    }

    #[test]
    fn ports_and_modes_are_checked() {
        assert!("80".parse::<Port>().is_err());
        assert!("70000".parse::<Port>().is_err());
        assert_eq!("9000".parse::<Port>().unwrap().get(), 9000);
        assert!(Mode::parse("claude").is_ok());
        assert!(Mode::parse("cla ude").is_err());
        assert!(Mode::parse("").is_err());
        assert_eq!(Mode::parse("Gemini").unwrap().as_str(), "gemini");
    }
}
