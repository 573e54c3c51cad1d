//! The structured record every intercepted request yields, and where records go: an in-memory ring the
//! status API reads, counters, and an append-only JSON-lines file written by a background thread. It owns
//! the record's shape; it must never hold prompt or response bodies, credentials or API keys (paths are
//! redacted by the caller before they get here).

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::caller::Caller;

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
    /// No priced usage: the model or the operation has no price, or the response carried no usage
    /// (flagged with a note, never counted as free).
    Unknown,
    /// The request never reached a provider (Airlock answered it itself), so nothing was billed.
    NotBilled,
    /// Paid by a subscription or seat (a ChatGPT plan, a Copilot seat, Code Assist, a Claude
    /// login), not per token: usage is metered, no per-token cost is made up (`cost_note` says which).
    Subscription,
    /// Served by a model server on this machine (Ollama, LM Studio, vLLM): metered, never billed.
    Local,
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
    /// How the request authenticated — the kind only (`bearer`, `oauth` for a sign-in token,
    /// `x_api_key`, `api_key`, `goog_api_key`, `query_key`, `none`), never the value.
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
    /// `priced`, `estimated` (priced from estimated usage), `unknown` (no price or no usage: see
    /// `cost_note`), `not_billed` (never reached a provider), `subscription` (paid by plan or seat,
    /// not per token) or `local` (a model server on this machine).
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
    /// The pipeline stage that refused, answered or cut the request itself (`identify`,
    /// `authorize:<name>`, `forward` …), when one did.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// For traffic on a WebSocket (Responses WebSocket mode, Realtime): which socket and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WsFacts>,
    /// The local user (uid) whose process sent the request — the owner of the client's connection to
    /// the listener — when the agent could tell. The control API shows a user only the records with
    /// their own uid; one without a uid only to root and the agent's user.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The lookup that fills in `uid` when the record finishes (it runs off the request path, from
    /// the moment the connection was accepted). Never written anywhere.
    #[serde(skip)]
    pub caller: Caller,
}

/// Where a record sits on a WebSocket: the socket's own record (`message == 0`: the upgrade, how
/// the socket closed) or one unit of policy on it (a client `response.create`, a Realtime response).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsFacts {
    /// The id of the socket's own record.
    pub socket: String,
    /// Which message on the socket (1, 2 …); 0 for the socket's own record.
    pub message: u64,
    /// A Responses `generate: false` warm-up: the provider prepares the request and generates nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
    /// The `previous_response_id` the message continues (follow a chain through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// The id of the response the provider created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// Whether messages on the socket are compressed (`permessage-deflate`).
    #[serde(default)]
    pub compressed: bool,
    /// Why the agent could not read a message or the socket (over the size cap, not WebSocket
    /// frames), so it passed unread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
    /// Client messages the socket carried (socket record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// The close code the client sent (socket record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_close_code: Option<u16>,
    /// The close code the upstream sent (socket record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_close_code: Option<u16>,
}

/// Longest model name a record keeps (bytes); longer input is cut and marked.
pub const MAX_MODEL: usize = 256;
/// Longest error text a record keeps (bytes).
pub const MAX_ERROR: usize = 1024;
/// Longest path a record keeps (bytes).
pub const MAX_PATH: usize = 2048;

/// `s` cut to at most `max` bytes on a character boundary, with `…` marking the cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn bound_opt(v: &mut Option<String>, max: usize) {
    if let Some(s) = v.as_mut() {
        if s.len() > max {
            *s = bounded(s, max);
        }
    }
}

