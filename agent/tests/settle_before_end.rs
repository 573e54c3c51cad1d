//! A request's budget reservation and rate-limit slot are settled before the client has the end of
//! its response: a client that sends its next request the moment the previous answer is complete
//! meets the settled counts, never the previous request's reservation. Through a real pipeline with
//! the policy's governance and the real mock provider over TLS; the tests run on one thread, so a
//! settle left to a task of its own would still be pending when the next request is authorized.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use airlock_agent::governance::clock::SystemClock;
use airlock_agent::governance::Governance;
use airlock_agent::pipeline::{Pipeline, Target};
use airlock_agent::policy::{Policy, PolicySource, UpstreamOverride, DEFAULT_POLICY_TOML};
use airlock_agent::record::{InterceptMode, Recorder};
use airlock_agent::upstream::{OwnCaCheck, UpstreamClient};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

struct Governed {
    _running: airlock_mock::Running,
    _dir: tempfile::TempDir,
    pipeline: Arc<Pipeline>,
    policy: Policy,
}

async fn governed(extra: &str) -> Governed {
    let dir = tempfile::tempdir().unwrap();
    let running = airlock_mock::start(airlock_mock::Config::new(dir.path()))
        .await
        .unwrap();
    let mut policy = Policy::from_toml(
        &format!("{DEFAULT_POLICY_TOML}\n{extra}"),
        PolicySource::Embedded,
    )
    .unwrap();
    policy.upstream.overrides.insert(
        "api.openai.com".into(),
        UpstreamOverride {
            address: running.addr.to_string(),
            ca_file: Some(running.ca_file.clone()),
        },
    );
    let upstream = UpstreamClient::new(&policy.upstream, OwnCaCheck::new(|_| false), None).unwrap();
    let recorder = Arc::new(Recorder::new(100, None));
    let pipeline = Pipeline::new(upstream, recorder, policy.limits.clone())
        .for_policy(&policy)
        .with_governance(Governance::new(Arc::new(SystemClock)));
    let pipeline = Arc::new(pipeline);
    pipeline.make_latest();
    Governed {
        _running: running,
        _dir: dir,
        pipeline,
        policy,
    }
}

impl Governed {
    /// One chat request, its whole response read; the status and the body.
    async fn chat(&self, stream: bool) -> (u16, String) {
        let body = serde_json::json!({
            "model": "gpt-4o-mini", "stream": stream, "max_tokens": 40,
            "messages": [{"role": "user", "content": "hello"}],
        });
        let req = Request::post("/v1/chat/completions")
            .header("authorization", "Bearer sk-test")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let entry = self.policy.hosts.lookup("api.openai.com").unwrap().clone();
        let target = Target::new(
            InterceptMode::BaseUrl,
            "api.openai.com".into(),
            None,
            &entry,
            "/v1/chat/completions".into(),
        );
        let resp = self.pipeline.handle(req, target).await;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_concurrency_slot_is_free_again_when_the_client_has_the_whole_answer() {
    let g = governed(
        "[[rate_limits]]\nname = \"one-at-a-time\"\nscope = [\"provider\"]\nconcurrency = 1\n",
    )
    .await;
    for i in 0..10 {
        let stream = i % 2 == 1;
        let (status, body) = g.chat(stream).await;
        assert_eq!(
            status, 200,
            "request {i} (stream {stream}) met the previous one's slot: {body}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_budget_reservation_is_settled_when_the_client_has_the_whole_answer() {
    // Each request reserves its prompt and 40 output tokens; two reservations (about 65 tokens each) never fit in 120, one
    // does beside the few tokens each answer actually used, until those add up.
    let g = governed(
        "[[budgets]]\nname = \"tight\"\nscope = [\"provider\"]\nlimit_tokens = 120\nwindow = \"day\"\n",
    )
    .await;
    let (mut admitted, mut refused) = (0, None);
    for i in 0..20 {
        let (status, body) = g.chat(i % 2 == 1).await;
        match status {
            200 => admitted += 1,
            _ => {
                refused = Some(body);
                break;
            }
        }
    }
    let refused = refused.expect("the budget ran out at some point");
    assert!(
        refused.contains("budget_exceeded") && !refused.contains("reserved by requests in flight"),
        "refused on spend alone, not on a reservation still held: {refused}"
    );
    assert!(admitted >= 3, "admitted {admitted}: {refused}");
}
