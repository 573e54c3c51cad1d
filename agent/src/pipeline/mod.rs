//! The one path every intercepted AI request takes, as an explicit ordered list of stages
//! (DESIGN.md): identify → authorize → inspect request → route → forward → observe stream → inspect
//! response → settle → record. Each stage is a file here, in that order, and [`Pipeline::handle`] reads
//! as the list. Identify, route's metering adjustment, forward, observe, settle (cost) and record are
//! built in; authorize, inspect request, route, inspect response and settle take plugged-in stages
//! ([`stage`]) — capabilities plug in here and never add side paths. A refusal in any request stage
//! answers the client in its provider's dialect; a [`guard::RecordGuard`] opened before the first await
//! finishes the record on every exit, including the client going away. This module must not know how
//! requests arrive (that is [`crate::proxy`]) or how connections are made (that is [`crate::upstream`]).

mod authorize;
mod commit;
mod credentials;
pub mod exchange;
mod forward;
pub mod guard;
mod guardrails;
pub(crate) mod guardrails_response;
pub mod identify;
mod idle;
mod inspect;
mod observe;
pub mod record;
mod route;
pub mod settle;
pub mod stage;
mod upgrade;
mod ws;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response};
use http_body::Body;

use crate::body::{BoxError, ProxyBody};
pub use crate::budget::BodyBudget;
use crate::caller::Caller;
use crate::policy::{ApiKind, Billing, HostEntry, Limits, StreamUsage};
use crate::providers;
use crate::providers::dialect::AirlockError;
use crate::record::{now_rfc3339, CostStatus, InterceptMode, Outcome, PolicyRef, Record, Recorder};
use crate::upstream::UpstreamClient;
pub use exchange::{Exchange, RequestBody};
pub use observe::ObservedBody;
pub use route::Capabilities;
pub use stage::{
    Flow, RequestSlot, RequestStage, ResponseHead, ResponseStage, SettleStage, StageFuture,
    StreamCut, StreamStage,
};
pub use upgrade::Upgrade;

/// The stages, in the order a request meets them (labels for records, logs and metrics).
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

    /// The label in records (`decided_by`) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Identify => "identify",
            Stage::Authorize => "authorize",
            Stage::InspectRequest => "inspect_request",
            Stage::Route => "route",
            Stage::Forward => "forward",
            Stage::ObserveStream => "observe_stream",
            Stage::InspectResponse => "inspect_response",
            Stage::Settle => "settle",
            Stage::Record => "record",
        }
    }
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
    /// How the host's requests are paid for.
    pub billing: Billing,
    /// Plain HTTP to a model server on this machine (only local rules; everything else is HTTPS).
    pub plain_http: bool,
    /// Who sent it: the lookup of the client connection's owner, for the record.
    pub caller: Caller,
}

impl Target {
    /// The target for a host entry of the interception set. A local server's entry names its own
    /// loopback address and port; the wire format may follow the path (an OpenAI-compatible host
    /// serving Anthropic's `/v1/messages`, as Copilot does).
    pub fn new(
        mode: InterceptMode,
        host: String,
        port: Option<u16>,
        entry: &HostEntry,
        path_and_query: String,
    ) -> Self {
        let (host, port) = match &entry.local {
            Some(l) => (l.host.clone(), Some(l.port)),
            None => (host, port),
        };
        let path = path_and_query.split('?').next().unwrap_or_default();
        Target {
            mode,
            host,
            port,
            provider: entry.provider.clone(),
            api: providers::api_for_path(entry.api, path),
            stream_usage: entry.stream_usage,
            billing: entry.billing,
            plain_http: entry.local.is_some(),
            path_and_query,
            caller: Caller::unknown(),
        }
    }

    /// The same target, sent by `caller`.
    pub fn with_caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// The upstream authority as records show it: the host, with the port for a local server.
    pub fn record_host(&self) -> String {
        match self.port {
            Some(p) if self.plain_http => {
                if self.host.contains(':') {
                    format!("[{}]:{p}", self.host)
                } else {
                    format!("{}:{p}", self.host)
                }
            }
            _ => self.host.clone(),
        }
    }

