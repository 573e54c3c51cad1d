//! The OpenAI API as served by `api.openai.com`: Chat Completions (plain, streamed with and without
//! `stream_options.include_usage`, tool calls), Responses (object and event stream, text or a
//! function call), Embeddings (float and base64), legacy Completions and the model list; and the
//! same API on the OpenAI-compatible services ([`Flavor`]) with their deviations: Groq's
//! `x_groq.usage`, xAI's usage chunk order, OpenRouter's comments and generation id, DeepSeek's
//! cache hit/miss counts, Azure's deployment URLs and content filter annotations. It builds bodies
//! and frames in the services' shapes; faults, pacing and transport are the server's business.

use std::sync::LazyLock;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::compat::{self, AZURE_DEFAULT_MODEL, MISSING_DEPLOYMENT, OPENROUTER_PROCESSING};
use crate::j;
use crate::json::J;
use crate::reply::{
    bad_request, bearer, check_key, cut_point, error, flag, parse_body, query_param, sse_data,
    sse_event, str_field, Call, ErrorKind, Flavor, Provider, Reply, SSE_UTF8,
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

/// A routed OpenAI-dialect request: the endpoint and, for an Azure deployment URL
/// (`/openai/deployments/{deployment}/...`), the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The deployment named in the URL (Azure's dated API only).
    pub deployment: Option<String>,
}

impl Target {
    fn plain(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            deployment: None,
        }
    }
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

/// The endpoint for `method`, `path` and `query` on `flavor`'s host: Groq serves the API under
/// `/openai/v1/`, OpenRouter under `/api/v1/`, Azure under `/openai/deployments/{deployment}/`
/// (with a dated `api-version`) or `/openai/v1/`, the others under `/v1/`.
pub fn route_for(
    flavor: Flavor,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Target> {
    match flavor {
        Flavor::Groq => route(method, path.strip_prefix("/openai")?).map(Target::plain),
        Flavor::OpenRouter => route(method, path.strip_prefix("/api")?).map(Target::plain),
        Flavor::Azure => azure_route(method, path, query),
        // Copilot serves the OpenAI endpoints at the root, without /v1.
        Flavor::Copilot if !path.starts_with("/v1/") => {
            route(method, &format!("/v1{path}")).map(Target::plain)
        }
        // Copilot's inline completions: the engine in the URL is the model.
        Flavor::CopilotProxy => {
            let engine = path
                .strip_prefix("/v1/engines/")?
                .strip_suffix("/completions")
                .filter(|e| !e.is_empty() && !e.contains('/'))?;
            (method == Method::POST).then(|| Target {
                endpoint: Endpoint::Completions,
                deployment: Some(engine.to_owned()),
            })
        }
        // Codex signed in with ChatGPT: the Responses API only.
        Flavor::ChatGpt => match (method, path) {
            (&Method::POST, "/backend-api/codex/responses") => {
                Some(Target::plain(Endpoint::Responses))
            }
            _ => None,
        },
        _ => route(method, path).map(Target::plain),
    }
}

fn azure_route(method: &Method, path: &str, query: Option<&str>) -> Option<Target> {
    if path.starts_with("/openai/v1/") {
        return route(method, path.strip_prefix("/openai")?).map(Target::plain);
    }
    // The dated API needs an api-version; without one (or with a malformed one) Azure answers
    // 404 "Resource not found".
    if !query_param(query, "api-version").is_some_and(compat::api_version_ok) {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, op) = rest.split_once('/')?;
        if deployment.is_empty() || method != Method::POST {
            return None;
        }
        let endpoint = match op {
            "chat/completions" => Endpoint::Chat,
            "completions" => Endpoint::Completions,
            "embeddings" => Endpoint::Embeddings,
            _ => return None,
        };
        return Some(Target {
            endpoint,
            deployment: Some(deployment.to_owned()),
        });
    }
    match (method, path) {
        (&Method::POST, "/openai/responses") => Some(Target::plain(Endpoint::Responses)),
        (&Method::GET, "/openai/models") => Some(Target::plain(Endpoint::Models)),
        _ => None,
    }
}

