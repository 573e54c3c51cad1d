//! The response body type of the mock: either one precomputed buffer, or a list of pieces yielded one
//! at a time with real pacing (a timer between pieces), optionally compressed piece by piece (the
//! encoder is flushed after every piece, so each one reaches the client as it is produced), cut at
//! an exact byte count or in the middle of the last piece, and ended in one of four ways: cleanly, with
//! an error that makes hyper abort the connection (HTTP/1.1) or reset the stream (HTTP/2), with a TCP
//! reset of the whole connection, or never (a stall). A piece can be a huge frame produced lazily in
//! 64 KiB chunks. It owns only the mechanics of delivering bytes; what the bytes say is decided by
//! the provider modules and the server.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::encoding::Encoder;

/// How long an aborting body waits before yielding its error, so that the frames before it have been
/// flushed to the socket (hyper and h2 drop still-buffered bytes when a body fails).
const ABORT_FLUSH_WAIT: Duration = Duration::from_millis(25);

/// How long a body that ends in a TCP reset waits after its last bytes before the reset, so they have
/// left the mock (a zero-linger close discards what is still in the socket's send buffer).
pub const RESET_FLUSH_WAIT: Duration = Duration::from_millis(50);

/// Size of the body chunks a huge frame is sent in.
pub const HUGE_CHUNK: usize = 64 * 1024;

static FILL: [u8; HUGE_CHUNK] = [b'x'; HUGE_CHUNK];

/// Error a mock body yields to abort the response on purpose (`reset-mid-stream`).
#[derive(Debug, Clone, Copy)]
pub struct MockAbort;

impl fmt::Display for MockAbort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("airlock-mock aborted the response body on purpose (fault reset-mid-stream)")
    }
}

impl std::error::Error for MockAbort {}

/// One piece of a body before content coding: a stream frame (or a whole non-streamed body).
pub enum Piece {
    /// Bytes sent as one body frame.
    Bytes(Bytes),
    /// A large frame produced lazily in [`HUGE_CHUNK`]-byte body frames: `prefix`, then `fill`
    /// bytes `x`, then `suffix`.
    Huge {
        /// Bytes before the fill.
        prefix: Bytes,
        /// How many `x` bytes.
        fill: u64,
        /// Bytes after the fill.
        suffix: Bytes,
    },
}

impl Piece {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Huge {
                prefix,
                fill,
                suffix,
            } => prefix.len() as u64 + fill + suffix.len() as u64,
        }
    }

    /// Whether the piece has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a streamed body ends after its pieces (or after its byte limit).
pub enum End {
    /// Normally.
    Clean,
    /// With a body error after a short flush wait: hyper closes the HTTP/1.1 connection without the
    /// terminating chunk, or resets the HTTP/2 stream.
    Abort,
    /// With a TCP reset of the whole connection: the callback is called after
    /// [`RESET_FLUSH_WAIT`], and the body then never yields again.
    Reset(Box<dyn FnOnce() + Send>),
    /// Never: the body stays pending until the connection goes away.
    Stall,
}

/// A streamed body's plan.
pub struct Plan {
    /// The pieces, each its own body frame (huge pieces several).
    pub pieces: Vec<Piece>,
    /// Pause before every piece but the first.
    pub delay: Duration,
    /// Content coding applied piece by piece (`None`: identity).
    pub encoder: Option<Encoder>,
    /// The pieces are the whole body: finish the encoder after the last one. False for a body cut
    /// short on purpose.
    pub complete: bool,
    /// Send at most this many body bytes (after content coding), then end.
    pub limit: Option<u64>,
    /// Send only the first half of the last piece's bytes (after content coding).
    pub halve_last: bool,
    /// How the body ends.
    pub end: End,
}

impl Plan {
    /// A plan that sends `pieces` with `delay` between them and ends cleanly.
    pub fn new(pieces: Vec<Piece>, delay: Duration) -> Self {
        Self {
            pieces,
            delay,
            encoder: None,
            complete: true,
            limit: None,
            halve_last: false,
            end: End::Clean,
        }
    }
}

/// Response body used for every mock response.
pub struct MockBody {
    inner: Inner,
}

enum Inner {
    Full(Option<Bytes>),
    Stream(Box<Streamed>),
}

/// Where a huge piece is.
struct HugeCursor {
    prefix: Bytes,
    fill: u64,
    suffix: Bytes,
    pos: u64,
}

impl HugeCursor {
    fn total(&self) -> u64 {
        self.prefix.len() as u64 + self.fill + self.suffix.len() as u64
    }

    fn done(&self) -> bool {
        self.pos >= self.total()
    }

