//! The inspect-response stage's guardrails: every response text — content, tool-call arguments,
//! reasoning, refusals, in every provider's stream and whole-body shape — goes through the policy's
//! [`Scanner`] before the client sees it. The body is cut into units (SSE frames, the elements of a
//! Gemini JSON-array or Ollama NDJSON stream, or one whole JSON document); a unit waits while a text
//! it carries is not yet decided, and goes out as it came unless a redaction touches it — then its
//! JSON is rewritten with the new strings (still valid JSON, the frame's other lines kept). A `block`
//! ends an event stream with the dialect's in-stream error before any of the match is sent (a whole
//! JSON body becomes the dialect's error document). With `buffer_responses`, nothing is released
//! until the response is complete. The record gets every finding, never a value.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde_json::Value;

use super::stage::{StreamCut, StreamStage};
use crate::guardrails::actions::Guard;
use crate::guardrails::stream::{Blocked, Edit, Scanner, StreamKey, Who};
use crate::policy::guardrails::{Action, Direction};
use crate::policy::ApiKind;
use crate::providers::dialect::{self, AirlockError};
use crate::providers::framing::{Nesting, MAX_UNIT};
use crate::providers::response::{Framing, ResponseParser, TextDelta, MAX_BODY};
use crate::record::Record;

/// The most an event stream may hold back in bytes on the wire (frames carry more than their
/// text). The text bound is the scanner's; this only stops a hostile stream from growing memory.
const STREAM_HOLD_LIMIT: usize = 8 << 20;

/// Keys whose strings are never response text (a delta equal to `"assistant"` is not the role).
const NOT_TEXT: [&str; 7] = [
    "role",
    "type",
    "id",
    "model",
    "object",
    "finish_reason",
    "event",
];

/// What a unit of the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One SSE frame, blank line included.
    Frame,
    /// One JSON value (a stream element or the whole body).
    Json,
    /// Bytes between units (array punctuation, whitespace, an unterminated tail).
    Raw,
}

struct Unit {
    bytes: Bytes,
    kind: Kind,
    deltas: Vec<TextDelta>,
}

/// The guardrails of one response.
pub(crate) struct ResponseGuard {
    scanner: Scanner,
    parser: ResponseParser,
    framing: Framing,
    api: ApiKind,
    id: String,
    key: [u8; 32],
    buffer_all: bool,
    units: VecDeque<Unit>,
    units_bytes: usize,
    /// An SSE frame or JSON element not complete yet, or (whole JSON) the body so far.
    partial: BytesMut,
    /// Where the JSON-array or NDJSON element being read stands.
    element: Nesting,
    /// Set once a block or a failed rewrite ended the response.
    ended: bool,
    /// Each chunk is one whole event (a WebSocket message's JSON text), not a byte stream.
    events: bool,
    /// A unit too big to read arrived: the rest of the body passes as it comes.
    bypass: bool,
    /// Where a `warn` finding's event goes.
    journal: Option<crate::journal::Journal>,
}

impl ResponseGuard {
    /// The stage for a response of `api`'s `operation`, framed as `framing` (already decoded).
    pub(crate) fn new(
        guard: Arc<Guard>,
        who: Who,
        key: [u8; 32],
        api: ApiKind,
        operation: &str,
        framing: Framing,
        id: &str,
    ) -> ResponseGuard {
        let buffer_all = guard.buffer_responses();
        ResponseGuard {
            scanner: Scanner::new(guard, who),
            parser: ResponseParser::new(api, operation, framing, None).with_text_deltas(),
            framing,
            api,
            id: id.to_string(),
            key,
            buffer_all,
            units: VecDeque::new(),
            units_bytes: 0,
            partial: BytesMut::new(),
            element: Nesting::default(),
            ended: false,
            events: false,
            bypass: false,
            journal: None,
        }
    }

