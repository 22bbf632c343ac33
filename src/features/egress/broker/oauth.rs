//! Subscription logins (Claude's OAuth `.credentials.json`): the box gets a
//! placeholder login (a placeholder access token of the real format, no
//! refresh token, valid until 2100 so the CLI never refreshes it); the
//! broker holds the real access token and puts it in place of the
//! placeholder; the real tokens are refreshed outside the box (by the host
//! at a start, by the broker while it runs) and the rotated pair is written
//! back to the shared login file.

use crate::core::error::{Error, Result};
use crate::core::types::{Secret, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::path::Path;

/// Anthropic's token endpoint and Claude Code's client id.
pub const DEFAULT_TOKEN_URL: &str = "https://console.anthropic.com/v1/oauth/token";
pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
/// The placeholder login's expiry: 2100-01-01, in ms.
const FAR_FUTURE_MS: i64 = 4_102_444_800_000;
/// A token expiring within this is refreshed before it is handed over.
pub const MARGIN_MS: i64 = 10 * 60 * 1000;
/// The key of the login in the file.
const KEY: &str = "claudeAiOauth";
/// A login file is small.
const CAP: u64 = 1 << 20;

/// A subscription login as read from its file (the refresh token stays in
/// memory, and only outside the box).
pub struct Login {
    raw: serde_json::Value,
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// `expiresAt`, ms since the epoch.
    pub expires_at: Option<i64>,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Login {
    /// A Claude OAuth login, if `bytes` is one.
    pub fn parse(bytes: &[u8]) -> Option<Login> {
        let raw: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let o = raw.get(KEY)?;
        let access = o.get("accessToken")?.as_str().filter(|t| !t.is_empty())?;
        let refresh = o
            .get("refreshToken")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.to_owned()));
        Some(Login {
            access: Secret::new(access.to_owned()),
            refresh,
            expires_at: o.get("expiresAt").and_then(|e| e.as_i64()),
            raw,
        })
    }

    /// The login in `path`, if it is a regular file holding one.
    pub fn read(path: &Path) -> Option<Login> {
        use std::io::Read;
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(CAP)
            .read_to_end(&mut bytes)
            .ok()?;
        Login::parse(&bytes)
    }

    /// Whether it expires within [`MARGIN_MS`] (an unknown expiry never).
    pub fn expiring(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|e| e - MARGIN_MS <= now_ms)
    }

    /// What the box sees instead: the same file, its access token the
    /// placeholder, no refresh token, valid until 2100.
    pub fn placeholder_file(&self, placeholder: &str) -> Vec<u8> {
        let mut raw = self.raw.clone();
        if let Some(o) = raw.get_mut(KEY).and_then(|o| o.as_object_mut()) {
            o.insert("accessToken".into(), placeholder.into());
            o.remove("refreshToken");
            o.insert("expiresAt".into(), FAR_FUTURE_MS.into());
        }
        let mut text = serde_json::to_vec(&raw).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// The login with a refreshed pair.
    fn with(mut self, t: Tokens) -> Login {
        let expires_at = t.expires_in.map(|s| now_ms() + s * 1000);
        if let Some(o) = self.raw.get_mut(KEY).and_then(|o| o.as_object_mut()) {
            o.insert("accessToken".into(), t.access.expose().into());
            if let Some(r) = &t.refresh {
                o.insert("refreshToken".into(), r.expose().into());
            }
            if let Some(e) = expires_at {
                o.insert("expiresAt".into(), e.into());
            }
        }
        self.access = t.access;
        if t.refresh.is_some() {
            self.refresh = t.refresh;
        }
        if expires_at.is_some() {
            self.expires_at = expires_at;
        }
        self
    }

    /// Its file's contents.
    fn to_file(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec(&self.raw).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// The line the broker reads on its stdin.
    pub fn stdin_line(&self) -> Secret {
        Secret::new(
            serde_json::json!({
                "kind": "oauth",
                "access_token": self.access.expose(),
                "expires_at": self.expires_at,
            })
            .to_string(),
        )
    }
}

/// A placeholder access token: the shape of Claude's (`sk-ant-oat01-`),
/// random per instance.
pub fn placeholder() -> String {
    let mut raw = [0u8; 24];
    let _ = getrandom::fill(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk-ant-oat01-aisessions-{hex}")
}

/// The token endpoint: `credentials.token_url`, else Anthropic's.
pub fn token_url(configured: Option<&str>) -> Result<Upstream> {
    Upstream::parse(configured.unwrap_or(DEFAULT_TOKEN_URL)).map_err(|why| {
        Error::Invalid(format!(
            "the OAuth token endpoint: {why} (set agents.<agent>.credentials.token_url)"
        ))
    })
}

struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    expires_in: Option<i64>,
}

/// Refreshes the login of `path` unless another process did already (its
/// access token is no longer `held` and not expiring), under a lock on
/// the file's directory; writes the rotated pair back (0600, atomically,
/// keeping the file's owner). The login now current.
pub async fn refresh_file(path: &Path, url: &Upstream, held: &str) -> Result<Login> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir_file = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    // Held briefly, by a start or another broker refreshing the same login.
    let _lock = nix::fcntl::Flock::lock(dir_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(dir, std::io::Error::from(e)))?;
    let login = Login::read(path)
        .ok_or_else(|| Error::NotFound(format!("no OAuth login in {}", path.display())))?;
    if login.access.expose() != held && !login.expiring(now_ms()) {
        return Ok(login);
    }
    let Some(refresh) = &login.refresh else {
        return Err(Error::Invalid(format!(
            "the login in {} has no refresh token; log in again",
            path.display()
        )));
    };
    let tokens = request(url, refresh).await?;
    let login = login.with(tokens);
    write_keeping_owner(path, &login.to_file())?;
    Ok(login)
}

