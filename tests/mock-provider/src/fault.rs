//! Fault modes the mock can inject, parsed from the `x-mock-fault` request header or the `--fault`
//! flag. A fault value is one mode, or `slow-headers:<ms>` combined with one other mode by a comma
//! (`slow-headers:200,429`). This module only parses and names faults; the server and the provider
//! modules carry them out.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The valid fault values, for error messages and `--help`.
pub const VALID_FAULTS: &str = "none, 500, 503, 529, 429, reset, reset-mid-stream, error-mid-stream, \
content-filter (Azure hosts only), slow-headers:<ms> (slow-headers may be combined with one other mode by a comma, e.g. slow-headers:200,429)";

/// What goes wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultKind {
    /// Nothing: answer normally.
    #[default]
    None,
    /// Answer with this status (429, 500, 503, 529) and the provider's error body.
    Status(u16),
    /// Close the connection without any response (TCP reset).
    Reset,
    /// Send the headers and the first half of the body, then abort.
    ResetMidStream,
    /// Send the first half of the stream, then the provider's in-stream error frame, then end.
    ErrorMidStream,
    /// Azure OpenAI's 400 `content_filter` refusal of the prompt.
    ContentFilter,
}

/// A parsed fault value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fault {
    /// Wait this long before sending the response headers.
    pub slow_headers: Option<Duration>,
    /// The failure mode.
    pub kind: FaultKind,
}

/// A fault value that is not one of [`VALID_FAULTS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFault(pub String);

impl fmt::Display for InvalidFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid mock fault '{}'; valid values: {VALID_FAULTS}",
            self.0
        )
    }
}

impl std::error::Error for InvalidFault {}

impl FromStr for Fault {
    type Err = InvalidFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidFault(s.to_owned());
        let mut fault = Fault::default();
        let mut kind_set = false;
        for part in s.split(',').map(str::trim) {
            if let Some(ms) = part.strip_prefix("slow-headers:") {
                if fault.slow_headers.is_some() {
                    return Err(bad());
                }
                let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
                fault.slow_headers = Some(Duration::from_millis(ms));
                continue;
            }
            if kind_set {
                return Err(bad());
            }
            kind_set = true;
            fault.kind = match part {
                "" | "none" => FaultKind::None,
                "500" => FaultKind::Status(500),
                "503" => FaultKind::Status(503),
                "529" => FaultKind::Status(529),
                "429" => FaultKind::Status(429),
                "reset" => FaultKind::Reset,
                "reset-mid-stream" => FaultKind::ResetMidStream,
                "error-mid-stream" => FaultKind::ErrorMidStream,
                "content-filter" => FaultKind::ContentFilter,
                _ => return Err(bad()),
            };
        }
        Ok(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_values() {
        assert_eq!(
            "429".parse::<Fault>().ok().map(|f| f.kind),
            Some(FaultKind::Status(429))
        );
        assert_eq!(
            "reset-mid-stream".parse::<Fault>().ok().map(|f| f.kind),
            Some(FaultKind::ResetMidStream)
        );
        let f: Result<Fault, _> = "slow-headers:250,500".parse();
        assert_eq!(
            f.ok(),
            Some(Fault {
                slow_headers: Some(Duration::from_millis(250)),
                kind: FaultKind::Status(500)
            })
        );
        assert_eq!("none".parse::<Fault>().ok(), Some(Fault::default()));
    }

    #[test]
    fn rejects_invalid_values() {
        for bad in [
            "418",
            "slow-headers:x",
            "reset,500",
            "slow-headers:1,slow-headers:2",
            "boom",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
