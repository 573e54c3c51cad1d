//! The observe-stream stage (with inspect response riding on it): a response body wrapper that hands
//! every chunk to the client as it arrives while the response parser reads a copy. What it may change,
//! all bounded: an event stream is released in whole frames (at most one partial frame waits, see
//! [`FrameAligner`]); when the agent itself asked for stream usage, the extra usage frame is removed;
//! response stages may rewrite chunks within their declared holdback; a body the upstream compressed
//! although the agent asked for identity is decoded for the client when anything must be rewritten.
//! When an upstream event stream breaks, stalls past the idle timeout, or a stage cuts it, the client
//! gets an error event in its provider's dialect — on a frame boundary, never glued to half a line —
//! instead of a silently truncated stream. When the body ends — cleanly, broken, or because the client
//! left — the record is finished exactly once, off the response path.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::exchange::Exchange;
use super::forward::UpstreamBody;
use super::guard::{End, Phase, RecordGuard};
use super::guardrails_response::ResponseGuard;
use super::idle::IdleTimer;
use super::stage::{ResponseHead, StreamCut, StreamStage};
use super::{strip_hop_by_hop, Pipeline};
use crate::body::{BoxError, ProxyBody};
use crate::guardrails::stream::Who;
use crate::policy::ApiKind;
use crate::providers::align::{FrameAligner, Segment};
use crate::providers::decode::{Coding, StreamDecoder};
use crate::providers::dialect::{stream_error_frame, AirlockError};
use crate::providers::response::{Framing, ResponseParser};
use crate::providers::strip::UsageFrameRewriter;
use crate::record::Outcome;

/// The most one decoded chunk may expand to when the agent decodes a body for the client.
const MAX_DECODED_CHUNK: usize = 16 << 20;

/// Why a stream was ended early.
enum Break {
    /// The upstream connection failed mid-body.
    Broken(BoxError),
    /// The upstream sent nothing for the idle timeout.
    Stalled(Duration),
    /// A response stage ended it.
    Cut { stage: &'static str, cut: StreamCut },
    /// A stage held more than it declared.
    Holdback {
        stage: &'static str,
        held: usize,
        limit: usize,
    },
    /// A body the agent had to decode did not decode.
    Undecodable(String),
}

/// Whether a response to `operation` may carry model text worth inspecting. A whole JSON body is
/// held until it ends, so answers that carry none (embeddings, token counts, listings, files) are
/// not held at all; every event stream is read.
fn carries_text(operation: &str, framing: Framing) -> bool {
    const NO_TEXT: [&str; 8] = [
        "embed",
        "count_tokens",
        "models",
        "files",
        "batch",
        "fine_tuning",
        "vector_stores",
        "moderations",
    ];
    framing != Framing::Json || !NO_TEXT.iter().any(|n| operation.contains(n))
}

/// State kept while a response streams.
struct Tap {
    guard: RecordGuard,
    parser: ResponseParser,
    decoder: Option<StreamDecoder>,
    aligner: Option<FrameAligner>,
    rewriter: Option<UsageFrameRewriter>,
    stages: Vec<(&'static str, Box<dyn StreamStage>)>,
    api: ApiKind,
    operation: String,
    host: String,
    event_stream: bool,
    start: Instant,
    first_byte: Option<Duration>,
    bytes: u64,
}

impl Tap {
    /// One chunk from upstream → what the client gets now.
    fn on_chunk(&mut self, data: Bytes) -> Result<Bytes, Break> {
        let plain = match self.decoder.as_mut() {
            Some(d) => Bytes::from(
                d.feed(&data)
                    .map_err(|e| Break::Undecodable(e.to_string()))?,
            ),
            None => data,
        };
        self.parser.feed(&plain);
        if self.aligner.is_none() && self.stages.is_empty() {
            return Ok(plain);
        }
        let aligned = self.align(plain);
        self.run_stages(aligned)
    }

    /// Whole frames out of the aligner, with the agent's own usage frame removed.
    fn align(&mut self, plain: Bytes) -> Bytes {
        let Tap {
            aligner, rewriter, ..
        } = self;
        let Some(aligner) = aligner.as_mut() else {
            return plain;
        };
        let mut single: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        aligner.push(plain, &mut |seg| {
            let b = match seg {
                Segment::Frames(f) => match rewriter.as_mut() {
                    Some(r) => r.rewrite_frames(f),
                    None => f,
                },
                Segment::Raw(r) => r,
            };
            match (&mut single, &mut joined) {
                (None, None) => single = Some(b),
                (Some(first), None) => {
                    let mut j = BytesMut::with_capacity(first.len() + b.len());
                    j.extend_from_slice(first);
                    j.extend_from_slice(&b);
                    single = None;
                    joined = Some(j);
                }
                (_, Some(j)) => j.extend_from_slice(&b),
            }
        });
        match joined {
            Some(j) => j.freeze(),
            None => single.unwrap_or_default(),
        }
    }

