//! Which engine to talk to, found the way the `docker` CLI finds it:
//! `DOCKER_HOST`, else the context named by `DOCKER_CONTEXT`, else the
//! `currentContext` of `$DOCKER_CONFIG/config.json` (default `~/.docker`),
//! read from the context store; else the first platform socket that exists.
//! Every engine error names the endpoint and where it came from.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The docker CLI's fallback, used when no socket is found either.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where an endpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    DockerHost,
    /// A context named by `DOCKER_CONTEXT`.
    ContextEnv {
        name: String,
    },
    /// The `currentContext` of a docker config file.
    ContextConfig {
        name: String,
        config: PathBuf,
    },
    /// Nothing configured: a platform socket (the first that exists).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DockerHost => write!(f, "from DOCKER_HOST"),
            Source::ContextEnv { name } => {
                write!(f, "from docker context \"{name}\", set by DOCKER_CONTEXT")
            }
            Source::ContextConfig { name, config } => write!(
                f,
                "from docker context \"{name}\", the current context in {}",
                config.display()
            ),
            Source::Default => write!(f, "platform default"),
        }
    }
}

/// An engine address (`unix://`, `tcp://`, `ssh://` …) and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub source: Source,
    /// The directory of `ca.pem`, `cert.pem` and `key.pem` for an engine
    /// that verifies its clients over TLS (`DOCKER_TLS_VERIFY`, or a
    /// context created with `--docker "…,ca=…,cert=…,key=…"`).
    pub tls: Option<PathBuf>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.host, self.source)
    }
}

impl Endpoint {
    /// Whether the engine address `host` names this engine: the same
    /// address, or another path to its socket (`/run/docker.sock`,
    /// `/var/run/docker.sock`).
    pub fn names(&self, host: &str) -> bool {
        let socket = |h: &str| {
            h.strip_prefix("unix://")
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.into()))
        };
        self.host == host
            || matches!((socket(&self.host), socket(host)), (Some(x), Some(y)) if x == y)
    }

    /// The socket path of a `unix://` endpoint.
    pub fn unix_path(&self) -> Option<&Path> {
        self.host.strip_prefix("unix://").map(Path::new)
    }

    /// Whether the engine runs on this machine (or in a VM sharing its
    /// files, as Docker Desktop, Colima and OrbStack do), so that a project
    /// directory here can be mounted into its containers.
    pub fn is_local(&self) -> bool {
        if self.unix_path().is_some() {
            return true;
        }
        let Some(rest) = self
            .host
            .strip_prefix("tcp://")
            .or_else(|| self.host.strip_prefix("http://"))
        else {
            // ssh:// and anything else: another machine.
            return false;
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Why projects here cannot be mounted into this engine's containers,
    /// if they cannot.
    pub fn mount_refusal(&self) -> Option<String> {
        (!self.is_local()).then(|| {
            format!(
                "the container engine at {self} is on another machine, \
                 where this project directory cannot be mounted into a container"
            )
        })
    }
}

/// What resolution reads from the environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_host: Option<String>,
    /// `DOCKER_TLS_VERIFY` set (to anything non-empty) and `DOCKER_CERT_PATH`.
    pub docker_tls_verify: bool,
    pub docker_cert_path: Option<PathBuf>,
    pub docker_context: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            docker_host: var("DOCKER_HOST"),
            docker_tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".docker")))
    }
}

/// A context or config file that names an engine but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("docker context \"{name}\" ({origin}): {problem}")]
pub struct ContextError {
    name: String,
    origin: String,
    problem: String,
}

/// The endpoint of this process's environment, resolved once.
pub fn current() -> Result<&'static Endpoint, &'static ContextError> {
    static CURRENT: OnceLock<Result<Endpoint, ContextError>> = OnceLock::new();
    CURRENT
        .get_or_init(|| resolve(&Env::from_process()))
        .as_ref()
}

