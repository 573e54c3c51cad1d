//! End-to-end checks of the mock's wire formats: it is started as a process and spoken to over TLS
//! (HTTP/1.1 and HTTP/2, SNI of the real provider hosts, trusting only mock-ca.pem) and plain HTTP.
//! Token counts are hand-computed from the mock's rule: one token per whitespace-separated word.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use common::{frames, parse_sse, post, raw, Mock, Proto};
use serde_json::{json, Value};

fn chat_body(stream: bool, include_usage: Option<bool>) -> Value {
    let mut b = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": [{"type": "text", "text": "Hello there world"}]}
        ]
    });
    if stream {
        b["stream"] = json!(true);
    }
    if let Some(u) = include_usage {
        b["stream_options"] = json!({"include_usage": u});
    }
    b
}

#[tokio::test]
async fn ready_file_and_line() {
    let mock = Mock::start(&[]);
    assert_eq!(
        mock.line.trim(),
        format!("airlock-mock listening on 127.0.0.1:{}", mock.port)
    );
    assert!(mock.ready["plain_port"].as_u64().is_some());
    assert!(mock.ready["ca_file"]
        .as_str()
        .unwrap()
        .ends_with("mock-ca.pem"));
}

#[tokio::test]
async fn openai_chat_non_stream_over_h1_and_h2() {
    let mock = Mock::start(&[]);
    for proto in [Proto::H1, Proto::H2, Proto::Plain] {
        let (resp, v) = mock
            .json(
                proto,
                post(
                    OPENAI,
                    "/v1/chat/completions",
                    &[BEARER],
                    &chat_body(false, None),
                ),
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert!(resp.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_"));
        assert!(resp.headers().contains_key("openai-processing-ms"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "This is a mock reply from gpt-4o-mini."
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        // "Be brief" (2) + "Hello there world" (3).
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["completion_tokens"], 7);
        assert_eq!(v["usage"]["total_tokens"], 12);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
    }
}

#[tokio::test]
async fn openai_keys_come_in_provider_order() {
    let mock = Mock::start(&[]);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(false, None),
            ),
        )
        .await;
    assert!(text.starts_with(r#"{"id":"chatcmpl-"#), "{text}");
}

#[tokio::test]
async fn openai_stream_without_include_usage_has_no_usage_and_ends_with_done() {
    let mock = Mock::start(&[]);
    let (resp, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(true, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert!(events.iter().all(|e| e.event.is_none()));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    // role chunk + 7 words + finish chunk.
    assert_eq!(chunks.len(), 9);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(
            c.get("usage").is_none(),
            "usage present without include_usage: {c}"
        );
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "This is a mock reply from gpt-4o-mini.");
    assert_eq!(chunks[8]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openai_stream_with_include_usage_has_exactly_one_usage_chunk() {
    let mock = Mock::start(&[]);
    let (_, text) = mock
        .text(
            Proto::H2,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(true, Some(true)),
            ),
        )
        .await;
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let usage_chunks: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(usage_chunks.len(), 1);
    let last = chunks.last().unwrap();
    assert_eq!(
        last, usage_chunks[0],
        "usage chunk is not the one right before [DONE]"
    );
    assert_eq!(last["usage"]["prompt_tokens"], 5);
    assert_eq!(last["usage"]["completion_tokens"], 7);
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.get("usage").is_some());
    }
    // include_usage false behaves like absent.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(true, Some(false)),
            ),
        )
        .await;
    assert!(!text.contains("\"choices\":[]"));
}

#[tokio::test]
async fn openai_output_words_cached_tokens_and_max_tokens() {
    let mock = Mock::start(&[]);
    let mut body = chat_body(false, None);
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[
                    BEARER,
                    ("x-mock-output-words", "10"),
                    ("x-mock-cached-tokens", "3"),
                ],
                &body,
            ),
        )
        .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "This is a mock reply from gpt-4o-mini. This is a"
    );
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    body["max_completion_tokens"] = json!(4);
    let (_, v) = mock
        .json(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[BEARER], &body),
        )
        .await;
    assert_eq!(v["choices"][0]["message"]["content"], "This is a mock");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn openai_tool_call_streams_argument_fragments() {
    let mock = Mock::start(&[]);
    let mut body = chat_body(true, Some(true));
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    let events = parse_sse(&text);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_weather");
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    let fragments: Vec<&str> = chunks[1..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(fragments.len() > 2);
    assert_eq!(fragments.concat(), r#"{"city":"mock"}"#);
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");

    body["stream"] = json!(false);
    body.as_object_mut().unwrap().remove("stream_options");
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER, ("x-mock-tool-call", "1")],
                &body,
            ),
        )
        .await;
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["arguments"], r#"{"city":"mock"}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn openai_responses_stream_and_object() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "gpt-5", "instructions": "Be nice", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}], "stream": true});
    let (_, text) = mock
        .text(Proto::H1, post(OPENAI, "/v1/responses", &[BEARER], &body))
        .await;
    let events = parse_sse(&text);
    assert!(!text.contains("[DONE]"));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 7));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    for (i, e) in events.iter().enumerate() {
        let v = e.json();
        assert_eq!(v["type"], e.event.as_deref().unwrap());
        assert_eq!(v["sequence_number"], i);
    }
    let done = events.last().unwrap().json();
    assert_eq!(done["response"]["usage"]["input_tokens"], 4);
    assert_eq!(done["response"]["usage"]["output_tokens"], 7);
    assert_eq!(
        done["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(
        done["response"]["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );

    let mut body = body;
    body["stream"] = json!(false);
    let (_, v) = mock
        .json(Proto::H2, post(OPENAI, "/v1/responses", &[BEARER], &body))
        .await;
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "This is a mock reply from gpt-5."
    );
    assert_eq!(v["usage"]["total_tokens"], 11);
}

#[tokio::test]
async fn openai_embeddings_float_base64_and_dimensions() {
    use base64::Engine;
    let mock = Mock::start(&[]);
    let body = json!({"model": "text-embedding-3-small", "input": ["hello there", "x"]});
    let (_, v) = mock
        .json(Proto::H1, post(OPENAI, "/v1/embeddings", &[BEARER], &body))
        .await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 3);
    let body = json!({"model": "text-embedding-3-small", "input": "hello",
        "dimensions": 4, "encoding_format": "base64"});
    let (_, v) = mock
        .json(Proto::H1, post(OPENAI, "/v1/embeddings", &[BEARER], &body))
        .await;
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(bytes.len(), 4 * 4);
}