/// OpenAI's 404 for a path it does not serve (Azure: `{"error":{"code":"404",...}}`).
pub fn not_found(call: &Call<'_>) -> Reply {
    if call.flavor == Flavor::Azure {
        return compat::azure_error(ErrorKind::NotFound, None);
    }
    let msg = format!("Invalid URL ({} {})", call.method, call.path);
    error(Provider::OpenAi, ErrorKind::NotFound, Some(&msg), call.id)
}

/// Checks `Authorization: Bearer` (on Azure also `api-key`).
pub fn authenticate(call: &Call<'_>) -> Result<(), Reply> {
    if call.flavor == Flavor::Azure {
        let key = call
            .header("api-key")
            .filter(|k| !k.trim().is_empty())
            .or_else(|| bearer(call.headers));
        return check_key(key).map_err(|kind| compat::azure_error(kind, None));
    }
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

/// Answers a request for `target`. Body fields the host refuses (older Azure API versions'
/// `stream_options`, `x-mock-reject-params`) are checked first.
pub fn handle(target: &Target, call: &Call<'_>) -> Reply {
    if call.method == Method::POST {
        if let Some(r) = compat::rejected_params(call, target.deployment.as_deref()) {
            return r;
        }
    }
    match &target.endpoint {
        Endpoint::Chat => chat(call, target),
        Endpoint::Responses => responses(call, target),
        Endpoint::Embeddings => embeddings(call, target),
        Endpoint::Completions => completions(call, target),
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

/// Usage of a chat completion: `completion` includes `reasoning`. Groq adds its timings, DeepSeek
/// its cache hit/miss counts.
fn chat_usage(flavor: Flavor, input: u64, cached: u64, completion: u64, reasoning: u64) -> J {
    if flavor == Flavor::Groq {
        return compat::groq_usage(input, cached, completion, reasoning);
    }
    let mut u = j!({
        "prompt_tokens": input,
        "completion_tokens": completion,
        "total_tokens": (input + completion),
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0u64},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0u64,
            "accepted_prediction_tokens": 0u64,
            "rejected_prediction_tokens": 0u64,
        },
    });
    if flavor == Flavor::DeepSeek {
        u.set("prompt_cache_hit_tokens", cached);
        u.set("prompt_cache_miss_tokens", input - cached);
    }
    u
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

/// The first function tool of a Responses request: `{"type":"function","name",...,"parameters"}`
/// (the Chat Completions nesting under `function` is accepted too).
fn first_responses_tool(req: &Value) -> Option<ToolCall> {
    req.get("tools")?.as_array()?.iter().find_map(|t| {
        if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
            return None;
        }
        let f = t.get("function").unwrap_or(t);
        let name = f.get("name")?.as_str()?;
        Some(ToolCall::new(name, f.get("parameters")))
    })
}

/// The model the answer reports, or the error to answer with: the request's `model` (missing →
/// 400 `missing`); on Azure the deployment (from the URL, or the body's `model` on the v1 API) must
/// exist, and the answer reports its underlying model (`x-mock-azure-model`, default
/// [`AZURE_DEFAULT_MODEL`]).
fn answer_model(
    call: &Call<'_>,
    target: &Target,
    req: &Value,
    missing: &str,
) -> Result<String, Reply> {
    if call.flavor == Flavor::CopilotProxy {
        return target
            .deployment
            .clone()
            .ok_or_else(|| bad_request(call, missing));
    }
    if call.flavor != Flavor::Azure {
        return str_field(req, "model")
            .map(str::to_owned)
            .ok_or_else(|| bad_request(call, missing));
    }
    let deployment = match &target.deployment {
        Some(d) => d.as_str(),
        None => str_field(req, "model").ok_or_else(|| bad_request(call, missing))?,
    };
    if deployment == MISSING_DEPLOYMENT {
        return Err(compat::deployment_not_found());
    }
    Ok(call
        .header("x-mock-azure-model")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(AZURE_DEFAULT_MODEL)
        .to_owned())
}

/// The id of a chat or legacy completion: OpenRouter's `gen-<created>-mock<id>` (also sent as
/// `X-Generation-Id`), otherwise `<prefix><id>`.
fn completion_id(call: &Call<'_>, prefix: &str) -> String {
    if call.flavor == Flavor::OpenRouter {
        format!("gen-{}-mock{}", call.created, call.id)
    } else {
        format!("{prefix}{}", call.id)
    }
}

/// Adds the service's extra response headers (OpenRouter's `X-Generation-Id`).
fn with_service_headers(reply: Reply, call: &Call<'_>, id: &str) -> Reply {
    if call.flavor == Flavor::OpenRouter {
        reply.with_header_value("x-generation-id", id)
    } else {
        reply
    }
}

/// Adds Azure's `prompt_filter_results` to a non-streamed body.
fn with_prompt_filter(mut body: J, call: &Call<'_>) -> J {
    if call.flavor == Flavor::Azure {
        body.set("prompt_filter_results", compat::prompt_filter_results());
    }
    body
}

/// Azure's per-choice `content_filter_results`: the full set for a choice with generated content,
/// `{}` for role, tool-call and finish chunks.
fn with_choice_filter(mut choice: J, call: &Call<'_>, content: bool) -> J {
    if call.flavor == Flavor::Azure {
        let results = if content {
            compat::choice_filter_results()
        } else {
            j!({})
        };
        choice.set("content_filter_results", results);
    }
    choice
}

/// The common fields of the chunks of one chat or legacy completions stream.
struct Chunks<'c> {
    id: &'c str,
    created: u64,
    model: &'c str,
    /// Chat (`chat.completion.chunk`) or legacy (`text_completion`) key order.
    chat: bool,
    /// Every chunk has a `usage` key (`null` except on the usage chunk).
    usage_key: bool,
}

