//! The `bypass` check: this user's own processes that hold an established TLS connection (remote
//! port 443) straight to an AI host's address, instead of going through the agent. Resolves the
//! intercepted hosts (bounded in time and count), matches the socket table against them, skips the
//! agent's own upstream connections, and names the processes. The socket and process tables are read
//! per OS ([`super::bypass_linux`] on Linux; other OSes skip). It reports only; it must not touch
//! the processes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use airlock_agent::sys::procfs::SocketRow;

use super::{Check, Status};
use crate::trust::Verified;

/// The `st` value of an ESTABLISHED socket.
pub const TCP_ESTABLISHED: u8 = 0x01;
/// At most this many hosts are resolved.
pub const MAX_HOSTS: usize = 32;
/// At most this many addresses per host.
pub const MAX_ADDRS: usize = 16;
/// The bound on resolving them all.
pub const RESOLVE_TIME: Duration = Duration::from_secs(3);

/// A process that owns a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub name: String,
}

/// One connection that bypasses the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// The process, when it could be found.
    pub owner: Option<Owner>,
    /// The AI host the remote address belongs to.
    pub host: String,
    /// The remote address.
    pub remote: SocketAddr,
}

/// Resolves `hosts` on port 443, in parallel, giving up after [`RESOLVE_TIME`].
pub fn resolve(hosts: &[String]) -> Vec<(IpAddr, String)> {
    let (tx, rx) = mpsc::channel();
    let hosts: Vec<String> = hosts.iter().take(MAX_HOSTS).cloned().collect();
    for h in &hosts {
        let (tx, h) = (tx.clone(), h.clone());
        std::thread::spawn(move || {
            let addrs: Vec<IpAddr> = (h.as_str(), 443)
                .to_socket_addrs()
                .map(|a| a.take(MAX_ADDRS).map(|s| s.ip().to_canonical()).collect())
                .unwrap_or_default();
            // The receiver may be gone after the deadline; nothing to do then.
            let _ = tx.send((h, addrs));
        });
    }
    drop(tx);
    let deadline = Instant::now() + RESOLVE_TIME;
    let mut out = Vec::new();
    for _ in 0..hosts.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((h, addrs)) => out.extend(addrs.into_iter().map(|a| (a, h.clone()))),
            Err(_) => break,
        }
    }
    out
}

/// The established port-443 connections of `uid` to one of `ai` (address, host), with their owners
/// from `owners` (socket inode → process); the agent's `agent_pid` is left out.
pub fn find(
    rows: &[SocketRow],
    ai: &[(IpAddr, String)],
    uid: u32,
    owners: &HashMap<u64, Owner>,
    agent_pid: u32,
) -> Vec<Bypass> {
    rows.iter()
        .filter(|r| r.state == TCP_ESTABLISHED && r.remote.port() == 443 && r.uid == uid)
        .filter_map(|r| {
            let ip = r.remote.ip().to_canonical();
            let host = ai.iter().find(|(a, _)| *a == ip)?.1.clone();
            let owner = owners.get(&r.inode).cloned();
            if owner.as_ref().is_some_and(|o| o.pid == agent_pid) {
                return None;
            }
            Some(Bypass {
                owner,
                host,
                remote: SocketAddr::new(ip, 443),
            })
        })
        .collect()
}

