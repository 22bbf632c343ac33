//! The live terminal of the dashboard: an agent's terminal attached for a
//! browser. Read-only unless the user turns typing on (the API enforces
//! it); detaching never stops the agent nor types anything into it.

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Status};
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde_json::json;

pub use crate::engine::attach::Remote;

/// How much of the output before the attach is shown first: the attach
/// stream only carries what comes next, and an empty terminal says nothing.
const BACKLOG_LINES: usize = 200;
const BACKLOG_BYTES: usize = 16 * 1024;

/// The container of `id`'s running agent, or why there is none.
pub fn container_of(ctx: &Ctx, id: &InstanceId) -> Result<String> {
    let inst = super::control::lookup(ctx, id)?;
    crate::lifecycle::reachable(&inst)?;
    match (inst.status, inst.container_id) {
        (Status::Running, Some(cid)) => Ok(cid),
        (Status::Running, None) => Err(Error::Invalid(format!(
            "{id} runs on the host, not in a container: its terminal is the one it was started in"
        ))),
        (Status::Paused, _) => Err(Error::Invalid(format!(
            "{id} is paused: `ai-sessctl resume {id}` first"
        ))),
        (other, _) => Err(Error::Invalid(format!(
            "{id} is {other}: no terminal to open (`ai-sessctl start {id}` starts it again)"
        ))),
    }
}

/// An attached terminal and the output that came before it.
pub struct Opened {
    pub remote: Remote,
    /// The end of the output so far, cut at a line start (a few KiB).
    pub backlog: Vec<u8>,
}

/// Attaches to `container` (from [`container_of`]); call it on the server's
/// runtime. Attached first, then the backlog read: nothing falls between.
pub async fn open(container: &str) -> Result<Opened> {
    let engine = tokio::task::spawn_blocking(crate::engine::Engine::shared)
        .await
        .map_err(|e| Error::Other(format!("worker: {e}")))??;
    let remote = engine.attach_remote(container).await?;
    let mut rx = engine.logs_channel(container, false, Some(BACKLOG_LINES));
    let mut backlog = Vec::new();
    while let Some(chunk) = rx.recv().await {
        backlog.extend_from_slice(&chunk);
        if backlog.len() > 4 * BACKLOG_BYTES {
            backlog.drain(..backlog.len() - BACKLOG_BYTES);
        }
    }
    Ok(Opened {
        remote,
        backlog: tail_at_line(backlog, BACKLOG_BYTES),
    })
}

/// The last `max` bytes of `out`, from the start of a line (a cut in the
/// middle of an escape sequence would show as junk).
fn tail_at_line(mut out: Vec<u8>, max: usize) -> Vec<u8> {
    if out.len() > max {
        let cut = out.len() - max;
        let start = out[cut..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(out.len(), |n| cut + n + 1);
        out.drain(..start);
    }
    out
}

/// Logs the browser's terminal opening or closing on `id` (`typed`: keys
/// were typed into it).
pub fn log(ctx: &Ctx, id: &InstanceId, opened: bool, typed: bool) {
    let msg = if opened {
        "terminal opened in the browser"
    } else {
        "terminal closed in the browser"
    };
    ctx.events().log(
        Level::Info,
        "api",
        msg,
        json!({"instance": id.as_str(), "typed": typed}),
    );
}

#[cfg(test)]
mod tests {
    use super::tail_at_line;

    #[test]
    fn the_backlog_starts_at_a_line() {
        assert_eq!(tail_at_line(b"abc\ndef\n".to_vec(), 100), b"abc\ndef\n");
        assert_eq!(tail_at_line(b"abc\ndef\n".to_vec(), 6), b"def\n");
        assert_eq!(tail_at_line(b"abcdefgh".to_vec(), 4), b"");
    }
}
