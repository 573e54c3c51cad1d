//! The agent's proxy address as the user may name it (`--addr`, `$AIRLOCK_ADDR`, the default), and
//! whether anything accepts connections there. Nothing is ever sent to the port: the agent is asked
//! things on its control socket ([`crate::control`]); the port is only where tools are pointed, once
//! `trust` has tied its listener to the agent.

use std::net::SocketAddr;
use std::time::Duration;

use airlock_agent::paths::DEFAULT_LISTEN;
use anyhow::{anyhow, Context, Result};

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
