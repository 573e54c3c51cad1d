//! The one path every intercepted AI request takes, as an explicit ordered list of stages
//! (DESIGN.md): identify → authorize → inspect request → route → forward → observe stream →
//! inspect response → settle → record. Identify, forward, observe and record are real here; authorize,
//! inspect request, route, inspect response and settle are slots later capabilities fill with
//! [`RequestStage`]s and [`ResponseStage`]s — they plug in here and never add side paths. A refusal in any
//! request stage answers the client in its provider's dialect. This module must not know how requests
//! arrive (that is [`crate::proxy`]) or how connections are made (that is [`crate::upstream`]).

pub mod body;
mod observe;
pub mod settle;
mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::policy::{ApiKind, HostEntry, StreamUsage};
use crate::providers::decode::{decode_all, Coding, DecodeError};
use crate::providers::dialect::{self, AirlockError};
use crate::providers::response::{Framing, ResponseParser};
use crate::providers::strip::UsageChunkStripper;
use crate::providers::{self, request, Identity};
use crate::record::{now_rfc3339, InterceptMode, Outcome, Record, Recorder};
use crate::upstream::UpstreamClient;
use body::ProxyBody;
pub use observe::ObservedBody;
use upgrade::take_upgrade;
pub use upgrade::Upgrade;

/// The stages, in the order a request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Which provider, operation, model, stream flag.
    Identify,
    /// Policy gates: hosts, models, credentials, budgets, rate limits.
    Authorize,
    /// Guardrails on the request.
    InspectRequest,
    /// Direct or gateway, which key, fallbacks.
    Route,
    /// Send upstream.
    Forward,
    /// Read a copy of the response as it streams.
    ObserveStream,
    /// Guardrails on the response.
    InspectResponse,
    /// Replace estimates with actual usage and cost.
    Settle,
    /// Complete the request's record.
    Record,
}

impl Stage {
    /// All stages in pipeline order.
    pub const ORDER: [Stage; 9] = [
        Stage::Identify,
        Stage::Authorize,
        Stage::InspectRequest,
        Stage::Route,
        Stage::Forward,
        Stage::ObserveStream,
        Stage::InspectResponse,
        Stage::Settle,
        Stage::Record,
    ];
}

/// Where an intercepted request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// How it arrived.
    pub mode: InterceptMode,
    /// Upstream host name (lower case).
    pub host: String,
    /// Upstream port, if not the scheme's default.
    pub port: Option<u16>,
    /// Provider name for records.
    pub provider: String,
    /// Wire format.
    pub api: ApiKind,
    /// Path and query to request upstream.
    pub path_and_query: String,
    /// Whether to ask OpenAI-style streams for usage the client did not ask for.
    pub stream_usage: StreamUsage,
}

impl Target {
    /// The target for a host entry of the interception set.
    pub fn new(
        mode: InterceptMode,
        host: String,
        port: Option<u16>,
        entry: &HostEntry,
        path_and_query: String,
    ) -> Self {
        Target {
            mode,
            host,
            port,
            provider: entry.provider.clone(),
            api: entry.api,
            path_and_query,
            stream_usage: entry.stream_usage,
        }
    }
}

/// A request body: read whole (JSON the stages may read) or streamed through untouched.
#[derive(Debug)]
pub enum RequestBody {
    /// The whole body, as it travels (possibly compressed).
    Buffered(Bytes),
    /// A body that is streamed upstream as it arrives.
    Streaming(Incoming),
}

/// What request-side stages see and may change.
#[derive(Debug)]
pub struct Exchange {
    /// Request id.
    pub id: String,
    /// Destination.
    pub target: Target,
    /// What the request is.
    pub identity: Identity,
    /// Request method, URI, headers (already without hop-by-hop headers).
    pub head: http::request::Parts,
    /// Request body.
    pub body: RequestBody,
    /// The body decoded for reading (its Content-Encoding undone), when it is JSON the agent could read.
    pub readable: Option<Bytes>,
    /// A protocol upgrade the client asked for (the Realtime API's WebSocket), passed through.
    pub upgrade: Option<Upgrade>,
}

/// A request-side stage (authorize, inspect request, route).
pub trait RequestStage: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Looks at (and may change) the exchange; an error refuses the request.
    fn apply(&self, exchange: &mut Exchange) -> Result<(), AirlockError>;
}