#[tokio::test]
async fn openai_legacy_completions_and_models() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true,
        "stream_options": {"include_usage": true}});
    let (_, text) = mock
        .text(Proto::H1, post(OPENAI, "/v1/completions", &[BEARER], &body))
        .await;
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let usage = events[events.len() - 2].json();
    assert_eq!(usage["object"], "text_completion");
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(usage["usage"]["completion_tokens"], 7);
    let (resp, v) = mock
        .json(Proto::H1, raw("GET", OPENAI, "/v1/models", &[BEARER], ""))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(v["object"], "list");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o-mini"));
}

#[tokio::test]
async fn anthropic_stream_event_order_and_usage() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hello there"}]});
    let (resp, text) = mock
        .text(
            Proto::H2,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[
                    XKEY,
                    AVERSION,
                    ("anthropic-beta", "prompt-caching-2024-07-31"),
                ],
                &body,
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 7));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(e.json()["type"], e.event.as_deref().unwrap());
    }
    let start = events[0].json();
    assert_eq!(start["message"]["usage"]["input_tokens"], 5);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert_eq!(start["message"]["usage"]["cache_read_input_tokens"], 0);
    let text_out: String = events[3..10]
        .iter()
        .map(|e| e.json()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text_out, "This is a mock reply from claude-sonnet-4-5.");
    let delta = events[11].json();
    assert_eq!(delta["usage"]["output_tokens"], 7);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        !text.contains("prompt-caching"),
        "anthropic-beta must not be echoed"
    );
}

