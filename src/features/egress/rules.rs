//! Egress rules: `host`, `*.suffix`, either with `:port` (default: 443 and
//! 80 for allow rules, any port for deny rules). Deny rules win.

use crate::core::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower case, no trailing dot. `*.x` is kept as the suffix `.x`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl Rule {
    /// Parses `api.anthropic.com`, `*.github.com`, `host:8443`, `10.0.0.5`.
    pub fn parse(text: &str) -> Result<Rule> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "egress rule {:?}: {why} (expected a host, `*.domain`, either with `:port`)",
                crate::core::types::truncate_for_message(text)
            ))
        };
        let t = text.trim().to_ascii_lowercase();
        let (host, port) = match t.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port: u16 = p.parse().map_err(|_| bad("the port is not a number"))?;
                if port == 0 {
                    return Err(bad("port 0"));
                }
                (h.to_owned(), Some(port))
            }
            Some(_) => return Err(bad("IPv6 addresses are not supported")),
            None => (t, None),
        };
        let host = host.trim_end_matches('.');
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(ok_label) {
            return Err(bad("not a host name"));
        }
        Ok(Rule {
            host: name.to_owned(),
            wildcard,
            port,
        })
    }

    fn host_matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Denied(String),
    NotAllowed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Denied(r) => write!(f, "deny rule {r}"),
            Refusal::NotAllowed => f.write_str("not in the allowlist"),
        }
    }
}

/// What the proxy enforces for one instance (the file it re-reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleFile {
    pub instance: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// `networking.allow_private`: private networks allowed names may
    /// resolve to.
    #[serde(default)]
    pub allow_private: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    private_ok: Vec<crate::core::untrusted::addr::Cidr>,
}

impl RuleSet {
    pub fn new(allow: &[String], deny: &[String]) -> Result<RuleSet> {
        let parse = |v: &[String]| v.iter().map(|r| Rule::parse(r)).collect::<Result<Vec<_>>>();
        Ok(RuleSet {
            allow: parse(allow)?,
            deny: parse(deny)?,
            private_ok: Vec::new(),
        })
    }

    /// The rules of a rules file, its private networks included.
    pub fn from_file(f: &RuleFile) -> Result<RuleSet> {
        let mut set = RuleSet::new(&f.allow, &f.deny)?;
        set.private_ok = f
            .allow_private
            .iter()
            .map(|c| crate::core::untrusted::addr::Cidr::parse(c))
            .collect::<Result<_>>()?;
        Ok(set)
    }

    /// Whether an allowed name may lead to `ip` (see
    /// [`crate::core::untrusted::addr::check`]).
    pub fn address_ok(
        &self,
        ip: std::net::IpAddr,
        gateways: &[std::net::IpAddr],
    ) -> std::result::Result<(), &'static str> {
        crate::core::untrusted::addr::check(ip, gateways, &self.private_ok)
    }

    pub fn decide(&self, host: &str, port: u16) -> std::result::Result<(), Refusal> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(d) = self
            .deny
            .iter()
            .find(|r| r.host_matches(&host) && r.port.is_none_or(|p| p == port))
        {
            return Err(Refusal::Denied(d.to_string()));
        }
        let allowed = self.allow.iter().any(|r| {
            r.host_matches(&host)
                && match r.port {
                    Some(p) => p == port,
                    None => port == 443 || port == 80,
                }
        });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }
}

impl RuleFile {
    pub fn read(path: &Path) -> Result<RuleFile> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Written atomically (temp file + rename in the same dir): the proxy
    /// reads either the old rules or the new, never half of them.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        tmp.write_all(&text).map_err(|e| Error::io(path, e))?;
        // The proxy runs as the same uid; nobody else needs to read it.
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(allow: &[&str], deny: &[&str]) -> RuleSet {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RuleSet::new(&v(allow), &v(deny)).unwrap()
    }

    #[test]
    fn exact_suffix_ports_and_deny() {
        let s = set(
            &[
                "api.anthropic.com",
                "*.github.com",
                "svc.test:8080",
                "10.1.2.3",
            ],
            &["gist.github.com", "*.evil.github.com:443"],
        );
        assert!(s.decide("api.anthropic.com", 443).is_ok());
        assert!(s.decide("API.Anthropic.com.", 80).is_ok());
        assert_eq!(s.decide("api.anthropic.com", 22), Err(Refusal::NotAllowed));
        assert_eq!(s.decide("anthropic.com", 443), Err(Refusal::NotAllowed));
        assert!(s.decide("api.github.com", 443).is_ok());
        assert!(s.decide("github.com", 443).is_err(), "*. needs a label");
        assert!(s.decide("xgithub.com", 443).is_err());
        assert!(s.decide("svc.test", 8080).is_ok());
        assert!(s.decide("svc.test", 443).is_err());
        assert!(s.decide("10.1.2.3", 443).is_ok());
        assert!(s.decide("10.1.2.4", 443).is_err());
        assert_eq!(
            s.decide("gist.github.com", 443),
            Err(Refusal::Denied("gist.github.com".into()))
        );
        assert!(s.decide("a.evil.github.com", 443).is_err());
        assert!(s.decide("a.evil.github.com", 80).is_ok(), "deny port given");
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["", "*.", "a b", "x:0", "x:99999", "x:y", "::1", "a/b", "*"] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Rule::parse("*.X.com:8443").unwrap().to_string(),
            "*.x.com:8443"
        );
    }
}
