//! Response stages on a socket, over the in-memory session of [`super::tests`]: stages that rewrite,
//! hold back, cut or leave alone the server's events, plain and compressed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::deflate::Inflater;
use super::frame::{text_frame, FrameReader, Piece};
use super::tests::{by_message, create, deflated, events, payload, start_full, Harness};
use super::Kind;
use crate::pipeline::stage::{ResponseHead, ResponseStage, StreamCut, StreamStage};
use crate::providers::response::TextDelta;
use crate::record::Outcome;

/// Replaces a word in text deltas (what a redacting guardrail does), counting the records it saw.
struct Redact {
    word: &'static str,
    records: Arc<AtomicUsize>,
}

struct RedactStream {
    word: &'static str,
    records: Arc<AtomicUsize>,
}

impl ResponseStage for Redact {
    fn name(&self) -> &'static str {
        "redact"
    }
    fn open(&self, head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        assert!(head.event_stream);
        assert_eq!(head.operation, "responses");
        Some(Box::new(RedactStream {
            word: self.word,
            records: self.records.clone(),
        }))
    }
}

impl StreamStage for RedactStream {
    fn holdback_limit(&self) -> usize {
        0
    }
    fn held(&self) -> usize {
        0
    }
    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        if deltas.iter().any(|d| d.text.contains(self.word)) {
            let mut v: Value = serde_json::from_slice(&chunk).unwrap();
            let text = v["delta"]
                .as_str()
                .unwrap()
                .replace(self.word, "[redacted]");
            v["delta"] = json!(text);
            out.extend_from_slice(v.to_string().as_bytes());
        } else {
            out.extend_from_slice(&chunk);
        }
        Ok(())
    }
    fn on_end(&mut self, _out: &mut BytesMut) -> Result<(), StreamCut> {
        Ok(())
    }
    fn on_record(&mut self, _record: &mut crate::record::Record) {
        self.records.fetch_add(1, Ordering::SeqCst);
    }
}

/// Holds every text delta back until an event without text comes, then releases them all in order;
/// only on responses of the model named, when one is.
struct Hold(usize, Option<&'static str>);

struct HoldStream {
    limit: usize,
    buf: BytesMut,
}

impl ResponseStage for Hold {
    fn name(&self) -> &'static str {
        "hold"
    }
    fn open(&self, head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        if self.1.is_some_and(|m| head.model != Some(m)) {
            return None;
        }
        Some(Box::new(HoldStream {
            limit: self.0,
            buf: BytesMut::new(),
        }))
    }
}

impl StreamStage for HoldStream {
    fn holdback_limit(&self) -> usize {
        self.limit
    }
    fn held(&self) -> usize {
        self.buf.len()
    }
    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        self.buf.extend_from_slice(&chunk);
        if deltas.is_empty() {
            out.extend_from_slice(&self.buf.split());
        }
        Ok(())
    }
    fn on_end(&mut self, out: &mut BytesMut) -> Result<(), StreamCut> {
        out.extend_from_slice(&self.buf.split());
        Ok(())
    }
}

/// Ends the response when a delta says "secret".
struct Cut;

struct CutStream;

impl ResponseStage for Cut {
    fn name(&self) -> &'static str {
        "cut"
    }
    fn open(&self, _head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        Some(Box::new(CutStream))
    }
}

impl StreamStage for CutStream {
    fn holdback_limit(&self) -> usize {
        0
    }
    fn held(&self) -> usize {
        0
    }
    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        if deltas.iter().any(|d| d.text.contains("secret")) {
            return Err(StreamCut {
                kind: "guardrail_blocked",
                message: "the answer contained a secret; Airlock ended it".into(),
            });
        }
        out.extend_from_slice(&chunk);
        Ok(())
    }
    fn on_end(&mut self, _out: &mut BytesMut) -> Result<(), StreamCut> {
        Ok(())
    }
}

/// Opens nothing: the common case.
struct Nothing;

impl ResponseStage for Nothing {
    fn name(&self) -> &'static str {
        "nothing"
    }
    fn open(&self, _head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        None
    }
}

fn frames(evs: &[Value]) -> Vec<Bytes> {
    evs.iter()
        .map(|e| text_frame(e.to_string().as_bytes()))
        .collect()
}