/// The decision: `resolved` is how many AI addresses were known.
pub fn decide(found: &[Bypass], resolved: usize) -> Check {
    let list: Vec<Value> = found
        .iter()
        .map(|b| json!({"pid": b.owner.as_ref().map(|o| o.pid), "process": b.owner.as_ref().map(|o| o.name.clone()),
                        "host": b.host, "remote": b.remote.to_string()}))
        .collect();
    let details = json!({"resolved_addresses": resolved, "connections": list});
    if resolved == 0 {
        return Check::new(
            "bypass",
            Status::Skip,
            "no AI host's address could be resolved (offline?), so direct connections cannot be told apart",
        )
        .details(details);
    }
    if found.is_empty() {
        return Check::new(
            "bypass",
            Status::Pass,
            "no process of yours talks to an AI host without the agent",
        )
        .details(details);
    }
    let names: Vec<String> = found
        .iter()
        .map(|b| match &b.owner {
            Some(o) => format!("{} (pid {}) → {}", o.name, o.pid, b.host),
            None => format!("a process → {} ({})", b.host, b.remote),
        })
        .collect();
    Check::new(
        "bypass",
        Status::Fail,
        format!("connected to AI hosts directly, not through the agent: {}", names.join(", ")),
    )
    .fix("restart those programs from a shell set up with eval \"$(airlock env)\" (or after `airlock setup`)")
    .details(details)
}

/// Runs the check for the verified agent.
pub fn run(v: &Verified) -> Check {
    #[cfg(target_os = "linux")]
    {
        let ai = resolve(&super::shell::ai_hosts(&v.status));
        let uid = crate::owner::current_uid().unwrap_or(u32::MAX);
        let rows = super::bypass_linux::sockets();
        let owners = super::bypass_linux::owners(uid);
        decide(&find(&rows, &ai, uid, &owners, v.runtime.pid), ai.len())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = v;
        Check::new("bypass", Status::Skip, "not implemented on this OS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_agent::sys::procfs::parse_tcp_table;

    fn hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    fn table() -> String {
        let local = hex([10, 0, 0, 5]);
        let ai = hex([104, 18, 33, 45]);
        let other = hex([93, 184, 215, 14]);
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        format!(
            "{head}\n\
             0: {local}:D431 {ai}:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 111 1\n\
             1: {local}:D432 {ai}:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 222 1\n\
             2: {local}:D433 {other}:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 333 1\n\
             3: {local}:D434 {ai}:01BB 06 00000000:00000000 00:00000000 00000000  1000        0 444 1\n\
             4: {local}:D435 {ai}:01BB 01 00000000:00000000 00:00000000 00000000  1001        0 555 1\n\
             5: {local}:D436 {ai}:0050 01 00000000:00000000 00:00000000 00000000  1000        0 666 1\n"
        )
    }

    #[test]
    fn only_the_users_established_tls_to_ai_addresses_not_the_agents_are_found() {
        let rows = parse_tcp_table(&table(), false);
        assert_eq!(rows.len(), 6);
        let ai = vec![(
            "104.18.33.45".parse().unwrap(),
            "api.openai.com".to_string(),
        )];
        let mut owners = HashMap::new();
        owners.insert(
            111,
            Owner {
                pid: 42,
                name: "python3".into(),
            },
        );
        owners.insert(
            222,
            Owner {
                pid: 7,
                name: "airlockd".into(),
            },
        );
        let found = find(&rows, &ai, 1000, &owners, 7);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].owner,
            Some(Owner {
                pid: 42,
                name: "python3".into()
            })
        );
        let c = decide(&found, 1);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary.contains("python3 (pid 42) → api.openai.com"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn v4_mapped_v6_rows_match() {
        let text = "header\n 0: 00000000000000000000000000000000:D431 0000000000000000FFFF0000"
            .to_string()
            + &hex([104, 18, 33, 45])
            + ":01BB 01 00000000:00000000 00:00000000 00000000  1000        0 111 1\n";
        let rows = parse_tcp_table(&text, true);
        let ai = vec![(
            "104.18.33.45".parse().unwrap(),
            "api.openai.com".to_string(),
        )];
        assert_eq!(find(&rows, &ai, 1000, &HashMap::new(), 7).len(), 1);
    }

    #[test]
    fn nothing_found_passes_and_nothing_resolved_skips() {
        assert_eq!(decide(&[], 4).status, Status::Pass);
        assert_eq!(decide(&[], 0).status, Status::Skip);
    }
}
