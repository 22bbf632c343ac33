//! `serve`: the local REST API and web dashboard (axum on tokio). Loopback
//! by default, a token on every API route, Host and Origin checked, bodies
//! capped. The handlers share the CLI's registry, lock and runtime code.

mod conn;
mod reply;
mod routes;
pub mod security;
mod terminal;
mod view;

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::state::context::Ctx;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Form, Router};
use security::Guard;
use std::net::SocketAddr;
use std::sync::Arc;

const DASHBOARD: &str = include_str!("../../web/dashboard.html");
const TERMINAL_JS: &[u8] = include_bytes!("../../web/terminal.js");
const XTERM_JS: &[u8] = include_bytes!("../../web/vendor/xterm/xterm.js");
const XTERM_FIT_JS: &[u8] = include_bytes!("../../web/vendor/xterm/addon-fit.js");
const XTERM_CSS: &[u8] = include_bytes!("../../web/vendor/xterm/xterm.css");
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";
/// Request bodies are tiny JSON objects; anything bigger is refused.
const BODY_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub dirs: StateDir,
    pub guard: Arc<Guard>,
    /// The instances, kept current in memory (see `view`).
    pub view: Arc<view::View>,
    /// Turns true on SIGTERM/ctrl-c: endless streams (events, followed logs)
    /// end then, so graceful shutdown does not wait for the clients.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// Resolves once the server is shutting down.
pub async fn stopping(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Threads for blocking work (registry reads, engine calls): enough for a
/// few slow operations (a stop waits for the agent) beside quick reads.
const MAX_BLOCKING: usize = 16;

/// How long shutdown waits for open requests before exiting anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub fn router(state: Arc<AppState>) -> Router {
    let guard = Arc::clone(&state.guard);
    let api = Router::new()
        .route("/instances", get(routes::list).post(routes::create))
        .route(
            "/instances/{id}",
            get(routes::get_one)
                .put(routes::update)
                .delete(routes::delete),
        )
        .route("/instances/{id}/logs", get(routes::logs))
        .route("/instances/{id}/attach", get(terminal::attach))
        .route("/instances/{id}/stats", get(routes::stats))
        .route("/instances/{id}/diff", get(routes::diff))
        .route("/instances/{id}/send", post(routes::send))
        .route("/instances/{id}/land", post(routes::land))
        .route("/instances/{id}/fetch", post(routes::fetch))
        .route("/health", get(routes::health))
        .route("/resources", get(routes::resources))
        .route("/spend", get(routes::spend))
        .route("/events", get(routes::events))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&guard),
            security::require_token,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(dashboard))
        .route("/assets/{file}", get(asset))
        .route("/login", get(login_link).post(login_form))
        .route("/logout", post(logout))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(
            guard,
            security::check_host_origin,
        ))
        .with_state(state)
}

async fn no_route() -> Response {
    reply::error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API endpoint (see docs/openapi.yaml)",
    )
}

/// Errors produced by axum itself (body too large, malformed JSON, missing
/// fields, wrong method, bad query) come as plain text: rewrap them in the
/// API's `{"error": {"code", "message"}}` shape, keeping status and headers.
async fn json_errors(req: axum::extract::Request, next: middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error"),
        t => t,
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "error",
    };
    let fresh = reply::error_response(status, code, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    Response::from_parts(parts, fresh_body)
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(DASHBOARD),
    )
        .into_response()
}

