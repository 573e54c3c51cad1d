//! CONNECT handling. A host in the interception set (and covered by the device CA) gets its TLS
//! terminated with a leaf for that host and its requests served (HTTP/1.1 or HTTP/2 by ALPN) through the
//! pipeline (or, outside the host's path scope, forwarded unread); any other host gets a blind TCP
//! tunnel whose bytes are never read. The intercept decision is
//! made on the CONNECT host and confirmed on the ClientHello's SNI. Tunnels go through the upstream
//! proxy when one is configured (CONNECT chaining), within the policy's connect timeout; a client that
//! does not finish its TLS handshake in time is dropped. A tunnel that cannot connect is counted and
//! answered by [`super::tunnels`]; a connection to an AI app is watched by the inventory (a tunnel to a
//! listed host as seen, an intercepted one as inspected), off the path of its bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::tunnels::{self, Counted};
use super::{ConnPermit, ProxyState};
use crate::body::{empty, full, ProxyBody};
use crate::caller::Caller;
use crate::inventory::Carried;
use crate::pipeline::Target;
use crate::policy::hosts::normalize_host;
use crate::record::InterceptMode;

fn plain_error(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(message + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(super) async fn handle(
    req: Request<Incoming>,
    shared: Arc<ProxyState>,
    live: super::LiveState,
    permit: ConnPermit,
    peer: SocketAddr,
    caller: Caller,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "CONNECT needs a host:port target, e.g. CONNECT api.openai.com:443".into(),
        );
    };
    let host = normalize_host(authority.host());
    // CONNECT names host and port (RFC 9110 §9.3.6); a missing or impossible port is a client bug.
    let Some(port) = authority.port_u16().filter(|p| *p != 0) else {
        return plain_error(
            StatusCode::BAD_REQUEST,
            format!(
                "CONNECT {authority} has no valid port; send host:port, e.g. CONNECT api.openai.com:443"
            ),
        );
    };
    if host.is_empty() {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "CONNECT needs a host:port target, e.g. CONNECT api.openai.com:443".into(),
        );
    }
    if shared.blocked.is_blocked(&host) {
        return super::blocked(&shared, &host, None);
    }
    let intercept = match shared.hosts.lookup(&host) {
        // A pause someone asked for (and the policy allows): tunnelled like any other host.
        Some(_) if shared.pause.active() => None,
        Some(entry) if shared.ca().covers(&host) => Some(entry.clone()),
        Some(_) => {
            tracing::warn!(%host, "host is in the interception set but outside the device CA's constraints; tunnelling it uninspected (run `airlock ca rotate`)");
            None
        }
        None => None,
    };

    match intercept {
        Some(entry) => {
            let app = shared.inventory.app_for_intercepted(&host, &entry.provider);
            let watch = shared
                .inventory
                .watch(&host, port, app, true, peer, shared.listen);
            tokio::spawn(async move {
                let _permit = permit;
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        let io = TokioIo::new(upgraded);
                        intercept_tls(io, host, port, entry, shared.clone(), live, caller).await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
                // Its requests are counted as they are served (`handle_in_scope`).
                shared.inventory.finish(watch, Carried::default()).await;
            });
            Response::new(empty())
        }
        None => {
            if shared.is_own_address(&host, port) {
                return plain_error(
                    StatusCode::LOOP_DETECTED,
                    format!("CONNECT {host}:{port} points at Airlock itself; refusing to loop"),
                );
            }
            // A listed AI app is watched (seen, not inspected), its process looked up from now on, in
            // parallel with the dial; any other host is tunnelled as is.
            let watch = shared.inventory.app_for_tunnel(&host).map(|app| {
                shared
                    .inventory
                    .watch(&host, port, app, false, peer, shared.listen)
            });
            let upstream = match shared.upstream.dial_tunnel(&host, port).await {
                Ok(s) => s,
                Err(e) => return tunnels::failed(&shared.tunnels, &host, port, e),
            };
            shared.tunnels.opened();
            let _ = upstream.set_nodelay(true);
            tokio::spawn(async move {
                let _permit = permit;
                let upgraded = match hyper::upgrade::on(req).await {
                    Ok(u) => TokioIo::new(u),
                    Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
                };
                match watch {
                    None => tunnel(upgraded, upstream).await,
                    Some(watch) => {
                        let mut client = Counted::new(upgraded);
                        tunnel(&mut client, upstream).await;
                        let carried = Carried {
                            bytes_up: Some(client.read),
                            bytes_down: Some(client.written),
                            requests: None,
                        };
                        shared.inventory.finish(watch, carried).await;
                    }
                }
            });
            Response::new(empty())
        }
    }
}