    fn run_stages(&mut self, mut out: Bytes) -> Result<Bytes, Break> {
        if self.stages.is_empty() {
            return Ok(out);
        }
        let deltas = self.parser.take_text_deltas();
        for (name, st) in self.stages.iter_mut() {
            if out.is_empty() && deltas.is_empty() {
                continue;
            }
            let mut buf = BytesMut::with_capacity(out.len());
            st.on_data(out, &deltas, &mut buf)
                .map_err(|cut| Break::Cut { stage: name, cut })?;
            let (held, limit) = (st.held(), st.holdback_limit());
            if held > limit {
                return Err(Break::Holdback {
                    stage: name,
                    held,
                    limit,
                });
            }
            out = buf.freeze();
        }
        Ok(out)
    }

    /// The upstream body ended cleanly: everything still held goes out.
    fn on_clean_end(&mut self) -> Result<Bytes, Break> {
        let mut out = BytesMut::new();
        if let Some(d) = self.decoder.take() {
            let rest = d.finish().map_err(|e| Break::Undecodable(e.to_string()))?;
            if !rest.is_empty() {
                self.parser.feed(&rest);
                let aligned = self.align(Bytes::from(rest));
                out.extend_from_slice(&self.run_stages(aligned)?);
            }
        }
        if let Some(a) = self.aligner.as_mut() {
            // A stream that ended without its last blank line: the client gets it as it came.
            let rest = a.finish();
            if !rest.is_empty() {
                let rest = self.run_stages(rest)?;
                out.extend_from_slice(&rest);
            }
        }
        for (name, st) in self.stages.iter_mut() {
            let mut buf = BytesMut::new();
            st.on_end(&mut buf)
                .map_err(|cut| Break::Cut { stage: name, cut })?;
            out.extend_from_slice(&buf);
        }
        Ok(out.freeze())
    }

    /// The stream is being ended early: what the client gets last (an event stream's error event),
    /// and what the record says.
    fn on_break(&mut self, why: &Break) -> (Option<Bytes>, String) {
        let host = &self.host;
        let (kind, message, record) = match why {
            Break::Broken(e) => (
                "upstream_stream_broken",
                format!(
                    "the connection to {host} broke in the middle of the response ({e}); the answer is incomplete — retry the request"
                ),
                format!("the upstream response broke off after it started: {e}"),
            ),
            Break::Stalled(d) => (
                "upstream_stream_stalled",
                format!(
                    "{host} sent nothing for {} s in the middle of the response, so Airlock ended it; the answer is incomplete — retry the request",
                    d.as_secs()
                ),
                format!("the upstream stream stalled: nothing for {} s", d.as_secs()),
            ),
            Break::Cut { stage, cut } => {
                self.guard
                    .note(|r| r.decided_by = Some(format!("inspect_response:{stage}")));
                (cut.kind, cut.message.clone(), cut.message.clone())
            }
            Break::Holdback { stage, held, limit } => {
                let m = format!(
                    "the response stage {stage} held back {held} bytes, more than its limit of {limit}; Airlock ended the response"
                );
                self.guard
                    .note(|r| r.decided_by = Some(format!("inspect_response:{stage}")));
                ("holdback_exceeded", m.clone(), m)
            }
            Break::Undecodable(e) => (
                "upstream_stream_undecodable",
                format!("the response from {host} could not be decoded ({e}); retry the request"),
                format!("the upstream body could not be decoded: {e}"),
            ),
        };
        let Some(aligner) = self.aligner.as_mut().filter(|_| self.event_stream) else {
            return (None, record);
        };
        // Held bytes never reached the client: drop them, so the error event starts a frame. A frame
        // too big to hold was partly sent: end it first.
        aligner.discard();
        let mut out = BytesMut::new();
        if aligner.mid_frame() {
            out.extend_from_slice(b"\n\n");
        }
        let err = AirlockError::new(StatusCode::BAD_GATEWAY, kind, message);
        let id = self.guard.id().to_string();
        out.extend_from_slice(&stream_error_frame(
            self.api,
            &self.operation,
            &err,
            Some(&id),
        ));
        (Some(out.freeze()), record)
    }

    /// Finishes the record off the response path: parsing a whole body, pricing and recording run in
    /// a task of their own, so the client's last bytes are flushed first (hyper drops a finished body
    /// before it flushes). Outside a runtime (shutdown) it runs inline, and so it does when the
    /// request holds budget or rate-limit reservations: they are settled before the last bytes
    /// leave, or a client that sends its next request as soon as it has this answer could be refused
    /// on a reservation that should already be gone.
    fn complete(self: Box<Self>, outcome: Outcome, error: Option<String>) {
        if self.guard.holds_reservations() {
            return self.complete_now(outcome, error);
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { self.complete_now(outcome, error) });
            }
            Err(_) => self.complete_now(outcome, error),
        }
    }