    /// The path and the query, apart.
    pub fn split_path(&self) -> (&str, Option<&str>) {
        match self.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path_and_query.as_str(), None),
        }
    }
}

/// Why a request left the pipeline before being forwarded.
pub(crate) enum Stop {
    /// Refused: answer with the error in the caller's dialect.
    Refuse {
        /// The error.
        err: AirlockError,
        /// Which stage refused (`identify`, `authorize:<name>` …).
        by: String,
    },
    /// The client went away before the request could be forwarded.
    ClientGone,
    /// A stage answered the request itself.
    Answer {
        /// The answer.
        resp: Response<ProxyBody>,
        /// Which stage.
        by: String,
    },
}

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

/// The plugged-in request stages, in their slots: shared, because a WebSocket session outlives the
/// request that opened it and runs them for every message it carries.
#[derive(Default)]
pub(crate) struct RequestStages {
    pub(crate) authorize: Vec<Box<dyn RequestStage>>,
    pub(crate) inspect_request: Vec<Box<dyn RequestStage>>,
    pub(crate) route: Vec<Box<dyn RequestStage>>,
}

impl RequestStages {
    /// Runs the stages of one slot in order; the first that refuses or answers ends the run.
    pub(crate) async fn run_slot(
        stages: &[Box<dyn RequestStage>],
        slot: &'static str,
        ex: &mut Exchange,
        guard: &mut guard::RecordGuard,
    ) -> Result<(), Stop> {
        for s in stages {
            guard.set_phase(guard::Phase::Stage(s.name()));
            let by = || format!("{slot}:{}", s.name());
            match s.apply(ex).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Answer(resp)) => return Err(Stop::Answer { resp, by: by() }),
                Err(err) => return Err(Stop::Refuse { err, by: by() }),
            }
        }
        Ok(())
    }
}

/// The pipeline: the built-in stages and the plugged-in ones, in their slots.
pub struct Pipeline {
    stages: Arc<RequestStages>,
    inspect_response: Arc<Vec<Box<dyn ResponseStage>>>,
    upstream: UpstreamClient,
    finisher: Arc<record::Finisher>,
    limits: Limits,
    budget: BodyBudget,
    capabilities: Arc<Capabilities>,
    /// The policy this pipeline was built for, named on every record.
    policy: Option<PolicyRef>,
    /// Its model rules, which authorize applies.
    models: Arc<crate::policy::ModelRules>,
    /// Its Azure deployments → the models they serve (a deployment is judged as its model too).
    deployments: Arc<std::collections::BTreeMap<String, String>>,
    /// Its budgets and rate limits.
    rules: Arc<crate::governance::Rules>,
    /// Its credential rules, by provider.
    credential_rules:
        Arc<std::collections::BTreeMap<String, crate::policy::credentials::CredentialRule>>,
    /// The org credentials `inject` sends, shared by every policy's pipeline.
    credential_store: Option<Arc<crate::credentials::Store>>,
    /// Its prices, for the estimate a budget reserves.
    prices: crate::pricing::PriceTable,
    /// The counts budgets and rate limits keep, shared by every policy's pipeline.
    governance: Option<Arc<crate::governance::Governance>>,
    /// This device's id, on every record.
    device: Option<String>,
    /// Its guardrails.
    guard: Option<Arc<crate::guardrails::actions::Guard>>,
    /// The key of the hashes records keep of guardrail matches (the device's).
    hash_key: [u8; 32],
    /// The pipeline in force now, shared by every pipeline of this agent ([`Pipeline::latest`]).
    latest: Latest,
}

/// Where the pipeline in force is kept for what outlives a policy swap: a WebSocket opened under one
/// policy has its later units judged by the next.
type Latest = Arc<arc_swap::ArcSwapOption<Pipeline>>;

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[Box<dyn RequestStage>]| v.iter().map(|s| s.name()).collect::<Vec<_>>();
        f.debug_struct("Pipeline")
            .field("authorize", &names(&self.stages.authorize))
            .field("inspect_request", &names(&self.stages.inspect_request))
            .field("route", &names(&self.stages.route))
            .field(
                "inspect_response",
                &self
                    .inspect_response
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>(),
            )
            .field("finisher", &self.finisher)
            .finish()
    }
}

