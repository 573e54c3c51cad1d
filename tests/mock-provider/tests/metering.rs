//! End-to-end checks of the options that exist so metering can be tested exactly: reasoning tokens
//! per provider, Anthropic cache reads and writes (5-minute and 1-hour) in `message_start` and the
//! cumulative `message_delta` usage, CRLF line endings and keep-alive comments, and the tool-call
//! streams of the Responses API and Anthropic. Counts are hand-computed: one token per word.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use common::{only_frames, openai_chunks, parse_sse, parse_sse_items, post, Mock, Proto, SseItem};
use serde_json::{json, Value};

/// 5 input words.
fn chat(stream: bool) -> Value {
    let mut b = json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "one two three four five"}]});
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// 2 system words + 6 user words = 8 input words.
fn messages(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
        "system": "Be brief",
        "messages": [{"role": "user", "content": "one two three four five six"}]})
}

/// 4 input words.
fn gemini() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief"}]}})
}

#[tokio::test]
async fn reasoning_tokens_per_provider() {
    let mock = Mock::start(&[]);
    let r = ("x-mock-reasoning-tokens", "11");
    // OpenAI chat: inside completion_tokens.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER, r], &chat(false)),
        )
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 7 + 11);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        11
    );
    assert_eq!(v["usage"]["total_tokens"], 5 + 18);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "This is a mock reply from gpt-4o-mini."
    );
    let (_, text) = mock
        .text(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER, r], &chat(true)),
        )
        .await;
    let chunks = openai_chunks(&text);
    // Reasoning adds no frames: role + 7 words + finish + usage.
    assert_eq!(chunks.len(), 10);
    let u = &chunks[9]["usage"];
    assert_eq!(u["completion_tokens"], 18);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 11);

    // Responses: inside output_tokens.
    let body = json!({"model": "o3", "input": "Hello there", "stream": true});
    let (_, text) = mock
        .text(
            Proto::H1,
            post(OPENAI, "/v1/responses", &[BEARER, r], &body),
        )
        .await;
    let done = parse_sse(&text).last().unwrap().json();
    assert_eq!(done["type"], "response.completed");
    let u = &done["response"]["usage"];
    assert_eq!(u["input_tokens"], 2);
    assert_eq!(u["output_tokens"], 7 + 11);
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 11);
    assert_eq!(u["total_tokens"], 2 + 18);

    // Gemini: thoughtsTokenCount outside candidatesTokenCount, inside totalTokenCount, on every
    // chunk.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[GKEY, r],
                &gemini(),
            ),
        )
        .await;
    let u = &v["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 4);
    assert_eq!(u["candidatesTokenCount"], 7);
    assert_eq!(u["thoughtsTokenCount"], 11);
    assert_eq!(u["totalTokenCount"], 4 + 7 + 11);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                &[GKEY, r],
                &gemini(),
            ),
        )
        .await;
    let events = parse_sse(&text);
    assert_eq!(events.len(), 7);
    for (i, e) in events.iter().enumerate() {
        let u = &e.json()["usageMetadata"];
        assert_eq!(u["thoughtsTokenCount"], 11);
        assert_eq!(u["candidatesTokenCount"], i + 1);
        assert_eq!(u["totalTokenCount"], 4 + (i + 1) + 11);
    }
    // Without the header Gemini omits the field.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[GKEY],
                &gemini(),
            ),
        )
        .await;
    assert!(v["usageMetadata"].get("thoughtsTokenCount").is_none());

    // Anthropic ignores it.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, r],
                &messages(false),
            ),
        )
        .await;
    assert_eq!(v["usage"]["output_tokens"], 7);

    // Out of range is a 400 in the dialect.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-reasoning-tokens", "-1")],
                &chat(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-mock-reasoning-tokens"));
}

