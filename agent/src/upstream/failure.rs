//! Why a connection upstream could not be made, as one of a few reasons people and counters can use:
//! the name did not resolve, the destination refused, nothing answered in time, the network has no
//! route, or the upstream proxy would not open the tunnel. Reasons are read from the error's cause
//! chain by type (a marked DNS error from our own resolver, `io::ErrorKind`s), never from message
//! text. It owns the classification; it must not log or count (the proxy does).

use std::error::Error as StdError;
use std::io;

use serde::Serialize;

/// Why a connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFailure {
    /// The host name did not resolve.
    Dns,
    /// The destination (or the upstream proxy) refused the connection.
    Refused,
    /// Nothing answered within the connect timeout.
    Timeout,
    /// No route to the host or its network.
    Unreachable,
    /// The upstream proxy answered but would not open the tunnel (a refusal, an authentication
    /// demand, or a broken answer).
    ProxyRefused,
    /// Anything else.
    Other,
}

impl ConnectFailure {
    /// Every reason, in the order reports list them.
    pub const ALL: [ConnectFailure; 6] = [
        ConnectFailure::Dns,
        ConnectFailure::Refused,
        ConnectFailure::Timeout,
        ConnectFailure::Unreachable,
        ConnectFailure::ProxyRefused,
        ConnectFailure::Other,
    ];

    /// The reason's name in logs, status and the `x-airlock-tunnel-failure` header.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Dns => "dns",
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Unreachable => "unreachable",
            ConnectFailure::ProxyRefused => "proxy_refused",
            ConnectFailure::Other => "other",
        }
    }

    /// The reason behind `err`. `via_proxy`: the connection went through the upstream proxy, so an
    /// error with no lower cause is the proxy's refusal.
    pub fn classify(err: &(dyn StdError + 'static), via_proxy: bool) -> ConnectFailure {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cause {
            if e.downcast_ref::<DnsFailure>().is_some() {
                return ConnectFailure::Dns;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                // An io::Error's source() skips the error it wraps, so look inside it too.
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<DnsFailure>().is_some())
                {
                    return ConnectFailure::Dns;
                }
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return ConnectFailure::Refused,
                    io::ErrorKind::TimedOut => return ConnectFailure::Timeout,
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                        return ConnectFailure::Unreachable
                    }
                    _ => {}
                }
            }
            cause = e.source();
        }
        if via_proxy {
            ConnectFailure::ProxyRefused
        } else {
            ConnectFailure::Other
        }
    }
}

/// A name the resolver could not turn into addresses; marks DNS failures in a cause chain.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {name} failed")]
pub struct DnsFailure {
    name: String,
    #[source]
    source: io::Error,
}

impl DnsFailure {
    /// Wraps the resolver's error for `name`.
    pub fn new(name: &str, source: io::Error) -> DnsFailure {
        DnsFailure {
            name: name.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn StdError + Send + Sync>);

    #[derive(Debug, thiserror::Error)]
    #[error("tunnel error: unsuccessful")]
    struct Bare;

    fn io(kind: io::ErrorKind) -> Box<dyn StdError + Send + Sync> {
        Box::new(io::Error::new(kind, "x"))
    }

    #[test]
    fn reasons_come_from_the_cause_chain() {
        let dns = Outer(Box::new(DnsFailure::new(
            "nowhere.example",
            io::Error::other("failed to lookup address information"),
        )));
        assert_eq!(ConnectFailure::classify(&dns, false), ConnectFailure::Dns);
        assert!(dns.0.to_string().contains("nowhere.example"));
        // As the resolver hands it on: wrapped in an io::Error, whose source() skips it.
        let wrapped = Outer(Box::new(io::Error::other(DnsFailure::new(
            "nowhere.example",
            io::Error::other("failed to lookup address information"),
        ))));
        assert_eq!(
            ConnectFailure::classify(&wrapped, false),
            ConnectFailure::Dns
        );
        for (kind, want) in [
            (io::ErrorKind::ConnectionRefused, ConnectFailure::Refused),
            (io::ErrorKind::TimedOut, ConnectFailure::Timeout),
            (io::ErrorKind::HostUnreachable, ConnectFailure::Unreachable),
            (
                io::ErrorKind::NetworkUnreachable,
                ConnectFailure::Unreachable,
            ),
        ] {
            assert_eq!(ConnectFailure::classify(&Outer(io(kind)), false), want);
            // Through the proxy, a refused proxy is still "refused", not the proxy's refusal.
            assert_eq!(ConnectFailure::classify(&Outer(io(kind)), true), want);
        }
        assert_eq!(
            ConnectFailure::classify(&Outer(io(io::ErrorKind::ConnectionReset)), false),
            ConnectFailure::Other
        );
        assert_eq!(
            ConnectFailure::classify(&Bare, true),
            ConnectFailure::ProxyRefused
        );
        assert_eq!(
            ConnectFailure::classify(&Bare, false),
            ConnectFailure::Other
        );
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = ConnectFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "dns",
                "refused",
                "timeout",
                "unreachable",
                "proxy_refused",
                "other"
            ]
        );
        assert_eq!(
            serde_json::to_value(ConnectFailure::ProxyRefused).unwrap(),
            "proxy_refused"
        );
    }
}
