//! Reading a response as it streams past: the observer's parser. It is fed copies of the body chunks the
//! client receives (in any pieces), decodes its copy if the upstream compressed it, splits it into SSE
//! events, streamed JSON-array elements or one JSON document, and extracts what the agent needs: usage,
//! the model that answered, whether the provider's end-of-response marker arrived, in-stream errors, and
//! the response text (content, tool arguments, reasoning) as addressed deltas for inspection. Every buffer
//! is bounded; hostile input can make it give up, never panic or grow without limit.

use serde_json::Value;

use super::decode::{Coding, StreamDecoder};
use super::framing::{JsonArraySplitter, SseEvent, SseSplitter, MAX_UNIT};
use super::usage::RawUsage;
use crate::budget::{BodyBudget, BodyPermit};
use crate::policy::ApiKind;
use crate::record::Usage;

/// Largest non-streamed body (decoded) the parser copies.
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
    /// Anything else: not read.
    Opaque,
}

impl Framing {
    /// Chooses the framing from the content type (and whether a JSON stream is an array stream).
    pub fn from_content_type(content_type: Option<&str>, json_is_array_stream: bool) -> Framing {
        let ct = content_type.unwrap_or_default().trim().to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Framing::Sse
        } else if ct.contains("ndjson") {
            // One JSON object a line (Ollama): read object by object, like a streamed array.
            Framing::JsonArray
        } else if ct.contains("json") {
            if json_is_array_stream {
                Framing::JsonArray
            } else {
                Framing::Json
            }
        } else {
            Framing::Opaque
        }
    }
}

/// Which stream of text a delta belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextChannel {
    /// Answer text.
    Content,
    /// Tool-call arguments (JSON text as the model writes it).
    ToolArguments,
    /// Reasoning / thinking text.
    Reasoning,
    /// A refusal.
    Refusal,
}

/// A piece of response text, addressed so a later stage can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDelta {
    /// Which text.
    pub channel: TextChannel,
    /// Choice / content block / output item / tool-call index the text belongs to.
    pub index: u64,
    /// Byte offset of this piece within its (channel, index) text so far.
    pub offset: usize,
    /// The text.
    pub text: String,
}

/// What the parser learned from a whole response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseSummary {
    /// Usage, normalised, when the response carried it.
    pub usage: Option<Usage>,
    /// The model named by the response.
    pub model: Option<String>,
    /// Whether the provider's end-of-response marker arrived (`[DONE]`, `message_stop`, a terminal
    /// Responses event, a Gemini finish reason, or a complete JSON body).
    pub terminal: bool,
    /// An error the provider reported (in-stream frame, or a JSON error body): `type: message`.
    pub error: Option<String>,
    /// Bytes of response text seen (for estimates when usage never arrives).
    pub output_text_bytes: u64,
    /// Stream units too large to read, or a body that could not be decoded or parsed.
    pub unreadable: Option<String>,
}

/// What a provider's error object says it is — its type and code, never its message: messages echo
/// prompt text back ("Invalid value: '...'") and the tails of wrong keys ("Incorrect API key provided:
/// sk-...abcd"), and records must hold neither. OpenAI and Anthropic name a `type` (and OpenAI a
/// string `code`), Azure often only a string `code`, Gemini a `status` beside its numeric `code`; a
/// Responses `error` event carries `type: "error"` beside its `code`, which is the useful part.
pub fn error_kind(err: &Value) -> String {
    let word = |key: &str| {
        err.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && *s != "error")
            .map(bounded_word)
    };
    let mut parts: Vec<String> = Vec::new();
    for key in ["type", "status", "code"] {
        if let Some(w) = word(key) {
            if !parts.contains(&w) {
                parts.push(w);
            }
        }
    }
    if let Some(n) = err.get("code").filter(|c| c.is_number()) {
        parts.push(n.to_string());
    }
    if parts.is_empty() {
        "error".into()
    } else {
        parts.join("/")
    }
}