impl Pipeline {
    /// The policy's guardrails, when they are enabled.
    pub(crate) fn guardrails(&self) -> Option<&Arc<crate::guardrails::actions::Guard>> {
        self.guard.as_ref().filter(|g| g.enabled())
    }

    /// Whether anything may change response bodies: plugged-in response stages or guardrails.
    pub(crate) fn inspects_responses(&self) -> bool {
        !self.inspect_response.is_empty() || self.guardrails().is_some()
    }

    /// A pipeline with no plugged-in stages, bounded by `limits`.
    pub fn new(upstream: UpstreamClient, recorder: Arc<Recorder>, limits: Limits) -> Pipeline {
        Pipeline {
            stages: Arc::new(RequestStages::default()),
            inspect_response: Arc::new(Vec::new()),
            upstream,
            finisher: Arc::new(record::Finisher::new(recorder)),
            budget: BodyBudget::new(limits.max_buffered()),
            limits,
            capabilities: Arc::new(Capabilities::default()),
            policy: None,
            models: Arc::default(),
            deployments: Arc::default(),
            rules: Arc::default(),
            credential_rules: Arc::default(),
            credential_store: None,
            prices: crate::pricing::PriceTable::default(),
            governance: None,
            device: None,
            guard: None,
            hash_key: [0; 32],
            latest: Arc::default(),
        }
    }

    /// Names this device on every record.
    pub fn for_device(mut self, device: String) -> Self {
        self.device = Some(device);
        self
    }

    /// Keys the hashes records keep of guardrail matches with `key` (the device's, so one value
    /// hashes alike across restarts here and differently on every other machine).
    pub fn with_hash_key(mut self, key: [u8; 32]) -> Self {
        self.hash_key = key;
        self
    }

    /// Governs by `policy`: its rules in authorize, its name and version on every record.
    pub fn for_policy(mut self, policy: &crate::policy::Policy) -> Self {
        self.policy = Some(PolicyRef {
            name: policy.name.clone(),
            version: policy.version,
        });
        self.models = Arc::new(policy.models.clone());
        self.deployments = Arc::new(policy.azure.deployments.clone());
        self.rules = policy.governance.clone();
        self.credential_rules = Arc::new(policy.credentials.clone());
        self.prices = policy.prices.clone();
        self.guard = Some(policy.guard.clone());
        self
    }

    /// Injects org credentials from `store`.
    pub fn with_credentials(mut self, store: Arc<crate::credentials::Store>) -> Self {
        self.credential_store = Some(store);
        self
    }

    /// The credential store, when there is one.
    pub fn credential_store(&self) -> Option<&Arc<crate::credentials::Store>> {
        self.credential_store.as_ref()
    }

    /// Counts budgets and rate limits in `governance` (one per agent, kept across policy swaps).
    pub fn with_governance(mut self, governance: Arc<crate::governance::Governance>) -> Self {
        self.governance = Some(governance);
        self
    }

    /// The budget and rate-limit counts, and this policy's rules.
    pub fn governance(
        &self,
    ) -> Option<(
        &Arc<crate::governance::Governance>,
        &crate::governance::Rules,
    )> {
        self.governance.as_ref().map(|g| (g, &*self.rules))
    }

