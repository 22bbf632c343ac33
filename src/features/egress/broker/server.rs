//! The broker's server, in the egress sidecar: plain HTTP from the box,
//! the real key added, on to the upstream (TLS when it is `https://`),
//! the response streamed back through the usage [`Tap`] into the ledger.

use super::settings::BrokerFile;
use super::tap::{model_in_path, Tap};
use crate::core::error::{Error, Result};
use crate::core::types::Secret;
use crate::state::config::ApiKind;
use crate::state::spend::ledger::{self, Tail};
use crate::state::spend::prices::Prices;
use crate::state::spend::{start_of_day, Record, Spend};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

pub struct BrokerArgs {
    /// `broker.json` (re-read when it changes).
    pub settings: PathBuf,
    /// `host:port` on the instance's network.
    pub listen: String,
    /// The instance's ledger directory, and the home's (every instance's,
    /// read-only) for the daily budget.
    pub meter: PathBuf,
    pub meter_all: Option<PathBuf>,
}

type Body_ = BoxBody<Bytes, hyper::Error>;

/// How long a call waits for the key to arrive on stdin after the start.
const KEY_WAIT: Duration = Duration::from_secs(15);

struct State {
    args: BrokerArgs,
    key: watch::Receiver<Option<Secret>>,
    settings: Mutex<crate::features::egress::reload::Reloaded<Option<BrokerFile>>>,
    meter: Mutex<Meter>,
    client: Client,
    /// A subscription login's access token and its expiry (ms), once read
    /// from the stdin line; replaced when the broker refreshes it.
    oauth: tokio::sync::Mutex<Option<(Secret, Option<i64>)>>,
}

impl State {
    fn settings(&self) -> Option<BrokerFile> {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current()
    }
}

/// The ledgers read so far: the instance's own, and every one of the home.
#[derive(Default)]
struct Meter {
    own: Tail,
    all: HashMap<PathBuf, Tail>,
}

impl Meter {
    /// Why the next call is refused, if a budget is spent.
    fn refusal(&mut self, args: &BrokerArgs, f: &BrokerFile) -> Option<String> {
        let prices = Prices::from_table(f.prices.clone());
        if let Some(limit) = f.budget.instance_usd {
            self.own.refresh(&args.meter);
            let spent = Spend::of(&self.own.records, f.created, &prices).cost_usd;
            if spent >= limit {
                return Some(format!(
                    "ai-sessions: the budget of this instance ({}), {}, is spent ({}). \
                     Raise it with `ai-sessctl config set {} budget.instance_usd {}` (applies at once).",
                    f.instance,
                    usd(limit),
                    usd(spent),
                    f.instance,
                    next_budget(limit, spent)
                ));
            }
        }
        if let Some(limit) = f.budget.daily_usd {
            let day = start_of_day(chrono::Utc::now());
            let mut spent = 0.0;
            for dir in self.dirs(args) {
                let tail = self.all.entry(dir.clone()).or_default();
                tail.refresh(&dir);
                tail.records.retain(|r| r.ts >= day);
                spent += Spend::of(&tail.records, Some(day), &prices).cost_usd;
            }
            if spent >= limit {
                return Some(format!(
                    "ai-sessions: today's budget for all instances, {}, is spent ({}). \
                     Raise it with `ai-sessctl config set --global budget.daily_usd {}` (applies at once).",
                    usd(limit),
                    usd(spent),
                    next_budget(limit, spent)
                ));
            }
        }
        None
    }

    fn dirs(&self, args: &BrokerArgs) -> Vec<PathBuf> {
        match &args.meter_all {
            Some(all) => std::fs::read_dir(all)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
            None => vec![args.meter.clone()],
        }
    }
}