/// A response-side stage (inspect response, settle), run once the response has ended.
pub trait ResponseStage: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Updates the record of a finished request.
    fn apply(&self, record: &mut Record);
}

/// The stages that run when a response ends, and the recorder.
pub struct ResponseStages {
    inspect_response: Vec<Box<dyn ResponseStage>>,
    settle: Vec<Box<dyn ResponseStage>>,
    recorder: Arc<Recorder>,
}

impl ResponseStages {
    fn complete(&self, mut record: Record) {
        for s in self.inspect_response.iter().chain(self.settle.iter()) {
            s.apply(&mut record);
        }
        tracing::debug!(
            id = %record.id, provider = %record.provider, operation = %record.operation,
            model = record.model.as_deref().unwrap_or("-"), status = record.status.unwrap_or(0),
            outcome = ?record.outcome, latency_ms = record.latency_ms.unwrap_or(0.0),
            "request finished"
        );
        self.recorder.finish(record);
    }
}

/// The pipeline.
pub struct Pipeline {
    authorize: Vec<Box<dyn RequestStage>>,
    inspect_request: Vec<Box<dyn RequestStage>>,
    route: Vec<Box<dyn RequestStage>>,
    upstream: UpstreamClient,
    after: Arc<ResponseStages>,
    max_request_body: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("authorize", &self.authorize.len())
            .field("inspect_request", &self.inspect_request.len())
            .field("route", &self.route.len())
            .field("max_request_body", &self.max_request_body)
            .finish()
    }
}

