//! What keeps the API safe on a laptop full of credentials: a bearer token
//! (file 0600, compared in constant time), a one-time login code for the
//! browser, which then holds only a session id (browsers send cookies for
//! 127.0.0.1 to every port, so the token must never be one), the Host
//! header checked against the bound address (DNS rebinding), and
//! cross-origin requests refused (no CORS at all).

use super::reply::error_response;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie of the server on `port`: two servers on one host
/// do not overwrite each other's.
pub fn cookie_name(port: u16) -> String {
    format!("ai_sessions_{port}")
}

/// Dashboard logins, in memory only: they die with the server.
pub struct Sessions {
    idle: Duration,
    max: Duration,
    live: Mutex<HashMap<String, Session>>,
}

struct Session {
    created: Instant,
    used: Instant,
    /// Dropped when the session ends (logout, expiry, a sweep): the
    /// responses still streaming in it (events, followed logs) end with it.
    alive: tokio::sync::watch::Sender<()>,
}

/// Resolves when the session it was taken from has ended, or at its
/// absolute expiry, whichever comes first.
pub struct SessionEnd {
    alive: tokio::sync::watch::Receiver<()>,
    deadline: Instant,
}

impl SessionEnd {
    pub async fn ended(mut self) {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::select! {
            _ = self.alive.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

impl Session {
    fn expired(&self, now: Instant, idle: Duration, max: Duration) -> bool {
        now.duration_since(self.used) > idle || now.duration_since(self.created) > max
    }
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Sessions {
            idle,
            max,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; its id (256 random bits, hex) goes into the cookie.
    pub fn create(&self) -> Result<String> {
        let id = random_hex(32)?;
        let now = Instant::now();
        let mut live = self.map();
        live.retain(|_, s| !s.expired(now, self.idle, self.max));
        live.insert(
            id.clone(),
            Session {
                created: now,
                used: now,
                alive: tokio::sync::watch::channel(()).0,
            },
        );
        Ok(id)
    }

    /// Whether `id` is a live session (and marks it used).
    pub fn touch(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut live = self.map();
        match live.get_mut(id) {
            Some(s) if !s.expired(now, self.idle, self.max) => {
                s.used = now;
                true
            }
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    pub fn end(&self, id: &str) {
        self.map().remove(id);
    }

    /// What ends with the live session `id`; `None` when it is not live.
    pub fn end_of(&self, id: &str) -> Option<SessionEnd> {
        let live = self.map();
        let s = live.get(id)?;
        Some(SessionEnd {
            alive: s.alive.subscribe(),
            deadline: s.created + self.max,
        })
    }
}

pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Other(format!("random: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The API token: read from `api.token`, or generated on first start.
pub fn load_or_create_token(dirs: &StateDir) -> Result<String> {
    let path = dirs.token_file();
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t);
        }
    }
    dirs.ensure()?;
    let token = random_hex(32)?;
    crate::core::paths::atomic_write(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

pub struct Guard {
    pub token: String,
    pub sessions: Sessions,
    /// `cookie_name` of the bound port.
    pub cookie: String,
    /// Valid once: the code in the URL `serve` prints.
    pub login_code: Mutex<Option<String>>,
    pub hosts: Vec<String>,
    pub origins: Vec<String>,
    /// Bound to 0.0.0.0 / [::] (`--allow-remote`): the machine's addresses
    /// are not known in advance, so any IP-literal Host with our port is
    /// accepted too. DNS rebinding always presents a name, never an IP.
    pub any_ip: Option<u16>,
}

impl Guard {
    pub fn new(token: String, login_code: String, addr: SocketAddr, sessions: Sessions) -> Self {
        let port = addr.port();
        let mut hosts = vec![addr.to_string(), format!("localhost:{port}")];
        if addr.ip().is_loopback() {
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        hosts.dedup();
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Guard {
            token,
            sessions,
            cookie: cookie_name(port),
            login_code: Mutex::new(Some(login_code)),
            hosts,
            origins,
            any_ip: addr.ip().is_unspecified().then_some(port),
        }
    }

    fn ip_host(&self, host: &str) -> bool {
        self.any_ip
            .is_some_and(|port| host.parse::<SocketAddr>().is_ok_and(|a| a.port() == port))
    }

    pub fn host_ok(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) || self.ip_host(host)
    }

    pub fn origin_ok(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
            || origin
                .strip_prefix("http://")
                .is_some_and(|h| self.ip_host(h))
    }

    pub fn token_matches(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.token.as_bytes()).into()
    }

    /// Consumes the one-time login code.
    pub fn take_login(&self, code: &str) -> bool {
        let mut slot = self.login_code.lock().unwrap_or_else(|p| p.into_inner());
        let ok = slot
            .as_deref()
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(code.as_bytes())));
        if ok {
            *slot = None;
        }
        ok
    }

    /// The session id in our cookie, if one was sent.
    pub fn presented_session<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(self.cookie.as_str())?
                    .strip_prefix('=')
            })
    }

    /// Whether the request carries the token (bearer header) or a live
    /// session (cookie); `None` when it carries neither.
    fn authorized(&self, headers: &HeaderMap) -> Option<bool> {
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            return Some(
                v.strip_prefix("Bearer ")
                    .is_some_and(|t| self.token_matches(t.trim())),
            );
        }
        self.presented_session(headers)
            .map(|s| self.sessions.touch(s))
    }
}

/// Host and Origin checks for every request.
pub async fn check_host_origin(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !g.host_ok(host) {
        return error_response(
            StatusCode::MISDIRECTED_REQUEST,
            "bad_host",
            "Host header does not name this server",
        );
    }
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        if !g.origin_ok(origin) {
            return error_response(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "cross-origin requests are refused",
            );
        }
    }
    next.run(req).await
}

/// The token (bearer header) or a live session (cookie) on every API route.
/// A response in a session (a stream can last hours) ends when the session
/// does: a logout cuts what the browser still receives.
pub async fn require_token(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match g.authorized(req.headers()) {
        Some(true) => {
            let session = match req.headers().contains_key(header::AUTHORIZATION) {
                true => None,
                false => g
                    .presented_session(req.headers())
                    .and_then(|id| g.sessions.end_of(id)),
            };
            let response = next.run(req).await;
            match session {
                None => response,
                Some(end) => {
                    let (parts, body) = response.into_parts();
                    let body = body.into_data_stream().take_until(end.ended());
                    Response::from_parts(parts, axum::body::Body::from_stream(body))
                }
            }
        }
        Some(false) => error_response(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "wrong token or expired session",
        ),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "a bearer token is required",
        ),
    }
}
