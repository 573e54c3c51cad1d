//! What each provider's wire format means: which operation a request is, which model, whether it streams
//! and which credential it carries ([`identify`], [`credential_kind`]); the text a request carries
//! ([`request`]); the subscription and tool backends' envelopes and sign-in tokens ([`backends`]);
//! how response bodies are framed, decoded and read — usage, model, completeness, text
//! ([`framing`], [`decode`], [`response`], [`usage`]); releasing streams in whole frames ([`align`]); undoing the agent's own usage request ([`strip`]);
//! and how to answer in the provider's own error dialect ([`dialect`]). It owns no I/O and no policy; it
//! only reads bytes it is given.

pub mod align;
pub mod backends;
pub mod decode;
pub mod dialect;
pub mod framing;
pub mod ollama;
pub mod request;
pub mod response;
pub mod strip;
pub mod usage;

use http::Method;
use serde::Deserialize;

use crate::policy::{ApiKind, Billing};

pub use backends::api_for_path;

/// What a request is, as far as the agent can tell from its head and (JSON) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Operation name (`chat_completions`, `responses`, `embeddings`, `messages`, `generate_content` …).
    pub operation: String,
    /// Model asked for, if the request names one.
    pub model: Option<String>,
    /// Whether a streamed response was asked for.
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: Option<bool>,
    /// The output cap the request sets itself (`max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens`, Gemini's `generationConfig.maxOutputTokens`), for budget estimates.
    pub max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct GenerationConfigPeek {
    #[serde(default, rename = "maxOutputTokens")]
    max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptionsPeek {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct BodyPeek<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptionsPeek>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default, rename = "generationConfig")]
    generation_config: Option<GenerationConfigPeek>,
}

/// What the agent reads of a body to identify it.
#[derive(Default)]
struct Peek {
    model: Option<String>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    max_output_tokens: Option<u64>,
}

