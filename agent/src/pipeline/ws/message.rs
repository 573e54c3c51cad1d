//! Data frames joined into messages, for one direction: fragments are collected (with their wire bytes
//! when the caller holds them back) until the final one, the payload is decoded when the message was
//! compressed, and a message that grows past the cap is given up on — its frames pass on unread and
//! the caller learns why. Control frames are not part of messages and come out on their own. It owns
//! no I/O and no meaning (the session reads the JSON).

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::deflate::Inflater;
use super::frame::{Piece, RawFrame};

/// A whole message.
#[derive(Debug)]
pub(crate) struct Message {
    /// Its frames as they came, when the assembler keeps them.
    pub(crate) frames: Vec<RawFrame>,
    /// Wire bytes of all its frames.
    pub(crate) wire_len: u64,
    /// Whether it is a text message.
    pub(crate) text: bool,
    /// The payload, decoded: `Err` says why it could not be read.
    pub(crate) payload: Result<Bytes, String>,
}

/// What one piece of input amounts to.
#[derive(Debug)]
pub(crate) enum Step {
    /// A control frame (close, ping, pong), to pass on at once.
    Control(RawFrame),
    /// A fragment was taken in; the message is not complete.
    Partial,
    /// A message is complete.
    Message(Message),
    /// The message being read went past the cap. `release` holds the frames the assembler had kept
    /// (to pass on now, this frame included); the rest of the message passes on as it comes.
    Unread {
        /// Held frames to pass on first.
        release: Vec<RawFrame>,
        /// Why the message is not read.
        why: String,
    },
    /// Part of a message already given up on, to pass on as it is.
    Passing,
}

/// Assembles messages for one direction.
#[derive(Debug)]
pub(crate) struct Assembler {
    cap: usize,
    keep_frames: bool,
    inflater: Option<Inflater>,
    frames: Vec<RawFrame>,
    payload: BytesMut,
    wire_len: u64,
    text: bool,
    compressed: bool,
    in_message: bool,
    /// The message being read is past the cap: its remaining pieces pass.
    unread: bool,
    /// The oversize frame now passing is the message's last.
    final_oversize: bool,
    /// The sender compresses each message on its own (no context takeover), so skipping one does
    /// not cost the window.
    sender_resets: bool,
}

impl Assembler {
    /// An assembler for messages of at most `cap` bytes (compressed and decoded), keeping the frames
    /// when `keep_frames` (the caller holds them back), decoding when `deflate` was negotiated —
    /// `Some(true)` when the sender compresses each message on its own.
    pub(crate) fn new(cap: usize, keep_frames: bool, deflate: Option<bool>) -> Self {
        Assembler {
            cap,
            keep_frames,
            inflater: deflate.map(|_| Inflater::default()),
            sender_resets: deflate.unwrap_or(true),
            final_oversize: false,
            frames: Vec::new(),
            payload: BytesMut::new(),
            wire_len: 0,
            text: false,
            compressed: false,
            in_message: false,
            unread: false,
        }
    }

    /// Whether a data message has begun and not ended (a frame may not be put in the middle of it).
    pub(crate) fn in_message(&self) -> bool {
        self.in_message
    }

    /// The frames held for a message not yet complete (to pass on when reading is given up).
    pub(crate) fn take_held(&mut self) -> Vec<RawFrame> {
        self.reset()
    }

    /// A compressed message passes unread: its bytes never reach the decompressor, so when the
    /// sender keeps its window, later messages cannot be decoded either.
    fn skipped_window(&mut self) {
        if self.compressed && !self.sender_resets {
            if let Some(i) = self.inflater.as_mut() {
                i.lose_window();
            }
        }
    }

    fn reset(&mut self) -> Vec<RawFrame> {
        self.payload.clear();
        self.wire_len = 0;
        self.in_message = false;
        self.unread = false;
        std::mem::take(&mut self.frames)
    }

    /// Takes one piece from the frame reader.
    pub(crate) fn take(&mut self, piece: Piece) -> Step {
        match piece {
            Piece::Frame(f) if f.is_control() => Step::Control(f),
            Piece::Frame(f) => self.data_frame(f),
            Piece::Oversize { header, len } => {
                if matches!(header.opcode, OpCode::Control(_)) {
                    // The reader refuses big control frames; nothing to assemble.
                    return Step::Passing;
                }
                // The message ends when this frame does, if it is the final one: the caller learns
                // that from the `Raw { last }` pieces, which map to `Passing`.
                self.final_oversize = header.is_final;
                if self.unread {
                    return Step::Passing;
                }
                if header.opcode != OpCode::Data(Data::Continue) {
                    self.reset();
                    self.compressed = header.rsv1;
                }
                self.in_message = true;
                self.unread = true;
                self.skipped_window();
                let release = std::mem::take(&mut self.frames);
                Step::Unread {
                    release,
                    why: format!(
                        "a message frame of {len} bytes is over Airlock's limit of {} bytes for reading WebSocket messages; it passed unread",
                        self.cap
                    ),
                }
            }
            Piece::Raw { last, .. } => {
                if last && self.final_oversize {
                    self.reset();
                }
                Step::Passing
            }
        }
    }

