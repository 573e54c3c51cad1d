//! The authorize stage: policy gates — which hosts and models, which credentials, budgets, rate
//! limits, concurrency. The gates themselves are plugged-in [`super::RequestStage`]s (governance lands
//! them); this file runs them in order. A gate that refuses answers in the caller's dialect and is
//! named in the record's `decided_by`. It must not forward anything.

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::{Pipeline, Stop};

impl Pipeline {
    /// Authorize: every plugged-in gate, in order.
    pub(super) async fn authorize(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        self.run_slot(&self.stages.authorize, "authorize", ex, guard)
            .await
    }
}
