//! Attaching the terminal to a container like `docker attach`: raw mode
//! restored on every exit path, window size sent at start and on SIGWINCH,
//! detach with a key sequence that leaves the instance running.

use crate::core::error::{Error, Result};
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The user pressed the detach keys; the agent runs on.
    Detached,
    /// The agent exited with this code.
    Exited(i64),
}

/// The terminal settings to put back, also reachable from the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

pub struct RawMode;

impl RawMode {
    /// Puts stdin's terminal in raw mode; a no-op when stdin is no terminal.
    pub fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())
            .map_err(|e| Error::Other(format!("terminal: {e}")))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| Error::Other(format!("terminal: {e}")))?;
        Ok(Some(RawMode))
    }
}

fn restore() {
    if let Some(t) = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &t);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// `ctrl-p,ctrl-q` → `[0x10, 0x11]` (docker's detach-keys syntax).
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in spec.split(',').map(str::trim) {
        let b = match key.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => {
                let c = k.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(bad_keys(spec)),
                }
            }
            None if key.len() == 1 && key.is_ascii() => key.as_bytes()[0],
            _ => return Err(bad_keys(spec)),
        };
        out.push(b);
    }
    if out.is_empty() {
        return Err(bad_keys(spec));
    }
    Ok(out)
}

fn bad_keys(spec: &str) -> Error {
    Error::Invalid(format!(
        "global.detach_keys {spec:?}: use a comma-separated list like \"ctrl-p,ctrl-q\""
    ))
}

/// Finds the detach sequence in typed input, holding back a partial match
/// until it is complete or broken (as docker does).
pub struct DetachMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl DetachMatcher {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, held: 0 }
    }

    /// Returns the bytes to forward, and whether the sequence completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if b == self.keys[0] {
                    self.held = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

pub fn window_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

async fn resize(docker: &Docker, container: &str) {
    if let Some((h, w)) = window_size() {
        resize_to(docker, container, h, w).await;
    }
}

async fn resize_to(docker: &Docker, container: &str, h: u16, w: u16) {
    let opts = q::ResizeContainerTTYOptionsBuilder::new()
        .h(i32::from(h))
        .w(i32::from(w))
        .build();
    let _ = docker.resize_container_tty(container, opts).await;
}

/// How long a re-attach waits for the agent to draw at the narrower size
/// before restoring the real one.
const REDRAW_WAIT: std::time::Duration = std::time::Duration::from_millis(400);

/// What the user typed: keys for the agent, then perhaps the detach keys.
struct Typed {
    keys: Vec<u8>,
    detach: bool,
}

/// Reads stdin on its own thread (a blocking read cannot be cancelled),
/// finds the detach keys there and reads no further once it has them, nor
/// once the attach ends: keys typed right after a detach belong to the
/// shell, not to a client on its way out.
struct StdinPump {
    rx: tokio::sync::mpsc::UnboundedReceiver<Typed>,
    wake: Option<std::os::fd::OwnedFd>,
    done: std::sync::mpsc::Receiver<()>,
}

