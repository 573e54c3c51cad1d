//! The request as request stages see it: where it goes ([`Target`]), what it is ([`Identity`]), its head
//! and its body. Body edits go through [`Exchange::set_body`], which keeps the framing headers true
//! (no stale `Content-Length`, no `Content-Encoding` on a body that is no longer encoded). Credentials
//! never print: credential headers are marked sensitive as the request arrives, and `Debug` shows
//! bodies by length only. It owns the exchange's shape; it must not decide anything about it.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};

use super::upgrade::Upgrade;
use super::Target;
use crate::body::ProxyBody;
use crate::providers::Identity;

/// Headers that carry credentials, to the provider or to a proxy (pre-parsed names: this runs on
/// every request).
pub const CREDENTIAL_HEADERS: [HeaderName; 8] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
    header::COOKIE,
    HeaderName::from_static("openai-api-key"),
    HeaderName::from_static("x-airlock-key"),
];

/// Marks every credential header sensitive: its value is then never printed by `Debug` and never
/// indexed by HTTP/2 header compression.
pub fn mark_sensitive(headers: &mut HeaderMap) {
    for name in &CREDENTIAL_HEADERS {
        if let header::Entry::Occupied(mut e) = headers.entry(name) {
            for v in e.iter_mut() {
                v.set_sensitive(true);
            }
        }
    }
}

/// A request body: read whole (JSON the stages may read) or streamed through untouched.
pub enum RequestBody {
    /// The whole body, as it travels (possibly compressed).
    Buffered(Bytes),
    /// A body that is streamed upstream as it arrives.
    Streaming(ProxyBody),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Buffered(b) => write!(f, "Buffered({} bytes)", b.len()),
            RequestBody::Streaming(_) => f.write_str("Streaming"),
        }
    }
}

/// The request before the original body was changed, kept while it may still be needed (the
/// retry without injected `stream_options`).
#[derive(Debug, Clone)]
pub(super) struct Original {
    pub(super) body: Bytes,
    pub(super) content_encoding: Option<http::HeaderValue>,
}

/// What request-side stages see and may change.
pub struct Exchange {
    /// Request id (also the record's id and `x-airlock-request-id`).
    pub id: String,
    /// Destination.
    pub target: Target,
    /// What the request is.
    pub identity: Identity,
    /// Request method, URI, headers (already without hop-by-hop headers, credentials sensitive).
    pub head: http::request::Parts,
    pub(super) body: RequestBody,
    pub(super) readable: Option<Bytes>,
    /// A protocol upgrade the client asked for (the Realtime API's WebSocket), passed through.
    pub upgrade: Option<Upgrade>,
    /// The body as the client sent it, once a stage changed it.
    pub(super) original: Option<Original>,
    /// Whether the agent added `stream_options.include_usage` upstream.
    pub(super) usage_injected: bool,
    /// The share of the agent's request-body memory this exchange holds, released when it ends.
    pub(super) _budget: Option<crate::budget::BodyPermit>,
    /// Headers a stage adds to the response the client gets (`x-airlock-budget-remaining`).
    pub response_headers: Vec<(HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values marked sensitive print as "Sensitive"; bodies by length only.
        f.debug_struct("Exchange")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("identity", &self.identity)
            .field("method", &self.head.method)
            .field("uri", &self.head.uri.path())
            .field("headers", &self.head.headers)
            .field("body", &self.body)
            .field("readable", &self.readable.as_ref().map(Bytes::len))
            .field("upgrade", &self.upgrade)
            .finish()
    }
}

impl Exchange {
    /// The body decoded for reading (its Content-Encoding undone), when it is JSON the agent read.
    pub fn readable(&self) -> Option<&Bytes> {
        self.readable.as_ref()
    }

    /// The body's length as it will be sent, when known.
    pub fn body_len(&self) -> Option<u64> {
        match &self.body {
            RequestBody::Buffered(b) => Some(b.len() as u64),
            RequestBody::Streaming(_) => self
                .head
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }
    }

    /// Replaces the body with `json` (uncompressed), fixing the framing headers: `Content-Length` is
    /// dropped (the upstream client sets it from the new body) and so is `Content-Encoding` (the new
    /// body is sent as it is). The body the client sent is kept for a retry.
    pub fn set_body(&mut self, json: Bytes) {
        if self.original.is_none() {
            if let RequestBody::Buffered(b) = &self.body {
                self.original = Some(Original {
                    body: b.clone(),
                    content_encoding: self.head.headers.get(header::CONTENT_ENCODING).cloned(),
                });
            }
        }
        self.head.headers.remove(header::CONTENT_LENGTH);
        self.head.headers.remove(header::CONTENT_ENCODING);
        self.head
            .headers
            .remove(HeaderName::from_static("content-md5"));
        self.readable = Some(json.clone());
        self.body = RequestBody::Buffered(json);
    }

    /// Puts back the body the client sent (undoing every `set_body`).
    pub(super) fn restore_body(&mut self) -> bool {
        let Some(orig) = self.original.take() else {
            return false;
        };
        self.head.headers.remove(header::CONTENT_LENGTH);
        if let Some(ce) = orig.content_encoding {
            self.head.headers.insert(header::CONTENT_ENCODING, ce);
        }
        self.body = RequestBody::Buffered(orig.body);
        true
    }

    /// A copy of the buffered body for sending (cheap: `Bytes` is shared), or the streaming body
    /// taken out (it can be sent once).
    pub(super) fn take_body_for_sending(&mut self) -> RequestBody {
        match &mut self.body {
            RequestBody::Buffered(b) => RequestBody::Buffered(b.clone()),
            RequestBody::Streaming(_) => {
                std::mem::replace(&mut self.body, RequestBody::Buffered(Bytes::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_never_print() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-live-123".parse().unwrap());
        h.insert("x-api-key", "sk-ant-456".parse().unwrap());
        h.insert("x-goog-api-key", "AIza789".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        mark_sensitive(&mut h);
        let shown = format!("{h:?}");
        for secret in ["sk-live-123", "sk-ant-456", "AIza789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("application/json"));
        let body = RequestBody::Buffered(Bytes::from_static(b"{\"prompt\":\"secret plans\"}"));
        assert!(!format!("{body:?}").contains("secret plans"));
    }
}
