//! The REST endpoints (the seed's, plus server-sent events). Reads of the
//! instances come from the in-memory view; every other handler calls the
//! same operations as the CLI, on a blocking thread.

use super::reply::{ApiError, ApiResult, Json};
use super::AppState;
use crate::core::error::Error;
use crate::core::types::{InstanceId, Mode, Port};
use crate::service::control::{self, Action};
use crate::service::{self, start::Started};
use crate::state::context::Ctx;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Runs a CLI operation on a blocking thread (the runtimes block).
pub(super) async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Ctx) -> crate::core::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let dirs = st.dirs.clone();
    tokio::task::spawn_blocking(move || {
        let ctx = Ctx {
            store: crate::state::registry::Store::new(dirs.clone()),
            dirs,
        };
        f(&ctx)
    })
    .await
    .map_err(|e| ApiError(Error::Other(format!("worker: {e}"))))?
    .map_err(ApiError)
}

fn parse_id(id: &str) -> ApiResult<InstanceId> {
    InstanceId::parse(id).map_err(ApiError)
}

/// From the in-memory view: no engine call, the JSON made once per change.
pub async fn list(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let snap = st.view.current().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        snap.list_json(),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    project_path: String,
    mode: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    args: Vec<String>,
    /// Run in the git worktree of this name (as `--worktree NAME`).
    #[serde(default)]
    worktree: Option<String>,
    /// `true`: clone mode (as `--clone`); `false`: mount the project (as
    /// `--mount`); absent: `project.mode`.
    #[serde(default)]
    clone: Option<bool>,
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    axum::Json(body): axum::Json<CreateBody>,
) -> ApiResult<Response> {
    let mode = Mode::parse(&body.mode)?;
    let port = body.port.map(Port::new).transpose()?;
    let path = std::path::PathBuf::from(&body.project_path);
    if !path.is_absolute() {
        return Err(Error::Usage("project_path must be an absolute path".into()).into());
    }
    // A client names the project it means; `..` is a path trick, not a name.
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Error::Usage("project_path must not contain `..` components".into()).into());
    }
    let inst = blocking(&st, move |ctx| {
        // An unknown agent is a bad request here, not a missing resource.
        crate::state::config::load_for(&ctx.dirs, &mode, None).map_err(|e| match e {
            Error::NotFound(m) => Error::Usage(m),
            e => e,
        })?;
        let mut warnings = crate::core::warning::Warnings::new();
        let started = service::start::start(
            ctx,
            service::start::StartRequest {
                path: Some(path),
                mode,
                id: None,
                port,
                runtime: None,
                egress: None,
                detach: true,
                args: body.args,
                shell_pid: None,
                worktree: body.worktree.map(service::start::Wanted::Named),
                clone: body.clone,
                resume: false,
            },
            &mut warnings,
        );
        // The server's terminal shows them, as the CLI's would.
        warnings.into_iter().for_each(crate::core::warning::report);
        let started = started?;
        Ok(match started {
            Started::AlreadyRunning(i) => (false, i),
            Started::Container { inst, .. } | Started::Process { inst, .. } => (true, inst),
        })
    })
    .await?;
    let status = if inst.0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(inst.1))).into_response())
}

pub async fn get_one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let snap = st.view.current().await?;
    let inst = snap.get(&id).ok_or_else(|| Error::not_found(&id))?;
    Ok(Json(snap.instance_json(inst)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    action: ActionName,
}

/// An action by its name; one we do not know is refused by the handler
/// (after the instance is found), with the list of those we do.
#[derive(Deserialize)]
#[serde(untagged)]
enum ActionName {
    Known(Action),
    Unknown(String),
}

const API: &str = "through the API";

pub async fn update(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<UpdateBody>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let applied = blocking(&st, move |ctx| match body.action {
        ActionName::Known(action) => control::apply(ctx, &id, action, API),
        ActionName::Unknown(other) => {
            control::lookup(ctx, &id)?;
            Err(Error::Usage(format!(
                "unknown action {:?}: use stop, start, restart, pause or resume",
                crate::core::types::truncate_for_message(&other)
            )))
        }
    })
    .await?;
    let mut resp = Json(json!(applied.instance)).into_response();
    if let Some(note) = applied
        .note
        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok())
    {
        resp.headers_mut().insert("x-ai-sessions-note", note);
    }
    Ok(resp)
}

