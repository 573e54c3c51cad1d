//! The structured record every intercepted request yields, and where records go: an in-memory ring the
//! status API reads, counters, and an append-only JSON-lines file written by a background thread. It owns
//! the record's shape; it must never hold prompt or response bodies, credentials or API keys (paths are
//! redacted by the caller before they get here).

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How a request reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterceptMode {
    /// Through the forward proxy (CONNECT + TLS termination, or absolute-form HTTP).
    Proxy,
    /// Through a base-URL path on the listener (`/openai/v1/...`).
    BaseUrl,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running.
    InProgress,
    /// The upstream answered and the whole response reached the client (any status).
    Completed,
    /// The response started but the upstream stream broke before its end.
    Incomplete,
    /// The client went away before the response ended.
    ClientClosed,
    /// No response from upstream (connect, TLS or protocol failure); the agent answered with an error.
    UpstreamFailed,
    /// The agent refused the request itself (bad input, policy).
    Rejected,
}

/// Token usage, normalised across providers (wire-formats.md §0): every count is a total the provider
/// bills, and the cache and reasoning counts are subsets of the totals they belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens: uncached, cache reads and cache writes together.
    pub input_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `input_tokens`, those written to the prompt cache (any TTL).
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written with a one-hour TTL (Anthropic), priced higher.
    pub cache_write_1h_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// Of `output_tokens`, reasoning (thinking) tokens.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input tokens neither read from nor written to a cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// Usage with only plain input and output counts.
    pub fn plain(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        }
    }
}

/// Whether and how a request's cost is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostStatus {
    /// Exact usage × the model's price.
    Priced,
    /// Estimated usage × the model's price.
    Estimated,
    /// The model has no price (flagged, never counted as free).
    Unknown,
}

/// One request's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Unique id, also sent to the client as `x-airlock-request-id`.
    pub id: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// How the request arrived.
    pub mode: InterceptMode,
    /// Upstream host.
    pub host: String,
    /// Provider name from policy.
    pub provider: String,
    /// Operation (`chat_completions`, `responses`, `messages`, `generate_content` …).
    pub operation: String,
    /// Model asked for, when known.
    pub model: Option<String>,
    /// Whether a streamed response was asked for.
    pub stream: bool,
    /// HTTP method.
    pub method: String,
    /// Upstream path and query, with credentials in the query redacted.
    pub path: String,
    /// Response status sent to the client.
    pub status: Option<u16>,
    /// How it ended.
    pub outcome: Outcome,
    /// How the request authenticated — the kind only (`bearer`, `x_api_key`, `api_key`,
    /// `goog_api_key`, `query_key`, `none`), never the value.
    pub credential: String,
    /// The model the response named (a dated snapshot, or the model behind an Azure deployment).
    pub response_model: Option<String>,
    /// Token usage: as the response reported it, or estimated (see `usage_estimated`).
    pub usage: Option<Usage>,
    /// Whether `usage` is an estimate (the stream was cut short, or the provider reported none).
    pub usage_estimated: bool,
    /// Whether the agent asked upstream for stream usage the client had not asked for (and removed
    /// the extra chunk before the client saw it).
    pub usage_injected: bool,
    /// Cost in USD, when the model has a price.
    pub cost_usd: Option<f64>,
    /// `priced`, `estimated` (priced from estimated usage) or `unknown` (no price: see `cost_note`).
    pub cost_status: Option<CostStatus>,
    /// The price-table entry used, or why there is no cost.
    pub cost_note: Option<String>,
    /// An error the provider reported in its response or stream (type and message, no content).
    pub upstream_error: Option<String>,
    /// Total time until the last response byte (or the failure), milliseconds.
    pub latency_ms: Option<f64>,
    /// Time until the first response body byte arrived from upstream, milliseconds.
    pub ttfb_ms: Option<f64>,
    /// Request body bytes sent upstream.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// What went wrong, if anything (never contains bodies or credentials).
    pub error: Option<String>,
}

/// Where completed records go.
pub struct Recorder {
    ring: Mutex<VecDeque<Arc<Record>>>,
    capacity: usize,
    seen: AtomicU64,
    in_flight: AtomicU64,
    next_id: AtomicU64,
    id_prefix: String,
    sink: Mutex<Option<mpsc::Sender<Arc<Record>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("capacity", &self.capacity)
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish()
    }
}

