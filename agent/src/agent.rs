//! Wiring: builds the running agent from a policy and a state directory — binds the listener first (so a
//! taken port fails fast), or serves the ones the service manager passed ([`Inherited`]), checks the state directory is private, takes the control socket (refusing
//! to start if another agent answers on it), loads or creates the device CA, writes the merged trust
//! bundle and the runtime file the CLI reads, builds the upstream client, the recorder and the
//! pipeline, hands the listener its narrow [`ProxyState`] and the control server the agent as
//! [`Control`], and serves until shut down. It owns the status report ([`Shared`]); it must not handle
//! requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ca::{self, CertificateAuthority};
use crate::caller::Callers;
use crate::control::{self, Control, ControlServer};
use crate::fleet::{FleetHost, Governor, Ledger, Offered, PolicySink};
use crate::governance::Governance;
use crate::inventory::Inventory;
use crate::journal::Journal;
use crate::paths::{self, StateDir};
use crate::pause::Pause;
use crate::pipeline::settle::CostStage;
use crate::pipeline::{Pipeline, RequestSlot, RequestStage, ResponseStage};
use crate::policy::Policy;
use crate::proxy::tunnels::TunnelStats;
use crate::proxy::{Connections, LiveState, ProxyState, Refusals};
use crate::record::{now_rfc3339, Recorder};
use crate::sys::activation;
pub use crate::sys::activation::Inherited;
use crate::upstream::{OwnCaCheck, UpstreamClient};
use crate::{proxy, Result};

mod controls;
pub use controls::PauseRefused;

/// File descriptors kept free of client connections (the state files, the records file, the
/// listener, upstream pools): connections = (open-files limit − this) / 2, since a tunnelled or
/// proxied connection holds two.
const RESERVED_FDS: u64 = 256;

/// How to start the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Listen address (must be loopback).
    pub listen: SocketAddr,
    /// State directory.
    pub state: StateDir,
    /// Policy in force.
    pub policy: Policy,
    /// How many finished records to keep in memory for the status API.
    pub records_in_memory: usize,
    /// Refuse AI hosts from the start with this explanation (`policy_unavailable`): an enrolled
    /// device that fails closed without a valid policy.
    pub unavailable: Option<String>,
    /// The fleet ledger the status report shows (an enrolled device's governor writes it).
    pub ledger: Option<Arc<Ledger>>,
}

/// The agent as the status report sees it.
pub struct Shared {
    /// What the fleet's sources and verifier did (empty for a device that is not enrolled).
    ledger: Arc<Ledger>,
    /// The enrolled device's governor.
    governor: std::sync::Mutex<Option<Arc<Governor>>>,
    /// Where records go (one recorder for every policy's pipeline).
    recorder: Arc<Recorder>,
    /// The listener's state for the policy in force (policy, pipeline, upstream), swapped whole.
    live: LiveState,
    /// Serialises policy swaps (building the next state reads the current one).
    swapping: std::sync::Mutex<()>,
    ca: Arc<ArcSwap<CertificateAuthority>>,
    connections: Arc<Connections>,
    refusals: Arc<Refusals>,
    tunnels: Arc<TunnelStats>,
    pause: Arc<Pause>,
    listen: SocketAddr,
    state: StateDir,
    started_at: String,
    started: Instant,
    bundle_path: Option<PathBuf>,
    open_files_limit: Option<u64>,
    inventory: Arc<Inventory>,
    control_socket: Option<PathBuf>,
    /// Which listeners someone else made (the service manager): `proxy`, `control`.
    inherited: Vec<&'static str>,
    /// The proxy listener's socket inode, by which the CLI finds it in `/proc/net/tcp`.
    proxy_inode: Option<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.listen)
            .finish()
    }
}

