//! Reads the usage out of a model API's response as it streams past the
//! broker: server-sent events are split into lines and only the `data:`
//! lines that mention usage are parsed; a plain JSON body is kept (up to a
//! cap) and parsed at its end. Anthropic's Messages API, Gemini's
//! `generateContent` and OpenAI's chat and responses APIs are understood.

use crate::state::config::ApiKind;
use crate::state::spend::Tokens;
use serde_json::Value;

/// A JSON body bigger than this is not parsed (its usage is lost, the call
/// still counted).
const JSON_CAP: usize = 8 << 20;
/// A single event line longer than this is skipped.
const LINE_CAP: usize = 4 << 20;

#[derive(Debug)]
pub struct Tap {
    api: ApiKind,
    sse: bool,
    buf: Vec<u8>,
    overflow: bool,
    pub model: String,
    pub tokens: Tokens,
}

impl Tap {
    /// `content_type`: the response's; `model_hint`: the model named in
    /// the request's path (Gemini), used when the body names none.
    pub fn new(api: ApiKind, content_type: &str, model_hint: Option<String>) -> Tap {
        Tap {
            api,
            sse: content_type.starts_with("text/event-stream"),
            buf: Vec::new(),
            overflow: false,
            model: model_hint.unwrap_or_default(),
            tokens: Tokens::default(),
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        if !self.sse {
            if self.buf.len() + bytes.len() > JSON_CAP {
                self.overflow = true;
                self.buf = Vec::new();
            }
            if !self.overflow {
                self.buf.extend_from_slice(bytes);
            }
            return;
        }
        while let Some(i) = memchr::memchr(b'\n', bytes) {
            let (line, rest) = bytes.split_at(i);
            bytes = &rest[1..];
            if self.overflow {
                self.overflow = false;
                self.buf.clear();
                continue;
            }
            if self.buf.is_empty() {
                self.line(line);
            } else {
                self.buf.extend_from_slice(line);
                let whole = std::mem::take(&mut self.buf);
                self.line(&whole);
            }
        }
        // A partial line is kept only if it may be a `data:` line that
        // matters: most of a stream is text deltas, not worth copying.
        if !self.overflow && !bytes.is_empty() {
            let head = if self.buf.is_empty() {
                bytes
            } else {
                &self.buf[..]
            };
            let n = head.len().min(5);
            if head[..n] != b"data:"[..n] {
                self.overflow = true;
                self.buf.clear();
                return;
            }
            self.buf.extend_from_slice(bytes);
            if self.buf.len() > LINE_CAP {
                self.overflow = true;
                self.buf = Vec::new();
            }
        }
    }

    /// The response ended.
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        if self.overflow {
            return;
        }
        if self.sse {
            self.line(&rest);
        } else if let Ok(v) = serde_json::from_slice::<Value>(&rest) {
            match v {
                // Gemini's streamGenerateContent without `alt=sse`: an array.
                Value::Array(items) => items.iter().for_each(|i| self.event(i)),
                v => self.event(&v),
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Most events are text: only those that mention usage (or start a
        // message, which names the model) are worth parsing.
        if !contains(data, b"sage") && !contains(data, b"\"model") {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            self.event(&v);
        }
    }

    fn event(&mut self, v: &Value) {
        match self.api {
            ApiKind::Gemini => self.gemini(v),
            ApiKind::Openai => self.openai(v),
            _ => self.anthropic(v),
        }
    }

    fn set_model(&mut self, m: Option<&Value>) {
        if let Some(m) = m.and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = m.chars().take(200).collect();
        }
    }

    /// `message_start` (the model, input and cache tokens), `message_delta`
    /// (output so far, cumulative), or a whole message.
    fn anthropic(&mut self, v: &Value) {
        let msg = match v.get("type").and_then(Value::as_str) {
            Some("message_start") => v.get("message").unwrap_or(v),
            _ => v,
        };
        self.set_model(msg.get("model"));
        let Some(u) = msg.get("usage").or_else(|| v.get("usage")) else {
            return;
        };
        // Each field present is the running total: the latest wins.
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(x) = n("input_tokens") {
            self.tokens.input_tokens = x;
        }
        if let Some(x) = n("output_tokens") {
            self.tokens.output_tokens = x;
        }
        if let Some(x) = n("cache_creation_input_tokens") {
            self.tokens.cache_creation_input_tokens = x;
        }
        if let Some(x) = n("cache_read_input_tokens") {
            self.tokens.cache_read_input_tokens = x;
        }
    }

    /// `usageMetadata`, whose counts are the totals so far; cached tokens
    /// are part of the prompt's count.
    fn gemini(&mut self, v: &Value) {
        self.set_model(v.get("modelVersion"));
        let Some(u) = v.get("usageMetadata") else {
            return;
        };
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cached = n("cachedContentTokenCount");
        self.tokens = Tokens {
            input_tokens: n("promptTokenCount").saturating_sub(cached),
            output_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        };
    }

    /// Chat completions (`prompt_tokens`) or responses (`input_tokens`,
    /// in `response.completed`); cached tokens are part of the input.
    fn openai(&mut self, v: &Value) {
        let v = v.get("response").filter(|r| r.is_object()).unwrap_or(v);
        self.set_model(v.get("model"));
        let Some(u) = v.get("usage").filter(|u| u.is_object()) else {
            return;
        };
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let cached = ["prompt_tokens_details", "input_tokens_details"]
            .iter()
            .find_map(|d| u.get(*d)?.get("cached_tokens")?.as_u64())
            .unwrap_or(0);
        let input = n("prompt_tokens").or(n("input_tokens")).unwrap_or(0);
        let output = n("completion_tokens").or(n("output_tokens")).unwrap_or(0);
        self.tokens = Tokens {
            input_tokens: input.saturating_sub(cached),
            output_tokens: output,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        };
    }
}

/// Every byte of a streamed reply passes the line search; the needles
/// only the `data:` lines.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The model in a Gemini path (`/v1beta/models/gemini-2.5-pro:streamGenerateContent`).
pub fn model_in_path(path: &str) -> Option<String> {
    let rest = path.split("/models/").nth(1)?;
    let model = rest.split([':', '/', '?']).next()?;
    (!model.is_empty()).then(|| model.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(api: ApiKind, ct: &str, body: &str, chunk: usize) -> Tap {
        let mut t = Tap::new(api, ct, None);
        for c in body.as_bytes().chunks(chunk) {
            t.feed(c);
        }
        t.finish();
        t
    }

    #[test]
    fn an_anthropic_stream_counts_input_cache_and_the_last_output() {
        let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":7,\"output_tokens\":1}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"the usage of data: is\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":34}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        for chunk in [1, 7, 4096] {
            let t = run(
                ApiKind::Anthropic,
                "text/event-stream; charset=utf-8",
                body,
                chunk,
            );
            assert_eq!(t.model, "claude-sonnet-4-5-20250929");
            assert_eq!(
                t.tokens,
                Tokens {
                    input_tokens: 12,
                    output_tokens: 34,
                    cache_creation_input_tokens: 100,
                    cache_read_input_tokens: 7
                },
                "chunk {chunk}"
            );
        }
        let json = "{\"id\":\"m\",\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}";
        let t = run(ApiKind::Anthropic, "application/json", json, 5);
        assert_eq!(
            (
                t.model.as_str(),
                t.tokens.input_tokens,
                t.tokens.output_tokens
            ),
            ("claude-haiku-4-5", 3, 4)
        );
    }

    #[test]
    fn gemini_and_openai_usage_is_read_in_their_names() {
        let body = "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-2.5-pro\"}\r\n\r\n\
data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":10,\"cachedContentTokenCount\":4,\"candidatesTokenCount\":20,\"thoughtsTokenCount\":5}}\r\n\r\n";
        let t = run(ApiKind::Gemini, "text/event-stream", body, 3);
        assert_eq!(t.model, "gemini-2.5-pro");
        assert_eq!(
            (
                t.tokens.input_tokens,
                t.tokens.cache_read_input_tokens,
                t.tokens.output_tokens
            ),
            (6, 4, 25)
        );
        let arr = "[{\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":3}}]";
        let t = run(ApiKind::Gemini, "application/json", arr, 100);
        assert_eq!((t.tokens.input_tokens, t.tokens.output_tokens), (2, 3));
        let chat = "{\"model\":\"gpt-5\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":5}}}";
        let t = run(ApiKind::Openai, "application/json", chat, 4);
        assert_eq!(
            (
                t.model.as_str(),
                t.tokens.input_tokens,
                t.tokens.cache_read_input_tokens,
                t.tokens.output_tokens
            ),
            ("gpt-5", 4, 5, 2)
        );
        let resp = "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5-mini\",\"usage\":{\"input_tokens\":8,\"output_tokens\":1}}}\n\n";
        let t = run(ApiKind::Openai, "text/event-stream", resp, 2);
        assert_eq!(
            (
                t.model.as_str(),
                t.tokens.input_tokens,
                t.tokens.output_tokens
            ),
            ("gpt-5-mini", 8, 1)
        );
        assert_eq!(
            model_in_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
                .as_deref(),
            Some("gemini-2.5-flash")
        );
    }
}