#[tokio::test]
async fn anthropic_message_count_tokens_and_cache() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "system": "Be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three four"}]}]});
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages",
                &[
                    ("authorization", "Bearer tok"),
                    AVERSION,
                    ("x-mock-cached-tokens", "4"),
                ],
                &body,
            ),
        )
        .await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    // 6 words, 4 of them read from the cache: input_tokens excludes cache reads.
    assert_eq!(v["usage"]["input_tokens"], 2);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["output_tokens"], 7);
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                ANTHROPIC,
                "/v1/messages/count_tokens",
                &[XKEY, AVERSION],
                &body,
            ),
        )
        .await;
    assert_eq!(v, json!({"input_tokens": 6}));
}

#[tokio::test]
async fn anthropic_requires_version_and_max_tokens() {
    let mock = Mock::start(&[]);
    let body =
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let (resp, v) = mock
        .json(Proto::H1, post(ANTHROPIC, "/v1/messages", &[XKEY], &body))
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(ANTHROPIC, "/v1/messages", &[XKEY, AVERSION], &body),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["message"], "max_tokens: Field required");
}

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief"}]}})
}

#[tokio::test]
async fn gemini_sse_and_json_array_forms() {
    let mock = Mock::start(&[]);
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    let (resp, text) = mock
        .text(
            Proto::H1,
            post(GEMINI, &format!("{path}?alt=sse"), &[GKEY], &gemini_body()),
        )
        .await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(
        text.contains("\r\n\r\n"),
        "Gemini SSE frames end with CRLF CRLF"
    );
    let events = parse_sse(&text);
    assert_eq!(events.len(), 7);
    let mut candidates = 0;
    for (i, e) in events.iter().enumerate() {
        assert!(e.event.is_none());
        let v = e.json();
        let u = &v["usageMetadata"];
        assert_eq!(u["promptTokenCount"], 4);
        let c = u["candidatesTokenCount"].as_u64().unwrap();
        assert_eq!(c, i as u64 + 1, "usage is cumulative");
        assert!(c >= candidates);
        candidates = c;
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    }
    let last = events.last().unwrap().json();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["totalTokenCount"], 11);

    // Without alt=sse: one JSON array, streamed element by element.
    let resp = mock
        .send(
            Proto::H2,
            post(GEMINI, &format!("{path}?key=AIza-q"), &[], &gemini_body()),
        )
        .await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let (parts, err) = frames(resp).await;
    assert!(err.is_none());
    let text = String::from_utf8(parts.concat()).unwrap();
    assert!(text.starts_with("[{"));
    assert!(text.contains("\n,\r\n{"));
    let arr: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(arr.len(), 7);
    let words: String = arr
        .iter()
        .map(|v| {
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(words, "This is a mock reply from gemini-2.5-flash.");
    assert_eq!(arr[6]["usageMetadata"]["candidatesTokenCount"], 7);
}

#[tokio::test]
async fn gemini_generate_count_and_embed() {
    let mock = Mock::start(&[]);
    let base = "/v1beta/models/gemini-2.5-flash";
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                &format!("{base}:generateContent"),
                &[GKEY],
                &gemini_body(),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 7);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 11);
    assert!(v["responseId"].as_str().is_some());
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                &format!("{base}:countTokens"),
                &[GKEY],
                &gemini_body(),
            ),
        )
        .await;
    assert_eq!(v["totalTokens"], 4);
    let body = json!({"content": {"parts": [{"text": "embed me"}]}, "outputDimensionality": 3});
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-embedding-001:embedContent",
                &[GKEY],
                &body,
            ),
        )
        .await;
    assert_eq!(v["embedding"]["values"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn missing_credentials_are_refused_in_each_dialect() {
    let mock = Mock::start(&[]);
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(OPENAI, "/v1/chat/completions", &[], &chat_body(false, None)),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-invalid-000")],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []});
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(ANTHROPIC, "/v1/messages", &[AVERSION], &body),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    // Google answers a call without any key with 403 PERMISSION_DENIED.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                GEMINI,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[],
                &gemini_body(),
            ),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn malformed_json_missing_model_and_unknown_paths() {
    let mock = Mock::start(&[]);
    let (resp, v) = mock
        .json(
            Proto::H1,
            raw(
                "POST",
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                "{not json",
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[BEARER],
                &json!({"messages": []}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["message"], "you must provide a model parameter");
    let (resp, v) = mock
        .json(Proto::H1, post(OPENAI, "/v1/foo", &[BEARER], &json!({})))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        v,
        json!({"error": {"message": "Invalid URL (POST /v1/foo)", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(ANTHROPIC, "/v1/foo", &[XKEY, AVERSION], &json!({})),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(v["error"]["type"], "not_found_error");
    let (resp, v) = mock
        .json(Proto::H1, post(GEMINI, "/v1beta/foo", &[GKEY], &json!({})))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    let (resp, v) = mock
        .json(
            Proto::H1,
            raw("POST", ANTHROPIC, "/v1/messages", &[XKEY, AVERSION], "[1,"),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn loopback_hosts_route_by_path() {
    let mock = Mock::start(&[]);
    let host = format!("127.0.0.1:{}", mock.plain_port.unwrap());
    let (resp, v) = mock
        .json(
            Proto::Plain,
            post(
                &host,
                "/anthropic/v1/messages",
                &[XKEY, AVERSION],
                &json!({"model": "claude-haiku-4-5",
                "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "max_tokens");
    let (resp, _) = mock
        .json(
            Proto::Plain,
            post(
                &host,
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (resp, _) = mock
        .json(
            Proto::Plain,
            post(
                "example.com",
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn inspection_endpoint_records_and_clears() {
    let mock = Mock::start(&[]);
    mock.json(
        Proto::H2,
        post(
            OPENAI,
            "/v1/chat/completions?trace=1",
            &[BEARER, ("x-custom", "a")],
            &chat_body(false, None),
        ),
    )
    .await;
    let (_, v) = mock
        .json(
            Proto::H1,
            raw("GET", ANTHROPIC, "/__mock/requests", &[], ""),
        )
        .await;
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r["host"], "api.openai.com");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/v1/chat/completions");
    assert_eq!(r["query"], "trace=1");
    assert_eq!(r["headers"]["authorization"], "Bearer sk-test-123");
    assert_eq!(r["headers"]["x-custom"], "a");
    assert_eq!(r["body"]["model"], "gpt-4o-mini");
    assert_eq!(r["body_len"], chat_body(false, None).to_string().len());
    let (resp, _) = mock
        .json(
            Proto::H1,
            raw("DELETE", OPENAI, "/__mock/requests", &[], ""),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (_, v) = mock
        .json(
            Proto::Plain,
            raw("GET", "localhost", "/__mock/requests", &[], ""),
        )
        .await;
    assert_eq!(v["requests"], json!([]));
}

#[tokio::test]
async fn chunk_delay_paces_frames() {
    let mock = Mock::start(&[]);
    let started = std::time::Instant::now();
    let resp = mock
        .send(
            Proto::H1,
            post(
                OPENAI,
                "/v1/chat/completions",
                &[
                    BEARER,
                    ("x-mock-chunk-delay-ms", "20"),
                    ("x-mock-output-words", "3"),
                ],
                &chat_body(true, None),
            ),
        )
        .await;
    let first_byte = started.elapsed();
    let (parts, err) = frames(resp).await;
    assert!(err.is_none());
    // role + 3 words + finish + [DONE] = 6 frames, 5 pauses of 20 ms.
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    assert!(first_byte < std::time::Duration::from_millis(100));
    assert!(
        parts.len() >= 6,
        "frames arrive separately: {}",
        parts.len()
    );
}
