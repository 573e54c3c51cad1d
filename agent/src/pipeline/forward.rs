//! The forward stage: sends the exchange upstream over the pooled client and waits, within the
//! policy's response-header timeout, for the response head. A stream is asked of the upstream
//! uncompressed (`Accept-Encoding: identity`), because the agent may have to end it with an error event
//! or remove its own usage chunk, which cannot be done inside someone else's compression. When the
//! agent added `stream_options` and the upstream answers 400 naming it (older Azure api-versions,
//! strict OpenAI-compatible servers), the request is sent once more as the client sent it — before any
//! byte reached the client — and the host is remembered. It must not read the response body beyond
//! that one check (observe does).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::exchange::{Exchange, RequestBody};
use super::guard::{Phase, RecordGuard};
use super::route::Capabilities;
use super::ws::Kind;
use super::{Pipeline, Stop};
use crate::body::{self, BoxError};
use crate::providers::decode::{decode_all, Coding};
use crate::providers::dialect::AirlockError;

/// The most of an error body read to see whether it names `stream_options`.
const ERROR_PEEK: usize = 64 << 10;
/// How long that read may take.
const ERROR_PEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// A response body from upstream: still streaming, or already read (the 400 that was checked).
pub enum UpstreamBody {
    /// Streaming from the upstream connection.
    Streaming(Incoming),
    /// Read whole; `None` once sent.
    Buffered(Option<Bytes>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Streaming(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(Into::into))),
            UpstreamBody::Buffered(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streaming(b) => b.is_end_stream(),
            UpstreamBody::Buffered(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streaming(b) => b.size_hint(),
            UpstreamBody::Buffered(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Buffered(None) => SizeHint::with_exact(0),
        }
    }
}

impl Pipeline {
    /// Forward: sends the request and returns the response head (its body still streaming).
    pub(super) async fn forward(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<Response<UpstreamBody>, Stop> {
        let resp = self.send(ex, guard).await?;
        if resp.status() != StatusCode::BAD_REQUEST || !ex.usage_injected {
            return Ok(resp.map(UpstreamBody::Streaming));
        }
        // The agent's own addition may be what the upstream refused.
        let (parts, incoming) = resp.into_parts();
        let peeked = peek_error_body(&parts.headers, incoming).await;
        let names_it = peeked
            .as_ref()
            .is_some_and(|(_, decoded)| memchr::memmem::find(decoded, b"stream_options").is_some());
        if !names_it {
            let Some((wire, _)) = peeked else {
                return Err(Stop::Refuse {
                    err: AirlockError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error_unreadable",
                        format!(
                            "{} answered 400 with a body Airlock could not read (over {} KiB, too slow or \
                             undecodable); retry the request",
                            ex.target.host,
                            ERROR_PEEK >> 10
                        ),
                    ),
                    by: "forward".into(),
                });
            };
            return Ok(Response::from_parts(
                parts,
                UpstreamBody::Buffered(Some(wire)),
            ));
        }
        self.capabilities
            .remember_no_stream_options(Capabilities::key(ex));
        ex.restore_body();
        ex.usage_injected = false;
        guard.note(|r| r.usage_injected = false);
        tracing::debug!(id = %ex.id, host = %ex.target.host, "upstream refused stream_options; sent again as the client sent it");
        let resp = self.send(ex, guard).await?;
        Ok(resp.map(UpstreamBody::Streaming))
    }

    async fn send(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<Response<Incoming>, Stop> {
        let target = &ex.target;
        let port = match target.port {
            Some(p) if target.plain_http || !self.upstream.is_overridden(&target.host) => {
                format!(":{p}")
            }
            _ => String::new(),
        };
        // Plain HTTP only to a local rule's loopback server; every other upstream is HTTPS.
        let scheme = if target.plain_http { "http" } else { "https" };
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let uri = format!("{scheme}://{host}{port}{}", target.path_and_query);
        let body_len = ex.body_len().unwrap_or(0);
        let mut builder = Request::builder()
            .method(ex.head.method.clone())
            .uri(uri)
            .version(Version::HTTP_11);
        if let Some(h) = builder.headers_mut() {
            // Only a request the agent changed may be sent twice (the stream_options retry); any other
            // gives its headers up instead of copying them.
            *h = if ex.usage_injected {
                ex.head.headers.clone()
            } else {
                std::mem::take(&mut ex.head.headers)
            };
            h.remove(header::HOST);
            if let Some(up) = &ex.upgrade {
                up.apply_to(
                    h,
                    self.inspects_responses() && Kind::of(&ex.target).is_some(),
                );
            }
            if ex.identity.stream {
                h.insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
        }
        let body = match ex.take_body_for_sending() {
            RequestBody::Buffered(b) => body::full(b),
            RequestBody::Streaming(s) => s,
        };
        let req = builder.body(body).map_err(|e| Stop::Refuse {
            err: AirlockError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Airlock cannot forward this request: {e}"),
            ),
            by: "forward".into(),
        })?;
        guard.note(|r| r.request_bytes = body_len);
        guard.set_phase(Phase::WaitingForUpstream);
        let timeout = self.limits.response_header_timeout();
        let sent = match &ex.upgrade {
            Some(_) => {
                tracing::trace!(id = %ex.id, host = %ex.target.host, "forwarding a protocol upgrade");
                let sent = tokio::time::timeout(timeout, self.upstream.send_upgrade(req)).await;
                tracing::trace!(id = %ex.id, ok = matches!(sent, Ok(Ok(_))), "upstream answered the upgrade");
                sent
            }
            None => tokio::time::timeout(timeout, self.upstream.send(req)).await,
        };
        match sent {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                tracing::warn!(id = %ex.id, host = %ex.target.host, error = %e.message, "upstream request failed");
                Err(Stop::Refuse {
                    err: AirlockError::new(StatusCode::BAD_GATEWAY, "upstream_unreachable", e.message),
                    by: "forward".into(),
                })
            }
            Err(_) => Err(Stop::Refuse {
                err: AirlockError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    format!(
                        "{} sent no response within {} s, so Airlock gave up; retry the request, or ask your \
                         administrator to raise limits.response_header_timeout_secs",
                        ex.target.host,
                        timeout.as_secs()
                    ),
                ),
                by: "forward".into(),
            }),
        }
    }
}

/// Reads a (small) error body whole: the bytes as they came, and decoded for reading. `None` if it
/// is too big, too slow or unreadable — then it is not the answer to our own parameter.
async fn peek_error_body(
    headers: &http::HeaderMap,
    incoming: Incoming,
) -> Option<(Bytes, Vec<u8>)> {
    let limited = http_body_util::Limited::new(incoming, ERROR_PEEK);
    let wire = tokio::time::timeout(ERROR_PEEK_TIMEOUT, limited.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let coding = Coding::parse(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
    .ok()?;
    let decoded = match coding {
        Coding::Identity => wire.to_vec(),
        c => decode_all(c, &wire, ERROR_PEEK).ok()?,
    };
    Some((wire, decoded))
}