impl Chunks<'_> {
    fn chunk(&self, choices: J) -> J {
        let mut c = if self.chat {
            j!({
                "id": (self.id.to_owned()),
                "object": "chat.completion.chunk",
                "created": (self.created),
                "model": (self.model.to_owned()),
                "service_tier": "default",
                "system_fingerprint": "fp_mock",
                "choices": choices,
            })
        } else {
            j!({
                "id": (self.id.to_owned()),
                "object": "text_completion",
                "created": (self.created),
                "choices": choices,
                "model": (self.model.to_owned()),
                "system_fingerprint": "fp_mock",
            })
        };
        if self.usage_key {
            c.set("usage", J::Null);
        }
        c
    }
}

/// Lays out a chat or legacy completions stream the way the service sends it, from the `body`
/// chunks (role/content/tool chunks), the `finish` chunk and the usage:
/// - OpenAI and most services: body, finish, the `choices: []` usage chunk (with `include_usage`),
///   `[DONE]`;
/// - Azure: its `prompt_filter_results` chunk first;
/// - OpenRouter: `: OPENROUTER PROCESSING` before the first chunk and before the finish chunk;
/// - xAI: the usage chunk comes before the finish chunk (second to last);
/// - Groq: no usage chunk and no top-level usage; `x_groq: {id}` on the first chunk and
///   `x_groq: {id, usage}` on the finish chunk, whether or not usage was asked for.
///
/// With `x-mock-choices-null: 1` the usage chunk has `"choices": null`.
fn stream_frames(
    call: &Call<'_>,
    chunks: &Chunks<'_>,
    include_usage: bool,
    mut body: Vec<J>,
    mut finish: J,
    usage: J,
) -> Vec<Bytes> {
    let flavor = call.flavor;
    let mut frames = Vec::with_capacity(body.len() + 6);
    match flavor {
        Flavor::Azure => frames.push(compat::azure_first_chunk()),
        Flavor::OpenRouter => frames.push(Bytes::from_static(OPENROUTER_PROCESSING)),
        _ => {}
    }
    if flavor == Flavor::Groq {
        let x_groq = j!({"id": (format!("req_mock{}", call.id))});
        match body.first_mut() {
            Some(first) => first.set("x_groq", x_groq),
            None => finish.set("x_groq", x_groq),
        }
    }
    frames.extend(body.iter().map(sse_data));
    if flavor == Flavor::OpenRouter {
        frames.push(Bytes::from_static(OPENROUTER_PROCESSING));
    }
    if flavor == Flavor::Groq {
        finish.set(
            "x_groq",
            j!({"id": (format!("req_mock{}", call.id)), "usage": usage}),
        );
        frames.push(sse_data(&finish));
    } else {
        let usage_chunk = include_usage.then(|| {
            let choices = if call.opts.choices_null {
                J::Null
            } else {
                J::A(Vec::new())
            };
            let mut c = chunks.chunk(choices);
            c.set("usage", usage);
            sse_data(&c)
        });
        if flavor == Flavor::Xai {
            frames.extend(usage_chunk);
            frames.push(sse_data(&finish));
        } else {
            frames.push(sse_data(&finish));
            frames.extend(usage_chunk);
        }
    }
    frames.push(Bytes::from_static(DONE));
    frames
}

