//! Transport and dispatch: accepts loopback TCP connections (TLS with ALPN h2/http1.1, or plain),
//! serves HTTP/1.1 and HTTP/2 with hyper, records each request, picks the provider (and
//! OpenAI-compatible service) from the Host / :authority (or, on loopback hosts, from the path),
//! and applies faults — slow headers, stalls, a TCP reset or close, status errors with or without a
//! body, cuts at a byte or mid-stream, damaged or huge frames, error frames — the transport-level
//! stream options (CRLF line endings, keep-alive comments) and the response compression around the
//! provider modules' replies. It decides nothing about what a provider's bodies look like.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, VARY};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::body::{End, MockBody, Piece, Plan};
use crate::compat::{self, KEEP_ALIVE};
use crate::encoding::{Coding, Compress};
use crate::fault::{Fault, FaultKind};
use crate::record::{Answer, Recorded, RequestLog};
use crate::reply::{self, cut_point, Call, ErrorKind, Flavor, Opts, Provider, Reply, ReplyBody};
use crate::{anthropic, code_assist, gemini, ollama, openai, websocket};
use crate::{j, mangle};

/// Largest request body accepted (Anthropic's documented limit).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// Largest `x-mock-output-words`.
pub const MAX_OUTPUT_WORDS: usize = 1_000_000;
/// Largest value of the token-count headers added with the OpenAI-compatible services
/// (`x-mock-reasoning-tokens`, `x-mock-cache-write-tokens`, `x-mock-cache-write-1h-tokens`).
pub const MAX_TOKEN_HEADER: u64 = 1_000_000_000;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of a running mock.
pub struct State {
    /// The request log.
    pub log: RequestLog,
    /// Fault applied when a request has no `x-mock-fault` header.
    pub default_fault: Fault,
    /// Pacing between stream frames when a request has no `x-mock-chunk-delay-ms` header.
    pub chunk_delay: Duration,
    /// Response compression when a request has no `x-mock-compress` header.
    pub compress: Compress,
    counter: AtomicU64,
    seed: u64,
    builder: auto::Builder<TokioExecutor>,
}

impl State {
    /// New state.
    pub fn new(
        log: RequestLog,
        default_fault: Fault,
        chunk_delay: Duration,
        compress: Compress,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(1024);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Self {
            log,
            default_fault,
            chunk_delay,
            compress,
            counter: AtomicU64::new(1),
            seed,
            builder,
        }
    }

    pub(crate) fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64's finaliser is a bijection, so ids never repeat within a run.
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{z:016x}")
    }
}

/// Per-connection state shared with the request handlers.
struct ConnCtx {
    listener: &'static str,
    reset: AtomicBool,
    notify: Notify,
}

/// A TCP stream that is closed with a RST (zero linger) when a `reset` fault asked for it.
struct ResetOnDrop {
    tcp: TcpStream,
    ctx: Arc<ConnCtx>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.ctx.reset.load(Ordering::Acquire) {
            let _ = self.tcp.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Accepts connections on `listener` forever; with `tls`, connections must speak TLS.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    let name = if tls.is_some() { "tls" } else { "plain" };
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                eprintln!("airlock-mock: accept on the {name} listener failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::new(ConnCtx {
            listener: name,
            reset: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let io = ResetOnDrop {
            tcp,
            ctx: ctx.clone(),
        };
        let state = state.clone();
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io));
                    if let Ok(Ok(stream)) = handshake.await {
                        serve(stream, state, ctx).await;
                    }
                });
            }
            None => {
                tokio::spawn(serve(io, state, ctx));
            }
        }
    }
}

async fn serve<I>(io: I, state: Arc<State>, ctx: Arc<ConnCtx>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| handle(req, svc_state.clone(), svc_ctx.clone()));
    let conn = state
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        // A `reset` fault: drop the connection (and its socket, with zero linger) right now.
        _ = ctx.notify.notified() => {}
    }
}

/// Host of a request, without port, lower-cased: from the URI (HTTP/2 `:authority`, absolute-form)
/// or the `Host` header.
fn request_host(uri: &http::Uri, headers: &HeaderMap) -> String {
    if let Some(h) = uri.host() {
        return h.to_ascii_lowercase();
    }
    let raw = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    host.to_ascii_lowercase()
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "" | "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

/// Where a request goes: the provider (dialect), the OpenAI-compatible service, and the path the
/// provider module routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resolved<'p> {
    provider: Provider,
    flavor: Flavor,
    path: &'p str,
}

