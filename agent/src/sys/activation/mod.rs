//! Socket activation: the listening sockets a service manager hands the agent (systemd's
//! `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, so the proxy port and the control socket stay open
//! while the daemon restarts) and the readiness messages sent back to it (`READY=1`, `STOPPING=1` on
//! `$NOTIFY_SOCKET`, for `Type=notify`). It owns taking the inherited descriptors — by name (`proxy`,
//! `control`), else by socket family —, checking that each is a listening stream socket of the
//! expected kind (the proxy's bound to loopback), marking them close-on-exec and non-blocking, and
//! clearing the variables so no child inherits them; it must not bind anything itself nor decide what
//! a listener that was not passed means (the agent wiring binds it as it would without a service
//! manager).

// Only unix has the protocol; the shared helpers below are its.
#![cfg_attr(not(unix), allow(dead_code))]

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

use std::net::TcpListener;

/// The name the unit gives the proxy port's socket (`FileDescriptorName=proxy`).
pub const PROXY_NAME: &str = "proxy";
/// The name the unit gives the control socket (`FileDescriptorName=control`).
pub const CONTROL_NAME: &str = "control";

/// A listening control socket (a unix stream socket; none exists where the OS has none).
pub type ControlListener = os::ControlListener;

/// Listeners made by someone else — the service manager, a test, a program embedding the agent —
/// that the agent serves on instead of binding its own. Each is `None` when not passed.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The proxy port's listener (TCP, loopback).
    pub proxy: Option<TcpListener>,
    /// The control socket's listener; whoever made it owns its path.
    pub control: Option<ControlListener>,
}

impl Inherited {
    /// Whether any listener came from outside.
    pub fn any(&self) -> bool {
        self.proxy.is_some() || self.control.is_some()
    }
}