fn completed(id: &str, input: u64, output: u64) -> Value {
    json!({"type": "response.completed", "response": {"id": id, "model": "gpt-5", "status": "completed",
        "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output}}})
}

async fn open_unit(h: &mut Harness, model: &str) {
    let c = create(model, json!({}));
    h.client_sends(&c).await;
    assert_eq!(h.upstream_gets().await, c);
}

#[tokio::test]
async fn a_rewriting_stage_changes_one_event_and_the_others_pass_byte_for_byte() {
    let records = Arc::new(AtomicUsize::new(0));
    let stage = Redact {
        word: "Hello",
        records: records.clone(),
    };
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        None,
        vec![Box::new(stage)],
        false,
    );
    open_unit(&mut h, "gpt-5").await;
    let evs = events("resp_1", "gpt-5", 10, 3);
    h.upstream_sends(&evs).await;
    assert_eq!(h.client_gets().await, evs[0]);
    let delta = payload(&h.client_gets().await);
    assert_eq!(delta["type"], "response.output_text.delta");
    assert_eq!(delta["delta"], "[redacted]");
    assert_eq!(delta["sequence_number"], 1);
    assert_eq!(h.client_gets().await, evs[2]);
    let recs = h.close().await;
    let r = by_message(&recs, 1);
    assert_eq!(r.outcome, Outcome::Completed);
    assert_eq!(
        r.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((10, 3)),
        "the usage record is still exact"
    );
    assert_eq!(r.decided_by, None);
    assert_eq!(records.load(Ordering::SeqCst), 1, "on_record ran once");
}

#[tokio::test]
async fn held_events_are_released_in_order_while_other_frames_keep_flowing() {
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        None,
        vec![Box::new(Hold(1 << 20, None))],
        false,
    );
    open_unit(&mut h, "gpt-5").await;
    let created =
        json!({"type": "response.created", "response": {"id": "resp_h", "model": "gpt-5"}});
    let d1 = json!({"type": "response.output_text.delta", "output_index": 0, "delta": "Hel"});
    let d2 = json!({"type": "response.output_text.delta", "output_index": 0, "delta": "lo"});
    let evs = frames(&[created, d1, d2]);
    h.upstream_sends(&evs).await;
    assert_eq!(h.client_gets().await, evs[0]);
    // The deltas are held; a ping goes on meanwhile.
    let ping = Bytes::from_static(&[0x89, 0x00]);
    h.upstream_sends(std::slice::from_ref(&ping)).await;
    assert_eq!(h.client_gets().await, ping);
    let done = frames(&[completed("resp_h", 8, 2)]);
    h.upstream_sends(&done).await;
    assert_eq!(h.client_gets().await, evs[1], "released in order");
    assert_eq!(h.client_gets().await, evs[2]);
    assert_eq!(h.client_gets().await, done[0]);
    let recs = h.close().await;
    let r = by_message(&recs, 1);
    assert_eq!(r.outcome, Outcome::Completed);
    assert_eq!(r.usage.map(|u| u.output_tokens), Some(2));
}

#[tokio::test]
async fn a_cut_ends_the_response_with_an_error_event_and_the_next_create_works() {
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        None,
        vec![Box::new(Cut)],
        false,
    );
    open_unit(&mut h, "gpt-5").await;
    let evs = frames(&[
        json!({"type": "response.created", "response": {"id": "resp_c", "model": "gpt-5"}}),
        json!({"type": "response.output_text.delta", "delta": "the secret is"}),
        json!({"type": "response.output_text.delta", "delta": " 42"}),
        completed("resp_c", 10, 4),
    ]);
    h.upstream_sends(&evs).await;
    assert_eq!(h.client_gets().await, evs[0]);
    let err = payload(&h.client_gets().await);
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "guardrail_blocked");
    assert_eq!(
        err["error"]["message"],
        "the answer contained a secret; Airlock ended it"
    );
    // The rest of that response never reaches the client; the next one does, untouched.
    open_unit(&mut h, "gpt-5").await;
    let next = events("resp_n", "gpt-5", 5, 1);
    h.upstream_sends(&next).await;
    for f in &next {
        assert_eq!(&h.client_gets().await, f);
    }
    let recs = h.close().await;
    let cut = by_message(&recs, 1);
    assert_eq!(cut.decided_by.as_deref(), Some("inspect_response:cut"));
    assert_eq!(cut.outcome, Outcome::Incomplete);
    assert_eq!(
        cut.error.as_deref(),
        Some("the answer contained a secret; Airlock ended it")
    );
    assert_eq!(
        cut.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((10, 4)),
        "the upstream's usage is still recorded"
    );
    let ok = by_message(&recs, 2);
    assert_eq!(ok.outcome, Outcome::Completed);
    assert_eq!(ok.decided_by, None);
}

