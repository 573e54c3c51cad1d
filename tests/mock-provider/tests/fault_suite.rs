//! End-to-end checks of the fault modes a proxy's fault suite needs, as a client sees them over TLS
//! (HTTP/1.1 and HTTP/2) and plain HTTP/1.1: cuts at an exact byte followed by a TCP reset, cuts in
//! the middle of a frame, stalls that keep the connection open, a clean close, frames that are not
//! JSON or not UTF-8, the wrong content type, error statuses without a body or with a load
//! balancer's HTML page, huge frames streamed without the mock holding them, and hosts that refuse
//! `stream_options` (older Azure api-versions, vLLM-strict servers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{frames, openai_chunks, parse_sse, post, Mock, Proto};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "Hello there"}]})
}

fn chat_req(
    fault: &str,
    stream: bool,
    extra: &[(&str, &str)],
) -> http::Request<http_body_util::Full<Bytes>> {
    let mut headers = vec![BEARER, ("x-mock-fault", fault)];
    headers.extend_from_slice(extra);
    post(OPENAI, "/v1/chat/completions", &headers, &chat(stream))
}

/// Bytes with every id-like character (digits, lower-case hex) masked, so two answers that differ
/// only in ids and timestamps compare equal.
fn mask(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|&c| {
            if c.is_ascii_digit() || (b'a'..=b'f').contains(&c) {
                b'0'
            } else {
                c
            }
        })
        .collect()
}

/// The whole body of an answer without a fault.
async fn reference(mock: &Mock, stream: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    let resp = mock.send(Proto::H1, chat_req("none", stream, extra)).await;
    let (parts, err) = frames(resp).await;
    assert!(err.is_none());
    parts.concat()
}

/// How reading a body stopped.
#[derive(Debug, PartialEq)]
enum Stop {
    /// It ended cleanly.
    End,
    /// It failed.
    Error,
    /// Nothing came for the quiet period.
    Quiet,
}

/// Reads a body until it ends, fails, or `quiet` passes without a frame.
async fn read_until(body: &mut Incoming, quiet: Duration) -> (Vec<u8>, Stop) {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(quiet, body.frame()).await {
            Err(_) => return (out, Stop::Quiet),
            Ok(None) => return (out, Stop::End),
            Ok(Some(Err(_))) => return (out, Stop::Error),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
        }
    }
}

/// A `reset-at` case: N, extra headers, and the uncut body it cuts.
type Case<'a> = (usize, Vec<(&'a str, &'a str)>, &'a Vec<u8>);

#[tokio::test]
async fn reset_at_sends_exactly_n_body_bytes_then_a_reset() {
    let mock = Mock::start(&[]);
    let lf = reference(&mock, true, &[]).await;
    let crlf = reference(&mock, true, &[("x-mock-stream-crlf", "1")]).await;
    let cr = crlf.iter().position(|&c| c == b'\r').unwrap();
    let in_string = lf
        .windows(14)
        .position(|w| w == b"\"chatcmpl-mock")
        .unwrap()
        + 6;
    // (N, extra headers, the reference it cuts)
    let cases: Vec<Case<'_>> = vec![
        (0, vec![], &lf),
        (1, vec![], &lf),
        (3, vec![], &lf),                                   // inside "data:"
        (in_string, vec![], &lf),                           // inside a JSON string
        (cr + 1, vec![("x-mock-stream-crlf", "1")], &crlf), // between \r and \n
        (lf.len() - 1, vec![], &lf),                        // one byte short of the end
    ];
    for proto in [Proto::H1, Proto::H2, Proto::Plain] {
        for (n, extra, full) in &cases {
            let fault = format!("reset-at:{n}");
            let resp = mock.send(proto, chat_req(&fault, true, extra)).await;
            assert_eq!(resp.status(), 200);
            assert!(resp.headers().get("content-length").is_none());
            let (parts, err) = frames(resp).await;
            let got = parts.concat();
            assert!(err.is_some(), "{proto:?} {fault}: the body ended cleanly");
            assert_eq!(got.len(), *n, "{proto:?} {fault}");
            assert_eq!(mask(&got), mask(&full[..*n]), "{proto:?} {fault}");
        }
    }
    // A body shorter than N arrives whole, and still never ends.
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(proto, chat_req("reset-at:1000000", true, &[]))
            .await;
        let (parts, err) = frames(resp).await;
        assert!(
            err.is_some(),
            "{proto:?}: a reset-at past the end must still fail"
        );
        assert_eq!(parts.concat().len(), lf.len());
        // Non-streamed answers are cut the same way (sent chunked, without a content-length).
        let full = reference(&mock, false, &[]).await;
        let resp = mock.send(proto, chat_req("reset-at:10", false, &[])).await;
        assert!(resp.headers().get("content-length").is_none());
        let (parts, err) = frames(resp).await;
        assert!(err.is_some());
        assert_eq!(parts.concat(), full[..10].to_vec());
    }
}

