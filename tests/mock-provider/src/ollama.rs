//! Ollama's native API as a local Ollama serves it on `127.0.0.1:11434` (Ollama `docs/api.md`):
//! `POST /api/chat` and `POST /api/generate`, streamed by default as NDJSON (`application/x-ndjson`,
//! one JSON object a line, the last with `"done": true`, `prompt_eval_count` and `eval_count`), or one
//! JSON object with `"stream": false`; errors are `{"error": "text"}`. No key is needed. Served on a
//! loopback host (the mock's plain listener) under `/api/`. Content and token counts follow `text.rs`.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::reply::{Call, Reply, ReplyBody};
use crate::text;

/// An Ollama endpoint the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/chat`
    Chat,
    /// `POST /api/generate`
    Generate,
}

/// `application/x-ndjson`, Ollama's stream content type.
pub const NDJSON: &str = "application/x-ndjson";

/// The endpoint for `method` and `path`, if the mock serves it.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    match (method, path) {
        (&Method::POST, "/api/chat") => Some(Endpoint::Chat),
        (&Method::POST, "/api/generate") => Some(Endpoint::Generate),
        _ => None,
    }
}

fn error(status: StatusCode, message: &str) -> Reply {
    Reply::bytes(
        status,
        crate::reply::JSON,
        Bytes::from(json!({ "error": message }).to_string()),
    )
}

/// Ollama's 404 for a path it does not serve (a plain-text body, as Ollama's router answers).
pub fn not_found() -> Reply {
    Reply::bytes(
        StatusCode::NOT_FOUND,
        "text/plain",
        Bytes::from_static(b"404 page not found"),
    )
}

/// Answers a request for `endpoint`.
pub fn handle(endpoint: Endpoint, call: &Call<'_>) -> Reply {
    let Ok(req) = serde_json::from_slice::<Value>(call.body) else {
        return error(StatusCode::BAD_REQUEST, "invalid character in request body");
    };
    let Some(model) = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "model is required");
    };
    let prompt = match endpoint {
        Endpoint::Chat => text::messages_words(req.get("messages")),
        Endpoint::Generate => {
            text::content_words(req.get("prompt")) + text::content_words(req.get("system"))
        }
    };
    let max = req
        .get("options")
        .and_then(|o| o.get("num_predict"))
        .and_then(Value::as_u64);
    let (answer, words, truncated) = call.plan(model, max);
    let created = "2026-12-01T12:00:00.000000Z";
    let piece = |t: &str| match endpoint {
        Endpoint::Chat => json!({"model": model, "created_at": created,
                                  "message": {"role": "assistant", "content": t}, "done": false}),
        Endpoint::Generate => {
            json!({"model": model, "created_at": created, "response": t, "done": false})
        }
    };
    let mut last = piece("");
    last["done"] = true.into();
    last["done_reason"] = (if truncated { "length" } else { "stop" }).into();
    for (k, v) in [
        ("total_duration", 4_883_583_458u64),
        ("load_duration", 1_334_875),
        ("prompt_eval_count", prompt),
        ("prompt_eval_duration", 342_546_000),
        ("eval_count", words),
        ("eval_duration", 4_535_599_000),
    ] {
        last[k] = v.into();
    }
    if endpoint == Endpoint::Generate {
        last["context"] = json!([1, 2, 3]);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(false) {
        let mut whole = last;
        match endpoint {
            Endpoint::Chat => whole["message"]["content"] = answer.clone().into(),
            Endpoint::Generate => whole["response"] = answer.clone().into(),
        }
        return Reply::bytes(
            StatusCode::OK,
            crate::reply::JSON,
            Bytes::from(whole.to_string()),
        );
    }
    let line = |v: &Value| Bytes::from(format!("{v}\n"));
    let mut frames: Vec<Bytes> = call
        .chunks(&answer)
        .into_iter()
        .map(|w| line(&piece(w)))
        .collect();
    frames.push(line(&last));
    Reply {
        status: StatusCode::OK,
        content_type: NDJSON,
        headers: Vec::new(),
        body: ReplyBody::Stream {
            frames,
            error_frame: line(
                &json!({"error": "an error was encountered while running the model"}),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::POST, "/api/chat"), Some(Endpoint::Chat));
        assert_eq!(
            route(&Method::POST, "/api/generate"),
            Some(Endpoint::Generate)
        );
        assert_eq!(route(&Method::GET, "/api/chat"), None);
    }
}
