//! End-to-end checks of response compression as the providers' front ends do it: `Accept-Encoding`
//! negotiation with q-values, the `x-mock-compress` override and `--compress off`, every coding on
//! JSON bodies, error bodies and streams, streams that stay streams (each frame decodes as it
//! arrives), byte cuts that count compressed bytes, and what the request log says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{decode, frames, openai_chunks, parse_sse, post, Decoder, Mock, Proto};
use http_body_util::BodyExt;
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "Hello there"}]})
}

fn chat_req(headers: &[(&str, &str)], stream: bool) -> http::Request<http_body_util::Full<Bytes>> {
    let mut h = vec![BEARER];
    h.extend_from_slice(headers);
    post(OPENAI, "/v1/chat/completions", &h, &chat(stream))
}

/// Sends a request and returns the head, the raw body and the decoded body.
async fn fetch(
    mock: &Mock,
    proto: Proto,
    req: http::Request<http_body_util::Full<Bytes>>,
) -> (http::response::Parts, Vec<u8>, Vec<u8>) {
    let resp = mock.send(proto, req).await;
    let (parts, body) = resp.into_parts();
    let raw = body.collect().await.unwrap().to_bytes().to_vec();
    let coding = parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    let plain = decode(coding.as_deref(), &raw);
    (parts, raw, plain)
}

fn encoding(parts: &http::response::Parts) -> Option<&str> {
    parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap())
}

/// A stream with its request id and timestamps zeroed, so two answers compare equal.
fn normalise(text: &str) -> String {
    let events = parse_sse(text);
    events
        .iter()
        .map(|e| {
            if e.data == "[DONE]" {
                return "[DONE]".to_owned();
            }
            let mut v: Value = serde_json::from_str(&e.data).unwrap();
            v["id"] = json!("ID");
            v["created"] = json!(0);
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn accept_encoding_negotiation_honours_q_values() {
    let mock = Mock::start(&[]);
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some("gzip"), Some("gzip")),
        (Some("gzip, deflate"), Some("gzip")),
        (Some("gzip, deflate, br"), Some("br")),
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("deflate"), Some("deflate")),
        (Some("zstd"), Some("zstd")),
        (Some("br;q=0.4, gzip;q=0.8, zstd;q=0.6"), Some("gzip")),
        (Some("br;q=0, gzip"), Some("gzip")),
        (Some("*"), Some("br")),
        (Some("*;q=0.5, br;q=0"), Some("zstd")),
        (Some("identity"), None),
        (Some("identity;q=1, gzip;q=0.5"), None),
        (Some("*;q=0"), None),
        (Some("compress, lz4"), None),
        (Some(""), None),
    ];
    for (accept, want) in cases {
        for proto in [Proto::H1, Proto::H2] {
            let headers: Vec<(&str, &str)> =
                accept.iter().map(|a| ("accept-encoding", *a)).collect();
            let (parts, raw, plain) = fetch(&mock, proto, chat_req(&headers, false)).await;
            assert_eq!(encoding(&parts), *want, "{accept:?} {proto:?}");
            let vary: Vec<&str> = parts
                .headers
                .get_all("vary")
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert!(
                vary.contains(&"Accept-Encoding"),
                "{accept:?}: vary {vary:?}"
            );
            let v: Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(v["object"], "chat.completion");
            if want.is_some() {
                assert!(parts.headers.get("content-length").is_none(), "{accept:?}");
                assert_ne!(raw, plain);
            } else {
                assert_eq!(
                    parts.headers["content-length"],
                    raw.len().to_string().as_str()
                );
            }
        }
    }
}

