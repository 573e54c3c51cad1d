//! The provider-neutral description of one answer (status, headers, a JSON body or a list of stream
//! frames plus the in-stream error frame to use for `error-mid-stream`), the per-request context the
//! provider modules read, and each provider's error dialect. It decides what an error looks like for
//! each provider; it does not decide when to send one.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::j;
use crate::json::J;

/// Which provider a request is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `api.openai.com`
    OpenAi,
    /// `api.anthropic.com`
    Anthropic,
    /// `generativelanguage.googleapis.com`
    Gemini,
}

impl Provider {
    /// The first-party provider served on `host` (lower-case, no port), if any. OpenAI-compatible
    /// services are found by [`Flavor::for_host`].
    pub fn for_host(host: &str) -> Option<Self> {
        if host.eq_ignore_ascii_case("api.openai.com") {
            Some(Self::OpenAi)
        } else if host.eq_ignore_ascii_case("api.anthropic.com") {
            Some(Self::Anthropic)
        } else if host.eq_ignore_ascii_case("generativelanguage.googleapis.com") {
            Some(Self::Gemini)
        } else {
            None
        }
    }
}

/// Which service an OpenAI-dialect request is addressed to: OpenAI itself or one of the
/// OpenAI-compatible services with their known deviations (`Provider::OpenAi` for all of them).
/// Anthropic and Gemini requests carry [`Flavor::OpenAi`], which means "no deviation".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// `api.openai.com` (and loopback hosts without a service prefix).
    #[default]
    OpenAi,
    /// `api.groq.com`, under `/openai/v1/...`: stream usage only in `x_groq.usage`.
    Groq,
    /// `api.x.ai`: the usage chunk comes second to last.
    Xai,
    /// `openrouter.ai`, under `/api/v1/...`: `: OPENROUTER PROCESSING` comments, `X-Generation-Id`.
    OpenRouter,
    /// `api.mistral.ai`: plain OpenAI shape.
    Mistral,
    /// `api.deepseek.com`: plain OpenAI shape plus `prompt_cache_hit_tokens` / `_miss_tokens`.
    DeepSeek,
    /// `api.together.xyz`: plain OpenAI shape.
    Together,
    /// `{resource}.openai.azure.com`: deployment URLs, `api-key`, content filter results.
    Azure,
    /// GitHub Copilot (`api.githubcopilot.com`, `api.{individual,business,enterprise}.githubcopilot.com`):
    /// the OpenAI endpoints without `/v1` (`/chat/completions`, `/responses`, `/embeddings`,
    /// `/models`); its `/v1/messages` is Anthropic's (see `server.rs`).
    Copilot,
    /// Copilot's inline completions (`proxy.{individual,business,enterprise}.githubcopilot.com`,
    /// `copilot-proxy.githubusercontent.com`): legacy completions at `/v1/engines/{engine}/completions`,
    /// the engine naming the model, no usage in the replies.
    CopilotProxy,
    /// `chatgpt.com`, Codex signed in with ChatGPT: the Responses API at `/backend-api/codex/responses`.
    ChatGpt,
    /// `cloudcode-pa.googleapis.com` (a [`Provider::Gemini`] flavor): Google's Code Assist envelope
    /// around Gemini requests and responses (`code_assist.rs`).
    CodeAssist,
    /// A local Ollama's native API under `/api/` (`ollama.rs`), on a loopback host.
    Ollama,
}

/// Host suffix of Azure OpenAI resources (`{resource}.openai.azure.com`).
pub const AZURE_SUFFIX: &str = ".openai.azure.com";

impl Flavor {
    /// The OpenAI-compatible service served on `host` (lower-case, no port), if any.
    pub fn for_host(host: &str) -> Option<Self> {
        match host {
            "api.groq.com" => Some(Self::Groq),
            "api.x.ai" => Some(Self::Xai),
            "openrouter.ai" => Some(Self::OpenRouter),
            "api.mistral.ai" => Some(Self::Mistral),
            "api.deepseek.com" => Some(Self::DeepSeek),
            "api.together.xyz" => Some(Self::Together),
            "api.githubcopilot.com"
            | "api.individual.githubcopilot.com"
            | "api.business.githubcopilot.com"
            | "api.enterprise.githubcopilot.com" => Some(Self::Copilot),
            "proxy.individual.githubcopilot.com"
            | "proxy.business.githubcopilot.com"
            | "proxy.enterprise.githubcopilot.com"
            | "copilot-proxy.githubusercontent.com" => Some(Self::CopilotProxy),
            "chatgpt.com" => Some(Self::ChatGpt),
            "cloudcode-pa.googleapis.com" => Some(Self::CodeAssist),
            _ => host
                .strip_suffix(AZURE_SUFFIX)
                .filter(|resource| !resource.is_empty() && !resource.contains('.'))
                .map(|_| Self::Azure),
        }
    }

