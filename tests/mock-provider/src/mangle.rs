//! Byte-level damage to otherwise correct answers, for the fault modes that test a client's parser:
//! a stream frame whose JSON is cut off (`invalid-json-frame`), bytes that are not UTF-8 inside a
//! text string (`invalid-utf8-frame`), and a huge frame or content string (`huge-frame`). Frames are
//! treated as bytes (SSE frames, with LF or CRLF, or the elements of Gemini's JSON-array stream);
//! what is changed is found by the JSON keys the providers put text under. The server decides when
//! to apply these.

use bytes::Bytes;

use crate::body::Piece;

/// The bytes `invalid-utf8-frame` puts at the start of a text string.
pub const NOT_UTF8: &[u8] = &[0xff, 0xfe];

/// Keys whose string value is generated text in one of the dialects (OpenAI chat `content`, legacy
/// and Anthropic and Gemini `text`, Responses `delta`, tool-call argument fragments), compact or
/// pretty-printed.
const TEXT_KEYS: [&[u8]; 8] = [
    b"\"content\":\"",
    b"\"text\":\"",
    b"\"text\": \"",
    b"\"delta\":\"",
    b"\"partial_json\":\"",
    b"\"arguments\":\"",
    b"\"content\": \"",
    b"\"arguments\": \"",
];

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Index of the quote that closes the JSON string whose contents start at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The span (contents only, without the quotes) of the first non-empty text string in `b`.
pub fn text_span(b: &[u8]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for key in TEXT_KEYS {
        let mut from = 0;
        while let Some(at) = find(b, key, from) {
            let start = at + key.len();
            let Some(end) = string_end(b, start) else {
                break;
            };
            if end > start {
                if best.is_none_or(|(s, _)| start < s) {
                    best = Some((start, end));
                }
                break;
            }
            from = end + 1;
        }
    }
    best
}

fn is_comment(frame: &[u8]) -> bool {
    frame.first() == Some(&b':')
}

/// The line ending a frame uses.
fn eol(frame: &[u8]) -> &'static [u8] {
    if frame.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// The span of a frame's JSON: the value of its `data:` line, or a JSON-array element's object.
