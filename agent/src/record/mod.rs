//! The structured record every intercepted request yields ([`Record`]), and where records go
//! ([`Recorder`]: an in-memory ring the status API reads, counters, and the journal). It owns the
//! record's shape; it must never hold prompt or response bodies, credentials or API keys (paths are
//! redacted by the caller before they get here).

mod recorder;

pub use recorder::Recorder;

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
    /// The fingerprint (`sha256:…`) of the key the app presented, when it presented one.
    #[serde(default)]
    pub credential_fingerprint: Option<String>,
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
    /// That user's name.
    #[serde(default)]
    pub user: Option<String>,
    /// The client process, when the agent could tell (Linux: the process holding the client's
    /// socket; the agent sees other users' processes only when it runs as root).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Its executable's file name (`python3.11`, `node`, `curl`): the app.
    #[serde(default)]
    pub app: Option<String>,
    /// Its executable's full path.
    #[serde(default)]
    pub app_path: Option<String>,
    /// This device's id (made on the agent's first start, kept in the state directory).
    #[serde(default)]
    pub device: Option<String>,
    /// What budgets reserved for the request at admission (its estimate), when any applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Reserved>,
    /// The policy the request was decided under: its name, and its bundle version when it came
    /// signed from the fleet.
    #[serde(default)]
    pub policy: Option<PolicyRef>,
    /// Guardrail findings (rule, where, action, a masked preview and a keyed hash — never the
    /// matched text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<crate::guardrails::actions::Hit>,
    /// The lookup that fills in `uid` when the record finishes (it runs off the request path, from
    /// the moment the connection was accepted). Never written anywhere.
    #[serde(skip)]
    pub caller: Caller,
}

impl Record {
    /// Takes who sent the request from its connection's lookup (what the record already says wins).
    pub fn identify(&mut self, facts: crate::caller::CallerFacts) {
        self.uid = self.uid.or(facts.uid);
        self.user = self.user.take().or(facts.user);
        self.pid = self.pid.or(facts.pid);
        self.app = self.app.take().or(facts.app);
        self.app_path = self.app_path.take().or(facts.app_path);
    }
}

/// A budget reservation: the tokens and USD a request was assumed to cost when admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reserved {
    /// Tokens (input estimate + output cap).
    pub tokens: u64,
    /// USD, when the model has a price.
    pub usd: f64,
}

/// Which policy decided a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The policy's name.
    pub name: String,
    /// Its signed bundle's version, when it came from the fleet.
    pub version: Option<u64>,
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

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}

/// `t` in milliseconds since the Unix epoch.
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `t` as RFC 3339 with milliseconds, as records write times.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rec(id: &str) -> Record {
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
            credential_fingerprint: None,
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
            user: None,
            pid: None,
            app: None,
            app_path: None,
            device: None,
            reserved: None,
            policy: None,
            guardrails: Vec::new(),
            caller: crate::caller::Caller::unknown(),
        }
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
}
