//! The Gemini API as served by `generativelanguage.googleapis.com` (`/v1beta` and `/v1`):
//! `models/{model}:generateContent`, `:streamGenerateContent` (SSE with `alt=sse`, otherwise one
//! streamed JSON array), `:countTokens`, `:embedContent`, `:batchEmbedContents` and the model list,
//! with Google's key rules and pretty-printed JSON. It builds bodies and frames only; faults, pacing
//! and transport are the server's business.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::j;
use crate::json::J;
use crate::reply::{
    bad_request, bearer, check_key, error, parse_body, Call, ErrorKind, Provider, Reply,
    GOOGLE_JSON, SSE,
};
use crate::text::{self, ToolCall};

/// A Gemini endpoint the mock serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `models/{model}:generateContent`
    Generate(String),
    /// `models/{model}:streamGenerateContent`
    Stream(String),
    /// `models/{model}:countTokens`
    CountTokens(String),
    /// `models/{model}:embedContent`
    Embed(String),
    /// `models/{model}:batchEmbedContents`
    BatchEmbed(String),
    /// `GET models`
    Models,
    /// `GET models/{model}`
    Model(String),
    /// A Code Assist method on `cloudcode-pa.googleapis.com` ([`crate::code_assist`]).
    CodeAssist(crate::code_assist::Method),
}

/// Default dimensions of mock embeddings.
pub const EMBEDDING_DIMS: usize = 8;

const MODELS: &[(&str, &str)] = &[
    ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ("gemini-2.5-pro", "Gemini 2.5 Pro"),
    ("gemini-embedding-001", "Gemini Embedding 001"),
];

fn model_info(id: &str, display: &str) -> J {
    let embed = id.contains("embedding");
    let methods: J = if embed {
        j!(["embedContent", "batchEmbedContents", "countTokens"])
    } else {
        j!(["generateContent", "countTokens", "streamGenerateContent"])
    };
    j!({
        "name": (format!("models/{id}")),
        "version": "001",
        "displayName": (display.to_owned()),
        "description": (format!("Mock of {display}")),
        "inputTokenLimit": 1_048_576u64,
        "outputTokenLimit": 65_536u64,
        "supportedGenerationMethods": methods,
    })
}

static MODEL_LIST: LazyLock<Bytes> = LazyLock::new(|| {
    let models: Vec<J> = MODELS.iter().map(|(id, d)| model_info(id, d)).collect();
    Bytes::from(j!({ "models": models }).to_pretty())
});

/// The endpoint for `method` and `path`, if the mock serves it.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    let rest = path
        .strip_prefix("/v1beta/")
        .or_else(|| path.strip_prefix("/v1/"))?;
    if rest == "models" {
        return (method == Method::GET).then_some(Endpoint::Models);
    }
    let rest = rest.strip_prefix("models/")?;
    match rest.split_once(':') {
        Some((model, action)) if method == Method::POST && valid_model(model) => {
            let model = model.to_owned();
            match action {
                "generateContent" => Some(Endpoint::Generate(model)),
                "streamGenerateContent" => Some(Endpoint::Stream(model)),
                "countTokens" => Some(Endpoint::CountTokens(model)),
                "embedContent" => Some(Endpoint::Embed(model)),
                "batchEmbedContents" => Some(Endpoint::BatchEmbed(model)),
                _ => None,
            }
        }
        None if method == Method::GET && valid_model(rest) => {
            Some(Endpoint::Model(rest.to_owned()))
        }
        _ => None,
    }
}

fn valid_model(m: &str) -> bool {
    !m.is_empty() && !m.contains('/')
}

/// Google's 404 (as JSON).
pub fn not_found(call: &Call<'_>) -> Reply {
    let msg = format!(
        "The requested URL {} was not found on this server, or the method is not supported for \
{} with API version v1beta.",
        call.path, call.method
    );
    error(Provider::Gemini, ErrorKind::NotFound, Some(&msg), call.id)
}

/// Checks `x-goog-api-key`, `?key=`, or an OAuth `Authorization: Bearer` token.
pub fn authenticate(call: &Call<'_>) -> Result<(), Reply> {
    let key = call
        .header("x-goog-api-key")
        .filter(|k| !k.trim().is_empty())
        .or_else(|| call.query_param("key").filter(|k| !k.is_empty()))
        .or_else(|| bearer(call.headers));
    check_key(key).map_err(|kind| error(Provider::Gemini, kind, None, call.id))
}

