//! `airlock-mock`: a wire-faithful stand-in for api.openai.com, api.anthropic.com,
//! generativelanguage.googleapis.com and the OpenAI-compatible services (Groq, xAI, OpenRouter,
//! Mistral, DeepSeek, Together, Azure OpenAI), used by Airlock's tests and benchmarks because the real
//! providers cannot be reached from the test machines. It serves the providers' request, response,
//! stream and error formats with deterministic content and token counts, injects faults on request,
//! and records what it received for tests to inspect. See the crate README for flags and headers.

pub mod anthropic;
pub mod body;
pub mod cert;
pub mod code_assist;
pub mod compat;
pub mod encoding;
pub mod fault;
pub mod gemini;
pub mod json;
pub mod mangle;
pub mod ollama;
pub mod openai;
pub mod record;
pub mod reply;
pub mod server;
pub mod text;
pub mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::encoding::Compress;
use crate::fault::Fault;
use crate::record::RequestLog;
use crate::server::State;

/// How to run the mock.
#[derive(Debug, Clone)]
pub struct Config {
    /// TLS listener address (loopback only; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener serving the same API (loopback only).
    pub plain_listen: Option<SocketAddr>,
    /// Where `mock-ca.pem` is written.
    pub cert_dir: PathBuf,
    /// Default pacing between stream frames.
    pub chunk_delay: Duration,
    /// Fault applied to requests without an `x-mock-fault` header.
    pub fault: Fault,
    /// How many requests `GET /__mock/requests` keeps (0 disables recording).
    pub record_limit: usize,
    /// Response compression for requests without an `x-mock-compress` header.
    pub compress: Compress,
}

impl Config {
    /// A config with defaults: TLS on 127.0.0.1:0, no plain listener, no delay, no fault, 200
    /// recorded requests, compression negotiated from `Accept-Encoding`.
    pub fn new(cert_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            plain_listen: None,
            cert_dir: cert_dir.into(),
            chunk_delay: Duration::ZERO,
            fault: Fault::default(),
            record_limit: 200,
            compress: Compress::Auto,
        }
    }
}

/// Why the mock could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address is not a loopback address.
    #[error("refusing to listen on {0}: the mock only listens on loopback addresses (127.0.0.0/8 or ::1)")]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS identity could not be created.
    #[error(transparent)]
    Cert(#[from] cert::CertError),
}

/// A started mock. Dropping it stops the listeners.
pub struct Running {
    /// Address of the TLS listener.
    pub addr: SocketAddr,
    /// Address of the plain listener, if any.
    pub plain_addr: Option<SocketAddr>,
    /// Path of the CA certificate to trust.
    pub ca_file: PathBuf,
    /// The CA certificate PEM.
    pub ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The ready-file JSON: `{"port": N, "plain_port": N|null, "ca_file": "..."}`.
    pub fn ready_json(&self) -> String {
        let plain = self
            .plain_addr
            .map_or(serde_json::Value::Null, |a| a.port().into());
        let ca_file = std::path::absolute(&self.ca_file).unwrap_or_else(|_| self.ca_file.clone());
        crate::j!({
            "port": (self.addr.port()),
            "plain_port": plain,
            "ca_file": (ca_file.to_string_lossy().into_owned()),
        })
        .to_text()
    }

    /// Runs until the listeners stop (they do not, short of a panic in tokio).
    pub async fn wait(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    if !addr.ip().is_loopback() {
        return Err(StartError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Generates the TLS identity, writes the CA, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    // Check both addresses before writing anything.
    for addr in std::iter::once(config.listen).chain(config.plain_listen) {
        if !addr.ip().is_loopback() {
            return Err(StartError::NotLoopback(addr));
        }
    }
    let identity = cert::generate(&config.cert_dir)?;
    let tls_listener = bind(config.listen).await?;
    let addr = tls_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let plain = match config.plain_listen {
        Some(a) => {
            let l = bind(a).await?;
            let local = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr: a, source })?;
            Some((l, local))
        }
        None => None,
    };
    let state = Arc::new(State::new(
        RequestLog::new(config.record_limit),
        config.fault,
        config.chunk_delay,
        config.compress,
    ));
    let acceptor = TlsAcceptor::from(identity.server_config.clone());
    let mut tasks = vec![tokio::spawn(server::accept_loop(
        tls_listener,
        Some(acceptor),
        state.clone(),
    ))];
    let plain_addr = plain.as_ref().map(|(_, a)| *a);
    if let Some((l, _)) = plain {
        tasks.push(tokio::spawn(server::accept_loop(l, None, state)));
    }
    Ok(Running {
        addr,
        plain_addr,
        ca_file: identity.ca_file,
        ca_pem: identity.ca_pem,
        tasks,
    })
}