impl StdinPump {
    fn spawn(mut matcher: DetachMatcher) -> Result<StdinPump> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (wake_r, wake_w) =
            nix::unistd::pipe().map_err(|e| Error::Other(format!("attach: pipe: {e}")))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let stdin = std::io::stdin();
            loop {
                let mut fds = [
                    PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
                    PollFd::new(wake_r.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                    Ok(_) => {}
                }
                // Asked to stop (or the other end is gone): leave the input
                // where it is.
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    break;
                }
                match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                    Err(_) => break,
                    Ok(n) => {
                        let (keys, detach) = matcher.feed(&buf[..n]);
                        if tx.send(Typed { keys, detach }).is_err() || detach {
                            break;
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
        Ok(StdinPump {
            rx,
            wake: Some(wake_w),
            done,
        })
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        // Closing the pipe wakes the thread; wait briefly for it to let go.
        self.wake.take();
        let _ = self
            .done
            .recv_timeout(std::time::Duration::from_millis(200));
    }
}

/// The output stream ended: either the agent exited or the engine detached
/// us; the wait call (`wait`, from [`wait_exit`]) tells which.
async fn stream_ended(wait: impl Future<Output = Option<i64>>) -> AttachEnd {
    match tokio::time::timeout(std::time::Duration::from_secs(2), wait).await {
        Ok(code) => AttachEnd::Exited(code.unwrap_or(-1)),
        Err(_) => AttachEnd::Detached,
    }
}

async fn wait_exit(docker: &Docker, container: &str) -> Option<i64> {
    let mut w = docker.wait_container(container, None::<q::WaitContainerOptions>);
    match w.next().await {
        Some(Ok(r)) => Some(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    }
}

/// `replay`: also send what the container printed before we attached (for
/// a container we just started: its first output, e.g. a banner, is
/// written before the attach request reaches the engine). Log drivers that
/// cannot be read fall back to a plain attach.
pub async fn attach_container(
    docker: &Docker,
    container: &str,
    keys: &[u8],
    replay: bool,
) -> Result<AttachEnd> {
    let opts = |logs: bool| {
        q::AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(logs)
            .build()
    };
    let attached = match docker.attach_container(container, Some(opts(replay))).await {
        Err(_) if replay => docker.attach_container(container, Some(opts(false))).await,
        other => other,
    }
    .map_err(|e| Error::Engine(format!("attach: {e}")))?;
    let mut output = attached.output;
    let mut input = attached.input;
    let _raw = RawMode::enter()?;
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    if replay {
        resize(docker, container).await;
    } else if let Some((h, w)) = window_size() {
        // Re-attaching to a running TUI: a size change (one column less, then
        // the real size) makes it draw its screen again, which a resize to the
        // size it already has would not (nor, for some, a change of height
        // only). Two resizes in a row coalesce into no change for an agent
        // that reads the size when it handles SIGWINCH (Node): restore the
        // size once it has drawn at the narrower one, or after a moment.
        resize_to(docker, container, h, w.saturating_sub(1).max(1)).await;
        match tokio::time::timeout(REDRAW_WAIT, output.next()).await {
            Ok(Some(Ok(c))) => {
                let _ = std::io::stdout().write_all(&c.into_bytes());
                let _ = std::io::stdout().flush();
            }
            // The stream ended at once: the agent is gone or going.
            Ok(_) => return Ok(stream_ended(wait_exit(docker, container)).await),
            Err(_) => {}
        }
        resize_to(docker, container, h, w).await;
    }
    let mut stdin = StdinPump::spawn(DetachMatcher::new(keys.to_vec()))?;
    let mut stdin_open = true;
    let wait = wait_exit(docker, container);
    tokio::pin!(wait);
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            code = &mut wait => {
                // Drain what the agent printed last.
                while let Ok(Some(Ok(chunk))) =
                    tokio::time::timeout(std::time::Duration::from_millis(100), output.next()).await
                {
                    let _ = stdout.write_all(&chunk.into_bytes());
                }
                let _ = stdout.flush();
                return Ok(AttachEnd::Exited(code.unwrap_or(-1)));
            }
            chunk = output.next() => match chunk {
                Some(Ok(c)) => {
                    let _ = stdout.write_all(&c.into_bytes());
                    let _ = stdout.flush();
                }
                _ => return Ok(stream_ended(&mut wait).await),
            },
            data = stdin.rx.recv(), if stdin_open => match data {
                Some(Typed { keys, detach }) => {
                    if !keys.is_empty() {
                        let _ = input.write_all(&keys).await;
                        let _ = input.flush().await;
                    }
                    if detach {
                        return Ok(AttachEnd::Detached);
                    }
                }
                None => stdin_open = false,
            },
            Some(_) = async { match winch.as_mut() { Some(s) => s.recv().await, None => None } } => {
                resize(docker, container).await;
            }
            Some(_) = async { match term.as_mut() { Some(s) => s.recv().await, None => None } } => {
                return Ok(AttachEnd::Detached);
            }
            Some(_) = async { match hup.as_mut() { Some(s) => s.recv().await, None => None } } => {
                return Ok(AttachEnd::Detached);
            }
        }
    }
}

/// A terminal attached for a caller on another runtime (the API server's
/// live terminal): the container's output comes on `output`, keys go to
/// `input`, sizes (rows, columns) to `resize`. Dropping it detaches; the
/// agent runs on (nothing is typed into it on the way out).
pub struct Remote {
    pub output: tokio::sync::mpsc::Receiver<Vec<u8>>,
    pub input: tokio::sync::mpsc::Sender<Vec<u8>>,
    pub resize: tokio::sync::mpsc::Sender<(u16, u16)>,
}

impl super::Engine {
    /// Attaches to running `container` on the engine's runtime (see
    /// [`Remote`]). `output` closes when the agent's output ends (it
    /// exited) or the engine detached us.
    pub async fn attach_remote(&self, container: &str) -> Result<Remote> {
        let opts = q::AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let docker = self.docker.clone();
        let cid = container.to_owned();
        let attached =
            self.spawn(async move {
                Self::timed("attach", docker.attach_container(&cid, Some(opts))).await
            })
            .await
            .map_err(|e| Error::Other(format!("attach: {e}")))??;
        let (out_tx, output) = tokio::sync::mpsc::channel(64);
        let (input, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let (resize, mut size_rx) = tokio::sync::mpsc::channel::<(u16, u16)>(8);
        let docker = self.docker.clone();
        let cid = container.to_owned();
        self.spawn(async move {
            let mut stream = attached.output;
            let mut stdin = attached.input;
            let mut sizes_open = true;
            let mut resized = false;
            loop {
                tokio::select! {
                    chunk = stream.next() => match chunk {
                        Some(Ok(c)) => {
                            if out_tx.send(c.into_bytes().to_vec()).await.is_err() {
                                break;
                            }
                        }
                        _ => break,
                    },
                    keys = in_rx.recv() => match keys {
                        Some(k) => {
                            if stdin.write_all(&k).await.is_err() || stdin.flush().await.is_err() {
                                break;
                            }
                        }
                        // The caller is gone: detach.
                        None => break,
                    },
                    size = size_rx.recv(), if sizes_open => match size {
                        Some((h, w)) if !resized => {
                            // The first size makes a terminal UI draw its
                            // screen again (see `attach_container`).
                            resized = true;
                            resize_to(&docker, &cid, h, w.saturating_sub(1).max(1)).await;
                            tokio::time::sleep(REDRAW_WAIT / 2).await;
                            resize_to(&docker, &cid, h, w).await;
                        }
                        Some((h, w)) => resize_to(&docker, &cid, h, w).await,
                        None => sizes_open = false,
                    },
                    () = out_tx.closed() => break,
                }
            }
        });
        Ok(Remote {
            output,
            input,
            resize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            vec![0x10, 0x11]
        );
        assert_eq!(parse_detach_keys("ctrl-x").unwrap(), vec![0x18]);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("").is_err());
    }

    #[test]
    fn matcher_holds_partial_sequences() {
        let mut m = DetachMatcher::new(vec![0x10, 0x11]);
        assert_eq!(m.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(&[0x10]), (vec![], false));
        assert_eq!(m.feed(b"x"), (vec![0x10, b'x'], false));
        assert_eq!(m.feed(&[0x10, 0x10]), (vec![0x10], false));
        assert_eq!(m.feed(&[0x11]), (vec![], true));
    }
}
