//! The request log behind `GET /__mock/requests`: a ring buffer of the last N requests (host, method,
//! path, query, headers verbatim including credentials, body) that tests read to check what Airlock
//! forwarded, plus the status and content coding of the answer once it is sent. Bodies are kept as
//! the received bytes and parsed as JSON only when the log is read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use serde_json::Value;

use crate::encoding::Coding;
use crate::j;
use crate::json::J;

/// What the mock answered a recorded request: set once the response head is ready (a request
/// that is never answered, such as `stall-headers`, keeps none).
#[derive(Debug, Default)]
pub struct Answer(AtomicU32);

impl Answer {
    /// Notes the status and the content coding of the response.
    pub fn set(&self, status: u16, coding: Coding) {
        self.0
            .store(u32::from(status) << 8 | coding.index(), Ordering::Release);
    }

    /// The status and coding, if answered.
    pub fn get(&self) -> Option<(u16, Coding)> {
        let v = self.0.load(Ordering::Acquire);
        let status = u16::try_from(v >> 8).ok().filter(|s| *s != 0)?;
        Some((status, Coding::from_index(v & 0xff)?))
    }
}

/// One recorded request.
pub struct Recorded {
    /// Which listener took it: `tls` or `plain`.
    pub listener: &'static str,
    /// HTTP version.
    pub version: Version,
    /// Host the request was addressed to (no port).
    pub host: String,
    /// Method.
    pub method: Method,
    /// Path as received.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// The answer, once sent.
    pub answer: Arc<Answer>,
}

/// The ring buffer.
pub struct RequestLog {
    limit: usize,
    entries: Mutex<VecDeque<Recorded>>,
}

impl RequestLog {
    /// A log that keeps the last `limit` requests (0 keeps none).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            entries: Mutex::new(VecDeque::with_capacity(limit.min(1024))),
        }
    }

    /// Whether recording is on.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Adds a request, dropping the oldest beyond the limit.
    pub fn push(&self, r: Recorded) {
        if self.limit == 0 {
            return;
        }
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        while entries.len() >= self.limit {
            entries.pop_front();
        }
        entries.push_back(r);
    }

    /// Removes every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = entries.len();
        entries.clear();
        n
    }

    /// The log as `{"requests":[...]}`, oldest first.
    pub fn to_json(&self) -> J {
        let entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let requests: Vec<J> = entries.iter().map(entry_json).collect();
        j!({ "requests": requests })
    }
}

fn entry_json(r: &Recorded) -> J {
    let mut headers: Vec<(std::borrow::Cow<'static, str>, J)> = Vec::new();
    for name in r.headers.keys() {
        let value = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.push((name.as_str().to_owned().into(), J::from(value)));
    }
    let body = serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null);
    let accept_encoding = r
        .headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .reduce(|a, b| format!("{a}, {b}"));
    let answer = r.answer.get();
    j!({
        "listener": (r.listener),
        "version": (format!("{:?}", r.version)),
        "host": (r.host.clone()),
        "method": (r.method.as_str().to_owned()),
        "path": (r.path.clone()),
        "query": (r.query.clone()),
        "headers": (J::O(headers)),
        "body": body,
        "body_len": (r.body.len()),
        "accept_encoding": accept_encoding,
        "status": (answer.map(|(s, _)| s)),
        "response_encoding": (answer.map(|(_, c)| c.name())),
    })
}
