//! Fuzzes the response parser, the frame aligner and the usage-chunk stripper: arbitrary bytes, cut into
//! arbitrary chunks, as every provider and framing. None may panic; the aligner must lose no byte and
//! release only whole frames (or parts of a frame over its cap), holding no more than its cap; and the
//! stripper must pass a stream without usage frames through byte for byte.
#![no_main]
// A fuzz target's assertions are its findings: a panic here is the crash libFuzzer reports.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use airlock_agent::policy::ApiKind;
use airlock_agent::providers::align::{FrameAligner, Segment};
use airlock_agent::providers::response::{Framing, ResponseParser};
use airlock_agent::providers::strip::UsageChunkStripper;
use libfuzzer_sys::fuzz_target;

const APIS: [(ApiKind, &str); 6] = [
    (ApiKind::Openai, "chat_completions"),
    (ApiKind::Openai, "responses"),
    (ApiKind::Azure, "completions"),
    (ApiKind::Anthropic, "messages"),
    (ApiKind::Gemini, "stream_generate_content"),
    (ApiKind::Gemini, "generate_content"),
];
const FRAMINGS: [Framing; 3] = [Framing::Sse, Framing::Json, Framing::JsonArray];
const ENCODINGS: [Option<&str>; 4] = [None, Some("gzip"), Some("br"), Some("zstd")];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let (api, op) = APIS[usize::from(ctl) % APIS.len()];
    let framing = FRAMINGS[usize::from(ctl >> 3) % FRAMINGS.len()];
    let encoding = ENCODINGS[usize::from(ctl >> 5) % ENCODINGS.len()];
    let chunk = usize::from(ctl % 17) + 1;

    let mut parser = ResponseParser::new(api, op, framing, encoding);
    for part in body.chunks(chunk) {
        parser.feed(part);
    }
    let summary = parser.finish();
    if let Some(u) = summary.usage {
        assert!(u.cache_read_tokens <= u.input_tokens || api == ApiKind::Anthropic);
        assert!(u.reasoning_tokens <= u.output_tokens || api == ApiKind::Gemini);
    }

    let cap = 64 + usize::from(ctl) * 8;
    let mut aligner = FrameAligner::with_cap(cap);
    let mut released = Vec::new();
    for part in body.chunks(chunk) {
        aligner.push(bytes::Bytes::copy_from_slice(part), &mut |seg| match seg {
            Segment::Frames(f) => {
                assert!(
                    f.ends_with(b"\n\n") || f.ends_with(b"\n\r\n"),
                    "a released run ends a frame"
                );
                released.extend_from_slice(&f);
            }
            Segment::Raw(r) => released.extend_from_slice(&r),
        });
        assert!(
            aligner.held() <= cap + chunk,
            "held {} over cap {cap}",
            aligner.held()
        );
    }
    released.extend_from_slice(&aligner.finish());
    assert_eq!(released, body, "the aligner loses and adds nothing");

    let mut stripper = UsageChunkStripper::new();
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(&stripper.feed(part));
    }
    out.extend_from_slice(&stripper.finish());
    if memchr_usage(body).is_none() {
        assert_eq!(
            out, body,
            "a stream without usage frames must pass byte for byte"
        );
    }
});

fn memchr_usage(b: &[u8]) -> Option<usize> {
    b.windows(7).position(|w| w == b"\"usage\"")
}
