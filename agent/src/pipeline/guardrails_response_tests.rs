use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::*;
use crate::guardrails::actions::Guard;
use crate::policy::guardrails::{Action, ActionRule, Direction, GuardrailsPolicy};
use crate::providers::response::TextChannel;

const SECRET: &str = "AKIAZ4ZK3JXQWT7PLD2M";
const PLACEHOLDER: &str = "[REDACTED:aws_access_key]";

fn guard(p: GuardrailsPolicy) -> Arc<Guard> {
    Arc::new(Guard::compile(&p).unwrap())
}

fn stage(g: &Arc<Guard>, api: ApiKind, op: &str, framing: Framing) -> ResponseGuard {
    ResponseGuard::new(
        g.clone(),
        Who::default(),
        [1; 32],
        api,
        op,
        framing,
        "req-1",
    )
}

/// Runs `chunks` through the stage: what the client got, or the cut.
fn run(st: &mut ResponseGuard, chunks: &[Bytes]) -> Result<Bytes, StreamCut> {
    let mut out = BytesMut::new();
    for c in chunks {
        st.on_data(c.clone(), &[], &mut out)?;
        assert!(st.held() <= st.holdback_limit());
    }
    st.on_end(&mut out)?;
    Ok(out.freeze())
}

/// The content text a client reads from `body`.
fn client_text(
    api: ApiKind,
    op: &str,
    framing: Framing,
    body: &[u8],
    channel: TextChannel,
) -> String {
    let mut p = ResponseParser::new(api, op, framing, None).with_text_deltas();
    p.feed(body);
    p.finish();
    p.take_text_deltas()
        .into_iter()
        .filter(|d| d.channel == channel)
        .map(|d| d.text)
        .collect()
}

