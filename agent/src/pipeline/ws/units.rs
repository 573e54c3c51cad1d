//! The units of policy on one socket and the server events that settle them. A unit is a client
//! `response.create` (Responses WebSocket mode, Realtime) or a response the Realtime server started on
//! its own (voice activity); each has its own record, opened when the unit begins and finished by its
//! terminal event — `response.completed` / `response.incomplete` / `response.failed` / `error` for
//! Responses, `response.done` for Realtime — or, if the socket ends first, as the guard semantics say
//! (client closed, upstream failed). Server events are matched to units by response id once the
//! provider named one, else in order: a `response.created` goes to the oldest unit still without a
//! response, an `error` without a response to the oldest unit that has none (so the rejection of a
//! second create sent while the first streams lands on the second), every other event to the oldest
//! unit that is streaming. It reads JSON values; it owns no I/O.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::guard::{End, RecordGuard};
use super::inspect::Inspected;
use super::Kind;
use crate::policy::ApiKind;
use crate::providers::response::{error_kind, ResponseSummary};
use crate::providers::usage::RawUsage;
use crate::record::Outcome;

/// Most units one socket may have waiting for their response; more are refused (a client that
/// never reads cannot grow the agent's memory).
pub(crate) const MAX_PENDING: usize = 64;

/// One unit in flight.
pub(crate) struct Unit {
    pub(crate) guard: RecordGuard,
    /// The Realtime client event that started it (`event_id`), which a Realtime `error` names.
    pub(crate) client_event: Option<String>,
    /// Its open response stages, if any opened.
    pub(crate) inspect: Option<Inspected>,
    /// A response stage ended it for the client (why): the rest of its events are dropped.
    pub(crate) cut: Option<String>,
    response_id: Option<String>,
    raw: RawUsage,
    model: Option<String>,
    error: Option<String>,
    text_bytes: u64,
    response_bytes: u64,
    first_byte: Option<Duration>,
    started: Instant,
    status: Option<u16>,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit")
            .field("id", &self.guard.id())
            .field("response_id", &self.response_id)
            .finish()
    }
}

impl Unit {
    /// A unit whose record is open in `guard`.
    pub(crate) fn new(guard: RecordGuard) -> Self {
        Unit {
            guard,
            client_event: None,
            inspect: None,
            cut: None,
            response_id: None,
            raw: RawUsage::default(),
            model: None,
            error: None,
            text_bytes: 0,
            response_bytes: 0,
            first_byte: None,
            started: Instant::now(),
            status: None,
        }
    }

    /// The unit answers the Realtime client event `id`.
    pub(crate) fn answering(mut self, id: Option<String>) -> Self {
        self.client_event = id;
        self
    }

    /// The unit's response stages.
    pub(crate) fn inspected(mut self, inspect: Option<Inspected>) -> Self {
        self.inspect = inspect;
        self
    }

    fn summary(&self, terminal: bool) -> ResponseSummary {
        ResponseSummary {
            usage: self.raw.normalise(ApiKind::Openai),
            model: self.model.clone(),
            terminal,
            error: self.error.clone(),
            output_text_bytes: self.text_bytes,
            unreadable: None,
        }
    }

    fn end(mut self, outcome: Outcome, error: Option<String>, terminal: bool) {
        // A unit a stage cut ended for the client there, whatever the upstream did after.
        let (outcome, error) = match self.cut.take() {
            Some(why) => (Outcome::Incomplete, Some(why)),
            None => (outcome, error),
        };
        if let (Some(inspect), Some(r)) = (self.inspect.as_mut(), self.guard.record()) {
            inspect.on_record(r);
        }
        let status = self.status;
        let response_id = self.response_id.clone();
        self.guard.note(|r| {
            r.status = status.or(r.status);
            if let Some(ws) = r.websocket.as_mut() {
                ws.response_id = response_id;
            }
        });
        let end = End {
            outcome,
            error,
            summary: Some(self.summary(terminal)),
            event_stream: true,
            first_byte: self.first_byte,
            response_bytes: self.response_bytes,
        };
        self.guard.finish(end);
    }
}

/// What the server said, for the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing to do with units.
    Other,
    /// An event of a unit.
    Unit,
    /// A Realtime response the server started on its own: the session opens a unit for it.
    ServerStarted,
}

/// The units of one socket.
#[derive(Debug)]
pub(crate) struct Units {
    kind: Kind,
    pending: Vec<Unit>,
    /// The Realtime session's model (from the URL, then `session.created` / `session.updated`).
    pub(crate) session_model: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

impl Units {
    /// No units yet.
    pub(crate) fn new(kind: Kind, session_model: Option<String>) -> Self {
        Units {
            kind,
            pending: Vec::new(),
            session_model,
        }
    }

    /// Units waiting for (or reading) their response.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether some unit has response stages open (its events are read whole before they go on).
    pub(crate) fn any_inspected(&self) -> bool {
        self.pending.iter().any(|u| u.inspect.is_some())
    }

    /// A unit the client started (its message was forwarded).
    pub(crate) fn push(&mut self, unit: Unit) {
        self.pending.push(unit);
    }