impl Shared {
    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.live.load().policy.clone()
    }

    /// The device CA in force.
    pub fn ca(&self) -> arc_swap::Guard<Arc<CertificateAuthority>> {
        self.ca.load()
    }

    /// The bound listen address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The pipeline of the policy in force.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.live.load().pipeline.clone()
    }

    /// Puts `policy` in force: builds the listener's state for it (reusing the upstream client when
    /// the upstream settings are unchanged, and the recorder, body budget, stages and connection
    /// cap always) and swaps it in atomically. Requests in flight finish under the policy they
    /// started with; no connection is dropped. Fails, leaving the policy in force, only when the new
    /// upstream settings cannot be used (an unreadable CA file).
    pub fn apply_policy(&self, policy: Policy) -> Result<()> {
        self.put_policy(policy, None)
    }

    /// [`Shared::apply_policy`], and with `unavailable`, AI hosts refused with that explanation
    /// (`policy_unavailable`) until a policy that may govern arrives.
    pub fn put_policy(&self, policy: Policy, unavailable: Option<String>) -> Result<()> {
        let _one_at_a_time = crate::sync::lock(&self.swapping);
        let current = self.live.load_full();
        let upstream = if policy.upstream == current.policy.upstream {
            current.upstream.clone()
        } else {
            let own = self.ca.clone();
            UpstreamClient::new(
                &policy.upstream,
                OwnCaCheck::new(move |c| own.load().is_ours(c)),
                Some(self.listen),
            )?
        };
        warn_uncovered(&self.ca(), &policy.hosts.ca_domains());
        let cost = CostStage::new(policy.prices.clone(), policy.azure.deployments.clone());
        let pipeline = Arc::new(
            current
                .pipeline
                .reconfigured(
                    upstream.clone(),
                    policy.limits.clone(),
                    vec![Box::new(cost)],
                )
                .for_policy(&policy),
        );
        current.inventory.set_domains(policy.ai_domains.clone());
        let next = ProxyState {
            unavailable: unavailable.map(Arc::from),
            hosts: policy.hosts.clone(),
            blocked: policy.blocked.clone(),
            limits: policy.limits.clone(),
            policy: Arc::new(policy),
            ca: current.ca.clone(),
            pipeline,
            upstream,
            listen: current.listen,
            connections: current.connections.clone(),
            refusals: current.refusals.clone(),
            control_socket: current.control_socket.clone(),
            callers: current.callers.clone(),
            inventory: current.inventory.clone(),
            tunnels: current.tunnels.clone(),
            pause: current.pause.clone(),
        };
        let pipeline = next.pipeline.clone();
        let pause_allowed = next.policy.pause.allow;
        self.live.store(Arc::new(next));
        pipeline.make_latest();
        if !pause_allowed {
            self.end_pause(None, "the new policy does not allow pausing");
        }
        Ok(())
    }

    /// Writes the runtime file the CLI reads to find and verify this agent. The CLI trusts the control
    /// socket only if its peer is this file's pid and uid (and the answer carries the CA fingerprint),
    /// and trusts this file only because it sits in a state directory nobody else may write.
    /// `activated` says the listening sockets came from the service manager (`inherited`: which), so
    /// their peer credentials name it (root), not this pid.
    pub fn write_runtime_file(&self) -> Result<()> {
        let runtime = json!({
            "listen": self.listen.to_string(),
            "control_socket": self.control_socket,
            "pid": std::process::id(),
            "uid": paths::current_uid(),
            "activated": !self.inherited.is_empty(),
            "inherited": self.inherited,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started_at,
            "ca_fingerprint_sha256": self.ca().info().fingerprint_sha256,
        });
        paths::write_atomic(
            &self.state.runtime_file(),
            runtime.to_string().as_bytes(),
            0o644,
        )
    }

    /// Re-reads the CA from the state directory (after `airlock ca rotate`) and rewrites the bundle.
    pub fn reload_ca(&self) -> Result<()> {
        let ca =
            CertificateAuthority::load_or_create(&self.state, &self.policy().hosts.ca_domains())?;
        if let Err(e) = ca::write_merged_bundle(&self.state, ca.info()) {
            tracing::warn!(error = %e, "cannot rewrite the merged trust bundle");
        }
        tracing::info!(fingerprint = %ca.info().fingerprint_sha256, "device CA reloaded");
        self.ca.store(Arc::new(ca));
        self.write_runtime_file()
    }

    /// The `policy` part of the status report: what is in force, and the fleet's ledger.
    fn policy_status(&self, live: &ProxyState) -> serde_json::Value {
        let policy = &live.policy;
        let mut v = json!({
            "name": policy.name,
            "source": policy.source.to_string(),
            "fail_mode": policy.fail_mode.as_str(),
            "blocked_hosts": policy.blocked.len(),
            "refusing_ai_hosts": live.unavailable.as_deref(),
        });
        if let (Some(obj), serde_json::Value::Object(fleet)) =
            (v.as_object_mut(), self.ledger.status())
        {
            for (k, val) in fleet {
                obj.entry(k).or_insert(val);
            }
        }
        v
    }

    /// The fleet ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The enrolled device's governor, once its sources run (`airlock policy apply` feeds it);
    /// `None` when the device leaves its fleet.
    pub fn attach_governor(&self, gov: Option<Arc<Governor>>) {
        *crate::sync::lock(&self.governor) = gov;
    }

    /// `airlock policy apply`: offers a bundle to the governor. `Ok` with what it came to, or the
    /// refusal (reason code and message); an agent that is not enrolled has no trust to verify with.
    pub fn apply_bundle(
        &self,
        bytes: &[u8],
    ) -> std::result::Result<serde_json::Value, serde_json::Value> {
        let gov = crate::sync::lock(&self.governor).clone();
        let Some(gov) = gov else {
            return Err(json!({
                "reason": "not_enrolled",
                "message": "this agent is not enrolled in a fleet, so it has no keys to verify a bundle with; \
                            enroll it first (sudo airlock enroll --fleet ID --pubkey KEYFILE.pub); airlockd follows the enrollment within seconds",
            }));
        };
        match gov.offer(bytes, "airlock policy apply") {
            Ok(Offered::Applied { version }) => {
                Ok(json!({"result": "applied", "version": version}))
            }
            Ok(Offered::Unchanged { version }) => {
                Ok(json!({"result": "unchanged", "version": version}))
            }
            Err(r) => Err(json!({"reason": r.reason.code(), "message": r.message})),
        }
    }

    /// The status report served at `/airlock/v1/status` and shown by `airlock status`.
    pub fn status(&self) -> serde_json::Value {
        let live = self.live.load_full();
        let policy = &live.policy;
        let ca = self.ca();
        let info = ca.info();
        let hosts: Vec<_> = policy
            .hosts
            .entries()
            .iter()
            .filter(|e| e.local.is_none())
            .map(|e| {
                json!({
                    "host": e.pattern.display(),
                    "provider": e.provider,
                    "api": e.api.as_str(),
                    "prefix": e.prefix,
                    "paths": e.paths,
                    "billing": e.billing,
                    "intercepted": e.pattern.constraint_domain().is_some_and(|d| ca.covers(d)),
                })
            })
            .collect();
        // Model servers on this machine: base-URL prefixes over plain HTTP, nothing for the CA.
        let local_servers: Vec<_> = policy
            .hosts
            .entries()
            .iter()
            .filter_map(|e| {
                let l = e.local.as_ref()?;
                Some(json!({
                    "address": l.authority(),
                    "provider": e.provider,
                    "api": e.api.as_str(),
                    "prefix": e.prefix,
                    "paths": e.paths,
                }))
            })
            .collect();
        let uncovered: Vec<String> = policy
            .hosts
            .entries()
            .iter()
            .filter(|e| e.pattern.constraint_domain().is_some_and(|d| !ca.covers(d)))
            .map(|e| e.pattern.display())
            .collect();
        let recorder = live.pipeline.recorder();
        let limits = &policy.limits;
        let budget = live.pipeline.budget();
        let refused = &self.refusals;
        let policy_status = self.policy_status(&live);
        let journal = recorder.journal_status();
        let health = self.health(&policy_status, &journal);
        json!({
            "agent": "airlockd",
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "device": live.pipeline.device(),
            "listen": self.listen.to_string(),
            "proxy_url": format!("http://{}", self.listen),
            "started_at": self.started_at,
            "uptime_secs": self.started.elapsed().as_secs(),
            "state_dir": self.state.root(),
            "control_socket": self.control_socket,
            "listeners": {
                "activated": !self.inherited.is_empty(),
                "inherited": self.inherited,
                "proxy_socket_inode": self.proxy_inode,
            },
            "policy": policy_status,
            "health": health,
            "pause": self.pause_status(),
            "ca": {
                "cert_path": info.cert_path,
                "bundle_path": self.bundle_path,
                "fingerprint_sha256": info.fingerprint_sha256,
                "subject": info.subject,
                "serial": info.serial,
                "not_after": info.not_after,
                "permitted_domains": info.permitted_domains,
                "uncovered_hosts": uncovered,
            },
            "interception_hosts": hosts,
            "local_servers": local_servers,
            "upstream": {
                "proxy": live.upstream.proxy().map(|p| p.display()),
                "proxy_source": live.upstream.proxy().map(|p| p.source.as_str()),
                "hosts_without_stream_options": live.pipeline.capabilities().hosts_without_stream_options(),
            },
            "requests_seen": recorder.seen(),
            "requests_in_flight": recorder.in_flight(),
            "connections": {
                "open": self.connections.open(),
                "max": self.connections.max(),
                "open_files_limit": self.open_files_limit,
            },
            "buffered_request_bytes": {"in_use": budget.in_use(), "max": budget.total()},
            "limits": limits,
            "journal": journal,
            "governance": live.pipeline.governance().map(|(g, rules)| g.status(rules)),
            "credentials": live.pipeline.credential_store().map(|c| c.status()),
            "refused": {
                "non_loopback_peers": refused.non_loopback_peers.load(Ordering::Relaxed),
                "over_connection_limit": refused.over_connection_limit.load(Ordering::Relaxed),
                "tls_handshake_timeouts": refused.tls_handshake_timeouts.load(Ordering::Relaxed),
                "browser_requests": refused.browser_requests.load(Ordering::Relaxed),
                "blocked_hosts": refused.blocked_hosts.load(Ordering::Relaxed),
            },
            "tunnels": self.tunnels.status(),
            "inventory": {
                "enabled": policy.ai_domains.enabled(),
                "domains_listed": policy.ai_domains.len(),
            },
        })
    }
}

