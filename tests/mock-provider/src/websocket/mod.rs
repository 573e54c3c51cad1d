//! WebSocket endpoints of the OpenAI mock: the Responses API's WebSocket mode (`GET /v1/responses`
//! with `Upgrade: websocket`, Codex's default transport) and the Realtime API (`/v1/realtime`). The
//! handshake checks the key as OpenAI does, negotiates `permessage-deflate` when the client offers it
//! (honouring its `*_no_context_takeover` parameters; `x-mock-ws-deflate: off` declines it) and answers
//! `426 Upgrade Required` for `x-mock-fault: 426`, so a client's fallback to HTTP can be tested. Each
//! client message is recorded in the request log (method `WEBSOCKET`, the decoded message as the body);
//! [`answer`] says what the server sends back. Frames are read and written with tungstenite's frame
//! codec and compressed with flate2.

mod answer;
mod codec;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use self::answer::Conversation;
use self::codec::{Deflate, WsConn, WsMessage};
use crate::body::MockBody;
use crate::record::{Answer, Recorded};
use crate::reply::{Flavor, Opts};
use crate::server::State;

/// Which WebSocket API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /v1/responses`.
    Responses,
    /// `GET /v1/realtime`.
    Realtime,
}

impl Kind {
    /// The API served at an OpenAI path, if it is a WebSocket one.
    pub fn for_path(path: &str) -> Option<Kind> {
        let p = path.trim_end_matches('/');
        if p.ends_with("/v1/responses") || p == "/openai/responses" {
            Some(Kind::Responses)
        } else if p.ends_with("/v1/realtime") || p == "/openai/realtime" {
            Some(Kind::Realtime)
        } else {
            None
        }
    }
}

/// Whether a request asks to switch to WebSocket.
pub fn asks_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    let has = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    method == Method::GET && has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

fn json_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> Response<MockBody> {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    let mut resp = Response::new(MockBody::full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The `permessage-deflate` answer to a client's offer, and how each side compresses.
fn negotiate(headers: &HeaderMap) -> Option<(String, Deflate)> {
    if headers
        .get("x-mock-ws-deflate")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"))
    {
        return None;
    }
    let offer = headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|ext| {
            ext.split(';')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("permessage-deflate"))
        })?;
    let params: Vec<&str> = offer.split(';').skip(1).map(str::trim).collect();
    let server_reset = params
        .iter()
        .any(|p| p.eq_ignore_ascii_case("server_no_context_takeover"));
    let client_reset = params
        .iter()
        .any(|p| p.eq_ignore_ascii_case("client_no_context_takeover"));
    let mut answer = String::from("permessage-deflate");
    if server_reset {
        answer.push_str("; server_no_context_takeover");
    }
    if client_reset {
        answer.push_str("; client_no_context_takeover");
    }
    Some((
        answer,
        Deflate {
            server_resets: server_reset,
        },
    ))
}

/// Answers a WebSocket upgrade of `kind` — an error, a 426, or the 101 with the session started —
/// and records the upgrade request.
#[allow(clippy::too_many_arguments)]
pub fn accept(
    req: Request<Incoming>,
    kind: Kind,
    flavor: Flavor,
    path: &str,
    host: String,
    opts: Opts,
    state: Arc<State>,
    listener: &'static str,
) -> Response<MockBody> {
    let answer = Arc::new(Answer::default());
    if state.log.enabled() {
        state.log.push(Recorded {
            listener,
            version: req.version(),
            host: host.clone(),
            method: req.method().clone(),
            path: path.to_string(),
            query: req.uri().query().map(str::to_string),
            headers: req.headers().clone(),
            body: Bytes::new(),
            answer: answer.clone(),
        });
    }
    let resp = upgrade(req, kind, flavor, path, host, opts, state, listener);
    answer.set(resp.status().as_u16(), crate::encoding::Coding::Identity);
    resp
}

#[allow(clippy::too_many_arguments)]
fn upgrade(
    mut req: Request<Incoming>,
    kind: Kind,
    flavor: Flavor,
    path: &str,
    host: String,
    opts: Opts,
    state: Arc<State>,
    listener: &'static str,
) -> Response<MockBody> {
    let headers = req.headers().clone();
    if headers
        .get("x-mock-fault")
        .is_some_and(|v| v.as_bytes() == b"426")
    {
        return json_error(
            StatusCode::UPGRADE_REQUIRED,
            "invalid_request_error",
            Some("websocket_not_supported"),
            "WebSocket mode is not available for this request; use HTTP.",
        );
    }
    let key = match headers.get(SEC_WEBSOCKET_KEY) {
        Some(k)
            if headers
                .get("sec-websocket-version")
                .is_some_and(|v| v == "13") =>
        {
            k.clone()
        }
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "A WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13.",
            )
        }
    };
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| !k.trim().is_empty())
        .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()));
    if bearer.is_none() {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        );
    }
    let deflate = negotiate(&headers);
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(MockBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = deflate
        .as_ref()
        .and_then(|(a, _)| HeaderValue::from_str(a).ok())
    {
        h.insert(SEC_WEBSOCKET_EXTENSIONS, v);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let session = Session {
        kind,
        flavor,
        path: path.to_string(),
        query: req.uri().query().map(str::to_string),
        host,
        headers,
        opts,
        state,
        listener,
    };
    tokio::spawn(async move {
        if let Ok(io) = upgrade.await {
            let conn = WsConn::new(TokioIo::new(io), deflate.map(|(_, d)| d));
            session.run(conn).await;
        }
    });
    resp
}

/// One accepted socket.
struct Session {
    kind: Kind,
    flavor: Flavor,
    path: String,
    query: Option<String>,
    host: String,
    headers: HeaderMap,
    opts: Opts,
    state: Arc<State>,
    listener: &'static str,
}

impl Session {
    fn record(&self, body: &Bytes) {
        if !self.state.log.enabled() {
            return;
        }
        let answer = Arc::new(Answer::default());
        answer.set(101, crate::encoding::Coding::Identity);
        self.state.log.push(Recorded {
            listener: self.listener,
            version: Version::HTTP_11,
            host: self.host.clone(),
            method: Method::from_bytes(b"WEBSOCKET").unwrap_or(Method::GET),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: body.clone(),
            answer,
        });
    }

    async fn run<I>(self, mut conn: WsConn<I>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut convo = Conversation::new(
            self.kind,
            self.flavor,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            self.opts,
        );
        for ev in convo.opening(&self.state.next_id()) {
            if conn.send_text(&ev).await.is_err() {
                return;
            }
        }
        loop {
            let msg = match conn.next().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => return,
            };
            match msg {
                WsMessage::Text(body) => {
                    self.record(&body);
                    let id = self.state.next_id();
                    for ev in convo.answer(&body, &id) {
                        if conn.send_text(&ev).await.is_err() {
                            return;
                        }
                    }
                }
                WsMessage::Binary(body) => self.record(&body),
                WsMessage::Ping(p) => {
                    if conn.send_pong(&p).await.is_err() {
                        return;
                    }
                }
                WsMessage::Close(code) => {
                    let _ = conn.send_close(code.unwrap_or(1000)).await;
                    return;
                }
            }
        }
    }
}
