//! The control API: HTTP over a unix socket (`airlock.sock` in the state directory, mode 0666), the
//! one way to read the agent's state and change it. Any local user may connect; what a request may do
//! is decided from the connection's peer credentials, never from anything it carries: every route
//! declares an [`Access`] in the [`routes::ROUTES`] table — [`Access::Read`] for any local user,
//! [`Access::Write`] only for root and the agent's own user — and a reader who is neither sees only
//! the records (and inventory processes) of their own uid. Requests a browser could have sent (an `Origin` or a `Referer`) are
//! refused, bodies are bounded ([`MAX_BODY`]), unknown paths answer 404 with the routes there are, a
//! wrong method 405. Handlers run on the blocking pool with the body already read. This module owns the
//! routing and the access decision; the socket's life is [`server`]'s, the credentials [`peer`]'s, and
//! what each route answers [`routes`]'. It must not serve anything on TCP, and it never puts a
//! credential or a request body in an answer or a log.

pub mod peer;
pub mod routes;
#[cfg(unix)]
mod server;
#[cfg(not(unix))]
#[path = "other.rs"]
mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};

use crate::body::{BoxError, ProxyBody};
use crate::inventory::Inventory;
use crate::record::Recorder;
use crate::Result;
pub use peer::{DaemonUser, Peer};

/// The largest request body a route is given (a signed policy bundle fits many times over); a longer
/// one is answered 413 (unread, when its `Content-Length` says so).
pub const MAX_BODY: usize = 8 << 20;
/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the control API asks of the agent. Implemented by the agent wiring; a route that needs more
/// of the agent adds a method here.
pub trait Control: Send + Sync {
    /// The status report (`GET /airlock/v1/status`).
    fn status(&self) -> Value;
    /// Re-reads the CA after `airlock ca rotate`; the new status, or what went wrong.
    fn reload_ca(&self) -> std::result::Result<Value, String>;
    /// The records of recent requests.
    fn recorder(&self) -> &Recorder;
    /// The shadow-AI inventory.
    fn inventory(&self) -> &Inventory;
    /// The policy in force and the fleet's ledger (`GET /airlock/v1/policy`).
    fn policy(&self) -> Value;
    /// Offers a bundle to the fleet's verifier (`POST /airlock/v1/policy/apply`): what it came to,
    /// or the refusal (`reason`, `message`).
    fn apply_bundle(&self, bytes: &[u8]) -> std::result::Result<Value, Value>;
    /// Starts a pause of interception for `uid` (`POST /airlock/v1/pause`): the answer, or the
    /// refusal (reason code, message).
    fn pause(
        &self,
        uid: Option<u32>,
        minutes: Option<u32>,
    ) -> std::result::Result<Value, (String, String)> {
        let _ = (uid, minutes);
        Err((
            "pause_not_allowed".into(),
            "this agent cannot pause interception".into(),
        ))
    }
    /// Ends a pause of interception (`POST /airlock/v1/resume`).
    fn resume(&self, uid: Option<u32>) -> Value {
        let _ = uid;
        serde_json::json!({"paused": false, "was_paused": false})
    }
    /// The org credential store (`/airlock/v1/credentials`).
    fn credentials(&self) -> Option<std::sync::Arc<crate::credentials::Store>> {
        None
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any local user: reads that show them nothing of another user's beyond machine-wide counts
    /// (records and the inventory's processes are filtered per caller).
    Read,
    /// Root and the agent's own user only: anything that changes the agent.
    Write,
    /// Any local user, for a change the policy lets people at the machine make (a pause of
    /// interception); the handler checks the policy and the agent journals who asked.
    Local,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Local => "local",
        }
    }
}

/// One request as a handler sees it: who sent it, its query and its whole body.
#[derive(Debug, Clone)]
pub struct Call {
    /// The caller's peer credentials.
    pub peer: Peer,
    /// Whether the caller is root or the agent's user (sees every user's records, may write).
    pub privileged: bool,
    /// The query string, if any.
    pub query: Option<String>,
    /// The request body, at most [`MAX_BODY`] bytes (empty for a GET).
    pub body: Bytes,
}