    /// The pipeline for a new policy: the same stages, recorder, request-body budget (a new one if
    /// the policy resizes it) and what was learned about upstream hosts, with the policy's
    /// upstream client, limits and settle stages. Records of requests in flight still go to the
    /// same recorder, settled by the stages they started with.
    pub fn reconfigured(
        &self,
        upstream: UpstreamClient,
        limits: Limits,
        settle: Vec<Box<dyn SettleStage>>,
    ) -> Pipeline {
        let budget = if limits.max_buffered() == self.limits.max_buffered() {
            self.budget.clone()
        } else {
            BodyBudget::new(limits.max_buffered())
        };
        Pipeline {
            stages: self.stages.clone(),
            inspect_response: self.inspect_response.clone(),
            upstream,
            finisher: Arc::new(record::Finisher::with_settle(
                self.recorder().clone(),
                settle,
            )),
            limits,
            budget,
            capabilities: self.capabilities.clone(),
            policy: self.policy.clone(),
            models: self.models.clone(),
            deployments: self.deployments.clone(),
            rules: self.rules.clone(),
            credential_rules: self.credential_rules.clone(),
            credential_store: self.credential_store.clone(),
            prices: self.prices.clone(),
            governance: self.governance.clone(),
            device: self.device.clone(),
            guard: self.guard.clone(),
            hash_key: self.hash_key,
            latest: self.latest.clone(),
        }
    }

    /// Puts this pipeline in force for what outlives a swap: the next unit on a socket opened under
    /// an earlier pipeline is judged by this one. Call it when the listener starts using it.
    pub fn make_latest(self: &Arc<Self>) {
        self.latest.store(Some(self.clone()));
    }

    /// The pipeline in force now: this one, unless a later one was put in force since.
    pub(crate) fn latest(self: &Arc<Self>) -> Arc<Pipeline> {
        self.latest.load_full().unwrap_or_else(|| self.clone())
    }

    /// Adds a request-side stage to a slot; stages in one slot run in the order they were added.
    pub fn with_request_stage(mut self, slot: RequestSlot, s: Box<dyn RequestStage>) -> Self {
        let Some(stages) = Arc::get_mut(&mut self.stages) else {
            tracing::error!(
                stage = s.name(),
                "request stages can only be added before the pipeline runs"
            );
            return self;
        };
        match slot {
            RequestSlot::Authorize => stages.authorize.push(s),
            RequestSlot::InspectRequest => stages.inspect_request.push(s),
            RequestSlot::Route => stages.route.push(s),
        }
        self
    }

    /// Adds a response stage (inspect response); they see the body in the order they were added.
    pub fn with_response_stage(mut self, s: Box<dyn ResponseStage>) -> Self {
        match Arc::get_mut(&mut self.inspect_response) {
            Some(v) => v.push(s),
            None => tracing::error!(
                stage = s.name(),
                "response stages can only be added before the pipeline runs"
            ),
        }
        self
    }

    /// Adds a settle stage; they update the finished record in the order they were added.
    pub fn with_settle_stage(mut self, s: Box<dyn SettleStage>) -> Self {
        match Arc::get_mut(&mut self.finisher) {
            Some(f) => f.settle.push(s),
            None => tracing::error!(
                stage = s.name(),
                "settle stages can only be added before the pipeline runs"
            ),
        }
        self
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        self.finisher.recorder()
    }

    /// This device's id.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The request-body memory budget.
    pub fn budget(&self) -> &BodyBudget {
        &self.budget
    }

