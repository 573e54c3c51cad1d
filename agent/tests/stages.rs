//! The stage contract, end to end through a real pipeline and the real mock provider over TLS: stages
//! plugged in with `with_request_stage`, `with_response_stage` and `with_settle_stage` run in pipeline
//! order and can await, refuse, answer and transform, and every exit — including a client that leaves
//! while a stage is awaiting — leaves exactly one finished record and nothing in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_agent::pipeline::{
    Exchange, Flow, Pipeline, RequestSlot, RequestStage, ResponseHead, ResponseStage, SettleStage,
    StageFuture, StreamCut, StreamStage, Target,
};
use airlock_agent::policy::{Limits, Policy, UpstreamOverride, UpstreamPolicy};
use airlock_agent::providers::dialect::AirlockError;
use airlock_agent::providers::response::TextDelta;
use airlock_agent::record::{Outcome, Record, Recorder};
use airlock_agent::upstream::{OwnCaCheck, UpstreamClient};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

type Log = Arc<Mutex<Vec<String>>>;

struct Mock {
    _running: airlock_mock::Running,
    _dir: tempfile::TempDir,
    upstream: UpstreamClient,
}

async fn mock() -> Mock {
    let dir = tempfile::tempdir().unwrap();
    let running = airlock_mock::start(airlock_mock::Config::new(dir.path()))
        .await
        .unwrap();
    let mut up = UpstreamPolicy::default();
    up.overrides.insert(
        "api.openai.com".into(),
        UpstreamOverride {
            address: running.addr.to_string(),
            ca_file: Some(running.ca_file.clone()),
        },
    );
    let upstream = UpstreamClient::new(&up, OwnCaCheck::new(|_| false), None).unwrap();
    Mock {
        _running: running,
        _dir: dir,
        upstream,
    }
}

fn target(path: &str) -> Target {
    let policy = Policy::embedded().unwrap();
    let entry = policy.hosts.lookup("api.openai.com").unwrap().clone();
    Target::new(
        airlock_agent::record::InterceptMode::BaseUrl,
        "api.openai.com".into(),
        None,
        &entry,
        path.into(),
    )
}