fn sse(v: serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn sse_event(name: &str, v: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// The answer, split into deltas at `at` and around it.
fn pieces(text: &str, at: usize) -> Vec<&str> {
    let mut cuts = vec![0, at, (at + 5).min(text.len()), text.len()];
    cuts.dedup();
    cuts.windows(2)
        .map(|w| &text[w[0]..w[1]])
        .filter(|p| !p.is_empty())
        .collect()
}

fn answer() -> String {
    format!("Your key is {SECRET}, keep it safe.")
}

fn openai_chat(parts: &[&str]) -> Vec<Bytes> {
    let mut f = vec![sse(
        json!({"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
    )];
    for p in parts {
        f.push(sse(json!({"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":p}}]})));
    }
    f.push(sse(json!({"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})));
    f.push(Bytes::from_static(b"data: [DONE]\n\n"));
    f
}

fn anthropic(parts: &[&str]) -> Vec<Bytes> {
    let mut f = vec![
        sse_event(
            "message_start",
            json!({"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":3,"output_tokens":1}}}),
        ),
        sse_event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
    ];
    for p in parts {
        f.push(sse_event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":p}}),
        ));
    }
    f.push(sse_event(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    ));
    f.push(sse_event("message_stop", json!({"type":"message_stop"})));
    f
}

fn responses(parts: &[&str]) -> Vec<Bytes> {
    let mut f = vec![sse_event(
        "response.created",
        json!({"type":"response.created","response":{"model":"gpt-5"}}),
    )];
    for p in parts {
        f.push(sse_event("response.output_text.delta", json!({"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":p})));
    }
    f.push(sse_event(
        "response.completed",
        json!({"type":"response.completed","response":{"model":"gpt-5"}}),
    ));
    f
}

fn gemini_elements(parts: &[&str]) -> Vec<serde_json::Value> {
    parts
        .iter()
        .map(|p| json!({"candidates":[{"content":{"role":"model","parts":[{"text":p}]},"index":0}],"modelVersion":"gemini-2.5-flash"}))
        .collect()
}

#[test]
fn a_streamed_secret_is_redacted_whatever_the_split_in_every_sse_dialect() {
    let g = guard(GuardrailsPolicy::default());
    let text = answer();
    let start = text.find(SECRET).unwrap();
    for at in 1..text.len() {
        if !text.is_char_boundary(at) {
            continue;
        }
        let parts = pieces(&text, at);
        for (api, op, frames) in [
            (ApiKind::Openai, "chat_completions", openai_chat(&parts)),
            (ApiKind::Anthropic, "messages", anthropic(&parts)),
            (ApiKind::Openai, "responses", responses(&parts)),
            (
                ApiKind::Gemini,
                "stream_generate_content",
                gemini_elements(&parts).into_iter().map(sse).collect(),
            ),
        ] {
            let mut st = stage(&g, api, op, Framing::Sse);
            let out = run(&mut st, &frames).unwrap();
            let s = String::from_utf8(out.to_vec()).unwrap();
            assert!(
                !s.contains(SECRET) && !s.contains(&SECRET[..12]),
                "{op} split at {at}: {s}"
            );
            let got = client_text(api, op, Framing::Sse, &out, TextChannel::Content);
            assert_eq!(
                got,
                format!(
                    "{}{PLACEHOLDER}{}",
                    &text[..start],
                    &text[start + SECRET.len()..]
                ),
                "{op} split at {at}"
            );
            let mut r = crate::record::tests::rec("req-1");
            st.on_record(&mut r);
            assert_eq!(r.guardrails.len(), 1, "{op}");
            assert_eq!(r.guardrails[0].action, Action::Redact);
        }
    }
}

#[test]
fn gemini_array_and_ollama_ndjson_streams_are_redacted_in_any_byte_chunks() {
    let g = guard(GuardrailsPolicy::default());
    let text = answer();
    let parts = pieces(&text, 15);
    let array = format!(
        "[{}]",
        gemini_elements(&parts)
            .iter()
            .map(|v| serde_json::to_string_pretty(v).unwrap())
            .collect::<Vec<_>>()
            .join(",\r\n")
    );
    let ndjson: String = parts
        .iter()
        .map(|p| {
            format!(
                "{}\n",
                json!({"model":"llama3.2","message":{"role":"assistant","content":p},"done":false})
            )
        })
        .collect::<String>()
        + &format!(
            "{}\n",
            json!({"model":"llama3.2","message":{"role":"assistant","content":""},"done":true})
        );
    for (api, op, body) in [
        (ApiKind::Gemini, "stream_generate_content", array),
        (ApiKind::Ollama, "chat", ndjson),
    ] {
        for size in [1, 3, 17, 4096] {
            let chunks: Vec<Bytes> = body
                .as_bytes()
                .chunks(size)
                .map(Bytes::copy_from_slice)
                .collect();
            let mut st = stage(&g, api, op, Framing::JsonArray);
            let out = run(&mut st, &chunks).unwrap();
            let s = String::from_utf8(out.to_vec()).unwrap();
            assert!(!s.contains(SECRET), "{op} in {size}-byte chunks: {s}");
            let got = client_text(api, op, Framing::JsonArray, &out, TextChannel::Content);
            assert!(got.contains(PLACEHOLDER), "{op}: {got}");
            assert_eq!(got.replace(PLACEHOLDER, SECRET), text);
        }
    }
}

#[test]
fn tool_call_arguments_and_whole_json_bodies_are_redacted_too() {
    let g = guard(GuardrailsPolicy::default());
    let args = format!("{{\"key\":\"{SECRET}\"}}");
    let (a, b) = args.split_at(14);
    let frames = vec![
        sse(
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"save","arguments":""}}]}}]}),
        ),
        sse(
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":a}}]}}]}),
        ),
        sse(
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":b}}]}}]}),
        ),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ];
    let mut st = stage(&g, ApiKind::Openai, "chat_completions", Framing::Sse);
    let out = run(&mut st, &frames).unwrap();
    let got = client_text(
        ApiKind::Openai,
        "chat_completions",
        Framing::Sse,
        &out,
        TextChannel::ToolArguments,
    );
    assert_eq!(got, format!("{{\"key\":\"{PLACEHOLDER}\"}}"));

    // A whole Anthropic message with a tool_use input object (text the parser serialises).
    let body = json!({"type":"message","model":"claude","content":[
        {"type":"text","text":format!("Saved {SECRET}.")},
        {"type":"tool_use","id":"t1","name":"save","input":{"key":SECRET}}
    ]})
    .to_string();
    let mut st = stage(&g, ApiKind::Anthropic, "messages", Framing::Json);
    let chunks: Vec<Bytes> = body
        .as_bytes()
        .chunks(10)
        .map(Bytes::copy_from_slice)
        .collect();
    let out = run(&mut st, &chunks).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["text"], format!("Saved {PLACEHOLDER}."));
    assert_eq!(v["content"][1]["input"]["key"], PLACEHOLDER);
}

