//! The Anthropic Messages API as served by `api.anthropic.com`: `/v1/messages` (message object and the
//! `message_start` … `message_stop` event stream, text or `tool_use`), `/v1/messages/count_tokens`
//! and the model list, with Anthropic's auth and `anthropic-version` rules. It builds bodies and
//! frames only; faults, pacing and transport are the server's business.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::j;
use crate::json::J;
use crate::reply::{
    bad_request, bearer, check_key, error, flag, parse_body, sse_event, str_field, Call, ErrorKind,
    Provider, Reply, SSE_UTF8,
};
use crate::text::{self, ToolCall};

/// An Anthropic endpoint the mock serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `GET /v1/models`
    Models,
}

const MODELS: &[(&str, &str, &str)] = &[
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
];

static MODEL_LIST: LazyLock<Bytes> = LazyLock::new(|| {
    let data: Vec<J> = MODELS
        .iter()
        .map(|(id, name, created)| {
            j!({"type": "model", "id": (*id), "display_name": (*name), "created_at": (*created)})
        })
        .collect();
    j!({
        "data": data,
        "has_more": false,
        "first_id": (MODELS[0].0),
        "last_id": (MODELS[MODELS.len() - 1].0),
    })
    .to_bytes()
});

/// The endpoint for `method` and `path`, if the mock serves it.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    match (method, path) {
        (&Method::POST, "/v1/messages") => Some(Endpoint::Messages),
        (&Method::POST, "/v1/messages/count_tokens") => Some(Endpoint::CountTokens),
        (&Method::GET, "/v1/models") => Some(Endpoint::Models),
        _ => None,
    }
}

/// Anthropic's 404.
pub fn not_found(call: &Call<'_>) -> Reply {
    error(Provider::Anthropic, ErrorKind::NotFound, None, call.id)
}

/// Checks `x-api-key` (or `Authorization: Bearer`) and the required `anthropic-version` header.
pub fn authenticate(call: &Call<'_>) -> Result<(), Reply> {
    let key = call
        .header("x-api-key")
        .filter(|k| !k.trim().is_empty())
        .or_else(|| bearer(call.headers));
    check_key(key).map_err(|kind| error(Provider::Anthropic, kind, None, call.id))?;
    if call
        .header("anthropic-version")
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(bad_request(call, "anthropic-version: header is required"));
    }
    Ok(())
}

/// Answers a request for `endpoint`.
pub fn handle(endpoint: &Endpoint, call: &Call<'_>) -> Reply {
    match endpoint {
        Endpoint::Messages => messages(call, false),
        Endpoint::CountTokens => messages(call, true),
        Endpoint::Models => Reply::bytes(StatusCode::OK, crate::reply::JSON, MODEL_LIST.clone()),
    }
}

fn first_tool(req: &Value) -> Option<ToolCall> {
    req.get("tools")?.as_array()?.iter().find_map(|t| {
        let name = t.get("name")?.as_str()?;
        Some(ToolCall::new(name, t.get("input_schema")))
    })
}

fn messages(call: &Call<'_>, count_only: bool) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = str_field(&req, "model") else {
        return bad_request(call, "model: Field required");
    };
    if !req.get("messages").is_some_and(Value::is_array) {
        return bad_request(call, "messages: Field required");
    }
    let input = text::content_words(req.get("system")) + text::messages_words(req.get("messages"));
    if count_only {
        return Reply::json(StatusCode::OK, &j!({ "input_tokens": input }));
    }
    let Some(max_tokens) = req.get("max_tokens").and_then(Value::as_u64) else {
        return bad_request(call, "max_tokens: Field required");
    };
    // The request's words are split between cache reads, 5-minute writes, 1-hour writes and
    // uncached input, in that order, each clamped to what is left: input_tokens excludes reads and
    // writes.
    let cached = call.opts.cached_tokens.min(input);
    let write_5m = call.opts.cache_write_tokens.min(input - cached);
    let write_1h = call
        .opts
        .cache_write_1h_tokens
        .min(input - cached - write_5m);
    let written = write_5m + write_1h;
    let uncached = input - cached - written;
    let tool = if call.opts.tool_call {
        first_tool(&req)
    } else {
        None
    };
    let (answer, words, truncated) = call.plan(model, Some(max_tokens));
    let (stop_reason, output) = match &tool {
        Some(t) => ("tool_use", t.tokens()),
        None if truncated => ("max_tokens", words),
        None => ("end_turn", words),
    };
    let id = format!("msg_01mock{}", call.id);
    let tool_id = format!("toolu_01mock{}", call.id);
    let usage = |output: u64| -> J {
        j!({
            "input_tokens": uncached,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
            "output_tokens": output,
            "service_tier": "standard",
        })
    };
    let message = |content: Vec<J>, stop: J, usage: J| -> J {
        j!({
            "id": (id.clone()),
            "type": "message",
            "role": "assistant",
            "model": (model.to_owned()),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": usage,
        })
    };

    if !flag(&req, "stream") {
        let block = match &tool {
            Some(t) => {
                j!({"type": "tool_use", "id": tool_id, "name": (t.name.clone()), "input": (t.args.clone())})
            }
            None => j!({"type": "text", "text": answer}),
        };
        let body = message(vec![block], J::from(stop_reason), usage(output));
        return Reply::json(StatusCode::OK, &body);
    }

    let mut frames = Vec::new();
    frames.push(sse_event(
        "message_start",
        &j!({"type": "message_start", "message": (message(Vec::new(), J::Null, usage(1)))}),
    ));
    let start_block = match &tool {
        Some(t) => j!({"type": "tool_use", "id": tool_id, "name": (t.name.clone()), "input": {}}),
        None => j!({"type": "text", "text": ""}),
    };
    frames.push(sse_event(
        "content_block_start",
        &j!({"type": "content_block_start", "index": 0u64, "content_block": start_block}),
    ));
    frames.push(sse_event("ping", &j!({"type": "ping"})));
    let deltas: Vec<J> = match &tool {
        Some(t) => t
            .fragments()
            .into_iter()
            .map(|f| j!({"type": "input_json_delta", "partial_json": (f.to_owned())}))
            .collect(),
        None => call
            .chunks(&answer)
            .into_iter()
            .map(|w| j!({"type": "text_delta", "text": (w.to_owned())}))
            .collect(),
    };
    for delta in deltas {
        frames.push(sse_event(
            "content_block_delta",
            &j!({"type": "content_block_delta", "index": 0u64, "delta": delta}),
        ));
    }
    frames.push(sse_event(
        "content_block_stop",
        &j!({"type": "content_block_stop", "index": 0u64}),
    ));
    // Newer API versions repeat the (cumulative) input and cache counts in message_delta.
    let delta_usage = if call.opts.anthropic_delta_full {
        j!({
            "input_tokens": uncached,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
            "output_tokens": output,
        })
    } else {
        j!({ "output_tokens": output })
    };
    frames.push(sse_event(
        "message_delta",
        &j!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": delta_usage,
        }),
    ));
    frames.push(sse_event("message_stop", &j!({"type": "message_stop"})));
    let error_frame = sse_event(
        "error",
        &j!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    Reply::stream(SSE_UTF8, frames, error_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/v1/messages"),
            Some(Endpoint::Messages)
        );
        assert_eq!(
            route(&Method::POST, "/v1/messages/count_tokens"),
            Some(Endpoint::CountTokens)
        );
        assert_eq!(route(&Method::POST, "/v1/complete"), None);
    }
}
