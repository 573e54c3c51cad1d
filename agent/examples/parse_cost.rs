//! Measures what the response observer costs per megabyte of stream: realistic SSE streams of each
//! provider (and a non-streamed JSON body) are fed through the parser in 4 KiB pieces, the way they
//! arrive, and the time per MB is printed. Run with
//! `cargo run --release -p airlock-agent --example parse_cost`. This is a benchmark harness, not a
//! test: it asserts only that the parser read the usage it was given.

use std::time::Instant;

use airlock_agent::policy::ApiKind;
use airlock_agent::providers::response::{Framing, ResponseParser};
use airlock_agent::providers::strip::UsageChunkStripper;

const TARGET_BYTES: usize = 16 << 20;
const PIECE: usize = 4096;

fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < TARGET_BYTES {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-BdV1mNo4Pq6Rs8Tu0Vw2Xy3Za5Bc7\",\"object\":\"chat.completion.chunk\",\"created\":1748200002,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
        i += 1;
    }
    s.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
    let mut i = 0u64;
    while s.len() < TARGET_BYTES {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"
        ));
        i += 1;
    }
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn gemini_stream() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < TARGET_BYTES {
        s.push_str(&format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\" word{i}\"}}],\"role\":\"model\"}},\"index\":0}}],\"usageMetadata\":{{\"promptTokenCount\":9,\"candidatesTokenCount\":{i},\"totalTokenCount\":{}}},\"modelVersion\":\"gemini-2.5-flash\"}}\r\n\r\n",
            i + 9
        ));
        i += 1;
    }
    s.into_bytes()
}

fn json_body() -> Vec<u8> {
    // Under the parser's 16 MiB cap for whole bodies.
    let text = "lorem ipsum ".repeat(TARGET_BYTES / 24);
    format!(
        "{{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{text}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":2}}}}"
    )
    .into_bytes()
}

fn measure(name: &str, api: ApiKind, op: &str, framing: Framing, body: &[u8]) {
    let rounds = 5;
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut p = ResponseParser::new(api, op, framing, None);
        for piece in body.chunks(PIECE) {
            p.feed(piece);
        }
        let s = p.finish();
        let secs = start.elapsed().as_secs_f64();
        assert!(s.usage.is_some(), "{name}: the parser read no usage");
        best = best.min(secs);
    }
    let mb = body.len() as f64 / (1 << 20) as f64;
    println!(
        "| {name} | {mb:.1} MiB | {:.2} ms/MiB | {:.0} MiB/s | {:.2} µs per 4 KiB chunk |",
        best * 1e3 / mb,
        mb / best,
        best * 1e6 / (body.len() as f64 / PIECE as f64)
    );
}

fn measure_stripper(body: &[u8]) {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut s = UsageChunkStripper::new();
        let mut out = 0usize;
        for piece in body.chunks(PIECE) {
            out += s.feed(piece).len();
        }
        out += s.finish().len();
        best = best.min(start.elapsed().as_secs_f64());
        assert!(out < body.len(), "the stripper removed the usage");
    }
    let mb = body.len() as f64 / (1 << 20) as f64;
    println!(
        "| usage-chunk stripper (OpenAI, injected usage) | {mb:.1} MiB | {:.2} ms/MiB | {:.0} MiB/s | {:.2} µs per 4 KiB chunk |",
        best * 1e3 / mb,
        mb / best,
        best * 1e6 / (body.len() as f64 / PIECE as f64)
    );
}

fn main() {
    println!("| stream | size | cost | throughput | per chunk |");
    println!("|---|---:|---:|---:|---:|");
    let openai = openai_stream();
    measure(
        "OpenAI chat SSE",
        ApiKind::Openai,
        "chat_completions",
        Framing::Sse,
        &openai,
    );
    measure(
        "Anthropic messages SSE",
        ApiKind::Anthropic,
        "messages",
        Framing::Sse,
        &anthropic_stream(),
    );
    measure(
        "Gemini SSE (CRLF)",
        ApiKind::Gemini,
        "stream_generate_content",
        Framing::Sse,
        &gemini_stream(),
    );
    measure(
        "OpenAI non-stream JSON",
        ApiKind::Openai,
        "chat_completions",
        Framing::Json,
        &json_body(),
    );
    measure_stripper(&openai);
}
