//! The observe-stream stage: a response body wrapper that hands every chunk to the client the moment it
//! arrives and lets an observer read a copy. When the body ends — cleanly, broken, or because the client
//! went away — it completes the request's record exactly once and runs the response-side stages. It must
//! never hold a chunk back or change one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::body::BoxError;
use super::ResponseStages;
use crate::providers::usage::UsageObserver;
use crate::record::{Outcome, Record};

/// State kept while a response streams.
pub(super) struct Tap {
    pub(super) observer: UsageObserver,
    pub(super) record: Record,
    pub(super) start: Instant,
    pub(super) first_byte: Option<Duration>,
    pub(super) bytes: u64,
    pub(super) after: Arc<ResponseStages>,
}

impl Tap {
    fn complete(mut self: Box<Self>, outcome: Outcome, error: Option<String>) {
        let r = &mut self.record;
        r.outcome = outcome;
        r.usage = self.observer.finish();
        r.latency_ms = Some(ms(self.start.elapsed()));
        r.ttfb_ms = self.first_byte.map(ms);
        r.response_bytes = self.bytes;
        if error.is_some() {
            r.error = error;
        }
        let Tap { record, after, .. } = *self;
        after.complete(record);
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
}

impl ObservedBody {
    pub(super) fn new(inner: Incoming, tap: Tap) -> Self {
        ObservedBody {
            inner,
            tap: Some(Box::new(tap)),
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(tap), Some(data)) = (this.tap.as_mut(), frame.data_ref()) {
                    if tap.first_byte.is_none() && !data.is_empty() {
                        tap.first_byte = Some(tap.start.elapsed());
                    }
                    tap.bytes += data.len() as u64;
                    tap.observer.feed(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(tap) = this.tap.take() {
                    tap.complete(
                        Outcome::Incomplete,
                        Some(format!(
                            "the upstream response broke off after it started: {e}"
                        )),
                    );
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                if let Some(tap) = this.tap.take() {
                    tap.complete(Outcome::Completed, None);
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
