//! Finding and talking to the running agent: the address comes from `--addr`, `$AIRLOCK_ADDR`, the
//! runtime file the agent writes in its state directory, or the default. Calls go straight to loopback,
//! never through a proxy from the environment. It must not interpret what the agent says.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use airlock_agent::paths::{StateDir, DEFAULT_LISTEN};
use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// Where the agent is, and how we found out.
#[derive(Debug, Clone)]
pub struct AgentAddr {
    /// The address.
    pub addr: SocketAddr,
    /// "--addr", "AIRLOCK_ADDR", the runtime file path, or "default".
    pub source: String,
}

/// Resolves the agent's address.
pub fn resolve_addr(explicit: Option<&str>, state: Option<&StateDir>) -> Result<AgentAddr> {
    if let Some(a) = explicit {
        return Ok(AgentAddr {
            addr: parse(a)?,
            source: "--addr".into(),
        });
    }
    if let Some(a) = std::env::var("AIRLOCK_ADDR").ok().filter(|v| !v.is_empty()) {
        return Ok(AgentAddr {
            addr: parse(&a).context("in $AIRLOCK_ADDR")?,
            source: "AIRLOCK_ADDR".into(),
        });
    }
    if let Some(state) = state {
        let file = state.runtime_file();
        if let Some(addr) = read_runtime_addr(&file) {
            return Ok(AgentAddr {
                addr,
                source: file.display().to_string(),
            });
        }
    }
    Ok(AgentAddr {
        addr: parse(DEFAULT_LISTEN)?,
        source: "default".into(),
    })
}

fn parse(a: &str) -> Result<SocketAddr> {
    let a = a.trim().trim_start_matches("http://").trim_end_matches('/');
    a.parse()
        .map_err(|e| anyhow!("{a:?} is not an address like 127.0.0.1:8479 ({e})"))
}

fn read_runtime_addr(file: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(file).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("listen")?.as_str()?.parse().ok()
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
