//! The OpenAI API as served by `api.openai.com`: Chat Completions (plain, streamed with and without
//! `stream_options.include_usage`, tool calls), Responses (object and event stream), Embeddings
//! (float and base64), legacy Completions and the model list. It builds bodies and frames in
//! OpenAI's exact shapes; faults, pacing and transport are the server's business.

use std::sync::LazyLock;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::j;
use crate::json::J;
use crate::reply::{
    bad_request, bearer, check_key, cut_point, error, flag, parse_body, sse_data, sse_event,
    str_field, Call, ErrorKind, Provider, Reply, SSE_UTF8,
};
use crate::text::{self, ToolCall};

/// An OpenAI endpoint the mock serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/completions`
    Completions,
    /// `GET /v1/models`
    Models,
    /// `GET /v1/models/{id}`
    Model(String),
}

/// Default dimensions of mock embeddings.
pub const EMBEDDING_DIMS: usize = 8;
/// Largest `dimensions` accepted.
const MAX_DIMS: u64 = 4096;

const MODELS: &[(&str, u64)] = &[
    ("gpt-4o", 1_715_367_049),
    ("gpt-4o-mini", 1_721_172_741),
    ("gpt-4.1", 1_744_316_542),
    ("gpt-5", 1_754_425_777),
    ("o3-mini", 1_737_146_383),
    ("gpt-3.5-turbo-instruct", 1_692_901_427),
    ("text-embedding-3-small", 1_705_948_997),
    ("text-embedding-3-large", 1_705_953_180),
];

static MODEL_LIST: LazyLock<Bytes> = LazyLock::new(|| {
    let data: Vec<J> = MODELS
        .iter()
        .map(|(id, created)| model_object(id, *created))
        .collect();
    j!({"object": "list", "data": data}).to_bytes()
});

fn model_object(id: &str, created: u64) -> J {
    j!({"id": (id.to_owned()), "object": "model", "created": created, "owned_by": "system"})
}

/// The endpoint for `method` and `path`, if the mock serves it.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Some(Endpoint::Chat),
        (&Method::POST, "/v1/responses") => Some(Endpoint::Responses),
        (&Method::POST, "/v1/embeddings") => Some(Endpoint::Embeddings),
        (&Method::POST, "/v1/completions") => Some(Endpoint::Completions),
        (&Method::GET, "/v1/models") => Some(Endpoint::Models),
        (&Method::GET, p) => p
            .strip_prefix("/v1/models/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(|id| Endpoint::Model(id.to_owned())),
        _ => None,
    }
}

/// OpenAI's 404 for a path it does not serve.
pub fn not_found(call: &Call<'_>) -> Reply {
    let msg = format!("Invalid URL ({} {})", call.method, call.path);
    error(Provider::OpenAi, ErrorKind::NotFound, Some(&msg), call.id)
}

/// Checks `Authorization: Bearer`.
pub fn authenticate(call: &Call<'_>) -> Result<(), Reply> {
    let key = bearer(call.headers);
    check_key(key).map_err(|kind| {
        let msg = (kind == ErrorKind::InvalidKey).then(|| {
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask(key.unwrap_or_default())
            )
        });
        error(Provider::OpenAi, kind, msg.as_deref(), call.id)
    })
}

fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// Answers a request for `endpoint`.
pub fn handle(endpoint: &Endpoint, call: &Call<'_>) -> Reply {
    match endpoint {
        Endpoint::Chat => chat(call),
        Endpoint::Responses => responses(call),
        Endpoint::Embeddings => embeddings(call),
        Endpoint::Completions => completions(call),
        Endpoint::Models => Reply::bytes(StatusCode::OK, crate::reply::JSON, MODEL_LIST.clone()),
        Endpoint::Model(id) => Reply::json(StatusCode::OK, &model_object(id, 1_715_367_049)),
    }
}

fn stream_error_frame() -> Bytes {
    sse_data(&j!({"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": null,
        "code": null,
    }}))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

fn chat_usage(input: u64, cached: u64, output: u64) -> J {
    j!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": (input + output),
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0u64},
        "completion_tokens_details": {
            "reasoning_tokens": 0u64,
            "audio_tokens": 0u64,
            "accepted_prediction_tokens": 0u64,
            "rejected_prediction_tokens": 0u64,
        },
    })
}

