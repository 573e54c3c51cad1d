//! The loopback listener. One address serves the forward proxy (CONNECT and absolute-form HTTP),
//! base-URL mode (`/openai/v1/...`), the PAC file and a bare health check (the control API is on a
//! unix socket, [`crate::control`]). It owns accepting
//! connections, refusing non-loopback peers, bounding slow and numerous clients (connection cap, header
//! and TLS handshake timeouts), and deciding per connection or request which path applies — a request
//! outside its host's path scope is forwarded unread ([`passthrough`]); everything
//! about an AI request itself happens in [`crate::pipeline`]. It depends only on the narrow
//! [`ProxyState`] defined here, never on the agent wiring above it. It must never listen on a
//! non-loopback address.

mod connect;
mod forward;
mod local;
mod passthrough;
pub mod tunnels;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::ProxyBody;
use crate::ca::CertificateAuthority;
use crate::caller::{Caller, Callers};
use crate::inventory::Inventory;
use crate::pipeline::{Pipeline, Target};
use crate::policy::{BlockedHosts, InterceptionSet, Limits};
use crate::record::InterceptMode;
use crate::upstream::UpstreamClient;
use crate::{AgentError, Result};

/// Counts of what the listener turned away, for the status report.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Connections from non-loopback peers.
    pub non_loopback_peers: AtomicU64,
    /// Connections closed at once because the connection cap was reached.
    pub over_connection_limit: AtomicU64,
    /// TLS clients that did not finish their handshake in time.
    pub tls_handshake_timeouts: AtomicU64,
    /// Requests from web pages (Origin, Sec-Fetch-Site) or with a foreign Host.
    pub browser_requests: AtomicU64,
    /// Connections and requests to hosts the policy blocks.
    pub blocked_hosts: AtomicU64,
}

/// Open client connections against the cap.
#[derive(Debug)]
pub struct Connections {
    sem: Arc<Semaphore>,
    max: usize,
    last_warned: std::sync::Mutex<Option<Instant>>,
}

impl Connections {
    /// A cap of `max` connections.
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Connections {
            sem: Arc::new(Semaphore::new(max)),
            max,
            last_warned: std::sync::Mutex::new(None),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.sem.available_permits())
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_owned().ok()
    }

    /// Whether to log being full now (at most every 10 s, so a flood cannot flood the log).
    fn should_warn(&self) -> bool {
        let Ok(mut last) = self.last_warned.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Everything the listener needs, and nothing more.
#[derive(Clone)]
pub struct ProxyState {
    /// The policy this state was built from.
    pub policy: Arc<crate::policy::Policy>,
    /// The interception set in force.
    pub hosts: InterceptionSet,
    /// Hosts the policy blocks.
    pub blocked: BlockedHosts,
    /// Why AI hosts are refused (`policy_unavailable`): an enrolled device failing closed.
    pub unavailable: Option<Arc<str>>,
    /// The device CA in force (swapped on rotation).
    pub ca: Arc<ArcSwap<CertificateAuthority>>,
    /// The pipeline AI requests go through.
    pub pipeline: Arc<Pipeline>,
    /// The upstream client (plain forwards, blind tunnels).
    pub upstream: UpstreamClient,
    /// The bound address.
    pub listen: SocketAddr,
    /// The bounds in force.
    pub limits: Limits,
    /// Open connections.
    pub connections: Arc<Connections>,
    /// What was turned away.
    pub refusals: Arc<Refusals>,
    /// The control API's unix socket, for the 404 that points there.
    pub control_socket: Option<PathBuf>,
    /// Who owns each client connection (looked up off the request path, for records).
    pub callers: Callers,
    /// The shadow-AI inventory.
    pub inventory: Arc<Inventory>,
    /// Tunnels opened and failed.
    pub tunnels: Arc<tunnels::TunnelStats>,
    /// A pause of interception someone asked for (AI hosts tunnelled while it runs).
    pub pause: Arc<crate::pause::Pause>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("listen", &self.listen)
            .finish()
    }
}

