//! The body type every response the agent produces has, and constructors for small local bodies.

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
