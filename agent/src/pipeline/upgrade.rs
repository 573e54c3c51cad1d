//! Protocol upgrades: a request asking to switch protocols is forwarded on an HTTP/1.1 connection of
//! its own; when the upstream answers 101 the client gets the 101 and the two upgraded connections are
//! joined. A WebSocket the agent understands — OpenAI's Responses WebSocket mode and the Realtime API —
//! is read frame by frame ([`super::ws`]): every `response.create` on it is a unit of policy with its
//! own record. Any other upgrade is spliced byte for byte and recorded — bytes each way and how it
//! ended — when the connection closes.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::Response;

use super::exchange::mark_sensitive;
use super::forward::UpstreamBody;
use super::guard::{End, Phase, RecordGuard};
use super::ws::{self, deflate, Kind, SocketCtx};
use super::{strip_hop_by_hop, Pipeline, Target};
use crate::body::{self, ProxyBody};
use crate::record::Outcome;

/// A client's request to switch protocols, kept so the connection can be handed over after a 101.
pub struct Upgrade {
    /// The `Upgrade` header value (`websocket`).
    protocol: HeaderValue,
    /// The client side of the connection, once hyper hands it over.
    client: hyper::upgrade::OnUpgrade,
    /// The request's headers (without hop-by-hop ones, credentials sensitive): what request stages
    /// see of each message on a WebSocket the agent reads.
    headers: HeaderMap,
}

impl Upgrade {
    /// Puts the upgrade request back on headers whose hop-by-hop fields were removed; on a socket
    /// whose server messages response stages may change, the compression offer asks the upstream to
    /// compress each message on its own ([`deflate::request_server_no_context_takeover`]).
    pub(super) fn apply_to(&self, headers: &mut http::HeaderMap, inspected: bool) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
        if inspected && self.protocol.as_bytes().eq_ignore_ascii_case(b"websocket") {
            deflate::request_server_no_context_takeover(headers);
        }
    }
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// An I/O object that counts the bytes read from it.
struct CountingIo<T> {
    inner: T,
    read: u64,
}

impl<T> CountingIo<T> {
    fn new(inner: T) -> Self {
        CountingIo { inner, read: 0 }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The upgrade a request asks for: an `Upgrade` header named by `Connection`.
pub(super) fn take_upgrade(head: &mut http::request::Parts) -> Option<Upgrade> {
    let protocol = head.headers.get(header::UPGRADE)?.clone();
    let asked = head
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asked {
        return None;
    }
    let client = head.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
    let mut headers = head.headers.clone();
    strip_hop_by_hop(&mut headers);
    mark_sensitive(&mut headers);
    Some(Upgrade {
        protocol,
        client,
        headers,
    })
}

/// Whether a 101's `sec-websocket-extensions` accepted `permessage-deflate` with `param`.
fn deflate_param(headers: &HeaderMap, param: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case(param))
}

impl Pipeline {
    /// The upstream agreed to switch protocols: answer the client's 101 and join the two upgraded
    /// connections — read frame by frame when the agent understands the WebSocket, else spliced byte
    /// for byte. The socket's record is finished when the connection closes.
    pub(super) fn switch_protocols(
        self: &Arc<Self>,
        target: &Target,
        up: Upgrade,
        mut resp: Response<UpstreamBody>,
        mut guard: RecordGuard,
        id: &str,
    ) -> Response<ProxyBody> {
        guard.note(|r| r.status = Some(101));
        guard.set_phase(Phase::Streaming);
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        let websocket = up.protocol.as_bytes().eq_ignore_ascii_case(b"websocket");
        let socket = match Kind::of(target).filter(|_| websocket) {
            Some(kind) => {
                let deflate = deflate::accepted(&parts.headers).then(|| {
                    let client_resets = deflate_param(&parts.headers, "client_no_context_takeover")
                        || deflate::require_client_no_context_takeover(&mut parts.headers);
                    let server_resets = deflate_param(&parts.headers, "server_no_context_takeover");
                    (client_resets, server_resets)
                });
                let server_resets = deflate.is_some_and(|(_, s)| s);
                let mut head_101 = parts.headers.clone();
                strip_hop_by_hop(&mut head_101);
                let template = guard.record().cloned();
                template.map(|template| SocketCtx {
                    guardrails: self.guardrails().map(|g| (g.clone(), self.hash_key)),
                    response_headers: head_101,
                    // An upstream that kept its compression context although asked not to: the
                    // client gets every server message decoded, so the agent may change some.
                    decode_for_client: deflate.is_some()
                        && !server_resets
                        && self.inspects_responses(),
                    pipeline: self.clone(),
                    target: target.clone(),
                    headers: up.headers,
                    cap: self.limits.max_request_body(),
                    kind,
                    deflate,
                    template,
                })
            }
            None => None,
        };
        let client = up.client;
        tokio::spawn(async move {
            let joined = tokio::try_join!(client, upstream);
            match joined {
                Ok((client, upstream)) => {
                    let client = hyper_util::rt::TokioIo::new(client);
                    let upstream = hyper_util::rt::TokioIo::new(upstream);
                    match socket {
                        Some(ctx) => ws::run(ctx, client, upstream, guard).await,
                        None => splice(client, upstream, guard).await,
                    }
                }
                Err(e) => guard.finish(End::bare(
                    Outcome::UpstreamFailed,
                    Some(format!("the protocol switch did not complete: {e}")),
                )),
            }
        });
        if let Ok(v) = HeaderValue::from_str(id) {
            parts.headers.insert("x-airlock-request-id", v);
        }
        Response::from_parts(parts, body::empty())
    }
}

/// Joins two upgraded connections byte for byte and finishes the record when they close.
async fn splice<C, U>(client: C, upstream: U, mut guard: RecordGuard)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut client = CountingIo::new(client);
    let mut upstream = CountingIo::new(upstream);
    let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    guard.note(|r| r.request_bytes += client.read);
    let (outcome, error) = match result {
        Ok(_) => (Outcome::Completed, None),
        // Either side may simply drop the connection (no TLS close_notify, a reset): that is how
        // such connections usually end.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            (Outcome::Completed, None)
        }
        Err(e) => (
            Outcome::Incomplete,
            Some(format!("the upgraded connection broke: {e}")),
        ),
    };
    guard.finish(End {
        response_bytes: upstream.read,
        ..End::bare(outcome, error)
    });
}