impl PolicySink for Shared {
    fn put(&self, policy: Policy, unavailable: Option<String>) -> Result<()> {
        self.put_policy(policy, unavailable)
    }

    fn event(&self, name: &str, details: serde_json::Value) {
        if let Some(j) = self.recorder.journal() {
            j.event(name, None, details);
        }
    }
}

impl FleetHost for Shared {
    fn set_governor(&self, gov: Option<Arc<Governor>>) {
        self.attach_governor(gov);
    }
}

impl Control for Shared {
    fn pause(
        &self,
        uid: Option<u32>,
        minutes: Option<u32>,
    ) -> std::result::Result<serde_json::Value, (String, String)> {
        self.start_pause(uid, minutes)
            .map_err(|r| (r.reason.to_string(), r.message))
    }

    fn resume(&self, uid: Option<u32>) -> serde_json::Value {
        self.end_pause(uid, "asked for")
    }

    fn credentials(&self) -> Option<Arc<crate::credentials::Store>> {
        self.pipeline().credential_store().cloned()
    }

    fn status(&self) -> serde_json::Value {
        Shared::status(self)
    }

    fn reload_ca(&self) -> std::result::Result<serde_json::Value, String> {
        Shared::reload_ca(self).map_err(|e| e.to_string())?;
        Ok(Shared::status(self))
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    fn policy(&self) -> serde_json::Value {
        self.policy_status(&self.live.load())
    }

    fn apply_bundle(
        &self,
        bytes: &[u8],
    ) -> std::result::Result<serde_json::Value, serde_json::Value> {
        Shared::apply_bundle(self, bytes)
    }
}

/// Warns when the policy intercepts hosts the device CA does not cover (at start and on every swap).
fn warn_uncovered(ca: &CertificateAuthority, domains: &[String]) {
    let uncovered = ca.info().uncovered(domains);
    if !uncovered.is_empty() {
        tracing::warn!(
            hosts = ?uncovered,
            "the policy intercepts hosts the device CA does not cover; they are tunnelled uninspected until `airlock ca rotate`"
        );
    }
}

/// A running agent.
pub struct RunningAgent {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (status, recorder).
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    control: Option<ControlServer>,
    retention: JoinHandle<()>,
}

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.retention.abort();
    }
}

