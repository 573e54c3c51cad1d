//! WebSocket frame boundaries in a byte stream, read so the original bytes can be forwarded untouched:
//! the reader finds where each frame starts and ends (tungstenite's [`FrameHeader`] parser), and hands
//! out the frame's wire bytes with its header; the payload is unmasked into a copy only when someone
//! reads it. A frame larger than the cap is never held: its bytes are handed out as they arrive, to be
//! passed on unread. It owns framing only; it must not decide what a frame means (the assembler and
//! the session do).

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A whole frame as it came off the wire.
#[derive(Debug, Clone)]
pub(crate) struct RawFrame {
    /// The parsed header.
    pub(crate) header: FrameHeader,
    /// Header and payload bytes, exactly as received.
    pub(crate) wire: Bytes,
    /// Where the payload starts in `wire`.
    payload_at: usize,
}

impl RawFrame {
    /// The payload, unmasked (a copy when the frame was masked).
    pub(crate) fn payload(&self) -> Bytes {
        let raw = self.wire.slice(self.payload_at..);
        match self.header.mask {
            None => raw,
            Some(mask) => {
                let mut out = raw.to_vec();
                for (i, b) in out.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
                Bytes::from(out)
            }
        }
    }

    /// Payload length.
    pub(crate) fn payload_len(&self) -> usize {
        self.wire.len() - self.payload_at
    }

    /// Whether this is a control frame (close, ping, pong).
    pub(crate) fn is_control(&self) -> bool {
        matches!(self.header.opcode, OpCode::Control(_))
    }

    /// The close code of a close frame, when it carries one.
    pub(crate) fn close_code(&self) -> Option<u16> {
        if self.header.opcode != OpCode::Control(Control::Close) {
            return None;
        }
        let p = self.payload();
        (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
    }
}

/// One step of reading.
#[derive(Debug)]
pub(crate) enum Piece {
    /// A whole frame within the cap.
    Frame(RawFrame),
    /// A frame over the cap begins: what its header says. Its bytes follow as [`Piece::Raw`].
    Oversize {
        /// The header.
        header: FrameHeader,
        /// Its payload length.
        len: u64,
    },
    /// Bytes of an oversize frame (its header first), to pass on as they are; `last` on its end.
    Raw {
        /// The bytes.
        bytes: Bytes,
        /// Whether the frame ends with these bytes.
        last: bool,
    },
}

/// The bytes are not WebSocket frames (or break its rules in a way the reader cannot step over).
#[derive(Debug, thiserror::Error)]
#[error("the connection does not carry valid WebSocket frames: {0}")]
pub(crate) struct FrameError(String);

/// Finds frames in the bytes of one direction.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    cap: usize,
    /// Whether RSV1 may be set (`permessage-deflate` was negotiated).
    rsv1: bool,
    /// Bytes of an oversize frame still to hand out.
    passing: u64,
}

impl FrameReader {
    /// A reader holding at most one frame of `cap` payload bytes, on a socket without deflate.
    #[cfg(test)]
    pub(crate) fn new(cap: usize) -> Self {
        Self::with_rsv1(cap, false)
    }

    /// A reader for a socket where `permessage-deflate` was negotiated when `rsv1`.
    pub(crate) fn with_rsv1(cap: usize, rsv1: bool) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            cap,
            rsv1,
            passing: 0,
        }
    }

    /// Adds bytes read from the connection.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether an oversize frame is passing (its bytes must not be interleaved with others).
    pub(crate) fn passing(&self) -> bool {
        self.passing > 0
    }

    /// Everything buffered, for passing on unread once the stream is given up on.
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.passing = 0;
        self.buf.split().freeze()
    }

    /// The next piece, or `None` until more bytes come.
    pub(crate) fn next_piece(&mut self) -> Result<Option<Piece>, FrameError> {
        if self.passing > 0 {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let n = usize::try_from(self.passing)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.passing -= n as u64;
            let bytes = self.buf.split_to(n).freeze();
            return Ok(Some(Piece::Raw {
                bytes,
                last: self.passing == 0,
            }));
        }
        let mut cursor = Cursor::new(&self.buf[..]);
        let Some((header, len)) =
            FrameHeader::parse(&mut cursor).map_err(|e| FrameError(e.to_string()))?
        else {
            return Ok(None);
        };
        let header_len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        if let OpCode::Data(Data::Reserved(c)) | OpCode::Control(Control::Reserved(c)) =
            header.opcode
        {
            return Err(FrameError(format!("reserved opcode {c}")));
        }
        // No extension the agent lets through uses RSV2 or RSV3, and RSV1 only with deflate: bytes
        // that set them are not this socket's frames.
        if header.rsv2 || header.rsv3 || (header.rsv1 && !self.rsv1) {
            return Err(FrameError("reserved bits set".into()));
        }
        if matches!(header.opcode, OpCode::Control(_)) && (len > 125 || !header.is_final) {
            return Err(FrameError(
                "a control frame over 125 bytes or fragmented".into(),
            ));
        }
        if len > self.cap as u64 {
            self.passing = (header_len as u64).saturating_add(len);
            return Ok(Some(Piece::Oversize { header, len }));
        }
        let total = header_len + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let wire = self.buf.split_to(total).freeze();
        Ok(Some(Piece::Frame(RawFrame {
            header,
            wire,
            payload_at: header_len,
        })))
    }
}

