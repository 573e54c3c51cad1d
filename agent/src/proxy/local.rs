//! What the listener answers itself: the PAC file, a bare health check (`GET /airlock/v1/health`),
//! a 404 pointing at the control socket for the rest of `/airlock/...`, and helpful 404s — and the
//! guard every origin-form request passes first (base-URL mode included, since a page that could
//! post to `/openai/v1/...` would turn the agent into an open relay once it injects credentials).
//! Browsers are kept out: a `Host` that is not this listener's loopback name and port is refused (DNS
//! rebinding), and so is any request a web page sent — an `Origin` other than `null`, or
//! `Sec-Fetch-Site: cross-site | same-site`; `/airlock/...` also refuses `Referer`. Nothing here ever
//! returns a credential, a record or anything else of the agent's state.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use std::sync::atomic::Ordering;

use super::ProxyState;
use crate::body::{full, json, ProxyBody};

fn error(status: StatusCode, kind: &str, message: String) -> Response<ProxyBody> {
    json(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "code": kind}, "airlock": {"type": kind}}),
    )
}

/// Whether a `Host` header names this listener: a loopback name, and the listener's port (a missing
/// port means 80).
fn is_own_host(host: &str, listen_port: u16) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]:8479`, `127.0.0.1:8479`, `localhost:8479`; a bare IPv6 literal has no port.
        Some((n, p)) if !n.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => {
            (n, p.parse::<u16>().ok())
        }
        _ => (host, Some(80)),
    };
    let name = crate::policy::hosts::normalize_host(name.trim_matches(['[', ']']));
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && port == Some(listen_port)
}

/// Why a request must be refused as coming from a web page, if it must.
fn from_a_web_page(headers: &http::HeaderMap, api: bool) -> Option<&'static str> {
    let value = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    // Native clients send no Origin; `null` is what some send from file:// or sandboxed contexts, and a
    // browser's sandboxed page is caught by Sec-Fetch-Site below.
    if let Some(origin) = value(header::ORIGIN) {
        if !origin.trim().eq_ignore_ascii_case("null") {
            return Some("Origin");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if matches!(
            site.trim().to_ascii_lowercase().as_str(),
            "cross-site" | "same-site"
        ) {
            return Some("Sec-Fetch-Site");
        }
    }
    if api && headers.contains_key(header::REFERER) {
        return Some("Referer");
    }
    None
}

/// Refuses origin-form requests whose `Host` is not this listener, and requests from web pages.
pub(super) fn guard(req: &Request<Incoming>, state: &ProxyState) -> Option<Response<ProxyBody>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host.is_empty() && !is_own_host(host, state.listen.port()) {
        state
            .refusals
            .browser_requests
            .fetch_add(1, Ordering::Relaxed);
        return Some(error(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "Airlock's listener answers only to 127.0.0.1:{port}, [::1]:{port} or localhost:{port}, not {host:?}",
                port = state.listen.port()
            ),
        ));
    }
    let api = req.uri().path().starts_with("/airlock");
    if let Some(header) = from_a_web_page(req.headers(), api) {
        state
            .refusals
            .browser_requests
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(header, path = %req.uri().path(), "refused a request from a web page");
        return Some(error(
            StatusCode::FORBIDDEN,
            "browser_request_refused",
            format!(
                "Airlock refuses requests from web pages ({header} present): a page must not be able to use this \
                 machine's AI access. Native tools send no {header}; for the local API use the airlock CLI"
            ),
        ));
    }
    None
}

/// The PAC file.
pub(super) fn pac(shared: &ProxyState) -> Response<ProxyBody> {
    let body = shared.hosts.pac(&shared.listen.to_string());
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `/airlock/...` on the proxy port: a bare health check, and for everything else a pointer to the
/// control socket, where the control API lives (peer credentials decide access there; a TCP port
/// cannot tell one local user from another).
pub(super) fn api(req: &Request<Incoming>, shared: &ProxyState) -> Response<ProxyBody> {
    let path = req.uri().path().trim_end_matches('/');
    match (req.method(), path) {
        (&Method::GET, HEALTH) => json(StatusCode::OK, &json!({"status": "ok"})),
        (_, HEALTH) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {HEALTH}; use GET", req.method()),
        ),
        _ => {
            let socket = shared
                .control_socket
                .as_ref()
                .map(|p| format!(" {}", p.display()))
                .unwrap_or_default();
            error(
                StatusCode::NOT_FOUND,
                "control_api_moved",
                format!(
                    "the proxy port serves no {path}: Airlock's control API (status, requests, inventory, \
                     CA reload) is served on the unix socket{socket}, where the caller's user decides \
                     what it may read and do. Use the airlock CLI (`airlock status`); only GET {HEALTH} \
                     is answered here"
                ),
            )
        }
    }
}

/// The one path of the local API the proxy port still answers.
const HEALTH: &str = "/airlock/v1/health";

/// A local server rule that points at this listener itself: refused, or every request would loop.
pub(super) fn looped(target: &crate::pipeline::Target) -> Response<ProxyBody> {
    error(
        StatusCode::LOOP_DETECTED,
        "loop_detected",
        format!(
            "the local server of {} is Airlock's own address ({}); fix its local = \"http://127.0.0.1:PORT\" \
             in the policy to the model server's port",
            target.provider,
            target.record_host()
        ),
    )
}

/// A 404 for an origin-form path that is neither a base-URL prefix nor a local endpoint.
pub(super) fn not_found(req: &Request<Incoming>, shared: &ProxyState) -> Response<ProxyBody> {
    let prefixes: Vec<String> = shared
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
            shared.listen
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_listeners_loopback_name_and_port_are_its_host() {
        for ok in [
            "127.0.0.1:8479",
            "localhost:8479",
            "LOCALHOST.:8479",
            "[::1]:8479",
            "127.1.2.3:8479",
        ] {
            assert!(is_own_host(ok, 8479), "{ok}");
        }
        for bad in [
            "evil.example:8479",
            "127.0.0.1:8480",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "10.0.0.1:8479",
            "localhost:x",
        ] {
            assert!(!is_own_host(bad, 8479), "{bad}");
        }
        assert!(is_own_host("localhost", 80));
    }

    #[test]
    fn web_pages_are_recognised_and_native_clients_are_not() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        assert_eq!(from_a_web_page(&h(&[]), false), None);
        assert_eq!(from_a_web_page(&h(&[("origin", "null")]), false), None);
        assert_eq!(
            from_a_web_page(&h(&[("origin", "https://evil.example")]), false),
            Some("Origin")
        );
        assert_eq!(
            from_a_web_page(
                &h(&[("origin", "null"), ("sec-fetch-site", "cross-site")]),
                false
            ),
            Some("Sec-Fetch-Site")
        );
        assert_eq!(
            from_a_web_page(&h(&[("sec-fetch-site", "same-site")]), false),
            Some("Sec-Fetch-Site")
        );
        assert_eq!(
            from_a_web_page(&h(&[("sec-fetch-site", "none")]), false),
            None
        );
        assert_eq!(
            from_a_web_page(&h(&[("referer", "https://x")]), false),
            None
        );
        assert_eq!(
            from_a_web_page(&h(&[("referer", "https://x")]), true),
            Some("Referer")
        );
    }
}
