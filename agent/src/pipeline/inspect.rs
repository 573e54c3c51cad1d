//! The inspect-request stage: guardrails on what the request carries (secrets, personal data, prompt
//! injection, custom rules), plugged in as [`super::RequestStage`]s that read the text by JSON Pointer
//! ([`crate::providers::request::texts`]) and may block or redact it (through
//! [`super::Exchange::set_body`]). This file runs them in order; their response-side counterparts plug
//! into observe as [`super::ResponseStage`]s. It must not forward anything.

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::{Pipeline, Stop};

impl Pipeline {
    /// Inspect request: every plugged-in guardrail, in order.
    pub(super) async fn inspect_request(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        if let Some(err) = self.apply_guardrails(ex, guard) {
            return Err(Stop::Refuse {
                err,
                by: "inspect_request:guardrails".into(),
            });
        }
        self.run_slot(&self.stages.inspect_request, "inspect_request", ex, guard)
            .await
    }
}
