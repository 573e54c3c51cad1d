//! A whole session over in-memory connections: a client and an upstream speaking raw frames, the real
//! pump, stages and recorder in between.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{masked_text_frame, text_frame, FrameReader, Piece};
use super::{Kind, SocketCtx};
use crate::pipeline::exchange::Exchange;
use crate::pipeline::guard::RecordGuard;
use crate::pipeline::stage::{Flow, RequestStage, ResponseStage, StageFuture};
use crate::pipeline::{Pipeline, RequestSlot, Target};
use crate::policy::Policy;
use crate::providers::dialect::AirlockError;
use crate::record::{CostStatus, InterceptMode, Outcome, Record, Recorder};

struct Deny(&'static str);

impl RequestStage for Deny {
    fn name(&self) -> &'static str {
        "deny"
    }
    fn apply<'a>(&'a self, ex: &'a mut Exchange) -> StageFuture<'a> {
        Box::pin(async move {
            // Awaiting here must not hold up the upstream's events.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ex.identity.model.as_deref() == Some(self.0) {
                return Err(AirlockError::new(
                    http::StatusCode::FORBIDDEN,
                    "model_not_allowed",
                    format!("{} is not allowed", self.0),
                ));
            }
            Ok(Flow::Continue)
        })
    }
}

fn record(recorder: &Recorder, path: &str) -> Record {
    Record {
        id: recorder.next_id(),
        started_at: crate::record::now_rfc3339(),
        mode: InterceptMode::Proxy,
        host: "api.openai.com".into(),
        provider: "openai".into(),
        operation: "other:responses".into(),
        model: None,
        stream: false,
        method: "GET".into(),
        path: path.into(),
        status: Some(101),
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
        websocket: None,
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
    }
}

pub(super) struct Harness {
    pub(super) client: DuplexStream,
    pub(super) upstream: DuplexStream,
    recorder: Arc<Recorder>,
    pipeline: Arc<Pipeline>,
    done: tokio::task::JoinHandle<()>,
    client_frames: FrameReader,
    upstream_frames: FrameReader,
}

fn start(kind: Kind, path: &str) -> Harness {
    start_with(kind, path, None)
}

fn start_with(kind: Kind, path: &str, deflate: Option<(bool, bool)>) -> Harness {
    start_full(kind, path, deflate, Vec::new(), false)
}

/// A session with these response stages; `decode_for_client` as the 101 would have set it.
pub(super) fn start_full(
    kind: Kind,
    path: &str,
    deflate: Option<(bool, bool)>,
    responses: Vec<Box<dyn ResponseStage>>,
    decode_for_client: bool,
) -> Harness {
    start_governed(
        kind,
        path,
        deflate,
        responses,
        decode_for_client,
        Governed::default(),
    )
}

/// What a session's pipeline governs by, beyond the plugged-in `Deny("gpt-denied")` gate.
#[derive(Default)]
pub(super) struct Governed {
    /// Policy text added to the default policy (`[models]`, `[[budgets]]`, `[guardrails]` …).
    pub(super) policy: &'static str,
    /// The journal records go to.
    pub(super) journal: Option<crate::journal::Journal>,
}

impl Governed {
    pub(super) fn by(policy: &'static str) -> Self {
        Governed {
            policy,
            journal: None,
        }
    }
}

/// The default policy plus `extra`, and an upstream client for it.
fn policy_and_upstream(extra: &str) -> (Policy, crate::upstream::UpstreamClient) {
    let text = format!("{}\n{extra}", crate::policy::DEFAULT_POLICY_TOML);
    let policy = Policy::from_toml(&text, crate::policy::PolicySource::Embedded).unwrap();
    let upstream = crate::upstream::UpstreamClient::new(
        &policy.upstream,
        crate::upstream::OwnCaCheck::new(|_| false),
        None,
    )
    .unwrap();
    (policy, upstream)
}

