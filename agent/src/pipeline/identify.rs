//! The identify stage: reads what the request is — provider, operation, model, stream or not — from its
//! head and, for JSON, its body. A JSON body is read whole, within bounds: the policy's body limit (413
//! in the caller's dialect), a share of the agent-wide memory budget for buffered bodies
//! ([`crate::budget`]; 503 with
//! `retry-after` when it is spent), and a slow-client guard (408 when the body stalls or trickles).
//! Compressed bodies are decoded for reading and forwarded as sent. Other bodies stream upstream as
//! they arrive, under the same stall guard. It must not change the request (route does).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::exchange::{mark_sensitive, Exchange, RequestBody};
use super::guard::{Phase, RecordGuard, RequestFacts};
use super::idle::IdleTimer;
use super::upgrade::take_upgrade;
use super::{strip_hop_by_hop, Pipeline, Stop, Target};
use crate::body::{BoxError, ProxyBody};
use crate::budget::BodyPermit;
use crate::providers::decode::{decode_all, Coding, DecodeError};
use crate::providers::dialect::AirlockError;
use crate::providers::{self, Identity};

/// Slow clients: after this long, a body must have averaged at least [`MIN_BODY_RATE`] bytes a second.
const BODY_RATE_GRACE: Duration = Duration::from_secs(30);
/// The slowest average body rate accepted after the grace period (a trickle is a slowloris).
const MIN_BODY_RATE: u64 = 1024;

/// Why a body could not be read.
enum ReadError {
    /// The client closed its connection mid-body: nobody is left to answer.
    ClientGone,
    /// Refuse with this error.
    Refuse(AirlockError),
}

impl From<AirlockError> for ReadError {
    fn from(e: AirlockError) -> Self {
        ReadError::Refuse(e)
    }
}

/// Whether a body error means the client went away (EOF or reset mid-body, a cancelled HTTP/2
/// stream) rather than sent something wrong.
fn client_went_away(e: &BoxError) -> bool {
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
            return true;
        }
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        src = s.source();
    }
    false
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn too_large(limit: usize, what: &str) -> AirlockError {
    AirlockError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!(
            "the request body{what} is larger than Airlock's limit of {} MiB for JSON requests; send a smaller \
             request, or ask your administrator to raise limits.max_request_body_mib in the policy",
            limit >> 20
        ),
    )
}

fn busy(total: usize) -> AirlockError {
    let mut e = AirlockError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "agent_busy",
        format!(
            "Airlock is holding its limit of {} MiB of request bodies in memory for other requests; retry in a moment",
            total >> 20
        ),
    );
    e.retry_after = Some(1);
    e
}

fn too_slow(why: String) -> AirlockError {
    AirlockError::new(StatusCode::REQUEST_TIMEOUT, "request_body_timeout", why)
}

