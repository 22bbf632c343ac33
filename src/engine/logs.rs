//! A container's output: streamed to a writer, saved to a capped file, or
//! handed to another runtime's task through a channel.

use super::{api_err, is_404, Engine};
use crate::core::error::{Error, Result};
use bollard::query_parameters as q;
use futures_util::StreamExt;
use std::path::Path;

/// Options for a container's output: both streams, `tail` lines or all.
fn options(follow: bool, tail: Option<usize>) -> q::LogsOptions {
    let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
    q::LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail)
        .build()
}

impl Engine {
    /// Writes the container's output to `out` as it comes (until it ends,
    /// with `follow`, or `out` is closed).
    pub async fn copy_logs(
        &self,
        container: &str,
        follow: bool,
        tail: Option<usize>,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        let mut stream = self.docker.logs(container, Some(options(follow, tail)));
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    if out.write_all(&chunk.into_bytes()).is_err() {
                        break;
                    }
                    let _ = out.flush();
                }
                Err(e) if is_404(&e) => {
                    return Err(Error::NotFound(format!("container {container} is gone")))
                }
                Err(e) => return Err(api_err("logs", e)),
            }
        }
        Ok(())
    }

    /// The container's output as chunks on a channel, read on the engine's
    /// runtime: for a caller on a runtime of its own (the API server). The
    /// channel closes when the output ends or the receiver is dropped.
    pub fn logs_channel(
        &self,
        container: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut stream = self.docker.logs(container, Some(options(follow, tail)));
        self.spawn(async move {
            while let Some(Ok(chunk)) = stream.next().await {
                if tx.send(chunk.into_bytes().to_vec()).await.is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Streams the container's output into `dest` (replacing the previous
    /// run's), keeping the newest `cap` bytes; never held in memory whole.
    /// A container whose output cannot be read leaves `dest` alone; an
    /// error means it could not be written (full disk).
    pub fn save_log(&self, container: &str, dest: &Path, cap: u64) -> Result<()> {
        let mut log = super::logfile::CappedLog::create(dest, cap)?;
        if self
            .block_on(self.copy_logs(container, false, None, &mut log))
            .is_ok()
        {
            log.finish()?;
        }
        Ok(())
    }
}