/// Resolves as the docker CLI does (see the module comment).
pub fn resolve(env: &Env) -> Result<Endpoint, ContextError> {
    if let Some(host) = &env.docker_host {
        // As the docker CLI: certificates from DOCKER_CERT_PATH, else the
        // config directory.
        let tls = env
            .docker_tls_verify
            .then(|| env.docker_cert_path.clone().or_else(|| env.config_dir()))
            .flatten();
        return Ok(Endpoint {
            host: host.clone(),
            source: Source::DockerHost,
            tls,
        });
    }
    let config_dir = env.config_dir();
    let (name, source) = if let Some(name) = &env.docker_context {
        (name.clone(), Source::ContextEnv { name: name.clone() })
    } else {
        match config_dir.as_deref().map(current_context) {
            Some(Ok(Some((name, config)))) => {
                (name.clone(), Source::ContextConfig { name, config })
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(None)) | None => return Ok(platform_default(env)),
        }
    };
    // "default" is the built-in context: DOCKER_HOST (unset here) or the
    // platform socket.
    if name == "default" {
        return Ok(platform_default(env));
    }
    let origin = match &source {
        Source::ContextConfig { config, .. } => format!("current in {}", config.display()),
        _ => "set by DOCKER_CONTEXT".to_owned(),
    };
    let err = |problem: String| ContextError {
        name: name.clone(),
        origin: origin.clone(),
        problem,
    };
    let Some(config_dir) = config_dir else {
        return Err(err(
            "no docker config directory (set HOME or DOCKER_CONFIG)".into(),
        ));
    };
    let hex = store_key(&name);
    let meta = config_dir
        .join("contexts")
        .join("meta")
        .join(&hex)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        err(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "not found (no {}); `docker context ls` lists the contexts",
                meta.display()
            )
        } else {
            format!("{}: {e}", meta.display())
        })
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err(format!("{}: not valid JSON: {e}", meta.display())))?;
    let host = json
        .pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err(format!("{} has no Endpoints.docker.Host", meta.display())))?;
    if json.pointer("/Endpoints/docker/SkipTLSVerify") == Some(&serde_json::Value::Bool(true)) {
        return Err(err(
            "skips verifying the engine's TLS certificate, which ai-sessions does not do: \
             give the context the engine's CA (docker context update --docker \"…,ca=FILE\")"
                .into(),
        ));
    }
    // The context store keeps a TLS context's files beside its metadata.
    let tls = config_dir
        .join("contexts")
        .join("tls")
        .join(&hex)
        .join("docker");
    let tls = tls.join("ca.pem").is_file().then_some(tls);
    Ok(Endpoint {
        host: host.to_owned(),
        source,
        tls,
    })
}

/// A context's directory name in the store: the hex SHA-256 of its name.
fn store_key(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `currentContext` of `DIR/config.json`, when set; a missing file is no
/// context, an unreadable one an error (the docker CLI refuses it too).
fn current_context(dir: &Path) -> Result<Option<(String, PathBuf)>, ContextError> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ContextError {
                name: "?".into(),
                origin: path.display().to_string(),
                problem: format!("cannot read the docker config: {e}"),
            })
        }
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ContextError {
        name: "?".into(),
        origin: path.display().to_string(),
        problem: format!("the docker config is not valid JSON: {e}"),
    })?;
    Ok(json
        .get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(|c| (c.to_owned(), path)))
}

/// The platform's sockets, in order: the system engine, Docker Desktop's
/// per-user socket, rootless Docker's.
fn default_sockets(env: &Env) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(DEFAULT_SOCKET)];
    if let Some(home) = &env.home {
        out.push(home.join(".docker/run/docker.sock"));
    }
    if let Some(run) = &env.xdg_runtime_dir {
        out.push(run.join("docker.sock"));
    }
    out
}