/// Reads `model`, `stream`, `stream_options.include_usage` and the output cap from a JSON body
/// without materialising the rest. Malformed JSON gives nothing: the upstream is the authority on what is malformed and
/// answers for itself.
fn peek_body(body: Option<&[u8]>) -> Peek {
    match body
        .filter(|b| !b.is_empty())
        .map(serde_json::from_slice::<BodyPeek<'_>>)
    {
        Some(Ok(p)) => Peek {
            model: p.model.map(|m| m.into_owned()),
            stream: p.stream,
            include_usage: p.stream_options.and_then(|o| o.include_usage),
            max_output_tokens: p
                .max_completion_tokens
                .or(p.max_tokens)
                .or(p.max_output_tokens)
                .or(p.generation_config.and_then(|g| g.max_output_tokens)),
        },
        _ => Peek::default(),
    }
}

/// Identifies a request to a provider speaking `api`. `path` has no query; `query` is the raw query.
pub fn identify(
    api: ApiKind,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> Identity {
    let peek = peek_body(body);
    let p = path.trim_end_matches('/');
    let (operation, model, stream) = match api {
        ApiKind::Openai | ApiKind::Azure => {
            let operation = if p.ends_with("/chat/completions") {
                "chat_completions".to_string()
            } else if p.ends_with("/completions") {
                "completions".into()
            } else if p.ends_with("/embeddings") {
                "embeddings".into()
            } else if p.ends_with("/responses") && method == Method::POST {
                "responses".into()
            } else {
                other_operation(p)
            };
            // Azure's dated URLs name the deployment in the path, not the body; so do the engine
            // URLs of OpenAI's first API, which GitHub Copilot's inline completions still use
            // (`/v1/engines/{engine}/completions`).
            let segment_after = |marker: &str| {
                let rest = p.split(marker).nth(1)?;
                rest.split('/')
                    .next()
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
            };
            let model = peek.model.or_else(|| match api {
                ApiKind::Azure => segment_after("/deployments/"),
                _ => segment_after("/engines/"),
            });
            (operation, model, peek.stream.unwrap_or(false))
        }
        ApiKind::Anthropic => {
            let operation = if p.ends_with("/messages/count_tokens") {
                "count_tokens".to_string()
            } else if p.ends_with("/messages") {
                "messages".into()
            } else if p.ends_with("/complete") {
                "complete".into()
            } else {
                other_operation(p)
            };
            (operation, peek.model, peek.stream.unwrap_or(false))
        }
        ApiKind::Gemini => {
            // /v1beta/models/{model}:{method} (also tunedModels/…)
            let last = p.rsplit('/').next().unwrap_or_default();
            let (model, method) = match last.split_once(':') {
                Some((m, meth)) => (Some(m.to_string()), meth),
                None => (None, ""),
            };
            let operation = match method {
                "generateContent" => "generate_content".to_string(),
                "streamGenerateContent" => "stream_generate_content".into(),
                "countTokens" => "count_tokens".into(),
                "embedContent" => "embed_content".into(),
                "batchEmbedContents" => "batch_embed_contents".into(),
                _ => other_operation(p),
            };
            let _ = query; // alt=sse changes framing, not the operation
            (
                operation,
                model.or(peek.model),
                method == "streamGenerateContent",
            )
        }
        ApiKind::Ollama => {
            let operation = ollama::operation(p)
                .map(str::to_string)
                .unwrap_or_else(|| other_operation(p));
            let stream = ollama::streams(&operation, peek.stream);
            (operation, peek.model, stream)
        }
        ApiKind::CodeAssist => {
            // /v1internal:{method}; the model is in the envelope, not the path.
            let method = backends::code_assist_method(p);
            (
                backends::code_assist_operation(method),
                backends::code_assist_model(body),
                method == Some("streamGenerateContent"),
            )
        }
    };
    Identity {
        operation,
        model,
        stream,
        include_usage: peek.include_usage,
        max_output_tokens: peek.max_output_tokens,
    }
}

/// Operation names of endpoints the agent recognises and passes through without metering tokens.
const KNOWN_OTHER: [&str; 14] = [
    "images",
    "audio",
    "moderations",
    "files",
    "uploads",
    "batches",
    "realtime",
    "models",
    "fine_tuning",
    "vector_stores",
    "assistants",
    "threads",
    "containers",
    "conversations",
];

/// A bounded operation name for endpoints the agent passes through without metering.
fn other_operation(path: &str) -> String {
    // The first meaningful segment after a version segment: /v1/images/generations → images
    let seg = path
        .split('/')
        .filter(|s| !s.is_empty())
        .find(|s| {
            let version =
                s.starts_with('v') && s[1..].chars().next().is_some_and(|c| c.is_ascii_digit());
            !version && !matches!(*s, "openai" | "api")
        })
        .unwrap_or("root");
    if let Some(name) = KNOWN_OTHER.iter().find(|k| **k == seg) {
        return (*name).to_string();
    }
    let seg: String = seg
        .chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    format!("other:{seg}")
}

/// How a request authenticates, by kind only — the value is never read into a record or a log. A
/// bearer token is `oauth` when it is a sign-in rather than a key ([`backends::is_sign_in`]) on a
/// host paid by `billing`.
pub fn credential_kind(
    headers: &http::HeaderMap,
    query: Option<&str>,
    billing: Billing,
) -> &'static str {
    let has = |n: &str| headers.get(n).is_some_and(|v| !v.is_empty());
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            (v.len() > 7 && v.is_char_boundary(7) && v[..7].eq_ignore_ascii_case("bearer "))
                .then(|| v[7..].trim())
        });
    if let Some(token) = bearer {
        let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
        if backends::is_sign_in(token, beta, billing) {
            "oauth"
        } else {
            "bearer"
        }
    } else if has("x-api-key") {
        "x_api_key"
    } else if has("api-key") {
        "api_key"
    } else if has("x-goog-api-key") {
        "goog_api_key"
    } else if query.is_some_and(has_query_key) {
        "query_key"
    } else if has("authorization") {
        "other_authorization"
    } else {
        "none"
    }
}