fn chat(call: &Call<'_>, target: &Target) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match answer_model(call, target, &req, "you must provide a model parameter") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let model = model.as_str();
    if !req.get("messages").is_some_and(Value::is_array) {
        return bad_request(call, "Missing required parameter: 'messages'.");
    }
    let (stream, include_usage) = match stream_flags(call, &req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = text::messages_words(req.get("messages"));
    let cached = call.opts.cached_tokens.min(input);
    let reasoning = call.opts.reasoning_tokens;
    let max = req
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64));
    let tool = if call.opts.tool_call {
        first_chat_tool(&req)
    } else {
        None
    };
    let (answer, words, truncated) = call.plan(model, max);
    let id = completion_id(call, "chatcmpl-mock");
    let call_id = format!("call_mock{}", call.id);
    let (finish, output) = match &tool {
        Some(t) => ("tool_calls", t.tokens()),
        None if truncated => ("length", words),
        None => ("stop", words),
    };
    let usage = chat_usage(call.flavor, input, cached, output + reasoning, reasoning);

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
        let choice = with_choice_filter(
            j!({"index": 0u64, "message": message, "logprobs": null, "finish_reason": finish}),
            call,
            true,
        );
        let mut body = j!({
            "id": (id.clone()),
            "object": "chat.completion",
            "created": (call.created),
            "model": (model.to_owned()),
            "choices": [choice],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        });
        if call.flavor == Flavor::Groq {
            body.set("x_groq", j!({"id": (format!("req_mock{}", call.id))}));
        }
        let body = with_prompt_filter(body, call);
        return with_service_headers(Reply::json(StatusCode::OK, &body), call, &id);
    }

    let chunks = Chunks {
        id: &id,
        created: call.created,
        model,
        chat: true,
        usage_key: include_usage && call.flavor != Flavor::Groq,
    };
    let choice = |delta: J, finish: Option<&'static str>, content: bool| -> J {
        let c = j!({"index": 0u64, "delta": delta, "logprobs": null, "finish_reason": finish});
        J::A(vec![with_choice_filter(c, call, content)])
    };
    let mut body = Vec::new();
    match &tool {
        Some(t) => {
            body.push(chunks.chunk(choice(
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
                false,
            )));
            for frag in t.fragments() {
                body.push(chunks.chunk(choice(
                    j!({"tool_calls": [{"index": 0u64, "function": {"arguments": (frag.to_owned())}}]}),
                    None,
                    false,
                )));
            }
        }
        None => {
            body.push(chunks.chunk(choice(
                j!({"role": "assistant", "content": "", "refusal": null}),
                None,
                false,
            )));
            for word in call.chunks(&answer) {
                body.push(chunks.chunk(choice(j!({"content": (word.to_owned())}), None, true)));
            }
        }
    }
    let finish_chunk = chunks.chunk(choice(j!({}), Some(finish), false));
    let frames = stream_frames(call, &chunks, include_usage, body, finish_chunk, usage);
    with_service_headers(
        Reply::stream(SSE_UTF8, frames, stream_error_frame()),
        call,
        &id,
    )
}

