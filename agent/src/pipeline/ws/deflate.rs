//! `permessage-deflate` (RFC 7692) as far as the agent needs it: reading what the upstream's 101
//! accepted, decoding a copy of each compressed message (flate2, raw deflate with the `00 00 ff ff`
//! tail put back, bounded output), and the one change the agent makes to the client's 101 —
//! `client_no_context_takeover` — so that a message the agent refuses and does not forward cannot leave
//! the upstream's decompressor out of step with the client's compressor. For the other direction, when
//! response stages are configured, the agent's upgrade request asks the upstream for
//! `server_no_context_takeover`: the agent may then rewrite (as a new, uncompressed frame), hold back
//! or drop a server message and the client's decompressor stays in step, at no cost to messages the
//! stages leave alone. Asking is chosen over re-compressing every message because it keeps the
//! original frames byte for byte; an upstream that refuses (keeps its context) is handled by sending
//! the client every message of that socket decoded, uncompressed ([`super::upstream`]; a message too
//! large to read then still passes compressed, and the client cannot decode it). It never compresses.

use flate2::{Decompress, FlushDecompress, Status};
use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};

/// The sync-flush tail a sender strips from each compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether the upstream accepted `permessage-deflate` in its 101.
pub(crate) fn accepted(headers: &HeaderMap) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|ext| {
            ext.split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
        })
}

/// Adds `client_no_context_takeover` to an accepted `permessage-deflate` in the 101 the client gets
/// (RFC 7692 §7.1.1.1 lets a server add it even when the client did not offer it). The client then
/// compresses every message on its own, so a message the agent refuses can be left out without
/// breaking the messages after it. Returns whether the header was changed.
pub(crate) fn require_client_no_context_takeover(headers: &mut HeaderMap) -> bool {
    let Some(value) = headers
        .get(SEC_WEBSOCKET_EXTENSIONS)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut changed = false;
    let exts: Vec<String> = value
        .split(',')
        .map(|ext| {
            let mut params = ext.split(';').map(str::trim);
            let is_deflate = params
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"));
            let has = params.any(|p| p.eq_ignore_ascii_case("client_no_context_takeover"));
            if is_deflate && !has && !changed {
                changed = true;
                format!("{}; client_no_context_takeover", ext.trim())
            } else {
                ext.trim().to_string()
            }
        })
        .collect();
    if !changed {
        return false;
    }
    match HeaderValue::from_str(&exts.join(", ")) {
        Ok(v) => {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, v);
            true
        }
        Err(_) => false,
    }
}

/// Adds `server_no_context_takeover` to every `permessage-deflate` offer in the upgrade request the
/// agent sends upstream (RFC 7692 §7.1.1.1 lets a client ask for it; a server that accepts the offer
/// must honour it). Asked for when response stages are configured: the server then compresses every
/// message on its own, so the agent may rewrite, hold back or drop one of its messages toward the
/// client without leaving the client's decompressor out of step. Returns whether the header changed.
pub(crate) fn request_server_no_context_takeover(headers: &mut HeaderMap) -> bool {
    let offers: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    let mut changed = false;
    let offers: Vec<String> = offers
        .into_iter()
        .map(|offer| {
            let mut params = offer.split(';').map(str::trim);
            let is_deflate = params
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"));
            let has = params.any(|p| p.eq_ignore_ascii_case("server_no_context_takeover"));
            if is_deflate && !has {
                changed = true;
                format!("{offer}; server_no_context_takeover")
            } else {
                offer
            }
        })
        .collect();
    if !changed {
        return false;
    }
    match HeaderValue::from_str(&offers.join(", ")) {
        Ok(v) => {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, v);
            true
        }
        Err(_) => false,
    }
}

/// Why a compressed message could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InflateError {
    /// It decompresses to more than the cap.
    #[error("the message decompresses to more than {0} bytes")]
    TooLarge(usize),
    /// It is not valid deflate data.
    #[error("the message is not valid deflate data: {0}")]
    Corrupt(String),
}

/// The decompressor of one direction. It keeps its window across messages: that is right whether or
/// not the sender keeps its own (a sender without context takeover simply never refers back).
pub(crate) struct Inflater {
    d: Decompress,
    /// A message failed to decode: the window is lost, so later messages cannot be read either.
    broken: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("broken", &self.broken)
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            d: Decompress::new(false),
            broken: false,
        }
    }
}