/// Dollars as a user reads them: cents, or more digits below a cent.
fn usd(v: f64) -> String {
    if v > 0.0 && v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// A suggestion: double the budget, or more when it is far over.
fn next_budget(limit: f64, spent: f64) -> String {
    let n = (limit * 2.0).max(spent * 1.5).ceil();
    format!("{n}")
}

#[cfg(target_os = "linux")]
type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
#[cfg(not(target_os = "linux"))]
type Connector = hyper_util::client::legacy::connect::HttpConnector;
type Client = hyper_util::client::legacy::Client<Connector, Incoming>;

/// The upstream connector: TLS for `https://` (on Linux), plain HTTP.
pub(super) fn connector() -> Connector {
    // No Nagle: a request's head and its streamed body leave in separate
    // writes, and the second would wait for the upstream's delayed ACK
    // (40 ms on some small calls).
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    #[cfg(target_os = "linux")]
    let connector = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        http.enforce_http(false);
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    };
    #[cfg(not(target_os = "linux"))]
    let connector = http;
    connector
}

fn client() -> Result<Client> {
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector()),
    )
}

/// Reads the key from standard input (one line, once) into `tx`. An empty
/// or absent line leaves the broker without a key: its calls are refused.
pub fn read_key(tx: watch::Sender<Option<Secret>>) {
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let key = line.trim_end_matches(['\r', '\n']).to_owned();
        if key.is_empty() {
            crate::core::warning::report_warn("broker: no key on stdin".to_owned());
        }
        let _ = tx.send(Some(Secret::new(key)));
    });
}

/// Serves the broker until the process ends.
pub async fn serve(args: BrokerArgs, key: watch::Receiver<Option<Secret>>) -> Result<()> {
    let listener = crate::features::egress::proxy::bind_listen(&args.listen).await?;
    let settings_path = args.settings.clone();
    let state = Arc::new(State {
        args,
        key,
        settings: Mutex::new(crate::features::egress::reload::Reloaded::new(
            settings_path,
            None,
            |p| BrokerFile::read(p).map(Some),
            "broker: keeping the previous settings",
        )),
        meter: Mutex::new(Meter::default()),
        client: client()?,
        oauth: tokio::sync::Mutex::new(None),
    });
    if state.settings().is_none() {
        return Err(Error::Invalid(format!(
            "broker: no settings at {}",
            state.args.settings.display()
        )));
    }
    crate::core::warning::report_warn(format!("broker: listening on {}", state.args.listen));
    let limit =
        crate::features::egress::relay::Limit::new(crate::features::egress::relay::MAX_PROXY);
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = limit.take() else {
            continue;
        };
        let _ = conn.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, state).await) }
            });
            // A client that shuts its side once it sent the call (`nc`)
            // still gets the answer.
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                .await;
        });
    }
}

/// The header a key travels in, per API, and how its value is written.
fn key_header(api: ApiKind) -> (&'static str, &'static str) {
    match api {
        ApiKind::Gemini => ("x-goog-api-key", ""),
        ApiKind::Openai => ("authorization", "Bearer "),
        _ => ("x-api-key", ""),
    }
}

/// Whether the call carries the instance's placeholder, where the API's
/// clients put a key: the API's header, `Authorization: Bearer`, or
/// Gemini's `?key=`.
fn carries_placeholder(req: &Request<Incoming>, f: &BrokerFile) -> bool {
    use subtle::ConstantTimeEq;
    let want = f.placeholder.as_bytes();
    let same = |v: &[u8]| bool::from(v.ct_eq(want));
    let h = |name: &str| req.headers().get(name).map(|v| v.as_bytes());
    let (name, _) = key_header(f.api);
    let bearer = h("authorization").and_then(|v| v.strip_prefix(b"Bearer "));
    let query = (f.api == ApiKind::Gemini)
        .then(|| query_key(req.uri().query().unwrap_or("")))
        .flatten();
    h(name).is_some_and(same)
        || bearer.is_some_and(same)
        || query.is_some_and(|q| same(q.as_bytes()))
}

fn query_key(q: &str) -> Option<&str> {
    q.split('&').find_map(|kv| kv.strip_prefix("key="))
}