/// Copies bytes both ways until either side closes. Nothing is read or logged.
async fn tunnel<C>(mut client: C, mut upstream: TcpStream)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "tunnel closed with an error");
    }
}

async fn intercept_tls(
    io: TokioIo<hyper::upgrade::Upgraded>,
    connect_host: String,
    port: u16,
    entry: crate::policy::HostEntry,
    shared: Arc<ProxyState>,
    live: super::LiveState,
    caller: Caller,
) {
    let handshake = shared.limits.tls_handshake_timeout();
    let deadline = tokio::time::Instant::now() + handshake;
    let timed_out = |shared: &ProxyState, host: &str| {
        shared
            .refusals
            .tls_handshake_timeouts
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%host, "client did not finish the TLS handshake in time; closing");
    };
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout_at(deadline, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(host = %connect_host, error = %e, "client did not start TLS after CONNECT");
            return;
        }
        Err(_) => return timed_out(&shared, &connect_host),
    };
    // SNI, when present, names the host the client will verify; it must itself be intercepted.
    let (host, entry) = match start.client_hello().server_name().map(normalize_host) {
        Some(sni) if sni != connect_host => match shared.hosts.lookup(&sni) {
            Some(e) if shared.ca().covers(&sni) => (sni, e.clone()),
            _ => {
                tracing::warn!(connect = %connect_host, sni = %sni, "TLS server name differs from the CONNECT host and is not intercepted; closing");
                return;
            }
        },
        _ => (connect_host, entry),
    };
    let config = match shared.ca().server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, error = %e, "cannot issue a certificate for an intercepted host");
            return;
        }
    };
    let tls = match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
        Err(_) => return timed_out(&shared, &host),
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // Usually the client does not trust the Airlock CA (unknown ca / bad certificate alert).
            tracing::info!(%host, error = %e, "TLS handshake with the client failed; does it trust the Airlock CA? (`airlock env`)");
            return;
        }
    };

    tracing::trace!(%host, alpn = ?tls.get_ref().1.alpn_protocol().map(String::from_utf8_lossy), "client TLS established");
    let header_read_timeout = shared.limits.header_read_timeout();
    let entry = Arc::new(entry);
    let svc = service_fn(move |req: Request<Incoming>| {
        // Each request runs under the policy in force when it arrives: a host the new policy no
        // longer intercepts is forwarded unread on this already decrypted connection.
        let shared = live.load_full();
        let current = shared.hosts.lookup(&host);
        let path_and_query = super::path_and_query(req.uri());
        let target = Target::new(
            InterceptMode::Proxy,
            host.clone(),
            (port != 443).then_some(port),
            current.unwrap_or(&entry),
            path_and_query,
        )
        .with_caller(caller.clone());
        let in_scope = current.is_some_and(|e| e.paths.covers(req.uri().path()));
        async move { Ok::<_, Infallible>(super::handle_in_scope(req, target, in_scope, shared).await) }
    });
    // The protocol is the one TLS negotiated (ALPN), never sniffed from the first bytes: a sniff
    // waits for bytes with no deadline, so a client silent after its handshake would hold the
    // connection forever; HTTP/1.1's header-read timeout covers it from the first byte on.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let served = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(256 << 10)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        b.serve_connection(io, svc).await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(header_read_timeout);
        b.serve_connection(io, svc).with_upgrades().await
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}