#[tokio::test]
async fn reset_at_is_a_tcp_reset_on_the_wire() {
    let mock = Mock::start(&[]);
    let body = chat(true).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\nauthorization: Bearer sk\r\n\
x-mock-fault: reset-at:20\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", mock.plain_port.unwrap())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match tcp.read(&mut buf) {
            Ok(0) => panic!("clean EOF instead of a reset after {got:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    // One chunk of exactly 20 bytes, and no terminating chunk.
    assert!(
        text.ends_with("\r\n\r\n14\r\ndata: {\"id\":\"chatcmp\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn close_ends_the_connection_without_a_response() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2, Proto::Plain] {
        let r = mock.try_send(proto, chat_req("close", false, &[])).await;
        assert!(r.is_err(), "{proto:?}: got a response to close");
    }
    let body = chat(false).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\nauthorization: Bearer sk\r\n\
x-mock-fault: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", mock.plain_port.unwrap())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        tcp.read(&mut buf).unwrap(),
        0,
        "close is a FIN, not a reset"
    );
}

#[tokio::test]
async fn reset_mid_frame_cuts_inside_the_next_frame() {
    let mock = Mock::start(&[]);
    let full = reference(&mock, true, &[]).await;
    // Frame lengths: each frame ends with a blank line.
    let mut frames_ref = Vec::new();
    let mut begin = 0;
    for i in 1..full.len() {
        if full[i - 1] == b'\n' && full[i] == b'\n' {
            frames_ref.push(i + 1 - begin);
            begin = i + 1;
        }
    }
    assert_eq!(frames_ref.len(), 10);
    let cut = frames_ref.len() / 2;
    let expected: usize = frames_ref[..cut].iter().sum::<usize>() + frames_ref[cut] / 2;
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(proto, chat_req("reset-mid-frame", true, &[]))
            .await;
        let (parts, err) = frames(resp).await;
        let got = parts.concat();
        assert!(err.is_some(), "{proto:?}");
        assert_eq!(got.len(), expected, "{proto:?}");
        assert!(!got.ends_with(b"\n\n"));
        assert_eq!(mask(&got), mask(&full[..expected]));
    }
    // A non-streamed answer announces its length and stops half-way.
    let resp = mock
        .send(Proto::H1, chat_req("reset-mid-frame", false, &[]))
        .await;
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (parts, err) = frames(resp).await;
    assert!(err.is_some());
    assert_eq!(parts.concat().len(), len / 2);
}

#[tokio::test]
async fn stall_at_sends_n_bytes_then_keeps_the_connection_open() {
    let mock = Mock::start(&[]);
    let full = reference(&mock, true, &[]).await;
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock.send(proto, chat_req("stall-at:25", true, &[])).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let (got, stop) = read_until(&mut body, Duration::from_millis(400)).await;
        assert_eq!(stop, Stop::Quiet, "{proto:?}: the read must time out");
        assert_eq!(got.len(), 25);
        assert_eq!(mask(&got), mask(&full[..25]));
        // Still open, still silent.
        let (more, stop) = read_until(&mut body, Duration::from_millis(300)).await;
        assert_eq!((more.len(), stop), (0, Stop::Quiet), "{proto:?}");
    }
    // Past the end: everything arrives, but the body never ends.
    let resp = mock
        .send(Proto::H1, chat_req("stall-at:100000", true, &[]))
        .await;
    let mut body = resp.into_body();
    let (got, stop) = read_until(&mut body, Duration::from_millis(400)).await;
    assert_eq!((got.len(), stop), (full.len(), Stop::Quiet));
}

#[tokio::test]
async fn stall_mid_stream_sends_half_the_frames_then_nothing() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(
                proto,
                chat_req("stall-mid-stream", true, &[("x-mock-output-words", "8")]),
            )
            .await;
        let mut body = resp.into_body();
        let (got, stop) = read_until(&mut body, Duration::from_millis(400)).await;
        assert_eq!(stop, Stop::Quiet, "{proto:?}");
        let text = String::from_utf8(got).unwrap();
        // role + 8 words + finish + [DONE] = 11 frames; the first 5 arrive.
        assert_eq!(parse_sse(&text).len(), 5, "{text}");
    }
}

