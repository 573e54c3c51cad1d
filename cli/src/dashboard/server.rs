//! The dashboard's HTTP server: hyper 1 over tokio on 127.0.0.1, one route table, every request
//! through [`super::guard`] first, the embedded page and its assets, the JSON views (run on the
//! blocking pool, since the control API client blocks) and the event stream. Connections, header
//! sizes, slow headers and blocking jobs are bounded. It must not listen beyond loopback nor log the
//! token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::data::Link;
use super::guard::{secure, Gate};
use super::live::Hub;

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Most blocking reads (control API, journal, trust stores) at once.
const MAX_JOBS: usize = 4;
/// A request head larger than this is refused by hyper.
const MAX_HEAD: usize = 16 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// What every connection shares.
pub struct App {
    /// The token and port.
    pub gate: Gate,
    /// The agent.
    pub link: Arc<Link>,
    /// The live feed.
    pub hub: Arc<Hub>,
    /// Bounds blocking reads.
    jobs: Semaphore,
}

impl App {
    /// The shared state of one dashboard.
    pub fn new(gate: Gate, link: Arc<Link>, hub: Arc<Hub>) -> App {
        App {
            gate,
            link,
            hub,
            jobs: Semaphore::new(MAX_JOBS),
        }
    }
}

/// Serves connections from `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn full(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    r
}

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    // The body is never read: every route is a GET.
    let (req, _body) = req.into_parts();
    let mut r = route(app, &req).await;
    secure(r.headers_mut());
    r
}

async fn route(app: &App, req: &http::request::Parts) -> Response<Body> {
    if let Err(refusal) = app.gate.check(&req.method, &req.headers, req.uri.query()) {
        return full(
            refusal.status,
            "text/plain; charset=utf-8",
            format!("{}\n", refusal.message),
        );
    }
    let query = req.uri.query().unwrap_or("");
    match req.uri.path() {
        "/" => {
            let mut r = full(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            if let Ok(v) = header::HeaderValue::from_str(&app.gate.set_cookie()) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        "/app.js" => full(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT),
        "/app.css" => full(StatusCode::OK, "text/css; charset=utf-8", STYLE),
        "/icon.svg" => full(StatusCode::OK, "image/svg+xml", ICON),
        "/api/overview" => blocking(app, |l| l.overview()).await,
        "/api/trust" => blocking(app, |l| l.trust()).await,
        "/api/usage" => {
            let since = range(query);
            blocking(app, move |l| l.usage(since)).await
        }
        "/api/events" => match app.hub.subscribe() {
            Some(stream) => {
                let mut r = Response::new(stream.boxed());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/event-stream"),
                );
                r
            }
            None => full(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "too many dashboard pages are open: close one and reload\n",
            ),
        },
        _ => full(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such page\n",
        ),
    }
}

/// `range=1h|24h|7d|30d` (default 24h).
fn range(query: &str) -> Duration {
    let v = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "range")
        .map(|(_, v)| v);
    let hours = match v {
        Some("1h") => 1,
        Some("7d") => 24 * 7,
        Some("30d") => 24 * 30,
        _ => 24,
    };
    Duration::from_secs(3600 * hours)
}

/// Runs `f` on the blocking pool (bounded) and answers its JSON.
async fn blocking(app: &App, f: impl FnOnce(&Link) -> Value + Send + 'static) -> Response<Body> {
    let Ok(_permit) = app.jobs.acquire().await else {
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "shutting down\n",
        );
    };
    let link = app.link.clone();
    match tokio::task::spawn_blocking(move || f(&link)).await {
        Ok(v) => full(StatusCode::OK, "application/json", v.to_string()),
        Err(_) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "internal error while reading the agent; see the terminal that runs `airlock dashboard`\n",
        ),
    }
}