impl Record {
    /// Cuts every field that copies client or upstream input to its bound, so a hostile request
    /// cannot make records (or the file they go to) grow without limit.
    pub fn bound(&mut self) {
        bound_opt(&mut self.model, MAX_MODEL);
        bound_opt(&mut self.response_model, MAX_MODEL);
        bound_opt(&mut self.error, MAX_ERROR);
        bound_opt(&mut self.upstream_error, MAX_MODEL);
        bound_opt(&mut self.cost_note, MAX_ERROR);
        if self.path.len() > MAX_PATH {
            self.path = bounded(&self.path, MAX_PATH);
        }
        if self.operation.len() > 64 {
            self.operation = bounded(&self.operation, 64);
        }
        if let Some(ws) = self.websocket.as_mut() {
            bound_opt(&mut ws.previous_response_id, MAX_MODEL);
            bound_opt(&mut ws.response_id, MAX_MODEL);
            bound_opt(&mut ws.unread, MAX_ERROR);
        }
    }
}

/// Where the records file is and how it is kept bounded.
#[derive(Debug, Clone)]
pub struct RecordsFile {
    /// `records.jsonl`.
    pub path: PathBuf,
    /// Rotate when the file grows past this many bytes.
    pub rotate_at: u64,
    /// Rotated files kept (`records.jsonl.1` … `.keep`).
    pub keep: u32,
    /// Records waiting to be written before completion waits for the writer.
    pub queue: usize,
}

/// What the records writer has done, for `airlock status`.
#[derive(Debug, Default)]
struct WriterStats {
    written: AtomicU64,
    file_bytes: AtomicU64,
    rotations: AtomicU64,
    write_errors: AtomicU64,
    /// Records handed over but waiting for room in the queue.
    waiting: AtomicU64,
    /// Records that could not be handed to the writer at all (it had stopped).
    unwritten: AtomicU64,
}

