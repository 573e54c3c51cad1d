//! What the listener answers itself: the PAC file, the local status API (`/airlock/v1/...`, a stand-in
//! until the unix-socket control API lands) and helpful 404s. Browsers are kept out: a `Host` that is not
//! a loopback name is refused (DNS rebinding), and the API refuses any request carrying `Origin` or
//! `Referer` (cross-site requests). Nothing here ever returns a credential or a body of a recorded request.

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::agent::Shared;
use crate::pipeline::body::{full, ProxyBody};

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

fn error(status: StatusCode, kind: &str, message: String) -> Response<ProxyBody> {
    json_response(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "code": kind}, "airlock": {"type": kind}}),
    )
}

fn is_loopback_host(host: &str) -> bool {
    let name = crate::policy::hosts::normalize_host(host);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses origin-form requests whose `Host` is not a loopback name, and API requests from browsers.
pub(super) fn guard(req: &Request<Incoming>, _shared: &Shared) -> Option<Response<ProxyBody>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host.is_empty() && !is_loopback_host(host) {
        return Some(error(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "Airlock's listener answers only to 127.0.0.1, [::1] or localhost, not {host:?}"
            ),
        ));
    }
    if req.uri().path().starts_with("/airlock")
        && (req.headers().contains_key(header::ORIGIN)
            || req.headers().contains_key(header::REFERER))
    {
        return Some(error(
            StatusCode::FORBIDDEN,
            "browser_request_refused",
            "the Airlock local API refuses requests from web pages (Origin or Referer present); use the airlock CLI".into(),
        ));
    }
    None
}

/// The PAC file.
pub(super) fn pac(shared: &Shared) -> Response<ProxyBody> {
    let body = shared.policy().hosts.pac(&shared.listen().to_string());
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `/airlock/v1/...`.
pub(super) async fn api(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    let path = req.uri().path().trim_end_matches('/');
    match (req.method(), path) {
        (&Method::GET, "/airlock/v1/health") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/airlock/v1/status") => json_response(StatusCode::OK, shared.status()),
        (&Method::GET, "/airlock/v1/requests") => {
            let limit = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("limit=")))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(100);
            let recent = shared.pipeline.recorder().recent(limit);
            let records: Vec<&crate::record::Record> = recent.iter().map(|r| &**r).collect();
            json_response(StatusCode::OK, json!({ "records": records }))
        }
        (&Method::POST, "/airlock/v1/ca/reload") => match shared.reload_ca() {
            Ok(()) => json_response(StatusCode::OK, shared.status()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "ca_reload_failed", e.to_string()),
        },
        (_, "/airlock/v1/health" | "/airlock/v1/status" | "/airlock/v1/requests" | "/airlock/v1/ca/reload") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no Airlock API at {path}; available: GET /airlock/v1/status, GET /airlock/v1/requests?limit=N, \
                 GET /airlock/v1/health, POST /airlock/v1/ca/reload"
            ),
        ),
    }
}

/// A 404 for an origin-form path that is neither a base-URL prefix nor a local endpoint.
pub(super) fn not_found(req: &Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    let policy = shared.policy();
    let prefixes: Vec<String> = policy
        .hosts
        .entries()
        .iter()
        .filter_map(|e| e.prefix.as_ref().map(|p| format!("/{p}")))
        .collect();
    error(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "Airlock has no route for {}. Base-URL mode paths start with a provider prefix ({}), e.g. \
             http://{}/openai/v1; the PAC file is at /proxy.pac; to use Airlock as a proxy set HTTPS_PROXY \
             (see `airlock env`)",
            req.uri().path(),
            prefixes.join(", "),
            shared.listen()
        ),
    )
}