    /// The next body chunk of at most [`HUGE_CHUNK`] bytes.
    fn next_chunk(&mut self) -> Bytes {
        let start = self.pos;
        let end = (start + HUGE_CHUNK as u64).min(self.total());
        self.pos = end;
        let p = self.prefix.len() as u64;
        let f = p + self.fill;
        // A chunk entirely inside the fill needs no copy.
        if start >= p && end <= f {
            return Bytes::from_static(&FILL[..(end - start) as usize]);
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut at = start;
        while at < end {
            if at < p {
                let stop = end.min(p);
                out.extend_from_slice(&self.prefix[at as usize..stop as usize]);
                at = stop;
            } else if at < f {
                let stop = end.min(f);
                out.extend_from_slice(&FILL[..(stop - at) as usize]);
                at = stop;
            } else {
                let stop = end;
                out.extend_from_slice(&self.suffix[(at - f) as usize..(stop - f) as usize]);
                at = stop;
            }
        }
        Bytes::from(out)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending pieces.
    Sending,
    /// Waiting out the flush pause before an abort or a reset.
    Flushing,
    /// The body has ended (cleanly or with its error) or stalls for good.
    Over,
}

struct Streamed {
    pieces: VecDeque<Piece>,
    huge: Option<HugeCursor>,
    delay: Duration,
    encoder: Option<Encoder>,
    complete: bool,
    limit: Option<u64>,
    halve_last: bool,
    end: Option<End>,
    /// A pause is owed before the next piece.
    waiting: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    phase: Phase,
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
        let mut plan = Plan::new(frames.into_iter().map(Piece::Bytes).collect(), delay);
        if abort {
            plan.complete = false;
            plan.end = End::Abort;
        }
        Self::planned(plan)
    }

    /// A streamed body following `plan`.
    pub fn planned(plan: Plan) -> Self {
        Self {
            inner: Inner::Stream(Box::new(Streamed {
                pieces: plan.pieces.into(),
                huge: None,
                delay: plan.delay,
                encoder: plan.encoder,
                complete: plan.complete,
                limit: plan.limit,
                halve_last: plan.halve_last,
                end: Some(plan.end),
                waiting: false,
                sleep: None,
                phase: Phase::Sending,
            })),
        }
    }
}

impl Streamed {
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

    /// The next chunk of the pieces before content coding, and whether it is the last chunk of the
    /// last piece; `None` when the pieces are exhausted.
    fn next_raw(&mut self) -> Option<(Bytes, bool)> {
        let chunk = match &mut self.huge {
            Some(h) => h.next_chunk(),
            None => match self.pieces.pop_front()? {
                Piece::Bytes(b) => b,
                Piece::Huge {
                    prefix,
                    fill,
                    suffix,
                } => {
                    let h = self.huge.insert(HugeCursor {
                        prefix,
                        fill,
                        suffix,
                        pos: 0,
                    });
                    h.next_chunk()
                }
            },
        };
        if self.huge.as_ref().is_some_and(HugeCursor::done) {
            self.huge = None;
        }
        let piece_done = self.huge.is_none();
        if piece_done && !self.delay.is_zero() && !self.pieces.is_empty() {
            self.arm(self.delay);
            self.waiting = true;
        }
        Some((chunk, piece_done && self.pieces.is_empty()))
    }

    /// Ends the body: its final frame (`None` for a clean end or a stall, which then stays pending).
    fn finish(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, MockAbort>>> {
        if self.phase == Phase::Sending {
            match &self.end {
                Some(End::Abort) => {
                    self.phase = Phase::Flushing;
                    self.arm(ABORT_FLUSH_WAIT);
                }
                Some(End::Reset(_)) => {
                    self.phase = Phase::Flushing;
                    self.arm(RESET_FLUSH_WAIT);
                }
                _ => self.phase = Phase::Over,
            }
        }
        if self.phase == Phase::Flushing {
            let pause = match &self.end {
                Some(End::Reset(_)) => RESET_FLUSH_WAIT,
                _ => ABORT_FLUSH_WAIT,
            };
            ready!(self.wait(cx, pause));
            self.phase = Phase::Over;
            match self.end.take() {
                Some(End::Abort) => return Poll::Ready(Some(Err(MockAbort))),
                Some(End::Reset(reset)) => {
                    reset();
                    // The connection is being dropped with this body; never yield again.
                    self.end = Some(End::Stall);
                    return Poll::Pending;
                }
                other => self.end = other,
            }
        }
        match &self.end {
            None | Some(End::Clean) => Poll::Ready(None),
            Some(End::Abort) => Poll::Ready(None),
            // No waker is kept: nothing will ever wake this body, which is dropped with its
            // connection when the client goes away.
            Some(End::Stall) | Some(End::Reset(_)) => Poll::Pending,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, MockAbort>>> {
        loop {
            if self.phase != Phase::Sending {
                return self.finish(cx);
            }
            if self.limit == Some(0) {
                return self.finish(cx);
            }
            if self.waiting {
                ready!(self.wait(cx, self.delay));
                self.waiting = false;
            }
            let out = match self.next_raw() {
                Some((raw, last)) => {
                    let mut out = match &mut self.encoder {
                        Some(e) => match e.push(&raw) {
                            Ok(b) => b,
                            Err(_) => return Poll::Ready(Some(Err(MockAbort))),
                        },
                        None => raw,
                    };
                    if last && self.halve_last {
                        let keep = (out.len() / 2).max(1).min(out.len());
                        out.truncate(keep);
                        // The cut piece ends the body: no encoder trailer after it.
                        self.pieces.clear();
                        self.encoder = None;
                        self.limit = Some(out.len() as u64);
                    } else if last && self.complete {
                        if let Some(e) = self.encoder.take() {
                            match e.finish() {
                                Ok(tail) if !tail.is_empty() => {
                                    let mut joined = out.to_vec();
                                    joined.extend_from_slice(&tail);
                                    out = Bytes::from(joined);
                                }
                                Ok(_) => {}
                                Err(_) => return Poll::Ready(Some(Err(MockAbort))),
                            }
                        }
                    }
                    out
                }
                None => {
                    if self.complete {
                        if let Some(e) = self.encoder.take() {
                            match e.finish() {
                                Ok(tail) => tail,
                                Err(_) => return Poll::Ready(Some(Err(MockAbort))),
                            }
                        } else {
                            return self.finish(cx);
                        }
                    } else {
                        return self.finish(cx);
                    }
                }
            };
            let out = match &mut self.limit {
                Some(left) => {
                    let take = (*left).min(out.len() as u64);
                    *left -= take;
                    out.slice(..take as usize)
                }
                None => out,
            };
            if out.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Ok(Frame::data(out))));
        }
    }

    fn is_end(&self) -> bool {
        self.phase == Phase::Sending
            && matches!(self.end, Some(End::Clean))
            && self.pieces.is_empty()
            && self.huge.is_none()
            && self.encoder.is_none()
            && !self.waiting
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
            Inner::Stream(s) => s.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Stream(s) => s.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Coding;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    async fn drain(body: &mut MockBody) -> (Vec<Bytes>, bool) {
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got.push(f.into_data().unwrap_or_default()),
                Err(_) => failed = true,
            }
        }
        (got, failed)
    }

