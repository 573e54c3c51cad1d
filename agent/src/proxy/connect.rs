//! CONNECT handling. A host in the interception set (and covered by the device CA) gets its TLS
//! terminated with a leaf for that host and its requests served (HTTP/1.1 or HTTP/2 by ALPN) through the
//! pipeline; any other host gets a blind TCP tunnel whose bytes are never read. The intercept decision is
//! made on the CONNECT host and confirmed on the ClientHello's SNI.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::agent::Shared;
use crate::pipeline::body::{empty, full, ProxyBody};
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

pub(super) async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "CONNECT needs a host:port target, e.g. CONNECT api.openai.com:443".into(),
        );
    };
    let host = normalize_host(authority.host());
    let port = authority.port_u16().unwrap_or(443);
    let policy = shared.policy();
    let intercept = match policy.hosts.lookup(&host) {
        Some(entry) if shared.ca().covers(&host) => Some(entry.clone()),
        Some(_) => {
            tracing::warn!(%host, "host is in the interception set but outside the device CA's constraints; tunnelling it uninspected (run `airlock ca rotate`)");
            None
        }
        None => None,
    };

    match intercept {
        Some(entry) => {
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        intercept_tls(TokioIo::new(upgraded), host, port, entry, shared).await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
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
            let dial = tokio::time::timeout(
                Duration::from_secs(10),
                TcpStream::connect((host.as_str(), port)),
            )
            .await;
            let upstream = match dial {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return plain_error(
                        StatusCode::BAD_GATEWAY,
                        format!("Airlock could not connect to {host}:{port}: {e}"),
                    )
                }
                Err(_) => {
                    return plain_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("Airlock timed out connecting to {host}:{port}"),
                    )
                }
            };
            let _ = upstream.set_nodelay(true);
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => tunnel(TokioIo::new(upgraded), upstream).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            Response::new(empty())
        }
    }
}

/// Copies bytes both ways until either side closes. Nothing is read or logged.
async fn tunnel(mut client: TokioIo<hyper::upgrade::Upgraded>, mut upstream: TcpStream) {
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "tunnel closed with an error");
    }
}

async fn intercept_tls(
    io: TokioIo<hyper::upgrade::Upgraded>,
    connect_host: String,
    port: u16,
    entry: crate::policy::HostEntry,
    shared: Arc<Shared>,
) {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match acceptor.await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(host = %connect_host, error = %e, "client did not start TLS after CONNECT");
            return;
        }
    };
    // SNI, when present, names the host the client will verify; it must itself be intercepted.
    let (host, entry) = match start.client_hello().server_name().map(normalize_host) {
        Some(sni) if sni != connect_host => {
            let policy = shared.policy();
            match policy.hosts.lookup(&sni) {
                Some(e) if shared.ca().covers(&sni) => (sni, e.clone()),
                _ => {
                    tracing::warn!(connect = %connect_host, sni = %sni, "TLS server name differs from the CONNECT host and is not intercepted; closing");
                    return;
                }
            }
        }
        _ => (connect_host, entry),
    };
    let config = match shared.ca().server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, error = %e, "cannot issue a certificate for an intercepted host");
            return;
        }
    };
    let tls = match start.into_stream(config).await {
        Ok(t) => t,
        Err(e) => {
            // Usually the client does not trust the Airlock CA (unknown ca / bad certificate alert).
            tracing::info!(%host, error = %e, "TLS handshake with the client failed; does it trust the Airlock CA? (`airlock env`)");
            return;
        }
    };

    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let path_and_query = super::path_and_query(req.uri());
        let target = Target::new(
            InterceptMode::Proxy,
            host.clone(),
            (port != 443).then_some(port),
            &entry,
            path_and_query,
        );
        async move { Ok::<_, Infallible>(shared.pipeline.handle(req, target).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
        .await
    {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}
