//! Airlock's own errors, rendered the way the caller's provider would render them, so SDKs surface the
//! message and retry (or not) correctly (DESIGN.md decision 5). It owns the body shapes, status-to-type
//! maps and retry headers; it must not decide whether something is an error.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{full, ProxyBody};
use crate::policy::ApiKind;

/// An error the agent answers with itself.
#[derive(Debug, Clone)]
pub struct AirlockError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable Airlock type (`upstream_unreachable`, `request_too_large`, `not_found` …).
    pub kind: &'static str,
    /// What happened and what to do next.
    pub message: String,
    /// Seconds after which a retry makes sense (`retry-after`).
    pub retry_after: Option<u64>,
    /// Overrides SDK retry behaviour (`x-should-retry`).
    pub should_retry: Option<bool>,
}

impl AirlockError {
    /// An error with no retry hints.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        AirlockError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            should_retry: None,
        }
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_exceeded",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

fn gemini_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

/// The JSON body for `err` in `api`'s dialect (`None`: the OpenAI shape, the most widely understood).
pub fn body(
    api: Option<ApiKind>,
    err: &AirlockError,
    request_id: Option<&str>,
) -> serde_json::Value {
    let airlock = json!({"type": err.kind, "request_id": request_id});
    match api {
        Some(ApiKind::Anthropic) => json!({
            "type": "error",
            "error": {"type": anthropic_type(err.status), "message": err.message},
            "request_id": request_id,
            "airlock": airlock,
        }),
        // Ollama's native errors are `{"error": "text"}`.
        Some(ApiKind::Ollama) => json!({"error": err.message, "airlock": airlock}),
        Some(ApiKind::Gemini | ApiKind::CodeAssist) => json!({
            "error": {
                "code": err.status.as_u16(),
                "message": err.message,
                "status": gemini_status(err.status),
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": err.kind, "domain": "airlock"}],
            },
            "airlock": airlock,
        }),
        _ => json!({
            "error": {"message": err.message, "type": openai_type(err.status), "param": null, "code": err.kind},
            "airlock": airlock,
        }),
    }
}

/// A complete HTTP response for `err` in `api`'s dialect.
pub fn response(
    api: Option<ApiKind>,
    err: &AirlockError,
    request_id: Option<&str>,
) -> Response<ProxyBody> {
    let bytes = Bytes::from(body(api, err, request_id).to_string());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = err.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(err.kind) {
        h.insert("x-airlock-error", v);
    }
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        h.insert("x-airlock-request-id", id);
    }
    if let Some(secs) = err.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(retry) = err.should_retry {
        h.insert(
            "x-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
    }
    resp
}

/// An error frame for a stream whose status line and headers have already gone out, in the caller's
/// dialect (wire-formats.md §9): OpenAI chat `data: {"error":…}`, Responses `event: error`, Anthropic
/// `event: error`, Gemini `data: {"error":…}`. The stream should end right after it.
pub fn stream_error_frame(
    api: ApiKind,
    operation: &str,
    err: &AirlockError,
    request_id: Option<&str>,
) -> Bytes {
    let frame = match api {
        ApiKind::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": anthropic_type(err.status), "message": err.message},
                   "request_id": request_id, "airlock": {"type": err.kind}})
        ),
        ApiKind::Openai | ApiKind::Azure if operation == "responses" => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "code": err.kind, "message": err.message, "param": null,
                   "airlock": {"type": err.kind, "request_id": request_id}})
        ),
        ApiKind::Ollama => format!("{}\n", body(Some(api), err, request_id)),
        _ => format!("data: {}\n\n", body(Some(api), err, request_id)),
    };
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_stream_frames_speak_each_dialect() {
        let e = AirlockError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_stream_broken",
            "the stream broke",
        );
        let a = String::from_utf8(
            stream_error_frame(ApiKind::Anthropic, "messages", &e, None).to_vec(),
        )
        .unwrap();
        assert!(
            a.starts_with(
                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""
            ),
            "{a}"
        );
        let o = String::from_utf8(
            stream_error_frame(ApiKind::Openai, "chat_completions", &e, None).to_vec(),
        )
        .unwrap();
        assert!(
            o.starts_with("data: {\"error\":{\"message\":\"the stream broke\""),
            "{o}"
        );
        let r =
            String::from_utf8(stream_error_frame(ApiKind::Openai, "responses", &e, None).to_vec())
                .unwrap();
        assert!(
            r.starts_with(
                "event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_stream_broken\""
            ),
            "{r}"
        );
        let g = String::from_utf8(
            stream_error_frame(ApiKind::Gemini, "stream_generate_content", &e, None).to_vec(),
        )
        .unwrap();
        assert!(g.contains("\"status\":\"INTERNAL\""), "{g}");
        for f in [a, o, r, g] {
            assert!(f.ends_with("\n\n"));
        }
    }

    #[test]
    fn each_dialect_has_its_shape() {
        let e = AirlockError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            "cannot reach api.openai.com",
        );
        let o = body(Some(ApiKind::Openai), &e, Some("req_1"));
        assert_eq!(o["error"]["type"], "server_error");
        assert_eq!(o["error"]["code"], "upstream_unreachable");
        assert_eq!(o["airlock"]["type"], "upstream_unreachable");
        let a = body(Some(ApiKind::Anthropic), &e, None);
        assert_eq!(
            (a["type"].as_str(), a["error"]["type"].as_str()),
            (Some("error"), Some("api_error"))
        );
        let g = body(
            Some(ApiKind::Gemini),
            &AirlockError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "x"),
            None,
        );
        assert_eq!(
            (g["error"]["code"].as_u64(), g["error"]["status"].as_str()),
            (Some(413), Some("INVALID_ARGUMENT"))
        );
    }

    #[test]
    fn retry_headers_are_set() {
        let mut e = AirlockError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        e.retry_after = Some(3);
        e.should_retry = Some(false);
        let r = response(Some(ApiKind::Openai), &e, Some("req_9"));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        assert_eq!(r.headers()["x-should-retry"], "false");
        assert_eq!(r.headers()["x-airlock-request-id"], "req_9");
    }
}
