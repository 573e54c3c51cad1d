//! Splitting response bodies into the units providers send: server-sent events (LF or CRLF line endings,
//! comments, multi-line data) and the elements of a JSON array streamed piece by piece (Gemini without
//! `alt=sse`). Splitters are incremental — bytes can be cut anywhere — and bounded: a unit larger than the
//! cap is skipped whole and counted, never buffered without limit. They only find boundaries; what a unit
//! means is for the provider parsers.

/// Largest single SSE event or array element kept for parsing. Larger units pass to the client untouched
/// but are not read.
pub const MAX_UNIT: usize = 1 << 20;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Vec<u8>,
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseSplitter {
    line: Vec<u8>,
    line_too_long: bool,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    event_too_large: bool,
    skipped: u64,
}

impl SseSplitter {
    /// A new splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events skipped because they exceeded [`MAX_UNIT`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feeds bytes, calling `on_event` for each complete event.
    pub fn feed(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(SseEvent)) {
        while !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(i) => {
                    let head = &bytes[..i];
                    bytes = &bytes[i + 1..];
                    if self.line_too_long {
                        self.line_too_long = false;
                        self.line.clear();
                        self.event_too_large = true;
                        continue;
                    }
                    if self.line.is_empty() {
                        self.line_done(head, on_event);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(head);
                        self.line_done(&line, on_event);
                        line.clear();
                        self.line = line;
                    }
                }
                None => {
                    if !self.line_too_long {
                        if self.line.len() + bytes.len() > MAX_UNIT {
                            self.line = Vec::new();
                            self.line_too_long = true;
                        } else {
                            self.line.extend_from_slice(bytes);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Ends the stream: an event not terminated by a blank line is still delivered (some servers omit
    /// the final blank line).
    pub fn finish(&mut self, on_event: &mut dyn FnMut(SseEvent)) {
        if !self.line.is_empty() && !self.line_too_long {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event);
        }
        self.dispatch(on_event);
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(SseEvent)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_UNIT {
                    self.event_too_large = true;
                    self.data = Vec::new();
                } else if !self.event_too_large {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                }
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry, unknown fields
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(SseEvent)) {
        if self.event_too_large {
            self.skipped += 1;
        } else if self.has_data || self.event.is_some() {
            on_event(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
        self.event_too_large = false;
    }
}

/// Where the bytes of one JSON object or array stand: inside a string (and after a backslash), and
/// how deep. What finds the end of a streamed element without parsing it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nesting {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Nesting {
    /// A value just opened by its first `{` or `[`.
    pub fn open() -> Nesting {
        Nesting {
            depth: 1,
            ..Nesting::default()
        }
    }

    /// Whether a value is open.
    pub fn is_open(&self) -> bool {
        self.depth > 0
    }

    /// Reads the next byte of an open value; true when it closes the value.
    pub fn step(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// Incremental splitter for a top-level JSON array whose elements are objects, yielding each element's
/// bytes as soon as its closing brace arrives.
#[derive(Debug, Default)]
pub struct JsonArraySplitter {
    nesting: Nesting,
    started: bool,
    elem: Vec<u8>,
    too_large: bool,
    skipped: u64,
    /// Bytes outside any element that are not array punctuation (a non-array body, e.g. an error object).
    stray: bool,
}

impl JsonArraySplitter {
    /// A new splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Elements skipped because they exceeded [`MAX_UNIT`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the body turned out not to be an array of objects.
    pub fn saw_non_array(&self) -> bool {
        self.stray
    }

    /// Feeds bytes, calling `on_element` with each complete element.
    pub fn feed(&mut self, bytes: &[u8], on_element: &mut dyn FnMut(&[u8])) {
        let mut start = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            if !self.nesting.is_open() {
                match b {
                    b'[' if !self.started => self.started = true,
                    b'{' if self.started => {
                        self.nesting = Nesting::open();
                        start = i;
                        self.elem.clear();
                        self.too_large = false;
                    }
                    b',' | b']' | b' ' | b'\n' | b'\r' | b'\t' => {}
                    b'{' => {
                        // An object where an array was expected (an error body): parse it as one element.
                        self.stray = true;
                        self.started = true;
                        self.nesting = Nesting::open();
                        start = i;
                        self.elem.clear();
                        self.too_large = false;
                    }
                    _ => self.stray = true,
                }
                continue;
            }
            if self.nesting.step(b) {
                self.push(&bytes[start..=i]);
                if self.too_large {
                    self.skipped += 1;
                } else {
                    let elem = std::mem::take(&mut self.elem);
                    on_element(&elem);
                    self.elem = elem;
                }
                self.elem.clear();
            }
        }
        if self.nesting.is_open() {
            self.push(&bytes[start..]);
        }
    }

    fn push(&mut self, part: &[u8]) {
        if self.too_large {
            return;
        }
        if self.elem.len() + part.len() > MAX_UNIT {
            self.too_large = true;
            self.elem = Vec::new();
        } else {
            self.elem.extend_from_slice(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse_all(input: &[u8], split: usize) -> Vec<SseEvent> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        for part in input.chunks(split.max(1)) {
            s.feed(part, &mut |e| out.push(e));
        }
        s.finish(&mut |e| out.push(e));
        out
    }

    #[test]
    fn sse_events_are_the_same_at_every_split_and_line_ending() {
        let lf = b": comment\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        let crlf: Vec<u8> = String::from_utf8_lossy(lf)
            .replace('\n', "\r\n")
            .into_bytes();
        let expected = vec![
            SseEvent {
                event: Some("message_start".into()),
                data: b"{\"a\":1}".to_vec(),
            },
            SseEvent {
                event: None,
                data: b"line1\nline2".to_vec(),
            },
            SseEvent {
                event: None,
                data: b"[DONE]".to_vec(),
            },
        ];
        for input in [&lf[..], &crlf[..]] {
            for split in 1..=input.len() {
                assert_eq!(sse_all(input, split), expected, "split {split}");
            }
        }
    }

    #[test]
    fn final_event_without_blank_line_is_delivered() {
        assert_eq!(
            sse_all(b"data: x", 3),
            vec![SseEvent {
                event: None,
                data: b"x".to_vec()
            }]
        );
    }

    #[test]
    fn oversized_event_is_skipped_with_bounded_memory() {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        s.feed(b"data: ", &mut |e| out.push(e));
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..64 {
            s.feed(&chunk, &mut |e| out.push(e));
            assert!(s.line.capacity() <= 2 * MAX_UNIT && s.data.capacity() <= 2 * MAX_UNIT);
        }
        s.feed(b"\n\ndata: ok\n\n", &mut |e| out.push(e));
        assert_eq!(
            out,
            vec![SseEvent {
                event: None,
                data: b"ok".to_vec()
            }]
        );
        assert_eq!(s.skipped(), 1);
        // Many data lines adding up past the cap are skipped the same way.
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        let line = [b"data: ".to_vec(), vec![b'y'; 1000], b"\n".to_vec()].concat();
        for _ in 0..2000 {
            s.feed(&line, &mut |e| out.push(e));
        }
        s.feed(b"\n", &mut |e| out.push(e));
        assert!(out.is_empty());
        assert_eq!(s.skipped(), 1);
    }

    #[test]
    fn json_array_elements_at_every_split() {
        let input = b"[{\"a\":\"x}]\\\"{\",\"b\":[1,{\"c\":2}]}\n,\r\n{\"d\":3}]";
        for split in 1..=input.len() {
            let mut s = JsonArraySplitter::new();
            let mut out: Vec<Vec<u8>> = Vec::new();
            for part in input.chunks(split) {
                s.feed(part, &mut |e| out.push(e.to_vec()));
            }
            assert_eq!(
                out,
                vec![
                    b"{\"a\":\"x}]\\\"{\",\"b\":[1,{\"c\":2}]}".to_vec(),
                    b"{\"d\":3}".to_vec()
                ],
                "split {split}"
            );
            assert!(!s.saw_non_array());
        }
    }

    #[test]
    fn json_error_object_instead_of_array_is_one_element() {
        let mut s = JsonArraySplitter::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        s.feed(b"{\"error\":{\"code\":429}}", &mut |e| out.push(e.to_vec()));
        assert_eq!(out.len(), 1);
        assert!(s.saw_non_array());
    }
}