#[tokio::test]
async fn holding_past_the_declared_bound_ends_the_response() {
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        None,
        vec![Box::new(Hold(16, None))],
        false,
    );
    open_unit(&mut h, "gpt-5").await;
    let evs = frames(&[
        json!({"type": "response.created", "response": {"id": "resp_b", "model": "gpt-5"}}),
        json!({"type": "response.output_text.delta", "delta": "more than sixteen bytes of text"}),
        completed("resp_b", 3, 9),
    ]);
    h.upstream_sends(&evs).await;
    assert_eq!(h.client_gets().await, evs[0]);
    let err = payload(&h.client_gets().await);
    assert_eq!(err["error"]["code"], "holdback_exceeded");
    let recs = h.close().await;
    assert_eq!(
        by_message(&recs, 1).decided_by.as_deref(),
        Some("inspect_response:hold")
    );
}

#[tokio::test]
async fn a_stage_that_opens_nothing_holds_nothing_back() {
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        None,
        vec![Box::new(Nothing)],
        false,
    );
    open_unit(&mut h, "gpt-5").await;
    // The first fragment of a message reaches the client before the upstream sent the rest.
    let text = json!({"type": "response.created", "response": {"id": "resp_0", "model": "gpt-5"}})
        .to_string();
    let (a, b) = text.as_bytes().split_at(20);
    let mut first = vec![0x01u8, a.len() as u8];
    first.extend_from_slice(a);
    let mut last = vec![0x80u8, b.len() as u8];
    last.extend_from_slice(b);
    h.upstream_sends(&[Bytes::from(first.clone())]).await;
    assert_eq!(h.client_gets().await, first);
    h.upstream_sends(&[Bytes::from(last.clone())]).await;
    assert_eq!(h.client_gets().await, last);
    let evs = events("resp_0", "gpt-5", 2, 2);
    h.upstream_sends(&evs[1..]).await;
    for f in &evs[1..] {
        assert_eq!(&h.client_gets().await, f);
    }
    let recs = h.close().await;
    assert_eq!(by_message(&recs, 1).usage.map(|u| u.input_tokens), Some(2));
}

/// What a client reads from one server frame: its text, inflated with the client's own window.
fn client_text(wire: &Bytes, inflater: &mut Inflater) -> (bool, Value) {
    let mut r = FrameReader::with_rsv1(1 << 20, true);
    r.push(wire);
    let Some(Piece::Frame(f)) = r.next_piece().unwrap() else {
        panic!()
    };
    let compressed = f.header.rsv1;
    let text = if compressed {
        inflater.inflate(&f.payload(), 1 << 20).unwrap()
    } else {
        f.payload().to_vec()
    };
    (compressed, serde_json::from_slice(&text).unwrap())
}

fn redacting() -> Vec<Box<dyn ResponseStage>> {
    vec![Box::new(Redact {
        word: "Hello",
        records: Arc::new(AtomicUsize::new(0)),
    })]
}

fn compressed_events() -> Vec<Value> {
    vec![
        json!({"type": "response.created", "response": {"id": "resp_z", "model": "gpt-5"}}),
        json!({"type": "response.output_text.delta", "delta": "Hello Hello, response"}),
        json!({"type": "response.output_text.delta", "delta": "response text response"}),
        completed("resp_z", 4, 6),
    ]
}

