//! What keeps the API safe on a laptop full of credentials: a bearer token
//! (file 0600, compared in constant time), a one-time login code for the
//! browser, the Host header checked against the bound address (DNS
//! rebinding), and cross-origin requests refused (no CORS at all).

use crate::error::{Error, Result};
use crate::paths::StateDir;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "ai_sessions_token";

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
    crate::registry::atomic_write(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

pub struct Guard {
    pub token: String,
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
    pub fn new(token: String, login_code: String, addr: SocketAddr) -> Self {
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

    fn presented_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            return v.strip_prefix("Bearer ").map(str::trim);
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    }
}

pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
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

/// The token on every API route (bearer header, or the login cookie).
pub async fn require_token(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match g.presented_token(req.headers()) {
        Some(t) if g.token_matches(t) => next.run(req).await,
        Some(_) => error_response(StatusCode::UNAUTHORIZED, "bad_token", "wrong token"),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "a bearer token is required",
        ),
    }
}
