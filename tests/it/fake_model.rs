//! A fake model API for tests: a real HTTP/1.1 server (std::net, a thread
//! per connection) on `0.0.0.0:<ephemeral>`, so a container reaches it at
//! its network's gateway and a host process at 127.0.0.1. It speaks enough
//! of Anthropic's Messages API (streamed and not) and Gemini's
//! `generateContent` family for an agent CLI or the credential broker to
//! get a believable reply, and records every request it receives (the
//! credentials it carried above all) for the test to assert on.
//!
//! Anything it does not know under `/v1/` or `/v1beta/` is answered 200
//! `{}` and recorded, so a probe of the CLI shows up in `seen()` instead
//! of breaking the run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The model named in replies when the request names none.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5-20250929";
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-pro";

/// One request as the fake received it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub method: String,
    /// Path and query, as on the request line (absolute-form kept whole).
    pub target: String,
    pub host: Option<String>,
    pub x_api_key: Option<String>,
    pub authorization: Option<String>,
    pub x_goog_api_key: Option<String>,
    /// Gemini's `?key=`.
    pub query_key: Option<String>,
    pub body: String,
}

impl Seen {
    /// Every credential the request carried, wherever it was.
    pub fn credentials(&self) -> Vec<&str> {
        [
            &self.x_api_key,
            &self.authorization,
            &self.x_goog_api_key,
            &self.query_key,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

/// Token counts a reply reports (Anthropic's names; Gemini's are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
    /// Streamed replies carry this many MiB of text deltas instead of
    /// `text` (the throughput bench's and the broker tests' big stream).
    pub big_mib: usize,
    /// A status other than 200 for model calls, with an API-shaped error.
    pub status: u16,
    /// Tool calls, in turn, for a streamed Messages call whose request
    /// offers tools and holds `tool_trigger` somewhere: the n-th such
    /// call of a conversation (n tool results in it so far) gets step n;
    /// once all were answered, `text`. Other calls get `text`.
    pub tool_steps: Vec<ToolStep>,
    pub tool_trigger: Option<String>,
}

/// A `tool_use` block the fake answers with.
#[derive(Debug, Clone)]
pub struct ToolStep {
    pub name: String,
    pub input: serde_json::Value,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            text: "pong".into(),
            usage: Usage {
                input: 12,
                output: 34,
                cache_creation: 100,
                cache_read: 7,
            },
            big_mib: 0,
            status: 200,
            tool_steps: Vec::new(),
            tool_trigger: None,
        }
    }
}

pub struct FakeApi {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
    /// Open connections, shut when the fake is dropped (a server gone
    /// leaves no pooled connection of a client served).
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        FakeApi::with(Reply::default())
    }

    pub fn with(reply: Reply) -> FakeApi {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = FakeApi {
            port,
            seen: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
            stop: Arc::default(),
            conns: Arc::default(),
        };
        let (seen, reply, stop) = (api.seen.clone(), api.reply.clone(), api.stop.clone());
        let conns = api.conns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let (seen, reply, stop) = (seen.clone(), reply.clone(), stop.clone());
                std::thread::spawn(move || serve(conn, &seen, &reply, &stop));
            }
        });
        api
    }

    /// `http://127.0.0.1:<port>`: the fake as a host process reaches it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    pub fn set_reply(&self, r: Reply) {
        *self.reply.lock().unwrap() = r;
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A request as read off the wire.
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn path(&self) -> &str {
        // Absolute-form (`http://host/p`) is answered by its path.
        let t = self.target.as_str();
        let t = match t.find("://") {
            Some(i) => t[i + 3..].find('/').map_or("/", |j| &t[i + 3 + j..]),
            None => t,
        };
        t.split('?').next().unwrap_or("/")
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// Serves one connection, keep-alive until the client closes or asks to.
fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, reply: &Mutex<Reply>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = conn.set_nodelay(true);
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    let mut w = std::io::BufWriter::with_capacity(64 << 10, write_half);
    while let Some(req) = read_request(&mut r) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let q = req.query();
        seen.lock().unwrap().push(Seen {
            method: req.method.clone(),
            target: req.target.clone(),
            host: req.header("host"),
            x_api_key: req.header("x-api-key"),
            authorization: req.header("authorization"),
            x_goog_api_key: req.header("x-goog-api-key"),
            query_key: q
                .split('&')
                .find_map(|kv| kv.strip_prefix("key="))
                .map(str::to_owned),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        });
        let reply = reply.lock().unwrap().clone();
        if respond(&mut w, &req, &reply).is_err() || w.flush().is_err() || close {
            break;
        }
    }
    let _ = w.get_ref().shutdown(Shutdown::Both);
}

