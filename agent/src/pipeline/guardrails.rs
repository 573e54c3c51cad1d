//! The inspect-request stage's guardrails: every text the request carries (read by JSON Pointer,
//! [`crate::providers::request::texts`] — prompts, system prompts, tool results, tool-call
//! arguments) is scanned by the policy's engine, and each finding's action applied: `block`
//! refuses the request (400 `guardrail_violation` in the caller's dialect, the rule ids named, the
//! value never echoed), `redact` replaces the span with `[REDACTED:<rule>]` and sends the rewritten
//! body (still valid JSON: the string values change, nothing else), `warn` adds an
//! `x-airlock-guardrail` header to the response, and every finding that is not `off` goes on the
//! record as a [`Hit`] (where, what, a masked preview and a keyed hash). It must not log a value.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::Pipeline;
use crate::guardrails::actions::{hit, merge, Context, Hit};
use crate::policy::guardrails::{Action, Direction};
use crate::providers::dialect::AirlockError;
use crate::providers::request::texts;

/// The header a warned request's response carries.
pub const GUARDRAIL_HEADER: &str = "x-airlock-guardrail";

impl Pipeline {
    /// Guardrails on the request: `Some` refuses it.
    pub(super) fn apply_guardrails(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Option<AirlockError> {
        let g = self.guard.as_ref().filter(|g| g.enabled())?;
        let body = ex.readable.as_ref()?;
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let caller = ex.target.caller.now().unwrap_or_default();
        let cx = Context {
            provider: &ex.target.provider,
            model: ex.identity.model.as_deref(),
            app: caller.app.as_deref(),
        };
        let spans = texts(ex.target.api, &ex.identity.operation, &value);
        let mut hits: Vec<Hit> = Vec::new();
        let mut blocked: Vec<String> = Vec::new();
        let mut redactions: Vec<(String, Vec<crate::guardrails::redact::Cut>)> = Vec::new();
        for span in &spans {
            let Some(text) = span.text(&value) else {
                continue;
            };
            let found = g.engine().scan(text);
            if found.is_empty() {
                continue;
            }
            let mut cuts = Vec::new();
            for f in found {
                let v = &text[f.start..f.end];
                let action = g.action(&f, v, Some(&span.pointer), Direction::Request, &cx);
                if action == Action::Off {
                    continue;
                }
                hits.push(hit(
                    &self.hash_key,
                    &f,
                    v,
                    Some(&span.pointer),
                    Direction::Request,
                    action,
                ));
                match action {
                    Action::Block => {
                        let r = format!("{} ({})", f.rule, f.category.as_str());
                        if !blocked.contains(&r) {
                            blocked.push(r);
                        }
                    }
                    Action::Redact => cuts.push((f.start, f.end, format!("[REDACTED:{}]", f.rule))),
                    _ => {}
                }
            }
            if !cuts.is_empty() {
                redactions.push((span.pointer.clone(), cuts));
            }
        }
        if hits.is_empty() {
            return None;
        }
        let hits = merge(hits);
        let warned: Vec<String> = hits
            .iter()
            .filter(|h| h.action == Action::Warn)
            .map(|h| h.rule.clone())
            .collect();
        guard.note(|r| r.guardrails.extend(hits));
        if !blocked.is_empty() {
            let mut err = AirlockError::new(
                StatusCode::BAD_REQUEST,
                "guardrail_violation",
                format!(
                    "Airlock blocked this request before it left the machine: it contains {} (the matched \
                     text is not shown). Remove it from the prompt and send again; if it is not sensitive, \
                     ask your administrator to allow it in the guardrails policy",
                    blocked.join(", ")
                ),
            );
            err.should_retry = Some(false);
            return Some(err);
        }
        if !redactions.is_empty() {
            for (pointer, mut cuts) in redactions {
                if let Some(Value::String(s)) = value.pointer_mut(&pointer) {
                    *s = crate::guardrails::redact::apply(s, &mut cuts);
                }
            }
            if let Ok(json) = serde_json::to_vec(&value) {
                ex.set_body(Bytes::from(json));
            }
        }
        if !warned.is_empty() {
            let mut rules = warned;
            rules.dedup();
            if let Ok(v) = HeaderValue::from_str(&format!("warn; rules={}", rules.join(","))) {
                ex.response_headers
                    .push((HeaderName::from_static(GUARDRAIL_HEADER), v));
            }
        }
        None
    }
}
