//! Content-Encoding (gzip, deflate, br, zstd) for reading bodies: whole request bodies for inspection,
//! and an incremental decoder for the observer's copy of a response. The bytes that travel are never
//! touched here — only copies are decoded. Output is capped, so a decompression bomb costs at most the
//! cap, never unbounded memory.

use std::io::Write;

/// A content coding the agent can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding.
    Identity,
    /// gzip / x-gzip.
    Gzip,
    /// deflate (zlib-wrapped, per RFC 9110).
    Deflate,
    /// Brotli.
    Br,
    /// Zstandard.
    Zstd,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The coding is not one the agent reads (or several codings are stacked).
    #[error("the content coding {0:?} is not supported (gzip, deflate, br and zstd are)")]
    Unsupported(String),
    /// The decoded body is larger than the cap.
    #[error("the decoded body is larger than {0} bytes")]
    TooLarge(usize),
    /// The bytes are not valid for the coding.
    #[error("the body is not valid {0}: {1}")]
    Corrupt(&'static str, String),
}

impl Coding {
    /// Parses a `Content-Encoding` header value. `None` or `identity` is [`Coding::Identity`].
    pub fn parse(header: Option<&str>) -> Result<Coding, DecodeError> {
        let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Coding::Identity);
        };
        let codings: Vec<String> = h
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .collect();
        match codings.as_slice() {
            [] => Ok(Coding::Identity),
            [one] => match one.as_str() {
                "gzip" | "x-gzip" => Ok(Coding::Gzip),
                "deflate" => Ok(Coding::Deflate),
                "br" => Ok(Coding::Br),
                "zstd" => Ok(Coding::Zstd),
                other => Err(DecodeError::Unsupported(other.to_string())),
            },
            _ => Err(DecodeError::Unsupported(h.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// A `Write` sink that refuses to grow past its cap.
#[derive(Debug)]
struct CappedSink {
    out: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl Write for CappedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("decoded body over the cap"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<CappedSink>),
    Deflate(flate2::write::ZlibDecoder<CappedSink>),
    Br(Box<brotli::DecompressorWriter<CappedSink>>),
    Zstd(zstd::stream::write::Decoder<'static, CappedSink>),
}

/// An incremental decoder: feed encoded chunks, take decoded bytes.
pub struct StreamDecoder {
    coding: Coding,
    inner: Inner,
    failed: Option<DecodeError>,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("coding", &self.coding)
            .finish()
    }
}

impl StreamDecoder {
    /// A decoder for `coding` whose total output is capped at `cap` bytes. `None` for identity.
    pub fn new(coding: Coding, cap: usize) -> Option<Result<StreamDecoder, DecodeError>> {
        let sink = CappedSink {
            out: Vec::new(),
            cap,
            overflowed: false,
        };
        let inner = match coding {
            Coding::Identity => return None,
            Coding::Gzip => Inner::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            Coding::Deflate => Inner::Deflate(flate2::write::ZlibDecoder::new(sink)),
            Coding::Br => Inner::Br(Box::new(brotli::DecompressorWriter::new(sink, 4096))),
            Coding::Zstd => match zstd::stream::write::Decoder::new(sink) {
                Ok(d) => Inner::Zstd(d),
                Err(e) => return Some(Err(DecodeError::Corrupt("zstd", e.to_string()))),
            },
        };
        Some(Ok(StreamDecoder {
            coding,
            inner,
            failed: None,
        }))
    }

    fn sink(&mut self) -> &mut CappedSink {
        match &mut self.inner {
            Inner::Gzip(d) => d.get_mut(),
            Inner::Deflate(d) => d.get_mut(),
            Inner::Br(d) => d.get_mut(),
            Inner::Zstd(d) => d.get_mut(),
        }
    }

    fn fail(&mut self, e: std::io::Error) -> DecodeError {
        let err = if self.sink().overflowed {
            DecodeError::TooLarge(self.sink().cap)
        } else {
            DecodeError::Corrupt(self.coding.name(), e.to_string())
        };
        self.failed = Some(err.clone());
        err
    }

    /// Decodes `chunk` and returns the bytes decoded so far and not yet taken.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = match &mut self.inner {
            Inner::Gzip(d) => d.write_all(chunk).and_then(|_| d.flush()),
            Inner::Deflate(d) => d.write_all(chunk).and_then(|_| d.flush()),
            Inner::Br(d) => d.write_all(chunk).and_then(|_| d.flush()),
            Inner::Zstd(d) => d.write_all(chunk).and_then(|_| d.flush()),
        };
        if let Err(e) = r {
            return Err(self.fail(e));
        }
        Ok(std::mem::take(&mut self.sink().out))
    }

    /// Ends the input; returns any last decoded bytes. A truncated body is an error.
    pub fn finish(mut self) -> Result<Vec<u8>, DecodeError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let coding = self.coding.name();
        let result = match self.inner {
            Inner::Gzip(d) => d.finish().map(|s| s.out),
            Inner::Deflate(d) => d.finish().map(|s| s.out),
            Inner::Br(d) => d
                .into_inner()
                .map(|s| s.out)
                .map_err(|_| std::io::Error::other("truncated brotli stream")),
            Inner::Zstd(mut d) => d.flush().map(|_| d.into_inner().out),
        };
        result.map_err(|e| DecodeError::Corrupt(coding, e.to_string()))
    }
}

