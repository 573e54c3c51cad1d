//! Response compression as the providers' front ends do it: `Accept-Encoding` negotiation (q-values,
//! `identity`, `*`, `;q=0`) among br, zstd, gzip and deflate, the per-request `x-mock-compress`
//! override and the `--compress` default, and an incremental encoder that is flushed after every
//! body frame so a compressed stream still arrives frame by frame. It decides nothing about which
//! bytes a body holds; the server feeds it the bytes it would otherwise send.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use bytes::Bytes;

/// A content coding the mock can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coding {
    /// No content coding.
    #[default]
    Identity,
    /// Brotli (`br`).
    Br,
    /// Zstandard (`zstd`).
    Zstd,
    /// gzip (`gzip`).
    Gzip,
    /// zlib-wrapped deflate (`deflate`, RFC 9110 §8.4.1.2).
    Deflate,
}

/// The codings the mock offers, in the order it prefers them when the client rates them equally.
const OFFERED: [Coding; 4] = [Coding::Br, Coding::Zstd, Coding::Gzip, Coding::Deflate];

impl Coding {
    /// The token used in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }

    /// A small number for the request log's atomic slot (0 is reserved for "not answered").
    pub fn index(self) -> u32 {
        match self {
            Self::Identity => 1,
            Self::Br => 2,
            Self::Zstd => 3,
            Self::Gzip => 4,
            Self::Deflate => 5,
        }
    }

    /// The inverse of [`Coding::index`].
    pub fn from_index(i: u32) -> Option<Self> {
        Some(match i {
            1 => Self::Identity,
            2 => Self::Br,
            3 => Self::Zstd,
            4 => Self::Gzip,
            5 => Self::Deflate,
            _ => return None,
        })
    }

    /// An incremental encoder for this coding (`None` for identity).
    pub fn encoder(self) -> Option<Encoder> {
        Encoder::new(self)
    }

    /// The whole of `data` in this coding.
    pub fn encode_all(self, data: &[u8]) -> io::Result<Bytes> {
        match Encoder::new(self) {
            None => Ok(Bytes::copy_from_slice(data)),
            Some(mut e) => {
                let mut out = e.push(data)?.to_vec();
                out.extend_from_slice(&e.finish()?);
                Ok(Bytes::from(out))
            }
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How responses are compressed: the `--compress` flag (`off`, `auto`) and the `x-mock-compress`
/// header (also a forced coding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// Never compress.
    Off,
    /// Compress with the best coding the request's `Accept-Encoding` allows.
    #[default]
    Auto,
    /// Always use this coding, whatever the request accepts.
    Force(Coding),
}

/// A `--compress` or `x-mock-compress` value that is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCompress(pub String);

impl fmt::Display for InvalidCompress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid x-mock-compress '{}': expected off, auto, gzip, br, zstd or deflate",
            self.0
        )
    }
}

impl std::error::Error for InvalidCompress {}

impl FromStr for Compress {
    type Err = InvalidCompress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "identity" | "none" => Self::Off,
            "auto" => Self::Auto,
            "gzip" => Self::Force(Coding::Gzip),
            "br" => Self::Force(Coding::Br),
            "zstd" => Self::Force(Coding::Zstd),
            "deflate" => Self::Force(Coding::Deflate),
            _ => return Err(InvalidCompress(s.to_owned())),
        })
    }
}

impl Compress {
    /// The coding for a response to a request with this `Accept-Encoding` (all values joined).
    pub fn coding(self, accept_encoding: Option<&str>) -> Coding {
        match self {
            Self::Off => Coding::Identity,
            Self::Force(c) => c,
            Self::Auto => negotiate(accept_encoding),
        }
    }
}

