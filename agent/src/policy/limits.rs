//! The agent's resource bounds, as the policy's `[limits]` section sets them: how big a request body
//! may be, how much the agent holds in memory at once, how many connections it serves, how long it waits
//! for slow peers, and how far the records file grows before it rotates. Every bound has a default a
//! laptop can live with; `airlock status` shows the ones in force. It owns the numbers and their
//! validation; it must not enforce them (the listener, the pipeline and the recorder do).

use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;

/// `[limits]` in a policy. Every field is optional; a missing one takes its default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest JSON request body the agent reads (MiB). Bigger ones get 413 in the caller's dialect.
    /// 64 MiB holds base64-encoded PDFs and images.
    pub max_request_body_mib: u64,
    /// Request bodies held in memory at once, across all requests (MiB). Past it, new requests get 503
    /// with `retry-after` until memory frees up.
    pub max_buffered_mib: u64,
    /// Client connections served at once. Past it, new connections are closed at once.
    pub max_connections: usize,
    /// A client must send a complete request head within this many seconds of starting one (or of
    /// its connection going idle); slower connections are closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// A client that sent CONNECT must finish its TLS handshake within this many seconds.
    pub tls_handshake_timeout_secs: u64,
    /// A request body that sends nothing for this many seconds is abandoned with 408.
    pub request_body_idle_timeout_secs: u64,
    /// Time for the provider to send the response head (reasoning models may think for minutes).
    pub response_header_timeout_secs: u64,
    /// A response stream that sends nothing for this many seconds is ended with an error event.
    pub stream_idle_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_mib: 64,
            max_buffered_mib: 512,
            max_connections: 10_000,
            header_read_timeout_secs: 10,
            tls_handshake_timeout_secs: 10,
            request_body_idle_timeout_secs: 30,
            response_header_timeout_secs: 600,
            stream_idle_timeout_secs: 300,
        }
    }
}

impl Limits {
    /// Checks the numbers make sense; the error names the key and a sane range.
    pub fn check(&self) -> Result<(), String> {
        let positive: [(&str, u64); 8] = [
            ("max_request_body_mib", self.max_request_body_mib),
            ("max_buffered_mib", self.max_buffered_mib),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
            (
                "request_body_idle_timeout_secs",
                self.request_body_idle_timeout_secs,
            ),
            (
                "response_header_timeout_secs",
                self.response_header_timeout_secs,
            ),
            ("stream_idle_timeout_secs", self.stream_idle_timeout_secs),
            ("max_connections", self.max_connections as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{key} must be at least 1"));
        }
        if self.max_request_body_mib > 4096 {
            return Err("limits.max_request_body_mib must be at most 4096 (4 GiB)".into());
        }
        if self.max_buffered_mib < self.max_request_body_mib {
            return Err(format!(
                "limits.max_buffered_mib ({}) must be at least limits.max_request_body_mib ({}), or no body of the largest allowed size could ever be read",
                self.max_buffered_mib, self.max_request_body_mib
            ));
        }
        Ok(())
    }

    /// The request body cap in bytes.
    pub fn max_request_body(&self) -> usize {
        usize::try_from(self.max_request_body_mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    /// The cap on all buffered request bodies, in bytes.
    pub fn max_buffered(&self) -> usize {
        usize::try_from(self.max_buffered_mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    /// See [`Limits::header_read_timeout_secs`].
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// See [`Limits::tls_handshake_timeout_secs`].
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// See [`Limits::request_body_idle_timeout_secs`].
    pub fn request_body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.request_body_idle_timeout_secs)
    }

    /// See [`Limits::response_header_timeout_secs`].
    pub fn response_header_timeout(&self) -> Duration {
        Duration::from_secs(self.response_header_timeout_secs)
    }

    /// See [`Limits::stream_idle_timeout_secs`].
    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stream_idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_a_base64_pdf_and_pass_their_own_check() {
        let l = Limits::default();
        assert_eq!(l.max_request_body(), 64 << 20);
        assert!(l.check().is_ok());
    }

    #[test]
    fn nonsense_is_refused_with_the_key() {
        let l = Limits {
            stream_idle_timeout_secs: 0,
            ..Limits::default()
        };
        assert!(l
            .check()
            .unwrap_err()
            .contains("limits.stream_idle_timeout_secs"));
        let l = Limits {
            max_buffered_mib: 8,
            ..Limits::default()
        };
        assert!(l.check().unwrap_err().contains("max_buffered_mib"));
    }
}