/// The provider, service and provider-relative path of a request, or `None` for an unknown host.
fn resolve<'p>(host: &str, path: &'p str) -> Option<Resolved<'p>> {
    let to = |provider, flavor, path| {
        Some(Resolved {
            provider,
            flavor,
            path,
        })
    };
    if let Some(p) = Provider::for_host(host) {
        return to(p, Flavor::OpenAi, path);
    }
    if let Some(f) = Flavor::for_host(host) {
        return to(service_provider(f, path), f, path);
    }
    if !is_loopback_host(host) {
        return None;
    }
    // A loopback request may name the provider or service by a first path segment.
    if let Some(seg_end) = path
        .strip_prefix('/')
        .and_then(|after| after.find('/'))
        .map(|i| i + 1)
    {
        let (prefix, rest) = path.split_at(seg_end);
        let named = match prefix {
            "/openai" => Some((Provider::OpenAi, Flavor::OpenAi)),
            "/anthropic" => Some((Provider::Anthropic, Flavor::OpenAi)),
            "/gemini" => Some((Provider::Gemini, Flavor::OpenAi)),
            other => Flavor::for_prefix(other).map(|f| (service_provider(f, rest), f)),
        };
        if let Some((p, f)) = named {
            return to(p, f, rest);
        }
    }
    if path.starts_with("/api/") && !path.starts_with("/api/v1/") {
        return to(Provider::OpenAi, Flavor::Ollama, path);
    }
    let p = if path.starts_with("/v1/messages") {
        Provider::Anthropic
    } else if path.starts_with("/v1beta/")
        || (path.starts_with("/v1/models/") && path.contains(':'))
    {
        Provider::Gemini
    } else {
        Provider::OpenAi
    };
    to(p, Flavor::OpenAi, path)
}

/// The dialect of a request to a service: Copilot serves Anthropic's Messages API for Claude models
/// at `/v1/messages` beside its OpenAI endpoints; Code Assist speaks Gemini.
fn service_provider(flavor: Flavor, path: &str) -> Provider {
    if flavor == Flavor::Copilot && path.starts_with("/v1/messages") {
        Provider::Anthropic
    } else {
        flavor.provider()
    }
}

enum Route {
    Ollama(ollama::Endpoint),
    OpenAi(openai::Target),
    Anthropic(anthropic::Endpoint),
    Gemini(gemini::Endpoint),
}

