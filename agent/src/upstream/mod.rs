//! The agent's own client to providers and gateways: pooled HTTP/2 or HTTP/1.1 keep-alive connections
//! (HTTP/1.1 only when the policy says `http2 = false`) over rustls, TCP_NODELAY,
//! an idle timeout enforced by a pool timer, the platform's roots plus optional extra roots, per-host
//! address overrides, and an optional explicit upstream proxy. It never reads `HTTPS_PROXY` (so it can
//! never route through Airlock itself) and never trusts a chain anchored at Airlock's own CA. It owns
//! connections; it must not look at or change what it carries.

mod failure;
mod proxy;
mod verify;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::{BoxError, ProxyBody};
use crate::policy::UpstreamPolicy;
use crate::{AgentError, Result};

pub use failure::{ConnectFailure, DnsFailure};
pub use proxy::{ProxySource, UpstreamProxy};
pub use verify::OwnCaCheck;

/// Resolves host names, sending overridden hosts to their configured address.
#[derive(Clone, Debug)]
struct OverrideResolver {
    overrides: Arc<HashMap<String, String>>,
}

impl tower_service::Service<Name> for OverrideResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let target = match self.overrides.get(&name.as_str().to_ascii_lowercase()) {
            Some(addr) => addr.clone(),
            // Port 0: the connector fills in the URI's port.
            None => format!("{}:0", name.as_str()),
        };
        let name = name.as_str().to_string();
        Box::pin(async move {
            // Marked, so a failed lookup is told from a failed connection by type, not by text.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
                .await
                .map_err(|e| std::io::Error::other(DnsFailure::new(&name, e)))?
                .collect();
            Ok(addrs.into_iter())
        })
    }
}

