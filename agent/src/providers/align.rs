//! Releasing an event stream to the client in whole SSE frames. A frame cut across two network chunks is
//! held until its blank line arrives — the client's SSE parser could not have used half of it anyway —
//! so that whatever the agent appends (an error event when the upstream breaks, after a usage frame is
//! removed) starts on a frame boundary instead of being glued to a partial line. At most one partial
//! frame is held, and never more than [`MAX_UNIT`] bytes of it: a bigger frame is passed on as it
//! comes, and [`FrameAligner::mid_frame`] says so. It owns frame boundaries; it never reads a frame.

use bytes::{Bytes, BytesMut};

use super::framing::MAX_UNIT;

/// A run of bytes the aligner releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// One or more complete frames, each ending with its blank line.
    Frames(Bytes),
    /// Part of a frame over the size cap, released before its end.
    Raw(Bytes),
}

/// The aligner for one stream.
#[derive(Debug)]
pub struct FrameAligner {
    pending: BytesMut,
    /// Bytes of `pending` already scanned for a frame end.
    scanned: usize,
    /// The frame being released is over the cap: bytes go out as they come until its end.
    passthrough: bool,
    /// The last bytes released while passing through, to find a blank line split across chunks.
    tail: [u8; 3],
    tail_len: usize,
    cap: usize,
}

impl Default for FrameAligner {
    fn default() -> Self {
        Self::with_cap(MAX_UNIT)
    }
}

/// Where the first frame of `buf` (from `from`) ends, exclusive, if its blank line has arrived.
pub(crate) fn frame_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
        let next = i + off + 1;
        // A blank line: "\n\n" or "\n\r\n".
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        if next >= buf.len() || (buf[next] == b'\r' && next + 1 >= buf.len()) {
            return None; // need more bytes to know
        }
        i = next;
    }
    None
}

/// Where the last complete frame in `buf` ends (scanning from `from`).
fn last_frame_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut last = None;
    let mut at = from;
    while let Some(end) = frame_end(buf, at) {
        last = Some(end);
        at = end;
    }
    last
}

/// Whether `chunk` ends on a blank line (for tests of what the aligner releases).
#[cfg(test)]
fn ends_on_boundary(chunk: &[u8]) -> bool {
    chunk.ends_with(b"\n\n") || chunk.ends_with(b"\n\r\n")
}

impl FrameAligner {
    /// An aligner holding at most [`MAX_UNIT`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An aligner holding at most `cap` bytes of a partial frame.
    pub fn with_cap(cap: usize) -> Self {
        FrameAligner {
            pending: BytesMut::new(),
            scanned: 0,
            passthrough: false,
            tail: [0; 3],
            tail_len: 0,
            cap: cap.max(1),
        }
    }

    /// Bytes held back now (a partial frame).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Whether the client has been sent part of a frame whose end has not come yet.
    pub fn mid_frame(&self) -> bool {
        self.passthrough
    }

    /// Takes the next chunk of the stream and hands `emit` what may go to the client now.
    pub fn push(&mut self, chunk: Bytes, emit: &mut dyn FnMut(Segment)) {
        if chunk.is_empty() {
            return;
        }
        if self.passthrough {
            match self.end_of_passthrough(&chunk) {
                None => {
                    self.remember_tail(&chunk);
                    emit(Segment::Raw(chunk));
                    return;
                }
                Some(end) => {
                    self.passthrough = false;
                    self.tail_len = 0;
                    let mut rest = chunk;
                    emit(Segment::Raw(rest.split_to(end)));
                    if rest.is_empty() {
                        return;
                    }
                    return self.push(rest, emit);
                }
            }
        }
        if self.pending.is_empty() {
            // The common case — a provider flushes whole events — releases the chunk itself, uncopied.
            let len = chunk.len();
            match last_frame_end(&chunk, 0) {
                Some(end) if end == len => return emit(Segment::Frames(chunk)),
                Some(end) => {
                    let mut rest = chunk;
                    emit(Segment::Frames(rest.split_to(end)));
                    self.pending.extend_from_slice(&rest);
                }
                None => self.pending.extend_from_slice(&chunk),
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.cap {
                self.start_passthrough(emit);
            }
            return;
        }
        let from = self.scanned.saturating_sub(2);
        self.pending.extend_from_slice(&chunk);
        match last_frame_end(&self.pending, from) {
            Some(end) => {
                let frames = self.pending.split_to(end).freeze();
                self.scanned = 0;
                emit(Segment::Frames(frames));
                // What is left is the start of the next frame.
                self.scanned = self.pending.len();
                if self.pending.len() > self.cap {
                    self.start_passthrough(emit);
                }
            }
            None => {
                self.scanned = self.pending.len();
                if self.pending.len() > self.cap {
                    self.start_passthrough(emit);
                }
            }
        }
    }

    fn start_passthrough(&mut self, emit: &mut dyn FnMut(Segment)) {
        let raw = self.pending.split().freeze();
        self.scanned = 0;
        self.passthrough = true;
        self.tail_len = 0;
        self.remember_tail(&raw);
        emit(Segment::Raw(raw));
    }

    fn remember_tail(&mut self, bytes: &[u8]) {
        let mut joined = [0u8; 6];
        let old = &self.tail[..self.tail_len];
        let take = bytes.len().min(3);
        joined[..old.len()].copy_from_slice(old);
        joined[old.len()..old.len() + take].copy_from_slice(&bytes[bytes.len() - take..]);
        let total = old.len() + take;
        let keep = total.min(3);
        self.tail[..keep].copy_from_slice(&joined[total - keep..total]);
        self.tail_len = keep;
    }

    /// Where, in `chunk`, the passed-through frame ends (its blank line may start in the tail).
    fn end_of_passthrough(&self, chunk: &[u8]) -> Option<usize> {
        let t = self.tail_len;
        let mut probe = Vec::with_capacity(t + chunk.len().min(4));
        probe.extend_from_slice(&self.tail[..t]);
        probe.extend_from_slice(&chunk[..chunk.len().min(4)]);
        // A blank line straddling the boundary, within the first bytes of the chunk…
        if let Some(end) = (0..t).find_map(|start| {
            frame_end(&probe[start..], 0)
                .map(|e| e + start)
                .filter(|e| *e > t)
        }) {
            return Some(end - t);
        }
        // …or anywhere inside the chunk.
        frame_end(chunk, 0)
    }

    /// The stream ended: the partial frame, if any, goes out as it is.
    pub fn finish(&mut self) -> Bytes {
        self.scanned = 0;
        self.pending.split().freeze()
    }

    /// The stream broke: the held partial frame is dropped (the client saw none of it). Returns how
    /// many bytes were dropped.
    pub fn discard(&mut self) -> usize {
        self.scanned = 0;
        let n = self.pending.len();
        self.pending.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], split: usize, cap: usize) -> (Vec<Segment>, Vec<u8>) {
        let mut a = FrameAligner::with_cap(cap);
        let mut out = Vec::new();
        for part in input.chunks(split.max(1)) {
            a.push(Bytes::copy_from_slice(part), &mut |s| out.push(s));
        }
        let rest = a.finish().to_vec();
        (out, rest)
    }