#[tokio::test]
async fn stall_headers_never_answers_and_lets_go_when_the_client_does() {
    let mock = Mock::start(&[]);
    // Warm up so the baseline counts the listeners only.
    let _ = reference(&mock, false, &[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = mock.open_fds();
    for proto in [Proto::H1, Proto::H2, Proto::Plain] {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            mock.try_send(proto, chat_req("stall-headers", false, &[])),
        )
        .await;
        assert!(r.is_err(), "{proto:?}: got an answer to stall-headers");
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
    // The mock still answers everyone else meanwhile.
    let (resp, _) = mock
        .json(Proto::H1, chat_req("slow-headers:10", false, &[]))
        .await;
    assert_eq!(resp.status(), 200);
    // The timed-out requests dropped their connections; the mock closes its side too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.open_fds() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(mock.open_fds() <= before, "{} > {before}", mock.open_fds());
    // The stalled request is in the log, without an answer.
    let log = mock.requests().await;
    let stalled: Vec<&Value> = log
        .iter()
        .filter(|r| r["headers"]["x-mock-fault"] == "stall-headers")
        .collect();
    assert_eq!(stalled.len(), 3);
    assert!(stalled.iter().all(|r| r["status"].is_null()));
}

#[tokio::test]
async fn invalid_json_frame_is_one_extra_frame_half_way() {
    let mock = Mock::start(&[]);
    let (_, text) = mock
        .text(Proto::H1, chat_req("invalid-json-frame", true, &[]))
        .await;
    let events = parse_sse(&text);
    assert_eq!(events.len(), 11, "10 frames + 1: {text}");
    let bad: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.data != "[DONE]" && serde_json::from_str::<Value>(&e.data).is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, vec![5], "{text}");
    assert!(events[5].data.starts_with("{\"id\":\"chatcmpl-mock"));
    // The rest is the normal stream.
    let good: String = events
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, e)| format!("data: {}\n\n", e.data))
        .collect();
    let chunks = openai_chunks(&good);
    let answer: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(answer, "This is a mock reply from gpt-4o-mini.");
    // Anthropic keeps the event line of the frame it cut.
    let (_, text) = mock
        .text(
            Proto::H2,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, ("x-mock-fault", "invalid-json-frame")],
                &json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": "Hi"}]}),
            ),
        )
        .await;
    let events = parse_sse(&text);
    let bad: Vec<_> = events
        .iter()
        .filter(|e| serde_json::from_str::<Value>(&e.data).is_err())
        .collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].event.is_some());
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("message_stop")
    );
    // A non-streamed answer is a 200 whose body is half a JSON document.
    let (resp, text) = mock
        .text(Proto::H1, chat_req("invalid-json-frame", false, &[]))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert!(text.starts_with("{\"id\":\"chatcmpl-mock"));
}

#[tokio::test]
async fn invalid_utf8_frame_puts_ff_fe_in_one_text() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(proto, chat_req("invalid-utf8-frame", true, &[]))
            .await;
        let (parts, err) = frames(resp).await;
        assert!(err.is_none());
        let body = parts.concat();
        assert!(String::from_utf8(body.clone()).is_err());
        let at = body.windows(2).position(|w| w == [0xff, 0xfe]).unwrap();
        assert_eq!(body.windows(2).filter(|w| *w == [0xff, 0xfe]).count(), 1);
        // Inside a content string, at the start of a word from the second half.
        assert!(
            body[..at].ends_with(b"\"content\":\""),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
        let mut clean = body.clone();
        clean.drain(at..at + 2);
        let chunks = openai_chunks(&String::from_utf8(clean).unwrap());
        let answer: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(answer, "This is a mock reply from gpt-4o-mini.");
    }
    let resp = mock
        .send(Proto::H1, chat_req("invalid-utf8-frame", false, &[]))
        .await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let at = body.windows(2).position(|w| w == [0xff, 0xfe]).unwrap();
    assert!(body[..at].ends_with(b"\"content\":\""));
}

#[tokio::test]
async fn wrong_content_type_keeps_the_body() {
    let mock = Mock::start(&[]);
    let (resp, text) = mock
        .text(Proto::H1, chat_req("wrong-content-type", true, &[]))
        .await;
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(openai_chunks(&text).len(), 9);
    let (resp, v) = mock
        .json(Proto::H2, chat_req("wrong-content-type", false, &[]))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(v["object"], "chat.completion");
}