#[test]
fn a_blocked_secret_cuts_the_stream_and_a_whole_body_becomes_an_error() {
    let g = guard(GuardrailsPolicy {
        rules: vec![ActionRule {
            categories: vec!["secret".into()],
            direction: Direction::Response,
            action: Action::Block,
            ..ActionRule::default()
        }],
        ..GuardrailsPolicy::default()
    });
    let text = answer();
    let mut st = stage(&g, ApiKind::Openai, "chat_completions", Framing::Sse);
    let mut out = BytesMut::new();
    let mut cut = None;
    for f in openai_chat(&pieces(&text, 14)) {
        if let Err(c) = st.on_data(f, &[], &mut out) {
            cut = Some(c);
            break;
        }
    }
    let cut = cut.expect("the stream is cut");
    assert_eq!(cut.kind, "guardrail_violation");
    assert!(cut.message.contains("aws_access_key") && !cut.message.contains(SECRET));
    assert!(!String::from_utf8_lossy(&out).contains("AKIA"));

    let body = json!({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":text}}]}).to_string();
    let mut st = stage(&g, ApiKind::Openai, "chat_completions", Framing::Json);
    let out = run(&mut st, &[Bytes::from(body)]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["code"], "guardrail_violation");
    assert!(!out.windows(4).any(|w| w == b"AKIA"));
}

#[test]
fn buffered_responses_release_nothing_until_the_end() {
    let g = guard(GuardrailsPolicy {
        buffer_responses: true,
        ..GuardrailsPolicy::default()
    });
    let mut st = stage(&g, ApiKind::Anthropic, "messages", Framing::Sse);
    let mut out = BytesMut::new();
    for f in anthropic(&["plain ", "text"]) {
        st.on_data(f, &[], &mut out).unwrap();
    }
    assert!(out.is_empty());
    st.on_end(&mut out).unwrap();
    assert_eq!(
        client_text(
            ApiKind::Anthropic,
            "messages",
            Framing::Sse,
            &out,
            TextChannel::Content
        ),
        "plain text"
    );
}

#[test]
fn frames_without_text_and_plain_text_pass_unchanged_and_promptly() {
    let g = guard(GuardrailsPolicy::default());
    let mut st = stage(&g, ApiKind::Openai, "chat_completions", Framing::Sse);
    let frames = openai_chat(&["Hello ", "there, ", "how can I help today?"]);
    let mut out = BytesMut::new();
    // The first frame (no text) goes out at once: time to first byte is not held back.
    st.on_data(frames[0].clone(), &[], &mut out).unwrap();
    assert_eq!(&out[..], &frames[0][..]);
    for f in &frames[1..] {
        st.on_data(f.clone(), &[], &mut out).unwrap();
    }
    st.on_end(&mut out).unwrap();
    assert_eq!(out.freeze(), frames.concat());
}

#[test]
fn websocket_events_are_redacted_one_message_at_a_time() {
    let g = guard(GuardrailsPolicy::default());
    let mut st = ResponseGuard::for_events(g, Who::default(), [1; 32], "req-ws");
    let text = answer();
    let mut out = BytesMut::new();
    for p in pieces(&text, 16) {
        let ev = json!({"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":p}).to_string();
        st.on_data(Bytes::from(ev), &[], &mut out).unwrap();
    }
    st.on_data(
        Bytes::from(json!({"type":"response.done","response":{}}).to_string()),
        &[],
        &mut out,
    )
    .unwrap();
    st.on_end(&mut out).unwrap();
    let mut got = String::new();
    for v in serde_json::Deserializer::from_slice(&out).into_iter::<serde_json::Value>() {
        let v = v.unwrap();
        if v["type"] == "response.output_text.delta" {
            got.push_str(v["delta"].as_str().unwrap());
        }
    }
    assert_eq!(got, text.replace(SECRET, PLACEHOLDER));
}

#[test]
fn a_frame_too_big_to_read_passes_through_without_being_held_whole() {
    let g = guard(GuardrailsPolicy::default());
    let mut st = stage(&g, ApiKind::Openai, "chat_completions", Framing::Sse);
    let mut out = BytesMut::new();
    st.on_data(openai_chat(&["before "])[1].clone(), &[], &mut out)
        .unwrap();
    let big = Bytes::from(vec![b'x'; 256 << 10]);
    st.on_data(Bytes::from_static(b"data: {\"pad\":\""), &[], &mut out)
        .unwrap();
    let mut sent = 0;
    for _ in 0..16 {
        st.on_data(big.clone(), &[], &mut out).unwrap();
        assert!(st.held() <= MAX_UNIT + (256 << 10), "held {}", st.held());
        sent += big.len();
    }
    st.on_data(Bytes::from_static(b"\"}\n\n"), &[], &mut out)
        .unwrap();
    st.on_end(&mut out).unwrap();
    assert!(out.len() > sent, "everything went out");
    assert!(
        out.starts_with(b"data: {"),
        "the frame before it went first"
    );
}