fn route(
    provider: Provider,
    flavor: Flavor,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Route> {
    match provider {
        Provider::OpenAi if flavor == Flavor::Ollama => {
            ollama::route(method, path).map(Route::Ollama)
        }
        Provider::OpenAi => openai::route_for(flavor, method, path, query).map(Route::OpenAi),
        Provider::Anthropic => anthropic::route(method, path).map(Route::Anthropic),
        Provider::Gemini if flavor == Flavor::CodeAssist => {
            code_assist::route(method, path).map(|m| Route::Gemini(gemini::Endpoint::CodeAssist(m)))
        }
        Provider::Gemini => gemini::route(method, path).map(Route::Gemini),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn parse_switch(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        _ => Err(format!("invalid {name} '{v}': expected 1 or 0")),
    }
}

fn parse_tokens(name: &str, v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n <= MAX_TOKEN_HEADER => Ok(n),
        _ => Err(format!(
            "invalid {name} '{v}': expected an integer from 0 to {MAX_TOKEN_HEADER}"
        )),
    }
}

/// Reads the `x-mock-*` request headers in one pass over the headers (a value that is not visible
/// ASCII counts as absent; unknown `x-mock-*` names are ignored; `x-mock-azure-model` is read by the
/// OpenAI module).
fn mock_options(headers: &HeaderMap, state: &State) -> Result<(Fault, Duration, Opts), String> {
    let mut fault = state.default_fault;
    let mut delay = state.chunk_delay;
    let mut opts = Opts::default();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix("x-mock-") else {
            continue;
        };
        let Ok(v) = value.to_str().map(str::trim) else {
            continue;
        };
        match key {
            "fault" => fault = v.parse::<Fault>().map_err(|e| e.to_string())?,
            "chunk-delay-ms" => {
                delay = Duration::from_millis(v.parse::<u64>().map_err(|_| {
                    format!(
                        "invalid x-mock-chunk-delay-ms '{v}': expected milliseconds as an integer"
                    )
                })?);
            }
            "output-words" => match v.parse::<usize>() {
                Ok(n) if n <= MAX_OUTPUT_WORDS => opts.output_words = Some(n),
                _ => {
                    return Err(format!(
                        "invalid x-mock-output-words '{v}': expected an integer from 0 to {MAX_OUTPUT_WORDS}"
                    ))
                }
            },
            "cached-tokens" => {
                opts.cached_tokens = v.parse::<u64>().map_err(|_| {
                    format!("invalid x-mock-cached-tokens '{v}': expected a non-negative integer")
                })?;
            }
            "tool-call" => opts.tool_call = parse_switch("x-mock-tool-call", v)?,
            "reasoning-tokens" => {
                opts.reasoning_tokens = parse_tokens("x-mock-reasoning-tokens", v)?;
            }
            "cache-write-tokens" => {
                opts.cache_write_tokens = parse_tokens("x-mock-cache-write-tokens", v)?;
            }
            "cache-write-1h-tokens" => {
                opts.cache_write_1h_tokens = parse_tokens("x-mock-cache-write-1h-tokens", v)?;
            }
            "anthropic-delta-usage" => {
                opts.anthropic_delta_full = match v {
                    "full" => true,
                    "output" => false,
                    _ => {
                        return Err(format!(
                            "invalid x-mock-anthropic-delta-usage '{v}': expected full or output"
                        ))
                    }
                };
            }
            "choices-null" => opts.choices_null = parse_switch("x-mock-choices-null", v)?,
            "stream-crlf" => opts.stream_crlf = parse_switch("x-mock-stream-crlf", v)?,
            "sse-comments" => opts.sse_comments = parse_switch("x-mock-sse-comments", v)?,
            _ => {}
        }
    }
    Ok((fault, delay, opts))
}

/// Whether the request body has a content coding other than identity.
fn encoded(headers: &HeaderMap) -> bool {
    header_str(headers, "content-encoding")
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("identity"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `x-mock-compress` override, or the `--compress` default.
fn compress_mode(headers: &HeaderMap, state: &State) -> Result<Compress, String> {
    match headers.get("x-mock-compress").map(HeaderValue::to_str) {
        None => Ok(state.compress),
        Some(Ok(v)) => v.parse::<Compress>().map_err(|e| e.to_string()),
        Some(Err(_)) => {
            Err("invalid x-mock-compress: expected off, auto, gzip, br, zstd or deflate".to_owned())
        }
    }
}

/// Every `Accept-Encoding` value of a request, joined as one list.
fn accept_encoding(headers: &HeaderMap) -> Option<String> {
    let mut values = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |acc, v| format!("{acc}, {v}")))
}

/// The content coding a response was sent with.
fn coding_of(resp: &Response<MockBody>) -> Coding {
    match resp
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        Some("br") => Coding::Br,
        Some("zstd") => Coding::Zstd,
        Some("gzip") => Coding::Gzip,
        Some("deflate") => Coding::Deflate,
        _ => Coding::Identity,
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    ctx: Arc<ConnCtx>,
) -> Result<Response<MockBody>, Infallible> {
    if websocket::asks_upgrade(req.method(), req.headers()) {
        let host = request_host(req.uri(), req.headers());
        let full_path = req.uri().path().to_owned();
        let ws = resolve(&host, &full_path)
            .filter(|r| r.provider == Provider::OpenAi)
            .and_then(|r| websocket::Kind::for_path(r.path).map(|k| (k, r.flavor)));
        if let Some((kind, flavor)) = ws {
            // Options the upgrade asks for apply to every message on the socket.
            let opts =
                mock_options(req.headers(), &state).map_or_else(|_| Opts::default(), |(_, _, o)| o);
            return Ok(websocket::accept(
                req,
                kind,
                flavor,
                &full_path,
                host,
                opts,
                state.clone(),
                ctx.listener,
            ));
        }
    }
    let answer = Arc::new(Answer::default());
    let resp = answer_request(req, &state, &ctx, &answer).await;
    answer.set(resp.status().as_u16(), coding_of(&resp));
    Ok(resp)
}

