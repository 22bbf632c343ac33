//! The API server under a flood of idle connections: a header-read timeout
//! closes connections that send nothing (or dribble), a connection cap
//! below the descriptor limit keeps the server able to accept, and an
//! authenticated request is still answered while 1,100 idle connections
//! are open against a server limited to 1,024 descriptors.
//!
//! This test raises its own soft `RLIMIT_NOFILE` to the hard limit (it
//! holds 1,100 sockets) and runs `serve` with a limit of 1,024.

use crate::api_support::{token, Serve};
use crate::common::Env;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

const SERVER_NOFILE: u64 = 1024;
const IDLE: usize = 1100;

fn raise_own_nofile(need: u64) -> bool {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard < need {
        eprintln!("\n*** SKIPPED: hard RLIMIT_NOFILE {hard} < {need} (raise it: ulimit -Hn) ***\n");
        return false;
    }
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    true
}

fn serve_limited(env: &Env) -> Serve {
    let mut c = env.cmd();
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: SERVER_NOFILE,
                rlim_max: SERVER_NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Serve::start_with_cmd(c, &["--addr", "127.0.0.1:0"])
}

/// An authenticated GET on a fresh connection, answered within `limit`
/// (`None`: no answer in time).
fn authed_get(addr: SocketAddr, tok: &str, limit: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).unwrap();
    let req = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// True when the server closes `s` within `limit` (EOF or reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn an_authenticated_request_is_answered_under_1100_idle_connections() {
    if !raise_own_nofile(IDLE as u64 + 200) {
        return;
    }
    let env = Env::new();
    let srv = serve_limited(&env);
    let tok = token(&env);
    let mut idle = Vec::with_capacity(IDLE);
    let mut refused = 0;
    for _ in 0..IDLE {
        match TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "opened {} idle connections ({refused} not accepted by the kernel)",
        idle.len()
    );
    assert!(
        idle.len() >= 1000,
        "the test itself could open its connections"
    );
    // Let the server accept what it will.
    std::thread::sleep(Duration::from_secs(1));
    let status = authed_get(srv.addr, &tok, Duration::from_secs(8));
    assert_eq!(
        status,
        Some(200),
        "answered while {} idle connections are open",
        idle.len()
    );
    // And again (the flood keeps coming back).
    for s in idle.iter_mut().take(50) {
        *s = TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)).unwrap();
    }
    assert_eq!(
        authed_get(srv.addr, &tok, Duration::from_secs(8)),
        Some(200)
    );
    // How many the server still holds open: at most its cap.
    let open = open_server_sockets(srv.pid());
    eprintln!("server holds {open} sockets with fd limit {SERVER_NOFILE}");
    assert!(open < SERVER_NOFILE as usize, "{open} sockets");
}

/// Sockets open in the server process.
fn open_server_sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn connections_that_send_nothing_or_dribble_are_closed() {
    let env = Env::new();
    let srv = Serve::start(&env);
    let mut bare = TcpStream::connect(srv.addr).unwrap();
    let mut slow = TcpStream::connect(srv.addr).unwrap();
    // A slow-loris: a byte of a header every second, never the end.
    let addr = srv.addr;
    let mut dribble = slow.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let head = format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nX-Pad: ");
        let _ = dribble.write_all(head.as_bytes());
        for _ in 0..40 {
            if dribble.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert!(
        closed_within(&mut bare, Duration::from_secs(25)),
        "a connection that sends nothing is closed"
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)),
        "a header that never ends is cut off"
    );
    feeder.join().unwrap();
}