pub async fn delete(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    blocking(&st, move |ctx| {
        control::lookup(ctx, &id)?;
        control::stop(ctx, &id, &format!("stopped {API}"))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /instances/{id}/fetch` takes (an empty body: `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchBody {
    /// Also a commit of the box's uncommitted changes (`--uncommitted`).
    #[serde(default)]
    uncommitted: bool,
}

/// `fetch`: a clone instance's branch into the host repository.
pub async fn fetch(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<FetchBody>,
) -> ApiResult<Json<service::clone::Fetched>> {
    let id = parse_id(&id)?;
    let fetched = blocking(&st, move |ctx| {
        service::clone::fetch(ctx, &id, body.uncommitted)
    })
    .await?;
    Ok(Json(fetched))
}

/// `land`: the branch into its base in the main checkout (or `"pr":
/// true`); a refusal is a 409 with its reason.
pub async fn land(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<service::land::Request>,
) -> ApiResult<Json<service::land::Landed>> {
    let id = parse_id(&id)?;
    let landed = blocking(&st, move |ctx| service::land::land(ctx, &id, &body, API)).await?;
    Ok(Json(landed))
}

#[derive(Deserialize)]
pub struct SendBody {
    text: String,
    #[serde(default)]
    force: bool,
}

/// `POST /instances/{id}/send`: a message typed into the agent; 409 with
/// the reason when it is not waiting for input (unless `force`).
pub async fn send(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<SendBody>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let sent = blocking(&st, move |ctx| {
        crate::service::send::send(ctx, &id, &body.text, body.force, API)
    })
    .await?;
    Ok(Json(
        json!({"sent": true, "id": sent.id, "activity": sent.activity, "chars": sent.chars}),
    ))
}

#[derive(Deserialize)]
pub struct LogQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
    /// The agent's terminal stream itself, not the text its screen showed.
    #[serde(default)]
    raw: bool,
}

/// `GET /instances/{id}/logs`: what the agent's screen showed, as text (the
/// last `tail` lines, 200 by default), as the CLI's `logs` shows it; with
/// `follow`, each new line once; `raw=true`: the terminal stream itself.
pub async fn logs(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let tail = q.tail.or(Some(200));
    let key = id.clone();
    let inst = blocking(&st, move |ctx| control::lookup(ctx, &key)).await?;
    if inst.status.is_live() {
        control::reachable(&inst)?;
    }
    let text = |body: Body| {
        Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    // Rendered, the whole output is played (its last lines are the
    // screen's, not the stream's).
    let read_tail = if q.raw { tail } else { None };
    let stream: futures_util::stream::BoxStream<'static, Vec<u8>> = if let (Some(cid), true) =
        (&inst.container_id, inst.status.is_live())
    {
        service::logs::container(cid, q.follow, read_tail)
            .await?
            .boxed()
    } else {
        // Lossy, as the CLI shows it: one stray byte must not hide the
        // rest. Read from the end and streamed: the file may hold tens
        // of megabytes.
        let path = st.dirs.instance_log(&id);
        let blocks = tokio::task::spawn_blocking(move || service::logs::saved(&path, read_tail))
            .await
            .map_err(|e| ApiError(Error::Other(format!("worker: {e}"))))??;
        let Some(blocks) = blocks else {
            return Ok(text(Body::empty()));
        };
        futures_util::stream::unfold(Some(blocks), |blocks| async move {
            let mut blocks = blocks?;
            let (next, blocks) = tokio::task::spawn_blocking(move || (blocks.next(), blocks))
                .await
                .ok()?;
            let block = next?.ok()?;
            Some((block.into_bytes(), Some(blocks)))
        })
        .boxed()
    };
    let stream = if q.raw {
        stream
    } else {
        rendered(stream, tail, q.follow)
    };
    let stream = stream
        .map(Ok::<_, Infallible>)
        .take_until(super::stopping(st.stop.clone()));
    Ok(text(Body::from_stream(stream)))
}

/// `stream` played into a terminal emulator: its text, the last `tail`
/// lines of it; following, those of what came in the first quarter
/// second, then each line that comes once, four times a second at most.
fn rendered(
    stream: futures_util::stream::BoxStream<'static, Vec<u8>>,
    tail: Option<usize>,
    follow: bool,
) -> futures_util::stream::BoxStream<'static, Vec<u8>> {
    use crate::core::untrusted::screen::{Screen, DEFAULT_COLS};
    struct Play {
        stream: Option<futures_util::stream::BoxStream<'static, Vec<u8>>>,
        screen: Screen,
        printed: Option<usize>,
        shown: std::time::Instant,
    }
    let new_lines = move |p: &mut Play| {
        let lines = p.screen.lines();
        let from = match p.printed {
            Some(n) => n.min(lines.len()),
            None => tail.map_or(0, |t| lines.len().saturating_sub(t)),
        };
        p.printed = Some(lines.len());
        p.shown = std::time::Instant::now();
        lines[from..].iter().fold(Vec::new(), |mut out, l| {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
            out
        })
    };
    let play = Play {
        stream: Some(stream),
        screen: Screen::new(DEFAULT_COLS),
        printed: None,
        shown: std::time::Instant::now(),
    };
    futures_util::stream::unfold(play, move |mut p| async move {
        loop {
            match p.stream.as_mut()?.next().await {
                Some(chunk) => {
                    p.screen.feed(&chunk);
                    if follow && p.shown.elapsed() >= Duration::from_millis(250) {
                        let out = new_lines(&mut p);
                        if !out.is_empty() {
                            return Some((out, p));
                        }
                    }
                }
                None => {
                    p.stream = None;
                    let out = new_lines(&mut p);
                    return Some((out, p));
                }
            }
        }
    })
    .boxed()
}

pub async fn stats(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let samples = blocking(&st, move |ctx| service::stats::sample(ctx, Some(&id))).await?;
    Ok(Json(json!(samples.into_iter().next())))
}

/// `diff --json`: what the instance's agent changed against its base.
pub async fn diff(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<service::review::Report>> {
    let id = parse_id(&id)?;
    Ok(Json(
        blocking(&st, move |ctx| service::review::diff(ctx, &id)).await?,
    ))
}

pub async fn health(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let reports = blocking(&st, |ctx| crate::service::health::check(ctx, None)).await?;
    let healthy = !reports.iter().any(|r| r.unhealthy());
    Ok(Json(json!({"healthy": healthy, "instances": reports})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    /// `30m`, `2h`, `7d` or `today`, as `spend --since`.
    since: Option<String>,
}

/// `spend --json`: what the brokered calls of each instance cost.
pub async fn spend(
    State(st): State<Arc<AppState>>,
    Query(q): Query<SpendQuery>,
) -> ApiResult<Json<service::spend::Report>> {
    let since = q
        .since
        .map(|s| s.parse::<service::spend::Since>())
        .transpose()
        .map_err(|e| Error::Usage(format!("since: {e}")))?;
    Ok(Json(
        blocking(&st, move |ctx| service::spend::report(ctx, None, since)).await?,
    ))
}

pub async fn resources(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(blocking(&st, service::dashboard::for_page).await?))
}

/// The event log as server-sent events: new events as they are written,
/// from our own log and each egress proxy's (read as the box's, see
/// `events::Feed`), each a line of JSON safe to print.
pub async fn events(
    State(st): State<Arc<AppState>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let dirs = st.dirs.clone();
    // Start at the end: the feed shows what happens from now on.
    let feed = tokio::task::spawn_blocking(move || crate::state::events::Feed::from_now(&dirs))
        .await
        .ok();
    let stream = futures_util::stream::unfold(
        (feed, Vec::<String>::new()),
        |(mut feed, mut pending)| async move {
            loop {
                if let Some(line) = pending.pop() {
                    return Some((
                        Ok(Event::default().event("log").data(line)),
                        (feed, pending),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                let f = feed.take()?;
                let (f, batch) = tokio::task::spawn_blocking(move || {
                    let mut f = f;
                    let batch = f.next_batch();
                    (f, batch)
                })
                .await
                .ok()?;
                feed = Some(f);
                pending = batch
                    .iter()
                    .filter_map(|e| crate::core::untrusted::json::line(e).ok())
                    .rev()
                    .collect();
            }
        },
    );
    Sse::new(stream.take_until(super::stopping(st.stop.clone()))).keep_alive(KeepAlive::default())
}
