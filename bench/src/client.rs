//! HTTP/1.1 keep-alive clients for the four ways of reaching the mock provider: directly over TLS
//! (the baseline), through an HTTPS proxy with CONNECT and a TLS session that trusts the proxy's CA
//! (airlockd's MITM mode and mitmproxy), and plain HTTP to airlockd's base-URL mode. It only ever
//! connects to loopback addresses, and every connect and request has a timeout set by the caller.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The provider host every scenario talks to (routed to the mock by policy or addon).
pub const PROVIDER_HOST: &str = "api.openai.com";

/// The small non-streaming chat body used for latency and throughput.
pub const CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// The streaming chat body.
pub const STREAM_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// The streaming chat body asking for a usage chunk (what airlockd asks upstream for on the
/// client's behalf), for a like-for-like direct stream baseline.
pub const STREAM_BODY_USAGE: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;

/// How a scenario reaches the mock.
#[derive(Debug, Clone)]
pub enum Route {
    /// TLS straight to the mock.
    Direct {
        /// Mock address.
        addr: SocketAddr,
    },
    /// `CONNECT authority` through an HTTP proxy, then TLS (to the proxy's leaf when it
    /// intercepts, end to end to the mock when it tunnels).
    Connect {
        /// Proxy address.
        proxy: SocketAddr,
        /// `host:port` asked for in the CONNECT line (a loopback address when tunnelling).
        authority: String,
    },
    /// Plain HTTP to airlockd's base-URL mode.
    Plain {
        /// Agent address.
        addr: SocketAddr,
    },
}

/// One way of reaching the mock: a route, the TLS trust to use and the request line to send.
#[derive(Clone)]
pub struct Target {
    /// Short name used in the report (`direct`, `airlock-mitm`, …).
    pub name: String,
    /// Route.
    pub route: Route,
    /// TLS client config (trusting the mock's or the proxy's CA); `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Request path.
    pub path: String,
    /// Host header.
    pub host_header: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Body of streaming requests.
    pub stream_body: &'static str,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("route", &self.route)
            .field("path", &self.path)
            .finish()
    }
}

/// A rustls client config that trusts only the CA certificates in `ca_pem` and offers HTTP/1.1.
pub fn tls_config(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca_pem)
        .with_context(|| format!("cannot read CA file {}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.with_context(|| format!("bad PEM in {}", ca_pem.display()))?;
        roots.add(cert).with_context(|| {
            format!("CA in {} is not usable as a trust anchor", ca_pem.display())
        })?;
        n += 1;
    }
    if n == 0 {
        bail!("no certificate in {}", ca_pem.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no usable protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A live keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// Timings of one streamed response.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// Request sent → response headers.
    pub headers: Duration,
    /// Request sent → first non-empty body chunk.
    pub first_chunk: Duration,
    /// Request sent → end of body.
    pub total: Duration,
    /// Number of SSE `data:` events seen.
    pub events: usize,
    /// Body bytes.
    pub bytes: usize,
}

impl Target {
    fn is_loopback(&self) -> bool {
        let ip = match &self.route {
            Route::Direct { addr } | Route::Plain { addr } => addr.ip(),
            Route::Connect { proxy, authority } => {
                let tunnel_ok = authority.starts_with(PROVIDER_HOST)
                    || authority
                        .rsplit_once(':')
                        .and_then(|(h, _)| h.parse::<std::net::IpAddr>().ok())
                        .is_some_and(|ip| ip.is_loopback());
                if !tunnel_ok {
                    return false;
                }
                proxy.ip()
            }
        };
        ip.is_loopback()
    }

    /// Opens a new connection (TCP, CONNECT if proxied, TLS if any) and does the HTTP/1.1 handshake.
    pub async fn connect(&self) -> Result<Conn> {
        if !self.is_loopback() {
            bail!(
                "refusing to connect to a non-loopback address ({:?})",
                self.route
            );
        }
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| {
                anyhow!(
                    "{}: connect timed out after {:?}",
                    self.name,
                    self.connect_timeout
                )
            })?
    }

    async fn connect_inner(&self) -> Result<Conn> {
        let addr = match &self.route {
            Route::Direct { addr } | Route::Plain { addr } => *addr,
            Route::Connect { proxy, .. } => *proxy,
        };
        let mut tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("{}: cannot connect to {addr}", self.name))?;
        tcp.set_nodelay(true)?;
        if let Route::Connect { authority, .. } = &self.route {
            connect_tunnel(&mut tcp, authority)
                .await
                .with_context(|| format!("{}: CONNECT through {addr} failed", self.name))?;
        }
        match &self.tls {
            Some(cfg) => {
                let name = ServerName::try_from(PROVIDER_HOST.to_string())?;
                let tls = TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("{}: TLS handshake failed", self.name))?;
                handshake(tls).await
            }
            None => handshake(tcp).await,
        }
    }

    /// The request for the small chat body (or the streaming one with pacing headers).
    pub fn request(&self, stream: Option<(u32, u32)>) -> Result<Request<Full<Bytes>>> {
        let body = if stream.is_some() {
            self.stream_body
        } else {
            CHAT_BODY
        };
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.host_header.as_str())
            .header(
                header::AUTHORIZATION,
                "Bearer sk-airlock-bench-not-a-real-key",
            )
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::ACCEPT,
                if stream.is_some() {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            );
        if let Some((delay_ms, words)) = stream {
            b = b
                .header("x-mock-chunk-delay-ms", delay_ms)
                .header("x-mock-output-words", words);
        }
        Ok(b.body(Full::new(Bytes::from_static(body.as_bytes())))?)
    }
}

