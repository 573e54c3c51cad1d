//! The `self-test` check: a live run through the agent's proxy. A `CONNECT` to an intercepted AI host
//! must present a certificate that chains to the device CA (checked with a root store holding only
//! that CA), and a `CONNECT` to a host that is not intercepted must keep the site's own certificate.
//! An unreachable tunnel host (an offline machine) is a warning, not a failure. Every step is bounded
//! by [`TIMEOUT`]; it sends no request beyond the TLS handshake.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use super::tls::Recording;
use super::{Check, Status};
use crate::trust::Verified;

/// The bound on each connection's I/O.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The agent could not be reached or the exchange broke off.
    Io(String),
    /// The agent answered the `CONNECT` with this status (and reason line).
    Answered(u16, String),
    /// The TLS handshake ran: whether the certificate chains to the device CA, and the verifier's
    /// word on it.
    Presented {
        /// Chains to the device CA.
        ours: bool,
        /// The verifier's error when it does not, or the issuer.
        detail: String,
    },
}

impl Probe {
    fn json(&self) -> Value {
        match self {
            Probe::Io(e) => json!({"result": "io_error", "error": e}),
            Probe::Answered(c, r) => json!({"result": "connect_refused", "status": c, "reason": r}),
            Probe::Presented { ours, detail } => {
                json!({"result": "handshake", "chains_to_device_ca": ours, "detail": detail})
            }
        }
    }
}

/// Runs both probes against the verified agent.
pub fn run(v: &Verified, tunnel: &str) -> Check {
    let host = super::shell::ai_hosts(&v.status)
        .into_iter()
        .next()
        .unwrap_or_else(|| "api.openai.com".into());
    let der = super::trust::pem_certs(v.ca.info.cert_pem.as_bytes())
        .into_iter()
        .next()
        .unwrap_or_default();
    let intercepted = probe(v.addr(), &format!("{host}:443"), &der);
    let tunnelled = probe(v.addr(), tunnel, &der);
    decide(&host, &intercepted, tunnel, &tunnelled)
}

/// The decision from the two probes.
pub fn decide(host: &str, intercepted: &Probe, tunnel: &str, tunnelled: &Probe) -> Check {
    let details = json!({"intercepted_host": host, "intercepted": intercepted.json(),
                         "tunnel_host": tunnel, "tunnelled": tunnelled.json()});
    let fix = "airlock status (is the agent healthy?), then restart it: airlockd, or sudo systemctl restart airlockd";
    let first = match intercepted {
        Probe::Presented { ours: true, .. } => None,
        Probe::Presented {
            ours: false,
            detail,
        } => Some(format!(
            "{host} was not given a certificate from the device CA ({detail})"
        )),
        Probe::Answered(c, r) => Some(format!(
            "the agent answered CONNECT {host}:443 with {c} {r}"
        )),
        Probe::Io(e) => Some(format!("CONNECT {host}:443 through the agent failed: {e}")),
    };
    if let Some(why) = first {
        return Check::new("self-test", Status::Fail, why)
            .fix(fix)
            .details(details);
    }
    let ok = format!("{host} is intercepted with a certificate from the device CA");
    match tunnelled {
        Probe::Presented { ours: false, .. } => Check::new(
            "self-test",
            Status::Pass,
            format!("{ok}; {tunnel} is tunnelled with its own certificate"),
        )
        .details(details),
        Probe::Presented { ours: true, .. } => Check::new(
            "self-test",
            Status::Fail,
            format!(
                "{ok}, but {tunnel}, which is not intercepted, got a device CA certificate too"
            ),
        )
        .fix(fix)
        .details(details),
        Probe::Answered(c, r) => Check::new(
            "self-test",
            Status::Warn,
            format!(
                "{ok}; the tunnel check was not run: the agent could not reach {tunnel} ({c} {r}; \
                 offline, or blocked by policy — pass --tunnel-host HOST:PORT to try another)"
            ),
        )
        .details(details),
        Probe::Io(e) => Check::new(
            "self-test",
            Status::Warn,
            format!("{ok}; the tunnel check to {tunnel} did not finish: {e}"),
        )
        .details(details),
    }
}