    /// The provider (error dialect) the service speaks: Gemini for Code Assist, OpenAI otherwise.
    pub fn provider(self) -> Provider {
        match self {
            Self::CodeAssist => Provider::Gemini,
            _ => Provider::OpenAi,
        }
    }

    /// The service selected by a loopback path prefix (`/groq`, `/xai`, ...), if any.
    pub fn for_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "/groq" => Some(Self::Groq),
            "/xai" => Some(Self::Xai),
            "/openrouter" => Some(Self::OpenRouter),
            "/mistral" => Some(Self::Mistral),
            "/deepseek" => Some(Self::DeepSeek),
            "/together" => Some(Self::Together),
            "/azure" => Some(Self::Azure),
            "/copilot" => Some(Self::Copilot),
            "/copilot-proxy" => Some(Self::CopilotProxy),
            "/chatgpt" => Some(Self::ChatGpt),
            "/code-assist" => Some(Self::CodeAssist),
            _ => None,
        }
    }
}

/// Options a request sets through `x-mock-*` headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// `x-mock-output-words`: words in the answer (default: the sentence once).
    pub output_words: Option<usize>,
    /// `x-mock-cached-tokens`: input tokens to report as served from the provider's prompt cache.
    pub cached_tokens: u64,
    /// `x-mock-tool-call: 1`: answer with a call of the request's first tool.
    pub tool_call: bool,
    /// `x-mock-reasoning-tokens`: hidden reasoning tokens to report (OpenAI-dialect and Gemini).
    pub reasoning_tokens: u64,
    /// `x-mock-cache-write-tokens`: Anthropic input tokens written to the 5-minute cache.
    pub cache_write_tokens: u64,
    /// `x-mock-cache-write-1h-tokens`: Anthropic input tokens written to the 1-hour cache.
    pub cache_write_1h_tokens: u64,
    /// `x-mock-anthropic-delta-usage: full`: `message_delta.usage` repeats input and cache fields.
    pub anthropic_delta_full: bool,
    /// `x-mock-choices-null: 1`: the OpenAI-dialect usage chunk has `"choices": null` (vLLM).
    pub choices_null: bool,
    /// `x-mock-stream-crlf: 1`: event streams use CRLF line endings throughout.
    pub stream_crlf: bool,
    /// `x-mock-sse-comments: 1`: a `: keep-alive` comment frame precedes every event-stream frame.
    pub sse_comments: bool,
}

/// Everything a provider module needs to answer one request.
pub struct Call<'a> {
    /// The provider (error dialect) the request is for.
    pub provider: Provider,
    /// The OpenAI-compatible service, for `Provider::OpenAi` requests.
    pub flavor: Flavor,
    /// Request method.
    pub method: &'a Method,
    /// Path, after any `/openai`, `/anthropic`, `/gemini`, `/groq`, ... prefix used on loopback
    /// hosts (a service's own prefix such as Groq's `/openai` is kept).
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a Bytes,
    /// `x-mock-*` options.
    pub opts: Opts,
    /// Unique hex id of this request (used in response ids and request ids).
    pub id: &'a str,
    /// Unix time in seconds.
    pub created: u64,
}