async fn handshake<T>(io: T) -> Result<Conn>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender })
}

/// Sends `CONNECT host:port` on `tcp` and reads the proxy's answer up to the end of its headers,
/// never past it (the next bytes belong to TLS). Fails unless the status is 2xx.
async fn connect_tunnel(tcp: &mut TcpStream, authority: &str) -> Result<()> {
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            bail!("CONNECT answer headers longer than 16 KiB");
        }
        let n = tcp.read(&mut byte).await?;
        if n == 0 {
            bail!("proxy closed the connection during CONNECT");
        }
        head.push(byte[0]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let code = line.split_whitespace().nth(1).unwrap_or("");
    if !code.starts_with('2') {
        bail!("proxy answered CONNECT with {line:?}");
    }
    Ok(())
}

impl Conn {
    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends a request and reads the whole response. Returns the status and body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends a streaming request and times the response: headers, first chunk, end.
    pub async fn send_stream(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, StreamTiming, Bytes)> {
        self.sender.ready().await?;
        let t0 = Instant::now();
        let resp = self.sender.send_request(req).await?;
        let headers = t0.elapsed();
        let status = resp.status();
        let mut body = resp.into_body();
        let mut first_chunk = None;
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() && first_chunk.is_none() {
                    first_chunk = Some(t0.elapsed());
                }
                all.extend_from_slice(&data);
            }
        }
        let total = t0.elapsed();
        let text = String::from_utf8_lossy(&all);
        let events = text.lines().filter(|l| l.starts_with("data:")).count();
        Ok((
            status,
            StreamTiming {
                headers,
                first_chunk: first_chunk.unwrap_or(total),
                total,
                events,
                bytes: all.len(),
            },
            Bytes::from(all),
        ))
    }
}

/// A target together with at most one live connection: the unit of work of the load loops. A
/// request that fails or times out drops the connection, and the next one reconnects (the connect
/// time then counts in that request's latency).
pub struct Client {
    target: Arc<Target>,
    conn: Option<Conn>,
    /// Open a new connection for every request (cold-connection measurement).
    pub fresh: bool,
}

impl Client {
    /// A client with no connection yet.
    pub fn new(target: Arc<Target>) -> Client {
        Client {
            target,
            conn: None,
            fresh: false,
        }
    }

    /// Connects now if not connected (used to open the whole pool before a run).
    pub async fn ensure_connected(&mut self) -> Result<()> {
        if self.conn.as_ref().is_none_or(|c| !c.is_open()) {
            self.conn = Some(self.target.connect().await?);
        }
        Ok(())
    }

    /// One small chat request; `Ok` only for a 200 with a non-empty body.
    pub async fn chat(&mut self) -> Result<()> {
        let req = self.target.request(None)?;
        let mut conn = match self.conn.take() {
            Some(c) if c.is_open() && !self.fresh => c,
            _ => self.target.connect().await?,
        };
        let (status, body) = conn.send(req).await?;
        if status != StatusCode::OK || body.is_empty() {
            bail!(
                "{}: status {status}, {} body bytes",
                self.target.name,
                body.len()
            );
        }
        if !self.fresh {
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// One chat request returning status and body whatever they are (for verification).
    pub async fn chat_raw(&mut self, stream: Option<(u32, u32)>) -> Result<(StatusCode, Bytes)> {
        self.ensure_connected().await?;
        let req = self.target.request(stream)?;
        let mut conn = self.conn.take().ok_or_else(|| anyhow!("not connected"))?;
        let out = conn.send(req).await?;
        self.conn = Some(conn);
        Ok(out)
    }

    /// One paced streaming request, timed.
    pub async fn stream(
        &mut self,
        delay_ms: u32,
        words: u32,
    ) -> Result<(StatusCode, StreamTiming, Bytes)> {
        self.ensure_connected().await?;
        let req = self.target.request(Some((delay_ms, words)))?;
        let mut conn = self.conn.take().ok_or_else(|| anyhow!("not connected"))?;
        let out = conn.send_stream(req).await?;
        self.conn = Some(conn);
        Ok(out)
    }
}

/// A GET on airlockd's control API (HTTP over its unix socket); the body of a 200.
pub async fn control_get(socket: &Path, path: &str) -> Result<Bytes> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to the control socket {}", socket.display()))?;
    let mut conn = handshake(stream).await?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, "airlock")
        .body(Full::new(Bytes::new()))?;
    let (status, body) = conn.send(req).await?;
    if status != StatusCode::OK {
        bail!("GET {path}: status {status}");
    }
    Ok(body)
}
