//! The upstream → client direction of a session: every frame is forwarded as it arrives and a copy
//! of each whole message is read for its unit; the agent's own events (refusals) are put between
//! messages, never inside one. Bytes that are not WebSocket frames pass on unread from there on.

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{FrameReader, Piece};
use super::message::{Assembler, Message, Step};
use super::session::{io_end, with, DirEnd, Shared, READ_BUF};
use super::units::{Seen, Unit, MAX_PENDING};
use super::SocketCtx;
use crate::pipeline::guard::{Phase, RequestFacts};

/// Upstream → client.
pub(super) async fn upstream_to_client<R, W>(
    ctx: &SocketCtx,
    state: &Shared,
    mut ur: R,
    mut cw: W,
    mut inject: mpsc::Receiver<Bytes>,
) -> DirEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FrameReader::with_rsv1(ctx.cap, ctx.deflate.is_some());
    let mut asm = Assembler::new(ctx.cap, false, ctx.deflate.map(|(_, upstream)| upstream));
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = 0u64;
    let mut raw = false;
    let mut inject_open = true;
    loop {
        let between = !asm.in_message() && !reader.passing();
        tokio::select! {
            biased;
            ev = inject.recv(), if inject_open && between => match ev {
                Some(b) => {
                    if let Err(e) = write_flush(&mut cw, &b).await {
                        return io_end(bytes, &e, "client");
                    }
                }
                None => inject_open = false,
            },
            r = ur.read(&mut buf) => {
                let n = match r {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return io_end(bytes, &e, "upstream"),
                };
                bytes += n as u64;
                if raw {
                    if let Err(e) = write_flush(&mut cw, &buf[..n]).await {
                        return io_end(bytes, &e, "client");
                    }
                    continue;
                }
                reader.push(&buf[..n]);
                if let Err(e) = upstream_pieces(state, &mut reader, &mut asm, &mut raw, &mut cw, ctx).await {
                    return io_end(bytes, &e, "client");
                }
                if let Err(e) = cw.flush().await {
                    return io_end(bytes, &e, "client");
                }
            }
        }
    }
    // The upstream is done: the agent's own events still waiting go out before the end.
    while let Ok(b) = inject.try_recv() {
        if asm.in_message() || write_flush(&mut cw, &b).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    DirEnd { bytes, error: None }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, b: &[u8]) -> std::io::Result<()> {
    w.write_all(b).await?;
    w.flush().await
}

/// Forwards every piece the upstream sent and reads a copy of each whole message.
async fn upstream_pieces<W: AsyncWrite + Unpin>(
    state: &Shared,
    reader: &mut FrameReader,
    asm: &mut Assembler,
    raw: &mut bool,
    cw: &mut W,
    ctx: &SocketCtx,
) -> std::io::Result<()> {
    loop {
        let piece = match reader.next_piece() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                *raw = true;
                with(state, |st| st.unread = Some(e.to_string()));
                return cw.write_all(&reader.take_rest()).await;
            }
        };
        // Streams are never held back: the bytes go first, the copy is read after.
        match &piece {
            Piece::Frame(f) => cw.write_all(&f.wire).await?,
            Piece::Raw { bytes, .. } => cw.write_all(bytes).await?,
            Piece::Oversize { .. } => {}
        }
        match asm.take(piece) {
            Step::Control(f) => {
                if let Some(code) = f.close_code() {
                    with(state, |st| st.upstream_close = Some(code));
                }
            }
            Step::Message(m) => server_message(ctx, state, m),
            Step::Unread { why, .. } => {
                // Most likely the streaming response's (a terminal event echoing a huge input):
                // its record says so, and settles by estimate if its end is never read.
                with(state, |st| {
                    if !st.units.note_unread(&why) {
                        st.unread = Some(why);
                    }
                });
            }
            Step::Partial | Step::Passing => {}
        }
    }
}

/// A whole server message: the event of some unit, perhaps.
fn server_message(ctx: &SocketCtx, state: &Shared, m: Message) {
    let Ok(payload) = m.payload else {
        return;
    };
    if !m.text {
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
        return;
    };
    with(state, |st| {
        if st.units.on_event(&v, m.wire_len) == Seen::ServerStarted && st.units.len() < MAX_PENDING
        {
            // A Realtime response the server started itself (voice activity): a unit of its own.
            st.messages += 1;
            let mut guard = ctx.open_unit(st.messages);
            let model = st.units.session_model.clone();
            guard.note(|r| {
                r.model = model;
                r.stream = true;
            });
            guard.set_facts(RequestFacts {
                api: ctx.target.api,
                operation: "realtime".into(),
                body: None,
            });
            guard.set_phase(Phase::WaitingForUpstream);
            st.units.push(Unit::new(guard));
            st.units.on_event(&v, m.wire_len);
        }
    });
}
