//! `GET /api/v1/instances/{id}/attach`: the agent's terminal over a
//! WebSocket, for the dashboard's xterm.js. Server to client: the output,
//! in binary frames (first the end of what came before). Client to server:
//! keys in binary frames, taken only once typing was turned on with the
//! text frame `{"input": true}`; `{"cols": C, "rows": R}` resizes the
//! agent's terminal. Closing the socket detaches: the agent runs on.

use super::reply::{ApiError, ApiResult};
use super::AppState;
use crate::core::types::InstanceId;
use crate::service::terminal;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

/// A client's frame is a few keys or a control object.
const MAX_FRAME: usize = 64 * 1024;

/// A text frame from the client; unknown keys are ignored.
#[derive(Deserialize, Default)]
struct Control {
    input: Option<bool>,
    cols: Option<u16>,
    rows: Option<u16>,
}

pub async fn attach(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let id = InstanceId::parse(&id).map_err(ApiError)?;
    let bearer = headers.contains_key(header::AUTHORIZATION);
    // A browser always names the page that opens a WebSocket (the Host and
    // Origin check already refused a foreign one); a cookie without it is
    // not our page's.
    if !bearer && !headers.contains_key(header::ORIGIN) {
        return Ok(super::reply::error_response(
            axum::http::StatusCode::FORBIDDEN,
            "cross_origin",
            "a WebSocket in a browser session must come from the dashboard (no Origin header)",
        ));
    }
    let key = id.clone();
    let cid = super::routes::blocking(&st, move |ctx| terminal::container_of(ctx, &key)).await?;
    let opened = terminal::open(&cid).await?;
    // The socket outlives this response: it ends with the session itself
    // (a logout, its expiry), as the other streams do.
    let session = match bearer {
        true => None,
        false => st
            .guard
            .presented_session(&headers)
            .and_then(|s| st.guard.sessions.end_of(s)),
    };
    Ok(ws
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| run(socket, st, id, opened, session)))
}

async fn run(
    mut socket: WebSocket,
    st: Arc<AppState>,
    id: InstanceId,
    opened: terminal::Opened,
    session: Option<super::security::SessionEnd>,
) {
    log(&st, &id, true, false).await;
    let terminal::Opened { remote, backlog } = opened;
    let terminal::Remote {
        mut output,
        input,
        resize,
    } = remote;
    let mut typing = false;
    let mut typed = false;
    let session_end = async {
        match session {
            Some(end) => end.ended().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(session_end);
    let stop = super::stopping(st.stop.clone());
    tokio::pin!(stop);
    let mut open = backlog.is_empty() || socket.send(Message::Binary(backlog.into())).await.is_ok();
    while open {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(c) => open = socket.send(Message::Binary(c.into())).await.is_ok(),
                None => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: axum::extract::ws::close_code::NORMAL,
                            reason: "the agent's terminal closed".into(),
                        })))
                        .await;
                    open = false;
                }
            },
            msg = socket.recv() => match msg {
                // Keys: dropped unless typing is on (read-only is the
                // server's rule, not only the page's).
                Some(Ok(Message::Binary(keys))) => {
                    if typing && !keys.is_empty() {
                        typed = true;
                        open = input.send(keys.to_vec()).await.is_ok();
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    let c: Control = serde_json::from_str(text.as_str()).unwrap_or_default();
                    if let Some(on) = c.input {
                        typing = on;
                    }
                    if let (Some(cols), Some(rows)) = (c.cols, c.rows) {
                        let _ = resize.try_send((rows.clamp(1, 1000), cols.clamp(1, 1000)));
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => open = false,
            },
            () = &mut session_end => open = false,
            () = &mut stop => open = false,
        }
    }
    // Dropping the attach detaches; nothing is typed on the way out.
    drop(input);
    log(&st, &id, false, typed).await;
}

async fn log(st: &AppState, id: &InstanceId, opened: bool, typed: bool) {
    let id = id.clone();
    let _ = super::routes::blocking(st, move |ctx| {
        terminal::log(ctx, &id, opened, typed);
        Ok(())
    })
    .await;
}