/// `stream` and `include_usage` of a request, or the 400 for `stream_options` without `stream`.
fn stream_flags(call: &Call<'_>, req: &Value) -> Result<(bool, bool), Reply> {
    let stream = flag(req, "stream");
    let options = req.get("stream_options").filter(|v| !v.is_null());
    if options.is_some() && !stream {
        return Err(bad_request(
            call,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    let include_usage = options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((stream, include_usage))
}

fn first_chat_tool(req: &Value) -> Option<ToolCall> {
    req.get("tools")?.as_array()?.iter().find_map(|t| {
        let f = t.get("function")?;
        let name = f.get("name")?.as_str()?;
        Some(ToolCall::new(name, f.get("parameters")))
    })
}

fn chat(call: &Call<'_>) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = str_field(&req, "model") else {
        return bad_request(call, "you must provide a model parameter");
    };
    if !req.get("messages").is_some_and(Value::is_array) {
        return bad_request(call, "Missing required parameter: 'messages'.");
    }
    let (stream, include_usage) = match stream_flags(call, &req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = text::messages_words(req.get("messages"));
    let cached = call.opts.cached_tokens.min(input);
    let max = req
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64));
    let tool = if call.opts.tool_call {
        first_chat_tool(&req)
    } else {
        None
    };
    let (answer, words, truncated) = text::plan(model, call.opts.output_words, max);
    let id = format!("chatcmpl-mock{}", call.id);
    let call_id = format!("call_mock{}", call.id);
    let (finish, output) = match &tool {
        Some(t) => ("tool_calls", t.tokens()),
        None if truncated => ("length", words),
        None => ("stop", words),
    };
    let usage = chat_usage(input, cached, output);

    if !stream {
        let message = match &tool {
            Some(t) => j!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": call_id,
                    "type": "function",
                    "function": {"name": (t.name.clone()), "arguments": (t.args_text.clone())},
                }],
                "refusal": null,
                "annotations": [],
            }),
            None => {
                j!({"role": "assistant", "content": answer, "refusal": null, "annotations": []})
            }
        };
        let body = j!({
            "id": id,
            "object": "chat.completion",
            "created": (call.created),
            "model": (model.to_owned()),
            "choices": [{"index": 0u64, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        });
        return Reply::json(StatusCode::OK, &body);
    }

    let chunk = |choices: J, usage: Option<J>| -> Bytes {
        let mut c = j!({
            "id": (id.clone()),
            "object": "chat.completion.chunk",
            "created": (call.created),
            "model": (model.to_owned()),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if include_usage {
            c.set("usage", usage);
        }
        sse_data(&c)
    };
    let choice = |delta: J, finish: Option<&'static str>| -> J {
        j!([{"index": 0u64, "delta": delta, "logprobs": null, "finish_reason": finish}])
    };
    let mut frames = Vec::new();
    match &tool {
        Some(t) => {
            frames.push(chunk(
                choice(
                    j!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0u64,
                            "id": (call_id.clone()),
                            "type": "function",
                            "function": {"name": (t.name.clone()), "arguments": ""},
                        }],
                        "refusal": null,
                    }),
                    None,
                ),
                None,
            ));
            for frag in t.fragments() {
                frames.push(chunk(
                    choice(
                        j!({"tool_calls": [{"index": 0u64, "function": {"arguments": (frag.to_owned())}}]}),
                        None,
                    ),
                    None,
                ));
            }
        }
        None => {
            frames.push(chunk(
                choice(
                    j!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                ),
                None,
            ));
            for word in text::chunks(&answer) {
                frames.push(chunk(
                    choice(j!({"content": (word.to_owned())}), None),
                    None,
                ));
            }
        }
    }
    frames.push(chunk(choice(j!({}), Some(finish)), None));
    if include_usage {
        frames.push(chunk(J::A(Vec::new()), Some(usage)));
    }
    frames.push(Bytes::from_static(DONE));
    Reply::stream(SSE_UTF8, frames, stream_error_frame())
}