/// `CONNECT target` through the proxy at `addr`, then a TLS handshake checked against `ca_der`.
pub fn probe(addr: SocketAddr, target: &str, ca_der: &[u8]) -> Probe {
    match try_probe(addr, target, ca_der) {
        Ok(p) => p,
        Err(e) => Probe::Io(e),
    }
}

fn try_probe(addr: SocketAddr, target: &str, ca_der: &[u8]) -> Result<Probe, String> {
    let host = target
        .rsplit_once(':')
        .map_or(target, |(h, _)| h)
        .trim_matches(['[', ']']);
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(sock, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let head = read_head(&mut sock)?;
    let (code, reason) =
        status_line(&head).ok_or_else(|| format!("not an HTTP answer: {head:.80}"))?;
    if code != 200 {
        return Ok(Probe::Answered(code, reason));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| format!("the device CA cannot be used as a root: {e}"))?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(None));
    let verifier = Arc::new(Recording {
        inner,
        seen: seen.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            if seen.lock().map(|s| s.is_none()).unwrap_or(true) {
                return Err(format!("TLS handshake: {e}"));
            }
            break;
        }
    }
    let found = seen
        .lock()
        .map_err(|_| "verifier poisoned".to_string())?
        .take();
    Ok(match found {
        Some(Ok(issuer)) => Probe::Presented {
            ours: true,
            detail: issuer,
        },
        Some(Err(why)) => Probe::Presented {
            ours: false,
            detail: why,
        },
        None => Probe::Io("the handshake ended before a certificate was presented".into()),
    })
}

fn read_head(sock: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 8192 {
            return Err("the CONNECT answer's head is too long".into());
        }
        match sock.read(&mut byte) {
            Ok(0) => return Err("the agent closed the connection".into()),
            Ok(_) => buf.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The status code and reason of an HTTP answer's head.
pub fn status_line(head: &str) -> Option<(u16, String)> {
    let line = head.lines().next()?;
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    Some((code, parts.next().unwrap_or("").trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Probe {
        Probe::Presented {
            ours: true,
            detail: "issued by CN=Airlock".into(),
        }
    }

    fn theirs() -> Probe {
        Probe::Presented {
            ours: false,
            detail: "UnknownIssuer".into(),
        }
    }

    #[test]
    fn intercepted_ours_and_tunnelled_theirs_passes() {
        let c = decide("api.openai.com", &ours(), "example.com:443", &theirs());
        assert_eq!(c.status, Status::Pass);
    }

    #[test]
    fn an_offline_tunnel_warns() {
        let c = decide(
            "api.openai.com",
            &ours(),
            "example.com:443",
            &Probe::Answered(502, "Bad Gateway".into()),
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.summary.contains("502"));
    }

    #[test]
    fn an_intercepted_host_with_a_foreign_cert_fails() {
        let c = decide("api.openai.com", &theirs(), "example.com:443", &theirs());
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.is_some());
    }

    #[test]
    fn a_tunnel_that_gets_our_cert_fails() {
        assert_eq!(decide("a", &ours(), "b:443", &ours()).status, Status::Fail);
    }

    #[test]
    fn an_unreachable_agent_fails() {
        let c = decide(
            "a",
            &Probe::Io("refused".into()),
            "b:443",
            &Probe::Io("refused".into()),
        );
        assert_eq!(c.status, Status::Fail);
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            status_line("HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "Connection established".into()))
        );
        assert_eq!(
            status_line("HTTP/1.1 502\r\n\r\n"),
            Some((502, String::new()))
        );
        assert_eq!(status_line("SSH-2.0\r\n"), None);
    }
}