impl Pipeline {
    /// Identify: takes the request apart, reads what must be read and builds the exchange.
    pub(super) async fn identify<B>(
        &self,
        req: http::Request<B>,
        target: Target,
        guard: &mut RecordGuard,
    ) -> Result<Exchange, Stop>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut head, body) = req.into_parts();
        let upgrade = take_upgrade(&mut head);
        strip_hop_by_hop(&mut head.headers);
        mark_sensitive(&mut head.headers);
        let (path, query) = target.split_path();
        let body = body.map_err(Into::into).boxed_unsync();

        guard.set_phase(Phase::ReadingBody);
        let read = self.read_body(&head, body).await;
        let (body, readable, budget) = match read {
            Ok(b) => b,
            Err(e) => {
                let op = providers::identify(target.api, &head.method, path, query, None).operation;
                guard.note(|r| r.operation = op);
                return Err(match e {
                    ReadError::ClientGone => Stop::ClientGone,
                    ReadError::Refuse(err) => Stop::Refuse {
                        err,
                        by: "identify".into(),
                    },
                });
            }
        };
        let identity: Identity =
            providers::identify(target.api, &head.method, path, query, readable.as_deref());
        guard.note(|r| {
            r.operation = identity.operation.clone();
            r.model = identity.model.clone();
            r.stream = identity.stream;
        });
        guard.set_facts(RequestFacts {
            api: target.api,
            operation: identity.operation.clone(),
            body: readable.clone(),
        });
        Ok(Exchange {
            id: guard.id().to_string(),
            target,
            identity,
            head,
            body,
            readable,
            upgrade,
            original: None,
            response_headers: Vec::new(),
            usage_injected: false,
            _budget: Some(budget),
        })
    }

    async fn read_body(
        &self,
        head: &http::request::Parts,
        mut body: ProxyBody,
    ) -> Result<(RequestBody, Option<Bytes>, BodyPermit), ReadError> {
        let mut permit = BodyPermit::none();
        let declared: Option<u64> =
            header_str(&head.headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let ct = header_str(&head.headers, header::CONTENT_TYPE).unwrap_or("");
        let json = ct.is_empty() || ct.to_ascii_lowercase().contains("json");
        let idle = self.limits.request_body_idle_timeout();
        if !json || head.method == Method::GET || head.method == Method::HEAD {
            let guarded = StallGuard::new(body, idle).boxed_unsync();
            return Ok((RequestBody::Streaming(guarded), None, permit));
        }
        let limit = self.limits.max_request_body();
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit, "").into());
        }
        let start = Instant::now();
        let mut wire = BytesMut::with_capacity(
            declared
                .map(|n| n as usize)
                .unwrap_or(0)
                .min(limit)
                .min(1 << 20),
        );
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Ok(Some(Ok(f))) => f,
                Ok(None) => break,
                Ok(Some(Err(e))) if client_went_away(&e) => return Err(ReadError::ClientGone),
                Ok(Some(Err(e))) => {
                    return Err(AirlockError::new(
                        StatusCode::BAD_REQUEST,
                        "request_body_unreadable",
                        format!("Airlock could not read the request body from the client ({e}); retry the request"),
                    )
                    .into())
                }
                Err(_) => {
                    return Err(too_slow(format!(
                        "the client sent no request body bytes for {} s; Airlock stopped waiting. Retry the request",
                        idle.as_secs()
                    ))
                    .into())
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing the agent reads
            };
            if wire.len() + data.len() > limit {
                return Err(too_large(limit, "").into());
            }
            if !self.budget.take(&mut permit, data.len()) {
                return Err(busy(self.budget.total()).into());
            }
            wire.extend_from_slice(&data);
            let elapsed = start.elapsed();
            if elapsed > BODY_RATE_GRACE
                && (wire.len() as u64) < MIN_BODY_RATE.saturating_mul(elapsed.as_secs())
            {
                return Err(too_slow(format!(
                    "the client sent the request body too slowly ({} bytes in {} s); Airlock stopped waiting. \
                     Check the network and retry",
                    wire.len(),
                    elapsed.as_secs()
                ))
                .into());
            }
        }
        let wire = wire.freeze();
        let readable = match Coding::parse(header_str(&head.headers, header::CONTENT_ENCODING)) {
            Ok(Coding::Identity) => Some(wire.clone()),
            Ok(coding) => match decode_all(coding, &wire, limit) {
                Ok(d) => {
                    if !self.budget.take(&mut permit, d.len()) {
                        return Err(busy(self.budget.total()).into());
                    }
                    Some(Bytes::from(d))
                }
                Err(DecodeError::TooLarge(_)) => {
                    return Err(too_large(limit, " once decompressed").into())
                }
                Err(e) => {
                    return Err(AirlockError::new(
                        StatusCode::BAD_REQUEST,
                        "request_body_undecodable",
                        format!("the request body does not match its Content-Encoding ({e}); send it uncompressed or fix the encoding"),
                    )
                    .into())
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "request body forwarded unread");
                None
            }
        };
        Ok((RequestBody::Buffered(wire), readable, permit))
    }
}

/// A streamed request body that gives up when the client sends nothing for too long, so a stalled
/// upload does not hold an upstream connection forever.
struct StallGuard {
    inner: ProxyBody,
    idle: IdleTimer,
}

impl StallGuard {
    fn new(inner: ProxyBody, idle: Duration) -> Self {
        StallGuard {
            inner,
            idle: IdleTimer::new(idle),
        }
    }
}

impl Body for StallGuard {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.idle.touch();
                Poll::Ready(r)
            }
            Poll::Pending => match this.idle.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "the client sent no request body bytes for {} s",
                    this.idle.idle().as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