impl Inflater {
    /// Decodes one message's payload (all its frames' payloads joined), to at most `cap` bytes.
    pub(crate) fn inflate(&mut self, payload: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
        if self.broken {
            return Err(InflateError::Corrupt(
                "an earlier message on this socket could not be decoded".into(),
            ));
        }
        let r = self.run(payload, cap);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// A message went by without being decoded: the window is no longer the sender's.
    pub(crate) fn lose_window(&mut self) {
        self.broken = true;
    }

    fn run(&mut self, payload: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
        let mut out: Vec<u8> =
            Vec::with_capacity(payload.len().saturating_mul(4).clamp(64, cap.max(64)));
        for input in [payload, &TAIL[..]] {
            let mut pos = 0usize;
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= cap {
                        return Err(InflateError::TooLarge(cap));
                    }
                    let more = out.capacity().max(4096).min(cap - out.len());
                    out.reserve_exact(more);
                }
                let (in_before, out_before) = (self.d.total_in(), out.len());
                let status = self
                    .d
                    .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
                    .map_err(|e| InflateError::Corrupt(e.to_string()))?;
                let consumed = usize::try_from(self.d.total_in() - in_before).unwrap_or(usize::MAX);
                pos = pos.saturating_add(consumed);
                if status == Status::StreamEnd {
                    // A sender that ended its deflate stream: the next message starts a new one.
                    self.d.reset(false);
                    return Ok(out);
                }
                let room_left = out.len() < out.capacity();
                let stuck = consumed == 0 && out.len() == out_before;
                // Done with this input once it is all in and the output was not what stopped it; an
                // output that filled up gets more room on the next turn.
                if room_left && (pos >= input.len() || stuck) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses like a permessage-deflate sender: sync flush, tail stripped.
    fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn messages_decode_with_the_window_carried_across_them() {
        let mut c = Compress::new(Compression::default(), false);
        let mut i = Inflater::default();
        let first = br#"{"type":"response.create","model":"gpt-5","input":[]}"#;
        let second = br#"{"type":"response.create","model":"gpt-5","input":[{"x":1}]}"#;
        let a = deflate(&mut c, first);
        let b = deflate(&mut c, second); // refers back into the first message
        assert_eq!(i.inflate(&a, 1 << 20).unwrap(), first);
        assert_eq!(i.inflate(&b, 1 << 20).unwrap(), second);
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_cap() {
        let mut c = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; 4 << 20];
        let z = deflate(&mut c, &zeros);
        assert!(z.len() < 64 << 10);
        let mut i = Inflater::default();
        assert!(matches!(
            i.inflate(&z, 1 << 20),
            Err(InflateError::TooLarge(_))
        ));
        assert!(
            i.inflate(&z, 8 << 20).is_err(),
            "the window is gone after a failure"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let mut i = Inflater::default();
        assert!(matches!(
            i.inflate(&[0xff, 0xff, 0xff, 0xff, 0x12], 1 << 20),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn the_upstream_is_asked_to_compress_each_message_alone() {
        let mut h = HeaderMap::new();
        h.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(
                "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
            ),
        );
        assert!(request_server_no_context_takeover(&mut h));
        assert_eq!(
            h[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; client_max_window_bits; server_no_context_takeover, x-webkit-deflate-frame"
        );
        assert!(!request_server_no_context_takeover(&mut h), "already asked");
        assert!(!request_server_no_context_takeover(&mut HeaderMap::new()));
    }

    #[test]
    fn the_clients_101_is_made_to_compress_each_message_alone() {
        let mut h = HeaderMap::new();
        h.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; client_max_window_bits=15"),
        );
        assert!(accepted(&h));
        assert!(require_client_no_context_takeover(&mut h));
        assert_eq!(
            h[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; client_max_window_bits=15; client_no_context_takeover"
        );
        assert!(!require_client_no_context_takeover(&mut h), "already there");
        let mut none = HeaderMap::new();
        assert!(!accepted(&none));
        assert!(!require_client_no_context_takeover(&mut none));
    }
}
