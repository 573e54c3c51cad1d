//! Fault modes the mock can inject, parsed from the `x-mock-fault` request header or the `--fault`
//! flag. A fault value is one mode, or `slow-headers:<ms>` combined with one other mode by a comma
//! (`slow-headers:200,429`). This module only parses and names faults; the server and the provider
//! modules carry them out.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The valid fault values, for error messages and `--help`.
pub const VALID_FAULTS: &str = "none, 500, 503, 529, 429, 500-empty, 503-empty, 429-empty, 502-html, \
reset, close, reset-mid-stream, reset-mid-frame, reset-at:<bytes>, stall-headers, stall-mid-stream, \
stall-at:<bytes>, error-mid-stream, invalid-json-frame, invalid-utf8-frame, wrong-content-type, \
huge-frame:<MiB, 1-1024>, content-filter (Azure hosts only), slow-headers:<ms> (slow-headers may be \
combined with one other mode by a comma, e.g. slow-headers:200,429)";

/// Largest `huge-frame:<MiB>`.
pub const MAX_HUGE_FRAME_MIB: u32 = 1024;

/// What goes wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultKind {
    /// Nothing: answer normally.
    #[default]
    None,
    /// Answer with this status (429, 500, 503, 529) and the provider's error body.
    Status(u16),
    /// Answer with this status (429, 500, 503), `content-length: 0` and no body.
    EmptyStatus(u16),
    /// A 502 with a load balancer's HTML error page.
    Html502,
    /// Close the connection without any response (TCP reset).
    Reset,
    /// Close the connection without any response, cleanly (FIN, no TLS close_notify).
    Close,
    /// Send the headers and the first half of the body, then abort.
    ResetMidStream,
    /// Send the first half of the frames and the first half of the next frame's bytes, then reset
    /// the TCP connection.
    ResetMidFrame,
    /// Send the headers and exactly this many body bytes (as on the wire), then reset the TCP
    /// connection.
    ResetAt(u64),
    /// Accept the request and never answer.
    StallHeaders,
    /// Send the headers and the first half of the frames, then nothing more, forever.
    StallMidStream,
    /// Send the headers and exactly this many body bytes (as on the wire), then nothing more.
    StallAt(u64),
    /// Send the first half of the stream, then the provider's in-stream error frame, then end.
    ErrorMidStream,
    /// One extra stream frame whose data is cut-off JSON, after the first half of the frames.
    InvalidJsonFrame,
    /// One stream frame (from the first half on) with the bytes 0xff 0xfe inside its text.
    InvalidUtf8Frame,
    /// The normal body with `content-type: text/html; charset=utf-8`.
    WrongContentType,
    /// One extra stream frame of this many MiB, right before the first text frame.
    HugeFrame(u32),
    /// Azure OpenAI's 400 `content_filter` refusal of the prompt.
    ContentFilter,
}

impl FaultKind {
    /// Whether the fault changes the body of a successful answer (and so applies to successful
    /// answers only).
    pub fn shapes_body(self) -> bool {
        matches!(
            self,
            Self::ResetMidStream
                | Self::ResetMidFrame
                | Self::ResetAt(_)
                | Self::StallMidStream
                | Self::StallAt(_)
                | Self::ErrorMidStream
                | Self::InvalidJsonFrame
                | Self::InvalidUtf8Frame
                | Self::HugeFrame(_)
        )
    }
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
            let bytes = |prefix: &str| -> Option<Result<u64, InvalidFault>> {
                part.strip_prefix(prefix)
                    .map(|n| n.trim().parse::<u64>().map_err(|_| bad()))
            };
            if let Some(n) = bytes("reset-at:") {
                fault.kind = FaultKind::ResetAt(n?);
                continue;
            }
            if let Some(n) = bytes("stall-at:") {
                fault.kind = FaultKind::StallAt(n?);
                continue;
            }
            if let Some(n) = part.strip_prefix("huge-frame:") {
                let mib = n
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=MAX_HUGE_FRAME_MIB).contains(m))
                    .ok_or_else(bad)?;
                fault.kind = FaultKind::HugeFrame(mib);
                continue;
            }
            fault.kind = match part {
                "" | "none" => FaultKind::None,
                "500" => FaultKind::Status(500),
                "503" => FaultKind::Status(503),
                "529" => FaultKind::Status(529),
                "429" => FaultKind::Status(429),
                "500-empty" => FaultKind::EmptyStatus(500),
                "503-empty" => FaultKind::EmptyStatus(503),
                "429-empty" => FaultKind::EmptyStatus(429),
                "502-html" => FaultKind::Html502,
                "reset" => FaultKind::Reset,
                "close" => FaultKind::Close,
                "reset-mid-stream" => FaultKind::ResetMidStream,
                "reset-mid-frame" => FaultKind::ResetMidFrame,
                "stall-headers" => FaultKind::StallHeaders,
                "stall-mid-stream" => FaultKind::StallMidStream,
                "error-mid-stream" => FaultKind::ErrorMidStream,
                "invalid-json-frame" => FaultKind::InvalidJsonFrame,
                "invalid-utf8-frame" => FaultKind::InvalidUtf8Frame,
                "wrong-content-type" => FaultKind::WrongContentType,
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

    fn kind(s: &str) -> Option<FaultKind> {
        s.parse::<Fault>().ok().map(|f| f.kind)
    }

    #[test]
    fn parses_valid_values() {
        assert_eq!(kind("429"), Some(FaultKind::Status(429)));
        assert_eq!(kind("reset-mid-stream"), Some(FaultKind::ResetMidStream));
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
    fn parses_the_new_modes() {
        assert_eq!(kind("reset-at:0"), Some(FaultKind::ResetAt(0)));
        assert_eq!(kind("reset-at: 1234"), Some(FaultKind::ResetAt(1234)));
        assert_eq!(kind("stall-at:17"), Some(FaultKind::StallAt(17)));
        assert_eq!(kind("huge-frame:1"), Some(FaultKind::HugeFrame(1)));
        assert_eq!(kind("huge-frame:1024"), Some(FaultKind::HugeFrame(1024)));
        assert_eq!(kind("500-empty"), Some(FaultKind::EmptyStatus(500)));
        assert_eq!(kind("429-empty"), Some(FaultKind::EmptyStatus(429)));
        assert_eq!(kind("502-html"), Some(FaultKind::Html502));
        assert_eq!(kind("stall-headers"), Some(FaultKind::StallHeaders));
        assert_eq!(
            kind("wrong-content-type"),
            Some(FaultKind::WrongContentType)
        );
        let f: Result<Fault, _> = "slow-headers:100,reset-at:5".parse();
        assert_eq!(
            f.ok(),
            Some(Fault {
                slow_headers: Some(Duration::from_millis(100)),
                kind: FaultKind::ResetAt(5)
            })
        );
    }

    #[test]
    fn rejects_invalid_values() {
        for bad in [
            "418",
            "slow-headers:x",
            "reset,500",
            "slow-headers:1,slow-headers:2",
            "boom",
            "reset-at:",
            "reset-at:-1",
            "stall-at:x",
            "huge-frame:0",
            "huge-frame:1025",
            "502-empty",
            "reset-at:5,stall-at:5",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