    #[tokio::test]
    async fn frames_are_yielded_one_by_one_and_abort_ends_in_error() {
        let mut body = MockBody::frames(
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            Duration::from_millis(1),
            true,
        );
        let (got, failed) = drain(&mut body).await;
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

    #[tokio::test]
    async fn huge_pieces_come_in_64k_chunks_with_exact_length() {
        let mut body = MockBody::planned(Plan::new(
            vec![
                Piece::Bytes(Bytes::from_static(b"first")),
                Piece::Huge {
                    prefix: Bytes::from_static(b"data: \""),
                    fill: 200_000,
                    suffix: Bytes::from_static(b"\"\n\n"),
                },
                Piece::Bytes(Bytes::from_static(b"last")),
            ],
            Duration::ZERO,
        ));
        let (got, failed) = drain(&mut body).await;
        assert!(!failed);
        assert_eq!(got.first().map(|b| &b[..]), Some(&b"first"[..]));
        assert_eq!(got.last().map(|b| &b[..]), Some(&b"last"[..]));
        let huge: Vec<&Bytes> = got[1..got.len() - 1].iter().collect();
        let total: usize = huge.iter().map(|b| b.len()).sum();
        assert_eq!(total, 7 + 200_000 + 3);
        assert!(huge[..huge.len() - 1].iter().all(|b| b.len() == HUGE_CHUNK));
        let joined: Vec<u8> = huge.iter().flat_map(|b| b.iter().copied()).collect();
        assert!(joined.starts_with(b"data: \"xxx"));
        assert!(joined.ends_with(b"xxx\"\n\n"));
    }

    #[tokio::test]
    async fn a_limit_cuts_at_the_exact_byte_then_resets() {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let mut plan = Plan::new(
            vec![
                Piece::Bytes(Bytes::from_static(b"abcdef")),
                Piece::Bytes(Bytes::from_static(b"ghij")),
            ],
            Duration::ZERO,
        );
        plan.limit = Some(8);
        plan.end = End::Reset(Box::new(move || flag.store(true, Ordering::SeqCst)));
        let mut body = MockBody::planned(plan);
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Some(Ok(f)) = body.frame().await {
                got.extend_from_slice(&f.into_data().unwrap_or_default());
            }
        }
        assert_eq!(got, b"abcdefgh");
        let next = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
        assert!(next.is_err(), "the body must stay pending after the reset");
        assert!(fired.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn halving_the_last_compressed_piece_sends_half_its_bytes() {
        let mut plan = Plan::new(
            vec![
                Piece::Bytes(Bytes::from_static(b"data: one\n\n")),
                Piece::Bytes(Bytes::from_static(b"data: two two two\n\n")),
            ],
            Duration::ZERO,
        );
        plan.encoder = Coding::Gzip.encoder();
        plan.complete = false;
        plan.halve_last = true;
        plan.end = End::Abort;
        let mut body = MockBody::planned(plan);
        let (got, failed) = drain(&mut body).await;
        assert!(failed);
        assert_eq!(got.len(), 2);
        let mut whole = Coding::Gzip.encoder().into_iter().next();
        if let Some(e) = whole.as_mut() {
            let _ = e.push(b"data: one\n\n");
            let second = e.push(b"data: two two two\n\n").unwrap_or_default();
            assert_eq!(got[1].len(), second.len() / 2);
            assert_eq!(got[1], second.slice(..second.len() / 2));
        }
    }
}
