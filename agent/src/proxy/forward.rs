//! Plain-HTTP forward proxying for hosts outside the interception set (`GET http://example.com/` sent to
//! the proxy). The request and response pass through unchanged apart from hop-by-hop headers; nothing is
//! recorded, because these are not AI calls.

use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::ProxyState;
use crate::body::{full, BoxError, ProxyBody};
use crate::pipeline::strip_hop_by_hop;
use crate::policy::hosts::normalize_host;

pub(super) async fn plain(req: Request<Incoming>, shared: Arc<ProxyState>) -> Response<ProxyBody> {
    let host = normalize_host(req.uri().host().unwrap_or_default());
    let port = req.uri().port_u16().unwrap_or(80);
    if shared.is_own_address(&host, port) {
        return text(
            StatusCode::LOOP_DETECTED,
            format!("{host}:{port} is Airlock itself; refusing to loop"),
        );
    }
    let (mut head, body) = req.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.version = http::Version::HTTP_11;
    let req = Request::from_parts(
        head,
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
    );
    match shared.upstream.send(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(
                parts,
                body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
            )
        }
        Err(e) if e.timed_out => text(StatusCode::GATEWAY_TIMEOUT, e.message),
        Err(e) => text(StatusCode::BAD_GATEWAY, e.message),
    }
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(message + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