    /// Reads one server event (a whole text message, `wire_len` bytes on the wire); `hook` sees the
    /// unit it belongs to, and whether it is that unit's last event, before the unit is settled.
    pub(crate) fn on_event(
        &mut self,
        v: &Value,
        wire_len: u64,
        hook: &mut dyn FnMut(&mut Unit, bool),
    ) -> Seen {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if self.kind == Kind::Realtime && matches!(kind, "session.created" | "session.updated") {
            if let Some(m) = str_at(v, &["session", "model"]) {
                self.session_model = Some(m.to_string());
            }
            return Seen::Other;
        }
        let response_id = str_at(v, &["response", "id"]).or_else(|| {
            // Realtime deltas name their response at the top level.
            (self.kind == Kind::Realtime)
                .then(|| v.get("response_id").and_then(Value::as_str))
                .flatten()
        });
        let created = kind == "response.created";
        if self.kind == Kind::Realtime && kind == "error" {
            // A Realtime error names the client event it refuses; an error of no unit's event
            // (a bad `session.update`) ends nothing.
            let Some(event) = str_at(v, &["error", "event_id"]) else {
                return Seen::Other;
            };
            let Some(idx) = self
                .pending
                .iter()
                .position(|u| u.client_event.as_deref() == Some(event))
            else {
                return Seen::Other;
            };
            let err = v.get("error").unwrap_or(v);
            let mut unit = self.pending.remove(idx);
            hook(&mut unit, true);
            unit.error = Some(error_kind(err));
            unit.status = Some(400);
            unit.response_bytes += wire_len;
            unit.end(Outcome::Completed, None, true);
            return Seen::Unit;
        }
        let idx = match (response_id, kind) {
            (Some(id), _) if !created => self
                .pending
                .iter()
                .position(|u| u.response_id.as_deref() == Some(id))
                .or_else(|| self.pending.iter().position(|u| u.response_id.is_none())),
            (_, _) if created || kind == "error" => {
                self.pending.iter().position(|u| u.response_id.is_none())
            }
            _ => self.pending.iter().position(|u| u.response_id.is_some()),
        };
        let Some(idx) = idx else {
            if created && self.kind == Kind::Realtime {
                return Seen::ServerStarted;
            }
            // An event of no unit (rate-limit notices, a response the agent did not see start).
            return Seen::Other;
        };
        let api = ApiKind::Openai;
        let unit = &mut self.pending[idx];
        let ends = matches!(
            (self.kind, kind),
            (
                Kind::Responses,
                "response.completed" | "response.incomplete" | "response.failed"
            ) | (Kind::Realtime, "response.done")
                | (_, "error")
        );
        hook(unit, ends);
        unit.response_bytes += wire_len;
        if unit.first_byte.is_none() {
            unit.first_byte = Some(unit.started.elapsed());
        }
        if let Some(id) = response_id {
            if unit.response_id.is_none() {
                unit.response_id = Some(id.to_string());
            }
        }
        if let Some(m) = str_at(v, &["response", "model"]) {
            unit.model = Some(m.to_string());
        }
        if unit.status.is_none() && kind != "error" {
            unit.status = Some(200);
        }
        if kind.ends_with(".delta") {
            if let Some(d) = v.get("delta").and_then(Value::as_str) {
                unit.text_bytes += d.len() as u64;
            }
        }
        let terminal = match (self.kind, kind) {
            (Kind::Responses, "response.completed" | "response.incomplete" | "response.failed") => {
                true
            }
            (Kind::Realtime, "response.done") => true,
            (_, "error") => {
                let err = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
                unit.error = Some(error_kind(err));
                // OpenAI's WebSocket errors carry the HTTP status they stand for.
                unit.status = v
                    .get("status")
                    .or_else(|| v.get("status_code"))
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .or(Some(400));
                true
            }
            _ => false,
        };
        if !terminal {
            return Seen::Unit;
        }
        let resp = v.get("response");
        if let Some(usage) = resp.and_then(|r| r.get("usage")) {
            unit.raw.merge(RawUsage::from_usage_object(api, usage));
        }
        if let Some(err) = resp.and_then(|r| r.get("error")).filter(|e| e.is_object()) {
            unit.error = Some(error_kind(err));
        }
        if self.kind == Kind::Realtime {
            if let Some(s) = str_at(v, &["response", "status"]).filter(|s| *s == "failed") {
                unit.error.get_or_insert_with(|| s.to_string());
            }
        }
        let unit = self.pending.remove(idx);
        unit.end(Outcome::Completed, None, true);
        Seen::Unit
    }

    /// A server message passed unread: the streaming unit's record says so. `false` if no unit was
    /// waiting.
    pub(crate) fn note_unread(&mut self, why: &str) -> bool {
        let idx = self
            .pending
            .iter()
            .position(|u| u.response_id.is_some())
            .or((!self.pending.is_empty()).then_some(0));
        let Some(unit) = idx.and_then(|i| self.pending.get_mut(i)) else {
            return false;
        };
        let why = format!("a server event: {why}");
        unit.guard.note(|r| {
            if let Some(ws) = r.websocket.as_mut() {
                ws.unread = Some(why);
            }
        });
        true
    }