impl Call {
    /// The value of query parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// Query parameter `name` as a number, `default` when absent or not a number.
    pub fn number(&self, name: &str, default: usize) -> usize {
        self.param(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Whether the caller may see something of `uid`'s: root and the agent's user see everyone's,
    /// anyone else only their own — and nothing whose user is unknown.
    pub fn may_see(&self, uid: Option<u32>) -> bool {
        self.privileged || (uid.is_some() && uid == self.peer.uid)
    }
}

/// A handler's answer: a status and a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
        }
    }

    /// An error: `{"error": {"type": kind, "message": message}}`. The message says what happened and
    /// what to do.
    pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({"error": {"type": kind, "message": message.into()}}),
        }
    }
}

/// A route's handler: runs on the blocking pool (it may read files), with the agent and the call.
pub type Handler = fn(&dyn Control, &Call) -> Reply;

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The method it answers.
    pub method: Method,
    /// The exact path (a trailing `/` in a request is ignored).
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
    /// What it does.
    pub handler: Handler,
}

impl Route {
    /// A GET route.
    pub const fn get(path: &'static str, access: Access, handler: Handler) -> Route {
        Route {
            method: Method::GET,
            path,
            access,
            handler,
        }
    }

    /// A POST route (its handler gets the body).
    pub const fn post(path: &'static str, access: Access, handler: Handler) -> Route {
        Route {
            method: Method::POST,
            path,
            access,
            handler,
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the table says about a method and a path.
#[derive(Debug)]
enum Lookup<'a> {
    Route(&'a Route),
    /// The path exists for these methods only.
    WrongMethod(Vec<&'a Method>),
    Nothing,
}

fn find<'a>(table: &'a [Route], method: &Method, path: &str) -> Lookup<'a> {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    let mut methods = Vec::new();
    for r in table.iter().filter(|r| r.path == path) {
        if r.method == method || (method == Method::HEAD && r.method == Method::GET) {
            return Lookup::Route(r);
        }
        methods.push(&r.method);
    }
    if methods.is_empty() {
        Lookup::Nothing
    } else {
        Lookup::WrongMethod(methods)
    }
}

/// Why a caller may not use `route`, if they may not.
fn refusal(route: &Route, peer: &Peer, daemon: &DaemonUser) -> Option<String> {
    if matches!(route.access, Access::Read | Access::Local) || peer.is_privileged(daemon) {
        return None;
    }
    let run_as = daemon
        .run_as()
        .map(|u| format!(", or as {u} (`sudo -u {u} airlock ...`)"))
        .unwrap_or_default();
    Some(format!(
        "{} may only be done by {}; you are {}. Run it with sudo (`sudo airlock ...`){run_as}",
        route.describe(),
        daemon.who_may_write(),
        peer.describe()
    ))
}

/// Why a request must be refused as one a browser could have sent, if it must: native clients send
/// neither header, and a page must never reach the agent's controls through something that relays.
fn from_a_browser(headers: &http::HeaderMap) -> Option<&'static str> {
    if headers.contains_key(header::ORIGIN) {
        return Some("Origin");
    }
    if headers.contains_key(header::REFERER) {
        return Some("Referer");
    }
    None
}

/// The control server's view of the agent: the agent, its user and the route table.
pub struct Context {
    control: Arc<dyn Control>,
    daemon: DaemonUser,
    routes: &'static [Route],
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("daemon", &self.daemon)
            .finish()
    }
}

impl Context {
    /// The agent's control API with the shipped route table, for this process's user.
    pub fn new(control: Arc<dyn Control>) -> Context {
        Context::with_routes(control, DaemonUser::current(), routes::ROUTES)
    }

    /// The same with a given daemon user and route table (tests, embedders).
    pub fn with_routes(
        control: Arc<dyn Control>,
        daemon: DaemonUser,
        routes: &'static [Route],
    ) -> Context {
        Context {
            control,
            daemon,
            routes,
        }
    }
}

fn reply(r: Reply) -> Response<ProxyBody> {
    crate::body::json(r.status, &r.body)
}

