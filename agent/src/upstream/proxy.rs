//! The HTTP proxy the agent's own traffic goes through, when the network demands one: which proxy (the
//! policy's `upstream.proxy`, else `AIRLOCK_UPSTREAM_PROXY` or `HTTPS_PROXY` from the agent's own
//! environment — never one that points at the agent itself), which destinations bypass it (`no_proxy`,
//! and loopback always), and the credentials it wants. It owns choosing; the dialing is in the parent
//! module. Credentials in the URL never reach a log or the status report.

use std::net::SocketAddr;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;

use crate::{AgentError, Result};

/// Where the upstream proxy setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// `upstream.proxy` in the policy.
    Policy,
    /// `AIRLOCK_UPSTREAM_PROXY` or `HTTPS_PROXY` in the agent's own environment.
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

/// The proxy in force.
pub struct UpstreamProxy {
    matcher: Matcher,
    display: String,
    /// Where the setting came from.
    pub source: ProxySource,
}

impl std::fmt::Debug for UpstreamProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamProxy")
            .field("proxy", &self.display)
            .field("source", &self.source)
            .finish()
    }
}

/// Where to connect for one destination: the proxy's address, and its credentials if any.
#[derive(Debug, Clone)]
pub struct ProxyHop {
    /// The proxy's URI (`http://host:port`).
    pub uri: Uri,
    /// `Proxy-Authorization` for it.
    pub auth: Option<HeaderValue>,
}

/// The URL without credentials: `http://host:port`.
fn without_credentials(uri: &Uri) -> String {
    let host = uri.host().unwrap_or_default();
    match uri.port_u16() {
        Some(p) => format!("http://{host}:{p}"),
        None => format!("http://{host}"),
    }
}

/// Whether `uri` names the agent's own listener (which would make every call loop through itself).
fn is_own_listener(uri: &Uri, listen: SocketAddr) -> bool {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    local && port == listen.port()
}

fn env_nonempty(names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| ((*n).to_string(), v.trim().to_string()))
    })
}

impl UpstreamProxy {
    /// The proxy for an agent listening on `listen`: the policy's, else the environment's (unless it
    /// points at the agent itself, which is logged and ignored).
    pub fn resolve(
        policy_proxy: Option<&str>,
        policy_no_proxy: &[String],
        listen: Option<SocketAddr>,
    ) -> Result<Option<UpstreamProxy>> {
        if let Some(url) = policy_proxy {
            let p = Self::build(url, &policy_no_proxy.join(","), ProxySource::Policy)
                .map_err(|e| AgentError::UpstreamTls(format!("upstream.proxy: {e}")))?;
            return Ok(Some(p));
        }
        let Some((var, url)) = env_nonempty(&[
            "AIRLOCK_UPSTREAM_PROXY",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]) else {
            return Ok(None);
        };
        let no_proxy = env_nonempty(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v)
            .unwrap_or_default();
        match Self::build(&url, &no_proxy, ProxySource::Environment) {
            Ok(p) => {
                let own = listen.is_some_and(|l| {
                    p.hop_for("https", "example.invalid", 443)
                        .is_some_and(|h| is_own_listener(&h.uri, l))
                });
                if own {
                    tracing::info!(variable = %var, "{var} points at this agent; its own upstream calls go direct");
                    return Ok(None);
                }
                tracing::info!(variable = %var, proxy = %p.display, "upstream calls and tunnels go through the proxy from the environment");
                Ok(Some(p))
            }
            Err(e) => {
                tracing::warn!(variable = %var, error = %e, "ignoring an unusable proxy setting from the environment; connecting directly");
                Ok(None)
            }
        }
    }

    fn build(url: &str, no_proxy: &str, source: ProxySource) -> std::result::Result<Self, String> {
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e| format!("{:?} is not a URL: {e}", without_credentials_str(url)))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{} is not an http:// proxy URL (Airlock speaks HTTP CONNECT to its upstream proxy)",
                without_credentials(&uri)
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("the proxy URL has no host".into());
        }
        let matcher = Matcher::builder()
            .all(with_scheme.clone())
            .no(no_proxy.to_string())
            .build();
        Ok(UpstreamProxy {
            matcher,
            display: without_credentials(&uri),
            source,
        })
    }

    /// The proxy URL without credentials, for status and logs.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The proxy hop for `scheme://host:port`, or `None` when that destination is reached directly
    /// (`no_proxy`, or loopback).
    pub fn hop_for(&self, scheme: &str, host: &str, port: u16) -> Option<ProxyHop> {
        let bare = host.trim_matches(['[', ']']);
        let loopback = bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return None;
        }
        let authority = if bare.contains(':') {
            format!("[{bare}]:{port}")
        } else {
            format!("{bare}:{port}")
        };
        let dst: Uri = format!("{scheme}://{authority}/").parse().ok()?;
        let hit = self.matcher.intercept(&dst)?;
        Some(ProxyHop {
            uri: hit.uri().clone(),
            auth: hit.basic_auth().cloned().map(|mut v| {
                v.set_sensitive(true);
                v
            }),
        })
    }
}

fn without_credentials_str(url: &str) -> String {
    match url.split_once('@') {
        Some((_, rest)) => {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("http");
            format!("{scheme}://…@{rest}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_and_are_sent_as_basic_auth() {
        let p = UpstreamProxy::build(
            "http://alice:s3cret@proxy.corp:3128",
            "",
            ProxySource::Policy,
        )
        .unwrap();
        assert_eq!(p.display(), "http://proxy.corp:3128");
        assert!(!format!("{p:?}").contains("s3cret"));
        let hop = p.hop_for("https", "api.openai.com", 443).unwrap();
        assert_eq!(hop.uri.host(), Some("proxy.corp"));
        let auth = hop.auth.unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Basic YWxpY2U6czNjcmV0");
    }

    #[test]
    fn no_proxy_and_loopback_bypass_the_proxy() {
        let p = UpstreamProxy::build(
            "proxy.corp:3128",
            "corp.internal,.svc.local,10.0.0.5",
            ProxySource::Environment,
        )
        .unwrap();
        assert!(p.hop_for("https", "api.openai.com", 443).is_some());
        assert!(p.hop_for("https", "corp.internal", 443).is_none());
        assert!(p.hop_for("https", "a.svc.local", 443).is_none());
        assert!(p.hop_for("https", "10.0.0.5", 443).is_none());
        assert!(p.hop_for("https", "127.0.0.1", 8443).is_none());
        assert!(p.hop_for("https", "localhost", 8443).is_none());
        assert!(p.hop_for("https", "[::1]", 8443).is_none());
    }

    #[test]
    fn a_proxy_pointing_at_the_agent_itself_is_recognised() {
        let listen: SocketAddr = "127.0.0.1:8479".parse().unwrap();
        for own in [
            "http://127.0.0.1:8479",
            "http://localhost:8479",
            "http://[::1]:8479",
        ] {
            assert!(is_own_listener(&own.parse().unwrap(), listen), "{own}");
        }
        for other in ["http://127.0.0.1:3128", "http://proxy.corp:8479"] {
            assert!(!is_own_listener(&other.parse().unwrap(), listen), "{other}");
        }
    }

    #[test]
    fn non_http_proxies_are_explained() {
        let e = UpstreamProxy::build("socks5://p:1080", "", ProxySource::Policy).unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = UpstreamProxy::build("http://u:pw@:1", "", ProxySource::Policy).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
