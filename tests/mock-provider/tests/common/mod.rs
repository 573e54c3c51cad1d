//! Shared helpers of the mock's integration tests: start the built `airlock-mock` binary on ephemeral
//! ports in a temporary directory (killed on drop), and talk to it the way Airlock's upstream client
//! would: TCP to 127.0.0.1, TLS with SNI api.openai.com etc. trusting only mock-ca.pem, HTTP/1.1 or
//! HTTP/2 by ALPN, or plain HTTP/1.1 to the plain listener.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Provider hosts and credential headers every test file uses.
pub mod hosts {
    pub const OPENAI: &str = "api.openai.com";
    pub const ANTHROPIC: &str = "api.anthropic.com";
    pub const GEMINI: &str = "generativelanguage.googleapis.com";
    pub const BEARER: (&str, &str) = ("authorization", "Bearer sk-test-123");
    pub const XKEY: (&str, &str) = ("x-api-key", "sk-ant-test");
    pub const AVERSION: (&str, &str) = ("anthropic-version", "2023-06-01");
    pub const GKEY: (&str, &str) = ("x-goog-api-key", "AIza-test");
}

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How to reach the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TLS, ALPN http/1.1.
    H1,
    /// TLS, ALPN h2.
    H2,
    /// Plain HTTP/1.1 on the plain listener.
    Plain,
}

/// A running mock process.
pub struct Mock {
    child: Child,
    dir: PathBuf,
    /// TLS port.
    pub port: u16,
    /// Plain port, if started with one.
    pub plain_port: Option<u16>,
    /// The ready-file JSON.
    pub ready: Value,
    /// The stdout line.
    pub line: String,
    tls: Arc<ClientConfig>,
    tls_h2: Arc<ClientConfig>,
}

