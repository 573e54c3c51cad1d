//! Talking to the agent over loopback HTTP, and the addresses the user may name for it (`--addr`,
//! `$AIRLOCK_ADDR`, the default). Calls go straight to loopback, never through a proxy from the
//! environment. It must not interpret what the agent says, nor decide whether to believe it: `trust`
//! verifies the listener before and after every call made here.

use std::net::SocketAddr;
use std::time::Duration;

use airlock_agent::paths::DEFAULT_LISTEN;
use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// An address for the agent, and where it came from.
#[derive(Debug, Clone)]
pub struct AgentAddr {
    /// The address.
    pub addr: SocketAddr,
    /// Where it came from, as a phrase that can follow the address: "given with --addr", "the address
    /// in <runtime file>", "the default address".
    pub source: String,
}

/// The address the user named with `--addr` or `$AIRLOCK_ADDR`, if any.
pub fn named_addr(explicit: Option<&str>) -> Result<Option<AgentAddr>> {
    if let Some(a) = explicit {
        return Ok(Some(AgentAddr {
            addr: parse(a)?,
            source: "given with --addr".into(),
        }));
    }
    if let Some(a) = std::env::var("AIRLOCK_ADDR").ok().filter(|v| !v.is_empty()) {
        return Ok(Some(AgentAddr {
            addr: parse(&a).context("in $AIRLOCK_ADDR")?,
            source: "given in $AIRLOCK_ADDR".into(),
        }));
    }
    Ok(None)
}

/// Where the agent listens when nothing else says.
pub fn default_addr() -> Result<AgentAddr> {
    Ok(AgentAddr {
        addr: parse(DEFAULT_LISTEN)?,
        source: "the default address".into(),
    })
}

fn parse(a: &str) -> Result<SocketAddr> {
    let a = a.trim().trim_start_matches("http://").trim_end_matches('/');
    a.parse()
        .map_err(|e| anyhow!("{a:?} is not an address like 127.0.0.1:8479 ({e})"))
}

/// Whether anything accepts a TCP connection at `addr`. Nothing is sent: this only tells "nothing
/// listens" from "something we cannot identify listens" where the OS hides socket owners.
pub fn answers(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GETs a JSON document from the agent. `Ok(None)` means nothing is listening there.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Option<Value>> {
    let url = format!("http://{addr}{path}");
    answer(addr, path, agent().get(&url).call())
}

/// POSTs to the agent and returns its JSON answer. `Ok(None)` means nothing is listening there.
pub fn post_json(addr: SocketAddr, path: &str) -> Result<Option<Value>> {
    let url = format!("http://{addr}{path}");
    answer(addr, path, agent().post(&url).send_empty())
}

/// Reads the agent's JSON answer, turning errors into sentences and "nothing listens" into `None`.
fn answer(
    addr: SocketAddr,
    path: &str,
    sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Option<Value>> {
    match sent {
        Ok(mut resp) => {
            let status = resp.status();
            let v: Value = resp.body_mut().read_json().with_context(|| {
                format!("the agent at {addr} sent something that is not JSON for {path}")
            })?;
            if !status.is_success() {
                return Err(anyhow!(
                    "the agent at {addr} answered {status} for {path}: {}",
                    v["error"]["message"]
                ));
            }
            Ok(Some(v))
        }
        Err(ureq::Error::Io(e)) if is_not_listening(&e) => Ok(None),
        Err(ureq::Error::ConnectionFailed) => Ok(None),
        Err(e) => Err(anyhow!("cannot reach the agent at {addr}: {e}")),
    }
}

fn is_not_listening(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotFound
    )
}
