//! The client → upstream direction of a session: frames are held until their message is whole (at
//! most the cap); a `response.create` is governed as an HTTP request is (the pipeline in force's
//! gates, guardrails and stages, with a view built like identify's — the socket's head, the message
//! as the body — and its begin row) and then its original frames are forwarded, or, refused, dropped
//! while the client gets the `error` event. Realtime events that carry text go through the request
//! guardrails. Other messages, control frames and messages too large to read pass on as they came.

use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, FrameReader, Piece};
use super::inspect;
use super::message::{Assembler, Message, Step};
use super::session::{io_end, with, DirEnd, Shared, READ_BUF};
use super::units::{Unit, MAX_PENDING};
use super::{Kind, SocketCtx};
use crate::pipeline::exchange::{Exchange, RequestBody};
use crate::pipeline::guard::{End, Phase, RecordGuard, RequestFacts};
use crate::pipeline::Stop;
use crate::policy::ApiKind;
use crate::providers::dialect::{self, AirlockError};
use crate::providers::{self, Identity};
use crate::record::{CostStatus, Outcome};

/// Client → upstream.
pub(super) async fn client_to_upstream<R, W>(
    ctx: &SocketCtx,
    state: &Shared,
    mut cr: R,
    mut uw: W,
    inject: mpsc::Sender<Bytes>,
) -> DirEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FrameReader::with_rsv1(ctx.cap, ctx.deflate.is_some());
    let mut asm = Assembler::new(ctx.cap, true, ctx.deflate.map(|(client, _)| client));
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = 0u64;
    let mut raw = false;
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return io_end(bytes, &e, "client"),
        };
        bytes += n as u64;
        let mut out: Vec<Bytes> = Vec::new();
        if raw {
            out.push(Bytes::copy_from_slice(&buf[..n]));
        } else {
            reader.push(&buf[..n]);
            loop {
                match reader.next_piece() {
                    Ok(None) => break,
                    Ok(Some(piece)) => {
                        out.extend(client_piece(ctx, state, &mut asm, piece, &inject).await)
                    }
                    Err(e) => {
                        raw = true;
                        with(state, |st| st.unread = Some(e.to_string()));
                        out.extend(asm.take_held().into_iter().map(|f| f.wire));
                        out.push(reader.take_rest());
                        break;
                    }
                }
            }
        }
        for b in out {
            if let Err(e) = uw.write_all(&b).await {
                return io_end(bytes, &e, "upstream");
            }
        }
        if let Err(e) = uw.flush().await {
            return io_end(bytes, &e, "upstream");
        }
    }
    let _ = uw.shutdown().await;
    DirEnd { bytes, error: None }
}

/// One piece from the client: what to send upstream now.
async fn client_piece(
    ctx: &SocketCtx,
    state: &Shared,
    asm: &mut Assembler,
    piece: Piece,
    inject: &mpsc::Sender<Bytes>,
) -> Vec<Bytes> {
    let passthrough = match &piece {
        Piece::Frame(f) => Some(f.wire.clone()),
        Piece::Raw { bytes, .. } => Some(bytes.clone()),
        Piece::Oversize { .. } => None,
    };
    match asm.take(piece) {
        Step::Control(f) => {
            if let Some(code) = f.close_code() {
                with(state, |st| st.client_close = Some(code));
            }
            vec![f.wire]
        }
        Step::Partial => Vec::new(),
        Step::Passing => passthrough.into_iter().collect(),
        Step::Unread { release, why, .. } => {
            unread_unit(ctx, state, why);
            release.into_iter().map(|f| f.wire).collect()
        }
        Step::Message(m) => client_message(ctx, state, m, inject).await,
    }
}

/// A client message the agent could not read: on a Responses socket it is a `response.create` in all
/// likelihood, so it gets a record that says it passed unread; elsewhere the socket's record says so.
fn unread_unit(ctx: &SocketCtx, state: &Shared, why: String) {
    with(state, |st| {
        if ctx.kind == Kind::Responses && st.units.len() < MAX_PENDING {
            st.messages += 1;
            let mut guard = ctx.open_unit(st.messages);
            guard.note(|r| {
                if let Some(ws) = r.websocket.as_mut() {
                    ws.unread = Some(why);
                }
            });
            guard.set_facts(RequestFacts {
                api: ctx.target.api,
                operation: "responses".into(),
                body: None,
            });
            guard.set_phase(Phase::WaitingForUpstream);
            st.units.push(Unit::new(guard));
        } else {
            st.unread = Some(why);
        }
    });
}