async fn answer_request(
    req: Request<Incoming>,
    state: &State,
    ctx: &Arc<ConnCtx>,
    answer: &Arc<Answer>,
) -> Response<MockBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let host = request_host(&parts.uri, &parts.headers);
    let full_path = parts.uri.path();

    if let Some(rest) = full_path.strip_prefix("/__mock/") {
        return control(state, &parts.method, rest);
    }

    let id = state.next_id();
    let resolved = resolve(&host, full_path);
    let (dialect, flavor) = resolved.map_or((Provider::OpenAi, Flavor::OpenAi), |r| {
        (r.provider, r.flavor)
    });
    let early = Answerer {
        provider: dialect,
        flavor,
        id: &id,
        started,
    };
    // How the answer is compressed is known before anything else, so every error compresses too.
    let (compress, compress_error) = match compress_mode(&parts.headers, state) {
        Ok(c) => (c, None),
        Err(e) => (state.compress, Some(e)),
    };
    let plain = Delivery {
        fault: FaultKind::None,
        delay: Duration::ZERO,
        opts: Opts::default(),
        coding: compress.coding(accept_encoding(&parts.headers).as_deref()),
        vary: compress == Compress::Auto,
        ctx,
    };

    // Body: refuse oversize up front, then collect with a cap.
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        respond(
            reply::error(dialect, ErrorKind::TooLarge, None, &id),
            early,
            &plain,
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => {
            let r = reply::error(
                dialect,
                ErrorKind::BadRequest,
                Some("could not read the request body"),
                &id,
            );
            return respond(r, early, &plain);
        }
    };

    if state.log.enabled() {
        state.log.push(Recorded {
            listener: ctx.listener,
            version: parts.version,
            host: host.clone(),
            method: parts.method.clone(),
            path: full_path.to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
            answer: answer.clone(),
        });
    }

    let Some(Resolved {
        provider,
        flavor,
        path,
    }) = resolved
    else {
        let msg = format!(
            "airlock-mock does not serve host '{host}'; it serves api.openai.com, api.anthropic.com, \
generativelanguage.googleapis.com, api.groq.com, api.x.ai, openrouter.ai, api.mistral.ai, \
api.deepseek.com, api.together.xyz and <resource>.openai.azure.com (or any path on a loopback host)"
        );
        let r = reply::error(Provider::OpenAi, ErrorKind::NotFound, Some(&msg), &id);
        return respond(r, early, &plain);
    };
    let who = Answerer {
        provider,
        flavor,
        id: &id,
        started,
    };

    let (fault, delay, opts) = match mock_options(&parts.headers, state) {
        Ok(o) => o,
        Err(msg) => {
            let r = reply::error(provider, ErrorKind::BadRequest, Some(&msg), &id);
            return respond(r, who, &plain);
        }
    };
    if let Some(msg) = compress_error {
        let r = reply::error(provider, ErrorKind::BadRequest, Some(&msg), &id);
        return respond(r, who, &plain);
    }

    if let Some(wait) = fault.slow_headers {
        tokio::time::sleep(wait).await;
    }
    match fault.kind {
        FaultKind::Reset | FaultKind::Close => {
            // Reset: zero linger, so dropping the socket sends a RST; close: a plain FIN.
            if fault.kind == FaultKind::Reset {
                ctx.reset.store(true, Ordering::Release);
            }
            ctx.notify.notify_one();
            // The connection task drops this future together with the connection.
            return std::future::pending().await;
        }
        // Never answer; the future is dropped when the client goes away.
        FaultKind::StallHeaders => return std::future::pending().await,
        _ => {}
    }

    let call = Call {
        provider,
        flavor,
        method: &parts.method,
        path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
        opts,
        id: &id,
        created: unix_now(),
    };
    let mut reply = match route(provider, flavor, &parts.method, path, parts.uri.query()) {
        None => match provider {
            Provider::OpenAi if flavor == Flavor::Ollama => ollama::not_found(),
            Provider::OpenAi => openai::not_found(&call),
            Provider::Anthropic => anthropic::not_found(&call),
            Provider::Gemini => gemini::not_found(&call),
        },
        Some(route) => {
            let auth = match provider {
                // A local Ollama takes no key.
                Provider::OpenAi if flavor == Flavor::Ollama => Ok(()),
                Provider::OpenAi => openai::authenticate(&call),
                Provider::Anthropic => anthropic::authenticate(&call),
                Provider::Gemini => gemini::authenticate(&call),
            };
            match (auth, fault.kind) {
                (Err(r), _) => r,
                (Ok(()), FaultKind::Status(429)) => {
                    reply::error_in(provider, flavor, ErrorKind::RateLimited, None, &id)
                }
                (Ok(()), FaultKind::Status(code)) => {
                    reply::error_in(provider, flavor, ErrorKind::Server(code), None, &id)
                }
                (Ok(()), FaultKind::EmptyStatus(code)) => reply::empty_error(code),
                (Ok(()), FaultKind::Html502) => reply::load_balancer_502(),
                (Ok(()), FaultKind::ContentFilter) if flavor == Flavor::Azure => {
                    compat::content_filter_refusal()
                }
                (Ok(()), FaultKind::ContentFilter) => {
                    let msg = "airlock-mock serves the content-filter fault only on Azure OpenAI \
hosts (<resource>.openai.azure.com, or /azure/... on a loopback host)";
                    reply::error(provider, ErrorKind::BadRequest, Some(msg), &id)
                }
                (Ok(()), _) if encoded(&parts.headers) => {
                    let msg = "airlock-mock does not decode request bodies sent with a \
Content-Encoding; send the JSON body uncompressed";
                    reply::error(provider, ErrorKind::BadRequest, Some(msg), &id)
                }
                (Ok(()), _) => match &route {
                    Route::Ollama(e) => ollama::handle(*e, &call),
                    Route::OpenAi(t) => openai::handle(t, &call),
                    Route::Anthropic(e) => anthropic::handle(e, &call),
                    Route::Gemini(e) => gemini::handle(e, &call),
                },
            }
        }
    };

    // Mid-stream faults apply to successful answers only.
    let ok = reply.status == StatusCode::OK;
    if ok && fault.kind == FaultKind::ErrorMidStream && matches!(reply.body, ReplyBody::Full(_)) {
        reply = reply::error_in(provider, flavor, ErrorKind::Server(500), None, &id);
    }
    let delivery = Delivery {
        fault: fault.kind,
        delay,
        opts,
        ..plain
    };
    respond(reply, who, &delivery)
}