/// Answers a request for `endpoint`.
pub fn handle(endpoint: &Endpoint, call: &Call<'_>) -> Reply {
    match endpoint {
        Endpoint::Generate(m) => generate(call, m, false),
        Endpoint::Stream(m) => generate(call, m, true),
        Endpoint::CountTokens(m) => count_tokens(call, m),
        Endpoint::Embed(_) => embed(call, false),
        Endpoint::BatchEmbed(_) => embed(call, true),
        Endpoint::CodeAssist(m) => crate::code_assist::handle(*m, call),
        Endpoint::Models => Reply::bytes(StatusCode::OK, GOOGLE_JSON, MODEL_LIST.clone()),
        Endpoint::Model(m) => {
            let display = MODELS
                .iter()
                .find(|(id, _)| id == m)
                .map_or(m.as_str(), |(_, d)| d);
            Reply::google_json(StatusCode::OK, &model_info(m, display))
        }
    }
}

/// A field by its JSON (camelCase) or proto (snake_case) name; the API accepts both.
fn field<'v>(v: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    v.get(camel).or_else(|| v.get(snake))
}

/// Words of a GenerateContentRequest: `systemInstruction.parts[].text` and `contents[].parts[].text`.
pub(crate) fn request_words(req: &Value) -> u64 {
    let system = field(req, "systemInstruction", "system_instruction")
        .map_or(0, |s| text::content_words(s.get("parts")));
    let contents = match req.get("contents") {
        Some(Value::Array(cs)) => cs.iter().map(|c| text::content_words(c.get("parts"))).sum(),
        Some(c @ Value::Object(_)) => text::content_words(c.get("parts")),
        _ => 0,
    };
    system + contents
}

fn first_tool(req: &Value) -> Option<ToolCall> {
    req.get("tools")?.as_array()?.iter().find_map(|t| {
        let decls = field(t, "functionDeclarations", "function_declarations")?.as_array()?;
        decls.iter().find_map(|d| {
            let name = d.get("name")?.as_str()?;
            Some(ToolCall::new(
                name,
                d.get("parameters")
                    .or_else(|| d.get("parametersJsonSchema")),
            ))
        })
    })
}

/// `usageMetadata`: `thoughts` are outside `candidatesTokenCount` and inside `totalTokenCount`;
/// cached tokens are inside `promptTokenCount`. Zero cache and thought counts are omitted, as Google
/// does.
fn usage(prompt: u64, cached: u64, candidates: u64, thoughts: u64) -> J {
    let mut u = j!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": (prompt + candidates + thoughts),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if cached > 0 {
        u.set("cachedContentTokenCount", cached);
        u.set(
            "cacheTokensDetails",
            j!([{"modality": "TEXT", "tokenCount": cached}]),
        );
    }
    if thoughts > 0 {
        u.set("thoughtsTokenCount", thoughts);
    }
    u
}