/// The dashboard's scripts and styles, built in (no CDN): public code,
/// nothing of the user's, so served like the page itself.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "terminal.js" => (TERMINAL_JS, "text/javascript; charset=utf-8"),
        "xterm.js" => (XTERM_JS, "text/javascript; charset=utf-8"),
        "addon-fit.js" => (XTERM_FIT_JS, "text/javascript; charset=utf-8"),
        "xterm.css" => (XTERM_CSS, "text/css; charset=utf-8"),
        _ => return no_route().await,
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A fresh session, its id in the cookie, and on to the dashboard.
fn new_session(guard: &Guard) -> Response {
    let id = match guard.sessions.create() {
        Ok(id) => id,
        Err(e) => {
            return reply::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    };
    let cookie = format!("{}={id}; Path=/; HttpOnly; SameSite=Strict", guard.cookie);
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Ends the browser's session and clears its cookie.
async fn logout(State(st): State<Arc<AppState>>, headers: header::HeaderMap) -> Response {
    if let Some(id) = st.guard.presented_session(&headers) {
        st.guard.sessions.end(id);
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        st.guard.cookie
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A browser (it asks for HTML) is shown the login page, an API client
/// the JSON error.
fn wants_page(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Back to the dashboard, whose login page says why by a fixed word.
fn login_page_saying(why: &'static str) -> Response {
    Redirect::to(&format!("/?login={why}")).into_response()
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    code: String,
}

/// The one-time URL `serve` prints: trades the code for the session cookie.
async fn login_link(
    State(st): State<Arc<AppState>>,
    headers: header::HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if st.guard.take_login(&q.code) {
        new_session(&st.guard)
    } else if wants_page(&headers) {
        login_page_saying("used")
    } else {
        reply::error_response(
            StatusCode::UNAUTHORIZED,
            "bad_login",
            "this login link was already used or is wrong; paste the token instead",
        )
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// Pasting the token into the dashboard's form.
async fn login_form(
    State(st): State<Arc<AppState>>,
    headers: header::HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if st.guard.token_matches(f.token.trim()) {
        new_session(&st.guard)
    } else if wants_page(&headers) {
        login_page_saying("wrong")
    } else {
        reply::error_response(StatusCode::UNAUTHORIZED, "bad_token", "wrong token")
    }
}

/// What the server has to tell whoever runs it (the CLI prints it).
pub enum Notice {
    /// Listening: where, the one-time login link, and the token's file.
    Listening {
        bound: SocketAddr,
        login_url: String,
        token_file: std::path::PathBuf,
    },
    /// Shutting down with requests still open after this grace.
    Overdue(std::time::Duration),
    /// The server stopped.
    Stopped,
}

/// Serves until SIGTERM or ctrl-c; `notify` hears what happens.
pub fn serve(
    ctx: &Ctx,
    addr: Option<SocketAddr>,
    allow_remote: bool,
    notify: &dyn Fn(Notice),
) -> Result<()> {
    let addr = addr.unwrap_or_else(|| DEFAULT_ADDR.parse().expect("valid default"));
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(Error::Usage(format!(
            "refusing to listen on {addr}: not a loopback address (pass --allow-remote to expose the API, token still required)"
        )));
    }
    let token = security::load_or_create_token(&ctx.dirs)?;
    let api = ctx.global()?.api;
    let sessions = security::Sessions::new(api.session_idle.0, api.session_max.0);
    let code = security::random_hex(16)?;
    limit_malloc_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Handlers run the CLI's blocking operations on this pool; tokio's
        // default (512 threads) lets a burst of clients grow it — and the
        // resident memory, one malloc arena per thread — without bound.
        .max_blocking_threads(MAX_BLOCKING)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        " (another program, or another `ai-sessctl serve`, has it); pick another port with --addr 127.0.0.1:{}",
                        addr.port().wrapping_add(1).max(1024)
                    )
                } else {
                    String::new()
                };
                Error::Invalid(format!("cannot listen on {addr}: {e}{hint}"))
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Other(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(AppState {
            dirs: ctx.dirs.clone(),
            guard: Arc::new(Guard::new(token, code.clone(), bound, sessions)),
            view: view::View::start(&ctx.dirs),
            stop: stop_rx.clone(),
        });
        notify(Notice::Listening {
            bound,
            login_url: format!("http://{bound}/login?code={code}"),
            token_file: ctx.dirs.token_file(),
        });
        ctx.events().log(
            crate::state::events::Level::Info,
            "api",
            "API server started",
            serde_json::json!({"addr": bound.to_string()}),
        );
        let server = conn::serve(listener, router(state), conn::max_connections(), async move {
            shutdown().await;
            let _ = stop_tx.send(true);
        });
        let overdue = async {
            stopping(stop_rx).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = server => Ok(()),
            () = overdue => {
                notify(Notice::Overdue(SHUTDOWN_GRACE));
                Ok(())
            }
        }
    })?;
    ctx.events().log(
        crate::state::events::Level::Info,
        "api",
        "API server stopped",
        serde_json::json!({}),
    );
    notify(Notice::Stopped);
    Ok(())
}

/// glibc gives every thread that allocates an arena of its own and keeps
/// freed memory there: with the blocking pool that doubles the resident
/// memory of a long-running server after a burst (bench/api.sh), for no
/// measurable gain at this load.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: only tunes the allocator; called before the runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