/// Who answers a request, for the common response headers.
#[derive(Clone, Copy)]
struct Answerer<'a> {
    provider: Provider,
    flavor: Flavor,
    id: &'a str,
    started: Instant,
}

/// How a reply is delivered: the fault, pacing, stream options, content coding, and the connection
/// (for faults that reset it).
struct Delivery<'a> {
    fault: FaultKind,
    delay: Duration,
    opts: Opts,
    /// The content coding for a reply with a body.
    coding: Coding,
    /// The coding was negotiated from `Accept-Encoding` (so the answer varies with it).
    vary: bool,
    ctx: &'a Arc<ConnCtx>,
}

impl Delivery<'_> {
    /// An end that resets the TCP connection (zero linger) once the body's bytes are out.
    fn reset_end(&self) -> End {
        let ctx = self.ctx.clone();
        End::Reset(Box::new(move || {
            ctx.reset.store(true, Ordering::Release);
            ctx.notify.notify_one();
        }))
    }
}

/// An event stream's frames after the transport options: a `: keep-alive` comment frame before
/// every frame (`x-mock-sse-comments`; it ends like the stream's frames do, so CRLF after Gemini's
/// CRLF frames), then every LF not already preceded by CR turned into CRLF (`x-mock-stream-crlf`).
/// Other bodies are left alone.
fn shape_frames(frames: Vec<Bytes>, content_type: &str, opts: &Opts) -> Vec<Bytes> {
    if !(opts.sse_comments || opts.stream_crlf) || !content_type.starts_with("text/event-stream") {
        return frames;
    }
    let frames = if opts.sse_comments {
        let comment = if frames.first().is_some_and(|f| f.ends_with(b"\r\n\r\n")) {
            to_crlf(KEEP_ALIVE)
        } else {
            Bytes::from_static(KEEP_ALIVE)
        };
        let mut out = Vec::with_capacity(frames.len() * 2);
        for f in frames {
            out.push(comment.clone());
            out.push(f);
        }
        out
    } else {
        frames
    };
    if opts.stream_crlf {
        frames.iter().map(|f| to_crlf(f)).collect()
    } else {
        frames
    }
}