fn responses(call: &Call<'_>, target: &Target) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match answer_model(call, target, &req, "Missing required parameter: 'model'.") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let model = model.as_str();
    let stream = flag(&req, "stream");
    let input = req
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, text::words)
        + text::messages_words(req.get("input"));
    let cached = call.opts.cached_tokens.min(input);
    let reasoning = call.opts.reasoning_tokens;
    let max = req.get("max_output_tokens").and_then(Value::as_u64);
    let tool = if call.opts.tool_call {
        first_responses_tool(&req)
    } else {
        None
    };
    let (answer, words, text_truncated) = call.plan(model, max);
    // A function call is never cut; it reports one output token per argument fragment.
    let (output, truncated) = match &tool {
        Some(t) => (t.tokens(), false),
        None => (words, text_truncated),
    };
    let output = output + reasoning;
    let resp_id = format!("resp_mock{}", call.id);
    let msg_id = format!("msg_mock{}", call.id);
    let fc_id = format!("fc_mock{}", call.id);
    let call_id = format!("call_mock{}", call.id);
    let usage = j!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
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
    let function_call = |status: &'static str, arguments: &str| -> J {
        let name = tool.as_ref().map_or(String::new(), |t| t.name.clone());
        j!({
            "id": (fc_id.clone()),
            "type": "function_call",
            "status": status,
            "arguments": (arguments.to_owned()),
            "call_id": (call_id.clone()),
            "name": name,
        })
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
    let done_item = match &tool {
        Some(t) => function_call("completed", &t.args_text),
        None => message(final_status, vec![part(&answer)]),
    };
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
    match &tool {
        Some(t) => {
            event(
                "response.output_item.added",
                j!({"output_index": 0u64, "item": (function_call("in_progress", ""))}),
            );
            for frag in t.fragments() {
                event(
                    "response.function_call_arguments.delta",
                    j!({"item_id": (fc_id.clone()), "output_index": 0u64, "delta": (frag.to_owned())}),
                );
            }
            event(
                "response.function_call_arguments.done",
                j!({"item_id": (fc_id.clone()), "output_index": 0u64, "arguments": (t.args_text.clone())}),
            );
        }
        None => {
            event(
                "response.output_item.added",
                j!({"output_index": 0u64, "item": (message("in_progress", Vec::new()))}),
            );
            event(
                "response.content_part.added",
                j!({"item_id": (msg_id.clone()), "output_index": 0u64, "content_index": 0u64, "part": (part(""))}),
            );
            for word in call.chunks(&answer) {
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
        }
    }
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

fn embeddings(call: &Call<'_>, target: &Target) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match answer_model(call, target, &req, "you must provide a model parameter") {
        Ok(m) => m,
        Err(r) => return r,
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

fn completions(call: &Call<'_>, target: &Target) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match answer_model(call, target, &req, "you must provide a model parameter") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let model = model.as_str();
    if req.get("prompt").is_none_or(Value::is_null) {
        return bad_request(call, "Missing required parameter: 'prompt'.");
    }
    let (stream, include_usage) = match stream_flags(call, &req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    // Copilot's completions proxy reports no usage, asked or not.
    let reports_usage = call.flavor != Flavor::CopilotProxy;
    let include_usage = include_usage && reports_usage;
    let input = text::input_tokens(req.get("prompt"));
    // The legacy endpoint's max_tokens defaults to 16.
    let max = req.get("max_tokens").and_then(Value::as_u64).or(Some(16));
    let (answer, output, truncated) = call.plan(model, max);
    let finish = if truncated { "length" } else { "stop" };
    let id = completion_id(call, "cmpl-mock");
    let usage =
        j!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": (input + output)});
    let choice = |text: J, finish: Option<&'static str>, content: bool| -> J {
        let c = j!({"text": text, "index": 0u64, "logprobs": null, "finish_reason": finish});
        with_choice_filter(c, call, content)
    };
    if !stream {
        let mut body = j!({
            "id": (id.clone()),
            "object": "text_completion",
            "created": (call.created),
            "model": (model.to_owned()),
            "choices": [(choice(J::from(answer), Some(finish), true))],
            "usage": usage,
            "system_fingerprint": "fp_mock",
        });
        if !reports_usage {
            body.remove("usage");
        }
        let body = with_prompt_filter(body, call);
        return with_service_headers(Reply::json(StatusCode::OK, &body), call, &id);
    }
    let chunks = Chunks {
        id: &id,
        created: call.created,
        model,
        chat: false,
        usage_key: include_usage && call.flavor != Flavor::Groq,
    };
    let body: Vec<J> = call
        .chunks(&answer)
        .into_iter()
        .map(|w| chunks.chunk(J::A(vec![choice(J::from(w.to_owned()), None, true)])))
        .collect();
    let finish_chunk = chunks.chunk(J::A(vec![choice(J::from(""), Some(finish), false)]));
    let frames = stream_frames(call, &chunks, include_usage, body, finish_chunk, usage);
    with_service_headers(
        Reply::stream(SSE_UTF8, frames, stream_error_frame()),
        call,
        &id,
    )
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
    fn routes_per_service() {
        let post = Method::POST;
        let chat = Some(Target::plain(Endpoint::Chat));
        let engine = "/v1/engines/gpt-41-copilot/completions";
        assert_eq!(
            route_for(Flavor::CopilotProxy, &post, engine, None),
            Some(Target {
                endpoint: Endpoint::Completions,
                deployment: Some("gpt-41-copilot".into())
            })
        );
        for (method, path) in [
            (&Method::GET, engine),
            (&post, "/v1/engines//completions"),
            (&post, "/v1/completions"),
            (&post, "/v1/chat/completions"),
        ] {
            assert_eq!(route_for(Flavor::CopilotProxy, method, path, None), None);
        }
        assert_eq!(
            route_for(Flavor::Groq, &post, "/openai/v1/chat/completions", None),
            chat
        );
        assert_eq!(
            route_for(Flavor::Groq, &post, "/v1/chat/completions", None),
            None
        );
        assert_eq!(
            route_for(Flavor::OpenRouter, &post, "/api/v1/chat/completions", None),
            chat
        );
        assert_eq!(
            route_for(Flavor::Xai, &post, "/v1/chat/completions", None),
            chat
        );
        assert_eq!(
            route_for(Flavor::Azure, &post, "/openai/v1/chat/completions", None),
            chat
        );
        let dated = "/openai/deployments/dep-1/embeddings";
        assert_eq!(
            route_for(Flavor::Azure, &post, dated, Some("api-version=2024-10-21")),
            Some(Target {
                endpoint: Endpoint::Embeddings,
                deployment: Some("dep-1".into())
            })
        );
        assert_eq!(route_for(Flavor::Azure, &post, dated, None), None);
        assert_eq!(
            route_for(Flavor::Azure, &post, dated, Some("api-version=v1")),
            None
        );
        assert_eq!(
            route_for(
                Flavor::Azure,
                &post,
                "/openai/deployments//chat/completions",
                Some("api-version=2024-10-21")
            ),
            None
        );
        assert_eq!(
            route_for(
                Flavor::Azure,
                &Method::GET,
                "/openai/models",
                Some("x=1&api-version=2024-10-21")
            ),
            Some(Target::plain(Endpoint::Models))
        );
    }

    #[test]
    fn masks_keys() {
        assert_eq!(mask("sk-invalid-key-123"), "sk-i**********-123");
        assert_eq!(mask("short"), "*****");
    }
}