/// What is wrong with the descriptors the service manager passed. Each message says what to fix in
/// the unit (`airlockd.socket`, `airlockd-control.socket`).
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` or `LISTEN_FDNAMES` cannot be read.
    #[error("the service manager's {var}={value:?} cannot be read: {why}; start airlockd from its systemd units (or without LISTEN_* set)")]
    Environment {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A descriptor is not a socket of the kind its name or place says.
    #[error("descriptor {fd} ({name}) from the service manager {problem}; {fix}")]
    Unfit {
        /// The descriptor number.
        fd: i32,
        /// Its name, or "unnamed".
        name: String,
        /// What it is instead.
        problem: String,
        /// What to change in the unit.
        fix: String,
    },
    /// Two descriptors claim the same role.
    #[error("the service manager passed two {role} sockets (descriptors {first} and {second}); give the unit one ListenStream= for the {role} socket")]
    Twice {
        /// "proxy" or "control".
        role: &'static str,
        /// The first descriptor.
        first: i32,
        /// The second.
        second: i32,
    },
    /// Reading or adjusting a descriptor failed.
    #[error("descriptor {fd} from the service manager cannot be used: {source}")]
    Io {
        /// The descriptor number.
        fd: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the listeners the service manager passed to this process, if it passed any: only when
/// `LISTEN_PID` is this process's pid (the variables were meant for it, not inherited from a parent)
/// and `LISTEN_FDS` ≥ 1. The variables are removed either way, so children do not inherit them.
/// Call it early, before other threads run (it changes the environment).
pub fn take_from_env() -> Result<Inherited, ActivationError> {
    os::take_from_env()
}

/// Tells the service manager the agent is serving (`READY=1`), when it asked (`$NOTIFY_SOCKET`).
pub fn notify_ready() {
    os::notify(os::Notice::Ready);
}

/// Tells the service manager the agent is stopping (`STOPPING=1`), when it asked.
pub fn notify_stopping() {
    os::notify(os::Notice::Stopping);
}

/// The socket inode of a listener (what `/proc/net/tcp` lists it by), where the OS has one: the CLI
/// matches it against the socket that holds the agent's port.
pub fn socket_inode(listener: &tokio::net::TcpListener) -> Option<u64> {
    os::socket_inode(listener)
}

/// What one passed descriptor turned out to be, by probing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A TCP (IPv4 or IPv6) stream socket.
    Tcp,
    /// A unix stream socket.
    Unix,
    /// Anything else (a datagram socket, a pipe, a file).
    Other,
}

/// The job a passed descriptor gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Proxy,
    Control,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Proxy => PROXY_NAME,
            Role::Control => CONTROL_NAME,
        }
    }
}

/// The descriptors meant for this process: their count and names (`None` for unnamed ones), or
/// `None` when the variables are absent or meant for another process.
fn parse_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Option<Vec<Option<String>>>, ActivationError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(our_pid) {
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::Environment {
            var: "LISTEN_FDS",
            value: fds.into(),
            why: "not a number".into(),
        })?;
    if count == 0 {
        return Ok(None);
    }
    if count > 16 {
        return Err(ActivationError::Environment {
            var: "LISTEN_FDS",
            value: fds.into(),
            why: "airlockd takes at most a proxy and a control socket".into(),
        });
    }
    let names: Vec<Option<String>> = match names {
        None | Some("") => vec![None; count],
        Some(list) => {
            let names: Vec<Option<String>> = list
                .split(':')
                .map(|n| (!n.is_empty()).then(|| n.to_string()))
                .collect();
            if names.len() != count {
                return Err(ActivationError::Environment {
                    var: "LISTEN_FDNAMES",
                    value: list.into(),
                    why: format!(
                        "it names {} descriptors but LISTEN_FDS says {count}",
                        names.len()
                    ),
                });
            }
            names
        }
    };
    Ok(Some(names))
}

/// The role of descriptor `fd` from its name and what it is: a name of ours decides (and must fit),
/// any other name or none leaves it to the socket family.
fn role_of(fd: i32, name: Option<&str>, kind: Kind) -> Result<Role, ActivationError> {
    let shown = name.unwrap_or("unnamed").to_string();
    let unfit = |problem: &str, fix: &str| ActivationError::Unfit {
        fd,
        name: shown.clone(),
        problem: problem.into(),
        fix: fix.into(),
    };
    let proxy_fix = "the proxy's socket unit needs ListenStream=127.0.0.1:PORT (a TCP stream socket) with FileDescriptorName=proxy";
    let control_fix = "the control socket's unit needs ListenStream=/var/lib/airlock/airlock.sock (a unix stream socket, the state directory's airlock.sock) with FileDescriptorName=control";
    match (name, kind) {
        (Some(PROXY_NAME), Kind::Tcp) => Ok(Role::Proxy),
        (Some(PROXY_NAME), _) => Err(unfit("is named proxy but is not a TCP stream socket", proxy_fix)),
        (Some(CONTROL_NAME), Kind::Unix) => Ok(Role::Control),
        (Some(CONTROL_NAME), _) => Err(unfit(
            "is named control but is not a unix stream socket",
            control_fix,
        )),
        (_, Kind::Tcp) => Ok(Role::Proxy),
        (_, Kind::Unix) => Ok(Role::Control),
        (_, Kind::Other) => Err(unfit(
            "is neither a TCP nor a unix stream socket",
            "airlockd takes only ListenStream= sockets: a loopback TCP port (FileDescriptorName=proxy) and the control socket (FileDescriptorName=control); remove the others from its socket units",
        )),
    }
}

/// Refuses a proxy socket bound anywhere but loopback: the agent must never serve other machines.
fn check_loopback(fd: i32, addr: std::net::SocketAddr) -> Result<(), ActivationError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    Err(ActivationError::Unfit {
        fd,
        name: PROXY_NAME.into(),
        problem: format!("is bound to {addr}, which is not a loopback address"),
        fix: "Airlock listens on loopback only so no other machine can use it: set ListenStream=127.0.0.1:8479 (or [::1]:PORT) in airlockd.socket, not a bare port or another address".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_count_only_when_they_name_this_process() {
        assert!(parse_env(None, Some("2"), None, 7).unwrap().is_none());
        assert!(parse_env(Some("8"), Some("2"), None, 7).unwrap().is_none());
        assert!(parse_env(Some("7"), None, None, 7).unwrap().is_none());
        assert!(parse_env(Some("7"), Some("0"), None, 7).unwrap().is_none());
        assert_eq!(
            parse_env(Some("7"), Some("2"), None, 7).unwrap(),
            Some(vec![None, None])
        );
        assert_eq!(
            parse_env(Some("7"), Some("2"), Some("proxy:control"), 7).unwrap(),
            Some(vec![Some("proxy".into()), Some("control".into())])
        );
        assert_eq!(
            parse_env(Some("7"), Some("2"), Some(":control"), 7).unwrap(),
            Some(vec![None, Some("control".into())])
        );
        assert!(parse_env(Some("7"), Some("x"), None, 7).is_err());
        let e = parse_env(Some("7"), Some("2"), Some("proxy"), 7).unwrap_err();
        assert!(e.to_string().contains("LISTEN_FDS says 2"), "{e}");
    }

    #[test]
    fn names_decide_and_must_fit_else_the_family_does() {
        assert_eq!(role_of(3, Some("proxy"), Kind::Tcp).unwrap(), Role::Proxy);
        assert_eq!(
            role_of(4, Some("control"), Kind::Unix).unwrap(),
            Role::Control
        );
        let e = role_of(3, Some("proxy"), Kind::Unix).unwrap_err();
        assert!(e.to_string().contains("ListenStream=127.0.0.1:PORT"), "{e}");
        let e = role_of(4, Some("control"), Kind::Tcp).unwrap_err();
        assert!(e.to_string().contains("airlock.sock"), "{e}");
        // systemd's default name is the socket unit's name.
        assert_eq!(
            role_of(3, Some("airlockd.socket"), Kind::Tcp).unwrap(),
            Role::Proxy
        );
        assert_eq!(role_of(4, None, Kind::Unix).unwrap(), Role::Control);
        assert!(role_of(5, None, Kind::Other).is_err());
    }

    #[test]
    fn only_a_loopback_proxy_socket_is_taken() {
        assert!(check_loopback(3, "127.0.0.1:8479".parse().unwrap()).is_ok());
        assert!(check_loopback(3, "[::1]:8479".parse().unwrap()).is_ok());
        let e = check_loopback(3, "0.0.0.0:8479".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("airlockd.socket"), "{e}");
    }
}