impl RunningAgent {
    /// The control socket's path (`None` where the OS has no control server yet).
    pub fn control_socket(&self) -> Option<&std::path::Path> {
        self.control.as_ref().map(ControlServer::path)
    }

    /// Stops accepting, waits up to `grace` for requests in flight, flushes records and removes the
    /// control socket and the runtime file.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.retention.abort();
        let deadline = Instant::now() + grace;
        // A connection accepted just before the stop (a health check, a request whose headers are
        // still arriving) is answered, not reset: wait briefly for open connections to end. Idle
        // keep-alive connections and tunnels would hold this forever, so it is bounded.
        let settle = Instant::now() + grace.min(CONNECTION_SETTLE);
        while self.shared.connections.open() > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let recorder = self.shared.pipeline().recorder().clone();
        while recorder.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let flush = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        let _ = tokio::task::spawn_blocking(move || recorder.close(flush)).await;
        if let Some(control) = self.control.take() {
            control.shutdown().await;
        }
        let _ = std::fs::remove_file(self.shared.state.runtime_file());
    }
}

/// Starts the agent: binds, prepares the CA and state, and serves in the background.
pub async fn start(config: AgentConfig) -> Result<RunningAgent> {
    start_with_stages(config, Vec::new()).await
}

/// Starts the agent with extra request stages plugged into its pipeline, in order (for programs that
/// embed the agent, and test harnesses that need a stage the shipped daemon does not have).
pub async fn start_with_stages(
    config: AgentConfig,
    stages: Vec<(RequestSlot, Box<dyn RequestStage>)>,
) -> Result<RunningAgent> {
    start_with_response_stages(config, stages, Vec::new()).await
}

