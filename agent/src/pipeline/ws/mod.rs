//! WebSocket sessions the agent reads: OpenAI's Responses API in WebSocket mode (`GET /v1/responses`,
//! Codex's default transport) and the Realtime API (`/v1/realtime`). After the upstream's 101 both
//! directions are read frame by frame ([`frame`], [`message`], [`deflate`]) while the original frames
//! are forwarded; each client `response.create` is a unit of policy — the pipeline's request stages
//! run on it as on an HTTP request, a refused one is not forwarded and the client gets the Responses
//! `error` event on the same socket — and each unit gets its own record, settled from its terminal
//! event ([`units`]). The pipeline's response stages are opened per unit and see each of its server
//! events ([`inspect`]): a unit no stage opened costs nothing and its frames pass as they came. The
//! socket keeps a record of its own (bytes, close codes, message count). The pump is [`session`].
//! This module must not change what the client sees beyond the agent's own refusals, what response
//! stages decide, and the compression parameters [`deflate`] explains.

mod client;
pub(crate) mod deflate;
mod frame;
mod inspect;
mod message;
mod session;
mod units;
mod upstream;

use std::sync::Arc;

use http::header::HeaderMap;

use super::guard::RecordGuard;
use super::{Pipeline, Target};
use crate::policy::ApiKind;
use crate::record::{now_rfc3339, Outcome, Record, WsFacts};

pub(crate) use session::run;

/// Which API a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Responses API WebSocket mode.
    Responses,
    /// Realtime API.
    Realtime,
}

impl Kind {
    /// The API a WebSocket upgrade to `target` speaks, if the agent reads it.
    pub(crate) fn of(target: &Target) -> Option<Kind> {
        if !matches!(target.api, ApiKind::Openai | ApiKind::Azure) {
            return None;
        }
        let path = target.split_path().0.trim_end_matches('/');
        if path.ends_with("/responses") {
            Some(Kind::Responses)
        } else if path.ends_with("/realtime") {
            Some(Kind::Realtime)
        } else {
            None
        }
    }

    /// The operation of its units' records.
    fn operation(self) -> &'static str {
        match self {
            Kind::Responses => "responses",
            Kind::Realtime => "realtime",
        }
    }
}

/// What a session needs from the pipeline and the request that opened it.
pub(crate) struct SocketCtx {
    /// The pipeline of the request that opened the socket: every client `response.create` meets its
    /// request stages and gates ([`Pipeline::govern_unit`]), its response stages are opened per unit
    /// ([`inspect`]), and its records go to its finisher.
    pub(crate) pipeline: Arc<Pipeline>,
    /// Where the socket goes.
    pub(crate) target: Target,
    /// The upgrade request's headers (hop-by-hop removed, credentials marked sensitive): what a
    /// stage sees as the head of each message.
    pub(crate) headers: HeaderMap,
    /// Largest message read (bytes, compressed and decoded); larger ones pass unread.
    pub(crate) cap: usize,
    /// Which API.
    pub(crate) kind: Kind,
    /// `permessage-deflate`: `None` when not negotiated, else whether each side compresses every
    /// message on its own (client, upstream).
    pub(crate) deflate: Option<(bool, bool)>,
    /// The socket's record as it was at the 101: the template of its units' records.
    pub(crate) template: Record,
    /// The policy's guardrails and the device's hash key, when enabled: a response stage on every unit.
    pub(crate) guardrails: Option<(Arc<crate::guardrails::actions::Guard>, [u8; 32])>,
    /// The upstream's 101 headers (hop-by-hop removed): the head response stages see.
    pub(crate) response_headers: HeaderMap,
    /// The upstream compresses with context takeover although response stages may change its
    /// messages: every server message goes to the client decoded, uncompressed ([`deflate`]).
    pub(crate) decode_for_client: bool,
}

impl std::fmt::Debug for SocketCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketCtx")
            .field("kind", &self.kind)
            .field("host", &self.target.host)
            .field("cap", &self.cap)
            .field("deflate", &self.deflate)
            .finish()
    }
}

impl SocketCtx {
    /// Opens the record of the socket's `n`th unit.
    fn open_unit(&self, n: u64) -> RecordGuard {
        let mut r = self.template.clone();
        r.id = self.pipeline.recorder().next_id();
        r.started_at = now_rfc3339();
        r.operation = self.kind.operation().to_string();
        r.status = None;
        r.outcome = Outcome::InProgress;
        r.request_bytes = 0;
        r.response_bytes = 0;
        r.websocket = Some(WsFacts {
            socket: self.template.id.clone(),
            message: n,
            compressed: self.deflate.is_some(),
            ..WsFacts::default()
        });
        RecordGuard::open(r, self.pipeline.finisher.clone())
    }
}

#[cfg(test)]
mod govern_tests;
#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod tests;