/// The query without `key=`.
fn without_key(q: &str) -> String {
    q.split('&')
        .filter(|kv| !kv.starts_with("key=") && !kv.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

/// Headers never sent on: hop-by-hop, the box's credentials (the real key
/// replaces them), and compression (the usage is read from the body).
const DROP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "accept-encoding",
    "x-api-key",
    "authorization",
    "x-goog-api-key",
    "cookie",
];

async fn handle(req: Request<Incoming>, st: Arc<State>) -> Response<Body_> {
    let Some(f) = st.settings() else {
        return error(
            ApiKind::Anthropic,
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-sessions broker: no settings",
        );
    };
    if req.method() == hyper::Method::CONNECT {
        // A tunnel would carry what the broker cannot see or meter.
        return error(
            f.api,
            StatusCode::METHOD_NOT_ALLOWED,
            "ai-sessions broker: no tunnels; send the API's calls as plain HTTP to the base URL",
        );
    }
    if !carries_placeholder(&req, &f) {
        return error(
            f.api,
            StatusCode::UNAUTHORIZED,
            "ai-sessions broker: this call does not carry this instance's key; the broker adds the real key only to calls from its own instance",
        );
    }
    let Some(key) = wait_key(&st).await else {
        return error(
            f.api,
            StatusCode::UNAUTHORIZED,
            "ai-sessions broker: no key reached this instance's broker; restart the instance with the key set (`ai-sessctl restart ID`)",
        );
    };
    let key = match &f.oauth {
        Some(o) => oauth_token(&st, o, &key).await,
        None => key,
    };
    let refusal = st
        .meter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refusal(&st.args, &f);
    if let Some(why) = refusal {
        crate::core::warning::report_warn(format!("broker: refused a call: {why}"));
        return error(f.api, StatusCode::BAD_REQUEST, &why);
    }
    let path = req.uri().path().to_owned();
    let model_hint = model_in_path(&path);
    let upstream = match upstream_request(req, &f, &key) {
        Ok(r) => r,
        Err(why) => return error(f.api, StatusCode::BAD_REQUEST, &why),
    };
    let resp = match st.client.request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            let why = format!(
                "ai-sessions broker: cannot reach {}: {}",
                f.upstream,
                error_chain(&e)
            );
            crate::core::warning::report_warn(why.clone());
            return error(f.api, StatusCode::BAD_GATEWAY, &why);
        }
    };
    let (mut parts, body) = resp.into_parts();
    if f.oauth.is_some() && parts.status == StatusCode::UNAUTHORIZED {
        // Revoked or expired early: the next call refreshes it first.
        if let Some(held) = st.oauth.lock().await.as_mut() {
            held.1 = Some(0);
        }
    }
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        parts.headers.remove(h);
    }
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let metered = Metered {
        inner: body,
        tap: Some(Tap::new(f.api, &ct, model_hint)),
        status: parts.status.as_u16(),
        meter: st.args.meter.clone(),
    };
    Response::from_parts(parts, metered.boxed())
}

/// A subscription login's access token: the one the host handed over,
/// refreshed here (and written back to the shared login) once it expires
/// within minutes. A failed refresh keeps the old one (the call tells).
async fn oauth_token(st: &State, o: &super::settings::OAuthSettings, line: &Secret) -> Secret {
    use super::oauth;
    let mut held = st.oauth.lock().await;
    let (token, expires) = held.get_or_insert_with(|| parse_line(line)).clone();
    if expires.is_none_or(|e| e - oauth::MARGIN_MS > oauth::now_ms()) {
        return token;
    }
    match oauth::refresh_file(std::path::Path::new(&o.login), &o.token_url, token.expose()).await {
        Ok(l) => {
            crate::core::warning::report_warn("broker: refreshed the login".to_owned());
            *held = Some((l.access.clone(), l.expires_at));
            l.access
        }
        Err(e) => {
            crate::core::warning::report_warn(format!("broker: {e}"));
            token
        }
    }
}

