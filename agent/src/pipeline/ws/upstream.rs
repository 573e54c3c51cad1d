//! The upstream → client direction of a session: every frame is forwarded as it arrives and a copy
//! of each whole message is read for its unit — or, while response stages read a unit, its messages
//! are held until whole and go on as the stages decide; the agent's own events (refusals) are put
//! between messages, never inside one. Bytes that are not WebSocket frames pass on unread from there on.

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::frame::{self, FrameReader, Piece};
use super::inspect::{self, Out};
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
    let mut asm = Assembler::new(
        ctx.cap,
        !ctx.pipeline.inspect_response.is_empty(),
        ctx.deflate.map(|(_, upstream)| upstream),
    );
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = 0u64;
    let mut raw = false;
    let mut holding = false;
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
                if let Err(e) = upstream_pieces(state, &mut reader, &mut asm, &mut raw, &mut holding, &mut cw, ctx).await {
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

/// Forwards every piece the upstream sent and reads a copy of each whole message. Without response
/// stages every frame goes on as it arrives; with them, a data message that begins while some unit
/// has stages open (or every message, when the client gets them decoded) is held until it is whole
/// and the unit's stages decide what the client gets ([`inspect`]). Control frames never wait.
async fn upstream_pieces<W: AsyncWrite + Unpin>(
    state: &Shared,
    reader: &mut FrameReader,
    asm: &mut Assembler,
    raw: &mut bool,
    holding: &mut bool,
    cw: &mut W,
    ctx: &SocketCtx,
) -> std::io::Result<()> {
    let inspecting = !ctx.pipeline.inspect_response.is_empty();
    loop {
        let piece = match reader.next_piece() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                *raw = true;
                with(state, |st| st.unread = Some(e.to_string()));
                if *holding {
                    for f in asm.take_held() {
                        cw.write_all(&f.wire).await?;
                    }
                }
                return cw.write_all(&reader.take_rest()).await;
            }
        };
        if inspecting {
            if let Piece::Frame(f) = &piece {
                if !f.is_control() && f.header.opcode != OpCode::Data(Data::Continue) {
                    *holding = ctx.decode_for_client
                        || with(state, |st| st.units.any_inspected()).unwrap_or(false);
                }
            }
        }
        let held = inspecting && *holding;
        // Streams are never held back unless a stage reads them: the bytes go first, the copy is
        // read after.
        let mut later: Option<Bytes> = None;
        match &piece {
            Piece::Frame(f) if held && !f.is_control() => later = Some(f.wire.clone()),
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
            Step::Message(m) => {
                let out = server_message(ctx, state, &m);
                if held {
                    send_message(cw, ctx, m, out).await?;
                }
            }
            Step::Unread { why, release } => {
                if held {
                    for f in release {
                        cw.write_all(&f.wire).await?;
                    }
                }
                // Most likely the streaming response's (a terminal event echoing a huge input):
                // its record says so, and settles by estimate if its end is never read.
                with(state, |st| {
                    if !st.units.note_unread(&why) {
                        st.unread = Some(why);
                    }
                });
            }
            Step::Passing => {
                if let Some(w) = later {
                    cw.write_all(&w).await?;
                }
            }
            Step::Partial => {}
        }
    }
}

/// A held message goes to the client as the stages decided.
async fn send_message<W: AsyncWrite + Unpin>(
    cw: &mut W,
    ctx: &SocketCtx,
    m: Message,
    out: Out,
) -> std::io::Result<()> {
    match (out, m.payload) {
        (Out::Frames(frames), _) => {
            for f in frames {
                cw.write_all(&f).await?;
            }
        }
        // The upstream keeps its compression context: the client gets every message decoded.
        (Out::Original, Ok(p)) if ctx.decode_for_client => {
            let f = if m.text {
                frame::text_frame(&p)
            } else {
                frame::binary_frame(&p)
            };
            cw.write_all(&f).await?;
        }
        (Out::Original, _) => {
            for f in m.frames {
                cw.write_all(&f.wire).await?;
            }
        }
    }
    Ok(())
}

/// A whole server message: the event of some unit, perhaps. What the client gets for it.
fn server_message(ctx: &SocketCtx, state: &Shared, m: &Message) -> Out {
    let Ok(payload) = &m.payload else {
        return Out::Original;
    };
    if !m.text {
        return Out::Original;
    }
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return Out::Original;
    };
    let mut out = Out::Original;
    let mut hook = |unit: &mut Unit, ends: bool| {
        out = inspect::on_event(unit, ctx.kind, payload, &v, ends);
    };
    with(state, |st| {
        if st.units.on_event(&v, m.wire_len, &mut hook) == Seen::ServerStarted
            && st.units.len() < MAX_PENDING
        {
            // A Realtime response the server started itself (voice activity): a unit of its own.
            st.messages += 1;
            let mut guard = ctx.open_unit(st.messages);
            let model = st.units.session_model.clone();
            let inspect = inspect::open(ctx, guard.id(), model.as_deref());
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
            st.units.push(Unit::new(guard).inspected(inspect));
            st.units.on_event(&v, m.wire_len, &mut hook);
        }
    });
    out
}
