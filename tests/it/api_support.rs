//! Helpers for the API tests (api.rs, dashboard_browser.rs): `serve` as a
//! child process on an ephemeral loopback port, and a deliberately small
//! HTTP/1.1 client over `std::net::TcpStream` — raw, so tests can send what
//! no polite client would (a wrong Host, a forged Origin, a huge body).
#![allow(dead_code)]

use crate::common::Env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `ai-sessctl serve`.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    /// The one-time login URL printed on stdout.
    pub login_url: String,
    /// Everything printed on stdout so far (the banner).
    pub banner: String,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Serve {
    /// `ai-sessctl serve --addr 127.0.0.1:0`: waits for the banner.
    pub fn start(env: &Env) -> Serve {
        Serve::start_with(env, &["--addr", "127.0.0.1:0"])
    }

    pub fn start_with(env: &Env, args: &[&str]) -> Serve {
        Serve::start_with_cmd(env.cmd(), args)
    }

    /// `serve` from a prepared command (extra environment, limits).
    pub fn start_with_cmd(mut cmd: std::process::Command, args: &[&str]) -> Serve {
        let mut child = cmd
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ai-sessctl serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = String::new();
        let mut addr = None;
        let mut login_url = None;
        let end = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || login_url.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve printed no banner within 20 s; stdout:\n{banner}\nstderr:\n{}",
                    stderr.lock().unwrap()
                );
            };
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("ai-sessions API and dashboard on http://") {
                addr = Some(
                    rest.trim_end_matches('/')
                        .parse::<SocketAddr>()
                        .expect("bound address"),
                );
            }
            if let Some(url) = line.strip_prefix("open (once): ") {
                login_url = Some(url.trim().to_owned());
            }
        }
        Serve {
            child,
            addr: addr.unwrap(),
            login_url: login_url.unwrap(),
            banner,
            stderr,
            status: None,
        }
    }

    /// The path and query of the login URL (`/login?code=…`).
    pub fn login_path(&self) -> String {
        let host = format!("http://{}", self.addr);
        self.login_url
            .strip_prefix(&host)
            .expect("login URL on our address")
            .to_owned()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A request to this server with the right Host header.
    pub fn req(&self, method: &str, path: &str) -> Req {
        Req::new(self.addr, method, path)
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let t0 = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        while t0.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                return Some((st, t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The token `serve` created (`$AI_SESSIONS_HOME/api.token`).
pub fn token(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// One HTTP/1.1 request, sent on a fresh connection (`Connection: close`).
pub struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    pub fn new(addr: SocketAddr, method: &str, path: &str) -> Req {
        Req {
            addr,
            method: method.to_owned(),
            path: path.to_owned(),
            host: Some(addr.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Replaces the Host header (`None`: send none at all).
    pub fn host(mut self, host: Option<&str>) -> Req {
        self.host = host.map(str::to_owned);
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Req {
        self.header("Content-Type", "application/json")
            .body(v.to_string().into_bytes())
    }

    pub fn body(mut self, body: Vec<u8>) -> Req {
        self.body = Some(body);
        self
    }

    fn head(&self) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if let Some(h) = &self.host {
            head.push_str(&format!("Host: {h}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        head
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Resp {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.write_all(self.head().as_bytes()).unwrap();
        if let Some(b) = &self.body {
            // The server may answer (413) and close before reading it all.
            let _ = s.write_all(b);
        }
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            // Some servers (chromedriver) keep the connection open anyway:
            // stop at the end of the framed body.
            if complete(&raw) {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A reset after an early answer: keep what arrived.
                Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                    break
                }
                Err(e) => panic!("{} {}: reading the response: {e}", self.method, self.path),
            }
        }
        Resp::parse(&raw).unwrap_or_else(|| {
            panic!(
                "{} {}: not an HTTP response: {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// Sends the request and keeps the connection open for a stream
    /// (server-sent events): returns once the response head has arrived.
    pub fn stream(self) -> Stream {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        s.write_all(self.head().as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut r = BufReader::new(s);
        let mut head = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        while !head.ends_with(b"\r\n\r\n") {
            assert!(Instant::now() < end, "no response head within 10 s");
            let mut byte = [0u8; 1];
            match r.read(&mut byte) {
                Ok(0) => panic!(
                    "stream closed before the head: {:?}",
                    String::from_utf8_lossy(&head)
                ),
                Ok(_) => head.push(byte[0]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("stream: {e}"),
            }
        }
        let head = Resp::parse(&head).expect("response head");
        Stream {
            chunked: head
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
            head,
            r,
            text: String::new(),
            pending: Vec::new(),
        }
    }
}

/// True when `raw` holds a whole response framed by Content-Length or
/// chunked encoding (without either, the body ends at EOF).
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Some(head) = Resp::parse(&raw[..split + 4]) else {
        return false;
    };
    let body = &raw[split + 4..];
    if let Some(n) = head
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return body.len() >= n;
    }
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return last_chunk_seen(body);
    }
    false
}

/// Walks the chunks: true once the terminating zero-size chunk is in.
fn last_chunk_seen(mut b: &[u8]) -> bool {
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        match size {
            None => return false,
            Some(0) => return b[eol + 2..].ends_with(b"\r\n"),
            Some(n) if b.len() >= eol + 2 + n + 2 => b = &b[eol + 2 + n + 2..],
            Some(_) => return false,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A response, body de-chunked.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Option<Resp> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..split]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            resp.body = dechunk(&resp.body);
        }
        Some(resp)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// `error.code` of an error body, checking the documented shape.
    pub fn error_code(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "errors are JSON: {self:?}"
        );
        let v = self.json();
        let e = &v["error"];
        assert!(
            e["code"].is_string() && e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error shape {{\"error\": {{\"code\", \"message\"}}}}: {v}"
        );
        e["code"].as_str().unwrap().to_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// An open streaming response (server-sent events).
pub struct Stream {
    pub head: Resp,
    chunked: bool,
    r: BufReader<TcpStream>,
    /// Decoded body text received so far, not yet split into lines.
    text: String,
    pending: Vec<u8>,
}

impl Stream {
    /// Reads until a complete line containing `needle` arrives; returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            while let Some(nl) = self.text.find('\n') {
                let line: String = self.text.drain(..=nl).collect();
                if line.contains(needle) {
                    return Some(line.trim_end().to_owned());
                }
            }
            if Instant::now() >= end {
                return None;
            }
            let mut buf = [0u8; 4096];
            match self.r.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => continue,
                Err(_) => return None,
            }
            self.decode();
        }
    }

    /// True when the server ends the stream (EOF or reset) within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Moves complete chunks from `pending` to `text`.
    fn decode(&mut self) {
        if !self.chunked {
            self.text.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
            return;
        }
        loop {
            let Some(eol) = self.pending.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.pending[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .expect("chunk size");
            if self.pending.len() < eol + 2 + size + 2 {
                return;
            }
            let data = self.pending[eol + 2..eol + 2 + size].to_vec();
            self.text.push_str(&String::from_utf8_lossy(&data));
            self.pending.drain(..eol + 2 + size + 2);
        }
    }
}

/// Byte-for-byte contents of a file (None when absent).
pub fn bytes(path: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}