#[tokio::test]
async fn empty_error_statuses_have_no_body() {
    let mock = Mock::start(&[]);
    for (fault, status) in [("500-empty", 500), ("503-empty", 503), ("429-empty", 429)] {
        for proto in [Proto::H1, Proto::H2] {
            let (resp, text) = mock
                .text(
                    proto,
                    chat_req(fault, false, &[("accept-encoding", "gzip")]),
                )
                .await;
            assert_eq!(resp.status(), status, "{fault}");
            assert_eq!(resp.headers()["content-length"], "0", "{fault} {proto:?}");
            assert!(resp.headers().get("content-type").is_none());
            assert!(resp.headers().get("content-encoding").is_none());
            assert_eq!(text, "");
            assert_eq!(resp.headers().get("retry-after").is_some(), status == 429);
            if status == 429 {
                assert_eq!(resp.headers()["retry-after"], "1");
            }
        }
    }
    // Anthropic and Gemini too.
    let (resp, text) = mock
        .text(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, ("x-mock-fault", "503-empty")],
                &json!({"model": "m", "max_tokens": 5, "messages": []}),
            ),
        )
        .await;
    assert_eq!((resp.status().as_u16(), text.as_str()), (503, ""));
}

#[tokio::test]
async fn bad_gateway_html_is_a_load_balancer_page() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let (resp, text) = mock.text(proto, chat_req("502-html", true, &[])).await;
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["content-type"], "text/html");
        assert!(text.contains("<title>502 Bad Gateway</title>"), "{text}");
        assert!(resp.headers().get("x-request-id").is_none());
    }
}

#[tokio::test]
async fn huge_frame_is_one_valid_frame_of_exactly_that_size() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock.send(proto, chat_req("huge-frame:2", true, &[])).await;
        let (parts, err) = frames(resp).await;
        assert!(err.is_none());
        let body = parts.concat();
        let text = String::from_utf8(body).unwrap();
        let raw_frames: Vec<&str> = text.split_inclusive("\n\n").collect();
        assert_eq!(raw_frames.len(), 11);
        assert_eq!(raw_frames[1].len(), 2 * 1024 * 1024, "{proto:?}");
        let chunks = openai_chunks(&text);
        let huge = chunks[1]["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap();
        assert!(huge.bytes().all(|c| c == b'x'));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "This ");
    }
    // Non-streamed: the content string has that size, and the length is announced.
    let resp = mock
        .send(Proto::H1, chat_req("huge-frame:1", false, &[]))
        .await;
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), len);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.len(), 1024 * 1024);
}

#[tokio::test]
async fn huge_frame_goes_out_in_64_kib_chunks() {
    let mock = Mock::start(&[]);
    let body = chat(true).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\nauthorization: Bearer sk\r\n\
x-mock-fault: huge-frame:1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", mock.plain_port.unwrap())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).unwrap();
    // The 1 MiB frame is exactly 16 chunks of 0x10000 bytes; the other frames are small.
    let big = got.windows(9).filter(|w| w == b"\r\n10000\r\n").count();
    assert_eq!(big, 16);
    assert!(got.ends_with(b"data: [DONE]\n\n\r\n0\r\n\r\n"));
}