fn read_request(r: &mut impl BufRead) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Req {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let size = size.trim().split(';').next()?;
            let n = usize::from_str_radix(size, 16).ok()?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            req.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().ok()?;
        req.body = vec![0; n];
        r.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}

fn json_response(w: &mut impl Write, status: u16, body: &serde_json::Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        w,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        reason(status),
        body.len()
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// A streamed response: chunked, so the connection stays usable.
struct Sse<'a, W: Write>(&'a mut W);

impl<W: Write> Sse<'_, W> {
    fn start(w: &mut W) -> std::io::Result<Sse<'_, W>> {
        w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
              cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        Ok(Sse(w))
    }

    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write!(self.0, "{:x}\r\n", bytes.len())?;
        self.0.write_all(bytes)?;
        self.0.write_all(b"\r\n")
    }

    fn event(&mut self, name: &str, data: &serde_json::Value) -> std::io::Result<()> {
        self.chunk(format!("event: {name}\ndata: {data}\n\n").as_bytes())
    }

    fn end(self) -> std::io::Result<()> {
        self.0.write_all(b"0\r\n\r\n")
    }
}

fn respond(w: &mut impl Write, req: &Req, reply: &Reply) -> std::io::Result<()> {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let path = req.path().to_owned();
    if req.method == "HEAD" || (req.method == "GET" && path == "/") {
        return write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n"
        );
    }
    let model_call = req.method == "POST"
        && (path == "/v1/messages"
            || path.ends_with(":generateContent")
            || path.ends_with(":streamGenerateContent"));
    if model_call && reply.status != 200 {
        let err = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": "fake failure"}});
        return json_response(w, reply.status, &err);
    }
    if req.method == "POST" && path == "/v1/messages" {
        return anthropic(w, &body, reply);
    }
    if req.method == "POST" && path == "/v1/oauth/token" {
        return oauth_token(w, &body);
    }
    if req.method == "POST" && path == "/v1/messages/count_tokens" {
        return json_response(
            w,
            200,
            &serde_json::json!({"input_tokens": reply.usage.input}),
        );
    }
    if let Some(rest) = path.strip_prefix("/v1beta/models/") {
        let (model, verb) = rest.split_once(':').unwrap_or((rest, ""));
        return gemini(w, model, verb, req.query(), &body, reply);
    }
    if path.starts_with("/v1/") || path.starts_with("/v1beta/") {
        return json_response(w, 200, &serde_json::json!({}));
    }
    json_response(
        w,
        404,
        &serde_json::json!({"type": "error", "error": {"type": "not_found_error", "message": "no such path"}}),
    )
}

/// Anthropic's OAuth token endpoint, refresh grant: a new pair derived
/// from the refresh token sent (`…-ort01-X` gives the access token
/// `…-oat01-X-fresh` and the refresh token `…-ort01-X-rotated`), valid 8 h.
fn oauth_token(w: &mut impl Write, body: &serde_json::Value) -> std::io::Result<()> {
    let refresh = body["refresh_token"].as_str().unwrap_or("");
    if body["grant_type"] != "refresh_token" || refresh.is_empty() || body["client_id"].is_null() {
        let err = serde_json::json!({"error": "invalid_request"});
        return json_response(w, 400, &err);
    }
    json_response(
        w,
        200,
        &serde_json::json!({
            "token_type": "Bearer",
            "access_token": format!("{}-fresh", refresh.replace("-ort01-", "-oat01-")),
            "refresh_token": format!("{refresh}-rotated"),
            "expires_in": 28800,
            "scope": "user:inference user:profile",
        }),
    )
}

/// The text a streamed reply is cut into: `text`, or `big_mib` MiB.
fn deltas(reply: &Reply) -> Box<dyn Iterator<Item = String>> {
    if reply.big_mib == 0 {
        return Box::new(std::iter::once(reply.text.clone()));
    }
    const PIECE: usize = 16 << 10;
    let piece = "x".repeat(PIECE);
    Box::new(std::iter::repeat_n(piece, (reply.big_mib << 20) / PIECE))
}

fn anthropic(w: &mut impl Write, body: &serde_json::Value, reply: &Reply) -> std::io::Result<()> {
    use serde_json::json;
    let model = body["model"].as_str().unwrap_or(DEFAULT_MODEL);
    let u = reply.usage;
    let id = "msg_fake0001";
    if !body["stream"].as_bool().unwrap_or(false) {
        let msg = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": u.input, "output_tokens": u.output,
                      "cache_creation_input_tokens": u.cache_creation,
                      "cache_read_input_tokens": u.cache_read},
        });
        return json_response(w, 200, &msg);
    }
    if let Some(step) = tool_step(body, reply) {
        return anthropic_tool_use(w, model, u, step);
    }
    let usage = json!({"input_tokens": u.input, "output_tokens": 1,
                       "cache_creation_input_tokens": u.cache_creation,
                       "cache_read_input_tokens": u.cache_read});
    let block = json!({"type": "text", "text": ""});
    let deltas = deltas(reply).map(|text| json!({"type": "text_delta", "text": text}));
    let message = Streamed {
        id: id.into(),
        model,
        usage,
        stop: "end_turn",
        output: u.output,
    };
    message.send(w, block, deltas)
}

