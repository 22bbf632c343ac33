//! Connections of the API server: a header-read timeout, an idle timeout,
//! and a cap below the descriptor limit. At the cap the longest-idle
//! connection makes room, so a flood of idle sockets never locks out a
//! real request (nor runs the process out of descriptors, which would stop
//! `accept` altogether).

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower_service::Service;

/// A request's head must arrive within this (slow-loris, bare connects).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with nothing in flight closes after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Descriptors kept for everything else: registry and log files, the
/// engine's socket, blocking threads' work.
const FD_RESERVE: u64 = 128;

/// How many connections to hold at most: below the soft descriptor limit.
pub fn max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    soft.saturating_sub(FD_RESERVE).clamp(16, 16_384) as usize
}

/// One connection as the accept loop sees it.
struct Conn {
    /// Requests in flight (until their response body is done).
    busy: AtomicUsize,
    /// Whether a request was ever served (idle vs. header timeout).
    served: AtomicBool,
    last: Mutex<Instant>,
    evict: Notify,
}

impl Conn {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }
}

type Table = Arc<Mutex<BTreeMap<u64, Arc<Conn>>>>;

fn lock(t: &Table) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// requests finish (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max: usize,
    shutdown: impl Future<Output = ()>,
) {
    let table: Table = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut seq = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            // Out of descriptors (or a transient error): the cap should
            // prevent it; breathe instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        {
            let mut t = lock(&table);
            if t.len() >= max {
                // Oldest first: the BTreeMap is ordered by accept sequence.
                let victim = t.iter().find(|(_, c)| c.idle()).map(|(k, _)| *k);
                match victim.and_then(|k| t.remove(&k)) {
                    Some(c) => c.evict.notify_one(),
                    None => continue, // all busy: this one is dropped
                }
            }
        }
        seq += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        lock(&table).insert(seq, Arc::clone(&conn));
        let _ = stream.set_nodelay(true);
        tokio::spawn(run_conn(
            seq,
            stream,
            router.clone(),
            conn,
            Arc::clone(&table),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Wait for the connections to wind down (the caller bounds this).
    while !lock(&table).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_conn(
    key: u64,
    stream: tokio::net::TcpStream,
    router: Router,
    conn: Arc<Conn>,
    table: Table,
    mut stop: watch::Receiver<bool>,
) {
    let svc_conn = Arc::clone(&conn);
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let conn = Arc::clone(&svc_conn);
        conn.busy.fetch_add(1, Ordering::SeqCst);
        conn.served.store(true, Ordering::SeqCst);
        conn.touch();
        let mut router = router.clone();
        async move {
            let guard = Busy(conn);
            let resp = match router.call(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, std::convert::Infallible>(resp.map(|b| {
                Body::new(Tracked {
                    inner: b,
                    _busy: guard,
                })
            }))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    // Upgrades: the dashboard's live terminal is a WebSocket.
    let served = http
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(served);
    let watchdog = async {
        loop {
            let limit = if conn.served.load(Ordering::SeqCst) {
                IDLE_TIMEOUT
            } else {
                HEADER_TIMEOUT
            };
            let deadline = conn.last() + limit;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if conn.idle() && Instant::now() >= conn.last() + limit {
                        return;
                    }
                    if !conn.idle() {
                        conn.touch();
                    }
                }
                () = conn.evict.notified() => return,
            }
        }
    };
    tokio::select! {
        _ = &mut served => {}
        () = watchdog => {}
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
    lock(&table).remove(&key);
}

/// Marks its connection busy until the response body is done (or dropped):
/// a stream (events, followed logs) is not idle.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