impl Call<'_> {
    /// Value of a header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Value of a query parameter (not percent-decoded; the mock only reads simple values).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.query, name)
    }

    /// The answer for this request (see [`crate::text::plan`]); `x-mock-answer-b64` (standard
    /// base64 of UTF-8 text) replaces it with exactly that text, never cut.
    pub fn plan(&self, model: &str, max: Option<u64>) -> (String, u64, bool) {
        if let Some(text) = self.answer_override() {
            let words = crate::text::words(&text);
            return (text, words, false);
        }
        crate::text::plan(model, self.opts.output_words, max)
    }

    fn answer_override(&self) -> Option<String> {
        use base64::Engine as _;
        let b = self.header("x-mock-answer-b64")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()?;
        String::from_utf8(raw).ok()
    }

    /// The answer's stream chunks: word by word, or — with `x-mock-split-at: N[,M…]` — cut at
    /// those byte offsets (moved forward to a character boundary), so a test can split any
    /// string of the answer across frames at any point.
    pub fn chunks<'t>(&self, answer: &'t str) -> Vec<&'t str> {
        let Some(list) = self.header("x-mock-split-at") else {
            return crate::text::chunks(answer);
        };
        let mut cuts: Vec<usize> = list
            .split(',')
            .filter_map(|n| n.trim().parse::<usize>().ok())
            .map(|mut n| {
                n = n.min(answer.len());
                while !answer.is_char_boundary(n) {
                    n += 1;
                }
                n
            })
            .collect();
        cuts.push(0);
        cuts.push(answer.len());
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| &answer[w[0]..w[1]])
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// Value of a parameter of a raw query string (not percent-decoded).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// The body of a reply.
pub enum ReplyBody {
    /// One buffer.
    Full(Bytes),
    /// Stream frames, each sent as its own body frame.
    Stream {
        /// The frames of a complete, successful stream.
        frames: Vec<Bytes>,
        /// The in-stream error frame(s) `error-mid-stream` appends after the first half.
        error_frame: Bytes,
    },
}

/// One answer, before faults and common headers are applied.
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// `content-type` (empty: none).
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: ReplyBody,
}

/// `content-type` of JSON bodies from OpenAI and Anthropic.
pub const JSON: &str = "application/json";
/// `content-type` of JSON bodies from Google APIs.
pub const GOOGLE_JSON: &str = "application/json; charset=UTF-8";
/// `content-type` of OpenAI and Anthropic event streams.
pub const SSE_UTF8: &str = "text/event-stream; charset=utf-8";
/// `content-type` of Gemini event streams.
pub const SSE: &str = "text/event-stream";

