//! Response stages on a socket: for each unit (one response) the pipeline's response stages are
//! opened with a [`ResponseHead`] — the unit's operation and model, an event stream, the upstream's
//! 101 headers — and each server event of that unit reaches them as its own chunk (the JSON text of
//! one event) with the text deltas the providers' response parser reads from it (one definition for
//! SSE and sockets). What they write back decides what the client gets: the event as it came (its
//! original frames pass untouched), other event text (each JSON value one new text frame, in order),
//! nothing for now (held back, sent when released), or — on a [`StreamCut`] or a holdback past the
//! stage's declared bound — the Responses `error` event that ends the response for the client; the
//! rest of that unit's events are dropped, the socket goes on, and the record says which stage cut
//! it (`decided_by` `inspect_response:<stage>`, as on HTTP). A unit no stage opened is never held.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde_json::Value;

use super::client::error_event;
use super::frame;
use super::units::Unit;
use super::{Kind, SocketCtx};
use crate::guardrails::stream::Who;
use crate::pipeline::guardrails_response::ResponseGuard;
use crate::pipeline::stage::{ResponseHead, StreamCut, StreamStage};
use crate::policy::ApiKind;
use crate::providers::dialect::AirlockError;
use crate::providers::response::{Framing, ResponseParser};
use crate::record::Record;

/// The open response stages of one unit.
pub(crate) struct Inspected {
    stages: Vec<(&'static str, Box<dyn StreamStage>)>,
    parser: ResponseParser,
}

impl std::fmt::Debug for Inspected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspected")
            .field(
                "stages",
                &self.stages.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What the client gets for one server message.
#[derive(Debug)]
pub(crate) enum Out {
    /// The message as it came.
    Original,
    /// These frames instead (none: held back or dropped).
    Frames(Vec<Bytes>),
}

/// Opens the response stages for the unit whose record is `id`, or `None` when none cares.
pub(super) fn open(ctx: &SocketCtx, id: &str, model: Option<&str>) -> Option<Inspected> {
    if ctx.pipeline.inspect_response.is_empty() && ctx.guardrails.is_none() {
        return None;
    }
    let operation = ctx.kind.operation();
    let head = ResponseHead {
        id,
        api: ctx.target.api,
        operation,
        model,
        event_stream: true,
        // Each response on the socket stands for a successful event stream (its record says 200).
        status: StatusCode::OK,
        headers: &ctx.response_headers,
    };
    let mut stages: Vec<(&'static str, Box<dyn StreamStage>)> = Vec::new();
    if let Some((g, key)) = &ctx.guardrails {
        let who = Who {
            provider: ctx.target.provider.clone(),
            model: model.map(str::to_string),
            app: ctx.template.app.clone(),
        };
        stages.push((
            "guardrails",
            Box::new(
                ResponseGuard::for_events(g.clone(), who, *key, id)
                    .with_journal(ctx.pipeline.recorder().journal().cloned()),
            ),
        ));
    }
    stages.extend(
        ctx.pipeline
            .inspect_response
            .iter()
            .filter_map(|s| s.open(&head).map(|st| (s.name(), st))),
    );
    if stages.is_empty() {
        return None;
    }
    // Realtime events read like Responses events (`response.*`), so one parser serves both.
    let parser =
        ResponseParser::new(ApiKind::Openai, "responses", Framing::Sse, None).with_text_deltas();
    Some(Inspected { stages, parser })
}

impl Inspected {
    /// One server event of the unit; `ends` when it is the unit's last. What the client gets now.
    fn feed(
        &mut self,
        payload: &Bytes,
        v: &Value,
        ends: bool,
    ) -> Result<Bytes, (&'static str, StreamCut)> {
        self.parser.feed_event(v);
        let deltas = self.parser.take_text_deltas();
        let mut out = payload.clone();
        for (name, st) in self.stages.iter_mut() {
            if out.is_empty() && deltas.is_empty() {
                continue;
            }
            let mut buf = BytesMut::with_capacity(out.len());
            st.on_data(out, &deltas, &mut buf).map_err(|c| (*name, c))?;
            let (held, limit) = (st.held(), st.holdback_limit());
            if held > limit {
                return Err((
                    *name,
                    StreamCut {
                        kind: "holdback_exceeded",
                        message: format!(
                            "the response stage {name} held back {held} bytes, more than its limit of {limit}; Airlock ended the response"
                        ),
                    },
                ));
            }
            out = buf.freeze();
        }
        if !ends {
            return Ok(out);
        }
        let mut all = BytesMut::from(&out[..]);
        for (name, st) in self.stages.iter_mut() {
            st.on_end(&mut all).map_err(|c| (*name, c))?;
        }
        Ok(all.freeze())
    }

    /// The unit's record, just before it is stored.
    pub(crate) fn on_record(&mut self, r: &mut Record) {
        for (_, st) in self.stages.iter_mut() {
            st.on_record(r);
        }
    }
}

/// One server event of `unit` (`ends`: its terminal one): what the client gets for it.
pub(super) fn on_event(unit: &mut Unit, kind: Kind, payload: &Bytes, v: &Value, ends: bool) -> Out {
    if unit.cut.is_some() {
        // The client was told the response ended; the rest of it is not sent.
        return Out::Frames(Vec::new());
    }
    let Some(inspected) = unit.inspect.as_mut() else {
        return Out::Original;
    };
    match inspected.feed(payload, v, ends) {
        Ok(out) if out == *payload => Out::Original,
        Ok(out) => Out::Frames(event_frames(&out)),
        Err((stage, cut)) => {
            let id = unit.guard.id().to_string();
            tracing::debug!(id = %id, stage, kind = cut.kind, "a response stage ended a websocket response");
            let err = AirlockError::new(StatusCode::BAD_GATEWAY, cut.kind, cut.message.clone());
            let ev = error_event(kind, &err, &id, unit.client_event.as_deref());
            unit.guard
                .note(|r| r.decided_by = Some(format!("inspect_response:{stage}")));
            unit.cut = Some(cut.message);
            Out::Frames(vec![ev])
        }
    }
}

/// What a stage wrote, as text frames: one per JSON value in it (a stage that releases held events
/// writes them one after the other), or one frame for text that is not JSON.
pub(super) fn event_frames(out: &[u8]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(out).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0usize;
    loop {
        match it.next() {
            Some(Ok(_)) => {
                let end = it.byte_offset();
                let text = out[start..end].trim_ascii();
                if !text.is_empty() {
                    frames.push(frame::text_frame(text));
                }
                start = end;
            }
            None => break,
            Some(Err(_)) => {
                let rest = out[start..].trim_ascii();
                if !rest.is_empty() {
                    frames.push(frame::text_frame(rest));
                }
                break;
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn released_events_become_one_frame_each() {
        let frames = event_frames(br#"{"a":1}{"b":"x y"} {"c":[]}"#);
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[1][2..], br#"{"b":"x y"}"#);
        let odd = event_frames(b"not json");
        assert_eq!(odd.len(), 1);
        assert_eq!(&odd[0][2..], b"not json");
        assert!(event_frames(b"").is_empty());
    }
}
