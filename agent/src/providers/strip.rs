//! Undoing the agent's own usage request on the way back: when the agent added
//! `stream_options.include_usage` to a client's OpenAI-style stream, the usage it asked for must not reach
//! the client. This rewriter passes SSE frames through byte for byte, except that a frame carrying usage
//! with no choices is dropped, a frame carrying usage alongside choices (xAI, some vLLM builds) loses its
//! `usage` field, and the `"usage":null` that every other chunk carries once usage was asked for is cut
//! out textually (a stream that did not ask has no such field). It works on whole frames from
//! [`FrameAligner`], so at most one partial frame is held — the one a client could not have used yet
//! anyway; a frame over the size cap is released unread.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::align::{frame_end, FrameAligner, Segment};

/// The rewriter for one response stream, fed whole frames (see [`FrameAligner`]).
#[derive(Debug, Default)]
pub struct UsageFrameRewriter {
    /// Frames dropped or rewritten (for tests and records).
    pub stripped: u32,
}

impl UsageFrameRewriter {
    /// A new rewriter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites a run of complete frames; a run without usage comes back as it is, uncopied.
    pub fn rewrite_frames(&mut self, frames: Bytes) -> Bytes {
        if memchr::memmem::find(&frames, b"\"usage\"").is_none() {
            return frames;
        }
        let mut out = BytesMut::with_capacity(frames.len());
        let mut rest = frames;
        while !rest.is_empty() {
            let end = frame_end(&rest, 0).unwrap_or(rest.len());
            let frame = rest.split_to(end);
            self.release(frame, &mut out);
        }
        out.freeze()
    }

    /// Passes on one segment from the aligner: frames are rewritten, a raw (oversized) part is not.
    pub fn segment(&mut self, seg: Segment, out: &mut BytesMut) {
        match seg {
            Segment::Frames(f) => out.extend_from_slice(&self.rewrite_frames(f)),
            Segment::Raw(r) => out.extend_from_slice(&r),
        }
    }

    fn release(&mut self, frame: Bytes, out: &mut BytesMut) {
        if memchr::memmem::find(&frame, b"\"usage\"").is_none() {
            out.extend_from_slice(&frame);
            return;
        }
        // The common case — every chunk once usage was asked for — needs no JSON parse: a frame whose
        // usage is the literal null cannot also carry a usage object.
        if let Some(b) = without_null_usage(&frame) {
            out.extend_from_slice(&b);
            return;
        }
        match rewrite(&frame) {
            Rewrite::Keep => out.extend_from_slice(&frame),
            Rewrite::Drop => self.stripped += 1,
            Rewrite::Replace(b) => {
                self.stripped += 1;
                out.extend_from_slice(&b);
            }
            Rewrite::NullRemoved(b) => out.extend_from_slice(&b),
        }
    }
}

/// Aligner and rewriter together, for a raw byte stream.
#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    aligner: FrameAligner,
    rewriter: UsageFrameRewriter,
    /// Frames dropped or rewritten (for tests and records).
    pub stripped: u32,
}

impl UsageChunkStripper {
    /// A new stripper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk from upstream; returns what the client should get now (possibly empty).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let UsageChunkStripper {
            aligner, rewriter, ..
        } = self;
        aligner.push(Bytes::copy_from_slice(chunk), &mut |seg| {
            rewriter.segment(seg, &mut out)
        });
        self.stripped = self.rewriter.stripped;
        out.freeze()
    }

    /// The stream ended: whatever is held goes out as it is.
    pub fn finish(&mut self) -> Bytes {
        self.aligner.finish()
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.aligner.held()
    }
}

enum Rewrite {
    Keep,
    Drop,
    Replace(Vec<u8>),
    /// Only the `"usage":null` field was removed (not counted as a stripped usage frame).
    NullRemoved(Vec<u8>),
}

/// The frame without its top-level `"usage":null` field, cut out as text so no other byte changes. (The
/// pattern cannot occur inside a JSON string, where quotes are escaped.)
fn without_null_usage(frame: &[u8]) -> Option<Vec<u8>> {
    const PATTERNS: [&[u8]; 4] = [
        b",\"usage\":null",
        b", \"usage\": null",
        b"\"usage\":null,",
        b"\"usage\": null, ",
    ];
    PATTERNS.iter().find_map(|p| {
        let i = memchr::memmem::find(frame, p)?;
        let mut v = Vec::with_capacity(frame.len() - p.len());
        v.extend_from_slice(&frame[..i]);
        v.extend_from_slice(&frame[i + p.len()..]);
        Some(v)
    })
}

