//! The parts of the OpenAI-compatible services that are more than one field of an OpenAI body:
//! Azure OpenAI's URL shapes (`api-version` rule, deployment lookup), its string-coded error bodies,
//! content filter annotations and content filter refusal, Groq's timing fields, and OpenRouter's
//! processing comment. `openai.rs` builds the OpenAI shapes and asks this module for the differences;
//! which host is which service is decided in `reply.rs` ([`crate::reply::Flavor`]).

use std::sync::LazyLock;

use bytes::Bytes;
use http::StatusCode;

use crate::j;
use crate::json::J;
use crate::reply::{openai_error, sse_data, ErrorKind, Reply};

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
    fn first_chunk_shape() {
        let b = azure_first_chunk();
        let text = String::from_utf8_lossy(&b);
        assert!(text.starts_with(r#"data: {"id":"","choices":[],"created":0,"model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":"#));
        assert!(text.ends_with("}]}\n\n"));
    }
}