impl Reply {
    /// A JSON reply from an already serialised body.
    pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: ReplyBody::Full(body),
        }
    }

    /// A compact JSON reply.
    pub fn json(status: StatusCode, value: &J) -> Self {
        Self::bytes(status, JSON, value.to_bytes())
    }

    /// A pretty-printed JSON reply, as Google APIs send them.
    pub fn google_json(status: StatusCode, value: &J) -> Self {
        Self::bytes(status, GOOGLE_JSON, Bytes::from(value.to_pretty()))
    }

    /// A streamed reply.
    pub fn stream(content_type: &'static str, frames: Vec<Bytes>, error_frame: Bytes) -> Self {
        Self {
            status: StatusCode::OK,
            content_type,
            headers: Vec::new(),
            body: ReplyBody::Stream {
                frames,
                error_frame,
            },
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Adds a header with a computed value (dropped if the value is not a valid header value).
    pub fn with_header_value(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::try_from(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }
}

/// An SSE frame with only a `data:` line.
pub fn sse_data(value: &J) -> Bytes {
    let mut out = b"data: ".to_vec();
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(6);
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An SSE frame with `event:` and `data:` lines.
pub fn sse_event(event: &str, value: &J) -> Bytes {
    let mut out = Vec::with_capacity(event.len() + 128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let len = out.len();
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(len);
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The kinds of error the mock answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: malformed or invalid request.
    BadRequest,
    /// No credential at all (OpenAI/Anthropic 401, Gemini 403).
    MissingKey,
    /// A credential containing `invalid` (OpenAI/Anthropic 401, Gemini 400).
    InvalidKey,
    /// 404: unknown path or host.
    NotFound,
    /// 413: body over the size limit.
    TooLarge,
    /// 429: rate limited.
    RateLimited,
    /// 5xx (500, 503, 529).
    Server(u16),
}

/// The error reply of `provider` for `kind`; `message` replaces the default text when given.
pub fn error(provider: Provider, kind: ErrorKind, message: Option<&str>, call_id: &str) -> Reply {
    error_in(provider, Flavor::OpenAi, kind, message, call_id)
}

/// Like [`error`], in the dialect of an OpenAI-compatible service where it differs (Azure's
/// string-coded 401, 404 and 429 bodies).
pub fn error_in(
    provider: Provider,
    flavor: Flavor,
    kind: ErrorKind,
    message: Option<&str>,
    call_id: &str,
) -> Reply {
    match provider {
        Provider::OpenAi if flavor == Flavor::Azure => crate::compat::azure_error(kind, message),
        Provider::OpenAi => openai_error(kind, message),
        Provider::Anthropic => anthropic_error(kind, message, call_id),
        Provider::Gemini => gemini_error(kind, message),
    }
}

/// A status with no body at all (`500-empty`, `503-empty`, `429-empty`): no `content-type`,
/// `content-length: 0`; a 429 keeps `retry-after: 1`.
pub fn empty_error(code: u16) -> Reply {
    let r = Reply::bytes(status(code), "", Bytes::new());
    if code == 429 {
        r.with_header("retry-after", "1")
    } else {
        r
    }
}

/// The HTML error page a load balancer in front of a provider answers with when the backend is
/// gone (`502-html`).
pub const LOAD_BALANCER_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n\
</html>\r\n";

/// `502-html`: a 502 with [`LOAD_BALANCER_502`] as `text/html`.
pub fn load_balancer_502() -> Reply {
    Reply::bytes(
        StatusCode::BAD_GATEWAY,
        "text/html",
        Bytes::from_static(LOAD_BALANCER_502.as_bytes()),
    )
}

/// The status for a code (500 if out of range).
pub fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// OpenAI's error body for `kind` (also what Azure passes through for 400, 413 and 5xx).
pub fn openai_error(kind: ErrorKind, message: Option<&str>) -> Reply {
    let (code, ty, ecode, default): (u16, &'static str, J, &str) = match kind {
        ErrorKind::BadRequest => (400, "invalid_request_error", J::Null, "Invalid request."),
        ErrorKind::MissingKey => (
            401,
            "invalid_request_error",
            J::Null,
            "You didn't provide an API key. You need to provide your API key in an Authorization header \
using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) \
if you're accessing the API from your browser and are prompted for a username and password. You can \
obtain an API key from https://platform.openai.com/account/api-keys.",
        ),
        ErrorKind::InvalidKey => (
            401,
            "invalid_request_error",
            J::from("invalid_api_key"),
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ),
        ErrorKind::NotFound => (404, "invalid_request_error", J::Null, "Invalid URL"),
        ErrorKind::TooLarge => (
            413,
            "invalid_request_error",
            J::Null,
            "Request body too large.",
        ),
        ErrorKind::RateLimited => (
            429,
            "requests",
            J::from("rate_limit_exceeded"),
            "Rate limit reached for requests in organization org-mock on requests per min (RPM): \
Limit 3, Used 3, Requested 1. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits \
to learn more.",
        ),
        ErrorKind::Server(503) => (
            503,
            "server_error",
            J::Null,
            "The server is overloaded or not ready yet.",
        ),
        ErrorKind::Server(c) => (
            c,
            "server_error",
            J::Null,
            "The server had an error while processing your request. Sorry about that!",
        ),
    };
    let body = j!({"error": {
        "message": (message.unwrap_or(default).to_owned()),
        "type": ty,
        "param": null,
        "code": ecode,
    }});
    let mut r = Reply::json(status(code), &body);
    if kind == ErrorKind::RateLimited {
        r = r
            .with_header("retry-after", "1")
            .with_header("retry-after-ms", "1000")
            .with_header("x-ratelimit-limit-requests", "3")
            .with_header("x-ratelimit-remaining-requests", "0")
            .with_header("x-ratelimit-reset-requests", "1s");
    }
    r
}

fn anthropic_error(kind: ErrorKind, message: Option<&str>, call_id: &str) -> Reply {
    let (code, ty, default) = match kind {
        ErrorKind::BadRequest => (400, "invalid_request_error", "Invalid request."),
        ErrorKind::MissingKey => (401, "authentication_error", "x-api-key header is required"),
        ErrorKind::InvalidKey => (401, "authentication_error", "invalid x-api-key"),
        ErrorKind::NotFound => (404, "not_found_error", "Not found"),
        ErrorKind::TooLarge => (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        ErrorKind::RateLimited => (
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per \
minute. Please try again later.",
        ),
        ErrorKind::Server(529) => (529, "overloaded_error", "Overloaded"),
        ErrorKind::Server(c) => (c, "api_error", "Internal server error"),
    };
    let body = j!({
        "type": "error",
        "error": {"type": ty, "message": (message.unwrap_or(default).to_owned())},
        "request_id": (format!("req_mock{call_id}")),
    });
    let mut r = Reply::json(status(code), &body);
    if kind == ErrorKind::RateLimited {
        r = r
            .with_header("retry-after", "1")
            .with_header("anthropic-ratelimit-requests-limit", "50")
            .with_header("anthropic-ratelimit-requests-remaining", "0");
    }
    if matches!(kind, ErrorKind::Server(_)) {
        r = r.with_header("x-should-retry", "true");
    }
    r
}

fn gemini_error(kind: ErrorKind, message: Option<&str>) -> Reply {
    let (code, st, default): (u16, &str, Cow<'_, str>) = match kind {
        ErrorKind::BadRequest => (400, "INVALID_ARGUMENT", "Invalid request.".into()),
        ErrorKind::MissingKey => (
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
Please use API Key or other form of API consumer identity to call this API."
                .into(),
        ),
        ErrorKind::InvalidKey => (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.".into(),
        ),
        ErrorKind::NotFound => (404, "NOT_FOUND", "Requested entity was not found.".into()),
        ErrorKind::TooLarge => (
            400,
            "INVALID_ARGUMENT",
            "Request payload size exceeds the limit: 33554432 bytes.".into(),
        ),
        ErrorKind::RateLimited => (
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.".into(),
        ),
        ErrorKind::Server(500) => (
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in \
https://developers.generativeai.google/guide/troubleshooting"
                .into(),
        ),
        ErrorKind::Server(c) => (
            c,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.".into(),
        ),
    };
    let mut err = j!({
        "code": code,
        "message": (message.map(Cow::Borrowed).unwrap_or(default).into_owned()),
        "status": st,
    });
    match kind {
        ErrorKind::RateLimited => {
            err.set(
                "details",
                j!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
                ]),
            );
        }
        ErrorKind::InvalidKey => {
            err.set(
                "details",
                j!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}}
                ]),
            );
        }
        _ => {}
    }
    let mut r = Reply::google_json(status(code), &j!({ "error": err }));
    if kind == ErrorKind::RateLimited {
        r = r.with_header("retry-after", "1");
    }
    r
}