/// The stdin line of a login: `{"kind":"oauth","access_token":…,
/// "expires_at":…}` (a bare token is taken as is).
fn parse_line(line: &Secret) -> (Secret, Option<i64>) {
    let v: Option<serde_json::Value> = serde_json::from_str(line.expose()).ok();
    match v
        .as_ref()
        .and_then(|v| Some((v["access_token"].as_str()?, v)))
    {
        Some((t, v)) => (Secret::new(t.to_owned()), v["expires_at"].as_i64()),
        None => (line.clone(), None),
    }
}

/// The key, once it arrived (it is written right after the start).
async fn wait_key(st: &State) -> Option<Secret> {
    let mut rx = st.key.clone();
    let got = tokio::time::timeout(KEY_WAIT, rx.wait_for(|k| k.is_some())).await;
    let key = match got {
        Ok(Ok(k)) => k.clone(),
        _ => None,
    };
    key.filter(|k| !k.expose().is_empty())
}

/// The call as it goes upstream: the upstream's address and base path,
/// the box's path and query, its headers but its credentials, and the
/// real key.
fn upstream_request(
    req: Request<Incoming>,
    f: &BrokerFile,
    key: &Secret,
) -> std::result::Result<Request<Incoming>, String> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query().map(without_key).unwrap_or_default();
    let scheme = if f.upstream.tls { "https" } else { "http" };
    let mut uri = format!(
        "{scheme}://{}{}{}",
        f.upstream.authority(),
        f.upstream.base_path,
        path
    );
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query);
    }
    parts.uri = uri
        .parse()
        .map_err(|_| "ai-sessions broker: not a valid request path".to_owned())?;
    for h in DROP_HEADERS {
        parts.headers.remove(*h);
    }
    parts.headers.insert(
        hyper::header::HOST,
        HeaderValue::from_str(&f.upstream.authority()).map_err(|e| e.to_string())?,
    );
    parts
        .headers
        .insert("accept-encoding", HeaderValue::from_static("identity"));
    let (name, prefix) = match f.oauth {
        Some(_) => ("authorization", "Bearer "),
        None => key_header(f.api),
    };
    let mut value = HeaderValue::from_str(&format!("{prefix}{}", key.expose()))
        .map_err(|_| "ai-sessions broker: the key is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    parts.headers.insert(HeaderName::from_static(name), value);
    parts.version = hyper::Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

/// An error's chain, without anything of the request (no key in it).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// An error in the shape the API's clients show to their user.
fn error(api: ApiKind, status: StatusCode, message: &str) -> Response<Body_> {
    let body = match api {
        ApiKind::Gemini => serde_json::json!({
            "error": {"code": status.as_u16(), "message": message, "status": match status.as_u16() {
                400 => "FAILED_PRECONDITION", 401 => "UNAUTHENTICATED", _ => "UNAVAILABLE" }}
        }),
        ApiKind::Openai => serde_json::json!({
            "error": {"message": message, "type": match status.as_u16() {
                400 => "insufficient_quota", 401 => "invalid_request_error", _ => "api_error" }, "code": null}
        }),
        _ => serde_json::json!({
            "type": "error",
            "error": {"type": match status.as_u16() {
                400 => "invalid_request_error", 401 => "authentication_error", _ => "api_error" },
                "message": message}
        }),
    };
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A response body on its way to the box, its usage read as it passes and
/// written to the ledger when it ends (or when the box hangs up).
struct Metered {
    inner: Incoming,
    tap: Option<Tap>,
    status: u16,
    meter: PathBuf,
}

impl Metered {
    fn record(&mut self) {
        let Some(mut tap) = self.tap.take() else {
            return;
        };
        tap.finish();
        let rec = Record {
            ts: chrono::Utc::now(),
            model: tap.model,
            tokens: tap.tokens,
            status: self.status,
        };
        if let Err(e) = ledger::append(&self.meter, &rec) {
            crate::core::warning::report_warn(format!("broker: cannot record a call: {e}"));
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tap)) = (frame.data_ref(), self.tap.as_mut()) {
                    tap.feed(data);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.record(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.record();
    }
}