    /// The socket ended: every unit still waiting ends as `outcome` says.
    pub(crate) fn end_all(&mut self, outcome: Outcome, error: &str) {
        for unit in self.pending.drain(..) {
            // A unit whose response never started, on a socket the upstream broke, was never
            // answered: the provider failed it.
            let outcome = match (outcome, unit.status) {
                (Outcome::Incomplete, None) => Outcome::UpstreamFailed,
                (o, _) => o,
            };
            unit.end(outcome, Some(error.to_string()), false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::pipeline::record::Finisher;
    use crate::record::{InterceptMode, Record, Recorder, WsFacts};

    fn unit(recorder: &Arc<Recorder>, n: u64) -> Unit {
        let r = Record {
            id: recorder.next_id(),
            started_at: String::new(),
            mode: InterceptMode::BaseUrl,
            host: "api.openai.com".into(),
            provider: "openai".into(),
            operation: "responses".into(),
            model: Some("gpt-5".into()),
            stream: true,
            method: "GET".into(),
            path: "/v1/responses".into(),
            status: None,
            outcome: Outcome::InProgress,
            credential: "bearer".into(),
            credential_fingerprint: None,
            response_model: None,
            usage: None,
            usage_estimated: false,
            usage_injected: false,
            cost_usd: None,
            cost_status: None,
            cost_note: None,
            upstream_error: None,
            latency_ms: None,
            ttfb_ms: None,
            request_bytes: 0,
            response_bytes: 0,
            error: None,
            decided_by: None,
            websocket: Some(WsFacts {
                message: n,
                ..WsFacts::default()
            }),
            uid: None,
            user: None,
            pid: None,
            app: None,
            app_path: None,
            device: None,
            reserved: None,
            policy: None,
            guardrails: Vec::new(),
            caller: crate::caller::Caller::unknown(),
        };
        let mut guard = RecordGuard::open(r, Arc::new(Finisher::new(recorder.clone())));
        guard.set_facts(crate::pipeline::guard::RequestFacts {
            api: ApiKind::Openai,
            operation: "responses".into(),
            body: None,
        });
        Unit::new(guard)
    }

    #[test]
    fn the_error_for_a_second_create_lands_on_it_not_on_the_one_streaming() {
        let recorder = Arc::new(Recorder::new(10, None));
        let mut units = Units::new(Kind::Responses, None);
        units.push(unit(&recorder, 1));
        units.push(unit(&recorder, 2));
        let created =
            json!({"type": "response.created", "response": {"id": "resp_a", "model": "gpt-5"}});
        assert_eq!(units.on_event(&created, 10, &mut |_, _| {}), Seen::Unit);
        let busy = json!({"type": "error", "status": 400, "error": {"type": "invalid_request_error",
            "code": "response_already_in_progress", "message": "busy"}});
        assert_eq!(units.on_event(&busy, 10, &mut |_, _| {}), Seen::Unit);
        assert_eq!(units.len(), 1, "the second create ended");
        let delta = json!({"type": "response.output_text.delta", "delta": "Hi"});
        units.on_event(&delta, 10, &mut |_, _| {});
        let done = json!({"type": "response.completed", "response": {"id": "resp_a", "usage": {"input_tokens": 5, "output_tokens": 2}}});
        units.on_event(&done, 10, &mut |_, _| {});
        assert_eq!(units.len(), 0);
        let recs = recorder.recent(10);
        let second = recs
            .iter()
            .find(|r| r.websocket.as_ref().unwrap().message == 2)
            .unwrap();
        assert_eq!(second.status, Some(400));
        assert_eq!(
            second.upstream_error.as_deref(),
            Some("invalid_request_error/response_already_in_progress")
        );
        let first = recs
            .iter()
            .find(|r| r.websocket.as_ref().unwrap().message == 1)
            .unwrap();
        assert_eq!(
            first.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 2))
        );
        assert_eq!(
            first.websocket.as_ref().unwrap().response_id.as_deref(),
            Some("resp_a")
        );
        assert_eq!(first.response_bytes, 30);
    }

    #[test]
    fn events_of_no_unit_are_left_alone() {
        let mut units = Units::new(Kind::Responses, None);
        let ev = json!({"type": "codex.rate_limits", "primary": {}});
        assert_eq!(units.on_event(&ev, 10, &mut |_, _| {}), Seen::Other);
        let mut rt = Units::new(Kind::Realtime, Some("gpt-realtime".into()));
        let created = json!({"type": "response.created", "response": {"id": "resp_v"}});
        assert_eq!(
            rt.on_event(&created, 10, &mut |_, _| {}),
            Seen::ServerStarted
        );
        let session = json!({"type": "session.updated", "session": {"model": "gpt-realtime-mini"}});
        rt.on_event(&session, 10, &mut |_, _| {});
        assert_eq!(rt.session_model.as_deref(), Some("gpt-realtime-mini"));
    }
}
