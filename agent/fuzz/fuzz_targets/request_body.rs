//! Fuzzes request reading: identification from arbitrary bodies and paths, text extraction with JSON
//! Pointers, redaction of every span found, and stream-usage injection. None may panic; every pointer
//! found must point at a string, and a redacted body must still serialise to JSON that parses.
#![no_main]
// A fuzz target's assertions are its findings: a panic here is the crash libFuzzer reports.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use airlock_agent::policy::ApiKind;
use airlock_agent::providers::{identify, request};
use libfuzzer_sys::fuzz_target;

const APIS: [(ApiKind, &str); 7] = [
    (ApiKind::Openai, "/v1/chat/completions"),
    (ApiKind::Openai, "/v1/responses"),
    (ApiKind::Openai, "/v1/embeddings"),
    (ApiKind::Azure, "/openai/deployments/d/completions"),
    (ApiKind::Anthropic, "/v1/messages"),
    (ApiKind::Gemini, "/v1beta/models/g:generateContent"),
    (ApiKind::Gemini, "/v1beta/models/g:embedContent"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let (api, path) = APIS[usize::from(ctl) % APIS.len()];
    let id = identify(api, &http_post(), path, Some("alt=sse&key=x"), Some(body));
    let _ = request::inject_stream_usage(body);
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let spans = request::texts(api, &id.operation, &v);
    for s in &spans {
        let text = s
            .text(&v)
            .expect("every span points at a string")
            .to_string();
        assert_eq!(text.len(), s.len);
    }
    for s in spans.iter().rev() {
        let len = s.text(&v).map(str::len).unwrap_or(0);
        let _ = request::redact(&mut v, &s.pointer, 0..len, "[REDACTED]");
    }
    let out = serde_json::to_vec(&v).expect("serialises");
    serde_json::from_slice::<serde_json::Value>(&out).expect("still JSON");
});

fn http_post() -> http::Method {
    http::Method::POST
}
