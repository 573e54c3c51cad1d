//! Protocol upgrades (the Realtime API's WebSocket): a request asking to switch protocols is forwarded
//! on an HTTP/1.1 connection of its own; when the upstream answers 101 the client gets the 101 and the two
//! upgraded connections are spliced byte for byte. The agent does not read WebSocket frames (yet); it
//! records the exchange — bytes each way and how it ended — when the spliced connection closes.

use http::header::{self, HeaderValue};
use http::Response;

use super::forward::UpstreamBody;
use super::guard::{End, Phase, RecordGuard};
use crate::body::{self, ProxyBody};
use crate::record::Outcome;

/// A client's request to switch protocols, kept so the connection can be handed over after a 101.
pub struct Upgrade {
    /// The `Upgrade` header value (`websocket`).
    protocol: HeaderValue,
    /// The client side of the connection, once hyper hands it over.
    client: hyper::upgrade::OnUpgrade,
}

impl Upgrade {
    /// Puts the upgrade request back on headers whose hop-by-hop fields were removed.
    pub(super) fn apply_to(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
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
    Some(Upgrade { protocol, client })
}

/// The upstream agreed to switch protocols: answer the client's 101 and splice the two upgraded
/// connections together, byte for byte. The record is finished when the spliced connection closes.
pub(super) fn switch_protocols(
    up: Upgrade,
    mut resp: Response<UpstreamBody>,
    mut guard: RecordGuard,
    id: &str,
) -> Response<ProxyBody> {
    guard.note(|r| r.status = Some(101));
    guard.set_phase(Phase::Streaming);
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let joined = tokio::try_join!(up.client, upstream);
        let end = match joined {
            Ok((client, upstream)) => {
                let mut client = CountingIo::new(hyper_util::rt::TokioIo::new(client));
                let mut upstream = CountingIo::new(hyper_util::rt::TokioIo::new(upstream));
                let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                guard.note(|r| r.request_bytes += client.read);
                let (outcome, error) = match result {
                    Ok(_) => (Outcome::Completed, None),
                    // Either side may simply drop the connection (no TLS close_notify, a reset):
                    // that is how such connections usually end.
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
                End {
                    response_bytes: upstream.read,
                    ..End::bare(outcome, error)
                }
            }
            Err(e) => End::bare(
                Outcome::UpstreamFailed,
                Some(format!("the protocol switch did not complete: {e}")),
            ),
        };
        guard.finish(end);
    });
    let (mut parts, _) = resp.into_parts();
    if let Ok(v) = HeaderValue::from_str(id) {
        parts.headers.insert("x-airlock-request-id", v);
    }
    Response::from_parts(parts, body::empty())
}
