//! Reading token usage out of a response as it streams past. The [`UsageObserver`] is fed copies of the
//! body chunks the client receives; it never changes, delays or holds them. It keeps bounded state: one
//! SSE line (capped) for streams, a capped copy for whole JSON bodies. Hostile input can make it give up
//! (usage unknown), never grow without bound or panic.

use serde_json::Value;

use crate::policy::ApiKind;
use crate::record::Usage;

/// Longest SSE line the observer will hold; longer lines are skipped (their usage is lost, the bytes
/// still reach the client untouched).
pub const MAX_LINE: usize = 1 << 20;
/// Largest non-streamed body the observer copies to read usage from.
pub const MAX_BODY: usize = 16 << 20;

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document.
    Json,
    /// Server-sent events.
    Sse,
    /// A JSON array streamed element by element (Gemini without `alt=sse`).
    JsonArray,
    /// Anything else (binary, encoded, unknown): not read.
    Opaque,
}

impl Framing {
    /// Chooses the framing from the response headers.
    pub fn from_headers(content_type: Option<&str>, content_encoding: Option<&str>) -> Framing {
        if content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return Framing::Opaque;
        }
        let ct = content_type.unwrap_or_default().to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Framing::Sse
        } else if ct.contains("json") {
            Framing::Json
        } else {
            Framing::Opaque
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Partial {
    input: Option<u64>,
    output: Option<u64>,
}

impl Partial {
    fn merge(&mut self, other: Partial) {
        if other.input.is_some() {
            self.input = other.input;
        }
        if other.output.is_some() {
            self.output = other.output;
        }
    }
}

/// Incremental usage reader for one response.
#[derive(Debug)]
pub struct UsageObserver {
    api: ApiKind,
    framing: Framing,
    buf: Vec<u8>,
    skipping_line: bool,
    overflowed: bool,
    usage: Partial,
}

impl UsageObserver {
    /// An observer for a response of `api` with the given framing.
    pub fn new(api: ApiKind, framing: Framing) -> UsageObserver {
        UsageObserver {
            api,
            framing,
            buf: Vec::new(),
            skipping_line: false,
            overflowed: false,
            usage: Partial::default(),
        }
    }

    /// Reads a copy of the next body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        match self.framing {
            Framing::Opaque => {}
            Framing::Json | Framing::JsonArray => {
                if self.overflowed {
                    return;
                }
                if self.buf.len() + chunk.len() > MAX_BODY {
                    self.overflowed = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            Framing::Sse => self.feed_sse(chunk),
        }
    }

    fn feed_sse(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    let (head, rest) = (&chunk[..i], &chunk[i + 1..]);
                    if self.skipping_line {
                        self.skipping_line = false;
                    } else if self.buf.is_empty() {
                        self.sse_line(head);
                    } else {
                        let mut line = std::mem::take(&mut self.buf);
                        line.extend_from_slice(head);
                        self.sse_line(&line);
                        line.clear();
                        self.buf = line;
                    }
                    chunk = rest;
                }
                None => {
                    if !self.skipping_line {
                        if self.buf.len() + chunk.len() > MAX_LINE {
                            self.buf.clear();
                            self.skipping_line = true;
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        // Only frames that can carry usage are parsed; the rest are skipped cheaply.
        if memchr::memmem::find(data, b"sage").is_none() {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            let p = extract(self.api, &v);
            self.usage.merge(p);
        }
    }

    /// Usage seen so far, once the body has ended. `None` if the response carried none.
    pub fn finish(&mut self) -> Option<Usage> {
        match self.framing {
            Framing::Json if !self.overflowed => {
                if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
                    self.usage.merge(extract(self.api, &v));
                }
            }
            Framing::JsonArray if !self.overflowed => {
                if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&self.buf) {
                    for item in &items {
                        self.usage.merge(extract(self.api, item));
                    }
                }
            }
            _ => {}
        }
        self.buf = Vec::new();
        match self.usage {
            Partial {
                input: None,
                output: None,
            } => None,
            Partial { input, output } => Some(Usage::plain(input.unwrap_or(0), output.unwrap_or(0))),
        }
    }
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Usage fields present in one JSON document (a whole response or one stream frame).
fn extract(api: ApiKind, v: &Value) -> Partial {
    match api {
        ApiKind::Openai | ApiKind::Azure => {
            let u = [
                v.get("usage"),
                v.get("response").and_then(|r| r.get("usage")),
                v.get("x_groq").and_then(|g| g.get("usage")),
            ]
            .into_iter()
            .flatten()
            .find(|u| u.is_object());
            match u {
                Some(u) => Partial {
                    input: num(u, "prompt_tokens").or_else(|| num(u, "input_tokens")),
                    output: num(u, "completion_tokens").or_else(|| num(u, "output_tokens")),
                },
                None => Partial::default(),
            }
        }
        ApiKind::Anthropic => {
            let u = v
                .get("usage")
                .or_else(|| v.get("message").and_then(|m| m.get("usage")))
                .filter(|u| u.is_object());
            match u {
                Some(u) => {
                    let base = num(u, "input_tokens");
                    let cache = num(u, "cache_creation_input_tokens").unwrap_or(0)
                        + num(u, "cache_read_input_tokens").unwrap_or(0);
                    Partial {
                        input: base.map(|b| b + cache),
                        output: num(u, "output_tokens"),
                    }
                }
                None => Partial::default(),
            }
        }
        ApiKind::Gemini => match v.get("usageMetadata").filter(|u| u.is_object()) {
            Some(u) => {
                let cand = num(u, "candidatesTokenCount");
                let thoughts = num(u, "thoughtsTokenCount");
                Partial {
                    input: num(u, "promptTokenCount"),
                    output: match (cand, thoughts) {
                        (None, None) => None,
                        (c, t) => Some(c.unwrap_or(0) + t.unwrap_or(0)),
                    },
                }
            }
            None => Partial::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(api: ApiKind, framing: Framing, body: &[u8], split: usize) -> Option<Usage> {
        let mut o = UsageObserver::new(api, framing);
        for part in body.chunks(split.max(1)) {
            o.feed(part);
        }
        o.finish()
    }

    const OPENAI_STREAM: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\r\n\r\n\
: keep-alive comment\n\n\
data: [DONE]\n\n";

    #[test]
    fn openai_stream_usage_at_any_split() {
        for split in 1..OPENAI_STREAM.len() {
            assert_eq!(
                run(ApiKind::Openai, Framing::Sse, OPENAI_STREAM, split),
                Some(Usage::plain(9, 2)),
                "split {split}"
            );
        }
    }

    #[test]
    fn anthropic_stream_adds_cache_and_takes_final_output() {
        let s = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(
            run(ApiKind::Anthropic, Framing::Sse, s, 7),
            Some(Usage::plain(1112, 30))
        );
    }

    #[test]
    fn gemini_json_array_takes_last_usage() {
        let s = br#"[{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}}
,{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":4,"thoughtsTokenCount":3}}]"#;
        assert_eq!(
            run(ApiKind::Gemini, Framing::JsonArray, s, 5),
            Some(Usage::plain(5, 7))
        );
    }

    #[test]
    fn non_stream_json_and_responses_shapes() {
        let chat = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(
            run(ApiKind::Openai, Framing::Json, chat, 4),
            Some(Usage::plain(3, 4))
        );
        let resp = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":30}}}\n\n";
        assert_eq!(
            run(ApiKind::Openai, Framing::Sse, resp, 3),
            Some(Usage::plain(12, 30))
        );
        let groq = b"data: {\"choices\":[],\"x_groq\":{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}}\n\n";
        assert_eq!(
            run(ApiKind::Openai, Framing::Sse, groq, 2),
            Some(Usage::plain(1, 2))
        );
    }

    #[test]
    fn no_usage_and_garbage_give_none() {
        assert_eq!(
            run(
                ApiKind::Openai,
                Framing::Sse,
                b"data: {\"usage\":null}\n\ndata: {broken usage\n",
                3
            ),
            None
        );
        assert_eq!(run(ApiKind::Openai, Framing::Json, b"{not json", 3), None);
        assert_eq!(
            run(
                ApiKind::Openai,
                Framing::Opaque,
                b"{\"usage\":{\"prompt_tokens\":1}}",
                3
            ),
            None
        );
    }

    #[test]
    fn huge_line_is_skipped_with_bounded_memory() {
        let mut o = UsageObserver::new(ApiKind::Openai, Framing::Sse);
        let big = vec![b'x'; 64 * 1024];
        o.feed(b"data: ");
        for _ in 0..64 {
            o.feed(&big); // 4 MiB line, never terminated for a while
            assert!(o.buf.capacity() <= 2 * MAX_LINE);
        }
        o.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n");
        assert_eq!(
            o.finish(),
            Some(Usage::plain(1, 1))
        );
    }

    #[test]
    fn encoded_bodies_are_not_read() {
        assert_eq!(
            Framing::from_headers(Some("application/json"), Some("gzip")),
            Framing::Opaque
        );
        assert_eq!(
            Framing::from_headers(Some("text/event-stream; charset=utf-8"), None),
            Framing::Sse
        );
    }
}
