//! `DOCKER_HOST=tcp://…` works: the test runs a small TCP → unix-socket
//! proxy in front of the local engine and drives start/list/stop through it.

use crate::common;

use crate::common::{stderr, Env};
use crate::docker_support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

fn pipe(mut from: impl Read, mut to: impl Write, done: impl FnOnce()) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    done();
}

/// Accepts on 127.0.0.1:0 and pipes every connection to the engine's unix
/// socket. Returns the port and a count of proxied connections.
fn start_proxy() -> (u16, Arc<AtomicUsize>) {
    proxy_at(std::net::Ipv4Addr::LOCALHOST)
}

/// The proxy on an address of this machine that is not loopback (an
/// engine there is on "another machine" to the client); it serves only
/// connections from that address itself, i.e. from this machine.
pub fn proxy_on(ip: std::net::Ipv4Addr) -> u16 {
    proxy_at(ip).0
}

fn proxy_at(ip: std::net::Ipv4Addr) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            if tcp.peer_addr().map(|a| a.ip()).ok() != Some(std::net::IpAddr::V4(ip)) {
                continue;
            }
            let Ok(unix) = UnixStream::connect(ENGINE_SOCKET) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (tcp2, unix2) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            let (tcp3, unix3) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            std::thread::spawn(move || {
                pipe(tcp, unix, move || {
                    let _ = unix3.shutdown(Shutdown::Write);
                })
            });
            std::thread::spawn(move || {
                pipe(unix2, tcp2, move || {
                    let _ = tcp3.shutdown(Shutdown::Write);
                })
            });
        }
    });
    (port, count)
}

#[test]
fn start_list_stop_over_tcp() {
    require_docker!();
    if !std::path::Path::new(ENGINE_SOCKET).exists() {
        eprintln!("\n*** SKIPPED start_list_stop_over_tcp: no {ENGINE_SOCKET} to proxy ***\n");
        return;
    }
    let env = Env::new();
    docker_config(&env, "");
    let (port, count) = start_proxy();
    let host = format!("tcp://127.0.0.1:{port}");
    let name = env.unique("tcp");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let via = |args: &[&str]| {
        env.cmd()
            .current_dir(&proj)
            .env("DOCKER_HOST", &host)
            .args(args)
            .output()
            .unwrap()
    };

    let out = via(&[
        "start",
        "--mode",
        "claude",
        "--detach",
        "--runtime",
        "docker",
    ]);
    assert!(out.status.success(), "start via {host}: {}", stderr(&out));
    assert!(
        count.load(Ordering::SeqCst) > 0,
        "nothing went through the proxy"
    );
    assert_eq!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running")
    );

    let out = via(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = common::stdout(&out);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    let before = count.load(Ordering::SeqCst);
    let out = via(&["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(count.load(Ordering::SeqCst) > before);
    assert_eq!(env.instance(&id)["status"], "stopped");
    assert_eq!(env.instance(&id)["exit_code"], 143);
    assert!(!container_exists(&common::cname(&id)));
}