fn json_span(frame: &[u8]) -> Option<(usize, usize)> {
    if is_comment(frame) {
        return None;
    }
    let data = if frame.starts_with(b"data: ") {
        Some(0)
    } else {
        find(frame, b"\ndata: ", 0).map(|i| i + 1)
    };
    match data {
        Some(line) => {
            let start = line + 6;
            let end = find(frame, b"\n", start)?;
            let end = if end > start && frame[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            (frame.get(start) == Some(&b'{')).then_some((start, end))
        }
        None => {
            let start = frame.iter().position(|&c| c == b'{')?;
            Some((start, frame.len()))
        }
    }
}

/// `invalid-json-frame`: an extra frame, inserted before the frame at the stream's half-way point,
/// that copies the nearest JSON frame with its JSON cut in half (its `event:` line and line endings
/// kept), so the data is not valid JSON. Gemini's JSON-array stream gets a cut-off element.
pub fn insert_invalid_json(frames: &mut Vec<Bytes>, cut: usize) {
    let cut = cut.min(frames.len());
    let source = (cut..frames.len())
        .chain((0..cut).rev())
        .find_map(|i| json_span(&frames[i]).map(|s| (i, s)));
    let bad = match source {
        Some((i, (start, end))) => {
            let f = &frames[i];
            let mut out = f[..start + (end - start) / 2].to_vec();
            if f.starts_with(b"data: ") || find(f, b"\ndata: ", 0).is_some() {
                let e = eol(f);
                out.extend_from_slice(e);
                out.extend_from_slice(e);
            }
            Bytes::from(out)
        }
        None => Bytes::from_static(b"data: {\"choices\":[{\"delta\":\n\n"),
    };
    frames.insert(cut, bad);
}

/// Puts [`NOT_UTF8`] at the start of the first non-empty text string of `b`, or failing that of its
/// first string value, or at its start.
fn put_not_utf8(b: &[u8]) -> Bytes {
    let at = text_span(b)
        .map(|(s, _)| s)
        .or_else(|| find(b, b"\":\"", 0).map(|i| i + 3))
        .or_else(|| find(b, b"\": \"", 0).map(|i| i + 4))
        .unwrap_or(0);
    let mut out = Vec::with_capacity(b.len() + NOT_UTF8.len());
    out.extend_from_slice(&b[..at]);
    out.extend_from_slice(NOT_UTF8);
    out.extend_from_slice(&b[at..]);
    Bytes::from(out)
}

/// `invalid-utf8-frame`: the first frame from the half-way point on that carries text (else the first
/// one before it, else the frame at the half-way point) gets [`NOT_UTF8`] inside its text string.
pub fn spoil_utf8(frames: &mut [Bytes], cut: usize) {
    if frames.is_empty() {
        return;
    }
    let cut = cut.min(frames.len() - 1);
    let target = (cut..frames.len())
        .chain(0..cut)
        .find(|&i| !is_comment(&frames[i]) && text_span(&frames[i]).is_some())
        .or_else(|| (cut..frames.len()).find(|&i| json_span(&frames[i]).is_some()))
        .unwrap_or(cut);
    frames[target] = put_not_utf8(&frames[target]);
}

/// `invalid-utf8-frame` on a non-streamed body.
pub fn spoil_utf8_body(body: &[u8]) -> Bytes {
    put_not_utf8(body)
}

/// `huge-frame:<MiB>` on a stream: one extra frame of exactly `mib` MiB, a copy of the first frame
/// that carries text with that text replaced by `x`s, inserted right before that frame (or after the
/// first frame, if the first frame is the one). Without a text frame: a `data: {"mock_padding":…}`
/// frame (or array element) after the first frame.
pub fn huge_stream(frames: Vec<Bytes>, mib: u32) -> Vec<Piece> {
    let size = u64::from(mib) * 1024 * 1024;
    let found = frames
        .iter()
        .enumerate()
        .find_map(|(i, f)| (!is_comment(f)).then(|| text_span(f).map(|s| (i, s)))?);
    let (at, prefix, suffix) = match found {
        Some((i, (start, end))) => {
            let f = &frames[i];
            let prefix = if f.first() == Some(&b'[') {
                // The copy of a JSON array's first element follows it as a later element.
                let mut p = b"\n,\r\n".to_vec();
                p.extend_from_slice(&f[1..start]);
                Bytes::from(p)
            } else {
                f.slice(..start)
            };
            (i.max(1), prefix, f.slice(end..))
        }
        None => {
            let first = frames.first().map(|f| &f[..]).unwrap_or(b"");
            if first.first() == Some(&b'[') {
                (
                    1,
                    Bytes::from_static(b"\n,\r\n{\"mock_padding\": \""),
                    Bytes::from_static(b"\"}"),
                )
            } else {
                let e = frames
                    .iter()
                    .find(|f| !is_comment(f))
                    .map_or(&b"\n"[..], |f| eol(f));
                let mut suffix = b"\"}".to_vec();
                suffix.extend_from_slice(e);
                suffix.extend_from_slice(e);
                (
                    1,
                    Bytes::from_static(b"data: {\"mock_padding\":\""),
                    Bytes::from(suffix),
                )
            }
        }
    };
    let fill = size.saturating_sub((prefix.len() + suffix.len()) as u64);
    let at = at.min(frames.len());
    let mut pieces: Vec<Piece> = frames.into_iter().map(Piece::Bytes).collect();
    pieces.insert(
        at,
        Piece::Huge {
            prefix,
            fill,
            suffix,
        },
    );
    pieces
}

/// `huge-frame:<MiB>` on a non-streamed JSON body: its first text string becomes `mib` MiB of `x`s
/// (or, without one, a `"mock_padding"` string of that size is added as the first key).
pub fn huge_body(body: &Bytes, mib: u32) -> Piece {
    let fill = u64::from(mib) * 1024 * 1024;
    match text_span(body) {
        Some((start, end)) => Piece::Huge {
            prefix: body.slice(..start),
            fill,
            suffix: body.slice(end..),
        },
        None => {
            let brace = body.iter().position(|&c| c == b'{').map_or(0, |i| i + 1);
            let mut prefix = body[..brace].to_vec();
            prefix.extend_from_slice(b"\"mock_padding\":\"");
            let rest = &body[brace..];
            let mut suffix = b"\"".to_vec();
            if rest.iter().any(|c| !c.is_ascii_whitespace() && *c != b'}') {
                suffix.push(b',');
            }
            suffix.extend_from_slice(rest);
            Piece::Huge {
                prefix: Bytes::from(prefix),
                fill,
                suffix: Bytes::from(suffix),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_owned())
    }

    #[test]
    fn finds_the_first_non_empty_text() {
        let f = br#"data: {"delta":{"role":"assistant","content":""}}"#;
        assert_eq!(text_span(f), None);
        let f = br#"data: {"choices":[{"delta":{"content":"This "}}]}"#;
        let (s, e) = text_span(f).unwrap_or_default();
        assert_eq!(&f[s..e], b"This ");
        let f = br#"{"a":"x","text": "Hi \"there\""}"#;
        let (s, e) = text_span(f).unwrap_or_default();
        assert_eq!(&f[s..e], br#"Hi \"there\""#);
    }

    #[test]
    fn invalid_json_frame_is_a_cut_copy() {
        let mut frames = vec![
            b("data: {\"a\":\"1\"}\n\n"),
            b("event: x\r\ndata: {\"bbbb\":\"2222\"}\r\n\r\n"),
            b("data: [DONE]\n\n"),
        ];
        insert_invalid_json(&mut frames, 1);
        assert_eq!(frames.len(), 4);
        assert_eq!(&frames[1][..], b"event: x\r\ndata: {\"bbbb\"\r\n\r\n");
        let mut frames = vec![b("data: {\"a\":\"1\"}\n\n"), b("data: [DONE]\n\n")];
        insert_invalid_json(&mut frames, 1);
        assert_eq!(&frames[1][..], b"data: {\"a\"\n\n");
    }

    #[test]
    fn utf8_is_spoiled_inside_the_text() {
        let mut frames = vec![
            b("data: {\"content\":\"This \"}\n\n"),
            b("data: {\"content\":\"is \"}\n\n"),
            b("data: [DONE]\n\n"),
        ];
        spoil_utf8(&mut frames, 1);
        assert_eq!(&frames[1][..], b"data: {\"content\":\"\xff\xfeis \"}\n\n");
        assert_eq!(&frames[0][..], b"data: {\"content\":\"This \"}\n\n");
    }

    #[test]
    fn huge_frame_has_the_exact_size() {
        let frames = vec![
            b("data: {\"content\":\"\"}\n\n"),
            b("data: {\"content\":\"This \"}\n\n"),
            b("data: [DONE]\n\n"),
        ];
        let pieces = huge_stream(frames, 1);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces[1].len(), 1024 * 1024);
        if let Piece::Huge { prefix, suffix, .. } = &pieces[1] {
            assert_eq!(&prefix[..], b"data: {\"content\":\"");
            assert_eq!(&suffix[..], b"\"}\n\n");
        }
        let arr = vec![b("[{\n  \"text\": \"This \"\n}"), b("\n]")];
        let pieces = huge_stream(arr, 2);
        if let Piece::Huge { prefix, .. } = &pieces[1] {
            assert!(prefix.starts_with(b"\n,\r\n{"));
        }
        assert_eq!(pieces[1].len(), 2 * 1024 * 1024);
        let body = b("{\"object\":\"list\",\"data\":[]}");
        let p = huge_body(&body, 1);
        if let Piece::Huge { prefix, suffix, .. } = &p {
            assert_eq!(&prefix[..], b"{\"mock_padding\":\"");
            assert_eq!(&suffix[..], b"\",\"object\":\"list\",\"data\":[]}");
        }
    }
}
