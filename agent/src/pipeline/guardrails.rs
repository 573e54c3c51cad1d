//! The inspect-request stage's guardrails: every text the request carries (read by JSON Pointer,
//! [`crate::providers::request::texts`] — prompts, system prompts, tool results, tool-call
//! arguments) is scanned by the policy's engine, and each finding's action applied: `block`
//! refuses the request (400 `guardrail_violation` in the caller's dialect, the rule ids named, the
//! value never echoed), `redact` replaces the span with `[REDACTED:<rule>]` and sends the rewritten
//! body (still valid JSON: the string values change, nothing else), `warn` adds an
//! `x-airlock-guardrail` header to the response (and a `guardrail_warn` journal event), and every finding that is not `off` goes on the
//! record as a [`Hit`] (where, what, a masked preview and a keyed hash). It must not log a value.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::Pipeline;
use crate::guardrails::actions::Context;
use crate::guardrails::inspect;
use crate::journal::Journal;
use crate::policy::guardrails::Direction;
use crate::providers::dialect::AirlockError;

/// Journals a `guardrail_warn` event: a warning is its own event as well as part of the request's
/// row, so an admin can follow warnings without reading every request.
pub(super) fn journal_warning<S: serde::Serialize>(
    journal: Option<&Journal>,
    uid: Option<u32>,
    request_id: &str,
    direction: Direction,
    rules: &[S],
    provider: &str,
) {
    if let Some(j) = journal {
        j.event(
            "guardrail_warn",
            uid,
            serde_json::json!({
                "request_id": request_id,
                "direction": direction,
                "rules": rules,
                "provider": provider,
            }),
        );
    }
}

/// The header a warned request's response carries.
pub const GUARDRAIL_HEADER: &str = "x-airlock-guardrail";

impl Pipeline {
    /// Guardrails on the request: `Some` refuses it.
    pub(super) fn apply_guardrails(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Option<AirlockError> {
        let (found, value) = self.scan_request(ex)?;
        self.apply_found(ex, guard, found, value)
    }

    /// What the guardrails find in the request's texts, and the body they were found in (with
    /// redactions made); `None` when they are off, the body is not JSON, or nothing was found.
    pub(super) fn scan_request(&self, ex: &Exchange) -> Option<(inspect::Inspection, Value)> {
        let g = self.guardrails()?;
        let body = ex.readable.as_ref()?;
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let caller = ex.target.caller.now().unwrap_or_default();
        let cx = Context {
            provider: &ex.target.provider,
            model: ex.identity.model.as_deref(),
            app: caller.app.as_deref(),
        };
        let found = inspect::request(
            g,
            &self.hash_key,
            ex.target.api,
            &ex.identity.operation,
            &mut value,
            &cx,
        );
        (!found.hits.is_empty()).then_some((found, value))
    }

    /// Applies what [`Pipeline::scan_request`] found: the hits go on the record, `Some` refuses the
    /// request, a redaction replaces its body, a warning is journaled and becomes a header.
    pub(super) fn apply_found(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
        found: inspect::Inspection,
        value: Value,
    ) -> Option<AirlockError> {
        guard.note(|r| r.guardrails.extend(found.hits));
        if !found.blocked.is_empty() {
            let mut err = AirlockError::new(
                StatusCode::BAD_REQUEST,
                "guardrail_violation",
                format!(
                    "Airlock blocked this request before it left the machine: it contains {} (the matched \
                     text is not shown). Remove it from the prompt and send again; if it is not sensitive, \
                     ask your administrator to allow it in the guardrails policy",
                    found.blocked.join(", ")
                ),
            );
            err.should_retry = Some(false);
            return Some(err);
        }
        if found.redacted {
            if let Ok(json) = serde_json::to_vec(&value) {
                ex.set_body(Bytes::from(json));
            }
        }
        let warned = found.warned;
        if !warned.is_empty() {
            journal_warning(
                self.recorder().journal(),
                guard.record().and_then(|r| r.uid),
                guard.id(),
                Direction::Request,
                &warned,
                &ex.target.provider,
            );
            if let Ok(v) = HeaderValue::from_str(&format!("warn; rules={}", warned.join(","))) {
                ex.response_headers
                    .push((HeaderName::from_static(GUARDRAIL_HEADER), v));
            }
        }
        None
    }
}