/// One streamed Messages reply: its start, one content block and its
/// deltas, its end with `stop` as the reason.
struct Streamed<'a> {
    id: String,
    model: &'a str,
    usage: serde_json::Value,
    stop: &'a str,
    output: u64,
}

impl Streamed<'_> {
    fn send(
        self,
        w: &mut impl Write,
        block: serde_json::Value,
        deltas: impl Iterator<Item = serde_json::Value>,
    ) -> std::io::Result<()> {
        use serde_json::json;
        let mut s = Sse::start(w)?;
        s.event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": self.usage}}),
        )?;
        s.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": block}),
        )?;
        for delta in deltas {
            s.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            )?;
        }
        s.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        )?;
        s.event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": self.stop, "stop_sequence": null},
                    "usage": {"output_tokens": self.output}}),
        )?;
        s.event("message_stop", &json!({"type": "message_stop"}))?;
        s.end()
    }
}

/// The tool step this streamed call gets, if any (see `Reply::tool_steps`).
fn tool_step<'a>(body: &serde_json::Value, reply: &'a Reply) -> Option<&'a ToolStep> {
    let trigger = reply.tool_trigger.as_deref()?;
    let offers_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !offers_tools || !body.to_string().contains(trigger) {
        return None;
    }
    let results = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|c| c["type"] == "tool_result")
        .count();
    reply.tool_steps.get(results)
}

/// A streamed reply that is one `tool_use` block.
fn anthropic_tool_use(
    w: &mut impl Write,
    model: &str,
    u: Usage,
    step: &ToolStep,
) -> std::io::Result<()> {
    use serde_json::json;
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let message = Streamed {
        id: format!("msg_faketool{n}"),
        model,
        usage: json!({"input_tokens": u.input, "output_tokens": 1}),
        stop: "tool_use",
        output: u.output,
    };
    let block =
        json!({"type": "tool_use", "id": format!("toolu_fake{n}"), "name": step.name, "input": {}});
    let delta = json!({"type": "input_json_delta", "partial_json": step.input.to_string()});
    message.send(w, block, std::iter::once(delta))
}

fn gemini(
    w: &mut impl Write,
    model: &str,
    verb: &str,
    query: &str,
    body: &serde_json::Value,
    reply: &Reply,
) -> std::io::Result<()> {
    use serde_json::json;
    // A call that asks for JSON (the Gemini CLI's model router) gets JSON
    // it can use: told text, it retries with a growing wait.
    let json_mode = body["generationConfig"]["responseMimeType"] == "application/json";
    let text = match json_mode {
        true => json!({"reasoning": "a test", "model_choice": "flash"}).to_string(),
        false => reply.text.clone(),
    };
    let u = reply.usage;
    let usage = |output: u64| {
        json!({"promptTokenCount": u.input + u.cache_read,
               "cachedContentTokenCount": u.cache_read,
               "candidatesTokenCount": output,
               "totalTokenCount": u.input + u.cache_read + output})
    };
    let chunk = |text: String, last: bool| {
        let mut c = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if last {
            c["finishReason"] = json!("STOP");
        }
        json!({"candidates": [c],
               "usageMetadata": usage(if last { u.output } else { 1 }),
               "modelVersion": model})
    };
    match verb {
        "countTokens" => json_response(w, 200, &json!({"totalTokens": u.input})),
        "generateContent" => json_response(w, 200, &chunk(text, true)),
        "streamGenerateContent" if query.split('&').any(|kv| kv == "alt=sse") => {
            let mut s = Sse::start(w)?;
            for text in deltas(reply) {
                s.chunk(format!("data: {}\r\n\r\n", chunk(text, false)).as_bytes())?;
            }
            s.chunk(format!("data: {}\r\n\r\n", chunk(String::new(), true)).as_bytes())?;
            s.end()
        }
        // Without `alt=sse`: one JSON array of the chunks.
        "streamGenerateContent" => json_response(
            w,
            200,
            &json!([chunk(reply.text.clone(), false), chunk(String::new(), true)]),
        ),
        _ => json_response(w, 200, &json!({})),
    }
}

/// Raw HTTP/1.1 exchange helpers for tests acting as the agent: one
/// request, `Connection: close`, the whole response back.
pub mod client {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub struct Resp {
        pub status: u16,
        pub head: String,
        /// The body, de-chunked.
        pub body: Vec<u8>,
    }

    impl Resp {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
        }

