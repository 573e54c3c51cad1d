//! The mock's server side of a WebSocket connection: frames parsed with tungstenite's frame codec,
//! client masks removed, fragments joined, `permessage-deflate` messages inflated (flate2), and
//! outgoing text messages compressed — with the server's window carried across messages unless the
//! client asked for `server_no_context_takeover` — exactly as a real server does.

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Largest message the mock reads.
const MAX_MESSAGE: usize = 64 << 20;

/// Negotiated compression.
#[derive(Debug, Clone, Copy)]
pub struct Deflate {
    /// The server compresses each message on its own.
    pub server_resets: bool,
}

/// A message from the client.
#[derive(Debug)]
pub enum WsMessage {
    /// Text (decoded).
    Text(Bytes),
    /// Binary (decoded).
    Binary(Bytes),
    /// Ping payload.
    Ping(Bytes),
    /// Close, with its code.
    Close(Option<u16>),
}

/// The connection.
pub struct WsConn<I> {
    io: I,
    buf: BytesMut,
    deflate: Option<Deflate>,
    compress: Compress,
    decompress: Decompress,
}

/// A protocol error or I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// I/O.
    #[error("websocket I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not valid frames.
    #[error("websocket protocol: {0}")]
    Protocol(String),
}

impl<I: AsyncRead + AsyncWrite + Unpin> WsConn<I> {
    /// Wraps an upgraded connection.
    pub fn new(io: I, deflate: Option<Deflate>) -> Self {
        WsConn {
            io,
            buf: BytesMut::with_capacity(16 << 10),
            deflate,
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
        }
    }

    async fn frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, WsError> {
        loop {
            let mut cur = Cursor::new(&self.buf[..]);
            if let Some((header, len)) =
                FrameHeader::parse(&mut cur).map_err(|e| WsError::Protocol(e.to_string()))?
            {
                let at = usize::try_from(cur.position()).unwrap_or(usize::MAX);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_MESSAGE {
                    return Err(WsError::Protocol("frame too large".into()));
                }
                if self.buf.len() >= at + len {
                    let mut frame = self.buf.split_to(at + len);
                    let mut payload = frame.split_off(at).to_vec();
                    if let Some(m) = header.mask {
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= m[i % 4];
                        }
                    }
                    return Ok(Some((header, payload)));
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message, `None` at the end of the connection.
    pub async fn next(&mut self) -> Result<Option<WsMessage>, WsError> {
        let mut data: Vec<u8> = Vec::new();
        let mut first: Option<(Data, bool)> = None;
        loop {
            let Some((h, payload)) = self.frame().await? else {
                return Ok(None);
            };
            match h.opcode {
                OpCode::Control(Control::Ping) => return Ok(Some(WsMessage::Ping(payload.into()))),
                OpCode::Control(Control::Pong) => continue,
                OpCode::Control(Control::Close) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(WsMessage::Close(code)));
                }
                OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                    return Err(WsError::Protocol("reserved opcode".into()))
                }
                OpCode::Data(Data::Continue) if first.is_none() => {
                    return Err(WsError::Protocol("continuation without a message".into()))
                }
                OpCode::Data(Data::Continue) => {}
                OpCode::Data(d) => first = Some((d, h.rsv1)),
            }
            if data.len() + payload.len() > MAX_MESSAGE {
                return Err(WsError::Protocol("message too large".into()));
            }
            data.extend_from_slice(&payload);
            if !h.is_final {
                continue;
            }
            let (kind, compressed) = first.unwrap_or((Data::Text, false));
            let body = if compressed {
                if self.deflate.is_none() {
                    return Err(WsError::Protocol("RSV1 without permessage-deflate".into()));
                }
                self.inflate(&data)?
            } else {
                data
            };
            return Ok(Some(match kind {
                Data::Binary => WsMessage::Binary(body.into()),
                _ => WsMessage::Text(body.into()),
            }));
        }
    }

    fn inflate(&mut self, data: &[u8]) -> Result<Vec<u8>, WsError> {
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_MESSAGE {
                    return Err(WsError::Protocol("message inflates too large".into()));
                }
                out.reserve(out.capacity());
            }
            let before = self.decompress.total_in();
            self.decompress
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|e| WsError::Protocol(e.to_string()))?;
            pos += usize::try_from(self.decompress.total_in() - before).unwrap_or(usize::MAX);
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    async fn write_frame(
        &mut self,
        opcode: OpCode,
        rsv1: bool,
        payload: &[u8],
    ) -> Result<(), WsError> {
        let header = FrameHeader {
            is_final: true,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
        };
        let mut out = Vec::with_capacity(payload.len() + 10);
        header
            .format(payload.len() as u64, &mut out)
            .map_err(|e| WsError::Protocol(e.to_string()))?;
        out.extend_from_slice(payload);
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends a text message, compressed when negotiated.
    pub async fn send_text(&mut self, text: &[u8]) -> Result<(), WsError> {
        let Some(d) = self.deflate else {
            return self
                .write_frame(OpCode::Data(Data::Text), false, text)
                .await;
        };
        if d.server_resets {
            self.compress.reset();
        }
        let start = self.compress.total_in();
        let mut out = Vec::with_capacity(text.len() + text.len() / 64 + 64);
        loop {
            let done = usize::try_from(self.compress.total_in() - start).unwrap_or(text.len());
            self.compress
                .compress_vec(&text[done.min(text.len())..], &mut out, FlushCompress::Sync)
                .map_err(|e| WsError::Protocol(e.to_string()))?;
            let done = usize::try_from(self.compress.total_in() - start).unwrap_or(text.len());
            if done >= text.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if !out.ends_with(&[0, 0, 0xff, 0xff]) {
            return Err(WsError::Protocol(
                "deflate did not end with a sync flush".into(),
            ));
        }
        out.truncate(out.len() - 4);
        self.write_frame(OpCode::Data(Data::Text), true, &out).await
    }

    /// Answers a ping.
    pub async fn send_pong(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.write_frame(OpCode::Control(Control::Pong), false, payload)
            .await
    }

    /// Sends a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) -> Result<(), WsError> {
        self.write_frame(OpCode::Control(Control::Close), false, &code.to_be_bytes())
            .await?;
        let _ = self.io.shutdown().await;
        Ok(())
    }
}
