//! Requests on a partly inspected host that fall outside its path scope (`paths = [...]` in policy):
//! the agent had to terminate TLS to see the path, so it forwards the rest of the host unread — no
//! parsing, no body buffering, no record, headers as the client sent them (only the hop-by-hop ones
//! that belong to one connection are dropped) — and splices a protocol upgrade (a WebSocket) byte for
//! byte. It must never read a body or log a path: what is outside the scope is not the agent's to see.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::ProxyState;
use crate::body::{empty, full, BoxError, ProxyBody};
use crate::pipeline::{strip_hop_by_hop, Target};

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(message + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The protocol a request asks to switch to (`Upgrade` named by `Connection`), if any.
fn upgrade_asked(headers: &http::HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(header::UPGRADE)?.clone();
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        .then_some(protocol)
}

/// Forwards `req` to `target`'s upstream unread and answers with whatever it answers.
pub(super) async fn forward(
    mut req: Request<Incoming>,
    target: &Target,
    state: Arc<ProxyState>,
) -> Response<ProxyBody> {
    tracing::debug!(host = %target.host, method = %req.method(), "outside the host's inspected paths; forwarded unread");
    let protocol = upgrade_asked(req.headers());
    let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut head, body) = req.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.headers.remove(header::HOST);
    if let Some(p) = &protocol {
        head.headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        head.headers.insert(header::UPGRADE, p.clone());
    }
    let scheme = if target.plain_http { "http" } else { "https" };
    let port = match target.port {
        Some(p) if target.plain_http || !state.upstream.is_overridden(&target.host) => {
            format!(":{p}")
        }
        _ => String::new(),
    };
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let uri = match format!("{scheme}://{host}{port}{}", target.path_and_query).parse() {
        Ok(u) => u,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Airlock cannot forward this request: {e}"),
            )
        }
    };
    head.uri = uri;
    head.version = http::Version::HTTP_11;
    let req = Request::from_parts(
        head,
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
    );
    let timeout = state.limits.response_header_timeout();
    let sent = match client_upgrade {
        Some(_) => tokio::time::timeout(timeout, state.upstream.send_upgrade(req)).await,
        None => tokio::time::timeout(timeout, state.upstream.send(req)).await,
    };
    let mut resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) if e.timed_out => return text(StatusCode::GATEWAY_TIMEOUT, e.message),
        Ok(Err(e)) => return text(StatusCode::BAD_GATEWAY, e.message),
        Err(_) => {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{} sent no response within {} s",
                    target.host,
                    timeout.as_secs()
                ),
            )
        }
    };
    if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((c, u)) => {
                    let mut c = hyper_util::rt::TokioIo::new(c);
                    let mut u = hyper_util::rt::TokioIo::new(u);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                        tracing::debug!(error = %e, "passed-through upgraded connection closed with an error");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "passed-through protocol switch did not complete")
                }
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, empty());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
    )
}