/// Answers one request from `peer`: refuses what a browser could have sent, finds the route, checks
/// the caller's access before reading a byte of the body, reads the body within its bound, and runs
/// the handler on the blocking pool.
pub async fn respond<B>(req: Request<B>, peer: Peer, ctx: &Context) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(h) = from_a_browser(req.headers()) {
        tracing::info!(header = h, %path, uid = ?peer.uid, "control API: refused a request a browser could have sent");
        return reply(Reply::error(
            StatusCode::FORBIDDEN,
            "browser_request_refused",
            format!(
                "Airlock's control API refuses requests carrying {h}: a web page must never reach it. \
                 Native clients send no {h}; use the airlock CLI"
            ),
        ));
    }
    let route = match find(ctx.routes, &method, &path) {
        Lookup::Route(r) => r,
        Lookup::WrongMethod(methods) => {
            let allowed: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            let mut resp = reply(Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{method} is not allowed on {path}; use {}",
                    allowed.join(" or ")
                ),
            ));
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
        Lookup::Nothing => {
            let list: Vec<String> = ctx
                .routes
                .iter()
                .map(|r| match r.access {
                    Access::Read => r.describe(),
                    Access::Local => format!(
                        "{} (any local user, when the policy allows it)",
                        r.describe()
                    ),
                    Access::Write => format!("{} (root or the agent's user)", r.describe()),
                })
                .collect();
            let routes: Vec<Value> = ctx
                .routes
                .iter()
                .map(|r| json!({"method": r.method.as_str(), "path": r.path, "access": r.access.as_str()}))
                .collect();
            let mut r = Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no control API at {path}; there is: {}", list.join(", ")),
            );
            r.body["routes"] = Value::Array(routes);
            return reply(r);
        }
    };
    if let Some(why) = refusal(route, &peer, &ctx.daemon) {
        tracing::info!(route = %route.describe(), uid = ?peer.uid, pid = ?peer.pid, "control API: refused a write from a user who may not");
        return reply(Reply::error(StatusCode::FORBIDDEN, "forbidden", why));
    }
    let query = req.uri().query().map(str::to_string);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return reply(r),
    };
    let call = Call {
        peer,
        privileged: peer.is_privileged(&ctx.daemon),
        query,
        body,
    };
    if route.access != Access::Read {
        tracing::info!(route = %route.describe(), uid = ?peer.uid, pid = ?peer.pid, "control API: write");
    } else {
        tracing::debug!(route = %route.describe(), uid = ?peer.uid, pid = ?peer.pid, "control API: read");
    }
    let control = ctx.control.clone();
    let handler = route.handler;
    let answer = tokio::task::spawn_blocking(move || handler(&*control, &call))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(route = %route.describe(), error = %e, "control API handler failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!(
                    "{} failed inside the agent; its log says why. Run it again, or restart airlockd",
                    route.describe()
                ),
            )
        });
    reply(answer)
}

/// The whole body, within [`MAX_BODY`] and [`BODY_TIMEOUT`].
async fn read_body<B>(body: B) -> std::result::Result<Bytes, Reply>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than the control API takes ({} MiB)",
                MAX_BODY >> 20
            ),
        )
    };
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body could not be read ({e}); send it again"),
        )),
        Err(_) => Err(Reply::error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s; send it again",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A bound control socket, not serving yet (so the runtime file is written only once it is ours).
#[derive(Debug)]
pub struct Listener(server::Bound);

/// The running control server.
#[derive(Debug)]
pub struct ControlServer(server::Running);

/// Takes the control socket at `path`: a socket file left by an agent that is gone is replaced, a
/// live one (another agent answers on it) or anything that is not a socket is refused. `None` where
/// the OS has no control server yet (Windows: named pipes are not implemented).
pub async fn bind(path: &Path) -> Result<Option<Listener>> {
    Ok(server::bind(path).await?.map(Listener))
}

/// Serves on a control socket someone else bound at `path` (the service manager, through socket
/// activation): nothing at the path is taken over, and the socket file stays when the server stops,
/// since its maker owns it.
pub fn adopt(listener: crate::sys::activation::ControlListener, path: &Path) -> Result<Listener> {
    Ok(Listener(server::adopt(listener, path)?))
}

impl Listener {
    /// Starts answering on the socket.
    pub fn serve(self, ctx: Context) -> ControlServer {
        ControlServer(self.0.serve(Arc::new(ctx)))
    }
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Stops accepting and removes the socket file (if it is still the one this server made, and
    /// not one the service manager passed).
    pub async fn shutdown(self) {
        self.0.shutdown().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