/// `bytes` with every LF that is not already part of a CRLF turned into CRLF.
fn to_crlf(bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Bytes::from(out)
}

/// A UUID-shaped request id for services that send UUIDs (Azure's `apim-request-id`).
fn uuid_like(id: &str) -> String {
    format!(
        "{}-{}-4000-8000-00000000{}",
        id.get(..8).unwrap_or("00000000"),
        id.get(8..12).unwrap_or("0000"),
        id.get(12..16).unwrap_or("0000"),
    )
}

/// Turns a reply into a response: body faults, stream shaping, compression, pacing, and the
/// provider's usual headers.
fn respond(reply: Reply, who: Answerer<'_>, d: &Delivery<'_>) -> Response<MockBody> {
    let Reply {
        status,
        content_type,
        headers,
        body,
    } = reply;
    // Faults that change the body apply to successful answers only.
    let fault = if status == StatusCode::OK || !d.fault.shapes_body() {
        d.fault
    } else {
        FaultKind::None
    };
    let has_body = match &body {
        ReplyBody::Full(b) => !b.is_empty(),
        ReplyBody::Stream { .. } => true,
    };
    let coding = if has_body { d.coding } else { Coding::Identity };
    let mut declared_len = None;
    let body = match body {
        ReplyBody::Full(b) => full_body(b, fault, coding, d, &mut declared_len),
        ReplyBody::Stream {
            frames,
            error_frame,
        } => stream_body(frames, error_frame, content_type, fault, coding, d),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let content_type = if fault == FaultKind::WrongContentType {
        "text/html; charset=utf-8"
    } else {
        content_type
    };
    if !content_type.is_empty() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if !has_body {
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    if let Some(len) = declared_len {
        // The full length is announced, so a cut body is visibly incomplete.
        if let Ok(v) = HeaderValue::try_from(len.to_string()) {
            h.insert(CONTENT_LENGTH, v);
        }
    }
    if coding != Coding::Identity {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    }
    // A load balancer's page carries none of the provider's headers.
    if fault != FaultKind::Html502 {
        provider_headers(h, who);
    }
    if content_type.starts_with("text/event-stream") {
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
    }
    for (name, value) in headers {
        h.insert(name, value);
    }
    if has_body && (d.vary || coding != Coding::Identity) {
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    resp
}

/// A non-streamed body after the fault and the content coding. `declared` gets the length to
/// announce when it is not the length of what is sent.
fn full_body(
    b: Bytes,
    fault: FaultKind,
    coding: Coding,
    d: &Delivery<'_>,
    declared: &mut Option<u64>,
) -> MockBody {
    // Damage to the JSON itself comes before compression.
    let b = match fault {
        FaultKind::InvalidJsonFrame => b.slice(..b.len() / 2),
        FaultKind::InvalidUtf8Frame => mangle::spoil_utf8_body(&b),
        FaultKind::HugeFrame(mib) => {
            let piece = mangle::huge_body(&b, mib);
            if coding == Coding::Identity {
                *declared = Some(piece.len());
            }
            let mut plan = Plan::new(vec![piece], Duration::ZERO);
            plan.encoder = coding.encoder();
            return MockBody::planned(plan);
        }
        _ => b,
    };
    let Ok(wire) = coding.encode_all(&b) else {
        return MockBody::frames(Vec::new(), Duration::ZERO, true);
    };
    let compressed = coding != Coding::Identity;
    match fault {
        FaultKind::ResetMidStream | FaultKind::ResetMidFrame | FaultKind::StallMidStream => {
            *declared = Some(wire.len() as u64);
            let mut plan = Plan::new(
                vec![Piece::Bytes(wire.slice(..wire.len() / 2))],
                Duration::ZERO,
            );
            plan.complete = false;
            plan.end = match fault {
                FaultKind::ResetMidStream => End::Abort,
                FaultKind::ResetMidFrame => d.reset_end(),
                _ => End::Stall,
            };
            MockBody::planned(plan)
        }
        FaultKind::ResetAt(n) | FaultKind::StallAt(n) => {
            let mut plan = Plan::new(vec![Piece::Bytes(wire)], Duration::ZERO);
            plan.limit = Some(n);
            plan.end = if matches!(fault, FaultKind::ResetAt(_)) {
                d.reset_end()
            } else {
                End::Stall
            };
            MockBody::planned(plan)
        }
        // A compressed body goes out chunked, without a content-length, as CDNs send it.
        _ if compressed => MockBody::planned(Plan::new(vec![Piece::Bytes(wire)], Duration::ZERO)),
        _ => MockBody::full(wire),
    }
}

/// A stream after the fault, the transport options and the content coding.
fn stream_body(
    mut frames: Vec<Bytes>,
    error_frame: Bytes,
    content_type: &str,
    fault: FaultKind,
    coding: Coding,
    d: &Delivery<'_>,
) -> MockBody {
    let shape = |frames| shape_frames(frames, content_type, &d.opts);
    let mut plan = Plan::new(Vec::new(), d.delay);
    let cut = cut_point(frames.len());
    let frames = match fault {
        FaultKind::ResetMidStream | FaultKind::StallMidStream => {
            frames.truncate(cut);
            plan.complete = false;
            plan.end = if fault == FaultKind::ResetMidStream {
                End::Abort
            } else {
                End::Stall
            };
            shape(frames)
        }
        FaultKind::ResetMidFrame => {
            frames.truncate(cut + 1);
            plan.complete = false;
            plan.halve_last = true;
            plan.end = d.reset_end();
            shape(frames)
        }
        FaultKind::ErrorMidStream => {
            frames.truncate(cut);
            frames.push(error_frame);
            shape(frames)
        }
        FaultKind::ResetAt(n) | FaultKind::StallAt(n) => {
            plan.limit = Some(n);
            plan.end = if matches!(fault, FaultKind::ResetAt(_)) {
                d.reset_end()
            } else {
                End::Stall
            };
            shape(frames)
        }
        FaultKind::InvalidJsonFrame => {
            let mut shaped = shape(frames);
            let cut = cut_point(shaped.len());
            mangle::insert_invalid_json(&mut shaped, cut);
            shaped
        }
        FaultKind::InvalidUtf8Frame => {
            let mut shaped = shape(frames);
            let cut = cut_point(shaped.len());
            mangle::spoil_utf8(&mut shaped, cut);
            shaped
        }
        _ => shape(frames),
    };
    plan.pieces = match fault {
        FaultKind::HugeFrame(mib) => mangle::huge_stream(frames, mib),
        _ => frames.into_iter().map(Piece::Bytes).collect(),
    };
    plan.encoder = coding.encoder();
    MockBody::planned(plan)
}

/// The headers every answer of the provider (and service) carries.
fn provider_headers(h: &mut HeaderMap, who: Answerer<'_>) {
    let id = who.id;
    let request_id = HeaderValue::try_from(format!("req_mock{id}")).ok();
    match who.provider {
        Provider::OpenAi => {
            if let Some(v) = request_id {
                h.insert("x-request-id", v);
            }
            match who.flavor {
                Flavor::OpenAi => {
                    let ms = who.started.elapsed().as_millis().max(1);
                    if let Ok(v) = HeaderValue::try_from(ms.to_string()) {
                        h.insert("openai-processing-ms", v);
                    }
                    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
                    h.insert("openai-organization", HeaderValue::from_static("org-mock"));
                }
                Flavor::Azure => {
                    if let Ok(v) = HeaderValue::try_from(uuid_like(id)) {
                        h.insert("apim-request-id", v);
                    }
                    h.insert("x-ms-region", HeaderValue::from_static("East US"));
                }
                _ => {}
            }
        }
        Provider::Anthropic => {
            if let Some(v) = request_id {
                h.insert("request-id", v);
            }
            h.insert(
                "anthropic-organization-id",
                HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
            );
        }
        Provider::Gemini => {
            h.insert(
                "server",
                HeaderValue::from_static("scaffolding on HTTPServer2"),
            );
            h.insert(
                "vary",
                HeaderValue::from_static("Origin, X-Origin, Referer"),
            );
        }
    }
}

/// The `/__mock/...` endpoints.
fn control(state: &State, method: &Method, rest: &str) -> Response<MockBody> {
    let (status, body) = match (method, rest) {
        (&Method::GET, "requests") => (StatusCode::OK, state.log.to_json().to_bytes()),
        (&Method::DELETE, "requests") => {
            let n = state.log.clear();
            (StatusCode::OK, j!({ "cleared": n }).to_bytes())
        }
        (&Method::GET, "health") => (StatusCode::OK, Bytes::from_static(b"{\"ok\":true}")),
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(
                b"{\"error\":\"unknown mock endpoint; use GET or DELETE /__mock/requests, or GET /__mock/health\"}",
            ),
        ),
    };
    let mut resp = Response::new(MockBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(reply::JSON));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("API.OpenAI.com:443"));
        let uri: http::Uri = "/v1/models".parse().unwrap_or_default();
        assert_eq!(request_host(&uri, &h), "api.openai.com");
        h.insert(HOST, HeaderValue::from_static("[::1]:8080"));
        assert_eq!(request_host(&uri, &h), "[::1]");
    }

    #[test]
    fn resolution() {
        let r = |host: &str, path: &'static str| {
            resolve(host, path).map(|r| (r.provider, r.flavor, r.path))
        };
        assert_eq!(
            r("api.anthropic.com", "/v1/messages"),
            Some((Provider::Anthropic, Flavor::OpenAi, "/v1/messages"))
        );
        assert_eq!(
            r("127.0.0.1", "/anthropic/v1/messages"),
            Some((Provider::Anthropic, Flavor::OpenAi, "/v1/messages"))
        );
        assert_eq!(
            r(
                "localhost",
                "/v1beta/models/gemini-2.5-flash:generateContent"
            ),
            Some((
                Provider::Gemini,
                Flavor::OpenAi,
                "/v1beta/models/gemini-2.5-flash:generateContent"
            ))
        );
        assert_eq!(
            r("127.0.0.1", "/v1/chat/completions"),
            Some((Provider::OpenAi, Flavor::OpenAi, "/v1/chat/completions"))
        );
        assert_eq!(
            r("127.0.0.1", "/openai/v1/chat/completions"),
            Some((Provider::OpenAi, Flavor::OpenAi, "/v1/chat/completions"))
        );
        assert_eq!(
            r("127.0.0.1", "/groq/openai/v1/chat/completions"),
            Some((
                Provider::OpenAi,
                Flavor::Groq,
                "/openai/v1/chat/completions"
            ))
        );
        assert_eq!(
            r("api.groq.com", "/openai/v1/chat/completions"),
            Some((
                Provider::OpenAi,
                Flavor::Groq,
                "/openai/v1/chat/completions"
            ))
        );
        assert_eq!(
            r("mockres.openai.azure.com", "/openai/v1/chat/completions"),
            Some((
                Provider::OpenAi,
                Flavor::Azure,
                "/openai/v1/chat/completions"
            ))
        );
        assert_eq!(r("a.b.openai.azure.com", "/openai/v1/models"), None);
        assert_eq!(r("openai.azure.com", "/openai/v1/models"), None);
        assert_eq!(r("example.com", "/v1/chat/completions"), None);
        assert_eq!(
            r("127.0.0.1", "/"),
            Some((Provider::OpenAi, Flavor::OpenAi, "/"))
        );
    }

    #[test]
    fn crlf_conversion_keeps_existing_crlf() {
        assert_eq!(
            to_crlf(b"data: x\n\n"),
            Bytes::from_static(b"data: x\r\n\r\n")
        );
        assert_eq!(
            to_crlf(b"data: x\r\n\r\n"),
            Bytes::from_static(b"data: x\r\n\r\n")
        );
        assert_eq!(
            to_crlf(b"event: a\ndata: b\n\n"),
            Bytes::from_static(b"event: a\r\ndata: b\r\n\r\n")
        );
    }
}