fn responses(call: &Call<'_>) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = str_field(&req, "model") else {
        return bad_request(call, "Missing required parameter: 'model'.");
    };
    let stream = flag(&req, "stream");
    let input = req
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, text::words)
        + text::messages_words(req.get("input"));
    let cached = call.opts.cached_tokens.min(input);
    let max = req.get("max_output_tokens").and_then(Value::as_u64);
    let (answer, output, truncated) = text::plan(model, call.opts.output_words, max);
    let resp_id = format!("resp_mock{}", call.id);
    let msg_id = format!("msg_mock{}", call.id);
    let usage = j!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0u64},
        "total_tokens": (input + output),
    });
    let final_status = if truncated { "incomplete" } else { "completed" };
    let incomplete = if truncated {
        j!({"reason": "max_output_tokens"})
    } else {
        J::Null
    };
    let part = |text: &str| -> J {
        j!({"type": "output_text", "annotations": [], "logprobs": [], "text": (text.to_owned())})
    };
    let message = |status: &'static str, content: Vec<J>| -> J {
        j!({"id": (msg_id.clone()), "type": "message", "status": status, "content": content, "role": "assistant"})
    };
    let response = |status: &'static str, output: Vec<J>, usage: J, incomplete: J, err: J| -> J {
        j!({
            "id": (resp_id.clone()),
            "object": "response",
            "created_at": (call.created),
            "status": status,
            "background": false,
            "error": err,
            "incomplete_details": incomplete,
            "instructions": (req.get("instructions").cloned().unwrap_or(Value::Null)),
            "max_output_tokens": (req.get("max_output_tokens").cloned().unwrap_or(Value::Null)),
            "max_tool_calls": null,
            "model": (model.to_owned()),
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": (req.get("previous_response_id").cloned().unwrap_or(Value::Null)),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": (req.get("store").and_then(Value::as_bool).unwrap_or(true)),
            "temperature": 1.0f64,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": (req.get("tools").cloned().unwrap_or(Value::Array(Vec::new()))),
            "top_logprobs": 0u64,
            "top_p": 1.0f64,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {},
        })
    };
    let done_item = message(final_status, vec![part(&answer)]);
    if !stream {
        let body = response(final_status, vec![done_item], usage, incomplete, J::Null);
        return Reply::json(StatusCode::OK, &body);
    }

    let mut seq: u64 = 0;
    let mut frames = Vec::new();
    let mut event = |name: &'static str, mut payload: J| {
        if let J::O(fields) = &mut payload {
            fields.insert(0, ("type".into(), J::from(name)));
            fields.insert(1, ("sequence_number".into(), J::U(seq)));
        }
        seq += 1;
        frames.push(sse_event(name, &payload));
    };
    let in_progress = response("in_progress", Vec::new(), J::Null, J::Null, J::Null);
    event("response.created", j!({"response": (in_progress.clone())}));
    event("response.in_progress", j!({"response": in_progress}));
    event(
        "response.output_item.added",
        j!({"output_index": 0u64, "item": (message("in_progress", Vec::new()))}),
    );
    event(
        "response.content_part.added",
        j!({"item_id": (msg_id.clone()), "output_index": 0u64, "content_index": 0u64, "part": (part(""))}),
    );
    for word in text::chunks(&answer) {
        event(
            "response.output_text.delta",
            j!({"item_id": (msg_id.clone()), "output_index": 0u64, "content_index": 0u64,
                "delta": (word.to_owned()), "logprobs": []}),
        );
    }
    event(
        "response.output_text.done",
        j!({"item_id": (msg_id.clone()), "output_index": 0u64, "content_index": 0u64,
            "text": (answer.clone()), "logprobs": []}),
    );
    event(
        "response.content_part.done",
        j!({"item_id": (msg_id.clone()), "output_index": 0u64, "content_index": 0u64, "part": (part(&answer))}),
    );
    event(
        "response.output_item.done",
        j!({"output_index": 0u64, "item": (done_item.clone())}),
    );
    let terminal = if truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    event(
        terminal,
        j!({"response": (response(final_status, vec![done_item], usage, incomplete, J::Null))}),
    );

    // The error a failing stream ends with: `response.failed`, numbered after the cut.
    let cut = cut_point(frames.len()) as u64;
    let failed = response(
        "failed",
        Vec::new(),
        J::Null,
        J::Null,
        j!({"code": "server_error", "message": "The server had an error while processing your request. Sorry about that!"}),
    );
    let error_frame = sse_event(
        "response.failed",
        &j!({"type": "response.failed", "sequence_number": cut, "response": failed}),
    );
    Reply::stream(SSE_UTF8, frames, error_frame)
}

