//! The pump of one WebSocket session: the two directions ([`super::client`], [`super::upstream`])
//! read concurrently in one task, so a request stage that awaits on a client message never stops the
//! upstream's events from reaching the client; they share the socket's [`State`] under a lock that is
//! never held across an await. When either side leaves, the other gets a short while to finish, then
//! the units still waiting (as the guard's semantics say: client closed, or the upstream failed them)
//! and the socket's own record — bytes, close codes, message count — are finished.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::client::client_to_upstream;
use super::units::Units;
use super::upstream::upstream_to_client;
use super::{Kind, SocketCtx};
use crate::pipeline::guard::{End, RecordGuard};
use crate::record::{CostStatus, Outcome, WsFacts};

/// Read buffer per direction.
pub(super) const READ_BUF: usize = 64 << 10;
/// How long the other direction may go on once one side has left.
const LINGER: Duration = Duration::from_secs(2);
/// Agent events waiting for a message boundary toward the client.
const INJECT_QUEUE: usize = 16;

/// What both directions share. Locked only for short, await-free updates.
pub(super) struct State {
    pub(super) units: Units,
    pub(super) messages: u64,
    pub(super) client_close: Option<u16>,
    pub(super) upstream_close: Option<u16>,
    pub(super) unread: Option<String>,
}

pub(super) type Shared = Mutex<State>;

pub(super) fn with<T>(state: &Shared, f: impl FnOnce(&mut State) -> T) -> Option<T> {
    state.lock().ok().map(|mut s| f(&mut s))
}

/// How one direction ended.
#[derive(Debug, Default)]
pub(super) struct DirEnd {
    /// Bytes read from its source.
    pub(super) bytes: u64,
    /// Why it broke, when it did not end cleanly.
    pub(super) error: Option<String>,
}

pub(super) fn io_end(bytes: u64, e: &std::io::Error, side: &str) -> DirEnd {
    // Either side may simply drop the connection (no TLS close_notify, a reset): that is how such
    // connections usually end.
    let clean = matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
    );
    DirEnd {
        bytes,
        error: (!clean).then(|| format!("the {side} connection broke: {e}")),
    }
}

/// Which side left first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Upstream,
}

/// Runs the session until both sides are done, then finishes every record it opened and `socket`.
pub(crate) async fn run<C, U>(ctx: SocketCtx, client: C, upstream: U, socket: RecordGuard)
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin + Send,
{
    let session_model = (ctx.kind == Kind::Realtime)
        .then(|| {
            ctx.target.split_path().1.and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("model="))
                    .map(str::to_string)
            })
        })
        .flatten();
    let state = Mutex::new(State {
        units: Units::new(ctx.kind, session_model),
        messages: 0,
        client_close: None,
        upstream_close: None,
        unread: None,
    });
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let (inject_tx, inject_rx) = mpsc::channel::<Bytes>(INJECT_QUEUE);
    let up = client_to_upstream(&ctx, &state, cr, uw, inject_tx);
    let down = upstream_to_client(&ctx, &state, ur, cw, inject_rx);
    tokio::pin!(up, down);
    let (first, up_end, down_end) = tokio::select! {
        u = &mut up => {
            let d = tokio::time::timeout(LINGER, &mut down).await.unwrap_or_default();
            (Side::Client, u, d)
        }
        d = &mut down => {
            let u = tokio::time::timeout(LINGER, &mut up).await.unwrap_or_default();
            (Side::Upstream, u, d)
        }
    };
    finish(&ctx, &state, socket, first, up_end, down_end);
}

fn finish(
    ctx: &SocketCtx,
    state: &Shared,
    mut socket: RecordGuard,
    first: Side,
    up: DirEnd,
    down: DirEnd,
) {
    let (outcome, reason) = match first {
        Side::Client => (
            Outcome::ClientClosed,
            "the client closed the socket before the response ended",
        ),
        Side::Upstream => (
            Outcome::Incomplete,
            "the upstream closed the socket before the response ended",
        ),
    };
    let facts = with(state, |st| {
        st.units.end_all(outcome, reason);
        WsFacts {
            socket: String::new(),
            message: 0,
            compressed: ctx.deflate.is_some(),
            unread: st.unread.clone(),
            messages: Some(st.messages),
            client_close_code: st.client_close,
            upstream_close_code: st.upstream_close,
            ..WsFacts::default()
        }
    })
    .unwrap_or_default();
    let read = facts.unread.is_none();
    let kind = ctx.kind;
    socket.note(|r| {
        r.request_bytes += up.bytes;
        if kind == Kind::Responses {
            r.operation = "responses_websocket".into();
        }
        if read {
            r.cost_status = Some(CostStatus::NotBilled);
            r.cost_usd = Some(0.0);
            r.cost_note = Some(
                "the socket itself is not billed: each response on it has a record of its own"
                    .into(),
            );
        }
        r.websocket = Some(WsFacts {
            socket: r.id.clone(),
            ..facts
        });
    });
    let error = up.error.or(down.error);
    let outcome = if error.is_some() {
        Outcome::Incomplete
    } else {
        Outcome::Completed
    };
    socket.finish(End {
        response_bytes: down.bytes,
        ..End::bare(outcome, error)
    });
}
