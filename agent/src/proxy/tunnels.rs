//! Blind tunnels as the status report sees them: how many opened, and how many could not connect,
//! by reason (DNS, refused, timeout, unreachable, upstream proxy refusal), plus the answer a client
//! gets when its tunnel cannot connect — 502, or 504 for a timeout, with the reason in a header, the
//! status line's reason phrase and a sentence in the body — and the byte counter a tunnel to an AI
//! app is measured with. It must never read or keep the bytes a tunnel carries.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use hyper::ext::ReasonPhrase;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{full, ProxyBody};
use crate::upstream::{ConnectFailure, UpstreamError};

/// The response header naming why a tunnel could not connect.
pub const FAILURE_HEADER: &str = "x-airlock-tunnel-failure";

/// Tunnel counts.
#[derive(Debug, Default)]
pub struct TunnelStats {
    opened: AtomicU64,
    failed: [AtomicU64; ConnectFailure::ALL.len()],
}

impl TunnelStats {
    /// Notes a tunnel that connected.
    pub fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a tunnel that could not connect.
    pub fn failed(&self, reason: ConnectFailure) {
        if let Some(i) = ConnectFailure::ALL.iter().position(|r| *r == reason) {
            self.failed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `{"opened": n, "failed": {"total": n, "dns": n, "refused": n, …}}` for the status report.
    pub fn status(&self) -> Value {
        let mut failed = Map::new();
        let mut total = 0;
        for (reason, n) in ConnectFailure::ALL.iter().zip(&self.failed) {
            let n = n.load(Ordering::Relaxed);
            total += n;
            failed.insert(reason.as_str().into(), json!(n));
        }
        failed.insert("total".into(), json!(total));
        json!({"opened": self.opened.load(Ordering::Relaxed), "failed": failed})
    }
}

/// The status line's reason phrase for each failure, so clients that print it (Python's
/// "Tunnel connection failed: 502 DNS Lookup Failed") say what happened.
fn phrase(reason: ConnectFailure) -> ReasonPhrase {
    const DNS: ReasonPhrase = ReasonPhrase::from_static(b"DNS Lookup Failed");
    const REFUSED: ReasonPhrase = ReasonPhrase::from_static(b"Connection Refused");
    const TIMEOUT: ReasonPhrase = ReasonPhrase::from_static(b"Connect Timed Out");
    const UNREACHABLE: ReasonPhrase = ReasonPhrase::from_static(b"Host Unreachable");
    const PROXY: ReasonPhrase = ReasonPhrase::from_static(b"Upstream Proxy Refused");
    const OTHER: ReasonPhrase = ReasonPhrase::from_static(b"Bad Gateway");
    match reason {
        ConnectFailure::Dns => DNS,
        ConnectFailure::Refused => REFUSED,
        ConnectFailure::Timeout => TIMEOUT,
        ConnectFailure::Unreachable => UNREACHABLE,
        ConnectFailure::ProxyRefused => PROXY,
        ConnectFailure::Other => OTHER,
    }
}

/// Counts, logs and answers a tunnel that could not connect.
pub(super) fn failed(
    stats: &TunnelStats,
    host: &str,
    port: u16,
    e: UpstreamError,
) -> Response<ProxyBody> {
    let reason = e.failure.unwrap_or(ConnectFailure::Other);
    stats.failed(reason);
    tracing::info!(%host, port, reason = reason.as_str(), error = %e.message, "tunnel could not connect");
    let status = if reason == ConnectFailure::Timeout || e.timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut r = Response::new(full(e.message + "\n"));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(FAILURE_HEADER, HeaderValue::from_static(reason.as_str()));
    r.extensions_mut().insert(phrase(reason));
    r
}

/// A stream that counts the bytes read from and written to it.
#[derive(Debug)]
pub(super) struct Counted<T> {
    inner: T,
    /// Bytes read from it.
    pub read: u64,
    /// Bytes written to it.
    pub written: u64,
}

impl<T> Counted<T> {
    pub(super) fn new(inner: T) -> Counted<T> {
        Counted {
            inner,
            read: 0,
            written: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.read += (buf.filled().len() - before) as u64;
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written += n as u64;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.written += n as u64;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn failures_are_counted_by_reason_and_answered_with_the_right_status() {
        let stats = TunnelStats::default();
        stats.opened();
        let e = |failure, timed_out| UpstreamError {
            message: "Airlock could not connect to x:443 (boom)".into(),
            timed_out,
            failure: Some(failure),
        };
        let r = failed(&stats, "x", 443, e(ConnectFailure::Dns, false));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers()[FAILURE_HEADER], "dns");
        assert_eq!(
            r.extensions().get::<ReasonPhrase>().map(|p| p.as_bytes()),
            Some(&b"DNS Lookup Failed"[..])
        );
        let r = failed(&stats, "x", 443, e(ConnectFailure::Timeout, true));
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let r = failed(&stats, "x", 443, e(ConnectFailure::Refused, false));
        assert_eq!(r.headers()[FAILURE_HEADER], "refused");
        failed(&stats, "x", 443, e(ConnectFailure::Refused, false));
        let s = stats.status();
        assert_eq!(s["opened"], 1);
        assert_eq!(s["failed"]["dns"], 1);
        assert_eq!(s["failed"]["refused"], 2);
        assert_eq!(s["failed"]["timeout"], 1);
        assert_eq!(s["failed"]["proxy_refused"], 0);
        assert_eq!(s["failed"]["total"], 4);
    }

    #[tokio::test]
    async fn counted_streams_count_both_ways() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut c = Counted::new(a);
        c.write_all(b"hello").await.unwrap();
        b.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!((c.read, c.written), (3, 5));
    }
}