/// A frame with these contents, ready to send (unmasked: server to client).
pub(crate) fn text_frame(payload: &[u8]) -> Bytes {
    frame_bytes(OpCode::Data(Data::Text), payload, None)
}

/// A binary frame with these contents, ready to send (unmasked: server to client).
pub(crate) fn binary_frame(payload: &[u8]) -> Bytes {
    frame_bytes(OpCode::Data(Data::Binary), payload, None)
}

/// A masked text frame (client to server), with `mask` as its key.
pub(crate) fn masked_text_frame(payload: &[u8], mask: [u8; 4]) -> Bytes {
    frame_bytes(OpCode::Data(Data::Text), payload, Some(mask))
}

fn frame_bytes(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    let mut out = Vec::with_capacity(payload.len() + 14);
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, &mut out);
    match mask {
        None => out.extend_from_slice(payload),
        Some(m) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut FrameReader) -> Vec<Piece> {
        let mut v = Vec::new();
        while let Some(p) = reader.next_piece().unwrap() {
            v.push(p);
        }
        v
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_with_their_original_bytes() {
        let a = masked_text_frame(br#"{"type":"response.create"}"#, [1, 2, 3, 4]);
        let b = text_frame(&vec![b'x'; 300]); // a 16-bit length
        let mut wire = a.to_vec();
        wire.extend_from_slice(&b);
        for split in 0..wire.len() {
            let mut r = FrameReader::new(1 << 20);
            r.push(&wire[..split]);
            let mut got = frames(&mut r);
            r.push(&wire[split..]);
            got.extend(frames(&mut r));
            assert_eq!(got.len(), 2, "split at {split}");
            let Piece::Frame(f) = &got[0] else { panic!() };
            assert_eq!(f.wire, a);
            assert_eq!(&f.payload()[..], br#"{"type":"response.create"}"#);
            let Piece::Frame(g) = &got[1] else { panic!() };
            assert_eq!(g.wire, b);
            assert_eq!(g.payload_len(), 300);
            assert!(!r.passing());
        }
    }

    #[test]
    fn a_frame_over_the_cap_passes_in_pieces_without_being_held() {
        let big = text_frame(&vec![b'y'; 5000]);
        let mut r = FrameReader::new(1000);
        r.push(&big[..2000]);
        let got = frames(&mut r);
        assert!(matches!(got[0], Piece::Oversize { len: 5000, .. }));
        let Piece::Raw { bytes, last } = &got[1] else {
            panic!()
        };
        assert_eq!((bytes.len(), *last), (2000, false));
        r.push(&big[2000..]);
        r.push(&text_frame(b"next"));
        let got = frames(&mut r);
        let Piece::Raw { bytes, last } = &got[0] else {
            panic!()
        };
        assert_eq!(bytes.len() + 2000, big.len());
        assert!(*last);
        let Piece::Frame(f) = &got[1] else { panic!() };
        assert_eq!(&f.payload()[..], b"next");
    }

    #[test]
    fn bytes_that_are_not_frames_are_an_error_not_a_hang() {
        let mut r = FrameReader::new(1 << 20);
        r.push(b"\x83\x05hello"); // opcode 3 is reserved
        assert!(r.next_piece().is_err());
        let mut r = FrameReader::new(1 << 20);
        r.push(&[0x89, 126, 0, 200]); // a ping of 200 bytes
        assert!(r.next_piece().is_err());
        // Text that happens to look like a frame header sets reserved bits.
        for text in [&b"proxy mode"[..], b"PROXY MODE", b"hello realtime"] {
            let mut r = FrameReader::new(1 << 20);
            r.push(text);
            assert!(r.next_piece().is_err(), "{text:?}");
        }
        let mut r = FrameReader::with_rsv1(1 << 20, true);
        r.push(&[0xc1, 0x01, 0x00]);
        assert!(
            r.next_piece().unwrap().is_some(),
            "RSV1 is fine once deflate was negotiated"
        );
    }

    #[test]
    fn close_codes_are_read() {
        let mut r = FrameReader::new(1 << 20);
        r.push(&[0x88, 0x02, 0x03, 0xe8]);
        let Some(Piece::Frame(f)) = r.next_piece().unwrap() else {
            panic!()
        };
        assert_eq!(f.close_code(), Some(1000));
    }
}
