//! What the mock's WebSocket server says. Responses WebSocket mode: each `response.create` is answered
//! with exactly the events `POST /v1/responses` would stream (the same [`crate::openai`] code makes
//! them), one JSON text message per event, `response.completed` carrying the usage; a create with
//! `"generate": false` (a warm-up) gets `response.created` and a `response.completed` with no output
//! and zero output tokens; a refused create gets `{"type":"error","status":…,"error":{…}}`. Realtime:
//! `session.created` on connect, `conversation.item.added` for items, and for `response.create` a text
//! response ending in `response.done` with Realtime's usage object (`input_token_details`, …); input
//! tokens count the whole conversation so far, as Realtime bills. Pure functions of the messages.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::Kind;
use crate::openai::{self, Endpoint};
use crate::reply::{Call, Flavor, Opts, Provider, ReplyBody};
use crate::text;

/// One socket's conversation state.
pub struct Conversation {
    kind: Kind,
    flavor: Flavor,
    path: String,
    headers: HeaderMap,
    opts: Opts,
    /// Realtime: the session's model.
    model: String,
    /// Realtime: the instructions set by `session.update`.
    instructions_words: u64,
    /// Realtime: words in the conversation so far (items and answers).
    conversation_words: u64,
}

fn event(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn error_event(status: u16, code: &str, message: &str) -> Vec<u8> {
    event(&json!({
        "type": "error",
        "status": status,
        "error": {"type": "invalid_request_error", "code": code, "message": message, "param": null},
    }))
}

impl Conversation {
    /// A new conversation on a socket opened at `path?query` with `headers`.
    pub fn new(
        kind: Kind,
        flavor: Flavor,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        opts: Opts,
    ) -> Self {
        let model = crate::reply::query_param(query, "model")
            .unwrap_or("gpt-realtime")
            .to_string();
        Conversation {
            kind,
            flavor,
            path: path.to_string(),
            headers: headers.clone(),
            opts,
            model,
            instructions_words: 0,
            conversation_words: 0,
        }
    }

    /// What the server sends as soon as the socket opens.
    pub fn opening(&mut self, id: &str) -> Vec<Vec<u8>> {
        match self.kind {
            Kind::Responses => Vec::new(),
            Kind::Realtime => vec![event(&json!({
                "type": "session.created",
                "event_id": format!("event_mock{id}"),
                "session": self.session(id),
            }))],
        }
    }

    fn session(&self, id: &str) -> Value {
        json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": format!("sess_mock{id}"),
            "model": self.model,
            "output_modalities": ["text"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
        })
    }

    /// The events answering one client text message.
    pub fn answer(&mut self, body: &[u8], id: &str) -> Vec<Vec<u8>> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return vec![error_event(
                400,
                "invalid_json",
                "The message is not valid JSON.",
            )];
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        match (self.kind, kind) {
            (Kind::Responses, "response.create") => self.responses_create(v, id),
            // Codex acknowledges responses it processed; nothing to answer.
            (Kind::Responses, "response.processed") => Vec::new(),
            (Kind::Realtime, "session.update") => self.session_update(&v, id),
            (Kind::Realtime, "conversation.item.create") => self.item_create(&v, id),
            (Kind::Realtime, "response.create") => self.realtime_response(&v, id),
            (Kind::Realtime, t) if t.starts_with("input_audio_buffer.") => Vec::new(),
            _ => vec![error_event(
                400,
                "unknown_event_type",
                &format!("Unknown event type '{kind}'."),
            )],
        }
    }

    fn responses_create(&mut self, mut v: Value, id: &str) -> Vec<Vec<u8>> {
        let warmup = v.get("generate").and_then(Value::as_bool) == Some(false);
        if let Some(o) = v.as_object_mut() {
            o.remove("type");
            o.remove("generate");
            o.insert("stream".into(), json!(true));
        }
        let body = Bytes::from(v.to_string());
        let call = Call {
            provider: Provider::OpenAi,
            flavor: self.flavor,
            method: &Method::POST,
            path: &self.path,
            query: None,
            headers: &self.headers,
            body: &body,
            opts: self.opts,
            id,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let target = openai::Target {
            endpoint: Endpoint::Responses,
            deployment: None,
        };
        let reply = openai::handle(&target, &call);
        let frames = match reply.body {
            ReplyBody::Stream { frames, .. } if reply.status == StatusCode::OK => frames,
            ReplyBody::Full(b) | ReplyBody::Stream { error_frame: b, .. } => {
                let err = serde_json::from_slice::<Value>(&b)
                    .ok()
                    .and_then(|e| e.get("error").cloned())
                    .unwrap_or(json!({"type": "server_error", "message": "error"}));
                return vec![event(&json!({
                    "type": "error",
                    "status": reply.status.as_u16(),
                    "error": err,
                }))];
            }
        };
        let events: Vec<Value> = frames
            .iter()
            .filter_map(|f| {
                let text = std::str::from_utf8(f).ok()?;
                let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
                serde_json::from_str::<Value>(data).ok()
            })
            .collect();
        if !warmup {
            return events.iter().map(event).collect();
        }
        // A warm-up: the response is created and completed with nothing generated.
        let (Some(created), Some(mut done)) = (events.first().cloned(), events.last().cloned())
        else {
            return Vec::new();
        };
        if let Some(r) = done.get_mut("response") {
            r["output"] = json!([]);
            r["status"] = json!("completed");
            r["incomplete_details"] = Value::Null;
            let input = r
                .pointer("/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let cached = r
                .pointer("/usage/input_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            r["usage"] = json!({
                "input_tokens": input,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input,
            });
        }
        done["type"] = json!("response.completed");
        done["sequence_number"] = json!(1);
        vec![event(&created), event(&done)]
    }

    fn session_update(&mut self, v: &Value, id: &str) -> Vec<Vec<u8>> {
        if let Some(i) = v.pointer("/session/instructions").and_then(Value::as_str) {
            self.instructions_words = text::words(i);
        }
        let mut session = self.session(id);
        if let (Some(s), Some(i)) = (session.as_object_mut(), v.pointer("/session/instructions")) {
            s.insert("instructions".into(), i.clone());
        }
        vec![event(&json!({
            "type": "session.updated",
            "event_id": format!("event_mock{id}"),
            "session": session,
        }))]
    }

    fn item_create(&mut self, v: &Value, id: &str) -> Vec<Vec<u8>> {
        let item = v.get("item").cloned().unwrap_or(Value::Null);
        self.conversation_words += text::content_words(item.get("content"));
        let mut item = item;
        if let Some(o) = item.as_object_mut() {
            o.entry("id").or_insert(json!(format!("item_mock{id}")));
            o.insert("object".into(), json!("realtime.item"));
            o.insert("status".into(), json!("completed"));
        }
        vec![event(&json!({
            "type": "conversation.item.added",
            "event_id": format!("event_mock{id}"),
            "previous_item_id": null,
            "item": item,
        }))]
    }

    fn realtime_response(&mut self, v: &Value, id: &str) -> Vec<Vec<u8>> {
        let max = v
            .pointer("/response/max_output_tokens")
            .and_then(Value::as_u64);
        let (answer, words, truncated) = text::plan(&self.model, self.opts.output_words, max);
        let input = self.instructions_words + self.conversation_words;
        let cached = self.opts.cached_tokens.min(input);
        self.conversation_words += words;
        let resp_id = format!("resp_mock{id}");
        let item_id = format!("item_mock{id}");
        let ev = |n: u32| format!("event_mock{id}{n:03}");
        let status = if truncated { "incomplete" } else { "completed" };
        let item = |status: &str, text: &str| {
            json!({"id": item_id, "object": "realtime.item", "type": "message", "status": status,
                   "role": "assistant", "content": [{"type": "output_text", "text": text}]})
        };
        let mut out = vec![event(&json!({
            "type": "response.created", "event_id": ev(0),
            "response": {"object": "realtime.response", "id": resp_id, "status": "in_progress",
                         "output": [], "usage": null},
        }))];
        out.push(event(&json!({
            "type": "response.output_item.added", "event_id": ev(1), "response_id": resp_id,
            "output_index": 0, "item": item("in_progress", ""),
        })));
        for (n, chunk) in text::chunks(&answer).into_iter().enumerate() {
            out.push(event(&json!({
                "type": "response.output_text.delta", "event_id": ev(10 + n as u32),
                "response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0,
                "delta": chunk,
            })));
        }
        out.push(event(&json!({
            "type": "response.output_text.done", "event_id": ev(2), "response_id": resp_id,
            "item_id": item_id, "output_index": 0, "content_index": 0, "text": answer,
        })));
        out.push(event(&json!({
            "type": "response.output_item.done", "event_id": ev(3), "response_id": resp_id,
            "output_index": 0, "item": item(status, &answer),
        })));
        out.push(event(&json!({
            "type": "response.done", "event_id": ev(4),
            "response": {
                "object": "realtime.response", "id": resp_id, "status": status,
                "status_details": (if truncated { json!({"type": "incomplete", "reason": "max_output_tokens"}) } else { Value::Null }),
                "output": [item(status, &answer)],
                "usage": {
                    "total_tokens": input + words,
                    "input_tokens": input,
                    "output_tokens": words,
                    "input_token_details": {
                        "text_tokens": input, "audio_tokens": 0, "image_tokens": 0,
                        "cached_tokens": cached,
                        "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0, "image_tokens": 0},
                    },
                    "output_token_details": {"text_tokens": words, "audio_tokens": 0},
                },
            },
        })));
        out
    }
}