pub(crate) fn generate(call: &Call<'_>, model: &str, stream: bool) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req
        .get("contents")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return bad_request(
            call,
            "* GenerateContentRequest.contents: contents is not specified\n",
        );
    }
    let prompt = request_words(&req);
    let cached = call.opts.cached_tokens.min(prompt);
    let thoughts = call.opts.reasoning_tokens;
    let max = field(&req, "generationConfig", "generation_config")
        .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
        .and_then(Value::as_u64);
    let tool = if call.opts.tool_call {
        first_tool(&req)
    } else {
        None
    };
    let (answer, words, truncated) = call.plan(model, max);
    let finish = if truncated && tool.is_none() {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let response_id = format!("mock{}", call.id);
    let response = |parts: J, finish: Option<&'static str>, usage: J| -> J {
        let mut candidate = j!({"content": {"parts": parts, "role": "model"}});
        if let Some(f) = finish {
            candidate.set("finishReason", f);
        }
        candidate.set("index", 0u64);
        j!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": (model.to_owned()),
            "responseId": (response_id.clone()),
        })
    };

    // (parts, cumulative output tokens) per chunk.
    let pieces: Vec<(J, u64)> = match &tool {
        Some(t) => vec![(
            j!([{"functionCall": {"name": (t.name.clone()), "args": (t.args.clone())}}]),
            t.tokens(),
        )],
        None if !stream => vec![(j!([{"text": (answer.clone())}]), words)],
        None => {
            let chunks = call.chunks(&answer);
            if chunks.is_empty() {
                vec![(j!([{"text": ""}]), 0)]
            } else {
                chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, w)| (j!([{"text": (w.to_owned())}]), i as u64 + 1))
                    .collect()
            }
        }
    };
    if !stream {
        let (parts, out) = pieces.into_iter().next().unwrap_or((J::A(Vec::new()), 0));
        return Reply::google_json(
            StatusCode::OK,
            &response(parts, Some(finish), usage(prompt, cached, out, thoughts)),
        );
    }
    let last = pieces.len().saturating_sub(1);
    let elements: Vec<J> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, (parts, out))| {
            response(
                parts,
                (i == last).then_some(finish),
                usage(prompt, cached, out, thoughts),
            )
        })
        .collect();
    let error = j!({"error": {
        "code": 500u64,
        "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        "status": "INTERNAL",
    }});
    if call.query_param("alt") == Some("sse") {
        let frame = |v: &J| Bytes::from(format!("data: {}\r\n\r\n", v.to_text()));
        let frames = elements.iter().map(frame).collect();
        Reply::stream(SSE, frames, frame(&error))
    } else {
        // One JSON array, streamed element by element: `[{...}` `\n,\r\n{...}` … `\n]`.
        let mut frames: Vec<Bytes> = elements
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let sep = if i == 0 { "[" } else { "\n,\r\n" };
                Bytes::from(format!("{sep}{}", e.to_pretty()))
            })
            .collect();
        frames.push(Bytes::from_static(b"\n]"));
        let error_frame = Bytes::from(format!("\n,\r\n{}\n]", error.to_pretty()));
        Reply::stream(GOOGLE_JSON, frames, error_frame)
    }
}

fn count_tokens(call: &Call<'_>, _model: &str) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let total = match field(&req, "generateContentRequest", "generate_content_request") {
        Some(inner) => request_words(inner),
        None => request_words(&req),
    };
    Reply::google_json(
        StatusCode::OK,
        &j!({
            "totalTokens": total,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
        }),
    )
}

fn embedding_for(call: &Call<'_>, req: &Value) -> Result<J, Reply> {
    let Some(content) = req.get("content") else {
        return Err(bad_request(
            call,
            "* EmbedContentRequest.content: contents is not specified\n",
        ));
    };
    let key: String = content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let dims = match field(req, "outputDimensionality", "output_dimensionality") {
        None | Some(Value::Null) => EMBEDDING_DIMS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=4096).contains(&d) => d as usize,
            _ => {
                return Err(bad_request(
                    call,
                    "outputDimensionality must be between 1 and 4096.",
                ))
            }
        },
    };
    let values: Vec<J> = text::embedding(key.as_bytes(), dims)
        .into_iter()
        .map(J::from)
        .collect();
    Ok(j!({ "values": values }))
}

fn embed(call: &Call<'_>, batch: bool) -> Reply {
    let req = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !batch {
        return match embedding_for(call, &req) {
            Ok(e) => Reply::google_json(StatusCode::OK, &j!({ "embedding": e })),
            Err(r) => r,
        };
    }
    let Some(requests) = req.get("requests").and_then(Value::as_array) else {
        return bad_request(
            call,
            "* BatchEmbedContentsRequest.requests: requests is not specified\n",
        );
    };
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        match embedding_for(call, r) {
            Ok(e) => out.push(e),
            Err(reply) => return reply,
        }
    }
    Reply::google_json(StatusCode::OK, &j!({ "embeddings": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(
                &Method::POST,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
            ),
            Some(Endpoint::Stream("gemini-2.5-flash".into()))
        );
        assert_eq!(
            route(&Method::GET, "/v1beta/models"),
            Some(Endpoint::Models)
        );
        assert_eq!(
            route(&Method::GET, "/v1beta/models/gemini-2.5-pro"),
            Some(Endpoint::Model("gemini-2.5-pro".into()))
        );
        assert_eq!(
            route(&Method::POST, "/v1beta/models/gemini-2.5-flash:fly"),
            None
        );
        assert_eq!(route(&Method::POST, "/v2/models/x:generateContent"), None);
    }
}