        pub fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        }
    }

    /// Sends `method target` with `headers` (`Host` too if given; else
    /// `127.0.0.1:<port>`) and `body` to 127.0.0.1:`port`.
    pub fn request(
        port: u16,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        conn.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        parse(&raw)
    }

    pub fn parse(raw: &[u8]) -> Resp {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rest = &raw[end + 4..];
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Resp { status, head, body }
    }

    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&b[..i]);
            let n =
                usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let start = i + 2;
            out.extend_from_slice(&b[start..(start + n).min(b.len())]);
            b = &b[(start + n + 2).min(b.len())..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::client::request;
    use super::*;

    #[test]
    fn the_fake_answers_both_apis_and_records_credentials() {
        let api = FakeApi::start();
        // Anthropic, streamed, as Claude Code sends it.
        let r = request(
            api.port,
            "POST",
            "/v1/messages?beta=true",
            &[("x-api-key", "k1"), ("anthropic-version", "2023-06-01")],
            r#"{"model":"claude-haiku-4-5","stream":true,"max_tokens":5,"messages":[]}"#,
        );
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream"));
        let text = r.text();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""model":"claude-haiku-4-5""#), "{text}");
        assert!(text.contains(r#""text":"pong""#), "{text}");
        assert!(
            text.contains(r#""cache_creation_input_tokens":100"#),
            "{text}"
        );
        // Not streamed.
        let r = request(
            api.port,
            "POST",
            "/v1/messages",
            &[("authorization", "Bearer k2")],
            r#"{"messages":[]}"#,
        );
        let v = r.json();
        assert_eq!(v["model"], DEFAULT_MODEL);
        assert_eq!(v["content"][0]["text"], "pong");
        assert_eq!(v["usage"]["output_tokens"], 34);
        // Gemini, streamed with the key in the query, and its JSON verbs.
        let r = request(
            api.port,
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k3",
            &[],
            "{}",
        );
        let datas: Vec<serde_json::Value> = r
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(datas.len(), 2);
        assert_eq!(
            datas[0]["candidates"][0]["content"]["parts"][0]["text"],
            "pong"
        );
        assert_eq!(datas[1]["usageMetadata"]["candidatesTokenCount"], 34);
        assert_eq!(datas[1]["modelVersion"], "gemini-2.5-flash");
        let r = request(
            api.port,
            "POST",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            &[("x-goog-api-key", "k4")],
            "{}",
        );
        assert_eq!(r.json()["usageMetadata"]["promptTokenCount"], 19);
        let r = request(
            api.port,
            "POST",
            "/v1beta/models/gemini-2.5-pro:countTokens",
            &[],
            "{}",
        );
        assert_eq!(r.json()["totalTokens"], 12);
        // Probes: any /v1/ path, HEAD /.
        assert_eq!(request(api.port, "GET", "/v1/models", &[], "").text(), "{}");
        assert_eq!(request(api.port, "HEAD", "/", &[], "").status, 200);
        let seen = api.seen();
        let creds: Vec<Vec<&str>> = seen.iter().map(Seen::credentials).collect();
        assert_eq!(
            creds,
            [
                vec!["k1"],
                vec!["Bearer k2"],
                vec!["k3"],
                vec!["k4"],
                vec![],
                vec![],
                vec![]
            ]
        );
        assert_eq!(seen[0].target, "/v1/messages?beta=true");
        assert_eq!(
            seen[0].host.as_deref(),
            Some(format!("127.0.0.1:{}", api.port).as_str())
        );
    }

    #[test]
    fn the_fake_reads_chunked_bodies_keeps_connections_and_streams_big_replies() {
        let api = FakeApi::with(Reply {
            big_mib: 2,
            ..Reply::default()
        });
        let mut c = TcpStream::connect(("127.0.0.1", api.port)).unwrap();
        // Two requests on one connection, the first with a chunked body.
        let body = r#"{"stream":true}"#;
        write!(
            c,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            &body[..5],
            body.len() - 5,
            &body[5..]
        )
        .unwrap();
        write!(
            c,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        let first = client::parse(&raw);
        let text = first.text();
        let deltas = text
            .lines()
            .filter(|l| l.starts_with("data: {\"type\":\"content_block_delta\""))
            .count();
        assert_eq!(deltas, 128, "2 MiB in 16 KiB deltas");
        assert!(first.body.len() > 2 << 20);
        assert!(text.ends_with("data: {\"type\":\"message_stop\"}\n\n"));
        // The second answer follows on the same connection.
        let second = String::from_utf8_lossy(&raw);
        assert_eq!(second.matches("HTTP/1.1 200 OK").count(), 2);
        assert!(
            second.ends_with(r#""cache_read_input_tokens":7}}"#),
            "{}",
            &second[second.len() - 200..]
        );
        let seen = api.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, body);
    }
}