#[tokio::test]
async fn compressed_streams_decode_to_the_plain_stream_frame_by_frame() {
    let mock = Mock::start(&[]);
    let delay = ("x-mock-chunk-delay-ms", "150");
    let words = ("x-mock-output-words", "4");
    let (_, _, plain) = fetch(&mock, Proto::H1, chat_req(&[words], true)).await;
    let plain = String::from_utf8(plain).unwrap();
    let expected_frames = parse_sse(&plain).len(); // role + 4 words + finish + [DONE]
    assert_eq!(expected_frames, 7);
    for coding in ["gzip", "br", "zstd", "deflate"] {
        for proto in [Proto::H1, Proto::H2] {
            let started = Instant::now();
            let resp = mock
                .send(
                    proto,
                    chat_req(&[("accept-encoding", coding), delay, words], true),
                )
                .await;
            assert_eq!(resp.headers()["content-encoding"], coding);
            assert!(resp.headers().get("content-length").is_none());
            let mut body = resp.into_body();
            let mut dec = Decoder::new(Some(coding));
            let mut decoded = Vec::new();
            let mut first_frame_at = None;
            let mut frames_seen = 0;
            while let Some(f) = body.frame().await {
                let Ok(data) = f.unwrap().into_data() else {
                    continue;
                };
                let out = dec.feed(&data);
                if out.is_empty() {
                    continue; // the compressed stream's trailer
                }
                // Every body chunk decodes to whole frames the moment it arrives.
                assert!(
                    out.ends_with(b"\n\n"),
                    "{coding} {proto:?}: a partial frame {out:?}"
                );
                frames_seen += 1;
                if first_frame_at.is_none() {
                    first_frame_at = Some(started.elapsed());
                }
                decoded.extend_from_slice(&out);
            }
            let total = started.elapsed();
            let first = first_frame_at.unwrap();
            // 6 pauses of 150 ms: the first frame comes long before the end.
            assert!(total >= Duration::from_millis(900), "{coding}: {total:?}");
            assert!(
                first < Duration::from_millis(450),
                "{coding} {proto:?}: first frame after {first:?}"
            );
            assert_eq!(frames_seen, expected_frames, "{coding} {proto:?}");
            let decoded = String::from_utf8(decoded).unwrap();
            assert_eq!(normalise(&decoded), normalise(&plain), "{coding} {proto:?}");
        }
    }
}

#[tokio::test]
async fn every_provider_and_error_body_compresses() {
    let mock = Mock::start(&[]);
    let gz = ("accept-encoding", "gzip");
    // Anthropic stream, Gemini JSON-array stream and SSE, Responses.
    let (parts, _, plain) = fetch(
        &mock,
        Proto::H1,
        post(
            ANTHROPIC,
            "/v1/messages",
            &[XKEY, AVERSION, ("accept-encoding", "br")],
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": true,
                     "messages": [{"role": "user", "content": "Hi"}]}),
        ),
    )
    .await;
    assert_eq!(encoding(&parts), Some("br"));
    let events = parse_sse(&String::from_utf8(plain).unwrap());
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("message_stop")
    );
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    let (parts, _, plain) = fetch(
        &mock,
        Proto::H2,
        post(
            GEMINI,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            &[GKEY, ("accept-encoding", "zstd")],
            &gemini,
        ),
    )
    .await;
    assert_eq!(encoding(&parts), Some("zstd"));
    let arr: Vec<Value> = serde_json::from_slice(&plain).unwrap();
    assert!(arr.len() > 1);
    let vary: Vec<&str> = parts
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, vec!["Origin, X-Origin, Referer", "Accept-Encoding"]);
    // Error bodies: a status fault, a 401 and an unknown path.
    for (req, status) in [
        (chat_req(&[gz, ("x-mock-fault", "429")], false), 429),
        (
            post(OPENAI, "/v1/chat/completions", &[gz], &chat(false)),
            401,
        ),
        (post(OPENAI, "/v1/nope", &[BEARER, gz], &chat(false)), 404),
    ] {
        let (parts, _, plain) = fetch(&mock, Proto::H1, req).await;
        assert_eq!(parts.status, status);
        assert_eq!(encoding(&parts), Some("gzip"), "{status}");
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert!(v["error"]["message"].is_string(), "{status}");
    }
    // The in-stream error of error-mid-stream is inside the compressed stream.
    let (_, _, plain) = fetch(
        &mock,
        Proto::H1,
        chat_req(&[gz, ("x-mock-fault", "error-mid-stream")], true),
    )
    .await;
    let events = parse_sse(&String::from_utf8(plain).unwrap());
    assert_eq!(
        events.last().unwrap().json()["error"]["type"],
        "server_error"
    );
    // The 502 page compresses too; the control endpoints never do.
    let (parts, _, plain) = fetch(
        &mock,
        Proto::H1,
        chat_req(&[gz, ("x-mock-fault", "502-html")], false),
    )
    .await;
    assert_eq!(encoding(&parts), Some("gzip"));
    assert!(String::from_utf8(plain)
        .unwrap()
        .contains("502 Bad Gateway"));
    let (parts, _, _) = fetch(
        &mock,
        Proto::Plain,
        common::raw("GET", "127.0.0.1", "/__mock/health", &[gz], ""),
    )
    .await;
    assert_eq!(encoding(&parts), None);
}