impl Mock {
    /// Process id of the mock.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the mock process (its sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A `kB` line of the mock's `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in bytes.
    pub fn status_bytes(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in status"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }

    /// The request log (`GET /__mock/requests` on the plain listener).
    pub async fn requests(&self) -> Vec<Value> {
        let (_, v) = self
            .json(
                Proto::Plain,
                raw("GET", "127.0.0.1", "/__mock/requests", &[], ""),
            )
            .await;
        v["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Starts the binary with a plain listener and `extra` arguments; returns once it is listening.
    pub fn start(extra: &[&str]) -> Mock {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("airlock-mock-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ready_file = dir.join("ready.json");
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-mock"))
            .arg("--cert-dir")
            .arg(&dir)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(["--plain-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn airlock-mock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("airlock-mock listening on 127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        let ready: Value =
            serde_json::from_slice(&std::fs::read(&ready_file).expect("ready file")).unwrap();
        let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();
        let plain_port = ready["plain_port"]
            .as_u64()
            .map(|p| u16::try_from(p).unwrap());
        let ca_pem = std::fs::read(ready["ca_file"].as_str().unwrap()).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = |alpn: &[u8]| {
            let mut c = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        Mock {
            child,
            dir,
            port,
            plain_port,
            ready,
            line,
            tls: config(b"http/1.1"),
            tls_h2: config(b"h2"),
        }
    }

    /// Sends one request on a new connection and returns the response head and streaming body.
    pub async fn send(&self, proto: Proto, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.try_send(proto, req).await.expect("request failed")
    }

    /// Like [`Mock::send`], but returns the client error instead of panicking.
    pub async fn try_send(
        &self,
        proto: Proto,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("api.openai.com")
            .to_owned();
        match proto {
            Proto::Plain => {
                let tcp = TcpStream::connect(("127.0.0.1", self.plain_port.unwrap()))
                    .await
                    .unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender.send_request(req).await
            }
            Proto::H1 | Proto::H2 => {
                let config = if proto == Proto::H2 {
                    self.tls_h2.clone()
                } else {
                    self.tls.clone()
                };
                let tcp = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
                let tls = TlsConnector::from(config)
                    .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
                    .await
                    .expect("TLS handshake with the mock CA");
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if proto == Proto::H2 {
                    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
                    let (mut sender, conn) = hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(tls),
                    )
                    .await?;
                    tokio::spawn(conn);
                    // HTTP/2 needs an absolute URI for :scheme and :authority.
                    let (mut parts, body) = req.into_parts();
                    parts.uri = format!("https://{host}{}", parts.uri).parse().unwrap();
                    parts.headers.remove(http::header::HOST);
                    sender.send_request(Request::from_parts(parts, body)).await
                } else {
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                    tokio::spawn(conn);
                    sender.send_request(req).await
                }
            }
        }
    }

    /// Sends a request and reads the whole body as text (panics on a body error).
    pub async fn text(&self, proto: Proto, req: Request<Full<Bytes>>) -> (Response<()>, String) {
        let resp = self.send(proto, req).await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    /// Sends a request and parses the body as JSON.
    pub async fn json(&self, proto: Proto, req: Request<Full<Bytes>>) -> (Response<()>, Value) {
        let (resp, text) = self.text(proto, req).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (resp, v)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A POST with a JSON body to `host` + `path`, with extra headers.
pub fn post(
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Request<Full<Bytes>> {
    let mut b = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// A request with any method and a raw body.
pub fn raw(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// Reads a body frame by frame: the data frames received and whether the body ended in an error.
pub async fn frames(resp: Response<Incoming>) -> (Vec<Bytes>, Option<hyper::Error>) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, None),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.push(d);
                }
            }
            Some(Err(e)) => return (out, Some(e)),
        }
    }
}

/// An incremental decoder of a response's `Content-Encoding`: each [`Decoder::feed`] returns what
/// the bytes fed so far decode to, beyond what earlier calls returned.
pub enum Decoder {
    /// No coding.
    Identity,
    /// gzip.
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    /// zlib.
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    /// Brotli.
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    /// Zstandard.
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    /// A decoder for a `Content-Encoding` value (absent: identity).
    pub fn new(coding: Option<&str>) -> Decoder {
        match coding {
            None | Some("identity") => Decoder::Identity,
            Some("gzip") => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            Some("deflate") => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Some("br") => Decoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            Some("zstd") => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }

    /// Decodes `data`; returns the newly decoded bytes.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match self {
            Decoder::Identity => data.to_vec(),
            Decoder::Gzip(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                std::mem::take(d.get_mut())
            }
            Decoder::Deflate(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                std::mem::take(d.get_mut())
            }
            Decoder::Br(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                std::mem::take(d.get_mut())
            }
            Decoder::Zstd(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                std::mem::take(d.get_mut())
            }
        }
    }
}

/// A whole body in `coding`, decoded.
pub fn decode(coding: Option<&str>, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        None | Some("identity") => out.extend_from_slice(data),
        Some("gzip") => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(data).unwrap(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

/// One SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    /// The `event:` line, if any.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
}

impl Sse {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame not JSON ({e}): {}", self.data))
    }
}

/// Parses an event stream (LF or CRLF line endings), checking every frame ends with a blank line.
pub fn parse_sse(text: &str) -> Vec<Sse> {
    let normalised = text.replace("\r\n", "\n");
    assert!(
        normalised.ends_with("\n\n"),
        "stream does not end with a blank line: {text:?}"
    );
    normalised
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let mut event = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Sse {
                event,
                data: data.join("\n"),
            }
        })
        .collect()
}

/// One item of an event stream, in order: a comment line (`: text`, without the colon and the
/// space) or a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// A comment frame.
    Comment(String),
    /// A data frame.
    Frame(Sse),
}

/// Parses an event stream that may contain comment frames, keeping their positions. `crlf` says
/// which line ending every line must use (no bare LF when true, no CR at all when false).
pub fn parse_sse_items(text: &str, crlf: bool) -> Vec<SseItem> {
    if crlf {
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in a CRLF stream: {text:?}"
        );
    } else {
        assert!(!text.contains('\r'), "CR in an LF stream: {text:?}");
    }
    let normalised = text.replace("\r\n", "\n");
    assert!(
        normalised.ends_with("\n\n"),
        "stream does not end with a blank line: {text:?}"
    );
    normalised
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            if let Some(c) = frame.strip_prefix(':') {
                assert!(!c.contains('\n'), "multi-line comment frame {frame:?}");
                return SseItem::Comment(c.trim_start().to_owned());
            }
            let mut event = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            SseItem::Frame(Sse {
                event,
                data: data.join("\n"),
            })
        })
        .collect()
}

/// The frames of a parsed stream, comments dropped.
pub fn only_frames(items: &[SseItem]) -> Vec<Sse> {
    items
        .iter()
        .filter_map(|i| match i {
            SseItem::Frame(f) => Some(f.clone()),
            SseItem::Comment(_) => None,
        })
        .collect()
}

/// The JSON chunks of an OpenAI-style stream that must end with `data: [DONE]`.
pub fn openai_chunks(text: &str) -> Vec<Value> {
    let events = parse_sse(text);
    assert_eq!(
        events.last().map(|e| e.data.as_str()),
        Some("[DONE]"),
        "{text}"
    );
    events[..events.len() - 1].iter().map(Sse::json).collect()
}