/// Reads a JSON request body, or answers with the provider's malformed-body error.
pub fn parse_body(call: &Call<'_>) -> Result<Value, Reply> {
    serde_json::from_slice::<Value>(call.body).map_err(|e| {
        let msg = match call.provider {
            Provider::OpenAi => "We could not parse the JSON body of your request. (HINT: This likely \
means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was \
sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our \
help center at help.openai.com.)"
                .to_owned(),
            Provider::Anthropic => format!("There was an issue with the request body: invalid JSON ({e})"),
            Provider::Gemini => format!("Invalid JSON payload received. {e}"),
        };
        error(call.provider, ErrorKind::BadRequest, Some(&msg), call.id)
    })
    .and_then(|v| {
        if v.is_object() {
            Ok(v)
        } else {
            let msg = match call.provider {
                Provider::OpenAi => "We could not parse the JSON body of your request: expected a JSON object.",
                Provider::Anthropic => "There was an issue with the request body: expected a JSON object",
                Provider::Gemini => "Invalid JSON payload received. Expected an object.",
            };
            Err(error(call.provider, ErrorKind::BadRequest, Some(msg), call.id))
        }
    })
}

/// Extracts the bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks a credential value: `Err(kind)` when it is rejected.
pub fn check_key(key: Option<&str>) -> Result<(), ErrorKind> {
    match key {
        None => Err(ErrorKind::MissingKey),
        Some(k) if k.trim().is_empty() => Err(ErrorKind::MissingKey),
        Some(k) if k.contains("invalid") => Err(ErrorKind::InvalidKey),
        Some(_) => Ok(()),
    }
}

/// How many frames of a stream of `len` frames go out before a mid-stream fault: the first half,
/// at least one.
pub fn cut_point(len: usize) -> usize {
    (len / 2).max(1).min(len)
}

/// Answers a request body that is missing a field or has a wrong one, in the provider's dialect.
pub fn bad_request(call: &Call<'_>, message: &str) -> Reply {
    error(call.provider, ErrorKind::BadRequest, Some(message), call.id)
}

/// A string field of a JSON object, if present and non-empty.
pub fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A boolean field of a JSON object, false when absent.
pub fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}