fn chat(model: &str, content: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = serde_json::json!({
        "model": model, "stream": stream,
        "messages": [{"role": "user", "content": content}],
    });
    Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn text(resp: Response<airlock_agent::body::ProxyBody>) -> (StatusCode, String) {
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn record(recorder: &Recorder, model: &str) -> Record {
    for _ in 0..500 {
        if let Some(r) = recorder
            .recent(100)
            .iter()
            .rev()
            .find(|r| r.model.as_deref() == Some(model))
        {
            return (**r).clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no record for {model}");
}

/// A request stage that logs its slot, awaits, and refuses or answers on cue.
struct Gate {
    name: &'static str,
    log: Log,
    refuse_model: &'static str,
    answer_model: &'static str,
    hang_model: &'static str,
}

impl RequestStage for Gate {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply<'a>(&'a self, ex: &'a mut Exchange) -> StageFuture<'a> {
        Box::pin(async move {
            // A real await: stages may wait on a journal commit or a lookup.
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.log.lock().unwrap().push(self.name.to_string());
            let model = ex.identity.model.clone().unwrap_or_default();
            if model == self.hang_model {
                std::future::pending::<()>().await;
            }
            if model == self.refuse_model {
                return Err(AirlockError::new(
                    StatusCode::FORBIDDEN,
                    "model_not_allowed",
                    format!("{model} is not allowed by policy"),
                ));
            }
            if model == self.answer_model {
                let resp = Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(airlock_agent::body::full(r#"{"answered":"locally"}"#))
                    .unwrap();
                return Ok(Flow::Answer(resp));
            }
            Ok(Flow::Continue)
        })
    }
}

fn gate(name: &'static str, log: &Log) -> Box<dyn RequestStage> {
    Box::new(Gate {
        name,
        log: log.clone(),
        refuse_model: if name == "inspect" { "refuse-me" } else { "-" },
        answer_model: if name == "route" { "answer-me" } else { "-" },
        hang_model: if name == "authorize" { "hang-me" } else { "-" },
    })
}

/// A response stage that upper-cases the mock's reply word by word and logs the deltas it saw; for
/// the model "hold-all" it holds everything, past its declared bound.
struct Shout {
    log: Log,
}

struct ShoutStream {
    log: Log,
    hold_all: bool,
    held: BytesMut,
}

impl ResponseStage for Shout {
    fn name(&self) -> &'static str {
        "shout"
    }

    fn open(&self, head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        self.log.lock().unwrap().push("response:open".into());
        Some(Box::new(ShoutStream {
            log: self.log.clone(),
            hold_all: head.model == Some("hold-all"),
            held: BytesMut::new(),
        }))
    }
}

impl StreamStage for ShoutStream {
    fn holdback_limit(&self) -> usize {
        64
    }

    fn held(&self) -> usize {
        self.held.len()
    }

    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        for d in deltas {
            self.log.lock().unwrap().push(format!("delta:{}", d.text));
        }
        if self.hold_all {
            self.held.extend_from_slice(&chunk);
            return Ok(());
        }
        let s = String::from_utf8_lossy(&chunk).replace("mock", "MOCK");
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn on_end(&mut self, out: &mut BytesMut) -> Result<(), StreamCut> {
        self.log.lock().unwrap().push("response:end".into());
        out.extend_from_slice(&self.held.split());
        Ok(())
    }

    fn on_record(&mut self, record: &mut Record) {
        record.cost_note = Some(format!("seen by shout; {:?}", record.outcome));
    }
}

struct SettleLog {
    log: Log,
}

impl SettleStage for SettleLog {
    fn name(&self) -> &'static str {
        "settle-log"
    }

    fn settle(&self, record: &mut Record) {
        self.log
            .lock()
            .unwrap()
            .push(format!("settle:{:?}", record.outcome));
    }
}

async fn pipeline(m: &Mock, log: &Log) -> (Arc<Pipeline>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::new(100, None));
    let p = Pipeline::new(m.upstream.clone(), recorder.clone(), Limits::default())
        // Added out of order on purpose: slots, not insertion order, decide when a stage runs.
        .with_request_stage(RequestSlot::Route, gate("route", log))
        .with_request_stage(RequestSlot::InspectRequest, gate("inspect", log))
        .with_request_stage(RequestSlot::Authorize, gate("authorize", log))
        .with_response_stage(Box::new(Shout { log: log.clone() }))
        .with_settle_stage(Box::new(SettleLog { log: log.clone() }));
    (Arc::new(p), recorder)
}

#[tokio::test]
async fn stages_run_in_pipeline_order_and_a_response_stage_transforms_the_stream() {
    let m = mock().await;
    let log: Log = Arc::default();
    let (p, recorder) = pipeline(&m, &log).await;
    let resp = p
        .handle(
            chat("gpt-4o-mini", "hello there", true),
            target("/v1/chat/completions"),
        )
        .await;
    let (status, body) = text(resp).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""content":"MOCK ""#),
        "the stage rewrote the stream: {body}"
    );
    assert!(!body.contains(r#""content":"mock ""#), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let rec = record(&recorder, "gpt-4o-mini").await;
    assert_eq!(rec.outcome, Outcome::Completed);
    assert!(rec
        .cost_note
        .as_deref()
        .unwrap_or("")
        .starts_with("seen by shout"));
    let log = log.lock().unwrap().clone();
    let first = |what: &str| log.iter().position(|l| l.starts_with(what)).unwrap();
    assert!(first("authorize") < first("inspect"), "{log:?}");
    assert!(first("inspect") < first("route"), "{log:?}");
    assert!(first("route") < first("response:open"), "{log:?}");
    assert!(first("response:open") < first("delta:"), "{log:?}");
    assert!(first("delta:") < first("response:end"), "{log:?}");
    assert!(first("response:end") < first("settle:"), "{log:?}");
    // The deltas are the text the parser read: the reply, word by word.
    let said: String = log
        .iter()
        .filter_map(|l| l.strip_prefix("delta:"))
        .collect();
    assert_eq!(said.trim(), "This is a mock reply from gpt-4o-mini.");
    assert_eq!(recorder.in_flight(), 0);
}

#[tokio::test]
async fn a_request_stage_refuses_in_the_callers_dialect_and_later_stages_never_run() {
    let m = mock().await;
    let log: Log = Arc::default();
    let (p, recorder) = pipeline(&m, &log).await;
    let (status, body) = text(
        p.handle(
            chat("refuse-me", "hi", false),
            target("/v1/chat/completions"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(v["airlock"]["type"], "model_not_allowed");
    let rec = record(&recorder, "refuse-me").await;
    assert_eq!(rec.outcome, Outcome::Rejected);
    assert_eq!(rec.decided_by.as_deref(), Some("inspect_request:inspect"));
    assert_eq!(rec.status, Some(403));
    let log = log.lock().unwrap().clone();
    assert!(!log.iter().any(|l| l == "route"), "{log:?}");
    assert!(!log.iter().any(|l| l == "response:open"), "{log:?}");
    assert_eq!(recorder.in_flight(), 0);
}

#[tokio::test]
async fn a_request_stage_answers_itself_without_forwarding() {
    let m = mock().await;
    let log: Log = Arc::default();
    let (p, recorder) = pipeline(&m, &log).await;
    let (status, body) = text(
        p.handle(
            chat("answer-me", "hi", false),
            target("/v1/chat/completions"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, r#"{"answered":"locally"}"#)
    );
    let rec = record(&recorder, "answer-me").await;
    assert_eq!(rec.outcome, Outcome::Completed);
    assert_eq!(rec.decided_by.as_deref(), Some("route:route"));
    assert_eq!(rec.upstream_error, None);
    assert_eq!(recorder.in_flight(), 0);
}

#[tokio::test]
async fn a_client_leaving_while_a_stage_awaits_finishes_the_record_and_frees_its_place() {
    let m = mock().await;
    let log: Log = Arc::default();
    let (p, recorder) = pipeline(&m, &log).await;
    let p2 = p.clone();
    let task = tokio::spawn(async move {
        p2.handle(chat("hang-me", "hi", false), target("/v1/chat/completions"))
            .await
    });
    for _ in 0..200 {
        if recorder.in_flight() == 1 && log.lock().unwrap().iter().any(|l| l == "authorize") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(recorder.in_flight(), 1);
    // hyper drops the handler future when the client goes away; aborting the task does the same.
    task.abort();
    let rec = record(&recorder, "hang-me").await;
    assert_eq!(rec.outcome, Outcome::ClientClosed);
    assert!(
        rec.error
            .as_deref()
            .unwrap_or("")
            .contains("authorize stage"),
        "{:?}",
        rec.error
    );
    assert_eq!(recorder.in_flight(), 0);
    assert_eq!(recorder.seen(), 1);
}

#[tokio::test]
async fn a_stage_holding_more_than_it_declared_ends_the_stream_with_an_error_event() {
    let m = mock().await;
    let log: Log = Arc::default();
    let (p, recorder) = pipeline(&m, &log).await;
    let req = {
        let body = serde_json::json!({
            "model": "hold-all", "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
        });
        Request::post("/v1/chat/completions")
            .header("authorization", "Bearer sk-test")
            .header("content-type", "application/json")
            .header("x-mock-output-words", "40")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let (status, body) = text(p.handle(req, target("/v1/chat/completions")).await).await;
    assert_eq!(status, 200);
    let last = body.lines().rfind(|l| l.starts_with("data: {")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
    assert_eq!(v["error"]["code"], "holdback_exceeded", "{body}");
    let rec = record(&recorder, "hold-all").await;
    assert_eq!(rec.outcome, Outcome::Incomplete);
    assert_eq!(rec.decided_by.as_deref(), Some("inspect_response:shout"));
    assert_eq!(recorder.in_flight(), 0);
}
