//! The record stage's first half, between route and forward: the request's `begin` row is committed
//! to the journal, and only then is the request forwarded — nothing leaves the machine without a
//! durable record. When the journal cannot be written (a full disk), the request is refused in the
//! caller's dialect (airlock type `journal_unavailable`) rather than sent unrecorded. It must not
//! change the exchange.

use http::StatusCode;

use super::guard::{Phase, RecordGuard};
use super::{Pipeline, Stop};
use crate::providers::dialect::AirlockError;

impl Pipeline {
    /// Commit: the begin row, durable before the request goes on.
    pub(super) async fn commit(&self, guard: &mut RecordGuard) -> Result<(), Stop> {
        let Some(journal) = self.recorder().journal() else {
            return Ok(());
        };
        guard.set_phase(Phase::Stage("record"));
        let Some(record) = guard.record() else {
            return Ok(());
        };
        match journal.begin(record).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Stop::Refuse {
                err: AirlockError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unavailable",
                    format!(
                        "Airlock did not send this request because it cannot record it ({e}); \
                         `airlock status` shows the journal's state"
                    ),
                ),
                by: "record".into(),
            }),
        }
    }
}