/// [`refresh_file`] from synchronous code (on a thread of its own, so a
/// caller already on a runtime is fine).
pub fn refresh_file_blocking(path: &Path, url: &Upstream, held: &str) -> Result<Login> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| Error::Other(format!("tokio: {e}")))?;
            rt.block_on(refresh_file(path, url, held))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Other("the token refresh panicked".into())))
    })
}

fn write_keeping_owner(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    if let Some((uid, gid)) = owner {
        // The broker runs as root: the host user keeps its login.
        if nix::unistd::geteuid().as_raw() != uid {
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid));
        }
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// `POST` to the token endpoint: the refresh grant.
async fn request(url: &Upstream, refresh: &Secret) -> Result<Tokens> {
    let body = serde_json::json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh.expose(),
        "client_id": CLIENT_ID,
    })
    .to_string();
    let scheme = if url.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{}{}", url.authority(), url.base_path);
    let req = hyper::Request::post(&uri)
        .header("host", url.authority())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Other(format!("token request: {e}")))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(super::server::connector());
    let fail = |why: String| Error::Other(format!("refreshing the login at {uri}: {why}"));
    let resp = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        // The body may echo what was sent: only the status is shown.
        return Err(fail(format!("HTTP {status}")));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| fail("not a JSON answer".into()))?;
    let access = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail("no access_token in the answer".into()))?;
    Ok(Tokens {
        access: Secret::new(access.to_owned()),
        refresh: v["refresh_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.to_owned())),
        expires_in: v["expires_in"].as_i64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_file_keeps_the_shape_and_holds_no_token() {
        let text = br#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-REAL","refreshToken":"sk-ant-ort01-REAL","expiresAt":1000,"scopes":["user:inference"],"subscriptionType":"max"}}"#;
        let l = Login::parse(text).unwrap();
        assert!(l.expiring(0));
        let p = String::from_utf8(l.placeholder_file("sk-ant-oat01-aisessions-x")).unwrap();
        assert!(!p.contains("REAL"), "{p}");
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v[KEY]["accessToken"], "sk-ant-oat01-aisessions-x");
        assert_eq!(v[KEY]["expiresAt"], FAR_FUTURE_MS);
        assert_eq!(v[KEY]["subscriptionType"], "max");
        assert_eq!(v[KEY]["scopes"][0], "user:inference");
        assert!(Login::parse(b"token-from-login").is_none());
        assert!(placeholder().starts_with("sk-ant-oat01-aisessions-"));
    }
}
