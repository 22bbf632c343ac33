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

    /// "Needs you": the agent asked something (a permission, a question)
    /// and waits for the answer. The one definition that `list`, `top`,
    /// the prompt, the dashboard and the API count; an `idle` agent (its
    /// turn is over) is free for a next task, not waiting.
    pub fn needs_you(self) -> bool {
        self == Activity::Waiting
    }

    /// Whether the agent takes input now: it needs you, or it is idle
    /// (`send` without `--force`, the "needs you" / "is done" alerts).
    pub fn wants_user(self) -> bool {
        matches!(self, Activity::Waiting | Activity::Idle)
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key or token: no `Display`, no `Serialize`, and a `Debug` that
/// shows nothing of it, so it cannot reach a log or a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The value, for the one place that sends it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a credential broker sends an API's calls: `http(s)://host[:port][/base]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path every call's path is appended to (`""` or `/prefix`).
    pub base_path: String,
}

impl Upstream {
    pub fn parse(url: &str) -> std::result::Result<Upstream, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "{}: not an http:// or https:// URL",
                truncate_for_message(url)
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{}: bad port", truncate_for_message(url)))?;
                (h, port)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ok_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        let ok_path = path
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"?#\\".contains(&b));
        if !ok_host || authority.contains('@') || !ok_path {
            return Err(format!(
                "{}: not a plain http(s)://host[:port][/path] URL",
                truncate_for_message(url)
            ));
        }
        Ok(Upstream {
            tls,
            host: host.to_owned(),
            port,
            base_path: path.to_owned(),
        })
    }

    /// `host` or `host:port` when the port is not the scheme's own.
    pub fn authority(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            (_, p) => format!("{host}:{p}"),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base_path)
    }
}

pub fn check_upstream(url: &str) -> std::result::Result<(), String> {
    Upstream::parse(url).map(|_| ())
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

    #[test]
    fn upstreams_parse_and_refuse_what_is_not_a_plain_url() {
        let u = Upstream::parse("https://api.anthropic.com").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base_path.as_str()),
            (true, "api.anthropic.com", 443, "")
        );
        let u = Upstream::parse("http://172.17.0.1:8080/gw/").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 8080, "/gw"));
        assert_eq!(u.to_string(), "http://172.17.0.1:8080/gw");
        for bad in [
            "ftp://x",
            "https://",
            "https://u:p@h",
            "http://h:0",
            "http://h/a?b",
            "http://h b",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
