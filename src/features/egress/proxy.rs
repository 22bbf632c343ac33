//! The allowlisting proxy (`ai-sessctl net proxy`, hidden), run in an
//! instance's sidecar container: the only way off the instance's internal
//! network. HTTP CONNECT and plain HTTP are checked by host name and port
//! against the rules file, re-read whenever it changes; refusals are
//! answered `403` and written to the proxy's own log (rate-limited, host
//! names cut short; the host reads it as the box's). It also forwards the
//! instance's published port to the agent, and exits once the agent's
//! container is gone.

use super::relay;
use super::rules::{RuleFile, RuleSet};
use crate::core::error::{Error, Result};
use crate::state::events::{Event, Level};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct ProxyArgs {
    pub rules: PathBuf,
    pub events: PathBuf,
    /// `host:port`; a name (the proxy's alias on the internal network)
    /// is resolved to its address there, which is the only one bound.
    /// None: no proxy (a sidecar that only brokers keys).
    pub listen: Option<String>,
    /// `(port, target)`: listen on `port`, forward to `target` (`host:port`).
    pub forward: Vec<(u16, String)>,
    /// Exit when this name (the agent's container) stops resolving.
    pub watch: Option<String>,
    /// The addresses of the engine's machine: never a destination.
    pub forbid: Vec<IpAddr>,
    /// The credential broker, served beside the proxy (its key arrives on
    /// standard input).
    pub broker: Option<super::broker::server::BrokerArgs>,
}

/// `--forbid` and the gateways of the sidecar's routes, set at start.
static MACHINE: std::sync::OnceLock<Vec<IpAddr>> = std::sync::OnceLock::new();

const HEAD_MAX: usize = 16 << 10;
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The rules in force and the instance they are for, re-read when the
/// file changes.
type Rules = super::reload::Reloaded<(RuleSet, String)>;

fn read_rules(path: &std::path::Path) -> Result<(RuleSet, String)> {
    let f = RuleFile::read(path)?;
    Ok((RuleSet::from_file(&f)?, f.instance))
}

/// What the proxy says about itself goes to the process's warning sink:
/// the command running it prints it on stderr, which is the sidecar's log.
fn say(line: String) {
    crate::core::warning::report_warn(line);
}

pub fn run(args: ProxyArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio: {e}")))?;
    rt.block_on(serve(args))
}

async fn serve(args: ProxyArgs) -> Result<()> {
    let mut rules = Rules::new(
        args.rules.clone(),
        (RuleSet::default(), String::new()),
        read_rules,
        "egress proxy: keeping the previous rules",
    );
    rules.current();
    let rules = Arc::new(Mutex::new(rules));
    let events: Log = Arc::new(Mutex::new(EgressLog::new(args.events.clone())));
    tokio::spawn(flush_dropped(events.clone(), rules.clone()));
    let _ = MACHINE.set(args.forbid.clone());
    let broker = args.broker.map(|b| {
        let (tx, rx) = tokio::sync::watch::channel(None);
        super::broker::server::read_key(tx);
        tokio::spawn(super::broker::server::serve(b, rx))
    });
    for (port, target) in args.forward.clone() {
        let l = TcpListener::bind((IpAddr::from([0, 0, 0, 0]), port))
            .await
            .map_err(|e| Error::Other(format!("listen on {port}: {e}")))?;
        tokio::spawn(forward(l, target));
    }
    if let Some(name) = args.watch.clone() {
        tokio::spawn(watch(name));
    }
    let Some(listen) = args.listen else {
        // A broker alone: the process lives as long as it serves.
        return match broker {
            Some(b) => b.await.map_err(|e| Error::Other(format!("broker: {e}")))?,
            None => Ok(()),
        };
    };
    let listener = bind_listen(&listen).await?;
    say(format!("egress proxy: listening on {listen}"));
    let limit = relay::Limit::new(relay::MAX_PROXY);
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            // Out of descriptors, say: not a busy loop.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let rules = rules.clone();
        let events = events.clone();
        let slot = limit.take();
        tokio::spawn(async move {
            match slot {
                Ok(_slot) => {
                    let _ = handle(conn, rules, &events).await;
                }
                Err(first) => {
                    let why = format!("too many connections ({} at once)", relay::MAX_PROXY);
                    if first {
                        let (_, instance) =
                            rules.lock().unwrap_or_else(|p| p.into_inner()).current();
                        log_refusal(
                            &events,
                            &instance,
                            "*",
                            0,
                            &format!("connection limit reached: {why}"),
                        );
                    }
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        respond(&mut conn, "503 Service Unavailable", &why),
                    )
                    .await;
                }
            }
        });
    }
}