#[tokio::test]
async fn compressed_both_ways_a_rewrite_decodes_when_the_upstream_resets_per_message() {
    use flate2::{Compress, Compression};
    // The upstream granted server_no_context_takeover: each message is compressed on its own.
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        Some((true, true)),
        redacting(),
        false,
    );
    let c = deflated(
        &mut Compress::new(Compression::default(), false),
        json!({"type": "response.create", "model": "gpt-5", "input": "hi hi hi"})
            .to_string()
            .as_bytes(),
        Some([1, 2, 3, 4]),
    );
    h.client_sends(&c).await;
    assert_eq!(h.upstream_gets().await, c);
    let evs = compressed_events();
    let wire: Vec<Bytes> = evs
        .iter()
        .map(|e| {
            deflated(
                &mut Compress::new(Compression::default(), false),
                e.to_string().as_bytes(),
                None,
            )
        })
        .collect();
    h.upstream_sends(&wire).await;
    let mut inflater = Inflater::default();
    let got0 = h.client_gets().await;
    assert_eq!(
        got0, wire[0],
        "untouched events keep their compressed frames"
    );
    let (compressed, rewritten) = client_text(&h.client_gets().await, &mut inflater);
    assert!(
        !compressed,
        "the rewritten event is a new, uncompressed frame"
    );
    assert_eq!(rewritten["delta"], "[redacted] [redacted], response");
    for (i, e) in evs.iter().enumerate().skip(2) {
        let got = h.client_gets().await;
        assert_eq!(got, wire[i]);
        assert_eq!(&client_text(&got, &mut inflater).1, e);
    }
    let recs = h.close().await;
    assert_eq!(by_message(&recs, 1).usage.map(|u| u.output_tokens), Some(6));
}

#[tokio::test]
async fn compressed_with_the_upstreams_context_kept_the_client_gets_every_message_decoded() {
    use flate2::{Compress, Compression};
    // The upstream kept its window across messages although asked not to.
    let mut h = start_full(
        Kind::Responses,
        "/v1/responses",
        Some((true, false)),
        redacting(),
        true,
    );
    open_unit(&mut h, "gpt-5").await;
    let evs = compressed_events();
    let mut up = Compress::new(Compression::default(), false);
    let wire: Vec<Bytes> = evs
        .iter()
        .map(|e| deflated(&mut up, e.to_string().as_bytes(), None))
        .collect();
    h.upstream_sends(&wire).await;
    let mut inflater = Inflater::default();
    for (i, e) in evs.iter().enumerate() {
        let (compressed, got) = client_text(&h.client_gets().await, &mut inflater);
        assert!(!compressed);
        if i == 1 {
            assert_eq!(got["delta"], "[redacted] [redacted], response");
        } else {
            assert_eq!(&got, e, "event {i} decodes as the upstream sent it");
        }
    }
    let recs = h.close().await;
    assert_eq!(by_message(&recs, 1).outcome, Outcome::Completed);
}

#[tokio::test]
async fn realtime_events_of_another_response_flow_while_one_is_held() {
    let mut h = start_full(
        Kind::Realtime,
        "/v1/realtime?model=gpt-realtime",
        None,
        vec![Box::new(Hold(1 << 20, Some("gpt-held")))],
        false,
    );
    for (model, mask) in [("gpt-held", [1, 1, 1, 1]), ("gpt-free", [2, 2, 2, 2])] {
        let c = super::frame::masked_text_frame(
            json!({"type": "response.create", "response": {"model": model}})
                .to_string()
                .as_bytes(),
            mask,
        );
        h.client_sends(&c).await;
        assert_eq!(h.upstream_gets().await, c);
    }
    let done = |id: &str| {
        json!({"type": "response.done", "response": {"id": id, "status": "completed",
            "usage": {"input_tokens": 2, "output_tokens": 3}}})
    };
    let evs = frames(&[
        json!({"type": "response.created", "response": {"id": "r_a"}}),
        json!({"type": "response.created", "response": {"id": "r_b"}}),
        json!({"type": "response.text.delta", "response_id": "r_a", "delta": "held"}),
        json!({"type": "response.audio_transcript.delta", "response_id": "r_b", "delta": "free"}),
        done("r_b"),
        done("r_a"),
    ]);
    h.upstream_sends(&evs).await;
    // r_a's delta waits for its end; r_b's events pass in between.
    for i in [0, 1, 3, 4, 2, 5] {
        assert_eq!(h.client_gets().await, evs[i], "event {i}");
    }
    let recs = h.close().await;
    assert_eq!(by_message(&recs, 1).outcome, Outcome::Completed);
    assert_eq!(by_message(&recs, 2).usage.map(|u| u.output_tokens), Some(3));
}
