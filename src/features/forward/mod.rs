//! Where an instance's port is reached from this machine. On an engine here
//! it is the published address itself. On an engine reached over `ssh://`
//! the port is published on that machine's loopback: an `ssh -L` forward
//! (started once, kept in the background, reused, closed by `--close`,
//! `stop` and `rm`) brings it to this one. On a `tcp://` engine elsewhere
//! no forward can be made for you: what to run is said instead.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Port};
use crate::engine::endpoint::{self, Endpoint};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the port is reached from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reach", rename_all = "snake_case")]
pub enum Reach {
    /// Published on this machine.
    Direct { address: String },
    /// Brought here by an ssh forward (`started` now, or one already running).
    Forwarded {
        address: String,
        via: String,
        remote_port: Port,
        started: bool,
    },
    /// On another machine that no forward of ours reaches: `run` this.
    Elsewhere { engine: String, run: String },
}

/// A running forward, as recorded (host-only: never in a dir the box sees).
#[derive(Debug, Serialize, Deserialize)]
struct Forward {
    pid: i32,
    local_port: u16,
    remote_port: u16,
    via: String,
}

fn record_path(home: &StateDir, id: &InstanceId) -> PathBuf {
    home.root().join("forwards").join(format!("{id}.json"))
}

/// The forward's ssh writes here (a pipe nobody reads would end it).
fn log_path(home: &StateDir, id: &InstanceId) -> PathBuf {
    home.root().join("forwards").join(format!("{id}.log"))
}

/// `ssh://[user@]host[:port]` → the arguments naming that destination.
fn ssh_destination(host: &str) -> Option<Vec<String>> {
    let rest = host.strip_prefix("ssh://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() || authority.starts_with('-') {
        return None;
    }
    let (dest, port) = match authority.rsplit_once(':') {
        Some((d, p)) if !d.ends_with(']') && p.parse::<u16>().is_ok() => (d, Some(p)),
        _ => (authority, None),
    };
    let mut args = Vec::new();
    if let Some(p) = port {
        args.extend(["-p".to_owned(), p.to_owned()]);
    }
    args.push(dest.to_owned());
    Some(args)
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The forward recorded for `id`, if its ssh still runs and still listens.
fn live_forward(home: &StateDir, id: &InstanceId, remote_port: Port) -> Option<Forward> {
    let text = std::fs::read(record_path(home, id)).ok()?;
    let f: Forward = serde_json::from_slice(&text).ok()?;
    (f.remote_port == remote_port.get() && alive(f.pid) && is_ssh(f.pid) && accepts(f.local_port))
        .then_some(f)
}

/// Only ever signal a process that is the ssh we started (a recorded pid
/// may have been reused since).
fn is_ssh(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .next()
                .is_some_and(|a| a.ends_with(b"ssh"))
        })
        .unwrap_or(cfg!(not(target_os = "linux")))
}

/// The local port for a forward: the instance's own number when free here.
fn local_port(preferred: Port) -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, preferred.get()))
        .or_else(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| Error::Other(format!("no free local port for the forward: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?
        .port())
}

/// How `port` of `id` (published at `bind` on the engine's machine) is
/// reached from here, starting an ssh forward when that is the way.
pub fn reach(home: &StateDir, id: &InstanceId, bind: &str, port: Port) -> Result<Reach> {
    let ep = endpoint::current().map_err(|e| Error::Engine(format!("no container engine: {e}")))?;
    reach_on(home, ep, id, bind, port)
}

fn reach_on(
    home: &StateDir,
    ep: &Endpoint,
    id: &InstanceId,
    bind: &str,
    port: Port,
) -> Result<Reach> {
    if ep.is_local() {
        return Ok(Reach::Direct {
            address: format!("{bind}:{port}"),
        });
    }
    let Some(dest) = ssh_destination(&ep.host) else {
        let host = ep
            .host
            .trim_start_matches("tcp://")
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return Ok(Reach::Elsewhere {
            engine: ep.to_string(),
            run: format!("ssh -N -L 127.0.0.1:{port}:{bind}:{port} {host}"),
        });
    };
    let via = dest.join(" ");
    if let Some(f) = live_forward(home, id, port) {
        return Ok(Reach::Forwarded {
            address: format!("127.0.0.1:{}", f.local_port),
            via: f.via,
            remote_port: port,
            started: false,
        });
    }
    close(home, id)?;
    let local = local_port(port)?;
    let log_at = log_path(home, id);
    if let Some(dir) = log_at.parent() {
        crate::core::paths::ensure_private_dir(dir)?;
    }
    let _ = std::fs::remove_file(&log_at);
    let log = crate::core::paths::open_private_append(&log_at)?;
    let forward = format!("127.0.0.1:{local}:{bind}:{port}");
    let mut cmd = std::process::Command::new("ssh");
    cmd.args([
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "BatchMode=yes",
    ])
    .args(["-o", "ServerAliveInterval=30", "-L", &forward, "--"])
    .args(&dest)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(log);
    // Its own session: it outlives this command and no terminal's ctrl-c
    // or hangup reaches it.
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Other(format!("ssh for the forward: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read(&log_at).unwrap_or_default();
            let said = String::from_utf8_lossy(&said);
            return Err(Error::Other(format!(
                "the ssh forward to {via} ended ({status}): {}",
                crate::core::untrusted::text::printable(said.trim())
            )));
        }
        if accepts(local) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Other(format!(
                "the ssh forward to {via} did not listen on 127.0.0.1:{local} within 20s"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = Forward {
        pid: child.id() as i32,
        local_port: local,
        remote_port: port.get(),
        via: via.clone(),
    };
    let path = record_path(home, id);
    let bytes = serde_json::to_vec(&record).map_err(|e| Error::Other(e.to_string()))?;
    crate::core::paths::atomic_write(&path, &bytes)?;
    Ok(Reach::Forwarded {
        address: format!("127.0.0.1:{local}"),
        via,
        remote_port: port,
        started: true,
    })
}

/// Stops the forward of `id`, if one runs; true when one did.
pub fn close(home: &StateDir, id: &InstanceId) -> Result<bool> {
    let path = record_path(home, id);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(false);
    };
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(log_path(home, id));
    let Ok(f) = serde_json::from_slice::<Forward>(&text) else {
        return Ok(false);
    };
    if alive(f.pid) && is_ssh(f.pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(f.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_destinations_become_ssh_arguments() {
        assert_eq!(ssh_destination("ssh://me@box"), Some(vec!["me@box".into()]));
        assert_eq!(
            ssh_destination("ssh://me@box:2222"),
            Some(vec!["-p".into(), "2222".into(), "me@box".into()])
        );
        assert_eq!(
            ssh_destination("ssh://-oProxyCommand=x"),
            None,
            "never an option"
        );
        assert_eq!(ssh_destination("tcp://box:2376"), None);
    }
}