    /// Journals a `guardrail_warn` event for each response with `warn` findings.
    pub(crate) fn with_journal(mut self, journal: Option<crate::journal::Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// The stage for one response on a WebSocket (Realtime, Responses): each chunk is one server
    /// event, read like a Responses stream event.
    pub(crate) fn for_events(
        guard: Arc<Guard>,
        who: Who,
        key: [u8; 32],
        id: &str,
    ) -> ResponseGuard {
        let mut g = ResponseGuard::new(
            guard,
            who,
            key,
            ApiKind::Openai,
            "responses",
            Framing::Sse,
            id,
        );
        g.events = true;
        g
    }

    /// Reads a complete unit, queues it, and hands its texts to the scanner.
    fn unit(&mut self, bytes: Bytes, kind: Kind) {
        self.parser.feed(&bytes);
        let deltas = self.parser.take_text_deltas();
        self.queue(bytes, kind, deltas);
    }

    fn queue(&mut self, bytes: Bytes, kind: Kind, deltas: Vec<TextDelta>) {
        for d in &deltas {
            self.scanner.push((d.channel, d.index), &d.text);
        }
        self.units_bytes += bytes.len();
        self.units.push_back(Unit {
            bytes,
            kind,
            deltas,
        });
    }

    /// Cuts whole SSE frames off the front of `partial`.
    fn split_frames(&mut self) {
        loop {
            let Some(end) = frame_end(&self.partial) else {
                return;
            };
            let frame = self.partial.split_to(end).freeze();
            self.unit(frame, Kind::Frame);
        }
    }

    /// Cuts stream elements (and what lies between them) out of `chunk`.
    fn split_elements(&mut self, chunk: &[u8]) {
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if !self.element.is_open() {
                if b == b'{' {
                    // What came before the element goes on as it is.
                    self.partial.extend_from_slice(&chunk[start..i]);
                    if !self.partial.is_empty() {
                        let raw = self.partial.split().freeze();
                        self.unit(raw, Kind::Raw);
                    }
                    start = i;
                    self.element = Nesting::open();
                }
                continue;
            }
            if self.element.step(b) {
                self.partial.extend_from_slice(&chunk[start..=i]);
                let elem = self.partial.split().freeze();
                self.unit(elem, Kind::Json);
                start = i + 1;
            }
        }
        self.partial.extend_from_slice(&chunk[start..]);
        if !self.element.is_open() && !self.partial.is_empty() {
            let raw = self.partial.split().freeze();
            self.unit(raw, Kind::Raw);
        }
    }

    /// Sends every unit whose texts are all decided (all of them at the end).
    fn release(&mut self, all: bool, out: &mut BytesMut) -> Result<(), StreamCut> {
        while let Some(u) = self.units.front() {
            let ready = all
                || (!self.buffer_all
                    && u.deltas.iter().all(|d| {
                        d.offset + d.text.len() <= self.scanner.released((d.channel, d.index))
                    }));
            if !ready {
                break;
            }
            let Some(u) = self.units.pop_front() else {
                break;
            };
            self.units_bytes -= u.bytes.len();
            let bytes = self.rewrite(&u)?;
            out.extend_from_slice(&bytes);
        }
        Ok(())
    }

    /// The unit as the client gets it: unchanged, or its JSON with the redacted strings.
    fn rewrite(&mut self, u: &Unit) -> Result<Bytes, StreamCut> {
        let changes: Vec<(&TextDelta, String, Vec<Edit>)> = u
            .deltas
            .iter()
            .filter_map(|d| {
                let key: StreamKey = (d.channel, d.index);
                self.scanner
                    .rewrite(key, d.offset, &d.text)
                    .map(|(new, edits)| (d, new, edits))
            })
            .collect();
        if changes.is_empty() {
            return Ok(u.bytes.clone());
        }
        let failed = || {
            StreamCut {
                kind: "guardrail_violation",
                message: "Airlock had to redact part of this response but could not rewrite it, so it ended the response; retry the request, or ask your administrator about the guardrails policy".into(),
            }
        };
        match u.kind {
            Kind::Frame => {
                let (json, lines, crlf) = frame_json(&u.bytes).ok_or_else(failed)?;
                let mut v: Value = serde_json::from_str(&json).map_err(|_| failed())?;
                if !apply(&mut v, &changes) {
                    return Err(failed());
                }
                Ok(rebuild_frame(&lines, &v, crlf))
            }
            Kind::Json => {
                let mut v: Value = serde_json::from_slice(&u.bytes).map_err(|_| failed())?;
                if !apply(&mut v, &changes) {
                    return Err(failed());
                }
                serde_json::to_vec(&v)
                    .map(Bytes::from)
                    .map_err(|_| failed())
            }
            Kind::Raw => Err(failed()),
        }
    }