/// Binds `host:port`: the first IPv4 address the name resolves to (the
/// engine's DNS may need a moment after the start).
pub(crate) async fn bind_listen(listen: &str) -> Result<TcpListener> {
    let err = |e: String| Error::Other(format!("listen on {listen}: {e}"));
    let mut last = String::from("does not resolve");
    for _ in 0..20 {
        match tokio::net::lookup_host(listen).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if let Some(a) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
                    return TcpListener::bind(a).await.map_err(|e| err(e.to_string()));
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(err(last))
}

/// Exits the process once `name` stopped resolving (its container was
/// stopped or removed), so the sidecar never outlives its instance.
async fn watch(name: String) {
    let resolves = || async {
        tokio::net::lookup_host((name.as_str(), 1))
            .await
            .is_ok_and(|mut a| a.next().is_some())
    };
    let mut seen = false;
    let mut misses = 0;
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if resolves().await {
            seen = true;
            misses = 0;
        } else {
            misses += 1;
        }
        let gone = seen && misses >= 3;
        let never = !seen && started.elapsed() > Duration::from_secs(120);
        if gone || never {
            say(format!("egress proxy: {name} is gone; exiting"));
            std::process::exit(0);
        }
    }
}

async fn forward(listener: TcpListener, target: String) {
    let limit = relay::Limit::new(relay::MAX_FORWARD);
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Past the cap the connection is closed at once.
        let Ok(slot) = limit.take() else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Ok(Ok(up)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await
            {
                relay::relay(conn, up, relay::FORWARD_IDLE).await;
            }
        });
    }
}

/// The request head (up to the blank line) and whatever followed it.
async fn read_head(conn: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Some((buf, rest));
            }
            if buf.len() > HEAD_MAX {
                return None;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// `host:port`, `[v6]:port` or `host` (with `default` port).
fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((s.to_owned(), default)),
    }
}

/// The engine's machine: its addresses given at start, and the gateways of
/// the sidecar's routes (read again: routes may come after the start).
fn gateways() -> Vec<IpAddr> {
    let mut all = MACHINE.get().cloned().unwrap_or_default();
    all.extend(
        std::fs::read_to_string("/proc/net/route")
            .map(|t| crate::core::untrusted::addr::route_gateways(&t))
            .unwrap_or_default(),
    );
    all
}

async fn respond(conn: &mut TcpStream, status: &str, why: &str) {
    let body = format!("ai-sessions egress: {why}\n");
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Refusals logged at once before the rate limit applies, and per second
/// after: a box looping on refused requests costs the log a few lines a
/// second, and one line saying how many were left out.
const LOG_BURST: f64 = 20.0;
const LOG_PER_SEC: f64 = 5.0;
/// How often the count of refusals left out is written.
const DROPPED_EVERY: Duration = Duration::from_secs(5);

/// The proxy's own log (`egress.log` in a directory of its own): JSON lines
/// appended with one write each, rotated to `egress.log.1` past its cap by
/// a rename, rate-limited, host names cut short. Never locked: the host
/// reads it without a lock, as the box's.
struct EgressLog {
    path: PathBuf,
    file: Option<(std::fs::File, u64)>,
    tokens: f64,
    refilled: std::time::Instant,
    dropped: u64,
}

impl EgressLog {
    fn new(path: PathBuf) -> Self {
        EgressLog {
            path,
            file: None,
            tokens: LOG_BURST,
            refilled: std::time::Instant::now(),
            dropped: 0,
        }
    }

    /// Takes a token of the rate limit, or counts the event as dropped.
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let gained = now.duration_since(self.refilled).as_secs_f64() * LOG_PER_SEC;
        self.tokens = (self.tokens + gained).min(LOG_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    fn write(&mut self, event: &Event) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        if self.file.as_ref().is_some_and(|(_, len)| {
            len + line.len() as u64 > crate::state::events::BOX_LOG_ROTATE_BYTES
        }) {
            self.file = None;
            let _ = std::fs::rename(&self.path, crate::state::events::rotated(&self.path));
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.path);
            match opened {
                Ok(f) => {
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    self.file = Some((f, len));
                }
                Err(e) => {
                    say(format!(
                        "egress proxy: cannot log to {}: {e}",
                        self.path.display()
                    ));
                    return;
                }
            }
        }
        if let Some((f, len)) = &mut self.file {
            use std::io::Write;
            match f.write_all(&line) {
                Ok(()) => *len += line.len() as u64,
                Err(_) => self.file = None,
            }
        }
    }

    fn refusal(&mut self, instance: &str, host: &str, port: u16, reason: &str) {
        if !self.admit() {
            return;
        }
        let shown = crate::state::events::truncate(host, crate::state::events::BOX_FIELD_MAX);
        say(format!(
            "egress proxy: refused {}:{port}: {reason}",
            crate::core::untrusted::printable(&shown)
        ));
        let mut meta = json!({"instance": instance, "host": shown, "port": port, "reason": reason});
        if shown.len() != host.len() {
            meta["host_bytes"] = json!(host.len());
        }
        self.write(&egress_event("connection refused", meta));
    }

    /// Writes how many refusals the rate limit left out since last time.
    fn flush_dropped(&mut self, instance: &str) {
        if self.dropped == 0 {
            return;
        }
        let n = std::mem::take(&mut self.dropped);
        say(format!(
            "egress proxy: {n} more refusals not logged (rate limit)"
        ));
        self.write(&egress_event(
            "refusals not logged",
            json!({"instance": instance, "dropped": n, "reason": "rate limit"}),
        ));
    }
}

