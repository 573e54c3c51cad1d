//! What each provider's wire format means: which operation a request is, which model and whether it
//! streams ([`identify`]), where usage sits in responses and streams ([`usage`]), and how to answer in the
//! provider's own error dialect ([`dialect`]). It owns no I/O and no policy; it only reads bytes it is given.

pub mod dialect;
pub mod usage;

use http::Method;
use serde::Deserialize;

use crate::policy::ApiKind;

/// What a request is, as far as the agent can tell from its head and (JSON) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Operation name (`chat_completions`, `responses`, `embeddings`, `messages`, `generate_content` …).
    pub operation: String,
    /// Model asked for, if the request names one.
    pub model: Option<String>,
    /// Whether a streamed response was asked for.
    pub stream: bool,
}

#[derive(Deserialize)]
struct BodyPeek<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Reads `model` and `stream` from a JSON body without materialising the rest. Malformed JSON gives
/// `(None, None)`: the upstream is the authority on what is malformed and answers for itself.
fn peek_body(body: Option<&[u8]>) -> (Option<String>, Option<bool>) {
    match body
        .filter(|b| !b.is_empty())
        .map(serde_json::from_slice::<BodyPeek<'_>>)
    {
        Some(Ok(p)) => (p.model.map(|m| m.into_owned()), p.stream),
        _ => (None, None),
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
    let (model, stream) = peek_body(body);
    match api {
        ApiKind::Openai | ApiKind::Azure => identify_openai(api, method, path, model, stream),
        ApiKind::Anthropic => Identity {
            operation: match path.trim_end_matches('/') {
                p if p.ends_with("/messages/count_tokens") => "count_tokens".into(),
                p if p.ends_with("/messages") => "messages".into(),
                p if p.ends_with("/complete") => "complete".into(),
                p => other_operation(p),
            },
            model,
            stream: stream.unwrap_or(false),
        },
        ApiKind::Gemini => identify_gemini(path, query, model),
    }
}

fn identify_openai(
    api: ApiKind,
    method: &Method,
    path: &str,
    model: Option<String>,
    stream: Option<bool>,
) -> Identity {
    let p = path.trim_end_matches('/');
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
    // Azure's dated URLs name the deployment in the path, not the body.
    let model = model.or_else(|| {
        (api == ApiKind::Azure)
            .then(|| {
                let rest = p.split("/deployments/").nth(1)?;
                rest.split('/')
                    .next()
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
            })
            .flatten()
    });
    Identity {
        operation,
        model,
        stream: stream.unwrap_or(false),
    }
}

fn identify_gemini(path: &str, query: Option<&str>, body_model: Option<String>) -> Identity {
    // /v1beta/models/{model}:{method} (also tunedModels/…)
    let last = path.rsplit('/').next().unwrap_or_default();
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
        _ => other_operation(path),
    };
    let stream = method == "streamGenerateContent";
    let _ = query;
    Identity {
        operation,
        model: model.or(body_model),
        stream,
    }
}

/// A bounded operation name for endpoints the agent passes through without metering.
fn other_operation(path: &str) -> String {
    // The first meaningful segment after a version segment: /v1/images/generations → other:images
    let seg = path
        .split('/')
        .filter(|s| !s.is_empty())
        .find(|s| {
            !(s.starts_with('v') && s[1..].chars().next().is_some_and(|c| c.is_ascii_digit()))
                && *s != "openai"
        })
        .unwrap_or("root");
    let seg: String = seg
        .chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    format!("other:{seg}")
}

/// Removes credentials from a query string for records: `key=...` (Gemini) and anything that looks
/// like a key or token parameter.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let lower = name.to_ascii_lowercase();
            if pair.contains('=')
                && (lower == "key"
                    || lower.contains("api_key")
                    || lower.contains("apikey")
                    || lower.contains("token")
                    || lower == "sig")
            {
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
        assert_eq!(
            id,
            Identity {
                operation: "chat_completions".into(),
                model: Some("gpt-4o-mini".into()),
                stream: true
            }
        );
        let id = identify(
            ApiKind::Openai,
            &Method::POST,
            "/v1/embeddings",
            None,
            Some(br#"{"model":"text-embedding-3-small","input":"x"}"#),
        );
        assert_eq!(id.operation, "embeddings");
        assert!(!id.stream);
        assert_eq!(
            identify(ApiKind::Openai, &Method::POST, "/v1/responses", None, None).operation,
            "responses"
        );
        assert_eq!(
            identify(
                ApiKind::Openai,
                &Method::POST,
                "/v1/completions",
                None,
                None
            )
            .operation,
            "completions"
        );
        assert_eq!(
            identify(
                ApiKind::Openai,
                &Method::POST,
                "/v1/images/generations",
                None,
                None
            )
            .operation,
            "other:images"
        );
        assert_eq!(
            identify(
                ApiKind::Openai,
                &Method::POST,
                "/openai/v1/chat/completions",
                None,
                None
            )
            .operation,
            "chat_completions"
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
    fn azure_deployment_is_the_model() {
        let id = identify(
            ApiKind::Azure,
            &Method::POST,
            "/openai/deployments/gpt4o-prod/chat/completions",
            Some("api-version=2024-10-21"),
            Some(b"{}"),
        );
        assert_eq!(id.model.as_deref(), Some("gpt4o-prod"));
        assert_eq!(id.operation, "chat_completions");
    }

    #[test]
    fn anthropic_and_gemini() {
        let id = identify(
            ApiKind::Anthropic,
            &Method::POST,
            "/v1/messages",
            None,
            Some(br#"{"model":"claude-sonnet-4-5","stream":true}"#),
        );
        assert_eq!((id.operation.as_str(), id.stream), ("messages", true));
        assert_eq!(
            identify(
                ApiKind::Anthropic,
                &Method::POST,
                "/v1/messages/count_tokens",
                None,
                None
            )
            .operation,
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
    }
}