    fn data_frame(&mut self, f: RawFrame) -> Step {
        let continuation = f.header.opcode == OpCode::Data(Data::Continue);
        if !continuation {
            // A new message (a client that starts one without ending the last is broken; the
            // upstream will say so — the agent just starts over).
            self.reset();
            self.in_message = true;
            self.text = f.header.opcode == OpCode::Data(Data::Text);
            self.compressed = f.header.rsv1;
        }
        let is_final = f.header.is_final;
        if self.unread {
            if is_final {
                self.reset();
            }
            return Step::Passing;
        }
        self.wire_len += f.wire.len() as u64;
        if self.payload.len() + f.payload_len() > self.cap {
            let mut release = std::mem::take(&mut self.frames);
            let why = format!(
                "a message of over {} bytes is over Airlock's limit for reading WebSocket messages; it passed unread",
                self.cap
            );
            if is_final {
                release.push(f);
                self.reset();
            } else {
                self.unread = true;
                self.final_oversize = false;
                release.push(f);
            }
            self.skipped_window();
            return Step::Unread { release, why };
        }
        self.payload.extend_from_slice(&f.payload());
        if self.keep_frames {
            self.frames.push(f);
        }
        if !is_final {
            return Step::Partial;
        }
        let compressed = self.compressed;
        let payload = self.payload.split().freeze();
        let decoded = match (compressed, self.inflater.as_mut()) {
            (false, _) => Ok(payload),
            (true, Some(inf)) => inf
                .inflate(&payload, self.cap)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
            (true, None) => {
                Err("a compressed message on a socket that did not negotiate compression".into())
            }
        };
        let wire_len = self.wire_len;
        let frames = self.reset();
        Step::Message(Message {
            frames,
            wire_len,
            text: self.text,
            payload: decoded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ws::frame::FrameReader;
    use flate2::{Compress, Compression, FlushCompress};

    /// Frames of one message split in `parts` fragments, masked, optionally compressed as a whole.
    fn fragments(text: &[u8], parts: usize, compress: Option<&mut Compress>) -> Vec<u8> {
        let (payload, rsv1) = match compress {
            Some(c) => {
                let mut out = Vec::with_capacity(text.len() + 64);
                c.compress_vec(text, &mut out, FlushCompress::Sync).unwrap();
                out.truncate(out.len() - 4);
                (out, true)
            }
            None => (text.to_vec(), false),
        };
        let chunk = payload.len().div_ceil(parts);
        let mut wire = Vec::new();
        for (i, piece) in payload.chunks(chunk).enumerate() {
            let last = (i + 1) * chunk >= payload.len();
            let op: u8 = if i == 0 { 0x1 } else { 0x0 };
            let b0 = op | if last { 0x80 } else { 0 } | if rsv1 && i == 0 { 0x40 } else { 0 };
            wire.push(b0);
            assert!(piece.len() < 126);
            wire.push(0x80 | piece.len() as u8);
            let mask = [9u8, 8, 7, 6];
            wire.extend_from_slice(&mask);
            wire.extend(piece.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]));
        }
        wire
    }

    fn steps(asm: &mut Assembler, wire: &[u8], cap: usize) -> Vec<Step> {
        let mut r = FrameReader::with_rsv1(cap, true);
        r.push(wire);
        let mut out = Vec::new();
        while let Some(p) = r.next_piece().unwrap() {
            out.push(asm.take(p));
        }
        out
    }

    #[test]
    fn fragments_are_joined_and_kept_with_a_ping_between_them() {
        let text = br#"{"type":"response.create","model":"gpt-5"}"#;
        let mut wire = fragments(text, 3, None);
        // A ping between the first and second fragment.
        let first_len = 2 + 4 + text.len().div_ceil(3);
        wire.splice(first_len..first_len, [0x89u8, 0x00]);
        let mut asm = Assembler::new(1 << 20, true, None);
        let got = steps(&mut asm, &wire, 1 << 20);
        assert!(matches!(got[0], Step::Partial));
        assert!(matches!(got[1], Step::Control(_)));
        let Step::Message(m) = got.last().unwrap() else {
            panic!("{got:?}")
        };
        assert_eq!(
            m.payload.as_ref().unwrap(),
            &br#"{"type":"response.create","model":"gpt-5"}"#[..]
        );
        assert_eq!(m.frames.len(), 3);
        let kept: Vec<u8> = m.frames.iter().flat_map(|f| f.wire.to_vec()).collect();
        assert_eq!(
            kept.len() + 2,
            wire.len(),
            "every fragment's wire bytes are kept as they came"
        );
        assert!(!asm.in_message());
    }

    #[test]
    fn compressed_messages_decode_across_fragments_and_messages() {
        let mut c = Compress::new(Compression::default(), false);
        let a = br#"{"type":"response.create","model":"gpt-5","input":"hello hello hello"}"#;
        let mut wire = fragments(a, 2, Some(&mut c));
        wire.extend(fragments(a, 1, Some(&mut c)));
        let mut asm = Assembler::new(1 << 20, false, Some(false));
        let msgs: Vec<_> = steps(&mut asm, &wire, 1 << 20)
            .into_iter()
            .filter_map(|s| match s {
                Step::Message(m) => Some(m.payload.unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(msgs, vec![Bytes::from_static(a), Bytes::from_static(a)]);
    }

    #[test]
    fn a_message_past_the_cap_is_released_and_the_rest_passes() {
        let text = vec![b'a'; 90];
        let wire = fragments(&text, 3, None); // 30 bytes a fragment
        let mut asm = Assembler::new(50, true, None);
        let got = steps(&mut asm, &wire, 50);
        assert!(matches!(got[0], Step::Partial));
        let Step::Unread { release, why } = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(release.len(), 2, "the held fragment and this one");
        assert!(why.contains("passed unread"));
        assert!(matches!(got[2], Step::Passing));
        assert!(!asm.in_message());
        // The next message is read again.
        let got = steps(&mut asm, &fragments(b"{}", 1, None), 50);
        assert!(matches!(&got[0], Step::Message(m) if m.payload.as_deref() == Ok(&b"{}"[..])));
    }
}