/// Where completed records go.
pub struct Recorder {
    ring: Mutex<VecDeque<Arc<Record>>>,
    capacity: usize,
    seen: AtomicU64,
    in_flight: AtomicU64,
    next_id: AtomicU64,
    id_prefix: String,
    sink: Mutex<Option<tokio::sync::mpsc::Sender<Arc<Record>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    file: Option<RecordsFile>,
    stats: Arc<WriterStats>,
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
    /// `file` (JSON lines) if given, rotating it at its size bound.
    pub fn new(capacity: usize, file: Option<RecordsFile>) -> Recorder {
        let mut sink = None;
        let mut writer = None;
        let stats = Arc::new(WriterStats::default());
        if let Some(f) = &file {
            let (tx, rx) = tokio::sync::mpsc::channel::<Arc<Record>>(f.queue.max(1));
            let f2 = f.clone();
            let st = stats.clone();
            match std::thread::Builder::new()
                .name("airlock-records".into())
                .spawn(move || write_records(f2, rx, st))
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
            file,
            stats,
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

    /// Stores a finished record. Never blocks an async worker: when the writer's queue is full the
    /// record waits in a task of its own for room (bounded by the requests in flight), so a slow disk
    /// slows completion down instead of losing records.
    pub fn finish(&self, record: Record) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let record = Arc::new(record);
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(record.clone());
        }
        let tx = match self.sink.lock() {
            Ok(sink) => sink.clone(),
            Err(_) => None,
        };
        let Some(tx) = tx else {
            if self.file.is_some() {
                self.stats.unwritten.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(record)) => {
                let stats = self.stats.clone();
                stats.waiting.fetch_add(1, Ordering::Relaxed);
                let send = async move {
                    if tx.send(record).await.is_err() {
                        stats.unwritten.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.waiting.fetch_sub(1, Ordering::Relaxed);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(send);
                    }
                    // Outside the runtime (shutdown): wait here, there is nothing else to block.
                    Err(_) => match tokio::runtime::Builder::new_current_thread().build() {
                        Ok(rt) => rt.block_on(send),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot wait for the records writer; a record stays in memory only");
                            self.stats.unwritten.fetch_add(1, Ordering::Relaxed);
                            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                        }
                    },
                }
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                self.stats.unwritten.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops the file writer after it has written every record it was given, waiting at most
    /// `grace` for records still queued (a stuck disk must not hang shutdown forever).
    pub fn close(&self, grace: std::time::Duration) {
        let deadline = std::time::Instant::now() + grace;
        while self.stats.waiting.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if let Ok(mut sink) = self.sink.lock() {
            sink.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!("the records writer did not finish in time; the last records may be missing from the records file");
            }
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

    /// The most recent `limit` finished records that `keep` accepts, oldest first.
    pub fn recent_matching(
        &self,
        limit: usize,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<Arc<Record>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let mut newest_first: Vec<Arc<Record>> = ring
            .iter()
            .rev()
            .filter(|r| keep(r))
            .take(limit)
            .cloned()
            .collect();
        newest_first.reverse();
        newest_first
    }

    /// The records file and its writer, for `airlock status`.
    pub fn file_status(&self) -> serde_json::Value {
        let Some(f) = &self.file else {
            return serde_json::Value::Null;
        };
        let queued = self
            .sink
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|tx| tx.max_capacity() - tx.capacity()))
            .unwrap_or(0);
        let s = &self.stats;
        serde_json::json!({
            "path": f.path,
            "bytes": s.file_bytes.load(Ordering::Relaxed),
            "rotate_at_bytes": f.rotate_at,
            "keep": f.keep,
            "queue_capacity": f.queue,
            "queued": queued as u64 + s.waiting.load(Ordering::Relaxed),
            "written": s.written.load(Ordering::Relaxed),
            "rotations": s.rotations.load(Ordering::Relaxed),
            "write_errors": s.write_errors.load(Ordering::Relaxed),
            "unwritten": s.unwritten.load(Ordering::Relaxed),
        })
    }
}

/// How long the writer lets records gather before writing them: one write and flush per batch, not
/// one wake-up per request.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// The writer's open file and where it stands.
struct Output {
    file: RecordsFile,
    out: Option<std::fs::File>,
    bytes: u64,
}

impl Output {
    fn open(&mut self) -> std::io::Result<&mut std::fs::File> {
        if self.out.is_none() {
            let f = crate::paths::open_append(&self.file.path, 0o600)?;
            self.bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.out = Some(f);
        }
        self.out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("records file not open"))
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let f = self.open()?;
        f.write_all(bytes)?;
        f.flush()?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// `records.jsonl` → `.1` → … → `.keep`; the oldest is removed.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out = None;
        let base = self.file.path.clone();
        let numbered = |n: u32| {
            let mut p = base.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.file.keep == 0 {
            std::fs::remove_file(&base)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.file.keep));
            for n in (1..self.file.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&base, numbered(1))?;
        }
        self.bytes = 0;
        Ok(())
    }
}

/// Appends `bytes`, retrying with backoff on a full or failing disk: records are never dropped here (the
/// queue in front fills, and completion waits for room). `false` only if the writer must stop.
fn write_retrying(out: &mut Output, bytes: &[u8], stats: &WriterStats, closing: bool) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let mut backoff = std::time::Duration::from_millis(250);
    let mut failed_before = false;
    loop {
        let attempt = if failed_before {
            // A failed write may have left half a line: end it, so readers can skip it.
            out.write(b"\n").and_then(|_| out.write(bytes))
        } else {
            out.write(bytes)
        };
        match attempt {
            Ok(()) => return true,
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = %out.file.path.display(), error = %e, "cannot append to the records file; retrying");
                out.out = None;
                failed_before = true;
                if closing {
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}

fn rotate(out: &mut Output, stats: &WriterStats) {
    match out.rotate() {
        Ok(()) => {
            stats.rotations.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %out.file.path.display(), error = %e, "cannot rotate the records file");
        }
    }
}