impl ProxyState {
    /// Whether `host:port` is this agent's own listener (to refuse loops).
    pub fn is_own_address(&self, host: &str, port: u16) -> bool {
        if port != self.listen.port() {
            return false;
        }
        let host = host.trim_matches(['[', ']']);
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }

    /// The device CA in force.
    pub fn ca(&self) -> arc_swap::Guard<Arc<CertificateAuthority>> {
        self.ca.load()
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout());
        b
    }
}

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

/// Serves on a listener someone else bound (the service manager's, an embedder's): it must be bound
/// to loopback like one [`bind`] makes. Made non-blocking and handed to the async runtime.
pub fn adopt(listener: std::net::TcpListener) -> Result<TcpListener> {
    let addr = listener.local_addr().map_err(|source| AgentError::Bind {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
        hint: "the listener handed to airlockd cannot tell its address; pass a bound TCP listener"
            .into(),
    })?;
    if !addr.ip().is_loopback() {
        return Err(AgentError::Bind {
            addr,
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not a loopback address"),
            hint: "Airlock listens on loopback only (127.0.0.1 or [::1]) so no other machine can use it; \
                   bind the socket handed to it (ListenStream= in airlockd.socket) to 127.0.0.1:PORT"
                .into(),
        });
    }
    let bad = |source| AgentError::Bind {
        addr,
        source,
        hint:
            "the listener handed to airlockd cannot be served; check it is a listening TCP socket"
                .into(),
    };
    listener.set_nonblocking(true).map_err(bad)?;
    TcpListener::from_std(listener).map_err(bad)
}

/// What to do with a connection just accepted.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Serve it.
    Serve,
    /// Drop it: not from this machine.
    ForeignPeer,
    /// Drop it: the connection cap is reached.
    Full,
}

/// Decides about one accepted connection (the check every connection passes, kept apart from the
/// socket so it can be driven with any peer address).
fn admit(state: &ProxyState, peer: &SocketAddr) -> (Admission, Option<OwnedSemaphorePermit>) {
    if !is_allowed_peer(peer) {
        state
            .refusals
            .non_loopback_peers
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, "refused a connection from a non-loopback peer");
        return (Admission::ForeignPeer, None);
    }
    match state.connections.admit() {
        Some(p) => (Admission::Serve, Some(p)),
        None => {
            state
                .refusals
                .over_connection_limit
                .fetch_add(1, Ordering::Relaxed);
            if state.connections.should_warn() {
                tracing::warn!(
                    max = state.connections.max(),
                    "connection limit reached; closing new connections until some end (limits.max_connections)"
                );
            }
            (Admission::Full, None)
        }
    }
}

/// The listener's state for the policy in force. A new policy replaces it whole; every request
/// loads it once when it arrives and keeps that version to its end, so a request in flight finishes
/// under the policy it started with while the next one on the same connection gets the new one.
pub type LiveState = Arc<ArcSwap<ProxyState>>;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(listener: TcpListener, live: LiveState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (admission, permit) = admit(&live.load(), &peer);
                    match (admission, permit) {
                        (Admission::Serve, Some(permit)) => {
                            tokio::spawn(serve_connection(stream, live.clone(), Arc::new(permit), peer));
                        }
                        _ => drop(stream),
                    }
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection's place under the cap; tunnels and intercepted TLS sessions carry it on.
pub(crate) type ConnPermit = Arc<OwnedSemaphorePermit>;

async fn serve_connection(
    stream: TcpStream,
    live: LiveState,
    permit: ConnPermit,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let http1 = live.load().http1();
    // Who owns the client's socket is looked up now, in the background, while it is surely open;
    // records take the answer when they finish.
    let caller = {
        let state = live.load();
        let ours = stream.local_addr().unwrap_or(state.listen);
        state.callers.lookup(peer, ours)
    };
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = live.load_full();
        let live = live.clone();
        let permit = permit.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(dispatch(req, state, live, permit, peer, caller).await) }
    });
    let conn = http1
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

