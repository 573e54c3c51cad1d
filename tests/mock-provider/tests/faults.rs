//! End-to-end checks of the mock's fault modes, per request (`x-mock-fault`) and for every request
//! (`--fault`): status errors in each provider's dialect with retry headers, a TCP reset, a stream
//! cut mid-way (a body error on the client, over HTTP/1.1 and HTTP/2), in-stream error frames, and
//! slow headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use std::time::{Duration, Instant};

use common::{frames, parse_sse, post, Mock, Proto};
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "Hello there"}]})
}

fn messages(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "Hello there"}]})
}

fn gemini() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]})
}

#[tokio::test]
async fn rate_limit_has_retry_after_in_each_dialect() {
    let mock = Mock::start(&[]);
    let fault = ("x-mock-fault", "429");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, fault],
                &chat(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["retry-after-ms"], "1000");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached"));

    let (resp, v) = mock
        .json(
            Proto::H2,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, fault],
                &messages(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));

    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[GKEY, fault],
                &gemini(),
            ),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn server_errors_in_each_dialect() {
    let mock = Mock::start(&[]);
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "500")],
                &chat(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(v["error"]["type"], "server_error");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, ("x-mock-fault", "529")],
                &messages(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 529);
    assert_eq!(v["error"]["type"], "overloaded_error");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[GKEY, ("x-mock-fault", "503")],
                &gemini(),
            ),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
}

#[tokio::test]
async fn unknown_fault_is_a_400_listing_valid_values() {
    let mock = Mock::start(&[]);
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "teapot")],
                &chat(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("teapot") && msg.contains("reset-mid-stream"),
        "{msg}"
    );
}

#[tokio::test]
async fn reset_closes_without_response() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let err = mock
            .try_send(
                proto,
                post(
                    OPENAI,
                    "/v1/chat/completions",
                    &[BEARER, ("x-mock-fault", "reset")],
                    &chat(false),
                ),
            )
            .await;
        assert!(err.is_err(), "{proto:?}: got a response to a reset");
    }
}

#[tokio::test]
async fn reset_mid_stream_is_a_body_error_after_some_chunks() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2] {
        let resp = mock
            .send(
                proto,
                post(
                    OPENAI,
                    "/v1/chat/completions",
                    &[BEARER, ("x-mock-fault", "reset-mid-stream")],
                    &chat(true),
                ),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let (parts, err) = frames(resp).await;
        assert!(err.is_some(), "{proto:?}: the body ended cleanly");
        let text = String::from_utf8(parts.concat()).unwrap();
        assert!(
            text.starts_with("data: {"),
            "{proto:?}: no chunk arrived before the cut"
        );
        assert!(!text.contains("[DONE]"));
    }
    // A non-streamed answer is cut too: the announced length never arrives.
    let resp = mock
        .send(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "reset-mid-stream")],
                &chat(false),
            ),
        )
        .await;
    let (_, err) = frames(resp).await;
    assert!(err.is_some());
}

#[tokio::test]
async fn error_mid_stream_sends_the_dialects_error_frame() {
    let mock = Mock::start(&[]);
    let fault = ("x-mock-fault", "error-mid-stream");
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, fault],
                &chat(true),
            ),
        )
        .await;
    let events = parse_sse(&text);
    let last = events.last().unwrap().json();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!text.contains("[DONE]"));
    assert!(events.len() > 1);

    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, fault],
                &messages(true),
            ),
        )
        .await;
    let events = parse_sse(&text);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["type"], "overloaded_error");
    assert_eq!(events[0].event.as_deref(), Some("message_start"));
    assert!(!text.contains("message_stop"));

    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                &[GKEY, fault],
                &gemini(),
            ),
        )
        .await;
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().json()["error"]["status"], "INTERNAL");

    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                &[GKEY, fault],
                &gemini(),
            ),
        )
        .await;
    let arr: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(arr.last().unwrap()["error"]["code"], 500);

    let body = json!({"model": "gpt-5", "input": "hi", "stream": true});
    let (_, text) = mock
        .text(
            Proto::H1,
            post(OPENAI, "/v1/responses", &[BEARER, fault], &body),
        )
        .await;
    let events = parse_sse(&text);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("response.failed"));
    assert_eq!(last.json()["sequence_number"], events.len() - 1);
}

#[tokio::test]
async fn slow_headers_delays_the_status_line() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let resp = mock
        .send(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "slow-headers:150")],
                &chat(false),
            ),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn global_fault_flag_applies_unless_overridden() {
    let mock = Mock::start(&["--fault", "503"]);
    let (resp, _) = mock
        .json(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER], &chat(false)),
        )
        .await;
    assert_eq!(resp.status(), 503);
    let (resp, _) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "none")],
                &chat(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
}
