//! The container engine (Docker or Podman), spoken natively through
//! bollard: version negotiated, the engine found as the docker CLI finds
//! it (see `endpoint`), every call bounded by a timeout. It knows nothing
//! of instances, settings or agents: callers hand it plain data
//! ([`container::ContainerSpec`], network names, labels) and get plain
//! data back. One connection per process: [`Engine::shared`].

pub mod attach;
pub mod container;
pub mod endpoint;
pub mod events;
pub mod image;
pub mod logfile;
pub mod logs;
pub mod network;
pub mod scratch;
pub mod state;
pub mod stats;
pub mod subnet;
pub mod volume;

use crate::core::error::{Error, Result};
use bollard::Docker;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Labels every object this tool makes carries: made by us, and for which
/// state home (the engine is shared by every user and home; `gc` and
/// `registry repair` are not).
pub const MANAGED_LABEL: &str = "ai.managed-by";
pub const MANAGED_VALUE: &str = "ai-sessctl";
pub const HOME_LABEL: &str = "ai.home";

/// Deadline for answering at all; an engine slower than this is "down".
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The same for an engine on another machine (see [`connect_timeout`]).
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for reads (inspect, list, version), or [`call_timeout`] when
/// that is shorter.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`call_timeout`].
pub const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(300);
/// What the client library itself allows any request (a backstop: the
/// calls above are bounded by their own deadlines, which name the call).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// [`call_timeout`], in milliseconds (0: the default).
static CHANGE_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// Sets how long a change (create, start, stop, remove of a container or
/// network) may take: `global.engine_timeout`.
pub fn set_call_timeout(d: Duration) {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    CHANGE_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

/// Deadline for changes: the engine makes and removes networks one at a
/// time (and container starts wait on them), so with fifty starts at once
/// the last one's call waits for the other forty-nine. That is a queue,
/// not an engine that stopped answering.
pub fn call_timeout() -> Duration {
    match CHANGE_TIMEOUT_MS.load(Ordering::Relaxed) {
        0 => DEFAULT_CHANGE_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}

/// Deadline for reads: [`CALL_TIMEOUT`], or a shorter configured one.
pub fn read_timeout() -> Duration {
    CALL_TIMEOUT.min(call_timeout())
}

/// A call that did not finish in time: the engine took it (it answered
/// the connection), so it is busy, not down.
pub fn timeout_error(what: &str, after: Duration) -> Error {
    let shown = match endpoint::current() {
        Ok(ep) => format!("the container engine at {ep}"),
        Err(_) => "the container engine".to_owned(),
    };
    Error::EngineTimeout(format!(
        "{what}: timed out after {} ({shown} took the call and did not finish it)",
        humantime(after)
    ))
}

fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A connection to the engine, with the runtime its calls run on.
pub struct Engine {
    rt: tokio::runtime::Runtime,
    docker: Docker,
}

/// The process's one connection, made on first use.
static SHARED: OnceLock<Engine> = OnceLock::new();

/// An engine error, naming the endpoint (once) and where it came from.
pub fn error(msg: impl Into<String>) -> Error {
    let msg = msg.into();
    match endpoint::current() {
        Ok(ep) if !msg.contains(&ep.host) => Error::Engine(format!("{msg} (engine at {ep})")),
        _ => Error::Engine(msg),
    }
}

fn engine_err(e: impl std::fmt::Display) -> Error {
    match endpoint::current() {
        Ok(ep) => Error::Engine(format!("container engine at {ep} is not answering: {e}")),
        Err(bad) => Error::Engine(format!("container engine not reachable: {bad}")),
    }
}

/// The endpoint to connect to, or why the configured one cannot be used.
fn endpoint() -> Result<&'static endpoint::Endpoint> {
    endpoint::current().map_err(|e| Error::Engine(format!("no container engine: {e}")))
}

/// A client for any endpoint (tcp, ssh, unix; tcp with TLS when the
/// endpoint names certificates), its version negotiated.
async fn connect_negotiated(ep: &endpoint::Endpoint) -> Result<Docker> {
    let docker = match &ep.tls {
        Some(dir) => connect_tls(&ep.host, dir)?,
        None => Docker::connect_with_host(&ep.host).map_err(engine_err)?,
    }
    .with_timeout(CLIENT_TIMEOUT);
    let within = connect_timeout(ep);
    match tokio::time::timeout(within, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(engine_err(e)),
        Err(_) => Err(engine_err(format!("no answer within {within:?}"))),
    }
}

/// How long the first answer may take: a local socket answers at once or
/// is down, but over `ssh://` an ssh handshake and the far side's `docker
/// system dial-stdio` come first, and a TLS handshake over a network.
fn connect_timeout(ep: &endpoint::Endpoint) -> Duration {
    if ep.host.starts_with("ssh://") {
        REMOTE_CONNECT_TIMEOUT * 2
    } else if ep.is_local() {
        CONNECT_TIMEOUT
    } else {
        REMOTE_CONNECT_TIMEOUT
    }
}

/// An engine that verifies its clients: its CA, our certificate and key
/// from `dir` (as the docker CLI reads them).
#[cfg(target_os = "linux")]
fn connect_tls(host: &str, dir: &std::path::Path) -> Result<Docker> {
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        if !dir.join(f).is_file() {
            return Err(engine_err(format!(
                "TLS: no {} (the engine's CA, the client's certificate and key are read from {})",
                dir.join(f).display(),
                dir.display()
            )));
        }
    }
    Docker::connect_with_ssl(
        host,
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        &dir.join("ca.pem"),
        CALL_TIMEOUT.as_secs(),
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| engine_err(format!("TLS: {e}")))
}