/// A mask for a frame the agent writes toward the upstream (RFC 6455 wants it unpredictable).
fn mask() -> [u8; 4] {
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let b = n.to_le_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// The Responses `error` event (Realtime's, with the client event it answers) carrying the agent's
/// reason, in OpenAI's shape: the error object is the one its HTTP errors carry, and `status` is the
/// HTTP status it stands for (Codex reads it).
pub(super) fn error_event(
    kind: Kind,
    err: &AirlockError,
    id: &str,
    client_event: Option<&str>,
) -> Bytes {
    let body = dialect::body(Some(ApiKind::Openai), err, Some(id));
    let mut error = body.get("error").cloned().unwrap_or(Value::Null);
    let mut ev = serde_json::Map::new();
    ev.insert("type".into(), json!("error"));
    if kind == Kind::Realtime {
        if let (Some(e), Some(c)) = (error.as_object_mut(), client_event) {
            e.insert("event_id".into(), json!(c));
        }
    } else {
        ev.insert("status".into(), json!(err.status.as_u16()));
    }
    ev.insert("error".into(), error);
    if let Some(a) = body.get("airlock") {
        ev.insert("airlock".into(), a.clone());
    }
    frame::text_frame(Value::Object(ev).to_string().as_bytes())
}

/// A whole client message: forwarded, or refused.
async fn client_message(
    ctx: &SocketCtx,
    state: &Shared,
    m: Message,
    inject: &mpsc::Sender<Bytes>,
) -> Vec<Bytes> {
    let wire_len = m.wire_len;
    let wires: Vec<Bytes> = m.frames.iter().map(|f| f.wire.clone()).collect();
    let payload = match m.payload {
        Ok(p) => p,
        Err(why) => {
            unread_unit(
                ctx,
                state,
                format!("the message could not be decoded: {why}"),
            );
            return wires;
        }
    };
    if !m.text {
        return wires;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
        return wires; // not JSON: the upstream answers for itself
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if ctx.kind == Kind::Realtime && kind == "session.update" {
        if let Some(model) = v.pointer("/session/model").and_then(Value::as_str) {
            with(state, |st| st.units.session_model = Some(model.to_string()));
        }
    }
    if ctx.kind == Kind::Realtime && matches!(kind, "conversation.item.create" | "session.update") {
        return guarded_event(ctx, state, &v, payload, wires, wire_len, inject).await;
    }
    if kind != "response.create" {
        return wires;
    }
    let Some((n, waiting, session_model)) = with(state, |st| {
        st.messages += 1;
        (st.messages, st.units.len(), st.units.session_model.clone())
    }) else {
        return wires;
    };
    let mut guard = ctx.open_unit(n);
    let id = guard.id().to_string();
    let (path, _) = ctx.target.split_path();
    let mut identity = providers::identify(
        ctx.target.api,
        &Method::POST,
        path,
        None,
        Some(&payload[..]),
    );
    if ctx.kind == Kind::Realtime {
        identity = Identity {
            operation: "realtime".into(),
            model: v
                .pointer("/response/model")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(session_model),
            stream: true,
            include_usage: None,
            // A number, or "inf" (then the policy's reserve stands in).
            max_output_tokens: v
                .pointer("/response/max_output_tokens")
                .and_then(Value::as_u64),
        };
    } else if v.get("stream").is_none() {
        identity.stream = true; // every answer on the socket is a stream of events
    }
    let warmup = v.get("generate").and_then(Value::as_bool) == Some(false);
    let previous = v
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    guard.note(|r| {
        r.model = identity.model.clone();
        r.stream = identity.stream;
        r.request_bytes = wire_len;
        if let Some(ws) = r.websocket.as_mut() {
            ws.warmup = warmup;
            ws.previous_response_id = previous;
        }
    });
    guard.set_facts(RequestFacts {
        api: ctx.target.api,
        operation: identity.operation.clone(),
        body: Some(payload.clone()),
    });
    let client_event = v
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if waiting >= MAX_PENDING {
        let err = AirlockError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_pending_responses",
            format!("{MAX_PENDING} responses are already waiting on this socket; wait for them to finish"),
        );
        refuse(
            ctx,
            inject,
            guard,
            err,
            "forward".into(),
            client_event.as_deref(),
        )
        .await;
        return Vec::new();
    }
    let mut ex = message_exchange(ctx, &id, identity, payload);
    // The policy in force now, even if the socket was opened under an earlier one.
    match ctx.pipeline.latest().govern_unit(&mut ex, &mut guard).await {
        Ok(()) => {
            guard.set_phase(Phase::WaitingForUpstream);
            let out = outgoing(&ex, wires);
            let inspect = inspect::open(ctx, &id, ex.identity.model.as_deref());
            // Registered before it is sent, so its first event always finds it.
            with(state, |st| {
                st.units
                    .push(Unit::new(guard).answering(client_event).inspected(inspect))
            });
            out
        }
        Err(Stop::Refuse { err, by }) => {
            tracing::debug!(id = %id, stage = %by, kind = err.kind, "websocket message refused");
            refuse(ctx, inject, guard, err, by, client_event.as_deref()).await;
            Vec::new()
        }
        Err(Stop::Answer { resp, by }) => {
            let err = AirlockError::new(
                http::StatusCode::FORBIDDEN,
                "answered_by_stage",
                format!("the Airlock stage {by} answered this message itself; its answer cannot be sent on a WebSocket"),
            );
            let _ = inject
                .send(error_event(ctx.kind, &err, &id, client_event.as_deref()))
                .await;
            let _ = guard.answer(resp, by);
            Vec::new()
        }
        Err(Stop::ClientGone) => Vec::new(),
    }
}

/// A Realtime client event that carries text but is not a unit (`conversation.item.create`,
/// `session.update`): the request guardrails read it before it goes on. When they find something
/// it gets a record of its own (operation `realtime_event`, not billed: the responses it leads to
/// are) carrying the findings; a `block` drops it and answers with the `error` event, a redaction
/// sends it rewritten.
async fn guarded_event(
    ctx: &SocketCtx,
    state: &Shared,
    v: &Value,
    payload: Bytes,
    wires: Vec<Bytes>,
    wire_len: u64,
    inject: &mpsc::Sender<Bytes>,
) -> Vec<Bytes> {
    let model = with(state, |st| st.units.session_model.clone()).flatten();
    let identity = Identity {
        operation: "realtime".into(),
        model,
        stream: false,
        include_usage: None,
        max_output_tokens: None,
    };
    let mut ex = message_exchange(ctx, "", identity, payload);
    let pipeline = ctx.pipeline.latest();
    let Some((found, value)) = pipeline.scan_request(&ex) else {
        return wires;
    };
    let Some(n) = with(state, |st| {
        st.messages += 1;
        st.messages
    }) else {
        return wires;
    };
    let mut guard = ctx.open_unit(n);
    ex.id = guard.id().to_string();
    let model = ex.identity.model.clone();
    guard.note(|r| {
        r.operation = "realtime_event".into();
        r.model = model;
        r.request_bytes = wire_len;
        r.cost_status = Some(CostStatus::NotBilled);
        r.cost_usd = Some(0.0);
        r.cost_note = Some(
            "a client event on the socket; the responses it leads to have records of their own"
                .into(),
        );
    });
    if let Some(err) = pipeline.apply_found(&mut ex, &mut guard, found, value) {
        let client_event = v.get("event_id").and_then(Value::as_str);
        let by = "inspect_request:guardrails".to_string();
        refuse(ctx, inject, guard, err, by, client_event).await;
        return Vec::new();
    }
    let out = outgoing(&ex, wires);
    guard.finish(End::bare(Outcome::Completed, None));
    out
}

/// What goes upstream for a message the stages let through: its original frames, or, when a stage
/// rewrote it, one new uncompressed frame.
fn outgoing(ex: &Exchange, wires: Vec<Bytes>) -> Vec<Bytes> {
    match (ex.original.is_some(), ex.readable.as_ref()) {
        (true, Some(body)) => vec![frame::masked_text_frame(body, mask())],
        _ => wires,
    }
}

/// Refuses a message on the socket: the client gets the `error` event (answering `client_event`
/// on Realtime), the record says who refused.
async fn refuse(
    ctx: &SocketCtx,
    inject: &mpsc::Sender<Bytes>,
    guard: RecordGuard,
    err: AirlockError,
    by: String,
    client_event: Option<&str>,
) {
    let _ = inject
        .send(error_event(ctx.kind, &err, guard.id(), client_event))
        .await;
    let _ = guard.refuse(ctx.target.api, err, by);
}

/// What request stages see of one message: the socket's target and headers, the message as the body
/// (a `POST` to the socket's path, as the same request over HTTP would be).
fn message_exchange(ctx: &SocketCtx, id: &str, identity: Identity, payload: Bytes) -> Exchange {
    let (mut head, ()) = http::Request::builder()
        .method(Method::POST)
        .uri(ctx.target.path_and_query.as_str())
        .body(())
        .unwrap_or_default()
        .into_parts();
    head.headers = ctx.headers.clone();
    Exchange {
        id: id.to_string(),
        target: ctx.target.clone(),
        identity,
        head,
        body: RequestBody::Buffered(payload.clone()),
        readable: Some(payload),
        upgrade: None,
        original: None,
        usage_injected: false,
        _budget: None,
        response_headers: Vec::new(),
    }
}