fn rewrite(frame: &[u8]) -> Rewrite {
    // OpenAI-style frames are a single `data:` line; anything else is left alone.
    let text = match std::str::from_utf8(frame) {
        Ok(t) => t,
        Err(_) => return Rewrite::Keep,
    };
    let line_end = if text.ends_with("\r\n\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    // Stray blank lines before the frame belong to no event; keep them as they were.
    let body = text.trim_start_matches(['\r', '\n']);
    let lead = &text[..text.len() - body.len()];
    let body = body.trim_end_matches(['\r', '\n']);
    let Some(data) = body.strip_prefix("data:") else {
        return Rewrite::Keep;
    };
    if data.contains('\n') {
        return Rewrite::Keep;
    }
    let data = data.strip_prefix(' ').unwrap_or(data);
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return Rewrite::Keep;
    };
    let Some(obj) = v.as_object_mut() else {
        return Rewrite::Keep;
    };
    match obj.get("usage") {
        None => return Rewrite::Keep,
        Some(Value::Null) => {
            return match without_null_usage(frame) {
                Some(b) => Rewrite::NullRemoved(b),
                None => Rewrite::Keep,
            }
        }
        Some(_) => {}
    }
    let no_choices = match obj.get("choices") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if no_choices {
        return Rewrite::Drop;
    }
    obj.shift_remove("usage");
    match serde_json::to_string(&v) {
        Ok(s) => Rewrite::Replace(format!("{lead}data: {s}{line_end}{line_end}").into_bytes()),
        Err(_) => Rewrite::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::super::framing::MAX_UNIT;
    use super::*;

    fn run(input: &[u8], split: usize) -> (Vec<u8>, u32) {
        let mut s = UsageChunkStripper::new();
        let mut out = Vec::new();
        for part in input.chunks(split.max(1)) {
            out.extend_from_slice(&s.feed(part));
        }
        out.extend_from_slice(&s.finish());
        (out, s.stripped)
    }

    const WITH_USAGE: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn usage_chunk_is_removed_at_every_split() {
        // Once usage was asked for, every chunk carries "usage":null; a stream that did not ask has none.
        let expected =
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";
        for split in 1..=WITH_USAGE.len() {
            let (out, n) = run(WITH_USAGE.as_bytes(), split);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "split {split}");
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn crlf_frames_comments_and_choices_null() {
        let input = ": OPENROUTER PROCESSING\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: {\"choices\":null,\"usage\":{\"prompt_tokens\":1}}\r\n\r\ndata: [DONE]\r\n\r\n";
        let expected = ": OPENROUTER PROCESSING\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        for split in 1..=input.len() {
            assert_eq!(
                String::from_utf8(run(input.as_bytes(), split).0).unwrap(),
                expected,
                "split {split}"
            );
        }
    }

    #[test]
    fn usage_beside_choices_loses_only_the_usage_field() {
        let input = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let (out, n) = run(input.as_bytes(), 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}]}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn extra_blank_lines_between_frames_do_not_hide_a_usage_frame() {
        let input = "data: {\"choices\":[{\"delta\":{}}]}\n\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n";
        for split in 1..=input.len() {
            let (out, n) = run(input.as_bytes(), split);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "data: {\"choices\":[{\"delta\":{}}]}\n\ndata: [DONE]\n\n",
                "split {split}"
            );
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn frames_without_usage_are_byte_identical_and_a_cut_frame_is_flushed() {
        let input = "data: {\"a\":1}\n\ndata: {\"partial";
        let (out, n) = run(input.as_bytes(), 4);
        assert_eq!(String::from_utf8(out).unwrap(), input);
        assert_eq!(n, 0);
    }

    #[test]
    fn oversized_frame_is_passed_on_unread_with_bounded_memory() {
        let mut s = UsageChunkStripper::new();
        let mut total = 0usize;
        total += s.feed(b"data: \"").len();
        let big = vec![b'x'; 256 << 10];
        for _ in 0..16 {
            total += s.feed(&big).len();
            assert!(s.held() <= MAX_UNIT + big.len());
        }
        total += s
            .feed(b"\"\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n")
            .len();
        total += s.finish().len();
        assert_eq!(total, 7 + 16 * (256 << 10) + 3);
        assert_eq!(s.stripped, 1);
    }
}
