//! The agent's own client to providers and gateways: pooled HTTP/1.1 and HTTP/2 over rustls, TCP_NODELAY,
//! an idle timeout enforced by a pool timer, the platform's roots plus optional extra roots, per-host
//! address overrides, and an optional explicit upstream proxy. It never reads `HTTPS_PROXY` (so it can
//! never route through Airlock itself) and never trusts a chain anchored at Airlock's own CA. It owns
//! connections; it must not look at or change what it carries.

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

use crate::pipeline::body::{BoxError, ProxyBody};
use crate::policy::UpstreamPolicy;
use crate::{AgentError, Result};

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
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
            Ok(addrs.into_iter())
        })
    }
}

/// Direct TCP, or a CONNECT tunnel through the policy's upstream proxy.
#[derive(Clone)]
enum Dial {
    Direct(HttpConnector<OverrideResolver>),
    Tunnel(Tunnel<HttpConnector<OverrideResolver>>),
}

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        match self {
            Dial::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            Dial::Tunnel(t) => t.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self {
            Dial::Direct(c) => {
                let f = c.call(uri);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Dial::Tunnel(t) => {
                let f = t.call(uri);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<Dial>;

/// Where the upstream proxy setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// `upstream.proxy` in the policy.
    Policy,
    /// `HTTPS_PROXY` in the agent's own environment (never one pointing at the agent itself).
    Environment,
}

impl ProxySource {
    /// Name used in the status report.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxySource::Policy => "policy",
            ProxySource::Environment => "environment",
        }
    }
}

/// The HTTP proxy the agent's own upstream calls and blind tunnels go through.
#[derive(Debug, Clone)]
pub struct UpstreamProxy {
    /// The proxy URL (may carry credentials; never printed as is).
    pub uri: Uri,
    /// Where the setting came from.
    pub source: ProxySource,
}

impl UpstreamProxy {
    /// The URL without any credentials, for status and logs.
    pub fn display(&self) -> String {
        let host = self.uri.host().unwrap_or_default();
        match self.uri.port_u16() {
            Some(p) => format!("http://{host}:{p}"),
            None => format!("http://{host}"),
        }
    }
}

/// Why an upstream call failed, in words for the person who sees it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    /// Full explanation: what happened and what to do.
    pub message: String,
}

/// The pooled upstream client.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<Connector, ProxyBody>,
    /// HTTP/1.1 only, unpooled-by-reuse: protocol upgrades (the Realtime API's WebSocket) cannot ride a
    /// pooled HTTP/2 connection.
    upgrade_client: Client<Connector, ProxyBody>,
    overridden: Arc<HashMap<String, String>>,
    proxy: Option<UpstreamProxy>,
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
    /// Builds the client from policy. `own_ca` recognises certificates of Airlock's own CA.
    pub fn new(policy: &UpstreamPolicy, own_ca: OwnCaCheck) -> Result<UpstreamClient> {
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
        http.set_connect_timeout(Some(Duration::from_secs(
            policy.connect_timeout_secs.max(1),
        )));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let proxy = match &policy.proxy {
            Some(proxy) => Some(UpstreamProxy {
                uri: proxy.parse().map_err(|e| {
                    AgentError::UpstreamTls(format!("upstream.proxy {proxy:?} is not a URL: {e}"))
                })?,
                source: ProxySource::Policy,
            }),
            None => None,
        };
        let dial = match &proxy {
            Some(p) => Dial::Tunnel(Tunnel::new(p.uri.clone(), http)),
            None => Dial::Direct(http),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(dial.clone());
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
            .wrap_connector(dial);
        let upgrade_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .timer(TokioTimer::new())
            .build(http1);
        Ok(UpstreamClient {
            client,
            upgrade_client,
            overridden: overrides,
            proxy,
        })
    }

    /// The upstream proxy in use, if any.
    pub fn proxy(&self) -> Option<&UpstreamProxy> {
        self.proxy.as_ref()
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

/// Turns a client error into a sentence a person can act on.
fn explain(host: &str, e: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut causes = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        src = s.source();
    }
    let cause = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
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
    UpstreamError { message }
}