pub(super) fn start_governed(
    kind: Kind,
    path: &str,
    deflate: Option<(bool, bool)>,
    responses: Vec<Box<dyn ResponseStage>>,
    decode_for_client: bool,
    governed: Governed,
) -> Harness {
    let recorder = Arc::new(Recorder::new(100, governed.journal));
    let (policy, upstream) = policy_and_upstream(governed.policy);
    let clock = Arc::new(crate::governance::clock::SystemClock);
    let mut pipeline = Pipeline::new(upstream, recorder.clone(), policy.limits.clone())
        .for_policy(&policy)
        .with_governance(crate::governance::Governance::new(clock))
        .with_request_stage(RequestSlot::Authorize, Box::new(Deny("gpt-denied")));
    for r in responses {
        pipeline = pipeline.with_response_stage(r);
    }
    let pipeline = Arc::new(pipeline);
    pipeline.make_latest();
    let entry = policy.hosts.lookup("api.openai.com").unwrap().clone();
    let target = Target::new(
        InterceptMode::Proxy,
        "api.openai.com".into(),
        None,
        &entry,
        path.into(),
    );
    let template = record(&recorder, path);
    let socket = RecordGuard::open(template.clone(), pipeline.finisher.clone());
    let ctx = SocketCtx {
        // Response guardrails are the stage tests' business; request guardrails run in any case.
        guardrails: None,
        pipeline: pipeline.clone(),
        target,
        headers: http::HeaderMap::new(),
        cap: 1 << 20,
        kind,
        deflate,
        template,
        response_headers: http::HeaderMap::new(),
        decode_for_client,
    };
    let (client, agent_client) = tokio::io::duplex(1 << 20);
    let (agent_upstream, upstream) = tokio::io::duplex(1 << 20);
    let done = tokio::spawn(super::run(ctx, agent_client, agent_upstream, socket));
    Harness {
        client,
        upstream,
        recorder,
        pipeline,
        done,
        client_frames: FrameReader::with_rsv1(1 << 20, true),
        upstream_frames: FrameReader::with_rsv1(1 << 20, true),
    }
}