/// An identifier-like word from an error object, cut to 64 characters of `[A-Za-z0-9_.-]`, so even a
/// provider that puts free text in `type` cannot smuggle a sentence into a record.
fn bounded_word(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The response parser for one response.
pub struct ResponseParser {
    api: ApiKind,
    operation: String,
    framing: Framing,
    decoder: Option<StreamDecoder>,
    sse: SseSplitter,
    array: JsonArraySplitter,
    body: Vec<u8>,
    body_overflow: bool,
    /// The shared memory budget the body copy is taken from, and the share taken.
    budget: Option<(BodyBudget, BodyPermit)>,
    budget_spent: bool,
    raw: RawUsage,
    model: Option<String>,
    terminal: bool,
    error: Option<String>,
    output_bytes: u64,
    unreadable: Option<String>,
    offsets: Vec<((TextChannel, u64), usize)>,
    /// Text deltas not yet taken, when collecting (`with_text_deltas`).
    deltas: Option<Vec<TextDelta>>,
}

impl std::fmt::Debug for ResponseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseParser")
            .field("api", &self.api)
            .field("operation", &self.operation)
            .field("framing", &self.framing)
            .finish()
    }
}

impl ResponseParser {
    /// A parser for a response of `api` to `operation`, framed as `framing` and encoded as
    /// `content_encoding` (the response header).
    pub fn new(
        api: ApiKind,
        operation: &str,
        framing: Framing,
        content_encoding: Option<&str>,
    ) -> Self {
        let mut unreadable = None;
        let decoder = match Coding::parse(content_encoding) {
            Ok(c) => match StreamDecoder::new(
                c,
                if framing == Framing::Json {
                    MAX_BODY
                } else {
                    256 << 20
                },
            ) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    unreadable = Some(e.to_string());
                    None
                }
            },
            Err(e) => {
                unreadable = Some(e.to_string());
                None
            }
        };
        let framing = if unreadable.is_some() {
            Framing::Opaque
        } else {
            framing
        };
        ResponseParser {
            api,
            operation: operation.to_string(),
            framing,
            decoder,
            sse: SseSplitter::new(),
            array: JsonArraySplitter::new(),
            body: Vec::new(),
            body_overflow: false,
            budget: None,
            budget_spent: false,
            raw: RawUsage::default(),
            model: None,
            terminal: false,
            error: None,
            output_bytes: 0,
            unreadable,
            offsets: Vec::new(),
            deltas: None,
        }
    }

    /// Takes the memory for its copy of a whole (non-streamed) body from `budget`; when the budget is
    /// spent the body is not kept, and the usage is left to an estimate.
    pub fn with_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = Some((budget, BodyPermit::none()));
        self
    }

    /// Collects every response text delta, to be taken with [`ResponseParser::take_text_deltas`]
    /// after each chunk (for response stages). Without it, no delta is built.
    pub fn with_text_deltas(mut self) -> Self {
        self.deltas = Some(Vec::new());
        self
    }

    /// The text deltas completed since the last call (empty unless collecting).
    pub fn take_text_deltas(&mut self) -> Vec<TextDelta> {
        self.deltas.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Reads one event that arrived whole and already parsed (a WebSocket message): the same
    /// reading as an SSE frame's data.
    pub fn feed_event(&mut self, v: &Value) {
        self.on_document(v, None);
    }

    /// Reads a copy of the next body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.framing == Framing::Opaque {
            return;
        }
        match self.decoder.as_mut().map(|d| d.feed(chunk)) {
            None => self.feed_decoded(chunk),
            Some(Ok(decoded)) => self.feed_decoded(&decoded),
            Some(Err(e)) => self.give_up(e.to_string()),
        }
    }

    fn give_up(&mut self, why: String) {
        self.unreadable = Some(why);
        self.framing = Framing::Opaque;
        self.decoder = None;
        self.body = Vec::new();
    }

    fn feed_decoded(&mut self, bytes: &[u8]) {
        match self.framing {
            Framing::Opaque => {}
            Framing::Json => {
                if self.body_overflow {
                    return;
                }
                let within_budget = match self.budget.as_mut() {
                    Some((b, permit)) => b.take(permit, bytes.len()),
                    None => true,
                };
                if !within_budget {
                    self.budget_spent = true;
                }
                if self.body.len() + bytes.len() > MAX_BODY || !within_budget {
                    self.body_overflow = true;
                    self.body = Vec::new();
                    // Give the share back at once: nothing is kept any more.
                    if let Some((_, permit)) = self.budget.as_mut() {
                        *permit = BodyPermit::none();
                    }
                } else {
                    self.body.extend_from_slice(bytes);
                }
            }
            Framing::Sse => {
                let mut sse = std::mem::take(&mut self.sse);
                sse.feed(bytes, &mut |e| self.on_sse(e));
                self.sse = sse;
            }
            Framing::JsonArray => {
                let mut array = std::mem::take(&mut self.array);
                array.feed(bytes, &mut |elem| {
                    if let Ok(v) = serde_json::from_slice::<Value>(elem) {
                        self.on_document(&v, None);
                    }
                });
                self.array = array;
            }
        }
    }

    /// Ends the body and returns what was learned.
    pub fn finish(&mut self) -> ResponseSummary {
        if let Some(d) = self.decoder.take() {
            match d.finish() {
                Ok(rest) => self.feed_decoded(&rest),
                Err(e) => self.unreadable = Some(e.to_string()),
            }
        }
        match self.framing {
            Framing::Sse => {
                let mut sse = std::mem::take(&mut self.sse);
                sse.finish(&mut |e| self.on_sse(e));
                if sse.skipped() > 0 {
                    self.unreadable = Some(format!(
                        "{} stream events over {MAX_UNIT} bytes were not read",
                        sse.skipped()
                    ));
                }
            }
            Framing::JsonArray if self.array.skipped() > 0 => {
                self.unreadable = Some(format!(
                    "{} stream elements over {MAX_UNIT} bytes were not read",
                    self.array.skipped()
                ));
            }
            Framing::Json if self.body_overflow && self.budget_spent => {
                self.unreadable = Some(
                    "Airlock's memory budget for bodies (limits.max_buffered_mib) was spent, so the response body was not read"
                        .into(),
                );
            }
            Framing::Json if self.body_overflow => {
                self.unreadable = Some(format!(
                    "the response body is over {MAX_BODY} bytes and was not read"
                ));
            }
            Framing::Json => {
                let body = std::mem::take(&mut self.body);
                if let Some((_, permit)) = self.budget.as_mut() {
                    *permit = BodyPermit::none();
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        self.on_document(&v, None);
                        if v.get("error").is_none_or(Value::is_null) {
                            self.terminal = true;
                        }
                    }
                    Err(_) if body.is_empty() => {}
                    Err(e) => {
                        self.unreadable = Some(format!("the response is not valid JSON: {e}"))
                    }
                }
            }
            _ => {}
        }
        ResponseSummary {
            usage: self.raw.normalise(self.api),
            model: self.model.clone(),
            terminal: self.terminal,
            error: self.error.clone(),
            output_text_bytes: self.output_bytes,
            unreadable: self.unreadable.clone(),
        }
    }

    fn on_sse(&mut self, e: SseEvent) {
        if e.data == b"[DONE]" {
            self.terminal = true;
            return;
        }
        if e.data.is_empty() {
            return;
        }
        // A non-JSON data line is the provider's business, not ours.
        if let Ok(v) = serde_json::from_slice::<Value>(&e.data) {
            self.on_document(&v, e.event.as_deref());
        }
    }

    fn text(&mut self, channel: TextChannel, index: u64, text: &str) {
        if text.is_empty() {
            return;
        }
        self.output_bytes += text.len() as u64;
        if self.deltas.is_none() {
            return;
        }
        let key = (channel, index);
        let offset = match self.offsets.iter_mut().find(|(k, _)| *k == key) {
            Some((_, off)) => {
                let o = *off;
                *off += text.len();
                o
            }
            None => {
                self.offsets.push((key, text.len()));
                0
            }
        };
        if let Some(d) = self.deltas.as_mut() {
            d.push(TextDelta {
                channel,
                index,
                offset,
                text: text.to_string(),
            });
        }
    }

    fn set_model(&mut self, m: Option<&Value>) {
        if let Some(m) = m.and_then(Value::as_str).filter(|m| !m.is_empty()) {
            if self.model.as_deref() != Some(m) {
                self.model = Some(m.to_string());
            }
        }
    }

    fn set_error(&mut self, err: &Value) {
        self.error = Some(error_kind(err));
    }

    /// One JSON document: a stream frame (with its SSE event name) or a whole response.
    fn on_document(&mut self, v: &Value, event: Option<&str>) {
        self.raw.merge(RawUsage::from_document(self.api, v));
        match self.api {
            ApiKind::Openai | ApiKind::Azure => {
                if self.operation == "responses" {
                    self.on_responses(v, event)
                } else {
                    self.on_openai(v)
                }
            }
            ApiKind::Anthropic => self.on_anthropic(v, event),
            ApiKind::Gemini => self.on_gemini(v),
            ApiKind::CodeAssist => self.on_gemini(super::backends::code_assist_response(v)),
            ApiKind::Ollama => self.on_ollama(v),
        }
    }

    fn on_openai(&mut self, v: &Value) {
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            self.set_error(err);
            return;
        }
        self.set_model(v.get("model"));
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return;
        };
        for (pos, c) in choices.iter().enumerate() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            // Streams carry `delta`, whole responses `message`; legacy completions carry `text`.
            let msg = c.get("delta").or_else(|| c.get("message"));
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                self.text(TextChannel::Content, idx, t);
            }
            let Some(msg) = msg else { continue };
            if let Some(t) = msg.get("content").and_then(Value::as_str) {
                self.text(TextChannel::Content, idx, t);
            }
            for key in ["reasoning_content", "reasoning"] {
                if let Some(t) = msg.get(key).and_then(Value::as_str) {
                    self.text(TextChannel::Reasoning, idx, t);
                }
            }
            if let Some(t) = msg.get("refusal").and_then(Value::as_str) {
                self.text(TextChannel::Refusal, idx, t);
            }
            if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
                for (k, call) in calls.iter().enumerate() {
                    let ti = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(k as u64);
                    if let Some(a) = call
                        .get("function")
                        .and_then(|f| f.get("arguments"))
                        .and_then(Value::as_str)
                    {
                        self.text(TextChannel::ToolArguments, ti, a);
                    }
                }
            }
        }
    }

    fn on_responses(&mut self, v: &Value, event: Option<&str>) {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or_default();
        let out_idx = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            // The Realtime API's text and transcript deltas (beta and GA names) read as output text.
            "response.output_text.delta"
            | "response.text.delta"
            | "response.audio_transcript.delta"
            | "response.output_audio_transcript.delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_str) {
                    self.text(TextChannel::Content, out_idx, d);
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_str) {
                    self.text(TextChannel::ToolArguments, out_idx, d);
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_str) {
                    self.text(TextChannel::Reasoning, out_idx, d);
                }
            }
            "response.refusal.delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_str) {
                    self.text(TextChannel::Refusal, out_idx, d);
                }
            }
            "response.created" | "response.in_progress" => {
                self.set_model(v.get("response").and_then(|r| r.get("model")));
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.terminal = true;
                let r = v.get("response");
                self.set_model(r.and_then(|r| r.get("model")));
                if let Some(err) = r.and_then(|r| r.get("error")).filter(|e| e.is_object()) {
                    self.set_error(err);
                }
            }
            "error" => {
                // A terminal event (wire-formats.md §3): the provider ended the stream on purpose.
                self.terminal = true;
                self.set_error(v.get("error").filter(|e| e.is_object()).unwrap_or(v));
            }
            "" => {
                // A whole (non-streamed) response object.
                if let Some(err) = v.get("error").filter(|e| e.is_object()) {
                    self.set_error(err);
                }
                self.set_model(v.get("model"));
                if let Some(items) = v.get("output").and_then(Value::as_array) {
                    for (i, item) in items.iter().enumerate() {
                        let i = i as u64;
                        match item.get("type").and_then(Value::as_str) {
                            Some("message") => {
                                for part in item
                                    .get("content")
                                    .and_then(Value::as_array)
                                    .into_iter()
                                    .flatten()
                                {
                                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                                        self.text(TextChannel::Content, i, t);
                                    }
                                    if let Some(t) = part.get("refusal").and_then(Value::as_str) {
                                        self.text(TextChannel::Refusal, i, t);
                                    }
                                }
                            }
                            Some("function_call") => {
                                if let Some(a) = item.get("arguments").and_then(Value::as_str) {
                                    self.text(TextChannel::ToolArguments, i, a);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_anthropic(&mut self, v: &Value, event: Option<&str>) {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or_default();
        match kind {
            "message_start" => self.set_model(v.get("message").and_then(|m| m.get("model"))),
            "content_block_start" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(b) = v.get("content_block") {
                    self.anthropic_block(idx, b);
                }
            }
            "content_block_delta" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some(d) = v.get("delta") else { return };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(t) = d.get("text").and_then(Value::as_str) {
                            self.text(TextChannel::Content, idx, t);
                        }
                    }
                    Some("input_json_delta") => {
                        if let Some(t) = d.get("partial_json").and_then(Value::as_str) {
                            self.text(TextChannel::ToolArguments, idx, t);
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d.get("thinking").and_then(Value::as_str) {
                            self.text(TextChannel::Reasoning, idx, t);
                        }
                    }
                    _ => {}
                }
            }
            "message_stop" => self.terminal = true,
            "error" => self.set_error(v.get("error").unwrap_or(v)),
            "message" => {
                // A whole (non-streamed) message.
                self.set_model(v.get("model"));
                for (i, b) in v
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    self.anthropic_block(i as u64, b);
                }
            }
            _ => {}
        }
    }

    fn anthropic_block(&mut self, idx: u64, b: &Value) {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = b.get("text").and_then(Value::as_str) {
                    self.text(TextChannel::Content, idx, t);
                }
            }
            Some("thinking") => {
                if let Some(t) = b.get("thinking").and_then(Value::as_str) {
                    self.text(TextChannel::Reasoning, idx, t);
                }
            }
            Some("tool_use") | Some("server_tool_use") => {
                // Streams start tool_use blocks with an empty input and send it as input_json_delta.
                if let Some(input) = b
                    .get("input")
                    .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                {
                    let s = input.to_string();
                    self.text(TextChannel::ToolArguments, idx, &s);
                }
            }
            _ => {}
        }
    }

    fn on_ollama(&mut self, v: &Value) {
        let line = super::ollama::read_line(v);
        if line.error {
            self.error = Some("ollama_error".into());
            return;
        }
        self.set_model(v.get("model"));
        if let Some(t) = line.thinking {
            self.text(TextChannel::Reasoning, 0, t);
        }
        if let Some(t) = line.content {
            self.text(TextChannel::Content, 0, t);
        }
        for a in &line.tool_arguments {
            self.text(TextChannel::ToolArguments, 0, a);
        }
        if line.done {
            self.terminal = true;
        }
    }

    fn on_gemini(&mut self, v: &Value) {
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            self.set_error(err);
            return;
        }
        self.set_model(v.get("modelVersion"));
        for (pos, c) in v
            .get("candidates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            for part in c
                .get("content")
                .and_then(|ct| ct.get("parts"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    let thought = part
                        .get("thought")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let ch = if thought {
                        TextChannel::Reasoning
                    } else {
                        TextChannel::Content
                    };
                    self.text(ch, idx, t);
                }
                if let Some(args) = part.get("functionCall").and_then(|f| f.get("args")) {
                    let s = args.to_string();
                    self.text(TextChannel::ToolArguments, idx, &s);
                }
            }
            if c.get("finishReason")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty())
            {
                self.terminal = true;
            }
        }
        // Embeddings and token counts are complete documents.
        if v.get("embedding").is_some()
            || v.get("embeddings").is_some()
            || v.get("totalTokens").is_some()
        {
            self.terminal = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        api: ApiKind,
        op: &str,
        framing: Framing,
        body: &[u8],
        split: usize,
    ) -> ResponseSummary {
        let mut p = ResponseParser::new(api, op, framing, None);
        for part in body.chunks(split.max(1)) {
            p.feed(part);
        }
        p.finish()
    }

    #[test]
    fn ollama_ndjson_streams_are_metered_from_the_last_line() {
        let body = concat!(
            "{\"model\":\"llama3.2\",\"created_at\":\"2026-12-01T12:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2026-12-01T12:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2026-12-01T12:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1,\"prompt_eval_count\":26,\"eval_count\":298}\n"
        );
        let framing = Framing::from_content_type(Some("application/x-ndjson"), false);
        assert_eq!(framing, Framing::JsonArray);
        for split in [1, 13, body.len()] {
            let sum = parse(ApiKind::Ollama, "chat", framing, body.as_bytes(), split);
            let u = sum.usage.unwrap();
            assert_eq!((u.input_tokens, u.output_tokens), (26, 298));
            assert_eq!(sum.model.as_deref(), Some("llama3.2"));
            assert!(sum.terminal);
            assert_eq!(sum.output_text_bytes, 5);
        }
        let cut = &body.as_bytes()[..body.find("\"done\":true").unwrap()];
        assert!(!parse(ApiKind::Ollama, "chat", framing, cut, 9).terminal);
    }

    #[test]
    fn code_assist_streams_are_read_inside_their_envelope() {
        let frame = |text: &str, finish: Option<&str>, out: u64| {
            let mut cand =
                serde_json::json!({"content":{"role":"model","parts":[{"text":text}]},"index":0});
            if let Some(f) = finish {
                cand["finishReason"] = f.into();
            }
            format!(
                "data: {}\r\n\r\n",
                serde_json::json!({"response":{"candidates":[cand],
                    "usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":out,"thoughtsTokenCount":5,"totalTokenCount":17 + out},
                    "modelVersion":"gemini-2.5-pro"},"traceId":"abc"})
            )
        };
        let body = format!(
            "{}{}",
            frame("Hello", None, 1),
            frame(" there", Some("STOP"), 2)
        );
        for split in [1, 7, body.len()] {
            let sum = parse(
                ApiKind::CodeAssist,
                "stream_generate_content",
                Framing::Sse,
                body.as_bytes(),
                split,
            );
            let u = sum.usage.unwrap();
            assert_eq!(
                (u.input_tokens, u.output_tokens, u.reasoning_tokens),
                (12, 7, 5)
            );
            assert_eq!(sum.model.as_deref(), Some("gemini-2.5-pro"));
            assert!(sum.terminal);
            assert_eq!(sum.output_text_bytes, 11);
        }
        let err = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        let sum = parse(
            ApiKind::CodeAssist,
            "generate_content",
            Framing::Json,
            err,
            5,
        );
        assert_eq!(sum.error.as_deref(), Some("RESOURCE_EXHAUSTED/429"));
    }

    #[test]
    fn a_whole_body_copy_takes_from_the_shared_budget_and_gives_it_back() {
        let body =
            br#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let budget = BodyBudget::new(64 << 10);
        let mut p = ResponseParser::new(ApiKind::Openai, "chat_completions", Framing::Json, None)
            .with_budget(budget.clone());
        p.feed(body);
        assert_eq!(budget.in_use(), 1024, "the copy is accounted while held");
        let sum = p.finish();
        assert_eq!(sum.usage.map(|u| u.output_tokens), Some(4));
        assert_eq!(budget.in_use(), 0);
        // A spent budget: the body is not kept, and the summary says why.
        let tiny = BodyBudget::new(1024);
        let mut hold = BodyPermit::none();
        assert!(tiny.take(&mut hold, 1024));
        let mut p = ResponseParser::new(ApiKind::Openai, "chat_completions", Framing::Json, None)
            .with_budget(tiny.clone());
        p.feed(body);
        let sum = p.finish();
        assert_eq!(sum.usage, None);
        assert!(sum.unreadable.unwrap().contains("limits.max_buffered_mib"));
        drop(hold);
        assert_eq!(tiny.in_use(), 0);
    }

    #[test]
    fn openai_tool_call_arguments_are_concatenated_per_index() {
        let s = b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n\
data: [DONE]\n\n";
        let mut p = ResponseParser::new(ApiKind::Openai, "chat_completions", Framing::Sse, None)
            .with_text_deltas();
        let mut deltas = Vec::new();
        for part in s.chunks(7) {
            p.feed(part);
            deltas.extend(p.take_text_deltas());
        }
        let sum = p.finish();
        assert!(sum.terminal);
        assert_eq!(sum.model.as_deref(), Some("gpt-4o"));
        let args: String = deltas
            .iter()
            .filter(|d| d.channel == TextChannel::ToolArguments)
            .map(|d| d.text.as_str())
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(
            deltas.iter().map(|d| d.offset).collect::<Vec<_>>(),
            vec![0, 4]
        );
    }

    #[test]
    fn stream_without_terminator_is_not_terminal_and_errors_are_kept() {
        let cut = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let s = parse(ApiKind::Openai, "chat_completions", Framing::Sse, cut, 5);
        assert!(!s.terminal);
        assert_eq!(s.output_text_bytes, 3);
        let err = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let s = parse(ApiKind::Anthropic, "messages", Framing::Sse, err, 4);
        assert_eq!(s.error.as_deref(), Some("overloaded_error"));
        assert!(!s.terminal);
    }

    #[test]
    fn gzip_json_is_decoded_for_reading() {
        use std::io::Write;
        let body = br#"{"id":"x","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body).unwrap();
        let gz = e.finish().unwrap();
        let mut p = ResponseParser::new(
            ApiKind::Openai,
            "chat_completions",
            Framing::Json,
            Some("gzip"),
        );
        for part in gz.chunks(9) {
            p.feed(part);
        }
        let s = p.finish();
        assert_eq!(s.usage, Some(Usage::plain(3, 1)));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert!(s.terminal && s.unreadable.is_none());
    }

    #[test]
    fn garbage_never_panics_and_is_reported() {
        let s = parse(
            ApiKind::Gemini,
            "generate_content",
            Framing::Json,
            b"\xff\xfe{{{",
            2,
        );
        assert!(s.unreadable.is_some() && s.usage.is_none());
        let mut p = ResponseParser::new(
            ApiKind::Openai,
            "chat_completions",
            Framing::Json,
            Some("gzip"),
        );
        p.feed(b"definitely not gzip");
        assert!(p.finish().unreadable.unwrap().contains("gzip"));
    }
}
