//! Fuzzes content decoding: arbitrary bytes as every coding, whole and in pieces, under a small cap.
//! Decoding may fail but never panic, and never produce more than the cap.
#![no_main]
// A fuzz target's assertions are its findings: a panic here is the crash libFuzzer reports.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use airlock_agent::providers::decode::{decode_all, Coding, StreamDecoder};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let coding = [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd][usize::from(ctl) % 4];
    if let Ok(out) = decode_all(coding, body, CAP) {
        assert!(out.len() <= CAP);
    }
    if let Some(Ok(mut d)) = StreamDecoder::new(coding, CAP) {
        let mut total = 0usize;
        for part in body.chunks(usize::from(ctl >> 2) + 1) {
            match d.feed(part) {
                Ok(out) => total += out.len(),
                Err(_) => return,
            }
        }
        if let Ok(rest) = d.finish() {
            total += rest.len();
        }
        assert!(total <= CAP);
    }
});