    fn complete_now(mut self: Box<Self>, outcome: Outcome, error: Option<String>) {
        let summary = self.parser.finish();
        for (_, st) in self.stages.iter_mut() {
            if let Some(r) = self.guard.record() {
                st.on_record(r);
            }
        }
        let end = End {
            outcome,
            error,
            summary: Some(summary),
            event_stream: self.event_stream,
            first_byte: self.first_byte,
            response_bytes: self.bytes,
        };
        let Tap { guard, .. } = *self;
        guard.finish(end);
    }
}

/// A response body from upstream, observed on its way to the client.
pub struct ObservedBody {
    inner: UpstreamBody,
    tap: Option<Box<Tap>>,
    idle: IdleTimer,
    /// Set once the wrapper has produced its last data: the next poll ends the body.
    ended: bool,
    /// Trailers waiting until held data has gone out.
    trailers: Option<Frame<Bytes>>,
    /// Whether the bytes may differ in length from upstream's.
    rewrites: bool,
}

impl ObservedBody {
    /// Ends the body early: an event stream gets its error event, anything else an error.
    fn break_off(&mut self, why: Break) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        // Dropping the upstream body closes the upstream stream (the provider stops generating).
        self.inner = UpstreamBody::Buffered(None);
        let Some(mut tap) = self.tap.take() else {
            return Poll::Ready(None);
        };
        let (last, record) = tap.on_break(&why);
        let sent = last.as_ref().map_or(0, |b| b.len() as u64);
        tap.bytes += sent;
        tap.complete(Outcome::Incomplete, Some(record));
        match last {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => {
                let e: BoxError = match why {
                    Break::Broken(e) => e,
                    Break::Stalled(d) => {
                        format!("the upstream sent nothing for {} s", d.as_secs()).into()
                    }
                    Break::Cut { cut, .. } => cut.message.into(),
                    Break::Holdback { stage, .. } => {
                        format!("the response stage {stage} held back too much").into()
                    }
                    Break::Undecodable(e) => e.into(),
                };
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    /// The upstream body ended (or is known to have no more data): release what is held, finish.
    fn end_clean(&mut self) -> Option<Bytes> {
        self.ended = true;
        let mut tap = self.tap.take()?;
        match tap.on_clean_end() {
            Ok(rest) => {
                tap.bytes += rest.len() as u64;
                tap.complete(Outcome::Completed, None);
                (!rest.is_empty()).then_some(rest)
            }
            Err(why) => {
                let (last, record) = tap.on_break(&why);
                tap.bytes += last.as_ref().map_or(0, |b| b.len() as u64);
                tap.complete(Outcome::Incomplete, Some(record));
                last
            }
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
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    if this.tap.is_some() && this.idle.poll_expired(cx).is_ready() {
                        let idle = this.idle.idle();
                        return this.break_off(Break::Stalled(idle));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle.touch();
                    let Some(tap) = this.tap.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(trailers) => {
                            // Trailers end the body: held data goes first.
                            this.trailers = Some(trailers);
                            return match this.end_clean() {
                                Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
                                None => Poll::Ready(this.trailers.take().map(Ok)),
                            };
                        }
                    };
                    if tap.first_byte.is_none() && !data.is_empty() {
                        tap.first_byte = Some(tap.start.elapsed());
                    }
                    let out = match tap.on_chunk(data) {
                        Ok(out) => out,
                        Err(why) => return this.break_off(why),
                    };
                    tap.bytes += out.len() as u64;
                    // The client may not poll again after the last byte of a body of known length.
                    if this.inner.is_end_stream() {
                        let rest = this.end_clean().unwrap_or_default();
                        let all = if out.is_empty() {
                            rest
                        } else if rest.is_empty() {
                            out
                        } else {
                            let mut j = BytesMut::from(&out[..]);
                            j.extend_from_slice(&rest);
                            j.freeze()
                        };
                        if all.is_empty() {
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(all))));
                    }
                    if out.is_empty() {
                        continue; // a held partial frame: wait for the rest
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => return this.break_off(Break::Broken(e)),
                Poll::Ready(None) => {
                    return match this.end_clean() {
                        Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
                        None => Poll::Ready(None),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only once this body has itself finished, so the record is always completed by a poll
        // rather than guessed at on drop, and held bytes are never left behind.
        self.ended && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.rewrites {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            // A body of known length may be dropped right after its last byte without a final poll.
            let held = tap.aligner.as_ref().map_or(0, FrameAligner::held)
                + tap.stages.iter().map(|(_, s)| s.held()).sum::<usize>();
            // A body known to be empty (`content-length: 0`) is often never polled at all.
            let done = self.inner.is_end_stream() || self.inner.size_hint().upper() == Some(0);
            if done && held == 0 {
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

impl Pipeline {
    /// Observe (and inspect response, settle, record as the body ends): wraps the upstream response
    /// for the client.
    pub(super) fn observe(
        self: &Arc<Self>,
        mut ex: Exchange,
        resp: Response<UpstreamBody>,
        mut guard: RecordGuard,
    ) -> Response<ProxyBody> {
        let id = guard.id().to_string();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(up) = ex.upgrade.take() {
                return self.switch_protocols(&ex.target, up, resp, guard, &id);
            }
        }
        let (mut parts, body) = resp.into_parts();
        guard.note(|r| r.status = Some(parts.status.as_u16()));
        strip_hop_by_hop(&mut parts.headers);
        let api = ex.target.api;
        let framing = Framing::from_content_type(
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            api.is_gemini() && ex.identity.stream,
        );
        let event_stream = parts.status.is_success() && framing == Framing::Sse;
        let head = ResponseHead {
            id: &id,
            api,
            operation: &ex.identity.operation,
            model: ex.identity.model.as_deref(),
            event_stream,
            status: parts.status,
            headers: &parts.headers,
        };
        let mut stages: Vec<(&'static str, Box<dyn StreamStage>)> = Vec::new();
        if let Some(g) = self.guardrails() {
            if parts.status.is_success()
                && framing != Framing::Opaque
                && carries_text(&ex.identity.operation, framing)
            {
                let caller = ex.target.caller.now().unwrap_or_default();
                let who = Who {
                    provider: ex.target.provider.clone(),
                    model: ex.identity.model.clone(),
                    app: caller.app,
                };
                stages.push((
                    "guardrails",
                    Box::new(
                        ResponseGuard::new(
                            g.clone(),
                            who,
                            self.hash_key,
                            api,
                            &ex.identity.operation,
                            framing,
                            &id,
                        )
                        .with_journal(self.recorder().journal().cloned()),
                    ),
                ));
            }
        }
        stages.extend(
            self.inspect_response
                .iter()
                .filter_map(|s| s.open(&head).map(|st| (s.name(), st))),
        );
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut aligned = event_stream;
        let mut rewrite_usage = ex.usage_injected && event_stream;
        // Rewriting needs the body decoded. The agent asked for identity; an upstream that compressed
        // anyway is decoded for the client (every client accepts identity).
        let mut decoder = None;
        if aligned || !stages.is_empty() {
            match Coding::parse(encoding.as_deref()) {
                Ok(Coding::Identity) => {}
                Ok(coding) => match StreamDecoder::new(coding, MAX_DECODED_CHUNK) {
                    Some(Ok(d)) => {
                        decoder = Some(d);
                        parts.headers.remove(header::CONTENT_ENCODING);
                        parts.headers.remove(header::CONTENT_LENGTH);
                    }
                    _ => {
                        aligned = false;
                        rewrite_usage = false;
                        stages.clear();
                    }
                },
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "the response uses an encoding Airlock cannot decode; passing it on untouched");
                    aligned = false;
                    rewrite_usage = false;
                    stages.clear();
                }
            }
        }
        let rewrites = rewrite_usage || !stages.is_empty() || decoder.is_some() || aligned;
        if rewrites {
            // The body the client gets may differ in length from upstream's (an error event, a
            // removed usage frame, a redaction).
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            parts.headers.insert("x-airlock-request-id", v);
        }
        for (name, value) in ex.response_headers.drain(..) {
            parts.headers.append(name, value);
        }
        let parser_encoding = if decoder.is_some() {
            None
        } else {
            encoding.as_deref()
        };
        let mut parser = ResponseParser::new(api, &ex.identity.operation, framing, parser_encoding);
        if !self.inspect_response.is_empty() {
            // Plugged-in stages read the deltas; the guardrails stage reads its own.
            parser = parser.with_text_deltas();
        }
        if framing == Framing::Json {
            // The copy kept to read usage counts against the same memory budget as request bodies.
            parser = parser.with_budget(self.budget.clone());
        }
        guard.set_phase(Phase::Streaming);
        let start = guard.started();
        let tap = Tap {
            guard,
            parser,
            decoder,
            aligner: aligned.then(FrameAligner::new),
            rewriter: rewrite_usage.then(UsageFrameRewriter::new),
            stages,
            api,
            operation: ex.identity.operation.clone(),
            host: ex.target.host.clone(),
            event_stream,
            start,
            first_byte: None,
            bytes: 0,
        };
        let idle = self.limits.stream_idle_timeout();
        let body = ObservedBody {
            inner: body,
            tap: Some(Box::new(tap)),
            idle: IdleTimer::new(idle),
            ended: false,
            trailers: None,
            rewrites,
        };
        Response::from_parts(parts, body.boxed_unsync())
    }
}
