//! The response body type of the mock: either one precomputed buffer, or a list of frames yielded one
//! at a time with real pacing (a timer between frames) and, for the `reset-mid-stream` fault, a final
//! error that makes hyper abort the connection (HTTP/1.1) or reset the stream (HTTP/2). It owns only
//! the mechanics of delivering bytes; what the bytes say is decided by the provider modules.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How long an aborting body waits before yielding its error, so that the frames before it have been
/// flushed to the socket (hyper and h2 drop still-buffered bytes when a body fails).
const ABORT_FLUSH_WAIT: Duration = Duration::from_millis(25);

/// Error a mock body yields to abort the response on purpose (`reset-mid-stream`).
#[derive(Debug, Clone, Copy)]
pub struct MockAbort;

impl fmt::Display for MockAbort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("airlock-mock aborted the response body on purpose (fault reset-mid-stream)")
    }
}

impl std::error::Error for MockAbort {}

/// Response body used for every mock response.
pub struct MockBody {
    inner: Inner,
}

enum Inner {
    Full(Option<Bytes>),
    Frames(Frames),
}

struct Frames {
    frames: std::vec::IntoIter<Bytes>,
    delay: Duration,
    /// A pause is owed before the next frame (pacing, or the pre-abort flush wait).
    waiting: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    abort: AbortState,
}

#[derive(PartialEq, Eq)]
enum AbortState {
    /// End normally after the last frame.
    No,
    /// After the last frame: wait, then yield the error.
    Pending,
    /// Waiting out the flush pause before the error.
    Flushing,
    /// The error has been yielded.
    Done,
}

impl MockBody {
    /// A body made of one buffer, sent with a `content-length`.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Full(Some(bytes)),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            inner: Inner::Full(None),
        }
    }

    /// A streamed body: each element of `frames` becomes its own body frame, with `delay` between
    /// consecutive frames. With `abort`, the body fails after the last frame instead of ending.
    pub fn frames(frames: Vec<Bytes>, delay: Duration, abort: bool) -> Self {
        Self {
            inner: Inner::Frames(Frames {
                frames: frames.into_iter(),
                delay,
                waiting: false,
                sleep: None,
                abort: if abort {
                    AbortState::Pending
                } else {
                    AbortState::No
                },
            }),
        }
    }
}

impl Frames {
    fn wait(&mut self, cx: &mut Context<'_>, dur: Duration) -> Poll<()> {
        let sleep = match &mut self.sleep {
            Some(s) => s,
            slot => slot.insert(Box::pin(tokio::time::sleep(dur))),
        };
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(())
    }

    fn arm(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(deadline),
            slot => {
                *slot = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, MockAbort>>> {
        if self.waiting {
            ready!(self.wait(cx, self.delay));
            self.waiting = false;
        }
        if let Some(frame) = self.frames.next() {
            if !self.delay.is_zero() && self.frames.len() > 0 {
                self.arm(self.delay);
                self.waiting = true;
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        match self.abort {
            AbortState::No | AbortState::Done => Poll::Ready(None),
            AbortState::Pending => {
                self.arm(ABORT_FLUSH_WAIT);
                self.abort = AbortState::Flushing;
                ready!(self.wait(cx, ABORT_FLUSH_WAIT));
                self.abort = AbortState::Done;
                Poll::Ready(Some(Err(MockAbort)))
            }
            AbortState::Flushing => {
                ready!(self.wait(cx, ABORT_FLUSH_WAIT));
                self.abort = AbortState::Done;
                Poll::Ready(Some(Err(MockAbort)))
            }
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = MockAbort;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Frames(f) => f.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Frames(f) => {
                f.frames.len() == 0 && matches!(f.abort, AbortState::No | AbortState::Done)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Frames(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn frames_are_yielded_one_by_one_and_abort_ends_in_error() {
        let mut body = MockBody::frames(
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            Duration::from_millis(1),
            true,
        );
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got.push(f.into_data().unwrap_or_default()),
                Err(_) => failed = true,
            }
        }
        assert_eq!(
            got,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        assert!(failed);
    }

    #[tokio::test]
    async fn full_body_has_exact_size() {
        let body = MockBody::full(Bytes::from_static(b"{}"));
        assert_eq!(body.size_hint().exact(), Some(2));
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"{}")));
    }
}
