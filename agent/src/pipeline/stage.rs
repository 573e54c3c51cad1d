//! The contract every capability that plugs into the pipeline signs. A [`RequestStage`] (authorize,
//! inspect request, route) sees the [`Exchange`] before it is forwarded; it may change it, await
//! (a journal commit, a lookup), refuse it with an [`AirlockError`] the pipeline renders in the caller's
//! dialect, or answer the client itself ([`Flow::Answer`]). A [`ResponseStage`] (inspect response)
//! opens a [`StreamStage`] per response that sees the body chunk by chunk with the text deltas the
//! parser read from it, may rewrite it, hold back up to a bound it declares, or cut the stream
//! ([`StreamCut`]). A [`SettleStage`] (settle) updates the record once the request has ended, whatever
//! the ending. Every `.await` in a request stage is a cancellation point: the client may leave, and the
//! record is then finished by its guard, so a stage must keep nothing half-done outside the exchange.
//! This module defines the contract; it must not run stages (the pipeline does).

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};

use super::exchange::Exchange;
use crate::body::ProxyBody;
use crate::policy::ApiKind;
use crate::providers::dialect::AirlockError;
use crate::providers::response::TextDelta;
use crate::record::Record;

/// What a request stage decided.
pub enum Flow {
    /// Go on to the next stage.
    Continue,
    /// Answer the client with this response instead of forwarding (a cached answer, a local
    /// endpoint). The request is recorded as completed, answered by the stage.
    Answer(Response<ProxyBody>),
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flow::Continue => f.write_str("Continue"),
            Flow::Answer(r) => write!(f, "Answer({})", r.status()),
        }
    }
}

/// The future a request stage returns.
pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Result<Flow, AirlockError>> + Send + 'a>>;

/// A request-side stage: authorize, inspect request or route.
pub trait RequestStage: Send + Sync {
    /// Name for records (`decided_by`) and logs.
    fn name(&self) -> &'static str;
    /// Looks at (and may change) the exchange; `Err` refuses the request in the caller's dialect.
    fn apply<'a>(&'a self, exchange: &'a mut Exchange) -> StageFuture<'a>;
}

/// What a response stage may know when a response starts.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    /// Request id.
    pub id: &'a str,
    /// The provider's wire format.
    pub api: ApiKind,
    /// Operation (`chat_completions`, `messages` …).
    pub operation: &'a str,
    /// Model asked for.
    pub model: Option<&'a str>,
    /// Whether the response is an event stream with a success status.
    pub event_stream: bool,
    /// Response status.
    pub status: StatusCode,
    /// Response headers (already without hop-by-hop headers).
    pub headers: &'a HeaderMap,
}

/// A response-side stage (inspect response): opens per-response state for the responses it cares
/// about.
pub trait ResponseStage: Send + Sync {
    /// Name for records and logs.
    fn name(&self) -> &'static str;
    /// Per-response state, or `None` to leave this response alone (it then costs nothing).
    fn open(&self, head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>>;
}

/// A response stage's state for one response. The body reaches it decoded (the agent asks upstream
/// for an uncompressed stream when a stage may rewrite it, and decodes it itself if the upstream
/// compresses anyway), in whole SSE frames for event streams.
pub trait StreamStage: Send {
    /// The most bytes this stage may hold back at once. Holding more ends the stream with an error
    /// rather than growing without bound.
    fn holdback_limit(&self) -> usize;
    /// Bytes held back now.
    fn held(&self) -> usize;
    /// The next chunk of the body and the text deltas read from it; writes what the client should
    /// get now to `out` (possibly nothing, if it holds the chunk back).
    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut>;
    /// The body ended cleanly: release or drop what is held.
    fn on_end(&mut self, out: &mut BytesMut) -> Result<(), StreamCut>;
    /// The request's record, just before it is stored (any outcome).
    fn on_record(&mut self, _record: &mut Record) {}
}

/// A response stage's decision to end the stream: the client gets an error event in its dialect
/// (event streams) or a broken body, and the record says why.
#[derive(Debug, Clone)]
pub struct StreamCut {
    /// Machine-readable Airlock type for the error event (`guardrail_blocked` …).
    pub kind: &'static str,
    /// What happened and what to do, for the person who sees it.
    pub message: String,
}

/// A settle stage: updates the record of a finished request (cost, budgets).
pub trait SettleStage: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Updates the record.
    fn settle(&self, record: &mut Record);
}

/// Where a request stage plugs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSlot {
    /// Policy gates: hosts, models, credentials, budgets, rate limits.
    Authorize,
    /// Guardrails on the request.
    InspectRequest,
    /// Direct or gateway, which key, fallbacks.
    Route,
}
