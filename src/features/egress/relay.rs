//! What a connection through the proxy may cost its sidecar: a bounded
//! number at once (the box can open as many as it likes, and each one
//! holds buffers in a sidecar of 64 MiB: about 1,200 held tunnels killed
//! it), small buffers, and an end to one that carries nothing for a while.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Proxy connections at once (requests and tunnels), and forwarded ones
/// to the agent's port. With [`BUF`] per direction that stays far below
/// the sidecar's memory limit.
pub const MAX_PROXY: usize = 256;
pub const MAX_FORWARD: usize = 64;
/// Buffer per direction of a relayed connection.
pub const BUF: usize = 16 << 10;
/// A tunnel with no byte in either direction this long is closed.
pub const IDLE: Duration = Duration::from_secs(600);
/// The same for a connection to the agent's port (an editor's or a
/// browser's, which may wait longer between messages).
pub const FORWARD_IDLE: Duration = Duration::from_secs(3600);

/// A cap on connections at once, which tells when it is first reached
/// (once per time it fills up, so a flood is one line, not thousands).
pub struct Limit {
    slots: Arc<Semaphore>,
    full: AtomicBool,
}

impl Limit {
    pub fn new(max: usize) -> Limit {
        Limit {
            slots: Arc::new(Semaphore::new(max)),
            full: AtomicBool::new(false),
        }
    }

    /// A slot, held for the connection's life; `Err(first)` when none is
    /// free, `first` true only for the first refusal since one was free.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, bool> {
        match self.slots.clone().try_acquire_owned() {
            Ok(p) => {
                self.full.store(false, Ordering::Relaxed);
                Ok(p)
            }
            Err(_) => Err(!self.full.swap(true, Ordering::Relaxed)),
        }
    }
}

/// Copies both ways until both ends closed their side, or until nothing
/// moved in either direction for `idle`.
pub async fn relay(a: TcpStream, b: TcpStream, idle: Duration) {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one = one_way(ar, bw, last.clone(), start, idle);
    let other = one_way(br, aw, last, start, idle);
    // The first error (idle, reset) drops the other direction: both close.
    let _ = tokio::try_join!(one, other);
}

async fn one_way(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    last: Arc<AtomicU64>,
    start: Instant,
    idle: Duration,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUF];
    let tick = idle.min(Duration::from_secs(30));
    loop {
        match tokio::time::timeout(tick, from.read(&mut buf)).await {
            Err(_) => {
                let quiet = start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
            }
            Ok(Ok(0)) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(Ok(n)) => {
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                to.write_all(&buf[..n]).await?;
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[test]
    fn relays_both_ways_and_closes_when_idle() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, proxy_in) = pair().await;
            let (proxy_out, mut server) = pair().await;
            let relayed = tokio::spawn(relay(proxy_in, proxy_out, Duration::from_millis(300)));
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            server.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            // Then nothing: the relay ends and both sides see the close.
            relayed.await.unwrap();
            assert_eq!(client.read(&mut buf).await.unwrap_or(0), 0);
            assert_eq!(server.read(&mut buf).await.unwrap_or(0), 0);
        });
    }

    #[test]
    fn the_limit_refuses_past_its_size_and_says_so_once() {
        let l = Limit::new(2);
        let a = l.take().unwrap();
        let _b = l.take().unwrap();
        assert_eq!(l.take().err(), Some(true));
        assert_eq!(l.take().err(), Some(false));
        drop(a);
        let _c = l.take().unwrap();
        assert_eq!(l.take().err(), Some(true), "full again: said again");
    }
}