/// Decodes a whole body, refusing output over `cap` bytes.
pub fn decode_all(coding: Coding, body: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    match StreamDecoder::new(coding, cap) {
        None => {
            if body.len() > cap {
                return Err(DecodeError::TooLarge(cap));
            }
            Ok(body.to_vec())
        }
        Some(d) => {
            let mut d = d?;
            let mut out = d.feed(body)?;
            out.extend(d.finish()?);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello hello hello"}]}"#;

    fn encode(coding: Coding, data: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Identity => data.to_vec(),
            Coding::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Deflate => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Br => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(data).unwrap();
                }
                out
            }
            Coding::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    #[test]
    fn every_coding_round_trips_whole_and_in_pieces() {
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd] {
            let enc = encode(coding, TEXT);
            assert_eq!(
                decode_all(coding, &enc, 1 << 20).unwrap(),
                TEXT,
                "{coding:?}"
            );
            let mut d = StreamDecoder::new(coding, 1 << 20).unwrap().unwrap();
            let mut out = Vec::new();
            for b in enc.chunks(3) {
                out.extend(d.feed(b).unwrap());
            }
            out.extend(d.finish().unwrap());
            assert_eq!(out, TEXT, "{coding:?} in pieces");
        }
    }

    #[test]
    fn decompression_bombs_stop_at_the_cap() {
        let zeros = vec![0u8; 8 << 20];
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd] {
            let enc = encode(coding, &zeros);
            assert!(enc.len() < 64 << 10, "{coding:?} compresses well");
            assert_eq!(
                decode_all(coding, &enc, 1 << 20),
                Err(DecodeError::TooLarge(1 << 20)),
                "{coding:?}"
            );
        }
    }

    #[test]
    fn corrupt_and_unsupported_codings_are_explained() {
        assert!(matches!(
            decode_all(Coding::Gzip, b"not gzip at all", 1024),
            Err(DecodeError::Corrupt("gzip", _))
        ));
        let enc = encode(Coding::Gzip, TEXT);
        assert!(
            decode_all(Coding::Gzip, &enc[..enc.len() / 2], 1024).is_err(),
            "truncated"
        );
        assert_eq!(Coding::parse(Some("GZIP")), Ok(Coding::Gzip));
        assert_eq!(Coding::parse(Some("identity")), Ok(Coding::Identity));
        assert!(matches!(
            Coding::parse(Some("compress")),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            Coding::parse(Some("gzip, br")),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