impl Recorder {
    /// A recorder keeping the last `capacity` records in memory, and appending every record to
    /// `file` (JSON lines) if given.
    pub fn new(capacity: usize, file: Option<PathBuf>) -> Recorder {
        let mut sink = None;
        let mut writer = None;
        if let Some(path) = file {
            let (tx, rx) = mpsc::channel::<Arc<Record>>();
            match std::thread::Builder::new()
                .name("airlock-records".into())
                .spawn(move || write_records(path, rx))
            {
                Ok(handle) => {
                    sink = Some(tx);
                    writer = Some(handle);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the records writer; records stay in memory only")
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Recorder {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            seen: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            id_prefix: format!(
                "{:08x}",
                ((nanos as u64) ^ u64::from(std::process::id())) & 0xffff_ffff
            ),
            sink: Mutex::new(sink),
            writer: Mutex::new(writer),
        }
    }

    /// A fresh request id.
    pub fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("req_{}{:08x}", self.id_prefix, n)
    }

    /// Notes a request has started.
    pub fn begin(&self) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores a finished record.
    pub fn finish(&self, record: Record) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let record = Arc::new(record);
        if let Ok(sink) = self.sink.lock() {
            if let Some(tx) = sink.as_ref() {
                let _ = tx.send(record.clone());
            }
        }
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(record);
        }
    }

    /// Stops the file writer after it has written every record it was given.
    pub fn close(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            sink.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Requests seen since start.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most recent `limit` finished records, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<Record>> {
        match self.ring.lock() {
            Ok(ring) => ring
                .iter()
                .skip(ring.len().saturating_sub(limit))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// How long the writer lets records gather before writing them: one write and flush per batch, not
/// one wake-up per request.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

fn write_records(path: PathBuf, rx: mpsc::Receiver<Arc<Record>>) {
    let mut out = match crate::paths::open_append(&path, 0o600) {
        Ok(f) => std::io::BufWriter::new(f),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the records file; records stay in memory only");
            return;
        }
    };
    loop {
        // Wait for the first record of a batch, then let more gather before writing.
        let first = match rx.recv() {
            Ok(r) => r,
            Err(_) => return,
        };
        std::thread::sleep(WRITE_INTERVAL);
        let mut closed = false;
        let mut batch = vec![first];
        loop {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        for r in batch {
            match serde_json::to_vec(&*r) {
                Ok(mut line) => {
                    line.push(b'\n');
                    if let Err(e) = out.write_all(&line) {
                        tracing::error!(error = %e, "cannot append to the records file");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot serialise a record"),
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "cannot flush the records file");
        }
        if closed {
            return;
        }
    }
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Record {
        Record {
            id: id.into(),
            started_at: now_rfc3339(),
            mode: InterceptMode::Proxy,
            host: "api.openai.com".into(),
            provider: "openai".into(),
            operation: "chat_completions".into(),
            model: Some("gpt-4o-mini".into()),
            stream: false,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: Some(200),
            outcome: Outcome::Completed,
            credential: "bearer".into(),
            response_model: None,
            usage: Some(Usage::plain(3, 4)),
            usage_estimated: false,
            usage_injected: false,
            cost_usd: None,
            cost_status: None,
            cost_note: None,
            upstream_error: None,
            latency_ms: Some(1.0),
            ttfb_ms: Some(0.5),
            request_bytes: 10,
            response_bytes: 20,
            error: None,
        }
    }

    #[test]
    fn ring_is_bounded_and_counts() {
        let r = Recorder::new(2, None);
        for i in 0..3 {
            r.begin();
            r.finish(rec(&i.to_string()));
        }
        let ids: Vec<_> = r.recent(10).iter().map(|x| x.id.clone()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!((r.seen(), r.in_flight()), (3, 0));
        assert_ne!(r.next_id(), r.next_id());
    }

    #[test]
    fn records_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let r = Recorder::new(4, Some(path.clone()));
        r.begin();
        r.finish(rec("a"));
        r.close();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                let back: Record = serde_json::from_str(line).unwrap();
                assert_eq!(back.id, "a");
                assert_eq!(back.usage.unwrap().output_tokens, 4);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "record not written");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