fn platform_default(env: &Env) -> Endpoint {
    let sockets = default_sockets(env);
    let path = sockets
        .iter()
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
        })
        .unwrap_or(&sockets[0]);
    Endpoint {
        host: format!("unix://{}", path.display()),
        source: Source::Default,
        tls: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn two_paths_to_one_socket_name_one_engine() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        std::fs::write(&sock, "").unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        let at = |host: &str| Endpoint {
            host: host.to_owned(),
            source: Source::DockerHost,
            tls: None,
        };
        let here = at(&format!("unix://{}", sock.display()));
        assert!(here.names(&format!("unix://{}", link.display())));
        assert!(!here.names("unix:///nonexistent.sock"));
        assert!(at("ssh://me@far").names("ssh://me@far"));
        assert!(!at("ssh://me@far").names("tcp://far:2376"));
    }

    fn context(config: &Path, name: &str, host: &str) {
        let dir = config.join("contexts/meta").join(store_key(name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{"Description":"test"}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
    }

    fn env(config: &Path, home: &Path) -> Env {
        Env {
            docker_config: Some(config.to_path_buf()),
            home: Some(home.to_path_buf()),
            ..Env::default()
        }
    }

    #[test]
    fn docker_host_wins_over_every_context() {
        let tmp = tempfile::tempdir().unwrap();
        context(tmp.path(), "other", "unix:///other.sock");
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"currentContext":"other"}"#,
        )
        .unwrap();
        let mut e = env(tmp.path(), tmp.path());
        e.docker_context = Some("other".into());
        e.docker_host = Some("tcp://127.0.0.1:2375".into());
        let ep = resolve(&e).unwrap();
        assert_eq!(ep.host, "tcp://127.0.0.1:2375");
        assert_eq!(ep.source, Source::DockerHost);
        assert_eq!(ep.to_string(), "tcp://127.0.0.1:2375 (from DOCKER_HOST)");
    }

    #[test]
    fn docker_context_wins_over_the_config_and_is_read_from_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        context(tmp.path(), "colima", "unix:///colima.sock");
        context(tmp.path(), "orb", "unix:///orb.sock");
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"currentContext":"orb"}"#,
        )
        .unwrap();
        let mut e = env(tmp.path(), tmp.path());
        e.docker_context = Some("colima".into());
        let ep = resolve(&e).unwrap();
        assert_eq!(ep.host, "unix:///colima.sock");
        assert!(
            ep.to_string().contains("\"colima\", set by DOCKER_CONTEXT"),
            "{ep}"
        );

        e.docker_context = None;
        let ep = resolve(&e).unwrap();
        assert_eq!(ep.host, "unix:///orb.sock");
        let shown = ep.to_string();
        assert!(shown.contains("\"orb\", the current context in"), "{shown}");
        assert!(shown.contains("config.json"), "{shown}");
    }

    #[test]
    fn the_default_context_and_no_config_mean_the_platform_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"currentContext":"default"}"#,
        )
        .unwrap();
        let e = env(tmp.path(), home.path());
        let ep = resolve(&e).unwrap();
        assert_eq!(ep.source, Source::Default);
        // Docker Desktop's per-user socket is found when the system one is not.
        if !Path::new(DEFAULT_SOCKET).exists() {
            std::fs::create_dir_all(home.path().join(".docker/run")).unwrap();
            let sock = home.path().join(".docker/run/docker.sock");
            let _l = UnixListener::bind(&sock).unwrap();
            assert_eq!(resolve(&e).unwrap().unix_path(), Some(sock.as_path()));
        } else {
            assert_eq!(ep.unix_path(), Some(Path::new(DEFAULT_SOCKET)));
        }
        std::fs::remove_file(tmp.path().join("config.json")).unwrap();
        assert_eq!(resolve(&e).unwrap().source, Source::Default);
    }

    #[test]
    fn rootless_socket_is_a_platform_default() {
        let home = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let sock = run.path().join("docker.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let e = Env {
            home: Some(home.path().to_path_buf()),
            xdg_runtime_dir: Some(run.path().to_path_buf()),
            ..Env::default()
        };
        let expect = if Path::new(DEFAULT_SOCKET).exists() {
            PathBuf::from(DEFAULT_SOCKET)
        } else {
            sock
        };
        assert_eq!(resolve(&e).unwrap().unix_path(), Some(expect.as_path()));
    }

    #[test]
    fn tls_material_comes_from_the_cert_path_or_the_context_store() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = env(tmp.path(), tmp.path());
        e.docker_host = Some("tcp://10.1.2.3:2376".into());
        assert_eq!(resolve(&e).unwrap().tls, None, "no DOCKER_TLS_VERIFY");
        e.docker_tls_verify = true;
        assert_eq!(resolve(&e).unwrap().tls.as_deref(), Some(tmp.path()));
        e.docker_cert_path = Some("/certs".into());
        assert_eq!(
            resolve(&e).unwrap().tls.as_deref(),
            Some(Path::new("/certs"))
        );

        let mut e = env(tmp.path(), tmp.path());
        context(tmp.path(), "box", "tcp://10.1.2.3:2376");
        e.docker_context = Some("box".into());
        assert_eq!(
            resolve(&e).unwrap().tls,
            None,
            "a context without TLS files"
        );
        let tls = tmp
            .path()
            .join("contexts/tls")
            .join(store_key("box"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "x").unwrap();
        assert_eq!(resolve(&e).unwrap().tls, Some(tls));

        let meta = tmp
            .path()
            .join("contexts/meta")
            .join(store_key("box"))
            .join("meta.json");
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(
            &meta,
            text.replace("\"SkipTLSVerify\":false", "\"SkipTLSVerify\":true"),
        )
        .unwrap();
        let msg = resolve(&e).unwrap_err().to_string();
        assert!(msg.contains("\"box\"") && msg.contains("CA"), "{msg}");
    }

    #[test]
    fn a_missing_or_broken_context_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = env(tmp.path(), tmp.path());
        e.docker_context = Some("gone".into());
        let msg = resolve(&e).unwrap_err().to_string();
        assert!(
            msg.contains("\"gone\"") && msg.contains("DOCKER_CONTEXT"),
            "{msg}"
        );
        assert!(msg.contains("not found"), "{msg}");

        std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
        e.docker_context = None;
        let msg = resolve(&e).unwrap_err().to_string();
        assert!(
            msg.contains("config.json") && msg.contains("not valid JSON"),
            "{msg}"
        );

        context(tmp.path(), "empty", "");
        e.docker_context = Some("empty".into());
        let msg = resolve(&e).unwrap_err().to_string();
        assert!(msg.contains("Endpoints.docker.Host"), "{msg}");
    }

    #[test]
    fn only_local_engines_may_mount_the_project() {
        let ep = |h: &str| Endpoint {
            host: h.into(),
            source: Source::DockerHost,
            tls: None,
        };
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
            "http://127.0.0.1:2375",
        ] {
            assert!(ep(local).is_local(), "{local}");
            assert_eq!(ep(local).mount_refusal(), None);
        }
        for remote in [
            "ssh://me@build-box",
            "tcp://10.1.2.3:2376",
            "tcp://docker.example:2375",
        ] {
            assert!(!ep(remote).is_local(), "{remote}");
            let why = ep(remote).mount_refusal().unwrap();
            assert!(
                why.contains(remote) && why.contains("another machine"),
                "{why}"
            );
        }
    }
}
