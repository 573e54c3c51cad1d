//! The observe-stream stage: a response body wrapper that hands every chunk to the client the moment it
//! arrives while the response parser reads a copy. Two exceptions, both bounded: when the agent itself
//! asked upstream for stream usage, the extra usage frame is removed (frames are released whole, so at most
//! one partial frame waits); and when an upstream event stream breaks, the client gets an error frame in
//! its provider's dialect instead of a silently truncated stream. When the body ends — cleanly, broken, or
//! because the client left — the record is completed exactly once and the response-side stages run.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::body::BoxError;
use super::ResponseStages;
use crate::policy::ApiKind;
use crate::providers::dialect::{stream_error_frame, AirlockError};
use crate::providers::request::texts;
use crate::providers::response::{ResponseParser, ResponseSummary};
use crate::providers::strip::UsageChunkStripper;
use crate::record::{Outcome, Record, Usage};

/// Operations whose responses should carry usage; for them a missing usage is estimated.
const METERED: [&str; 8] = [
    "chat_completions",
    "completions",
    "responses",
    "embeddings",
    "messages",
    "generate_content",
    "stream_generate_content",
    "embed_content",
];

/// What the observer knows about the request, for estimates and error frames.
pub(super) struct RequestFacts {
    pub(super) api: ApiKind,
    pub(super) operation: String,
    /// The (decoded) JSON request body, kept only to estimate input tokens if usage never arrives.
    pub(super) body: Option<Bytes>,
    /// Whether the response is an event stream with a success status (error frames can be added).
    pub(super) sse_ok: bool,
}

/// State kept while a response streams.
pub(super) struct Tap {
    pub(super) parser: ResponseParser,
    pub(super) stripper: Option<UsageChunkStripper>,
    pub(super) request: RequestFacts,
    pub(super) record: Record,
    pub(super) start: Instant,
    pub(super) first_byte: Option<Duration>,
    pub(super) bytes: u64,
    pub(super) after: Arc<ResponseStages>,
}

/// A rough token count for text when no tokenizer applies (wire-formats.md §10.4: ~4 bytes a token).
fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

impl Tap {
    /// Completes the record off the response path: parsing a whole body, pricing and recording run in a
    /// task of their own, so the client's last bytes are flushed first (hyper drops a finished body
    /// before it flushes). Outside a runtime (shutdown) it runs inline.
    fn complete(self: Box<Self>, outcome: Outcome, error: Option<String>) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { self.complete_now(outcome, error) });
            }
            Err(_) => self.complete_now(outcome, error),
        }
    }

    fn complete_now(mut self: Box<Self>, outcome: Outcome, error: Option<String>) {
        let summary = self.parser.finish();
        let stream_ended_early =
            self.request.sse_ok && !summary.terminal && outcome == Outcome::Completed;
        let outcome = if stream_ended_early {
            Outcome::Incomplete
        } else {
            outcome
        };
        let r = &mut self.record;
        r.outcome = outcome;
        r.latency_ms = Some(ms(self.start.elapsed()));
        r.ttfb_ms = self.first_byte.map(ms);
        r.response_bytes = self.bytes;
        r.response_model = summary.model.clone();
        r.upstream_error = summary.error.clone();
        if let Some(e) = error {
            r.error = Some(e);
        } else if stream_ended_early {
            r.error = Some("the stream ended without the provider's end-of-stream marker".into());
        }
        let (usage, estimated) = settle_usage(&summary, &self.request, outcome, r.status);
        r.usage = usage;
        r.usage_estimated = estimated;
        let Tap { record, after, .. } = *self;
        after.complete(record);
    }
}

/// Exact usage when the response carried it and completed; otherwise an estimate from the text that
/// went each way, flagged as such.
fn settle_usage(
    summary: &ResponseSummary,
    request: &RequestFacts,
    outcome: Outcome,
    status: Option<u16>,
) -> (Option<Usage>, bool) {
    let success = status.is_some_and(|s| (200..300).contains(&s));
    let complete = outcome == Outcome::Completed && summary.terminal;
    match summary.usage {
        Some(u) if complete => (Some(u), false),
        _ if !success || !METERED.contains(&request.operation.as_str()) => (summary.usage, false),
        partial => {
            let mut u = partial.unwrap_or_default();
            if u.input_tokens == 0 {
                let text_bytes: u64 = request
                    .body
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .map(|v| {
                        texts(request.api, &request.operation, &v)
                            .iter()
                            .map(|s| s.len as u64)
                            .sum()
                    })
                    .unwrap_or(0);
                u.input_tokens = estimate_tokens(text_bytes);
            }
            u.output_tokens = u
                .output_tokens
                .max(estimate_tokens(summary.output_text_bytes));
            (Some(u), true)
        }
    }
}

/// Milliseconds as a float with microsecond resolution.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// A response body from upstream, observed on its way to the client.
pub struct ObservedBody {
    inner: Incoming,
    tap: Option<Box<Tap>>,
    ended: bool,
}

impl ObservedBody {
    pub(super) fn new(inner: Incoming, tap: Tap) -> Self {
        ObservedBody {
            inner,
            tap: Some(Box::new(tap)),
            ended: false,
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(tap) = this.tap.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(other) => return Poll::Ready(Some(Ok(other))), // trailers pass as they are
                    };
                    if tap.first_byte.is_none() && !data.is_empty() {
                        tap.first_byte = Some(tap.start.elapsed());
                    }
                    tap.parser.feed(&data);
                    let out = match tap.stripper.as_mut() {
                        Some(s) => s.feed(&data),
                        None => data,
                    };
                    if out.is_empty() {
                        continue; // a held partial frame: wait for the rest
                    }
                    tap.bytes += out.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    let Some(mut tap) = this.tap.take() else {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    };
                    let why = format!("the upstream response broke off after it started: {e}");
                    if !tap.request.sse_ok {
                        tap.complete(Outcome::Incomplete, Some(why));
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    // An event stream: end it with an error the client's SDK understands.
                    let mut out = tap
                        .stripper
                        .as_mut()
                        .map(|s| s.finish().to_vec())
                        .unwrap_or_default();
                    let err = AirlockError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_stream_broken",
                        format!(
                            "the connection to {} broke in the middle of the response ({e}); the answer is \
                             incomplete — retry the request",
                            tap.record.host
                        ),
                    );
                    out.extend_from_slice(&stream_error_frame(
                        tap.request.api,
                        &tap.request.operation,
                        &err,
                        Some(&tap.record.id),
                    ));
                    tap.bytes += out.len() as u64;
                    tap.complete(Outcome::Incomplete, Some(why));
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    if let Some(mut tap) = this.tap.take() {
                        let rest = tap
                            .stripper
                            .as_mut()
                            .map(|s| s.finish())
                            .unwrap_or_default();
                        tap.bytes += rest.len() as u64;
                        tap.complete(Outcome::Completed, None);
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(rest))));
                        }
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Reported only once this body has itself seen the end, so the record is always completed by
        // the final poll rather than guessed at on drop.
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match &self.tap {
            // A rewritten stream's length is not the upstream's.
            Some(t) if t.stripper.is_some() => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            // A body with a known length may be dropped right after its last byte without a final poll.
            if self.inner.is_end_stream() {
                tap.complete(Outcome::Completed, None);
            } else {
                tap.complete(
                    Outcome::ClientClosed,
                    Some("the client closed the connection before the response ended".into()),
                );
            }
        }
    }
}