/// Direct TCP, or a CONNECT tunnel through the upstream proxy, chosen per destination (`no_proxy` and
/// loopback go direct).
#[derive(Clone)]
struct Dial {
    direct: HttpConnector<OverrideResolver>,
    proxy: Option<Arc<UpstreamProxy>>,
}

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let hop = self.proxy.as_ref().and_then(|p| {
            let scheme = uri.scheme_str().unwrap_or("https");
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "http" { 80 } else { 443 });
            p.hop_for(scheme, uri.host().unwrap_or_default(), port)
        });
        match hop {
            Some(hop) => {
                let mut tunnel = Tunnel::new(hop.uri, self.direct.clone());
                if let Some(auth) = hop.auth {
                    tunnel = tunnel.with_auth(auth);
                }
                let f = tunnel.call(uri);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            None => {
                let f = self.direct.call(uri);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<Dial>;

/// Why an upstream call failed, in words for the person who sees it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    /// Full explanation: what happened and what to do.
    pub message: String,
    /// Whether it was a timeout (a gateway answers 504 for those, 502 otherwise).
    pub timed_out: bool,
    /// Why no connection could be made, when that is what failed.
    pub failure: Option<ConnectFailure>,
}

/// The pooled upstream client.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<Connector, ProxyBody>,
    /// HTTP/1.1 only, unpooled-by-reuse: protocol upgrades (the Realtime API's WebSocket) cannot ride a
    /// pooled HTTP/2 connection.
    upgrade_client: Client<Connector, ProxyBody>,
    overridden: Arc<HashMap<String, String>>,
    dial: Dial,
    connect_timeout: Duration,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("overrides", &self.overridden)
            .finish()
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|e| AgentError::io("cannot read CA file", path, e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            AgentError::UpstreamTls(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(AgentError::UpstreamTls(format!(
            "{} holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )));
    }
    Ok(certs)
}

impl UpstreamClient {
    /// Builds the client from policy. `own_ca` recognises certificates of Airlock's own CA; `listen` is
    /// the agent's own address, so a proxy from the environment that points back at it is ignored.
    pub fn new(
        policy: &UpstreamPolicy,
        own_ca: OwnCaCheck,
        listen: Option<SocketAddr>,
    ) -> Result<UpstreamClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let extra = match &policy.extra_ca_file {
            Some(p) => read_pem_certs(p)?,
            None => Vec::new(),
        };
        let mut per_host = HashMap::new();
        for (host, o) in &policy.overrides {
            if let Some(ca) = &o.ca_file {
                per_host.insert(host.clone(), read_pem_certs(ca)?);
            }
        }
        let verifier = verify::UpstreamVerifier::new(extra, per_host, own_ca, provider.clone())?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::UpstreamTls(e.to_string()))?
            .dangerous() // a custom verifier that is stricter than the default, not weaker
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();

        let overrides: HashMap<String, String> = policy
            .overrides
            .iter()
            .map(|(h, o)| (h.clone(), o.address.clone()))
            .collect();
        let overrides = Arc::new(overrides);
        let mut http = HttpConnector::new_with_resolver(OverrideResolver {
            overrides: overrides.clone(),
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        let connect_timeout = Duration::from_secs(policy.connect_timeout_secs.max(1));
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let proxy = UpstreamProxy::resolve(policy.proxy.as_deref(), &policy.no_proxy, listen)?
            .map(Arc::new);
        let dial = Dial {
            direct: http,
            proxy,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1();
        let https = if policy.http2 {
            builder.enable_http2().wrap_connector(dial.clone())
        } else {
            builder.wrap_connector(dial.clone())
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(policy.pool_idle_timeout_secs.max(1)))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .timer(TokioTimer::new())
            .build(https);
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dial.clone());
        let upgrade_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .timer(TokioTimer::new())
            .build(http1);
        Ok(UpstreamClient {
            client,
            upgrade_client,
            overridden: overrides,
            dial,
            connect_timeout,
        })
    }

    /// The upstream proxy in use, if any.
    pub fn proxy(&self) -> Option<&UpstreamProxy> {
        self.dial.proxy.as_deref()
    }

    /// A raw TCP connection to `host:port` for a blind tunnel: through the upstream proxy (CONNECT
    /// chaining) unless the destination bypasses it, within the policy's connect timeout.
    pub async fn dial_tunnel(
        &self,
        host: &str,
        port: u16,
    ) -> std::result::Result<TcpStream, UpstreamError> {
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        // An overridden host reached on the default port goes to the override's own address and
        // port, as its intercepted requests do; another port is kept, on the override's address.
        let dial_authority = if port == 443 && self.is_overridden(host) {
            host.to_string()
        } else {
            authority.clone()
        };
        let uri: Uri = format!("https://{dial_authority}/")
            .parse()
            .map_err(|_| UpstreamError {
                message: format!("{authority} is not a host:port Airlock can connect to"),
                timed_out: false,
                failure: Some(ConnectFailure::Other),
            })?;
        let via = self
            .dial
            .proxy
            .as_ref()
            .filter(|p| p.hop_for("https", host, port).is_some())
            .map(|p| p.display().to_string());
        let mut dial = self.dial.clone();
        // The proxy leg gets the connect timeout too: a proxy that accepts and never answers
        // the CONNECT must not hold the client forever.
        match tokio::time::timeout(self.connect_timeout, dial.call(uri)).await {
            Ok(Ok(io)) => Ok(io.into_inner()),
            Ok(Err(e)) => {
                let cause = error_chain(&*e);
                let failure = ConnectFailure::classify(&*e, via.is_some());
                Err(UpstreamError {
                    message: match via {
                        Some(p) => format!(
                            "Airlock could not open a tunnel to {authority} through the upstream proxy {p} ({cause}). \
                             Check that the proxy is reachable and allows CONNECT to this host."
                        ),
                        None => format!("Airlock could not connect to {authority} ({cause}). Check the network and DNS."),
                    },
                    timed_out: failure == ConnectFailure::Timeout,
                    failure: Some(failure),
                })
            }
            Err(_) => Err(UpstreamError {
                message: format!(
                    "Airlock timed out after {} s connecting to {authority}{}",
                    self.connect_timeout.as_secs(),
                    via.map(|p| format!(" through the upstream proxy {p}"))
                        .unwrap_or_default()
                ),
                timed_out: true,
                failure: Some(ConnectFailure::Timeout),
            }),
        }
    }

    /// Whether `host` has an address override (its URI should then carry no explicit port).
    pub fn is_overridden(&self, host: &str) -> bool {
        self.overridden.contains_key(host)
    }

    /// Sends a request that asks for a protocol upgrade (HTTP/1.1 `Upgrade`), on a connection of its own.
    pub async fn send_upgrade(
        &self,
        req: Request<ProxyBody>,
    ) -> std::result::Result<Response<Incoming>, UpstreamError> {
        let host = req.uri().host().unwrap_or_default().to_string();
        self.upgrade_client
            .request(req)
            .await
            .map_err(|e| explain(&host, &e))
    }

    /// Sends a request upstream.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> std::result::Result<Response<Incoming>, UpstreamError> {
        let host = req.uri().host().unwrap_or_default().to_string();
        self.client
            .request(req)
            .await
            .map_err(|e| explain(&host, &e))
    }
}

/// An error and its causes as one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut causes = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        src = s.source();
    }
    causes.join(": ")
}

/// Turns a client error into a sentence a person can act on.
fn explain(host: &str, e: &hyper_util::client::legacy::Error) -> UpstreamError {
    let cause = match std::error::Error::source(e) {
        Some(s) => error_chain(s),
        None => e.to_string(),
    };
    let lower = cause.to_ascii_lowercase();
    let message = if lower.contains("certificate")
        || lower.contains("airlock ca")
        || lower.contains("unknownissuer")
    {
        format!(
            "Airlock refused {host}'s TLS certificate ({cause}). If an on-prem gateway or a corporate proxy \
             uses a private CA, add it to the policy as upstream.extra_ca_file or the host's override ca_file."
        )
    } else if e.is_connect() {
        format!(
            "Airlock could not connect to {host} ({cause}). Check the network and DNS, or the upstream \
             override for this host in the policy."
        )
    } else {
        format!("the connection to {host} failed before a complete response arrived ({cause}); retry the request")
    };
    let failure = e.is_connect().then(|| ConnectFailure::classify(e, false));
    UpstreamError {
        message,
        timed_out: failure == Some(ConnectFailure::Timeout)
            || (e.is_connect() && lower.contains("timed out")),
        failure,
    }
}