    /// What the agent learned about upstream hosts.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Runs one intercepted request through every stage and returns the response for the client.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>, target: Target) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let api = target.api;
        // Before any await: from here on, every way out finishes the record.
        let mut guard = guard::RecordGuard::open(self.draft(&req, &target), self.finisher.clone());
        match self.run(req, target, &mut guard).await {
            Ok((ex, resp)) => self.observe(ex, resp, guard), // observe, inspect response, settle, record
            Err(Stop::Refuse { err, by }) => {
                tracing::debug!(id = %guard.id(), stage = %by, kind = err.kind, "request refused");
                guard.refuse(api, err, by)
            }
            Err(Stop::Answer { resp, by }) => guard.answer(resp, by),
            // Dropping the guard finishes the record as the client closing, with where it was.
            Err(Stop::ClientGone) => {
                drop(guard);
                Response::new(crate::body::empty())
            }
        }
    }

    async fn run<B>(
        &self,
        req: Request<B>,
        target: Target,
        guard: &mut guard::RecordGuard,
    ) -> Result<(Exchange, Response<forward::UpstreamBody>), Stop>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut ex = self.identify(req, target, guard).await?; // identify
        self.authorize(&mut ex, guard).await?; // authorize
        self.inspect_request(&mut ex, guard).await?; // inspect request
        self.route(&mut ex, guard).await?; // route
        self.commit(guard).await?; // record: the begin row, committed before anything leaves
        let resp = self.forward(&mut ex, guard).await?; // forward
        Ok((ex, resp))
    }

    /// What one unit on a WebSocket the agent reads (a client `response.create`) meets before its
    /// frames go on: the stages an HTTP request meets between identify and forward — the policy's
    /// model rules, budgets and rate limits, the guardrails, the plugged-in stages, and its begin
    /// row — but not credentials, which the socket's upgrade request carried and was judged by.
    pub(crate) async fn govern_unit(
        &self,
        ex: &mut Exchange,
        guard: &mut guard::RecordGuard,
    ) -> Result<(), Stop> {
        self.authorize_unit(ex, guard).await?;
        self.inspect_request(ex, guard).await?;
        // Only the plugged-in route stages: the socket's route was decided at its upgrade, and the
        // built-in metering change is for HTTP streams.
        self.run_slot(&self.stages.route, "route", ex, guard)
            .await?;
        self.commit(guard).await
    }

    /// Runs the stages of one slot in order.
    async fn run_slot(
        &self,
        stages: &[Box<dyn RequestStage>],
        slot: &'static str,
        ex: &mut Exchange,
        guard: &mut guard::RecordGuard,
    ) -> Result<(), Stop> {
        RequestStages::run_slot(stages, slot, ex, guard).await
    }

    /// The record as it starts.
    fn draft<B>(&self, req: &Request<B>, target: &Target) -> Record {
        let (path, query) = target.split_path();
        let record_path = match query {
            Some(q) => format!("{path}?{}", providers::redact_query(q)),
            None => path.to_string(),
        };
        let credential = providers::credential_kind(req.headers(), query, target.billing);
        let (cost_status, cost_note) = billing_status(target, credential);
        Record {
            id: self.recorder().next_id(),
            started_at: now_rfc3339(),
            mode: target.mode,
            host: target.record_host(),
            provider: target.provider.clone(),
            operation: String::new(),
            model: None,
            stream: false,
            method: req.method().to_string(),
            path: record_path,
            status: None,
            outcome: Outcome::InProgress,
            credential: credential.to_string(),
            credential_fingerprint: None,
            response_model: None,
            usage: None,
            usage_estimated: false,
            usage_injected: false,
            cost_usd: None,
            cost_status,
            cost_note,
            upstream_error: None,
            latency_ms: None,
            ttfb_ms: None,
            request_bytes: 0,
            response_bytes: 0,
            error: None,
            decided_by: None,
            websocket: None,
            uid: None,
            user: None,
            pid: None,
            app: None,
            app_path: None,
            device: self.device.clone(),
            reserved: None,
            policy: self.policy.clone(),
            guardrails: Vec::new(),
            caller: target.caller.clone(),
        }
    }
}

/// The cost status a request starts with when it is not paid per token: a subscription or seat
/// (the host says so, or the caller signed in with OAuth) or a local model server. Settle keeps it
/// and meters usage all the same; a refusal still turns it into `not_billed`.
fn billing_status(target: &Target, credential: &str) -> (Option<CostStatus>, Option<String>) {
    let billing = if credential == "oauth" && target.billing == Billing::PerToken {
        Billing::Subscription
    } else {
        target.billing
    };
    match billing {
        Billing::PerToken => (None, None),
        Billing::Subscription => (
            Some(CostStatus::Subscription),
            Some(format!(
                "{} is paid by subscription or seat (signed in, not an API key), not per token; usage is metered, no per-token cost applies",
                target.provider
            )),
        ),
        Billing::Local => (
            Some(CostStatus::Local),
            Some(format!(
                "local model server {} on this machine: usage is metered, nothing is billed",
                target.provider
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
}
