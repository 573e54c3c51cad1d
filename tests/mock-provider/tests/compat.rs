//! End-to-end checks of the OpenAI-compatible services served on the same listener: every host's
//! certificate and path, Groq's `x_groq.usage`, xAI's usage-chunk order, OpenRouter's processing
//! comments and generation id, the vLLM `choices: null` usage chunk, DeepSeek's cache counts, and
//! Azure OpenAI's deployment URLs, v1 form, `api-key` auth, filter results and errors.
//! Token counts are hand-computed: one token per whitespace-separated word.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hosts::*;

use common::{openai_chunks, parse_sse_items, post, raw, Mock, Proto, SseItem};
use serde_json::{json, Value};

const AZURE: &str = "mockres.openai.azure.com";
const AZURE_KEY: (&str, &str) = ("api-key", "azure-key-123");
const DATED: &str = "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21";

/// "Be brief" (2) + "Hello there world" (3) = 5 input tokens.
fn chat_body(stream: bool, include_usage: Option<bool>) -> Value {
    let mut b = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Hello there world"}
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
async fn every_host_has_a_certificate_and_its_real_path() {
    let mock = Mock::start(&[]);
    let cases = [
        ("api.groq.com", "/openai/v1/chat/completions"),
        ("api.x.ai", "/v1/chat/completions"),
        ("openrouter.ai", "/api/v1/chat/completions"),
        ("api.mistral.ai", "/v1/chat/completions"),
        ("api.deepseek.com", "/v1/chat/completions"),
        ("api.together.xyz", "/v1/chat/completions"),
        ("mockres.openai.azure.com", "/openai/v1/chat/completions"),
        (
            "other-resource.openai.azure.com",
            "/openai/v1/chat/completions",
        ),
    ];
    for (host, path) in cases {
        for proto in [Proto::H1, Proto::H2] {
            let (resp, v) = mock
                .json(proto, post(host, path, &[BEARER], &chat_body(false, None)))
                .await;
            assert_eq!(resp.status(), 200, "{host}{path}: {v}");
            assert_eq!(v["object"], "chat.completion", "{host}");
            assert_eq!(v["usage"]["prompt_tokens"], 5, "{host}");
            assert_eq!(v["usage"]["completion_tokens"], 7, "{host}");
            assert!(resp.headers().contains_key("x-request-id"));
            assert!(
                !resp.headers().contains_key("openai-organization"),
                "{host} sends OpenAI's own headers"
            );
        }
    }
    // Embeddings and the model list at the services' paths.
    for (host, path) in [
        ("api.groq.com", "/openai/v1/embeddings"),
        ("openrouter.ai", "/api/v1/embeddings"),
        ("api.mistral.ai", "/v1/embeddings"),
    ] {
        let (resp, v) = mock
            .json(
                Proto::H1,
                post(
                    host,
                    path,
                    &[BEARER],
                    &json!({"model": "e", "input": "one two"}),
                ),
            )
            .await;
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(v["usage"]["prompt_tokens"], 2);
    }
    let (resp, v) = mock
        .json(
            Proto::H1,
            raw("GET", "api.groq.com", "/openai/v1/models", &[BEARER], ""),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(v["object"], "list");
    // The OpenAI path on Groq's or OpenRouter's host is not theirs.
    for (host, path) in [
        ("api.groq.com", "/v1/chat/completions"),
        ("openrouter.ai", "/v1/chat/completions"),
    ] {
        let (resp, v) = mock
            .json(
                Proto::H1,
                post(host, path, &[BEARER], &chat_body(false, None)),
            )
            .await;
        assert_eq!(resp.status(), 404, "{host}{path}");
        assert_eq!(v["error"]["message"], format!("Invalid URL (POST {path})"));
    }
}

#[tokio::test]
async fn groq_stream_usage_only_under_x_groq_on_the_final_chunk() {
    let mock = Mock::start(&[]);
    for include_usage in [None, Some(true), Some(false)] {
        let (_, text) = mock
            .text(
                Proto::H1,
                post(
                    "api.groq.com",
                    "/openai/v1/chat/completions",
                    &[BEARER, ("x-mock-reasoning-tokens", "3")],
                    &chat_body(true, include_usage),
                ),
            )
            .await;
        let chunks = openai_chunks(&text);
        // role + 7 words + finish; never a separate usage chunk.
        assert_eq!(chunks.len(), 9, "{include_usage:?}: {text}");
        for c in &chunks {
            assert!(c.get("usage").is_none(), "top-level usage: {c}");
            assert_eq!(c["choices"].as_array().unwrap().len(), 1);
        }
        assert!(chunks[0]["x_groq"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_"));
        assert!(chunks[0]["x_groq"].get("usage").is_none());
        for c in &chunks[1..8] {
            assert!(c.get("x_groq").is_none());
        }
        let last = &chunks[8];
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        let u = &last["x_groq"]["usage"];
        assert_eq!(u["prompt_tokens"], 5);
        // 7 words + 3 reasoning tokens.
        assert_eq!(u["completion_tokens"], 10);
        assert_eq!(u["total_tokens"], 15);
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 3);
        assert!(u["queue_time"].is_f64());
        assert!(u.get("prompt_tokens_details").is_none());
    }
    // Non-streamed: normal usage (with Groq's timings) and x_groq.id.
    let (_, v) = mock
        .json(
            Proto::H2,
            post(
                "api.groq.com",
                "/openai/v1/chat/completions",
                &[BEARER, ("x-mock-cached-tokens", "2")],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert!(v["usage"]["total_time"].is_f64());
    assert!(v["x_groq"]["id"].as_str().unwrap().starts_with("req_"));
}

#[tokio::test]
async fn xai_usage_chunk_is_second_to_last() {
    let mock = Mock::start(&[]);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                "api.x.ai",
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(true, Some(true)),
            ),
        )
        .await;
    let chunks = openai_chunks(&text);
    // role + 7 words + usage + finish.
    assert_eq!(chunks.len(), 10);
    let usage = &chunks[8];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 5);
    assert_eq!(usage["usage"]["completion_tokens"], 7);
    let last = &chunks[9];
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"], Value::Null);
    for (i, c) in chunks.iter().enumerate() {
        if i != 8 {
            assert_eq!(c["usage"], Value::Null, "chunk {i}");
        }
    }
    // Without include_usage there is no usage at all.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                "api.x.ai",
                "/v1/chat/completions",
                &[BEARER],
                &chat_body(true, None),
            ),
        )
        .await;
    let chunks = openai_chunks(&text);
    assert_eq!(chunks.len(), 9);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(chunks[8]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openrouter_processing_comments_and_generation_id() {
    let mock = Mock::start(&[]);
    let (resp, text) = mock
        .text(
            Proto::H2,
            post(
                "openrouter.ai",
                "/api/v1/chat/completions",
                &[BEARER, ("x-mock-output-words", "3")],
                &chat_body(true, Some(true)),
            ),
        )
        .await;
    let items = parse_sse_items(&text, false);
    let comment = || SseItem::Comment("OPENROUTER PROCESSING".into());
    // comment, role, 3 words, comment, finish, usage, [DONE].
    assert_eq!(items.len(), 9, "{text}");
    assert_eq!(items[0], comment());
    assert_eq!(items[5], comment());
    assert!(text.starts_with(": OPENROUTER PROCESSING\n\ndata: {"));
    let SseItem::Frame(finish) = &items[6] else {
        panic!("{:?}", items[6])
    };
    assert_eq!(finish.json()["choices"][0]["finish_reason"], "stop");
    let SseItem::Frame(usage) = &items[7] else {
        panic!("{:?}", items[7])
    };
    assert_eq!(usage.json()["usage"]["completion_tokens"], 3);
    assert_eq!(
        items[8],
        SseItem::Frame(common::Sse {
            event: None,
            data: "[DONE]".into()
        })
    );
    let SseItem::Frame(first) = &items[1] else {
        panic!()
    };
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("gen-"), "{id}");
    assert_eq!(resp.headers()["x-generation-id"], id.as_str());

    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                "openrouter.ai",
                "/api/v1/chat/completions",
                &[BEARER],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.headers()["x-generation-id"], v["id"].as_str().unwrap());
}

