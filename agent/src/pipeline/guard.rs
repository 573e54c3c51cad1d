//! The drop guard that makes "every request has a finished record" true on every exit path. The
//! pipeline opens one as the first thing it does with a request, before any `.await`; it moves with the
//! request through the stages and into the response body, and exactly one terminal — a refusal, an
//! answer, the end of the response, or being dropped because the client went away — finishes the
//! record and releases the request's place among those in flight. Finishing consumes the guard, so a
//! second finish cannot be written; `Drop` is the terminal for every path nobody wrote. It owns the
//! record under construction; it must not decide outcomes (its callers do).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;

use super::record::Finisher;
use super::settle::settle_usage;
use crate::body::ProxyBody;
use crate::governance::Hold;
use crate::policy::ApiKind;
use crate::providers::dialect::{self, AirlockError};
use crate::providers::response::ResponseSummary;
use crate::record::{CostStatus, Outcome, Record};

/// Where the request was when it ended, for the record of a client that went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the request body from the client.
    ReadingBody,
    /// A request stage was deciding (it may have been awaiting).
    Stage(&'static str),
    /// The request was sent upstream; the response head had not come yet.
    WaitingForUpstream,
    /// The response was streaming to the client.
    Streaming,
}

/// What the record's usage estimate needs to know about the request.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// Wire format.
    pub api: ApiKind,
    /// Operation.
    pub operation: String,
    /// The decoded JSON body, kept (shared, not copied) only to estimate input tokens.
    pub body: Option<Bytes>,
}

struct Open {
    record: Record,
    start: Instant,
    phase: Phase,
    facts: Option<RequestFacts>,
    finisher: Arc<Finisher>,
    /// Budget and rate-limit reservations, settled with the actual usage when the record finishes.
    holds: Vec<Hold>,
}

/// How a request ended, as the response path saw it.
#[derive(Debug)]
pub struct End {
    /// The outcome.
    pub outcome: Outcome,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// What the response parser learned (usage, model, completeness), if a response was read.
    pub summary: Option<ResponseSummary>,
    /// Whether the response was an event stream with a success status.
    pub event_stream: bool,
    /// Time to the first response body byte.
    pub first_byte: Option<Duration>,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
}

impl End {
    /// An end with only an outcome and an error.
    pub fn bare(outcome: Outcome, error: Option<String>) -> Self {
        End {
            outcome,
            error,
            summary: None,
            event_stream: false,
            first_byte: None,
            response_bytes: 0,
        }
    }
}

/// The guard. See the module docs.
pub struct RecordGuard {
    open: Option<Box<Open>>,
}

impl std::fmt::Debug for RecordGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.open {
            Some(o) => write!(f, "RecordGuard({}, {:?})", o.record.id, o.phase),
            None => f.write_str("RecordGuard(finished)"),
        }
    }
}

