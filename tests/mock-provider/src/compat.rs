//! The parts of the OpenAI-compatible services that are more than one field of an OpenAI body:
//! Azure OpenAI's URL shapes (`api-version` rule, deployment lookup), its string-coded error bodies,
//! content filter annotations and content filter refusal, its older API versions' refusal of
//! `stream_options`, strict servers' (vLLM) refusal of extra body fields, Groq's timing fields, and
//! OpenRouter's processing comment. `openai.rs` builds the OpenAI shapes and asks this module for the differences;
//! which host is which service is decided in `reply.rs` ([`crate::reply::Flavor`]).

use std::sync::LazyLock;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use crate::j;
use crate::json::J;
use crate::reply::{openai_error, query_param, sse_data, Call, ErrorKind, Flavor, Reply};

/// The first Azure dated `api-version` that accepts `stream_options` (`2024-09-01-preview`); older
/// dates answer 400 "Unrecognized request argument supplied: stream_options".
pub const AZURE_STREAM_OPTIONS_SINCE: &str = "2024-09-01";

/// Request header naming top-level body fields the server refuses, vLLM-style
/// (`x-mock-reject-params: stream_options,service_tier`).
pub const REJECT_PARAMS: &str = "x-mock-reject-params";

/// The underlying model an Azure deployment reports when `x-mock-azure-model` is absent.
pub const AZURE_DEFAULT_MODEL: &str = "gpt-4o-2024-08-06";

/// The deployment name the mock treats as not deployed (404 `DeploymentNotFound`).
pub const MISSING_DEPLOYMENT: &str = "missing";

/// OpenRouter's keep-alive comment frame.
pub const OPENROUTER_PROCESSING: &[u8] = b": OPENROUTER PROCESSING\n\n";

/// The generic keep-alive comment frame of `x-mock-sse-comments: 1`.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. \
Make sure to provide a valid key for an active subscription and use a correct regional API endpoint \
for your resource.";