fn egress_event(message: &str, metadata: serde_json::Value) -> Event {
    Event {
        timestamp: chrono::Utc::now(),
        level: Level::Warn,
        component: "egress".to_owned(),
        message: message.to_owned(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
    }
}

type Log = Arc<Mutex<EgressLog>>;

fn log_refusal(events: &Log, instance: &str, host: &str, port: u16, reason: &str) {
    events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refusal(instance, host, port, reason);
}

/// Writes the count of dropped refusals every few seconds.
async fn flush_dropped(events: Log, rules: Arc<Mutex<Rules>>) {
    loop {
        tokio::time::sleep(DROPPED_EVERY).await;
        let instance = rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .1
            .clone();
        events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush_dropped(&instance);
    }
}

/// A request's head, as the agent sent it.
struct Head<'a> {
    method: &'a str,
    target: &'a str,
    version: &'a str,
    connect: bool,
    /// The header lines, as they came.
    headers: Vec<&'a str>,
}

impl<'a> Head<'a> {
    fn parse(text: &'a str) -> Self {
        let mut lines = text.split("\r\n");
        let request = lines.next().unwrap_or("");
        let mut parts = request.split(' ');
        let (method, target, version) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("HTTP/1.1"),
        );
        Head {
            method,
            target,
            version,
            connect: method.eq_ignore_ascii_case("CONNECT"),
            headers: lines.filter(|l| !l.is_empty()).collect(),
        }
    }

    /// Where it goes (host, port), and the path to ask for there (none
    /// for CONNECT).
    fn destination(&self) -> (Option<(String, u16)>, String) {
        let target = self.target;
        if self.connect {
            (split_host_port(target, 443), String::new())
        } else if let Some(abs) = target.strip_prefix("http://") {
            let (authority, path) = match abs.find('/') {
                Some(i) => (&abs[..i], abs[i..].to_owned()),
                None => (abs, "/".to_owned()),
            };
            (split_host_port(authority, 80), path)
        } else {
            let host = self.headers.iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("host").then(|| v.trim())
            });
            (host.and_then(|h| split_host_port(h, 80)), target.to_owned())
        }
    }

    /// The head sent on for a plain request: one request per connection
    /// (the next one may name another host), without the proxy's headers.
    fn forwarded(&self, path: &str) -> String {
        let mut out = format!("{} {path} {}\r\n", self.method, self.version);
        for h in &self.headers {
            let name = h.split(':').next().unwrap_or("").trim();
            let skip = [
                "proxy-connection",
                "proxy-authorization",
                "connection",
                "keep-alive",
            ];
            if !skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                out.push_str(h);
                out.push_str("\r\n");
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out
    }
}

