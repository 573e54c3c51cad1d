//! The record stage: the last thing that happens to every request, whatever its ending. The settle
//! stages run on the finished record, its fields are cut to their bounds, a debug line is logged
//! (never bodies or credentials), the caller (user, process) is taken from its connection's lookup, and the
//! record goes to the recorder. It must not decide outcomes or usage (the guard and settle do).

use std::sync::Arc;

use super::stage::SettleStage;
use crate::caller;
use crate::governance::Hold;
use crate::record::{Record, Recorder};

/// The settle stages and the recorder: what finishing a record means.
pub struct Finisher {
    pub(super) settle: Vec<Box<dyn SettleStage>>,
    recorder: Arc<Recorder>,
}

impl std::fmt::Debug for Finisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finisher")
            .field(
                "settle",
                &self.settle.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Finisher {
    pub(super) fn new(recorder: Arc<Recorder>) -> Self {
        Finisher {
            settle: Vec::new(),
            recorder,
        }
    }

    /// A finisher with its settle stages.
    pub(super) fn with_settle(recorder: Arc<Recorder>, settle: Vec<Box<dyn SettleStage>>) -> Self {
        Finisher { settle, recorder }
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Settles, bounds, logs and stores a finished record, with its caller's uid: at once when the
    /// caller's lookup is over (nearly always: it started when the connection was accepted), else from
    /// a task of its own that waits for it at most [`caller::WAIT`] — the response is never held.
    pub(super) fn finish(&self, mut record: Record, holds: Vec<Hold>) {
        for s in &self.settle {
            s.settle(&mut record);
        }
        // Budgets and rate limits: the reservation becomes what the request actually used.
        let tokens = record
            .usage
            .as_ref()
            .map_or(0, |u| u.input_tokens.saturating_add(u.output_tokens));
        let usd = record.cost_usd.unwrap_or(0.0);
        for h in holds {
            h.settle(tokens, usd);
        }
        record.bound();
        tracing::debug!(
            id = %record.id, provider = %record.provider, operation = %record.operation,
            model = record.model.as_deref().unwrap_or("-"), status = record.status.unwrap_or(0),
            outcome = ?record.outcome, latency_ms = record.latency_ms.unwrap_or(0.0),
            "request finished"
        );
        if let Some(facts) = record.caller.now() {
            record.identify(facts);
            return self.recorder.finish(record);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self.recorder.finish(record);
        };
        let recorder = self.recorder.clone();
        rt.spawn(async move {
            let facts = record.caller.clone().wait(caller::WAIT).await;
            record.identify(facts);
            recorder.finish(record);
        });
    }
}