async fn dispatch(
    req: Request<Incoming>,
    state: Arc<ProxyState>,
    live: LiveState,
    permit: ConnPermit,
    peer: SocketAddr,
    caller: Caller,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect::handle(req, state, live, permit, peer, caller).await;
    }
    if req.uri().authority().is_some() {
        return absolute_form(req, state, caller).await;
    }
    origin_form(req, state, caller).await
}

/// The refusal of a host the policy blocks: in the caller's dialect when the API is known (a
/// base-URL or intercepted request), else the OpenAI shape (a CONNECT or a plain forward).
fn blocked(
    state: &ProxyState,
    host: &str,
    api: Option<crate::policy::ApiKind>,
) -> Response<ProxyBody> {
    state.refusals.blocked_hosts.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%host, "refused a host the policy blocks");
    let err = crate::providers::dialect::AirlockError::new(
        http::StatusCode::FORBIDDEN,
        "host_blocked",
        state.blocked.refusal(host),
    );
    crate::providers::dialect::response(api, &err, None)
}

/// `GET http://host/path` sent to the proxy: intercepted hosts go through the pipeline (upstream over
/// HTTPS, since AI APIs are HTTPS only); other hosts are forwarded as they are.
async fn absolute_form(
    req: Request<Incoming>,
    state: Arc<ProxyState>,
    caller: Caller,
) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    if state.blocked.is_blocked(host.trim_end_matches('.')) {
        return blocked(&state, host.trim_end_matches('.'), None);
    }
    if let Some(entry) = state.hosts.lookup(&host) {
        let default_port = matches!(uri.port_u16(), None | Some(80) | Some(443));
        let target = Target::new(
            InterceptMode::Proxy,
            host.trim_end_matches('.').to_string(),
            if default_port { None } else { uri.port_u16() },
            entry,
            path_and_query(&uri),
        )
        .with_caller(caller);
        let in_scope = entry.paths.covers(uri.path());
        return handle_in_scope(req, target, in_scope, state).await;
    }
    forward::plain(req, state).await
}

/// Sends a request for an intercepted host through the pipeline, or, when its path is outside the
/// host's path scope, on to the upstream unread.
async fn handle_in_scope(
    req: Request<Incoming>,
    target: Target,
    in_scope: bool,
    state: Arc<ProxyState>,
) -> Response<ProxyBody> {
    tracing::trace!(method = %req.method(), host = %target.host, in_scope, "request received");
    if state.blocked.is_blocked(&target.host) {
        return blocked(&state, &target.host, Some(target.api));
    }
    if let Some(why) = &state.unavailable {
        let err = crate::providers::dialect::AirlockError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "policy_unavailable",
            format!("Airlock refuses AI requests: {why}"),
        );
        return crate::providers::dialect::response(Some(target.api), &err, None);
    }
    // For the inventory: a request the pipeline reads is inspected; one passed through is only seen.
    state
        .inventory
        .count_request(&target.host, &target.provider, in_scope);
    if in_scope {
        state.pipeline.handle(req, target).await
    } else {
        passthrough::forward(req, &target, state).await
    }
}

async fn origin_form(
    req: Request<Incoming>,
    state: Arc<ProxyState>,
    caller: Caller,
) -> Response<ProxyBody> {
    if let Some(resp) = local::guard(&req, &state) {
        return resp;
    }
    let path = req.uri().path();
    if path == "/proxy.pac" {
        return local::pac(&state);
    }
    if path.starts_with("/airlock/") || path == "/airlock" {
        return local::api(&req, &state);
    }
    let routed = state.hosts.route_base_url(path).map(|(entry, host, tail)| {
        let tail = if tail.is_empty() { "/" } else { tail };
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        let in_scope = entry.paths.covers(tail);
        (
            Target::new(InterceptMode::BaseUrl, host, None, entry, path_and_query)
                .with_caller(caller),
            in_scope,
        )
    });
    match routed {
        Some((target, _))
            if target.plain_http
                && state.is_own_address(&target.host, target.port.unwrap_or(80)) =>
        {
            local::looped(&target)
        }
        Some((target, in_scope)) => handle_in_scope(req, target, in_scope, state).await,
        None => local::not_found(&req, &state),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