/// A request refused: the status and text to answer with.
type Refusal = (&'static str, String);

/// The address to connect to for `host:port`, decided by `set`; a refusal
/// is logged to `events`.
async fn resolve(
    set: &RuleSet,
    host: &str,
    port: u16,
    instance: &str,
    events: &Log,
) -> std::result::Result<SocketAddr, Refusal> {
    if let Err(why) = set.decide(host, port) {
        let reason = why.to_string();
        log_refusal(events, instance, host, port, &reason);
        let hint = format!(
            "{host}:{port} refused ({reason}); allow it with `ai-sessctl net allow {instance} {host}{}`",
            if port == 443 || port == 80 { String::new() } else { format!(":{port}") }
        );
        return Err(("403 Forbidden", hint));
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(_) => Vec::new(),
    };
    let Some(&addr) = addrs.first() else {
        return Err(("502 Bad Gateway", format!("{host}: name does not resolve")));
    };
    // Every address must pass, not one: a name that also resolves to a
    // forbidden address is refused (no racing the resolver's order).
    let gws = gateways();
    if let Some(why) = addrs
        .iter()
        .find_map(|a| set.address_ok(a.ip(), &gws).err())
    {
        let reason = format!("resolves to {why}");
        log_refusal(events, instance, host, port, &reason);
        return Err(("403 Forbidden", format!("{host}: {reason}")));
    }
    Ok(addr)
}

async fn handle(
    mut conn: TcpStream,
    rules: Arc<Mutex<Rules>>,
    events: &Log,
) -> std::io::Result<()> {
    let Some((head, rest)) = read_head(&mut conn).await else {
        respond(&mut conn, "400 Bad Request", "no complete request head").await;
        return Ok(());
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let head = Head::parse(&text);
    let (dest, path) = head.destination();
    let Some((host, port)) = dest else {
        respond(&mut conn, "400 Bad Request", "no destination host").await;
        return Ok(());
    };
    let (set, instance) = rules.lock().unwrap_or_else(|p| p.into_inner()).current();
    // The broker beside the proxy, asked through it by a client that does
    // not honour NO_PROXY: always allowed (it only talks to its upstream).
    let to_broker = host.eq_ignore_ascii_case(super::sidecar::PROXY_ALIAS)
        && port == super::broker::BROKER_PORT;
    let addr = match to_broker {
        true => match tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(a) => Ok(a),
            None => Err(("502 Bad Gateway", format!("{host}: name does not resolve"))),
        },
        false => resolve(&set, &host, port, &instance, events).await,
    };
    let addr = match addr {
        Ok(addr) => addr,
        Err((status, why)) => {
            respond(&mut conn, status, &why).await;
            return Ok(());
        }
    };
    let mut up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            respond(
                &mut conn,
                "502 Bad Gateway",
                &format!("cannot connect to {host}:{port}"),
            )
            .await;
            return Ok(());
        }
    };
    let _ = up.set_nodelay(true);
    let _ = conn.set_nodelay(true);
    if head.connect {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        up.write_all(head.forwarded(&path).as_bytes()).await?;
    }
    if !rest.is_empty() {
        up.write_all(&rest).await?;
    }
    relay::relay(conn, up, relay::IDLE).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(split_host_port("a.b:443", 1), Some(("a.b".into(), 443)));
        assert_eq!(split_host_port("a.b", 80), Some(("a.b".into(), 80)));
        assert_eq!(split_host_port("[::1]:8", 1), Some(("::1".into(), 8)));
        assert_eq!(split_host_port("a:x", 1), None);
    }

    #[test]
    fn request_heads_parse_and_are_forwarded_without_proxy_headers() {
        let text = "GET http://a.b:8080/x?y HTTP/1.0\r\nHost: a.b:8080\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n";
        let head = Head::parse(text);
        assert!(!head.connect);
        let (dest, path) = head.destination();
        assert_eq!(dest, Some(("a.b".into(), 8080)));
        assert_eq!(path, "/x?y");
        assert_eq!(
            head.forwarded(&path),
            "GET /x?y HTTP/1.0\r\nHost: a.b:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let head = Head::parse("CONNECT c.d:443 HTTP/1.1\r\n\r\n");
        assert!(head.connect);
        assert_eq!(
            head.destination(),
            (Some(("c.d".into(), 443)), String::new())
        );
        let head = Head::parse("GET /z HTTP/1.1\r\nhost: e.f\r\n\r\n");
        assert_eq!(head.destination(), (Some(("e.f".into(), 80)), "/z".into()));
    }
}