    fn joined(segs: &[Segment]) -> Vec<u8> {
        segs.iter()
            .flat_map(|s| match s {
                Segment::Frames(b) | Segment::Raw(b) => b.to_vec(),
            })
            .collect()
    }

    const STREAM: &[u8] =
        b"data: {\"a\":1}\n\nevent: x\r\ndata: {\"b\":2}\r\n\r\n: comment\n\ndata: [DONE]\n\n";

    #[test]
    fn every_split_releases_only_whole_frames_and_loses_nothing() {
        for split in 1..=STREAM.len() {
            let (segs, rest) = run(STREAM, split, 1 << 20);
            assert!(rest.is_empty(), "split {split}");
            assert_eq!(joined(&segs), STREAM, "split {split}");
            for s in &segs {
                let Segment::Frames(b) = s else {
                    panic!("raw segment at split {split}")
                };
                assert!(ends_on_boundary(b), "split {split}: {b:?}");
            }
        }
    }

    #[test]
    fn a_cut_leaves_the_partial_frame_held_and_discardable() {
        let cut = b"data: {\"a\":1}\n\ndata: {\"b\":";
        let mut a = FrameAligner::new();
        let mut out = Vec::new();
        a.push(Bytes::from_static(cut), &mut |s| out.push(s));
        assert_eq!(joined(&out), b"data: {\"a\":1}\n\n");
        assert_eq!(a.held(), 11);
        assert!(!a.mid_frame());
        assert_eq!(a.discard(), 11);
        assert!(a.finish().is_empty());
    }

    #[test]
    fn whole_frame_chunks_are_passed_without_copying() {
        let mut a = FrameAligner::new();
        let chunk = Bytes::from_static(b"data: 1\n\n");
        let ptr = chunk.as_ptr();
        let mut got = None;
        a.push(chunk, &mut |s| got = Some(s));
        match got {
            Some(Segment::Frames(b)) => assert_eq!(b.as_ptr(), ptr),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_frame_passes_through_and_alignment_resumes_after_it() {
        let mut input = b"data: small\n\ndata: ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\n\ndata: after\n\ndata: part");
        for split in 1..=input.len() {
            let mut a = FrameAligner::with_cap(32);
            let mut segs = Vec::new();
            let mut saw_mid = false;
            for part in input.chunks(split) {
                a.push(Bytes::copy_from_slice(part), &mut |s| segs.push(s));
                saw_mid |= a.mid_frame();
            }
            // A split that delivers the big frame whole needs no passing through.
            assert!(saw_mid || split >= 121, "split {split}");
            assert!(!a.mid_frame(), "split {split}: the big frame ended");
            assert_eq!(
                a.held(),
                10,
                "split {split}: only the last partial frame is held"
            );
            let mut all = joined(&segs);
            all.extend_from_slice(&a.finish());
            assert_eq!(all, input, "split {split}");
            assert!(segs.iter().all(|s| match s {
                Segment::Frames(b) => ends_on_boundary(b),
                Segment::Raw(_) => true,
            }));
            // Memory stays bounded by the cap plus one chunk.
            assert!(a.held() <= 32 + split);
        }
    }
}