/// Milliseconds as a float with microsecond resolution.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl RecordGuard {
    /// Opens the record: from now on the request counts as in flight until the guard finishes.
    pub(super) fn open(record: Record, finisher: Arc<Finisher>) -> Self {
        finisher.recorder().begin();
        RecordGuard {
            open: Some(Box::new(Open {
                record,
                start: Instant::now(),
                phase: Phase::ReadingBody,
                facts: None,
                finisher,
                holds: Vec::new(),
            })),
        }
    }

    /// The record under construction (`None` only after a finish, which consumes the guard, so in
    /// practice always `Some`).
    pub fn record(&mut self) -> Option<&mut Record> {
        self.open.as_mut().map(|o| &mut o.record)
    }

    /// Updates the record.
    pub fn note(&mut self, f: impl FnOnce(&mut Record)) {
        if let Some(o) = self.open.as_mut() {
            f(&mut o.record);
        }
    }

    /// The request id.
    pub fn id(&self) -> &str {
        self.open.as_ref().map_or("", |o| o.record.id.as_str())
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.open.as_ref().map_or_else(Instant::now, |o| o.start)
    }

    /// Where the request is now.
    pub(super) fn set_phase(&mut self, phase: Phase) {
        if let Some(o) = self.open.as_mut() {
            o.phase = phase;
        }
    }

    /// Keeps a reservation until the record finishes (then it is settled with the actual usage).
    pub(super) fn hold(&mut self, hold: Hold) {
        if let Some(o) = self.open.as_mut() {
            o.holds.push(hold);
        }
    }

    /// Whether the record holds budget or rate-limit reservations: then it must be finished before
    /// the client sees the response end, so the caller's next request meets the settled counts.
    pub(super) fn holds_reservations(&self) -> bool {
        self.open.as_ref().is_some_and(|o| !o.holds.is_empty())
    }

    /// What the usage estimate needs.
    pub(super) fn set_facts(&mut self, facts: RequestFacts) {
        if let Some(o) = self.open.as_mut() {
            o.facts = Some(facts);
        }
    }

    /// Finishes the record.
    pub(super) fn finish(mut self, end: End) {
        if let Some(open) = self.open.take() {
            finish_open(*open, end);
        }
    }

    /// Refuses the request: the client gets `err` in its dialect, the record says who refused.
    pub(super) fn refuse(
        mut self,
        api: ApiKind,
        err: AirlockError,
        by: String,
    ) -> Response<ProxyBody> {
        let resp = dialect::response(Some(api), &err, Some(self.id()));
        let (outcome, billed) = match self.open.as_ref().map(|o| o.phase) {
            // Failing after the request was sent means the provider may have seen it.
            Some(Phase::WaitingForUpstream) => (Outcome::UpstreamFailed, true),
            _ => (Outcome::Rejected, false),
        };
        self.note(|r| {
            r.status = Some(err.status.as_u16());
            r.decided_by = Some(by);
            if !billed {
                r.cost_status = Some(CostStatus::NotBilled);
                r.cost_usd = Some(0.0);
                r.cost_note =
                    Some("Airlock answered the request itself; no provider saw it".into());
            }
        });
        self.finish(End::bare(outcome, Some(err.message)));
        resp
    }

    /// A stage answered the request itself.
    pub(super) fn answer(mut self, resp: Response<ProxyBody>, by: String) -> Response<ProxyBody> {
        self.note(|r| {
            r.status = Some(resp.status().as_u16());
            r.decided_by = Some(by);
            r.cost_status = Some(CostStatus::NotBilled);
            r.cost_usd = Some(0.0);
            r.cost_note = Some("answered by an Airlock stage; no provider saw it".into());
        });
        self.finish(End::bare(Outcome::Completed, None));
        resp
    }
}

fn finish_open(open: Open, end: End) {
    let Open {
        mut record,
        start,
        facts,
        finisher,
        holds,
        ..
    } = open;
    let summary = end.summary.unwrap_or_default();
    let stream_ended_early =
        end.event_stream && !summary.terminal && end.outcome == Outcome::Completed;
    let outcome = if stream_ended_early {
        Outcome::Incomplete
    } else {
        end.outcome
    };
    record.outcome = outcome;
    record.latency_ms = Some(ms(start.elapsed()));
    record.ttfb_ms = end.first_byte.map(ms);
    record.response_bytes = end.response_bytes;
    if summary.model.is_some() {
        record.response_model = summary.model.clone();
    }
    if summary.error.is_some() {
        record.upstream_error = summary.error.clone();
    }
    if let Some(e) = end.error {
        record.error = Some(e);
    } else if stream_ended_early {
        record.error = Some("the stream ended without the provider's end-of-stream marker".into());
    }
    if record.cost_status != Some(CostStatus::NotBilled) {
        if let Some(facts) = &facts {
            let (usage, estimated) = settle_usage(&summary, facts, outcome, record.status);
            record.usage = usage;
            record.usage_estimated = estimated;
        }
    }
    finisher.finish(record, holds);
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        // The client went away while the request was still in the pipeline: hyper dropped the
        // handler (HTTP/1.1 EOF, HTTP/2 RST_STREAM). Say where, and estimate what the provider may
        // bill if it had the request.
        let waited = open.start.elapsed();
        let host = open.record.host.clone();
        let error = match open.phase {
            Phase::ReadingBody => {
                "the client closed the connection while sending the request body".to_string()
            }
            Phase::Stage(s) => {
                format!("the client closed the connection while the {s} stage was deciding")
            }
            Phase::WaitingForUpstream => format!(
                "the client closed the connection before the response started (Airlock had waited {:.1} s for {host}); the provider may still bill for the request",
                waited.as_secs_f64()
            ),
            Phase::Streaming => {
                "the client closed the connection before the response ended".to_string()
            }
        };
        if open.phase != Phase::WaitingForUpstream && open.phase != Phase::Streaming {
            open.record.cost_status = Some(CostStatus::NotBilled);
            open.record.cost_usd = Some(0.0);
            open.record.cost_note = Some("the request never reached a provider".into());
        }
        finish_open(*open, End::bare(Outcome::ClientClosed, Some(error)));
    }
}
