//! Client faults on an intercepted HTTP/2 connection, driven against the whole agent in-process (its
//! listener, device CA and pipeline) and the real mock provider: a client that resets one stream while
//! the provider is still thinking (RST_STREAM, the connection stays up) gets that request recorded as
//! `client_closed` with nothing left in flight, and the next request on the same connection is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use airlock_agent::agent::{self, AgentConfig};
use airlock_agent::paths::StateDir;
use airlock_agent::policy::{Policy, PolicySource, DEFAULT_POLICY_TOML};
use airlock_agent::record::{Outcome, Recorder};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect_h2(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("api.openai.com").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn chat(model: &str, fault: Option<&str>) -> Request<Full<Bytes>> {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "think hard"}]});
    let mut b = Request::post("https://api.openai.com/v1/chat/completions")
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json");
    if let Some(f) = fault {
        b = b.header("x-mock-fault", f);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn record_of(recorder: &Recorder, model: &str) -> airlock_agent::record::Record {
    for _ in 0..500 {
        if let Some(r) = recorder
            .recent(100)
            .iter()
            .find(|r| r.model.as_deref() == Some(model))
        {
            return (**r).clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no record for {model}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_before_the_response_is_recorded_and_the_connection_lives_on() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = airlock_mock::start(airlock_mock::Config::new(mock_dir.path()))
        .await
        .unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let policy_text = format!(
        "{DEFAULT_POLICY_TOML}\n[upstream.overrides.\"api.openai.com\"]\naddress = \"{}\"\nca_file = \"{}\"\n",
        mock.addr,
        mock.ca_file.display()
    );
    let policy = Policy::from_toml(&policy_text, PolicySource::Embedded).unwrap();
    let running = agent::start(AgentConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        state: StateDir::new(state_dir.path()),
        policy,
        records_in_memory: 100,
        unavailable: None,
        ledger: None,
    })
    .await
    .unwrap();
    let ca = std::fs::read(StateDir::new(state_dir.path()).ca_cert()).unwrap();
    let recorder = running.shared.pipeline().recorder().clone();

    let mut send = connect_h2(running.addr, &ca).await;
    // The provider thinks for 3 s; the client gives up after 300 ms and resets the stream.
    let slow = send.send_request(chat("h2-reset", Some("slow-headers:3000")));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), slow)
            .await
            .is_err(),
        "the slow answer came early"
    );
    let rec = record_of(&recorder, "h2-reset").await;
    assert_eq!(rec.outcome, Outcome::ClientClosed);
    assert!(
        rec.error
            .as_deref()
            .unwrap_or("")
            .contains("before the response started"),
        "{:?}",
        rec.error
    );
    assert_eq!(recorder.in_flight(), 0);

    // The same connection still serves.
    send.ready().await.unwrap();
    let resp = send.send_request(chat("h2-after", None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("h2-after"));
    assert_eq!(
        record_of(&recorder, "h2-after").await.outcome,
        Outcome::Completed
    );

    running.shutdown(Duration::from_secs(2)).await;
    drop(mock);
}