fn write_records(
    file: RecordsFile,
    mut rx: tokio::sync::mpsc::Receiver<Arc<Record>>,
    stats: Arc<WriterStats>,
) {
    let mut out = Output {
        file,
        out: None,
        bytes: 0,
    };
    if let Err(e) = out.open() {
        tracing::error!(path = %out.file.path.display(), error = %e, "cannot open the records file; will retry with the first record");
    }
    stats.file_bytes.store(out.bytes, Ordering::Relaxed);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        // Wait for the first record of a batch, then let more gather before writing.
        let Some(first) = rx.blocking_recv() else {
            return;
        };
        std::thread::sleep(WRITE_INTERVAL);
        let mut batch = vec![first];
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        buf.clear();
        let mut line = Vec::with_capacity(1024);
        for r in &batch {
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut line, &**r) {
                tracing::error!(error = %e, "cannot serialise a record");
                continue;
            }
            line.push(b'\n');
            // Rotate before a line would take the file past its bound, so files stay near it.
            let size = out.bytes + buf.len() as u64;
            if size > 0 && size + line.len() as u64 > out.file.rotate_at {
                if !write_retrying(&mut out, &buf, &stats, closed) {
                    return;
                }
                buf.clear();
                rotate(&mut out, &stats);
            }
            buf.extend_from_slice(&line);
        }
        if !write_retrying(&mut out, &buf, &stats, closed) {
            return;
        }
        stats
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.file_bytes.store(out.bytes, Ordering::Relaxed);
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
            decided_by: None,
            websocket: None,
            uid: None,
            caller: crate::caller::Caller::unknown(),
        }
    }

    fn file(path: &std::path::Path, rotate_at: u64, keep: u32) -> RecordsFile {
        RecordsFile {
            path: path.to_path_buf(),
            rotate_at,
            keep,
            queue: 4,
        }
    }

    #[test]
    fn records_file_rotates_at_its_bound_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let r = Recorder::new(4, Some(file(&path, 2000, 2)));
        // Far more records than the queue holds, from outside a runtime: none may be lost.
        for i in 0..60 {
            r.begin();
            r.finish(rec(&format!("r{i}")));
        }
        r.close(std::time::Duration::from_secs(10));
        let mut ids = Vec::new();
        for name in ["records.jsonl.2", "records.jsonl.1", "records.jsonl"] {
            let p = dir.path().join(name);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(text.len() < 2000 + 1000, "{name} is {} bytes", text.len());
            for line in text.lines() {
                ids.push(serde_json::from_str::<Record>(line).unwrap().id);
            }
        }
        assert!(
            !dir.path().join("records.jsonl.3").exists(),
            "only `keep` rotated files stay"
        );
        // The newest records are all there, in order, with nothing missing at the end.
        let last: Vec<String> = (60 - ids.len()..60).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, last);
        assert!(ids.len() >= 6, "{ids:?}");
        assert_eq!(r.file_status()["unwritten"], 0);
        assert!(r.file_status()["rotations"].as_u64().unwrap() >= 2);
    }

    #[test]
    fn hostile_input_is_bounded_in_records() {
        let mut r = rec("x");
        r.model = Some("m".repeat(100_000));
        r.error = Some("é".repeat(10_000));
        r.path = format!("/v1/{}", "p".repeat(100_000));
        r.bound();
        assert!(r.model.as_ref().unwrap().len() <= MAX_MODEL);
        assert!(r.model.as_ref().unwrap().ends_with('…'));
        assert!(r.error.as_ref().unwrap().len() <= MAX_ERROR);
        assert!(r.path.len() <= MAX_PATH);
        assert_eq!(bounded("short", 10), "short");
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
        let ids: Vec<_> = r
            .recent_matching(1, |x| x.id != "2")
            .iter()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(ids, ["1"], "the newest that match, not the newest filtered");
        assert_eq!((r.seen(), r.in_flight()), (3, 0));
        assert_ne!(r.next_id(), r.next_id());
    }

    #[test]
    fn records_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let r = Recorder::new(4, Some(file(&path, 1 << 20, 2)));
        r.begin();
        r.finish(rec("a"));
        r.close(std::time::Duration::from_secs(5));
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