#[tokio::test]
async fn the_compress_header_overrides_and_the_flag_turns_it_off() {
    let mock = Mock::start(&[]);
    for (value, accept, want) in [
        ("gzip", None, Some("gzip")),
        ("br", Some("gzip"), Some("br")),
        ("zstd", None, Some("zstd")),
        ("deflate", None, Some("deflate")),
        ("off", Some("gzip, br"), None),
        ("auto", Some("gzip"), Some("gzip")),
    ] {
        let mut headers = vec![("x-mock-compress", value)];
        if let Some(a) = accept {
            headers.push(("accept-encoding", a));
        }
        let (parts, _, plain) = fetch(&mock, Proto::H1, chat_req(&headers, true)).await;
        assert_eq!(encoding(&parts), want, "{value}");
        openai_chunks(&String::from_utf8(plain).unwrap());
    }
    let (resp, v) = mock
        .json(Proto::H1, chat_req(&[("x-mock-compress", "lz4")], false))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-mock-compress"));

    let off = Mock::start(&["--compress", "off"]);
    let (parts, _, _) = fetch(
        &off,
        Proto::H1,
        chat_req(&[("accept-encoding", "gzip")], true),
    )
    .await;
    assert_eq!(encoding(&parts), None);
    let (parts, _, _) = fetch(
        &off,
        Proto::H1,
        chat_req(&[("x-mock-compress", "gzip")], true),
    )
    .await;
    assert_eq!(encoding(&parts), Some("gzip"));
}

#[tokio::test]
async fn cuts_count_compressed_bytes() {
    let mock = Mock::start(&[]);
    let gz = ("accept-encoding", "gzip");
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(
                proto,
                chat_req(&[gz, ("x-mock-fault", "reset-at:37")], true),
            )
            .await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let (parts, err) = frames(resp).await;
        assert!(err.is_some());
        let raw = parts.concat();
        assert_eq!(raw.len(), 37, "{proto:?}");
        assert_eq!(&raw[..3], &[0x1f, 0x8b, 0x08]);
        // reset-mid-stream on a compressed stream: the first half of the frames decode.
        let resp = mock
            .send(
                proto,
                chat_req(&[gz, ("x-mock-fault", "reset-mid-stream")], true),
            )
            .await;
        let (parts, err) = frames(resp).await;
        assert!(err.is_some());
        let mut dec = Decoder::new(Some("gzip"));
        let text = String::from_utf8(dec.feed(&parts.concat())).unwrap();
        assert_eq!(parse_sse(&text).len(), 5, "{text}");
    }
}

#[tokio::test]
async fn the_log_records_accept_encoding_and_the_coding_used() {
    let mock = Mock::start(&[]);
    fetch(
        &mock,
        Proto::H1,
        chat_req(
            &[("accept-encoding", "gzip;q=0.5, br;q=0.9"), ("x-n", "1")],
            false,
        ),
    )
    .await;
    fetch(&mock, Proto::H1, chat_req(&[("x-n", "2")], false)).await;
    fetch(
        &mock,
        Proto::H2,
        chat_req(
            &[
                ("accept-encoding", "zstd"),
                ("x-mock-fault", "500-empty"),
                ("x-n", "3"),
            ],
            false,
        ),
    )
    .await;
    let log = mock.requests().await;
    let entry = |n: &str| {
        log.iter()
            .find(|r| r["headers"]["x-n"] == n)
            .unwrap()
            .clone()
    };
    let one = entry("1");
    assert_eq!(one["accept_encoding"], "gzip;q=0.5, br;q=0.9");
    assert_eq!(one["response_encoding"], "br");
    assert_eq!(one["status"], 200);
    let two = entry("2");
    assert!(two["accept_encoding"].is_null());
    assert_eq!(two["response_encoding"], "identity");
    let three = entry("3");
    assert_eq!(three["accept_encoding"], "zstd");
    assert_eq!(
        three["response_encoding"], "identity",
        "an empty body is not compressed"
    );
    assert_eq!(three["status"], 500);
}