#[tokio::test]
async fn huge_frame_is_streamed_not_held() {
    let mock = Mock::start(&[]);
    let resp = mock
        .send(Proto::Plain, chat_req("huge-frame:128", true, &[]))
        .await;
    let mut body = resp.into_body();
    let mut total = 0usize;
    while let Some(f) = body.frame().await {
        total += f.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert!(total > 128 * 1024 * 1024);
    let peak = mock.status_bytes("VmHWM:");
    assert!(
        peak < 64 * 1024 * 1024,
        "mock peak RSS {peak} bytes for a 128 MiB frame"
    );
}

#[tokio::test]
async fn slow_headers_combine_with_the_new_faults() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let resp = mock
        .send(
            Proto::H1,
            chat_req("slow-headers:150,reset-at:5", true, &[]),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let (parts, err) = frames(resp).await;
    assert!(err.is_some());
    assert_eq!(parts.concat().len(), 5);
    let started = Instant::now();
    let (resp, _) = mock
        .text(
            Proto::H1,
            chat_req("slow-headers:100,503-empty", false, &[]),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn new_faults_work_from_the_flag() {
    let mock = Mock::start(&["--fault", "reset-at:7"]);
    let resp = mock
        .send(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER], &chat(true)),
        )
        .await;
    let (parts, err) = frames(resp).await;
    assert!(err.is_some());
    assert_eq!(parts.concat(), b"data: {".to_vec());
}

fn azure_chat(version: &str) -> String {
    format!("/openai/deployments/gpt4o/chat/completions?api-version={version}")
}

#[tokio::test]
async fn older_azure_api_versions_refuse_stream_options() {
    let mock = Mock::start(&[]);
    let azure = "mockres.openai.azure.com";
    let key = ("api-key", "azure-key");
    let with = json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
        "stream_options": {"include_usage": true}});
    let without = json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true});
    let refusal = json!({"error": {"message": "Unrecognized request argument supplied: stream_options",
        "type": "invalid_request_error", "param": null, "code": null}});
    for version in [
        "2023-05-15",
        "2024-02-01",
        "2024-06-01",
        "2024-08-01-preview",
    ] {
        let (resp, v) = mock
            .json(Proto::H1, post(azure, &azure_chat(version), &[key], &with))
            .await;
        assert_eq!(resp.status(), 400, "{version}");
        assert_eq!(v, refusal, "{version}");
        let (resp, _) = mock
            .text(
                Proto::H1,
                post(azure, &azure_chat(version), &[key], &without),
            )
            .await;
        assert_eq!(resp.status(), 200, "{version} without stream_options");
    }
    for version in ["2024-09-01-preview", "2024-10-21", "2025-04-01-preview"] {
        let (resp, text) = mock
            .text(Proto::H2, post(azure, &azure_chat(version), &[key], &with))
            .await;
        assert_eq!(resp.status(), 200, "{version}: {text}");
        let usage = openai_chunks(&text)
            .into_iter()
            .filter(|c| c["usage"].is_object())
            .count();
        assert_eq!(usage, 1, "{version}");
    }
    // The v1 API has no api-version and accepts it.
    let (resp, _) = mock
        .text(
            Proto::H1,
            post(
                azure,
                "/openai/v1/chat/completions",
                &[key],
                &json!({"model": "gpt4o", "stream": true, "stream_options": {"include_usage": true},
                         "messages": [{"role": "user", "content": "Hi"}]}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn strict_servers_refuse_listed_fields_and_the_log_shows_the_retry() {
    let mock = Mock::start(&[]);
    let strict = ("x-mock-reject-params", "stream_options");
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let expected = json!({"object": "error",
        "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs are not permitted', 'input': {'include_usage': True}}]",
        "type": "BadRequestError", "param": null, "code": 400});
    for (host, path) in [
        (OPENAI, "/v1/chat/completions"),
        ("api.together.xyz", "/v1/chat/completions"),
        ("api.groq.com", "/openai/v1/chat/completions"),
        ("127.0.0.1", "/v1/completions"),
    ] {
        let mut b = body.clone();
        if path.ends_with("/v1/completions") {
            b["prompt"] = json!("Hi");
        }
        let (resp, v) = mock
            .json(
                Proto::H1,
                post(host, path, &[BEARER, strict, ("x-try", "1")], &b),
            )
            .await;
        assert_eq!(resp.status(), 400, "{host}");
        assert_eq!(v, expected, "{host}");
        b.as_object_mut().unwrap().remove("stream_options");
        let (resp, _) = mock
            .text(
                Proto::H1,
                post(host, path, &[BEARER, strict, ("x-try", "2")], &b),
            )
            .await;
        assert_eq!(resp.status(), 200, "{host}");
    }
    // Several fields: one entry each, in body order.
    let b = json!({"model": "m", "messages": [], "service_tier": "auto", "seed": 7});
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-reject-params", "seed, service_tier")],
                &b,
            ),
        )
        .await;
    assert_eq!(
        v["message"],
        "[{'type': 'extra_forbidden', 'loc': ('body', 'service_tier'), 'msg': 'Extra inputs are not permitted', 'input': 'auto'}, {'type': 'extra_forbidden', 'loc': ('body', 'seed'), 'msg': 'Extra inputs are not permitted', 'input': 7}]"
    );
    // Each attempt is in the log: the refused one with stream_options, the retry without.
    let log = mock.requests().await;
    let tries: Vec<&Value> = log
        .iter()
        .filter(|r| r["host"] == OPENAI && r["headers"]["x-try"].is_string())
        .collect();
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0]["status"], 400);
    assert!(tries[0]["body"]["stream_options"].is_object());
    assert_eq!(tries[1]["status"], 200);
    assert!(tries[1]["body"].get("stream_options").is_none());
}