    /// A unit too big to read (an SSE frame or stream element over 1 MiB, a body over 16 MiB, which the
    /// parser does not read either): what came before it is decided on the text so far and sent, and
    /// the rest of the body passes uninspected, so a huge answer is never held whole.
    fn give_up(&mut self, out: &mut BytesMut) -> Result<(), StreamCut> {
        tracing::warn!(
            id = %self.id,
            bytes = self.partial.len(),
            "a response unit is too big to inspect; the rest of this response passes without guardrails"
        );
        if let Err(b) = self.scanner.advance(true) {
            return Err(self.blocked(b));
        }
        self.release(true, out)?;
        out.extend_from_slice(&self.partial.split());
        self.bypass = true;
        Ok(())
    }

    /// A block decided: the cut for the client.
    fn blocked(&mut self, b: Blocked) -> StreamCut {
        self.ended = true;
        self.units.clear();
        self.units_bytes = 0;
        StreamCut {
            kind: "guardrail_violation",
            message: format!(
                "Airlock ended this response because it contains {} (the matched text is not shown); \
                 ask again without requesting it, or ask your administrator to allow it in the guardrails policy",
                b.rules.join(", ")
            ),
        }
    }
}

impl StreamStage for ResponseGuard {
    fn holdback_limit(&self) -> usize {
        if self.buffer_all || self.framing == Framing::Json {
            MAX_BODY
        } else {
            STREAM_HOLD_LIMIT
        }
    }

    fn held(&self) -> usize {
        self.units_bytes + self.partial.len()
    }

    fn on_data(
        &mut self,
        chunk: Bytes,
        _deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        if self.ended {
            return Ok(());
        }
        if self.bypass {
            out.extend_from_slice(&chunk);
            return Ok(());
        }
        if self.events {
            if let Ok(v) = serde_json::from_slice::<Value>(&chunk) {
                self.parser.feed_event(&v);
            }
            let deltas = self.parser.take_text_deltas();
            self.queue(chunk, Kind::Json, deltas);
            if let Err(b) = self.scanner.advance(false) {
                return Err(self.blocked(b));
            }
            return self.release(false, out);
        }
        match self.framing {
            Framing::Sse => {
                self.partial.extend_from_slice(&chunk);
                self.split_frames();
            }
            Framing::JsonArray => self.split_elements(&chunk),
            Framing::Json => {
                // Read whole at the end.
                self.partial.extend_from_slice(&chunk);
                if self.partial.len() > MAX_BODY {
                    return self.give_up(out);
                }
                return Ok(());
            }
            Framing::Opaque => {
                out.extend_from_slice(&chunk);
                return Ok(());
            }
        }
        if self.partial.len() > MAX_UNIT {
            return self.give_up(out);
        }
        if let Err(b) = self.scanner.advance(false) {
            return Err(self.blocked(b));
        }
        self.release(false, out)
    }

    fn on_end(&mut self, out: &mut BytesMut) -> Result<(), StreamCut> {
        if self.ended || self.bypass {
            return Ok(());
        }
        if !self.partial.is_empty() {
            let rest = self.partial.split().freeze();
            if self.framing == Framing::Json {
                self.parser.feed(&rest);
                self.parser.finish();
                let deltas = self.parser.take_text_deltas();
                self.queue(rest, Kind::Json, deltas);
            } else {
                // An unterminated tail: its texts, if any, were never read; it goes as it came.
                self.parser.feed(&rest);
                self.parser.finish();
                let deltas = self.parser.take_text_deltas();
                let kind = if deltas.is_empty() {
                    Kind::Raw
                } else if self.framing == Framing::Sse {
                    Kind::Frame
                } else {
                    Kind::Json
                };
                self.queue(rest, kind, deltas);
            }
        }
        if let Err(b) = self.scanner.advance(true) {
            let cut = self.blocked(b);
            if self.framing == Framing::Json {
                // A whole body: the client gets the dialect's error document instead.
                let err = AirlockError::new(StatusCode::BAD_GATEWAY, cut.kind, cut.message);
                let body = dialect::body(Some(self.api), &err, Some(&self.id));
                out.extend_from_slice(body.to_string().as_bytes());
                return Ok(());
            }
            return Err(cut);
        }
        self.release(true, out)
    }

