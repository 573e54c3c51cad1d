//! Live policy swaps under load, against the whole agent in-process and the real mock provider: a
//! new policy every 100 ms while clients keep requests and paced streams in flight on kept-alive
//! connections drops no request and no stream; each request is governed by the policy in force
//! when it arrived (its record carries that policy's prices), and the last one applied is the one
//! in force afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_agent::agent::{self, AgentConfig};
use airlock_agent::paths::StateDir;
use airlock_agent::policy::{Policy, PolicySource, DEFAULT_POLICY_TOML};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn policy(name: &str, mock: &airlock_mock::Running, input_price: f64) -> Policy {
    let text = DEFAULT_POLICY_TOML.replacen(
        "name = \"airlock-default\"",
        &format!("name = \"{name}\""),
        1,
    ) + &format!(
        "\n[upstream.overrides.\"api.openai.com\"]\naddress = \"{}\"\nca_file = \"{}\"\n\n[prices.\"openai/gpt-4o-mini\"]\ninput = {input_price}\noutput = 1.0\n",
        mock.addr,
        mock.ca_file.display()
    );
    Policy::from_toml(&text, PolicySource::Embedded).unwrap()
}

fn chat(
    addr: std::net::SocketAddr,
    model: &str,
    stream: bool,
    words: usize,
) -> Request<Full<Bytes>> {
    let body = serde_json::json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": "count slowly"}]});
    Request::post("/openai/v1/chat/completions")
        .header("host", addr.to_string())
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .header("x-mock-output-words", words.to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// One client on one kept-alive HTTP/1.1 connection, alternating whole answers and paced streams
/// until told to stop; counts what completed and panics on anything that did not.
async fn client(
    addr: std::net::SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    streams: Arc<AtomicU64>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let stream = (i + n) % 2 == 0;
        send.ready().await.unwrap();
        let resp = send
            .send_request(chat(
                addr,
                "gpt-4o-mini",
                stream,
                if stream { 12 } else { 3 },
            ))
            .await
            .unwrap_or_else(|e| panic!("client {n} request {i}: {e}"));
        assert_eq!(resp.status(), 200, "client {n} request {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        if stream {
            assert!(
                text.trim_end().ends_with("data: [DONE]"),
                "client {n} stream {i} was cut: {text}"
            );
            streams.fetch_add(1, Ordering::Relaxed);
        } else {
            assert!(
                text.contains("\"choices\""),
                "client {n} request {i}: {text}"
            );
        }
        done.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_swap_every_100_ms_under_load_drops_no_request_and_no_stream() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mut cfg = airlock_mock::Config::new(mock_dir.path());
    // Streams take a few hundred milliseconds, so swaps land while they flow.
    cfg.chunk_delay = Duration::from_millis(25);
    let mock = airlock_mock::start(cfg).await.unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let running = agent::start(AgentConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        state: StateDir::new(state_dir.path()),
        policy: policy("policy-0", &mock, 1.0),
        records_in_memory: 10_000,
        unavailable: None,
        ledger: None,
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let streams = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(client(
                running.addr,
                n,
                stop.clone(),
                done.clone(),
                streams.clone(),
            ))
        })
        .collect();

    let mut swaps = 0u32;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        swaps += 1;
        let next = policy(&format!("policy-{swaps}"), &mock, 1.0 + f64::from(swaps));
        let t = Instant::now();
        running.shared.apply_policy(next).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(swaps >= 25, "only {swaps} swaps");
    assert!(
        streams.load(Ordering::Relaxed) >= 20,
        "too few streams overlapped the swaps"
    );
    assert_eq!(running.shared.policy().name, format!("policy-{swaps}"));
    assert!(
        slowest < Duration::from_millis(50),
        "a swap took {slowest:?}"
    );

    // Every request has a completed record, priced by a policy that was in force at some point:
    // no record is lost or left in flight by a swap.
    let recorder = running.shared.pipeline().recorder().clone();
    for _ in 0..200 {
        if recorder.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(recorder.in_flight(), 0);
    let recs = recorder.recent(100_000);
    assert_eq!(recs.len() as u64, done.load(Ordering::Relaxed));
    let mut prices_seen = std::collections::BTreeSet::new();
    for r in recs.iter() {
        assert_eq!(r.status, Some(200), "{r:?}");
        let u = r.usage.as_ref().unwrap();
        let cost = r.cost_usd.unwrap();
        // cost = input × price/1e6 + output × 1/1e6: recover the input price the record was priced at.
        let price = (cost - u.output_tokens as f64 / 1e6) * 1e6 / u.input_tokens as f64;
        let rounded = price.round();
        assert!(
            (price - rounded).abs() < 1e-6 && (1.0..=f64::from(swaps) + 1.0).contains(&rounded),
            "{price}"
        );
        prices_seen.insert(rounded as u64);
    }
    // Requests during the run were priced by several of the policies (how many depends on the
    // machine's load), and a request after the last swap by the last one.
    assert!(
        prices_seen.len() >= 3,
        "requests did not follow the swaps: {prices_seen:?}"
    );
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(chat(running.addr, "gpt-4o-mini", false, 3))
        .await
        .unwrap();
    let id = resp.headers()["x-airlock-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    resp.into_body().collect().await.unwrap();
    let mut last = None;
    for _ in 0..200 {
        last = recorder
            .recent(10)
            .iter()
            .find(|r| r.id == id)
            .map(|r| (**r).clone());
        if last.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = last.expect("the request after the swaps has a record");
    let u = last.usage.as_ref().unwrap();
    let price =
        (last.cost_usd.unwrap() - u.output_tokens as f64 / 1e6) * 1e6 / u.input_tokens as f64;
    assert!(
        (price - (1.0 + f64::from(swaps))).abs() < 1e-6,
        "priced at {price}, not by the last policy"
    );
    running.shutdown(Duration::from_secs(2)).await;
}