/// This build has no TLS client for engines (see Cargo.toml): an engine
/// over `ssh://` needs none.
#[cfg(not(target_os = "linux"))]
fn connect_tls(host: &str, _dir: &std::path::Path) -> Result<Docker> {
    Err(engine_err(format!(
        "{host} asks for TLS, which this build cannot speak to an engine; \
         reach it over ssh:// instead (docker context create NAME --docker host=ssh://USER@HOST)"
    )))
}

fn api_err(what: &str, e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(format!("{what}: {message}")),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            Error::Other(format!("{what}: {message}"))
        }
        // The engine took the call and is slow to finish it (a queue of
        // network creates): that call timed out, the engine is up.
        bollard::errors::Error::RequestTimeoutError => timeout_error(what, CLIENT_TIMEOUT),
        other => engine_err(format!("{what}: {other}")),
    }
}

pub(crate) fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Asks the engine behind a unix socket for `/_ping` and returns the API
/// version to speak: the engine's, capped at what bollard knows.
fn ping_unix(path: &std::path::Path) -> Result<bollard::ClientVersion> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(engine_err)?;
    s.set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(engine_err)?;
    s.set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(engine_err)?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(engine_err)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // The headers are all we need; stop at their end.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(engine_err(format!("no answer within {CONNECT_TIMEOUT:?}")))
            }
            Err(e) => return Err(engine_err(e)),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    if !head.starts_with("HTTP/1.") {
        return Err(engine_err("not a Docker API endpoint"));
    }
    let version = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("api-version")
                .then(|| v.trim().to_owned())
        })
        .and_then(|v| {
            let (maj, min) = v.split_once('.')?;
            Some((maj.parse::<usize>().ok()?, min.parse::<usize>().ok()?))
        });
    let ours = bollard::API_DEFAULT_VERSION;
    Ok(match version {
        Some((maj, min)) if (maj, min) < (ours.major_version, ours.minor_version) => {
            bollard::ClientVersion {
                major_version: maj,
                minor_version: min,
            }
        }
        _ => *ours,
    })
}

impl Engine {
    /// The process's connection: made (version negotiated) on first use,
    /// or an error within about two seconds when the engine does not
    /// answer (asked again next time).
    pub fn shared() -> Result<&'static Engine> {
        if let Some(e) = SHARED.get() {
            return Ok(e);
        }
        let engine = Self::connect()?;
        Ok(SHARED.get_or_init(|| engine))
    }

    fn connect() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("tokio: {e}")))?;
        let endpoint = endpoint()?;
        // On a unix socket, `/_ping` tells the engine's API version in a
        // fraction of a millisecond (as the docker CLI does it); `/version`,
        // which bollard's negotiation asks, costs several.
        if let Some(path) = endpoint.unix_path() {
            let version = ping_unix(path)?;
            let docker =
                Docker::connect_with_unix(&endpoint.host, CLIENT_TIMEOUT.as_secs(), &version)
                    .map_err(engine_err)?;
            return Ok(Engine { rt, docker });
        }
        let docker = rt.block_on(connect_negotiated(endpoint))?;
        Ok(Engine { rt, docker })
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs `f` on the engine's own runtime, for callers on another one
    /// (the API server): its result comes back through the handle.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// A read, bounded by [`read_timeout`].
    pub(crate) async fn timed<T>(
        what: &str,
        f: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        Self::within(what, read_timeout(), f).await
    }

    /// A change, bounded by [`call_timeout`].
    pub(crate) async fn timed_change<T>(
        what: &str,
        f: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        Self::within(what, call_timeout(), f).await
    }

    async fn within<T>(
        what: &str,
        after: Duration,
        f: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        Self::bounded(what, after, f)
            .await?
            .map_err(|e| api_err(what, e))
    }

    /// `f` bounded by `after`, its own error left to the caller (a 404
    /// may be an answer).
    pub(crate) async fn bounded<T, E>(
        what: &str,
        after: Duration,
        f: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<std::result::Result<T, E>> {
        tokio::time::timeout(after, f)
            .await
            .map_err(|_| timeout_error(what, after))
    }

    pub fn version(&self) -> Result<String> {
        let v = self.block_on(Self::timed("version", self.docker.version()))?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    /// Whether the engine is Podman (its version lists a "Podman Engine").
    pub fn is_podman(&self) -> bool {
        self.block_on(Self::timed("version", self.docker.version()))
            .ok()
            .and_then(|v| v.components)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.name.to_ascii_lowercase().contains("podman"))
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::core::error::Error;

    #[test]
    fn an_engine_error_names_the_endpoint_once() {
        let Ok(ep) = super::endpoint::current() else {
            return; // this environment names a broken context: nothing to add
        };
        let shown = super::error("create network x: boom").to_string();
        assert_eq!(shown, format!("create network x: boom (engine at {ep})"));
        let already = format!("container engine at {ep} is not answering");
        assert_eq!(super::error(already.clone()).to_string(), already);
        assert_eq!(Error::Other("boom".into()).to_string(), "boom");
    }
}
