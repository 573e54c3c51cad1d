//! The body type every response the agent produces has, and constructors for small local bodies
//! (JSON answers with the headers that keep browsers from using them).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// Boxed error type carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response or request body: streamed from upstream, or a small local answer.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON answer of the agent's own (the local endpoints, the control API): never cached, never
/// sniffed as anything else, never framed or run by a browser.
pub fn json(status: http::StatusCode, value: &serde_json::Value) -> http::Response<ProxyBody> {
    use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
    let mut r = http::Response::new(full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}