#[tokio::test]
async fn anthropic_cache_reads_and_writes_in_message_start_and_delta() {
    let mock = Mock::start(&[]);
    let headers = [
        XKEY,
        AVERSION,
        ("x-mock-cached-tokens", "3"),
        ("x-mock-cache-write-tokens", "2"),
        ("x-mock-cache-write-1h-tokens", "1"),
    ];
    let (_, text) = mock
        .text(
            Proto::H2,
            post(ANTHROPIC, "/v1/messages", &headers, &messages(true)),
        )
        .await;
    let events = parse_sse(&text);
    let start = events[0].json();
    assert_eq!(start["type"], "message_start");
    let u = &start["message"]["usage"];
    // 8 words = 3 read + 2 written (5m) + 1 written (1h) + 2 uncached.
    assert_eq!(u["input_tokens"], 2);
    assert_eq!(u["cache_read_input_tokens"], 3);
    assert_eq!(u["cache_creation_input_tokens"], 3);
    assert_eq!(
        u["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 1})
    );
    assert_eq!(u["output_tokens"], 1);
    // Default message_delta: only the cumulative output count.
    let delta = events[events.len() - 2].json();
    assert_eq!(delta["type"], "message_delta");
    assert_eq!(delta["usage"], json!({"output_tokens": 7}));

    // Newer-API behaviour: message_delta repeats input and cache counts.
    let mut full = headers.to_vec();
    full.push(("x-mock-anthropic-delta-usage", "full"));
    let (_, text) = mock
        .text(
            Proto::H1,
            post(ANTHROPIC, "/v1/messages", &full, &messages(true)),
        )
        .await;
    let events = parse_sse(&text);
    let delta = events[events.len() - 2].json();
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 2, "cache_creation_input_tokens": 3,
            "cache_read_input_tokens": 3, "output_tokens": 7})
    );

    // Non-streamed, with headers that exceed the words: clamped in the order read, 5m, 1h.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[
                    XKEY,
                    AVERSION,
                    ("x-mock-cached-tokens", "6"),
                    ("x-mock-cache-write-tokens", "5"),
                    ("x-mock-cache-write-1h-tokens", "5"),
                ],
                &messages(false),
            ),
        )
        .await;
    let u = &v["usage"];
    assert_eq!(u["cache_read_input_tokens"], 6);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 2);
    assert_eq!(u["cache_creation"]["ephemeral_1h_input_tokens"], 0);
    assert_eq!(u["cache_creation_input_tokens"], 2);
    assert_eq!(u["input_tokens"], 0);
    // count_tokens still reports every word.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages/count_tokens",
                &[XKEY, AVERSION, ("x-mock-cached-tokens", "6")],
                &messages(false),
            ),
        )
        .await;
    assert_eq!(v, json!({"input_tokens": 8}));
    // A bad value is a 400 in Anthropic's dialect.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, ("x-mock-anthropic-delta-usage", "all")],
                &messages(false),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn crlf_mode_uses_crlf_throughout() {
    let mock = Mock::start(&[]);
    let crlf = ("x-mock-stream-crlf", "1");
    let (_, text) = mock
        .text(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER, crlf], &chat(true)),
        )
        .await;
    assert!(text.ends_with("data: [DONE]\r\n\r\n"));
    let items = parse_sse_items(&text, true);
    assert_eq!(items.len(), 11);
    assert_eq!(openai_chunks(&text).len(), 10);
    let (_, text) = mock
        .text(
            Proto::H2,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, crlf],
                &messages(true),
            ),
        )
        .await;
    assert!(text.starts_with("event: message_start\r\ndata: {"));
    let frames = only_frames(&parse_sse_items(&text, true));
    assert_eq!(frames.len(), 13);
    assert_eq!(frames[12].event.as_deref(), Some("message_stop"));
    // Gemini SSE (already CRLF between frames) gets CRLF on every line, never CR CR LF.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                &[GKEY, crlf],
                &gemini(),
            ),
        )
        .await;
    assert!(!text.contains("\r\r"));
    assert_eq!(parse_sse_items(&text, true).len(), 7);
    // The in-stream error frame of error-mid-stream is converted too.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, crlf, ("x-mock-fault", "error-mid-stream")],
                &chat(true),
            ),
        )
        .await;
    let frames = only_frames(&parse_sse_items(&text, true));
    assert!(frames.last().unwrap().json()["error"].is_object());
    // Without the header: LF only (checked by the parser).
    let (_, text) = mock
        .text(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER], &chat(true)),
        )
        .await;
    parse_sse_items(&text, false);
}