fn embeddings(call: &Call<'_>) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = str_field(&req, "model") else {
        return bad_request(call, "you must provide a model parameter");
    };
    let invalid_input = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
    // (key for the vector, tokens) per input item.
    let items: Vec<(Vec<u8>, u64)> = match req.get("input") {
        None | Some(Value::Null) => {
            return bad_request(call, "Missing required parameter: 'input'.");
        }
        Some(Value::String(s)) => vec![(s.as_bytes().to_vec(), text::words(s))],
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
            vec![(
                Value::Array(a.clone()).to_string().into_bytes(),
                a.len() as u64,
            )]
        }
        Some(Value::Array(a)) => {
            let mut items = Vec::with_capacity(a.len());
            for v in a {
                match v {
                    Value::String(s) => items.push((s.as_bytes().to_vec(), text::words(s))),
                    Value::Array(ids) => items.push((v.to_string().into_bytes(), ids.len() as u64)),
                    _ => return bad_request(call, invalid_input),
                }
            }
            items
        }
        Some(_) => return bad_request(call, invalid_input),
    };
    if items.is_empty() || items.iter().any(|(k, _)| k.is_empty()) {
        return bad_request(call, invalid_input);
    }
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => EMBEDDING_DIMS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIMS).contains(&d) => d as usize,
            _ => {
                return bad_request(
                    call,
                    "Invalid value for 'dimensions': must be an integer between 1 and 4096.",
                )
            }
        },
    };
    let base64 = match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return bad_request(
                call,
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
            )
        }
    };
    let mut tokens = 0;
    let data: Vec<J> = items
        .iter()
        .enumerate()
        .map(|(i, (key, t))| {
            tokens += t;
            let v = text::embedding(key, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                J::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                J::A(v.into_iter().map(J::from).collect())
            };
            j!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = j!({
        "object": "list",
        "data": data,
        "model": (model.to_owned()),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Reply::json(StatusCode::OK, &body)
}

fn completions(call: &Call<'_>) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = str_field(&req, "model") else {
        return bad_request(call, "you must provide a model parameter");
    };
    if req.get("prompt").is_none_or(Value::is_null) {
        return bad_request(call, "Missing required parameter: 'prompt'.");
    }
    let (stream, include_usage) = match stream_flags(call, &req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = text::input_tokens(req.get("prompt"));
    // The legacy endpoint's max_tokens defaults to 16.
    let max = req.get("max_tokens").and_then(Value::as_u64).or(Some(16));
    let (answer, output, truncated) = text::plan(model, call.opts.output_words, max);
    let finish = if truncated { "length" } else { "stop" };
    let id = format!("cmpl-mock{}", call.id);
    let usage =
        j!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": (input + output)});
    if !stream {
        let body = j!({
            "id": id,
            "object": "text_completion",
            "created": (call.created),
            "model": (model.to_owned()),
            "choices": [{"text": answer, "index": 0u64, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
            "system_fingerprint": "fp_mock",
        });
        return Reply::json(StatusCode::OK, &body);
    }
    let chunk = |choices: J, usage: Option<J>| -> Bytes {
        let mut c = j!({
            "id": (id.clone()),
            "object": "text_completion",
            "created": (call.created),
            "choices": choices,
            "model": (model.to_owned()),
            "system_fingerprint": "fp_mock",
        });
        if include_usage {
            c.set("usage", usage);
        }
        sse_data(&c)
    };
    let mut frames: Vec<Bytes> = text::chunks(&answer)
        .into_iter()
        .map(|w| {
            chunk(
                j!([{"text": (w.to_owned()), "index": 0u64, "logprobs": null, "finish_reason": null}]),
                None,
            )
        })
        .collect();
    frames.push(chunk(
        j!([{"text": "", "index": 0u64, "logprobs": null, "finish_reason": finish}]),
        None,
    ));
    if include_usage {
        frames.push(chunk(J::A(Vec::new()), Some(usage)));
    }
    frames.push(Bytes::from_static(DONE));
    Reply::stream(SSE_UTF8, frames, stream_error_frame())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/v1/chat/completions"),
            Some(Endpoint::Chat)
        );
        assert_eq!(
            route(&Method::GET, "/v1/models/gpt-4o"),
            Some(Endpoint::Model("gpt-4o".into()))
        );
        assert_eq!(route(&Method::GET, "/v1/chat/completions"), None);
        assert_eq!(route(&Method::POST, "/v1/foo"), None);
    }

    #[test]
    fn masks_keys() {
        assert_eq!(mask("sk-invalid-key-123"), "sk-i**********-123");
        assert_eq!(mask("short"), "*****");
    }
}
