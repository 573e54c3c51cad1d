//! The loopback listener. One address serves the forward proxy (CONNECT and absolute-form HTTP),
//! base-URL mode (`/openai/v1/...`), the PAC file and the local status API. It owns accepting
//! connections, refusing non-loopback peers, and deciding per connection or request which path applies;
//! everything about an AI request itself happens in [`crate::pipeline`]. It must never listen on a
//! non-loopback address.

mod connect;
mod forward;
mod local;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::agent::Shared;
use crate::pipeline::body::ProxyBody;
use crate::pipeline::Target;
use crate::record::InterceptMode;
use crate::{AgentError, Result};

/// The path and query of a request URI (`/` when it has none), as sent upstream.
fn path_and_query(uri: &http::Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string()
}

/// Whether a peer may use the agent: only processes on this machine.
pub fn is_allowed_peer(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Binds the listener, refusing non-loopback addresses and explaining a port in use.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(AgentError::Bind {
            addr,
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not a loopback address"),
            hint: "Airlock listens on loopback only (127.0.0.1 or [::1]) so no other machine can use it; \
                   pass --listen 127.0.0.1:PORT"
                .into(),
        });
    }
    TcpListener::bind(addr).await.map_err(|source| {
        let hint = if source.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "Another program (perhaps another airlockd) is using port {}. Stop it, or start airlockd with \
                 --listen 127.0.0.1:OTHER_PORT (and point clients at that port).",
                addr.port()
            )
        } else {
            "Check the address and that this user may bind it.".into()
        };
        AgentError::Bind { addr, source, hint }
    })
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !is_allowed_peer(&peer) {
                        tracing::warn!(%peer, "refused a connection from a non-loopback peer");
                        drop(stream);
                        continue;
                    }
                    let shared = shared.clone();
                    tokio::spawn(serve_connection(stream, shared));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(dispatch(req, shared).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

async fn dispatch(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect::handle(req, shared).await;
    }
    if req.uri().authority().is_some() {
        return absolute_form(req, shared).await;
    }
    origin_form(req, shared).await
}

/// `GET http://host/path` sent to the proxy: intercepted hosts go through the pipeline (upstream over
/// HTTPS, since AI APIs are HTTPS only); other hosts are forwarded as they are.
async fn absolute_form(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let policy = shared.policy();
    if let Some(entry) = policy.hosts.lookup(&host) {
        let default_port = matches!(uri.port_u16(), None | Some(80) | Some(443));
        let path_and_query = path_and_query(&uri);
        let target = Target::new(
            InterceptMode::Proxy,
            host.trim_end_matches('.').to_string(),
            if default_port { None } else { uri.port_u16() },
            entry,
            path_and_query,
        );
        return shared.pipeline.handle(req, target).await;
    }
    forward::plain(req, shared).await
}

async fn origin_form(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    if let Some(resp) = local::guard(&req, &shared) {
        return resp;
    }
    let path = req.uri().path();
    if path == "/proxy.pac" {
        return local::pac(&shared);
    }
    if path.starts_with("/airlock/") || path == "/airlock" {
        return local::api(req, shared).await;
    }
    let policy = shared.policy();
    let routed = policy
        .hosts
        .route_base_url(path)
        .map(|(entry, host, tail)| {
            let tail = if tail.is_empty() { "/" } else { tail };
            let path_and_query = match req.uri().query() {
                Some(q) => format!("{tail}?{q}"),
                None => tail.to_string(),
            };
            Target::new(InterceptMode::BaseUrl, host, None, entry, path_and_query)
        });
    match routed {
        Some(target) => shared.pipeline.handle(req, target).await,
        None => local::not_found(&req, &shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_are_allowed() {
        for ok in [
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_allowed_peer(&ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "10.0.0.2:5000",
            "192.168.1.5:1",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:80",
            "0.0.0.0:1",
        ] {
            assert!(!is_allowed_peer(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[tokio::test]
    async fn binding_a_non_loopback_address_is_refused_with_advice() {
        let e = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("loopback only"), "{e}");
    }

    #[tokio::test]
    async fn a_taken_port_names_the_port_and_the_fix() {
        let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = first.local_addr().unwrap();
        let e = bind(addr).await.unwrap_err().to_string();
        assert!(
            e.contains(&addr.port().to_string()) && e.contains("--listen"),
            "{e}"
        );
    }
}