pub(super) async fn read_frame(io: &mut DuplexStream, reader: &mut FrameReader) -> Bytes {
    loop {
        if let Some(Piece::Frame(f)) = reader.next_piece().unwrap() {
            return f.wire;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .expect("a frame in time")
            .unwrap();
        assert!(n > 0, "connection ended");
        reader.push(&buf[..n]);
    }
}

pub(super) fn payload(wire: &Bytes) -> Value {
    let mut r = FrameReader::new(1 << 20);
    r.push(wire);
    let Some(Piece::Frame(f)) = r.next_piece().unwrap() else {
        panic!()
    };
    serde_json::from_slice(&f.payload()).unwrap()
}

pub(super) fn create(model: &str, extra: Value) -> Bytes {
    let mut v = json!({"type": "response.create", "model": model, "input": [{"role": "user", "content": "hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    masked_text_frame(v.to_string().as_bytes(), [7, 1, 9, 3])
}

pub(super) fn events(id: &str, model: &str, input: u64, output: u64) -> Vec<Bytes> {
    [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": id, "model": model, "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hello"}),
        json!({"type": "response.completed", "sequence_number": 2, "response": {"id": id, "model": model, "status": "completed",
            "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 1}, "output_tokens": output,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output}}}),
    ]
    .iter()
    .map(|e| text_frame(e.to_string().as_bytes()))
    .collect()
}

impl Harness {
    /// Puts the default policy plus `extra` in force, as a policy swap does, while the socket is open.
    pub(super) fn put_policy(&self, extra: &str) {
        let (policy, upstream) = policy_and_upstream(extra);
        let next = Arc::new(
            self.pipeline
                .reconfigured(upstream, policy.limits.clone(), Vec::new())
                .for_policy(&policy),
        );
        next.make_latest();
    }

    pub(super) async fn client_sends(&mut self, b: &Bytes) {
        self.client.write_all(b).await.unwrap();
    }
    pub(super) async fn upstream_gets(&mut self) -> Bytes {
        read_frame(&mut self.upstream, &mut self.upstream_frames).await
    }
    pub(super) async fn upstream_sends(&mut self, frames: &[Bytes]) {
        for f in frames {
            self.upstream.write_all(f).await.unwrap();
        }
    }
    pub(super) async fn client_gets(&mut self) -> Bytes {
        read_frame(&mut self.client, &mut self.client_frames).await
    }
    /// The upstream sends `frames` and the client gets each as it was sent.
    pub(super) async fn relays(&mut self, frames: &[Bytes]) {
        self.upstream_sends(frames).await;
        for f in frames {
            assert_eq!(&self.client_gets().await, f);
        }
    }
    pub(super) async fn close(mut self) -> Vec<Record> {
        let close = Bytes::from_static(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);
        self.client_sends(&close).await;
        assert_eq!(
            self.upstream_gets().await,
            close,
            "the close frame is forwarded as sent"
        );
        self.upstream_sends(&[Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8])])
            .await;
        self.upstream.shutdown().await.unwrap();
        self.client.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.done)
            .await
            .unwrap()
            .unwrap();
        self.recorder
            .recent(100)
            .iter()
            .map(|r| (**r).clone())
            .collect()
    }
}

pub(super) fn by_message(records: &[Record], n: u64) -> &Record {
    records
        .iter()
        .find(|r| r.websocket.as_ref().is_some_and(|w| w.message == n))
        .unwrap_or_else(|| panic!("no record of message {n} in {records:#?}"))
}

#[tokio::test]
async fn each_create_is_a_record_and_a_refused_one_never_leaves_while_the_socket_goes_on() {
    let mut h = start(Kind::Responses, "/v1/responses");
    // 1: a warm-up, forwarded byte for byte, answered byte for byte.
    let warm = create("gpt-5", json!({"generate": false}));
    h.client_sends(&warm).await;
    assert_eq!(h.upstream_gets().await, warm);
    let answer = events("resp_1", "gpt-5-2026", 12, 0);
    h.upstream_sends(&answer).await;
    for f in &answer {
        assert_eq!(&h.client_gets().await, f);
    }
    // 2: denied — the client gets an error event on the socket, the upstream gets nothing.
    h.client_sends(&create("gpt-denied", json!({}))).await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["type"], "error");
    assert_eq!(err["status"], 403);
    assert_eq!(err["error"]["code"], "model_not_allowed");
    assert_eq!(err["error"]["message"], "gpt-denied is not allowed");
    // 3 and 4: two creates before either is answered; each gets its own usage.
    let third = create("gpt-5", json!({"previous_response_id": "resp_1"}));
    let fourth = create("gpt-5-mini", json!({}));
    h.client_sends(&third).await;
    h.client_sends(&fourth).await;
    assert_eq!(
        h.upstream_gets().await,
        third,
        "the refused message never reached the upstream"
    );
    assert_eq!(h.upstream_gets().await, fourth);
    let mut both = events("resp_3", "gpt-5", 30, 7);
    both.extend(events("resp_4", "gpt-5-mini", 40, 9));
    h.upstream_sends(&both).await;
    for f in &both {
        assert_eq!(&h.client_gets().await, f);
    }
    let records = h.close().await;

    let warm = by_message(&records, 1);
    assert_eq!(
        (warm.operation.as_str(), warm.model.as_deref()),
        ("responses", Some("gpt-5"))
    );
    assert!(warm.websocket.as_ref().unwrap().warmup);
    assert_eq!(warm.outcome, Outcome::Completed);
    assert_eq!(
        warm.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((12, 0))
    );
    assert!(!warm.usage_estimated);
    assert_eq!(warm.response_model.as_deref(), Some("gpt-5-2026"));

    let denied = by_message(&records, 2);
    assert_eq!(denied.outcome, Outcome::Rejected);
    assert_eq!(denied.status, Some(403));
    assert_eq!(denied.decided_by.as_deref(), Some("authorize:deny"));
    assert_eq!(denied.cost_status, Some(CostStatus::NotBilled));

    let third = by_message(&records, 3);
    assert_eq!(
        third
            .usage
            .map(|u| (u.input_tokens, u.cache_read_tokens, u.output_tokens)),
        Some((30, 1, 7))
    );
    let ws = third.websocket.as_ref().unwrap();
    assert_eq!(ws.previous_response_id.as_deref(), Some("resp_1"));
    assert_eq!(ws.response_id.as_deref(), Some("resp_3"));
    assert!(!ws.warmup);
    let fourth = by_message(&records, 4);
    assert_eq!(fourth.model.as_deref(), Some("gpt-5-mini"));
    assert_eq!(
        fourth.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((40, 9))
    );
    assert_eq!(fourth.status, Some(200));

    let socket = by_message(&records, 0);
    assert_eq!(socket.operation, "responses_websocket");
    let ws = socket.websocket.as_ref().unwrap();
    assert_eq!(
        (ws.messages, ws.client_close_code, ws.upstream_close_code),
        (Some(4), Some(1000), Some(1000))
    );
    assert_eq!(socket.outcome, Outcome::Completed);
    assert_eq!(records.len(), 5);
}

#[tokio::test]
async fn a_client_that_leaves_mid_response_finishes_its_record_as_client_closed() {
    let mut h = start(Kind::Responses, "/v1/responses");
    let c = create("gpt-5", json!({}));
    h.client_sends(&c).await;
    assert_eq!(h.upstream_gets().await, c);
    let answer = events("resp_9", "gpt-5", 12, 3);
    h.upstream_sends(&answer[..2]).await;
    h.client_gets().await;
    h.client_gets().await;
    drop(h.client);
    tokio::time::timeout(Duration::from_secs(15), h.done)
        .await
        .unwrap()
        .unwrap();
    let records: Vec<Record> = h
        .recorder
        .recent(10)
        .iter()
        .map(|r| (**r).clone())
        .collect();
    let r = by_message(&records, 1);
    assert_eq!(r.outcome, Outcome::ClientClosed);
    assert!(r.usage_estimated, "no usage arrived: it is estimated");
    assert!(r
        .error
        .as_deref()
        .unwrap()
        .contains("client closed the socket"));
}

#[tokio::test]
async fn realtime_responses_are_recorded_with_their_usage() {
    let mut h = start(Kind::Realtime, "/v1/realtime?model=gpt-realtime");
    let session = text_frame(
        json!({"type": "session.created", "session": {"model": "gpt-realtime"}})
            .to_string()
            .as_bytes(),
    );
    h.upstream_sends(std::slice::from_ref(&session)).await;
    assert_eq!(h.client_gets().await, session);
    let c = masked_text_frame(
        br#"{"type":"response.create","event_id":"evt_1"}"#,
        [1, 1, 1, 1],
    );
    h.client_sends(&c).await;
    assert_eq!(h.upstream_gets().await, c);
    let evs: Vec<Bytes> = [
        json!({"type": "response.created", "response": {"id": "resp_r", "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "response_id": "resp_r", "delta": "Hi"}),
        json!({"type": "response.done", "response": {"id": "resp_r", "status": "completed",
            "usage": {"total_tokens": 30, "input_tokens": 20, "output_tokens": 10,
                      "input_token_details": {"text_tokens": 20, "audio_tokens": 0, "cached_tokens": 5},
                      "output_token_details": {"text_tokens": 10, "audio_tokens": 0}}}}),
        // A response the server started on its own (voice activity).
        json!({"type": "response.created", "response": {"id": "resp_vad", "status": "in_progress"}}),
        json!({"type": "response.done", "response": {"id": "resp_vad", "status": "completed",
            "usage": {"input_tokens": 3, "output_tokens": 4}}}),
    ]
    .iter()
    .map(|e| text_frame(e.to_string().as_bytes()))
    .collect();
    h.upstream_sends(&evs).await;
    for f in &evs {
        assert_eq!(&h.client_gets().await, f);
    }
    let records = h.close().await;
    let r = by_message(&records, 1);
    assert_eq!(
        (r.operation.as_str(), r.model.as_deref()),
        ("realtime", Some("gpt-realtime"))
    );
    assert_eq!(
        r.usage
            .map(|u| (u.input_tokens, u.cache_read_tokens, u.output_tokens)),
        Some((20, 5, 10))
    );
    let vad = by_message(&records, 2);
    assert_eq!(
        vad.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((3, 4))
    );
    assert_eq!(
        vad.websocket.as_ref().unwrap().response_id.as_deref(),
        Some("resp_vad")
    );
}

#[tokio::test]
async fn bytes_that_are_not_websocket_frames_pass_unread() {
    let mut h = start(Kind::Realtime, "/v1/realtime");
    h.client.write_all(b"hello realtime").await.unwrap();
    let mut buf = [0u8; 64];
    let n = h.upstream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello realtime");
    h.upstream.write_all(b"HELLO").await.unwrap();
    let n = h.client.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"HELLO");
    drop(h.client);
    drop(h.upstream);
    tokio::time::timeout(Duration::from_secs(15), h.done)
        .await
        .unwrap()
        .unwrap();
    let rec = h.recorder.recent(10);
    let socket = rec.last().unwrap();
    assert_eq!((socket.request_bytes, socket.response_bytes), (14, 5));
    assert!(socket.websocket.as_ref().unwrap().unread.is_some());
    assert_ne!(socket.cost_status, Some(CostStatus::NotBilled));
}

/// A whole message compressed as a permessage-deflate sender does (sync flush, tail cut), in one
/// frame with RSV1, masked when `mask` is given.
pub(super) fn deflated(c: &mut flate2::Compress, text: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut z = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text, &mut z, flate2::FlushCompress::Sync)
        .unwrap();
    z.truncate(z.len() - 4);
    let mut wire = vec![0xc1u8]; // FIN, RSV1, text
    let m = if mask.is_some() { 0x80 } else { 0 };
    if z.len() < 126 {
        wire.push(m | z.len() as u8);
    } else {
        wire.push(m | 126);
        wire.extend_from_slice(&(z.len() as u16).to_be_bytes());
    }
    match mask {
        Some(k) => {
            wire.extend_from_slice(&k);
            wire.extend(z.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => wire.extend_from_slice(&z),
    }
    Bytes::from(wire)
}

#[tokio::test]
async fn compressed_messages_are_read_and_a_refused_one_does_not_break_the_next() {
    use flate2::{Compress, Compression};
    // The client compresses each message on its own (the agent's 101 asked it to); the upstream
    // keeps its window across messages.
    let mut h = start_with(Kind::Responses, "/v1/responses", Some((true, false)));
    let mut up = Compress::new(Compression::default(), false);
    let msg = |model: &str| {
        json!({"type": "response.create", "model": model, "input": "hello hello hello hello"})
            .to_string()
    };
    let denied = deflated(
        &mut Compress::new(Compression::default(), false),
        msg("gpt-denied").as_bytes(),
        Some([3, 3, 3, 3]),
    );
    h.client_sends(&denied).await;
    let err = h.client_gets().await;
    assert_eq!(
        payload(&err)["error"]["code"],
        "model_not_allowed",
        "the agent's event is sent uncompressed"
    );
    let ok = deflated(
        &mut Compress::new(Compression::default(), false),
        msg("gpt-5").as_bytes(),
        Some([5, 6, 7, 8]),
    );
    h.client_sends(&ok).await;
    assert_eq!(
        h.upstream_gets().await,
        ok,
        "forwarded exactly as compressed by the client"
    );
    let evs: Vec<Bytes> = [
        json!({"type": "response.created", "response": {"id": "resp_z", "model": "gpt-5"}}),
        json!({"type": "response.completed", "response": {"id": "resp_z", "model": "gpt-5",
            "usage": {"input_tokens": 4, "output_tokens": 2}}}),
    ]
    .iter()
    .map(|e| deflated(&mut up, e.to_string().as_bytes(), None))
    .collect();
    h.upstream_sends(&evs).await;
    for f in &evs {
        assert_eq!(
            &h.client_gets().await,
            f,
            "the upstream's compressed frames reach the client untouched"
        );
    }
    let records = h.close().await;
    let r = by_message(&records, 2);
    assert_eq!(
        r.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((4, 2))
    );
    assert!(r.websocket.as_ref().unwrap().compressed);
    assert_eq!(by_message(&records, 1).outcome, Outcome::Rejected);
}