/// Whether `v` is shaped like an Azure dated `api-version`: `YYYY-MM-DD`, optionally followed by
/// `-preview`.
pub fn api_version_ok(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Whether a well-formed dated `api-version` predates `stream_options` support (its date is before
/// [`AZURE_STREAM_OPTIONS_SINCE`]; the dates compare as text since they are `YYYY-MM-DD`).
pub fn api_version_rejects_stream_options(v: &str) -> bool {
    api_version_ok(v)
        && v.get(..10)
            .is_some_and(|date| date < AZURE_STREAM_OPTIONS_SINCE)
}

/// The 400 a host answers when the request body has fields it does not accept, if it does:
/// - an Azure dated-API deployment call (`deployment`) with an `api-version` older than
///   `2024-09-01-preview` and a `stream_options` field (Azure's own wording);
/// - any OpenAI-dialect request with `x-mock-reject-params` naming a top-level field the body has
///   (vLLM's pydantic `extra_forbidden` error, one entry per field in body order).
///
/// Bodies that are not JSON objects are left to the endpoint's own validation.
pub fn rejected_params(call: &Call<'_>, deployment: Option<&str>) -> Option<Reply> {
    let old_azure = call.flavor == Flavor::Azure
        && deployment.is_some_and(|d| d != MISSING_DEPLOYMENT)
        && query_param(call.query, "api-version").is_some_and(api_version_rejects_stream_options);
    let strict = call.header(REJECT_PARAMS).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect::<Vec<_>>()
    });
    if !old_azure && strict.as_ref().is_none_or(Vec::is_empty) {
        return None;
    }
    let body = serde_json::from_slice::<Value>(call.body).ok()?;
    let fields = body.as_object()?;
    if old_azure && fields.contains_key("stream_options") {
        return Some(openai_error(
            ErrorKind::BadRequest,
            Some("Unrecognized request argument supplied: stream_options"),
        ));
    }
    let strict = strict?;
    let errors: Vec<String> = fields
        .iter()
        .filter(|(k, _)| strict.contains(&k.as_str()))
        .map(|(k, v)| {
            format!(
                "{{'type': 'extra_forbidden', 'loc': ('body', {}), 'msg': 'Extra inputs are not permitted', 'input': {}}}",
                py_str(k),
                py_repr(v)
            )
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    let body = j!({
        "object": "error",
        "message": (format!("[{}]", errors.join(", "))),
        "type": "BadRequestError",
        "param": null,
        "code": 400u64,
    });
    Some(Reply::json(StatusCode::BAD_REQUEST, &body))
}

/// Python's `repr` of a string (what pydantic's error list shows).
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr` of a JSON value as Python parsed it (`True`, `None`, `{'k': 1}`, `[1, 2]`).
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => py_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn azure_body(status: StatusCode, code: &'static str, message: &str) -> Reply {
    Reply::json(
        status,
        &j!({"error": {"code": code, "message": (message.to_owned())}}),
    )
}

/// Azure OpenAI's error for `kind`: its own string-coded bodies for 401, 404 and 429, and the
/// OpenAI body (which Azure passes through from the model service) for the rest.
pub fn azure_error(kind: ErrorKind, message: Option<&str>) -> Reply {
    match kind {
        ErrorKind::MissingKey | ErrorKind::InvalidKey => azure_body(
            StatusCode::UNAUTHORIZED,
            "401",
            message.unwrap_or(ACCESS_DENIED),
        ),
        ErrorKind::NotFound => azure_body(
            StatusCode::NOT_FOUND,
            "404",
            message.unwrap_or("Resource not found"),
        ),
        ErrorKind::RateLimited => azure_body(
            StatusCode::TOO_MANY_REQUESTS,
            "429",
            message.unwrap_or(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version \
2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after \
1 second. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the \
default rate limit.",
            ),
        )
        .with_header("retry-after", "1")
        .with_header("retry-after-ms", "1000")
        .with_header("x-ratelimit-remaining-requests", "0")
        .with_header("x-ratelimit-remaining-tokens", "0"),
        _ => openai_error(kind, message),
    }
}

/// Azure's 404 for a deployment that does not exist.
pub fn deployment_not_found() -> Reply {
    azure_body(
        StatusCode::NOT_FOUND,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within \
the last 5 minutes, please wait a moment and try again.",
    )
}

fn safe() -> J {
    j!({"filtered": false, "severity": "safe"})
}

fn not_detected() -> J {
    j!({"filtered": false, "detected": false})
}

/// `content_filter_results` of a prompt (inside `prompt_filter_results`).
fn prompt_filter() -> J {
    j!({
        "hate": (safe()),
        "jailbreak": (not_detected()),
        "self_harm": (safe()),
        "sexual": (safe()),
        "violence": (safe()),
    })
}

/// `prompt_filter_results` of a non-streamed answer or of the first stream chunk.
pub fn prompt_filter_results() -> J {
    j!([{"prompt_index": 0u64, "content_filter_results": (prompt_filter())}])
}

/// `content_filter_results` of a choice that carries generated content.
pub fn choice_filter_results() -> J {
    j!({
        "hate": (safe()),
        "protected_material_code": (not_detected()),
        "protected_material_text": (not_detected()),
        "self_harm": (safe()),
        "sexual": (safe()),
        "violence": (safe()),
    })
}

/// The first frame of every Azure chat/completions stream: no choices, empty `id`/`model`/`object`,
/// the prompt's filter results.
pub fn azure_first_chunk() -> Bytes {
    static FRAME: LazyLock<Bytes> = LazyLock::new(|| {
        sse_data(&j!({
            "id": "",
            "choices": [],
            "created": 0u64,
            "model": "",
            "object": "",
            "prompt_filter_results": (prompt_filter_results()),
        }))
    });
    FRAME.clone()
}

/// Azure's 400 when the prompt trips the content filter (`x-mock-fault: content-filter`).
pub fn content_filter_refusal() -> Reply {
    let mut results = prompt_filter();
    results.set("violence", j!({"filtered": true, "severity": "medium"}));
    let body = j!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content \
    management policy. Please modify your prompt and retry. To learn more about our content filtering \
    policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400u64,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": results,
        },
    }});
    Reply::json(StatusCode::BAD_REQUEST, &body)
}

/// Groq's usage object: OpenAI's token counts interleaved with fixed timings (seconds), plus
/// `prompt_tokens_details` / `completion_tokens_details` only when they are not zero.
pub fn groq_usage(input: u64, cached: u64, completion: u64, reasoning: u64) -> J {
    let mut u = j!({
        "queue_time": 0.0125f64,
        "prompt_tokens": input,
        "prompt_time": 0.0025f64,
        "completion_tokens": completion,
        "completion_time": 0.03125f64,
        "total_tokens": (input + completion),
        "total_time": 0.03375f64,
    });
    if cached > 0 {
        u.set("prompt_tokens_details", j!({ "cached_tokens": cached }));
    }
    if reasoning > 0 {
        u.set(
            "completion_tokens_details",
            j!({ "reasoning_tokens": reasoning }),
        );
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(api_version_ok("2024-10-21"));
        assert!(api_version_ok("2025-04-01-preview"));
        assert!(!api_version_ok("preview"));
        assert!(!api_version_ok("2024-1-21"));
        assert!(!api_version_ok(""));
    }

    #[test]
    fn stream_options_cut_over() {
        for old in [
            "2024-02-01",
            "2024-06-01",
            "2023-05-15",
            "2024-08-01-preview",
        ] {
            assert!(api_version_rejects_stream_options(old), "{old}");
        }
        for new in [
            "2024-09-01-preview",
            "2024-10-21",
            "2025-04-01-preview",
            "2024-09-01",
        ] {
            assert!(!api_version_rejects_stream_options(new), "{new}");
        }
        assert!(!api_version_rejects_stream_options("v1"));
    }

    #[test]
    fn python_reprs() {
        let v: Value = serde_json::json!({"include_usage": true, "x": [1, 2.5, 3.0, null, "it's"]});
        assert_eq!(
            py_repr(&v),
            r#"{'include_usage': True, 'x': [1, 2.5, 3.0, None, "it's"]}"#
        );
        assert_eq!(py_str("a'b\"c\n"), r#"'a\'b"c\n'"#);
    }

    #[test]
    fn first_chunk_shape() {
        let b = azure_first_chunk();
        let text = String::from_utf8_lossy(&b);
        assert!(text.starts_with(r#"data: {"id":"","choices":[],"created":0,"model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":"#));
        assert!(text.ends_with("}]}\n\n"));
    }
}