/// Default cap on a request body the agent reads (JSON); larger bodies get 413.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 32 << 20;

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including any named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Pipeline {
    /// A pipeline with empty policy stages.
    pub fn new(upstream: UpstreamClient, recorder: Arc<Recorder>) -> Pipeline {
        Pipeline {
            authorize: Vec::new(),
            inspect_request: Vec::new(),
            route: Vec::new(),
            upstream,
            after: Arc::new(ResponseStages {
                inspect_response: Vec::new(),
                settle: Vec::new(),
                recorder,
            }),
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
        }
    }

    /// Sets the request body cap.
    pub fn with_max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = bytes;
        self
    }

    /// Adds a request-side stage at `stage` (Authorize, InspectRequest or Route).
    pub fn with_request_stage(mut self, stage: Stage, s: Box<dyn RequestStage>) -> Self {
        match stage {
            Stage::Authorize => self.authorize.push(s),
            Stage::InspectRequest => self.inspect_request.push(s),
            _ => self.route.push(s),
        }
        self
    }

    /// Adds a response-side stage at `stage` (InspectResponse or Settle).
    pub fn with_response_stage(mut self, stage: Stage, s: Box<dyn ResponseStage>) -> Self {
        match Arc::get_mut(&mut self.after) {
            Some(after) => match stage {
                Stage::InspectResponse => after.inspect_response.push(s),
                _ => after.settle.push(s),
            },
            None => tracing::error!(
                stage = s.name(),
                "response stages can only be added before the pipeline runs"
            ),
        }
        self
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.after.recorder
    }

    /// Runs one intercepted request through every stage and returns the response for the client.
    pub async fn handle(&self, req: Request<Incoming>, target: Target) -> Response<ProxyBody> {
        let start = Instant::now();
        let recorder = &self.after.recorder;
        let id = recorder.next_id();
        let (mut head, body) = req.into_parts();
        let upgrade = take_upgrade(&mut head);
        strip_hop_by_hop(&mut head.headers);

        let (path, query) = match target.path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.path_and_query.clone(), None),
        };
        let record_path = match &query {
            Some(q) => format!("{path}?{}", providers::redact_query(q)),
            None => path.clone(),
        };
        let mut record = Record {
            id: id.clone(),
            started_at: now_rfc3339(),
            mode: target.mode,
            host: target.host.clone(),
            provider: target.provider.clone(),
            operation: String::new(),
            model: None,
            stream: false,
            method: head.method.to_string(),
            path: record_path,
            status: None,
            outcome: Outcome::InProgress,
            credential: providers::credential_kind(&head.headers, query.as_deref()).to_string(),
            response_model: None,
            usage: None,
            usage_estimated: false,
            usage_injected: false,
            cost_usd: None,
            cost_status: None,
            cost_note: None,
            upstream_error: None,
            latency_ms: None,
            ttfb_ms: None,
            request_bytes: 0,
            response_bytes: 0,
            error: None,
        };
        recorder.begin();

        // Identify: read JSON bodies whole (bounded; decoded for reading), stream everything else through.
        let (mut body, readable) = match self.read_body(&head, body).await {
            Ok(b) => b,
            Err(e) => {
                record.operation =
                    providers::identify(target.api, &head.method, &path, query.as_deref(), None)
                        .operation;
                return self.refuse(record, start, target.api, e);
            }
        };
        let identity = providers::identify(
            target.api,
            &head.method,
            &path,
            query.as_deref(),
            readable.as_deref(),
        );
        record.operation = identity.operation.clone();
        record.model = identity.model.clone();
        record.stream = identity.stream;

        // Usage for OpenAI-style streams that did not ask for it: ask upstream, strip it on the way back.
        let unencoded = head.headers.get(header::CONTENT_ENCODING).is_none();
        if target.stream_usage == StreamUsage::Inject
            && unencoded
            && identity.stream
            && identity.include_usage != Some(true)
            && matches!(target.api, ApiKind::Openai | ApiKind::Azure)
            && matches!(
                identity.operation.as_str(),
                "chat_completions" | "completions"
            )
        {
            if let Some(new) = match &body {
                RequestBody::Buffered(b) => request::inject_stream_usage(b),
                RequestBody::Streaming(_) => None,
            } {
                body = RequestBody::Buffered(Bytes::from(new));
                head.headers.remove(header::CONTENT_LENGTH);
                record.usage_injected = true;
            }
        }
        record.request_bytes = match &body {
            RequestBody::Buffered(b) => b.len() as u64,
            RequestBody::Streaming(_) => header_str(&head.headers, header::CONTENT_LENGTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };

        let mut ex = Exchange {
            id,
            target,
            identity,
            head,
            body,
            readable,
            upgrade,
        };
        for s in self
            .authorize
            .iter()
            .chain(&self.inspect_request)
            .chain(&self.route)
        {
            if let Err(e) = s.apply(&mut ex) {
                tracing::debug!(id = %ex.id, stage = s.name(), kind = e.kind, "request refused");
                return self.refuse(record, start, ex.target.api, e);
            }
        }
        self.forward(ex, record, start).await
    }

    async fn read_body(
        &self,
        head: &http::request::Parts,
        body: Incoming,
    ) -> Result<(RequestBody, Option<Bytes>), AirlockError> {
        let declared: Option<u64> =
            header_str(&head.headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let ct = header_str(&head.headers, header::CONTENT_TYPE).unwrap_or("");
        let json = ct.is_empty() || ct.to_ascii_lowercase().contains("json");
        if !json || head.method == Method::GET || head.method == Method::HEAD {
            return Ok((RequestBody::Streaming(body), None));
        }
        let limit = self.max_request_body;
        let too_large = |what: &str| {
            AirlockError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!(
                    "the request body{what} is larger than Airlock's limit of {} MiB for JSON requests; send a smaller request",
                    limit >> 20
                ),
            )
        };
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(""));
        }
        let wire = match Limited::new(body, limit).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large("")),
            Err(e) => {
                return Err(AirlockError::new(
                    StatusCode::BAD_REQUEST,
                    "request_body_unreadable",
                    format!("Airlock could not read the request body from the client ({e}); retry the request"),
                ))
            }
        };
        let readable = match Coding::parse(header_str(&head.headers, header::CONTENT_ENCODING)) {
            Ok(Coding::Identity) => Some(wire.clone()),
            Ok(coding) => match decode_all(coding, &wire, limit) {
                Ok(d) => Some(Bytes::from(d)),
                Err(DecodeError::TooLarge(_)) => return Err(too_large(" once decompressed")),
                Err(e) => {
                    return Err(AirlockError::new(
                        StatusCode::BAD_REQUEST,
                        "request_body_undecodable",
                        format!("the request body does not match its Content-Encoding ({e}); send it uncompressed or fix the encoding"),
                    ))
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "request body forwarded unread");
                None
            }
        };
        Ok((RequestBody::Buffered(wire), readable))
    }

    fn refuse(
        &self,
        mut record: Record,
        start: Instant,
        api: ApiKind,
        e: AirlockError,
    ) -> Response<ProxyBody> {
        record.status = Some(e.status.as_u16());
        record.outcome = Outcome::Rejected;
        record.latency_ms = Some(observe::ms(start.elapsed()));
        record.error = Some(e.message.clone());
        let resp = dialect::response(Some(api), &e, Some(&record.id));
        self.after.complete(record);
        resp
    }

    async fn forward(
        &self,
        ex: Exchange,
        mut record: Record,
        start: Instant,
    ) -> Response<ProxyBody> {
        let Exchange {
            id,
            target,
            head,
            body,
            identity,
            readable,
            upgrade,
        } = ex;
        let port = match target.port {
            Some(p) if !self.upstream.is_overridden(&target.host) => format!(":{p}"),
            _ => String::new(),
        };
        let uri = format!("https://{}{}{}", target.host, port, target.path_and_query);
        let mut builder = Request::builder()
            .method(head.method)
            .uri(uri)
            .version(Version::HTTP_11);
        if let Some(h) = builder.headers_mut() {
            *h = head.headers;
            h.remove(header::HOST);
            if let Some(up) = &upgrade {
                up.apply_to(h);
            }
        }
        let body = match body {
            RequestBody::Buffered(b) => body::full(b),
            RequestBody::Streaming(s) => s
                .map_err(|e| -> body::BoxError { Box::new(e) })
                .boxed_unsync(),
        };
        let req = match builder.body(body) {
            Ok(r) => r,
            Err(e) => {
                let err = AirlockError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("Airlock cannot forward this request: {e}"),
                );
                return self.refuse(record, start, target.api, err);
            }
        };

        let sent = match &upgrade {
            Some(_) => self.upstream.send_upgrade(req).await,
            None => self.upstream.send(req).await,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let err =
                    AirlockError::new(StatusCode::BAD_GATEWAY, "upstream_unreachable", e.message);
                record.status = Some(502);
                record.outcome = Outcome::UpstreamFailed;
                record.latency_ms = Some(observe::ms(start.elapsed()));
                record.error = Some(err.message.clone());
                tracing::warn!(id = %id, host = %target.host, error = %err.message, "upstream request failed");
                let resp = dialect::response(Some(target.api), &err, Some(&id));
                self.after.complete(record);
                return resp;
            }
        };

        if let Some(up) = upgrade.filter(|_| resp.status() == StatusCode::SWITCHING_PROTOCOLS) {
            return upgrade::switch_protocols(up, resp, record, start, &id, self.after.clone());
        }
        let (mut parts, incoming) = resp.into_parts();
        record.status = Some(parts.status.as_u16());
        strip_hop_by_hop(&mut parts.headers);
        let framing = Framing::from_content_type(
            header_str(&parts.headers, header::CONTENT_TYPE),
            target.api == ApiKind::Gemini && identity.stream,
        );
        let parser = ResponseParser::new(
            target.api,
            &identity.operation,
            framing,
            header_str(&parts.headers, header::CONTENT_ENCODING),
        );
        let success = parts.status.is_success();
        let sse_ok = success && framing == Framing::Sse;
        let stripper = (record.usage_injected && sse_ok).then(UsageChunkStripper::new);
        if stripper.is_some() {
            // The body the client gets is shorter than upstream's.
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            parts.headers.insert("x-airlock-request-id", v);
        }
        let tap = observe::Tap {
            parser,
            stripper,
            request: observe::RequestFacts {
                api: target.api,
                operation: identity.operation,
                body: readable,
                sse_ok,
            },
            record,
            start,
            first_byte: None,
            bytes: 0,
            after: self.after.clone(),
        };
        Response::from_parts(parts, ObservedBody::new(incoming, tap).boxed_unsync())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_including_connection_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));
    }

    #[test]
    fn stages_are_in_design_order() {
        assert_eq!(Stage::ORDER.first(), Some(&Stage::Identify));
        assert_eq!(Stage::ORDER.last(), Some(&Stage::Record));
        let fwd = Stage::ORDER.iter().position(|s| *s == Stage::Forward);
        let auth = Stage::ORDER.iter().position(|s| *s == Stage::Authorize);
        assert!(auth < fwd);
    }
}