/// Starts the agent with extra request stages and response stages (inspect response, in order)
/// plugged into its pipeline — they see HTTP event streams and every response on a WebSocket.
pub async fn start_with_response_stages(
    config: AgentConfig,
    stages: Vec<(RequestSlot, Box<dyn RequestStage>)>,
    responses: Vec<Box<dyn ResponseStage>>,
) -> Result<RunningAgent> {
    start_with_listeners(config, Inherited::default(), stages, responses).await
}

/// Starts the agent on listeners made elsewhere where given — the service manager's
/// ([`activation::take_from_env`]), a test's, an embedder's — and binds the others as
/// [`start`] does. A passed proxy listener must be bound to loopback (its address replaces
/// `config.listen`); a passed control socket must be bound at the state directory's
/// `airlock.sock`, and is neither taken over nor removed (its maker owns the path).
pub async fn start_with_listeners(
    config: AgentConfig,
    listeners: Inherited,
    stages: Vec<(RequestSlot, Box<dyn RequestStage>)>,
    responses: Vec<Box<dyn ResponseStage>>,
) -> Result<RunningAgent> {
    let AgentConfig {
        listen,
        state,
        policy,
        records_in_memory,
        unavailable,
        ledger,
    } = config;
    let Inherited {
        proxy: passed_proxy,
        control: passed_control,
    } = listeners;
    let mut inherited = Vec::new();
    let listener = match passed_proxy {
        Some(l) => {
            inherited.push(activation::PROXY_NAME);
            proxy::adopt(l)?
        }
        None => proxy::bind(listen).await?,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| crate::AgentError::io("cannot read the listen address of", state.root(), e))?;
    if !inherited.is_empty() && addr != listen {
        tracing::info!(%addr, asked = %listen, "serving the proxy port the service manager passed, not --listen");
    }
    let proxy_inode = activation::socket_inode(&listener);

    paths::ensure_private_dir(state.root())?;
    warn_if_unreachable(&state);
    // Before the runtime file is written: a live agent on this state directory keeps its files.
    let control = match passed_control {
        Some(l) => {
            inherited.push(activation::CONTROL_NAME);
            Some(control::adopt(l, &state.control_socket())?)
        }
        None => control::bind(&state.control_socket()).await?,
    };
    let domains = policy.hosts.ca_domains();
    let ca = CertificateAuthority::load_or_create(&state, &domains)?;
    warn_uncovered(&ca, &domains);
    let bundle_path = match ca::write_merged_bundle(&state, ca.info()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the merged trust bundle; `airlock run` will use the CA alone");
            None
        }
    };
    let ca = Arc::new(ArcSwap::from_pointee(ca));
    let own = ca.clone();
    let upstream = UpstreamClient::new(
        &policy.upstream,
        OwnCaCheck::new(move |c| own.load().is_ours(c)),
        Some(addr),
    )?;
    let limits = policy.limits.clone();
    let journal = Journal::open(&state.journal_file(), policy.journal.sync)?;
    let recorder = Arc::new(Recorder::new(records_in_memory, Some(journal)));
    let cost = CostStage::new(policy.prices.clone(), policy.azure.deployments.clone());
    let device = crate::device::id(&state)?;
    let governance = Governance::new(crate::governance::clock::from_env());
    if let Some(j) = recorder.journal() {
        let counted = j.reader().and_then(|c| {
            Ok(crate::governance::rebuild::from_journal(
                &governance,
                &policy.governance,
                &c,
            )?)
        });
        match counted {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                requests = n,
                "budgets and rate limits rebuilt from the journal"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild budgets from the journal; they start from zero")
            }
        }
    }
    let store_dir = state.clone();
    // The OS credential store may be a D-Bus round trip away: asked off the async workers.
    let credentials = Arc::new(
        tokio::task::spawn_blocking(move || crate::credentials::Store::open(&store_dir))
            .await
            .map_err(|e| {
                crate::AgentError::io(
                    "cannot open the credential store in",
                    state.root(),
                    std::io::Error::other(e.to_string()),
                )
            })?,
    );
    let mut pipeline = Pipeline::new(upstream.clone(), recorder, limits.clone())
        .with_settle_stage(Box::new(cost))
        .for_policy(&policy)
        .for_device(device.clone())
        .with_hash_key(crate::device::hash_key(&state)?)
        .with_governance(governance)
        .with_credentials(credentials);
    for (slot, stage) in stages {
        pipeline = pipeline.with_request_stage(slot, stage);
    }
    for stage in responses {
        pipeline = pipeline.with_response_stage(stage);
    }
    let pipeline = Arc::new(pipeline);
    pipeline.make_latest();

    let open_files_limit = crate::sys::raise_open_files_limit();
    let max_connections = match open_files_limit {
        Some(n) => {
            let fit = usize::try_from(n.saturating_sub(RESERVED_FDS) / 2).unwrap_or(usize::MAX);
            if fit < limits.max_connections {
                tracing::warn!(
                    open_files_limit = n,
                    max_connections = fit,
                    "the open-files limit allows fewer connections than limits.max_connections; raise it (ulimit -n) to serve more"
                );
            }
            limits.max_connections.min(fit.max(16))
        }
        None => limits.max_connections,
    };
    let connections = Arc::new(Connections::new(max_connections));
    let refusals = Arc::new(Refusals::default());
    let tunnels = Arc::new(TunnelStats::default());
    let pause = Arc::new(Pause::new());
    let inventory = Arc::new(Inventory::new(policy.ai_domains.clone()));
    let live: LiveState = Arc::new(ArcSwap::from_pointee(ProxyState {
        unavailable: unavailable.map(Arc::from),
        hosts: policy.hosts.clone(),
        blocked: policy.blocked.clone(),
        limits: limits.clone(),
        policy: Arc::new(policy),
        ca: ca.clone(),
        pipeline,
        upstream,
        listen: addr,
        connections: connections.clone(),
        refusals: refusals.clone(),
        control_socket: control.as_ref().map(|_| state.control_socket()),
        callers: Callers::start(),
        inventory: inventory.clone(),
        tunnels: tunnels.clone(),
        pause: pause.clone(),
    }));
    let shared = Arc::new(Shared {
        ledger: ledger.unwrap_or_default(),
        governor: std::sync::Mutex::new(None),
        recorder: live.load().pipeline.recorder().clone(),
        live: live.clone(),
        swapping: std::sync::Mutex::new(()),
        ca: ca.clone(),
        connections: connections.clone(),
        refusals: refusals.clone(),
        tunnels: tunnels.clone(),
        pause,
        listen: addr,
        state: state.clone(),
        started_at: now_rfc3339(),
        started: Instant::now(),
        bundle_path,
        open_files_limit,
        inventory: inventory.clone(),
        control_socket: control.as_ref().map(|_| state.control_socket()),
        inherited,
        proxy_inode,
    });
    shared.write_runtime_file()?;
    let control = control.map(|l| l.serve(control::Context::new(shared.clone())));

    let (stop, stopped) = oneshot::channel::<()>();
    let retention = tokio::spawn(keep_journal_bounded(shared.clone()));
    let task = tokio::spawn(proxy::serve(listener, live, async move {
        let _ = stopped.await;
    }));
    Ok(RunningAgent {
        addr,
        shared,
        stop: Some(stop),
        task,
        control,
        retention,
    })
}

/// Longest a stopping agent waits for the connections it had accepted to be answered.
const CONNECTION_SETTLE: Duration = Duration::from_secs(1);

/// How often journal retention runs (and first, a minute after start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Applies the policy in force's journal retention now and then, until the agent stops.
async fn keep_journal_bounded(shared: Arc<Shared>) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    loop {
        let journal = shared.pipeline().recorder().journal().cloned();
        if let Some(j) = journal {
            let policy = shared.live.load().policy.journal.clone();
            if let Err(e) = j.prune(&policy).await {
                tracing::warn!(error = %e, "journal retention could not remove old rows; it tries again in an hour");
            }
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}

/// Warns when other users cannot reach the control socket: the state directory must let them pass
/// (`x` for others, as the 0711 it is created with does) for `airlock status` to work for them.
fn warn_if_unreachable(state: &StateDir) {
    if let Some(mode) = paths::mode_of(state.root()) {
        if mode & 0o001 == 0 {
            tracing::warn!(
                dir = %state.root().display(), mode = format!("{mode:04o}"),
                "other users cannot reach the control socket in the state directory, so `airlock status` works only for this user and root; `chmod 711` it to let them (they still cannot list it)"
            );
        }
    }
}