    fn on_record(&mut self, record: &mut Record) {
        let hits = self.scanner.hits(&self.key);
        let mut warned: Vec<&str> = Vec::new();
        for h in hits.iter().filter(|h| h.action == Action::Warn) {
            if !warned.contains(&h.rule.as_str()) {
                warned.push(&h.rule);
            }
        }
        if !warned.is_empty() {
            // The headers have gone, so a response's warning is told in the journal only.
            super::guardrails::journal_warning(
                self.journal.as_ref(),
                record.uid,
                &record.id,
                Direction::Response,
                &warned,
                &record.provider,
            );
        }
        record.guardrails.extend(hits);
    }
}

/// Where the first complete SSE frame of `buf` ends (after its blank line).
fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' || b == b'\r' {
            let term = if b == b'\r' {
                match buf.get(i + 1) {
                    Some(b'\n') => 2,
                    // A CR at the end may be the first half of CRLF.
                    None => return None,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let empty = i == line_start;
            i += term;
            if empty {
                return Some(i);
            }
            line_start = i;
        } else {
            i += 1;
        }
    }
    None
}

/// A frame's data (its `data:` lines joined), its lines, and whether they end in CRLF.
fn frame_json(frame: &[u8]) -> Option<(String, Vec<String>, bool)> {
    let text = std::str::from_utf8(frame).ok()?;
    let crlf = text.contains("\r\n");
    let lines: Vec<String> = text
        .split(['\n'])
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let data: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    Some((data.join("\n"), lines, crlf))
}

/// The frame again with one `data:` line holding `v` where its data was.
fn rebuild_frame(lines: &[String], v: &Value, crlf: bool) -> Bytes {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    let mut wrote = false;
    for l in lines {
        if l.starts_with("data:") {
            if !wrote {
                out.push_str("data: ");
                out.push_str(&v.to_string());
                out.push_str(nl);
                wrote = true;
            }
            continue;
        }
        out.push_str(l);
        out.push_str(nl);
    }
    out.push_str(nl);
    Bytes::from(out)
}

/// Puts each changed delta's new text into `v`: the string that holds the delta (the first
/// not yet replaced), or — for a text the parser serialised from an object (a whole tool input) —
/// each redacted part inside the object's strings. False when a change found no place.
fn apply(v: &mut Value, changes: &[(&TextDelta, String, Vec<Edit>)]) -> bool {
    for (d, new, edits) in changes {
        if replace_leaf(v, &d.text, new) {
            continue;
        }
        let mut placed = true;
        for (range, rep) in edits {
            let Some(old) = d.text.get(range.clone()).filter(|o| !o.is_empty()) else {
                continue;
            };
            if !replace_inside(v, old, rep) {
                placed = false;
            }
        }
        if !placed {
            return false;
        }
    }
    true
}

fn replace_leaf(v: &mut Value, old: &str, new: &str) -> bool {
    match v {
        Value::Object(map) => map.iter_mut().any(|(k, child)| match child {
            Value::String(_) if NOT_TEXT.contains(&k.as_str()) => false,
            _ => replace_leaf(child, old, new),
        }),
        Value::Array(items) => items.iter_mut().any(|c| replace_leaf(c, old, new)),
        // A replaced string no longer equals its old text, so a second delta with the same text
        // finds the next one.
        Value::String(s) if s == old => {
            *s = new.to_string();
            true
        }
        _ => false,
    }
}

fn replace_inside(v: &mut Value, old: &str, new: &str) -> bool {
    match v {
        Value::Object(map) => {
            let mut any = false;
            for (_, c) in map.iter_mut() {
                any |= replace_inside(c, old, new);
            }
            any
        }
        Value::Array(items) => {
            let mut any = false;
            for c in items.iter_mut() {
                any |= replace_inside(c, old, new);
            }
            any
        }
        Value::String(s) if s.contains(old) => {
            *s = s.replace(old, new);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "guardrails_response_tests.rs"]
mod tests;