/// The credential a request presents (the bearer token, `x-api-key`, `api-key`, `x-goog-api-key`,
/// or a `key=` query parameter), in that order: what is fingerprinted or checked, never logged.
pub fn credential_value(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            (v.len() > 7 && v.is_char_boundary(7) && v[..7].eq_ignore_ascii_case("bearer "))
                .then(|| v[7..].trim().to_string())
        })
        .filter(|v| !v.is_empty());
    bearer
        .or_else(|| header("x-api-key"))
        .or_else(|| header("api-key"))
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| {
            query?.split('&').find_map(|kv| {
                let (_, v) = kv.split_once('=')?;
                (query_param_name(kv) == "key" && !v.is_empty()).then(|| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        })
}

/// `query` without its `key=` parameters (however the name is encoded): for a request whose
/// credential Airlock replaces.
pub fn without_query_key(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !(kv.contains('=') && query_param_name(kv) == "key"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A query parameter's name as a server reads it: percent-decoded (`k%65y` is `key`), `+` as a space,
/// lower case. Credential checks compare this, so an encoded name cannot slip a key past them.
fn query_param_name(pair: &str) -> String {
    let raw = pair.split('=').next().unwrap_or_default().as_bytes();
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// Whether a query parameter name carries a credential.
fn is_credential_param(name: &str) -> bool {
    name == "key"
        || name == "sig"
        || name.ends_with("_key")
        || name.ends_with("-key")
        || name.contains("api_key")
        || name.contains("apikey")
        || name.contains("api-key")
        || name.contains("token")
        || name.contains("secret")
        || name.contains("password")
        || name.contains("signature")
}

/// Whether the query carries Gemini's `?key=` (however its name is encoded).
fn has_query_key(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv.contains('=') && query_param_name(kv) == "key")
}

/// Removes credentials from a query string for records: `key=...` (Gemini) and anything that looks
/// like a key, token, secret or signature parameter, with percent-encoded names decoded first.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            if pair.contains('=') && is_credential_param(&query_param_name(pair)) {
                let name = pair.split('=').next().unwrap_or_default();
                format!("{name}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(api: ApiKind, method: Method, path: &str) -> String {
        identify(api, &method, path, None, None).operation
    }

    #[test]
    fn the_output_cap_is_read_in_each_dialect() {
        let cap = |api, path: &str, body: &str| {
            identify(api, &Method::POST, path, None, Some(body.as_bytes())).max_output_tokens
        };
        assert_eq!(
            cap(
                ApiKind::Openai,
                "/v1/chat/completions",
                r#"{"model":"m","max_tokens":16}"#
            ),
            Some(16)
        );
        assert_eq!(
            cap(
                ApiKind::Openai,
                "/v1/chat/completions",
                r#"{"model":"m","max_tokens":9,"max_completion_tokens":32}"#
            ),
            Some(32),
            "max_completion_tokens wins"
        );
        assert_eq!(
            cap(
                ApiKind::Openai,
                "/v1/responses",
                r#"{"model":"m","max_output_tokens":64}"#
            ),
            Some(64)
        );
        assert_eq!(
            cap(
                ApiKind::Gemini,
                "/v1beta/models/g:generateContent",
                r#"{"generationConfig":{"maxOutputTokens":128}}"#
            ),
            Some(128)
        );
        assert_eq!(
            cap(ApiKind::Anthropic, "/v1/messages", r#"{"model":"m"}"#),
            None
        );
    }

    #[test]
    fn openai_operations_and_models() {
        let b = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/chat/completions",
            None,
            Some(b),
        );
        let expected = Identity {
            operation: "chat_completions".into(),
            model: Some("gpt-4o-mini".into()),
            stream: true,
            include_usage: None,
            max_output_tokens: None,
        };
        assert_eq!(id, expected);
        let b = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/chat/completions",
            None,
            Some(b),
        );
        assert_eq!(id.include_usage, Some(true));
        let b = br#"{"model":"text-embedding-3-small","input":"x"}"#;
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/embeddings",
            None,
            Some(b),
        );
        assert_eq!((id.operation.as_str(), id.stream), ("embeddings", false));
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/responses"),
            "responses"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/completions"),
            "completions"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/openai/v1/chat/completions"),
            "chat_completions"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/api/v1/chat/completions"),
            "chat_completions"
        );
    }

    #[test]
    fn other_openai_endpoints_are_named() {
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/images/generations"),
            "images"
        );
        assert_eq!(op(ApiKind::Openai, Method::GET, "/v1/realtime"), "realtime");
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/audio/transcriptions"),
            "audio"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/moderations"),
            "moderations"
        );
        assert_eq!(op(ApiKind::Openai, Method::POST, "/v1/batches"), "batches");
        assert_eq!(
            op(ApiKind::Openai, Method::GET, "/v1/files/file-1/content"),
            "files"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::GET, "/v1/responses/resp_1"),
            "other:responses"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/v1/frobnicate"),
            "other:frobnicate"
        );
    }

    #[test]
    fn malformed_json_identifies_without_model() {
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/chat/completions",
            None,
            Some(b"{not json"),
        );
        assert_eq!((id.model, id.stream), (None, false));
    }

    #[test]
    fn azure_deployment_is_the_model_in_both_url_forms() {
        let id = identify(
            ApiKind::Azure,
            &Method::POST,
            "/openai/deployments/gpt4o-prod/chat/completions",
            Some("api-version=2024-10-21"),
            Some(b"{}"),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref()),
            ("chat_completions", Some("gpt4o-prod"))
        );
        let b = br#"{"model":"my-deployment"}"#;
        let id = identify(
            ApiKind::Azure,
            &Method::POST,
            "/openai/v1/chat/completions",
            None,
            Some(b),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref()),
            ("chat_completions", Some("my-deployment"))
        );
    }

    #[test]
    fn an_engine_url_names_the_model_when_the_body_does_not() {
        // GitHub Copilot's inline completions: a legacy completions body without `model`.
        let b = br#"{"prompt":"def add(a, b):","suffix":"\n","stream":true,"extra":{"language":"python"}}"#;
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/engines/gpt-41-copilot/completions",
            None,
            Some(b),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref(), id.stream),
            ("completions", Some("gpt-41-copilot"), true)
        );
        let b = br#"{"model":"named-in-body","prompt":"x"}"#;
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/engines/copilot-codex/completions",
            None,
            Some(b),
        );
        assert_eq!(id.model.as_deref(), Some("named-in-body"));
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/engines//completions",
            None,
            None,
        );
        assert_eq!(id.model, None);
    }

    #[test]
    fn anthropic_and_gemini() {
        let b = br#"{"model":"claude-sonnet-4-5","stream":true}"#;
        let id = identify(
            ApiKind::Anthropic,
            &Method::POST,
            "/v1/messages",
            None,
            Some(b),
        );
        assert_eq!((id.operation.as_str(), id.stream), ("messages", true));
        assert_eq!(
            op(
                ApiKind::Anthropic,
                Method::POST,
                "/v1/messages/count_tokens"
            ),
            "count_tokens"
        );
        let id = identify(
            ApiKind::Gemini,
            &Method::POST,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            Some("alt=sse"),
            Some(b"{}"),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref(), id.stream),
            ("stream_generate_content", Some("gemini-2.5-flash"), true)
        );
        assert_eq!(
            op(
                ApiKind::Gemini,
                Method::POST,
                "/v1beta/models/g:countTokens"
            ),
            "count_tokens"
        );
        assert_eq!(
            op(
                ApiKind::Gemini,
                Method::POST,
                "/v1beta/models/g:embedContent"
            ),
            "embed_content"
        );
    }

    #[test]
    fn credential_kinds_never_need_the_value() {
        let mut h = http::HeaderMap::new();
        let credential_kind = |h: &http::HeaderMap, q| credential_kind(h, q, Billing::PerToken);
        assert_eq!(credential_kind(&h, None), "none");
        assert_eq!(credential_kind(&h, Some("alt=sse&key=AIza")), "query_key");
        h.insert("x-goog-api-key", http::HeaderValue::from_static("k"));
        assert_eq!(credential_kind(&h, None), "goog_api_key");
        h.insert("api-key", http::HeaderValue::from_static("k"));
        assert_eq!(credential_kind(&h, None), "api_key");
        h.insert("x-api-key", http::HeaderValue::from_static("k"));
        assert_eq!(credential_kind(&h, None), "x_api_key");
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer sk-x"),
        );
        assert_eq!(credential_kind(&h, None), "bearer");
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer sk-ant-oat01-xyz"),
        );
        assert_eq!(credential_kind(&h, None), "oauth");
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer eyJhbGciOiJSUzI1NiJ9"),
        );
        assert_eq!(credential_kind(&h, None), "bearer");
        assert_eq!(
            super::credential_kind(&h, None, Billing::Subscription),
            "oauth",
            "a bearer token on a subscription backend is a sign-in"
        );
    }

    #[test]
    fn code_assist_requests_name_their_model_and_method() {
        let b = br#"{"model":"gemini-2.5-pro","project":"proj-1","request":{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}}"#;
        let id = identify(
            ApiKind::CodeAssist,
            &Method::POST,
            "/v1internal:streamGenerateContent",
            Some("alt=sse"),
            Some(b),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref(), id.stream),
            ("stream_generate_content", Some("gemini-2.5-pro"), true)
        );
        let id = identify(
            ApiKind::CodeAssist,
            &Method::POST,
            "/v1internal:generateContent",
            None,
            Some(b),
        );
        assert_eq!(
            (id.operation.as_str(), id.stream),
            ("generate_content", false)
        );
        assert_eq!(
            op(ApiKind::CodeAssist, Method::POST, "/v1internal:countTokens"),
            "count_tokens"
        );
        assert_eq!(
            op(
                ApiKind::Openai,
                Method::POST,
                "/backend-api/codex/responses"
            ),
            "responses"
        );
        assert_eq!(
            op(ApiKind::Openai, Method::POST, "/chat/completions"),
            "chat_completions"
        );
        let id = identify(
            ApiKind::Ollama,
            &Method::POST,
            "/api/chat",
            None,
            Some(br#"{"model":"llama3.2","messages":[]}"#),
        );
        assert_eq!(
            (id.operation.as_str(), id.model.as_deref(), id.stream),
            ("chat", Some("llama3.2"), true),
            "Ollama's native API streams unless told not to"
        );
        assert_eq!(op(ApiKind::Ollama, Method::GET, "/api/tags"), "other:tags");
    }

    #[test]
    fn query_keys_are_redacted() {
        assert_eq!(
            redact_query("alt=sse&key=AIzaSECRET"),
            "alt=sse&key=REDACTED"
        );
        assert_eq!(
            redact_query("api-version=2024-10-21"),
            "api-version=2024-10-21"
        );
        assert_eq!(
            redact_query("alt=sse&k%65y=AIzaSECRET&%4B%45%59=x&access%5Ftoken=t&x=1"),
            "alt=sse&k%65y=REDACTED&%4B%45%59=REDACTED&access%5Ftoken=REDACTED&x=1"
        );
        assert_eq!(
            redact_query("client_secret=s&X-Goog-Signature=abc&%zz=1"),
            "client_secret=REDACTED&X-Goog-Signature=REDACTED&%zz=1"
        );
        assert!(has_query_key("alt=sse&k%65y=AIza"));
        assert!(!has_query_key("keys=1"));
    }
}
