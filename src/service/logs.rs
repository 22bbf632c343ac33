//! An instance's output: a live container's, streamed from the engine, or
//! the output saved when it ended, read from the end of its log file.

use crate::core::error::Result;
use futures_util::Stream;
use std::path::Path;

pub use crate::engine::logfile::LossyBlocks;

/// The output of a live container: the last `tail` lines (all: `None`),
/// and with `follow` what it writes next, until it ends. The stream ends
/// at the first error (the container went away).
pub async fn container(
    container_id: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<impl Stream<Item = Vec<u8>> + Send + 'static> {
    // The engine's connection lives on its own runtime: its output comes
    // over a channel.
    let cid = container_id.to_owned();
    let rx = tokio::task::spawn_blocking(move || {
        crate::engine::Engine::shared().map(|e| e.logs_channel(&cid, follow, tail))
    })
    .await
    .map_err(|e| crate::core::error::Error::Other(format!("worker: {e}")))??;
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// The saved output at `path` from its last `tail` lines, in blocks of
/// lossy UTF-8 (one stray byte must not hide the rest); `None` when
/// nothing was saved. Blocks: call it off the async threads.
pub fn saved(path: &Path, tail: Option<usize>) -> Result<Option<LossyBlocks>> {
    crate::engine::logfile::open_tail(path, tail)
}