#[tokio::test]
async fn keep_alive_comments_precede_every_frame() {
    let mock = Mock::start(&[]);
    let comments = ("x-mock-sse-comments", "1");
    for (host, path, headers, body, n) in [
        (
            OPENAI,
            "/v1/chat/completions",
            vec![BEARER, comments],
            chat(true),
            11,
        ),
        (
            ANTHROPIC,
            "/v1/messages",
            vec![XKEY, AVERSION, comments],
            messages(true),
            13,
        ),
        (
            GEMINI,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            vec![GKEY, comments],
            gemini(),
            7,
        ),
    ] {
        let (_, text) = mock
            .text(Proto::H1, post(host, path, &headers, &body))
            .await;
        let items = parse_sse_items(&text, host == GEMINI);
        assert_eq!(items.len(), 2 * n, "{host}: {text}");
        for pair in items.chunks(2) {
            assert_eq!(pair[0], SseItem::Comment("keep-alive".into()), "{host}");
            assert!(matches!(pair[1], SseItem::Frame(_)), "{host}");
        }
    }
    // Both options together.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, comments, ("x-mock-stream-crlf", "1")],
                &chat(true),
            ),
        )
        .await;
    assert!(text.starts_with(": keep-alive\r\n\r\ndata: {"));
    assert_eq!(parse_sse_items(&text, true).len(), 22);
}

#[tokio::test]
async fn responses_function_call_stream() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "gpt-5", "input": "Weather in Paris?", "stream": true,
        "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/responses",
                &[BEARER, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    // {"city":"mock"} is 15 characters: 4 fragments of at most 4.
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.function_call_arguments.delta",
        4,
    ));
    expected.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.json()["sequence_number"], i);
    }
    let added = events[2].json();
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["name"], "get_weather");
    assert_eq!(added["item"]["arguments"], "");
    let item_id = added["item"]["id"].as_str().unwrap().to_owned();
    assert!(item_id.starts_with("fc_"));
    assert!(added["item"]["call_id"]
        .as_str()
        .unwrap()
        .starts_with("call_"));
    let args: String = events[3..7]
        .iter()
        .map(|e| {
            let v = e.json();
            assert_eq!(v["item_id"], item_id.as_str());
            assert_eq!(v["output_index"], 0);
            v["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(args, r#"{"city":"mock"}"#);
    assert_eq!(events[7].json()["arguments"], args.as_str());
    assert_eq!(events[8].json()["item"]["status"], "completed");
    let done = events[9].json();
    let resp = &done["response"];
    assert_eq!(resp["status"], "completed");
    assert_eq!(resp["output"][0]["type"], "function_call");
    assert_eq!(resp["output"][0]["arguments"], args.as_str());
    // "Weather in Paris?" = 3 input tokens; one output token per fragment.
    assert_eq!(resp["usage"]["input_tokens"], 3);
    assert_eq!(resp["usage"]["output_tokens"], 4);
    assert_eq!(resp["usage"]["total_tokens"], 7);

    let mut body = body;
    body["stream"] = json!(false);
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/responses",
                &[BEARER, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["name"], "get_weather");
    assert_eq!(v["usage"]["output_tokens"], 4);
    // Without tools the header changes nothing.
    body.as_object_mut().unwrap().remove("tools");
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/responses",
                &[BEARER, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    assert_eq!(v["output"][0]["type"], "message");
}

#[tokio::test]
async fn anthropic_tool_use_stream() {
    let mock = Mock::start(&[]);
    let mut body = messages(true);
    body["tools"] = json!([{"name": "get_weather", "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[XKEY, AVERSION, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    // {"city":"mock","days":1} is 24 characters: 6 fragments.
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 6));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let block = &events[1].json()["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    let partial: String = events[3..9]
        .iter()
        .map(|e| {
            let d = &e.json()["delta"];
            assert_eq!(d["type"], "input_json_delta");
            d["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    let parsed: Value = serde_json::from_str(&partial).unwrap();
    assert_eq!(parsed, json!({"city": "mock", "days": 1}));
    let delta = events[10].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 6);
    assert_eq!(events[0].json()["message"]["usage"]["input_tokens"], 8);
}