/// The best coding for an `Accept-Encoding` value (RFC 9110 §12.5.3): the offered coding with the
/// highest q-value above 0 (`*` stands for codings not named; ties go to br, zstd, gzip, deflate in
/// that order), unless `identity` is rated higher. No header, an empty header, or nothing
/// acceptable → identity (as real servers do rather than answering 406).
pub fn negotiate(accept_encoding: Option<&str>) -> Coding {
    let Some(header) = accept_encoding else {
        return Coding::Identity;
    };
    // q-values in thousandths, as the RFC allows at most three decimals.
    let mut named: Vec<(String, u16)> = Vec::new();
    let mut wildcard: Option<u16> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut q = Some(1000u16);
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("q") {
                q = parse_q(v.trim());
            }
        }
        let Some(q) = q else {
            continue; // a malformed q-value: ignore the element
        };
        let name = if name == "x-gzip" {
            "gzip".to_owned()
        } else {
            name
        };
        if name == "*" {
            wildcard = Some(wildcard.map_or(q, |w| w.max(q)));
        } else if let Some(slot) = named.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = slot.1.max(q);
        } else {
            named.push((name, q));
        }
    }
    let rating = |name: &str| -> Option<u16> {
        named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, q)| *q)
            .or(wildcard)
    };
    let mut best: Option<(Coding, u16)> = None;
    for c in OFFERED {
        let q = rating(c.name()).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    let identity = rating("identity").unwrap_or(1);
    match best {
        Some((c, q)) if q >= identity => c,
        _ => Coding::Identity,
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths, or `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0u16,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    if whole == 1000 && thousandths > 0 {
        return None;
    }
    Some(whole + thousandths)
}

/// An incremental encoder: every [`Encoder::push`] returns the compressed bytes of that input,
/// flushed, so the receiver can decode everything pushed so far; [`Encoder::finish`] ends the
/// compressed stream.
pub enum Encoder {
    /// gzip.
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// zlib (HTTP `deflate`).
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    /// Brotli.
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> Option<Self> {
        let level = flate2::Compression::new(5);
        Some(match coding {
            Coding::Identity => return None,
            Coding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Coding::Deflate => Self::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            // Quality 4 and a 4 MiB window, roughly what CDNs use for dynamic responses.
            Coding::Br => Self::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                4,
                22,
            ))),
            Coding::Zstd => match zstd::stream::write::Encoder::new(Vec::new(), 3) {
                Ok(e) => Self::Zstd(e),
                // Only fails when zstd cannot allocate its context; fall back to gzip then.
                Err(_) => Self::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            },
        })
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Gzip(e) => e.get_mut(),
            Self::Deflate(e) => e.get_mut(),
            Self::Br(e) => e.get_mut(),
            Self::Zstd(e) => e.get_mut(),
        }
    }

    /// Compresses `data` and flushes: the returned bytes decode to everything pushed so far.
    pub fn push(&mut self, data: &[u8]) -> io::Result<Bytes> {
        match self {
            Self::Gzip(e) => e.write_all(data).and_then(|_| e.flush()),
            Self::Deflate(e) => e.write_all(data).and_then(|_| e.flush()),
            Self::Br(e) => e.write_all(data).and_then(|_| e.flush()),
            Self::Zstd(e) => e.write_all(data).and_then(|_| e.flush()),
        }?;
        Ok(Bytes::from(std::mem::take(self.out())))
    }

    /// Ends the compressed stream (gzip trailer, brotli last block, zstd epilogue).
    pub fn finish(self) -> io::Result<Bytes> {
        let out = match self {
            Self::Gzip(e) => e.finish()?,
            Self::Deflate(e) => e.finish()?,
            Self::Br(e) => e.into_inner(),
            Self::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn n(h: &str) -> Coding {
        negotiate(Some(h))
    }

    #[test]
    fn negotiation_follows_q_values() {
        assert_eq!(negotiate(None), Coding::Identity);
        assert_eq!(n(""), Coding::Identity);
        assert_eq!(n("gzip"), Coding::Gzip);
        assert_eq!(n("gzip, deflate"), Coding::Gzip);
        assert_eq!(n("gzip, deflate, br"), Coding::Br);
        assert_eq!(n("gzip, deflate, br, zstd"), Coding::Br);
        assert_eq!(n("deflate"), Coding::Deflate);
        assert_eq!(n("br;q=0.5, gzip;q=0.8"), Coding::Gzip);
        assert_eq!(n("br;q=0, gzip"), Coding::Gzip);
        assert_eq!(n("zstd;q=1.0, br;q=0.999"), Coding::Zstd);
        assert_eq!(n("*"), Coding::Br);
        assert_eq!(n("*;q=0.5, br;q=0, zstd;q=0"), Coding::Gzip);
        assert_eq!(n("identity"), Coding::Identity);
        assert_eq!(n("identity;q=1, gzip;q=0.5"), Coding::Identity);
        assert_eq!(n("gzip;q=0.5, identity;q=0.5"), Coding::Gzip);
        assert_eq!(n("*;q=0"), Coding::Identity);
        assert_eq!(n("compress, x-gzip"), Coding::Gzip);
        assert_eq!(n("GZIP ; Q=0.3"), Coding::Gzip);
        assert_eq!(n("gzip;q=2"), Coding::Identity);
        assert_eq!(n("gzip;q=abc, deflate"), Coding::Deflate);
        assert_eq!(n("unknown, compress"), Coding::Identity);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q(""), None);
    }

    #[test]
    fn compress_values() {
        assert_eq!("off".parse::<Compress>().ok(), Some(Compress::Off));
        assert_eq!("AUTO".parse::<Compress>().ok(), Some(Compress::Auto));
        assert_eq!(
            "zstd".parse::<Compress>().ok(),
            Some(Compress::Force(Coding::Zstd))
        );
        assert!("lz4".parse::<Compress>().is_err());
        assert_eq!(Compress::Off.coding(Some("gzip")), Coding::Identity);
        assert_eq!(Compress::Force(Coding::Br).coding(None), Coding::Br);
    }

    fn decode(c: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Coding::Identity => out.extend_from_slice(data),
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap_or_default();
            }
            Coding::Deflate => {
                flate2::read::ZlibDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap_or_default();
            }
            Coding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap_or_default();
            }
            Coding::Zstd => out = zstd::decode_all(data).unwrap_or_default(),
        }
        out
    }

    #[test]
    fn every_push_is_decodable_on_its_own_and_the_whole_round_trips() {
        for c in OFFERED {
            let Some(mut e) = c.encoder() else {
                continue;
            };
            let mut wire = Vec::new();
            let mut plain = Vec::new();
            for i in 0..5 {
                let frame = format!("data: {{\"n\":{i}}}\n\n");
                plain.extend_from_slice(frame.as_bytes());
                wire.extend_from_slice(&e.push(frame.as_bytes()).unwrap_or_default());
                // What has been sent so far decodes to every frame pushed so far.
                let mut partial = Vec::new();
                match c {
                    Coding::Gzip => {
                        let mut d = flate2::write::GzDecoder::new(Vec::new());
                        let _ = d.write_all(&wire);
                        let _ = d.flush();
                        partial = d.get_ref().clone();
                    }
                    Coding::Deflate => {
                        let mut d = flate2::write::ZlibDecoder::new(Vec::new());
                        let _ = d.write_all(&wire);
                        let _ = d.flush();
                        partial = d.get_ref().clone();
                    }
                    Coding::Br => {
                        let mut d = brotli::DecompressorWriter::new(Vec::new(), 4096);
                        let _ = d.write_all(&wire);
                        let _ = d.flush();
                        partial = d.get_ref().clone();
                    }
                    Coding::Zstd => {
                        if let Ok(mut d) = zstd::stream::write::Decoder::new(Vec::new()) {
                            let _ = d.write_all(&wire);
                            let _ = d.flush();
                            partial = d.get_ref().clone();
                        }
                    }
                    Coding::Identity => {}
                }
                assert_eq!(partial, plain, "{c} after frame {i}");
            }
            wire.extend_from_slice(&e.finish().unwrap_or_default());
            assert_eq!(decode(c, &wire), plain, "{c}");
            assert_eq!(
                decode(c, &c.encode_all(b"hello").unwrap_or_default()),
                b"hello"
            );
        }
    }
}