#[tokio::test]
async fn choices_null_usage_chunk_and_deepseek_cache_counts() {
    let mock = Mock::start(&[]);
    for (host, path) in [
        ("api.openai.com", "/v1/chat/completions"),
        ("api.mistral.ai", "/v1/chat/completions"),
        ("api.together.xyz", "/v1/chat/completions"),
        ("api.x.ai", "/v1/chat/completions"),
    ] {
        let (_, text) = mock
            .text(
                Proto::H1,
                post(
                    host,
                    path,
                    &[BEARER, ("x-mock-choices-null", "1")],
                    &chat_body(true, Some(true)),
                ),
            )
            .await;
        let chunks = openai_chunks(&text);
        let usage: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
        assert_eq!(usage.len(), 1, "{host}");
        assert_eq!(usage[0]["choices"], Value::Null, "{host}");
        assert!(text.contains(r#""choices":null"#));
        assert_eq!(usage[0]["usage"]["total_tokens"], 12);
        // Every other chunk keeps its choices array.
        for c in chunks.iter().filter(|c| c["usage"].is_null()) {
            assert_eq!(c["choices"].as_array().unwrap().len(), 1, "{host}");
        }
    }
    // Legacy completions too.
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                "api.openai.com",
                "/v1/completions",
                &[BEARER, ("x-mock-choices-null", "1")],
                &json!({"model": "m", "prompt": "a b", "stream": true,
                    "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    let chunks = openai_chunks(&text);
    assert_eq!(chunks.last().unwrap()["choices"], Value::Null);
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 2);

    // DeepSeek: cached tokens also as prompt_cache_hit/miss_tokens.
    let (_, v) = mock
        .json(
            Proto::H1,
            post(
                "api.deepseek.com",
                "/v1/chat/completions",
                &[BEARER, ("x-mock-cached-tokens", "2")],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert_eq!(v["usage"]["prompt_cache_hit_tokens"], 2);
    assert_eq!(v["usage"]["prompt_cache_miss_tokens"], 3);
    let (_, text) = mock
        .text(
            Proto::H1,
            post(
                "api.deepseek.com",
                "/v1/chat/completions",
                &[BEARER, ("x-mock-cached-tokens", "9")],
                &chat_body(true, Some(true)),
            ),
        )
        .await;
    let chunks = openai_chunks(&text);
    let u = &chunks.last().unwrap()["usage"];
    assert_eq!(u["prompt_cache_hit_tokens"], 5);
    assert_eq!(u["prompt_cache_miss_tokens"], 0);
}

#[tokio::test]
async fn azure_dated_url_stream_starts_with_the_prompt_filter_chunk() {
    let mock = Mock::start(&[]);
    let (resp, text) = mock
        .text(
            Proto::H1,
            post(
                AZURE,
                DATED,
                &[AZURE_KEY],
                &json!({
                "messages": [{"role": "user", "content": "Hello there world"}],
                "stream": true, "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{text}");
    assert!(resp.headers().contains_key("apim-request-id"));
    let first_line = text.lines().next().unwrap();
    assert!(
        first_line.starts_with(
            r#"data: {"id":"","choices":[],"created":0,"model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"#
        ),
        "{first_line}"
    );
    let chunks = openai_chunks(&text);
    // filter chunk + role + 7 words + finish + usage.
    assert_eq!(chunks.len(), 11);
    let pf = &chunks[0]["prompt_filter_results"][0]["content_filter_results"];
    assert_eq!(pf["hate"], json!({"filtered": false, "severity": "safe"}));
    assert_eq!(
        pf["jailbreak"],
        json!({"filtered": false, "detected": false})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["content_filter_results"], json!({}));
    for c in &chunks[2..9] {
        assert_eq!(c["model"], "gpt-4o-2024-08-06");
        let cf = &c["choices"][0]["content_filter_results"];
        assert_eq!(cf["violence"]["severity"], "safe");
        assert_eq!(cf["protected_material_text"]["detected"], false);
    }
    let content: String = chunks[2..9]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(content, "This is a mock reply from gpt-4o-2024-08-06.");
    assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[10]["choices"], json!([]));
    assert_eq!(chunks[10]["usage"]["prompt_tokens"], 3);
    assert_eq!(chunks[10]["usage"]["completion_tokens"], 7);

    // Non-streamed: prompt_filter_results and per-choice content_filter_results; the model named
    // by x-mock-azure-model; Bearer (Entra ID) auth instead of api-key.
    let (resp, v) = mock
        .json(
            Proto::H2,
            post(
                AZURE,
                DATED,
                &[
                    ("authorization", "Bearer eyJ0eXAi.entra"),
                    ("x-mock-azure-model", "gpt-4.1-mini-2025-04-14"),
                ],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{v}");
    assert_eq!(v["model"], "gpt-4.1-mini-2025-04-14");
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(v["usage"]["prompt_tokens"], 5);

    // Embeddings and legacy completions on deployment URLs.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                AZURE,
                "/openai/deployments/emb/embeddings?api-version=2024-10-21",
                &[AZURE_KEY],
                &json!({"input": ["one two", "three"]}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    let (resp, text) = mock
        .text(
            Proto::H1,
            post(
                AZURE,
                "/openai/deployments/inst/completions?api-version=2024-06-01",
                &[AZURE_KEY],
                &json!({"prompt": "Say hi", "stream": true}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{text}");
    let chunks = openai_chunks(&text);
    assert_eq!(chunks[0]["choices"], json!([]));
    assert!(chunks[0]["prompt_filter_results"].is_array());
    assert_eq!(chunks[1]["object"], "text_completion");
}

#[tokio::test]
async fn azure_v1_form_uses_the_deployment_as_model() {
    let mock = Mock::start(&[]);
    let mut body = chat_body(false, None);
    body["model"] = json!("my-deployment");
    let (resp, v) = mock
        .json(
            Proto::H2,
            post(
                "contoso.openai.azure.com",
                "/openai/v1/chat/completions",
                &[AZURE_KEY],
                &body,
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{v}");
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    assert!(v["prompt_filter_results"].is_array());
    // v1 without a model is a 400 (OpenAI's message, as Azure passes it through).
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                AZURE,
                "/openai/v1/chat/completions",
                &[AZURE_KEY],
                &json!({"messages": []}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["message"], "you must provide a model parameter");
    // The Responses API on v1.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                AZURE,
                "/openai/v1/responses",
                &[AZURE_KEY],
                &json!({"model": "dep", "input": "Hi there"}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{v}");
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    assert_eq!(v["usage"]["input_tokens"], 2);
    // A loopback host reaches Azure under /azure.
    let host = format!("127.0.0.1:{}", mock.plain_port.unwrap());
    let (resp, v) = mock
        .json(
            Proto::Plain,
            post(
                &host,
                &format!("/azure{DATED}"),
                &[AZURE_KEY],
                &chat_body(false, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 200, "{v}");
    assert!(v["prompt_filter_results"].is_array());
}

#[tokio::test]
async fn azure_errors_deployment_not_found_auth_version_and_content_filter() {
    let mock = Mock::start(&[]);
    let body = chat_body(false, None);
    // Deployment "missing", dated and v1.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                AZURE,
                "/openai/deployments/missing/chat/completions?api-version=2024-10-21",
                &[AZURE_KEY],
                &body,
            ),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(v["error"]["code"], "DeploymentNotFound");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("The API deployment for this resource does not exist"));
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_eq!(v["error"].as_object().unwrap().len(), 2);
    let mut v1 = body.clone();
    v1["model"] = json!("missing");
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(AZURE, "/openai/v1/chat/completions", &[AZURE_KEY], &v1),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(v["error"]["code"], "DeploymentNotFound");
    // No api-version, or a malformed one: 404 Resource not found.
    for path in [
        "/openai/deployments/prod/chat/completions",
        "/openai/deployments/prod/chat/completions?api-version=latest",
    ] {
        let (resp, v) = mock
            .json(Proto::H1, post(AZURE, path, &[AZURE_KEY], &body))
            .await;
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            v,
            json!({"error": {"code": "404", "message": "Resource not found"}})
        );
    }
    // No key, or a rejected one: 401 with a string code.
    for headers in [vec![], vec![("api-key", "invalid-key")]] {
        let (resp, v) = mock
            .json(Proto::H1, post(AZURE, DATED, &headers, &body))
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(v["error"]["code"], "401");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Access denied"));
    }
    // Content filter refusal.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                AZURE,
                DATED,
                &[AZURE_KEY, ("x-mock-fault", "content-filter")],
                &chat_body(true, None),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(v["error"]["status"], 400);
    assert_eq!(
        v["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(
        v["error"]["innererror"]["content_filter_result"]["violence"],
        json!({"filtered": true, "severity": "medium"})
    );
    // ... which only Azure hosts serve.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(
                "api.openai.com",
                "/v1/chat/completions",
                &[BEARER, ("x-mock-fault", "content-filter")],
                &body,
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("Azure"));
    // Azure's 429.
    let (resp, v) = mock
        .json(
            Proto::H1,
            post(AZURE, DATED, &[AZURE_KEY, ("x-mock-fault", "429")], &body),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(v["error"]["code"], "429");
}
