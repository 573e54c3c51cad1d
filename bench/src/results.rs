//! The result document written to `bench/results/latest.json`: machine, method, pinning, quietness,
//! and every measurement with its direct baseline from the same run, plus the optional noisy-neighbour
//! and hostile-load sections. Plain data, serialisable both
//! ways so `airlock-bench report` can re-render a saved run; it computes nothing but simple ratios.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Names of the scenarios.
pub const DIRECT: &str = "direct";
/// airlockd as an HTTPS proxy (CONNECT + TLS interception).
pub const AIRLOCK_MITM: &str = "airlock-mitm";
/// airlockd base-URL mode.
pub const AIRLOCK_BASE: &str = "airlock-base-url";
/// mitmproxy doing the MITM job.
pub const MITMPROXY: &str = "mitmproxy";
/// airlockd relaying a CONNECT tunnel blind to the mock (TLS end to end): the hop without the work.
pub const AIRLOCK_TUNNEL: &str = "airlock-tunnel";
/// nginx as a TLS-terminating reverse proxy to the mock (TLS in, verified TLS out, keep-alive
/// upstream pool, one worker): the floor for a TLS-in/TLS-out proxy on this machine.
pub const NGINX: &str = "nginx";
/// Direct, with `stream_options.include_usage` in streams (stream baseline only).
pub const DIRECT_USAGE: &str = "direct+usage";

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Results {
    /// Unix time the run ended.
    pub generated_at_unix: u64,
    /// Whether this was a short smoke run (`--quick`): not for publication.
    pub quick: bool,
    /// Machine.
    pub machine: Machine,
    /// Method and parameters.
    pub method: Method,
    /// CPU each process was allowed to run on.
    pub pinning: Vec<Pinning>,
    /// How busy the machine was apart from this run.
    pub quiet: Quiet,
    /// Pre-flight checks that each scenario answers correctly.
    pub verification: Vec<Verification>,
    /// Open-loop latency at fixed rates.
    pub latency: Vec<LatencyRun>,
    /// Closed-loop maximum throughput.
    pub throughput: Vec<ThroughputRun>,
    /// Paced stream timings.
    pub stream: Vec<StreamRun>,
    /// New connection + first request.
    pub cold: Vec<ColdRun>,
    /// Memory of the proxies.
    pub memory: Vec<MemoryReport>,
    /// The project's targets, met or missed.
    pub targets: Vec<TargetCheck>,
    /// airlockd's status document at the end of the run.
    pub agent_status: Option<serde_json::Value>,
    /// File-descriptor limits of the harness (inherited by the children it starts).
    #[serde(default)]
    pub nofile: NofileLimits,
    /// Noisy neighbour: the same measurements with CPU hogs running (`--noisy`).
    #[serde(default)]
    pub noisy: Vec<NoisyCondition>,
    /// Hostile load: idle and slowloris connections held open while legitimate requests run
    /// (`--hostile`).
    #[serde(default)]
    pub hostile: Option<HostileReport>,
}

/// RLIMIT_NOFILE of the harness after it raised it, and what airlockd and nginx were given.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NofileLimits {
    /// Soft limit (`None`: unlimited or unknown).
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
    /// The limit airlockd and nginx were started with (`prlimit --nofile`), if any.
    pub children: Option<u64>,
}

/// One condition of the noisy-neighbour section and what was measured under it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NoisyCondition {
    /// Short name: `quiet`, `hog-proxy-core`, `hogs-both-cores`.
    pub name: String,
    /// What ran besides the benchmark.
    pub description: String,
    /// CPU list of each hog (`any` for an unpinned one).
    pub hog_cpus: Vec<String>,
    /// Closed-loop throughput per scenario.
    pub throughput: Vec<ThroughputRun>,
    /// Open-loop latency per scenario.
    pub latency: Vec<LatencyRun>,
}

/// The hostile-load section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HostileReport {
    /// Open-loop rate of the legitimate requests.
    pub rate: u64,
    /// How long the hostile connections were held (seconds, from when they were all open).
    pub hold_s: f64,
    /// How long opening them all took, seconds.
    pub ramp_s: f64,
    /// Legitimate requests with nothing else open (measured just before).
    pub quiet_latency: Vec<LatencyRun>,
    /// The same while the hostile connections were open.
    pub hostile_latency: Vec<LatencyRun>,
    /// airlockd before the hostile connections were opened.
    pub agent_before: AgentSample,
    /// airlockd at its largest while they were open (RSS and fds are maxima over samples).
    pub agent_during: AgentSample,
    /// airlockd a few seconds after they were closed.
    pub agent_after: AgentSample,
    /// airlockd CPU while only the hostile connections were open (before the legitimate runs), % of
    /// one core.
    pub agent_idle_hostile_cpu_pct: f64,
    /// What each kind of hostile connection saw.
    pub kinds: Vec<HostileKindOutcome>,
}

/// airlockd's process facts at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct AgentSample {
    /// VmRSS, kB.
    pub rss_kb: u64,
    /// VmHWM, kB.
    pub hwm_kb: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// One kind of hostile connection and how the agent treated it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HostileKindOutcome {
    /// Kind (`silent`, `connect-then-silent`, `partial-head`, `slowloris-head`, `slowloris-body`).
    pub kind: String,
    /// What such a connection does.
    pub description: String,
    /// How many are kept open at once.
    pub target_open: u64,
    /// Connections opened in total (first opening plus reopenings).
    pub opened: u64,
    /// Connections the agent closed (EOF or reset while we held them).
    pub closed_by_agent: u64,
    /// Connection attempts that failed (refused, timed out).
    pub connect_failures: u64,
    /// How long connections lived before the agent closed them: median and maximum, seconds.
    pub lifetime_p50_s: Option<f64>,
    /// Longest lifetime before a close, seconds.
    pub lifetime_max_s: Option<f64>,
    /// Shortest lifetime before a close, seconds.
    pub lifetime_min_s: Option<f64>,
    /// Still open when the hold ended.
    pub open_at_end: u64,
    /// First error seen, if any.
    pub first_error: Option<String>,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Machine {
    /// Logical CPUs in /proc/cpuinfo.
    pub nproc: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub mem_total_mib: u64,
    /// Clock ticks per second used for CPU accounting.
    pub clk_tck: u64,
    /// airlockd version line.
    pub agent_version: String,
    /// mitmproxy version line, if used.
    pub mitmproxy_version: Option<String>,
    /// `nginx -v`, if used.
    #[serde(default)]
    pub nginx_version: Option<String>,
    /// Source tree measured: `git describe`-style commit, and whether agent/ or the mock had
    /// uncommitted changes.
    #[serde(default)]
    pub source: String,
}

/// Method and parameters.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Method {
    /// The command that produced this.
    pub command: String,
    /// Warm-up per measurement, seconds.
    pub warmup_s: f64,
    /// Measured duration per measurement, seconds.
    pub duration_s: f64,
    /// Open-loop rates, requests per second.
    pub rates: Vec<u64>,
    /// Keep-alive connections in the open-loop pool.
    pub open_connections: usize,
    /// Connections in the closed-loop throughput runs.
    pub closed_connections: usize,
    /// Request body.
    pub body: String,
    /// airlockd worker threads.
    pub agent_threads: usize,
    /// Mock worker threads.
    pub mock_workers: usize,
    /// Stream: per-chunk delay, words, repetitions.
    pub stream_delay_ms: u32,
    /// Stream words.
    pub stream_words: u32,
    /// Stream repetitions measured.
    pub stream_reps: usize,
    /// Cold connections measured.
    pub cold_reps: usize,
    /// Per-request timeout, seconds.
    pub request_timeout_s: f64,
    /// Free-text notes.
    pub notes: Vec<String>,
}

/// Where a process was allowed to run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Pinning {
    /// Process.
    pub process: String,
    /// `Cpus_allowed_list`.
    pub cpus: String,
    /// Threads at the end of the run.
    pub threads: u64,
}

/// Quietness of the machine.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Quiet {
    /// /proc/loadavg before the run.
    pub loadavg_before: String,
    /// /proc/loadavg after the run.
    pub loadavg_after: String,
    /// Busy processes (cargo, rustc, …) seen before the run.
    pub busy_processes_before: Vec<String>,
    /// Busy processes seen after the run.
    pub busy_processes_after: Vec<String>,
    /// CPU used by processes other than the harness and its children over the whole run, in % of
    /// one core.
    pub foreign_cpu_pct: f64,
}

/// A scenario's pre-flight check.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Verification {
    /// Scenario.
    pub target: String,
    /// Passed.
    pub ok: bool,
    /// What was checked or what failed.
    pub detail: String,
}

/// CPU used during a measured window.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CpuUse {
    /// Window length, seconds.
    pub window_s: f64,
    /// Proxy process CPU, % of one core (none for direct).
    pub proxy_pct: Option<f64>,
    /// Proxy CPU time per successful request, µs.
    pub proxy_us_per_req: Option<f64>,
    /// Mock CPU, % of one core.
    pub mock_pct: f64,
    /// Mock CPU time per successful request, µs (a yardstick: one TLS server doing the provider's
    /// side of the same exchange).
    #[serde(default)]
    pub mock_us_per_req: Option<f64>,
    /// Harness (load generator) CPU, % of one core.
    pub harness_pct: f64,
    /// Everything else on the machine, % of one core (the harness's own CPU hogs excluded).
    pub foreign_pct: f64,
    /// The harness's CPU hogs (noisy-neighbour section), % of one core in total.
    #[serde(default)]
    pub hog_pct: f64,
    /// How busy each CPU was (user + system + steal, all processes, ours included), %.
    #[serde(default)]
    pub per_cpu_busy_pct: Vec<f64>,
    /// Voluntary context switches of the proxy (all threads) per successful request.
    #[serde(default)]
    pub proxy_vcsw_per_req: Option<f64>,
    /// Involuntary context switches (preemptions) of the proxy per successful request.
    #[serde(default)]
    pub proxy_ivcsw_per_req: Option<f64>,
}

/// One open-loop run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LatencyRun {
    /// Scenario.
    pub target: String,
    /// Requests per second scheduled.
    pub rate: u64,
    /// Is this the repeat of the direct baseline (noise check)?
    pub repeat: bool,
    /// Measured requests scheduled.
    pub scheduled: u64,
    /// Successful.
    pub ok: u64,
    /// Failed.
    pub errors: u64,
    /// Never sent (overload past the hard limit).
    pub not_sent: u64,
    /// Latency from due time, successful requests.
    pub latency: Summary,
    /// Pacer hand-out lag p99, µs (generator health).
    pub pacer_lag_p99_us: f64,
    /// CPU during the window.
    pub cpu: CpuUse,
    /// Added latency vs the direct run at the same rate (p50, p99, p99.9), µs.
    pub added: Option<Added>,
    /// First error seen.
    pub first_error: Option<String>,
    /// Attempts made (more than one when other processes disturbed a run).
    #[serde(default)]
    pub attempts: u32,
}

/// Added latency at matching percentiles.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct Added {
    /// p50 difference, µs.
    pub p50_us: f64,
    /// p99 difference, µs.
    pub p99_us: f64,
    /// p99.9 difference, µs.
    pub p999_us: f64,
}

/// One closed-loop run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ThroughputRun {
    /// Scenario.
    pub target: String,
    /// Connections.
    pub connections: usize,
    /// Successful requests per second.
    pub rps: f64,
    /// Successful.
    pub ok: u64,
    /// Failed.
    pub errors: u64,
    /// Latency (closed loop, for information).
    pub latency: Summary,
    /// CPU during the window.
    pub cpu: CpuUse,
    /// Proxy memory in the middle of the window.
    pub proxy_memory_kb: Option<u64>,
    /// First error seen.
    pub first_error: Option<String>,
    /// Attempts made (more than one when other processes disturbed a run).
    #[serde(default)]
    pub attempts: u32,
}

/// Paced stream timings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StreamRun {
    /// Scenario.
    pub target: String,
    /// Successful streams measured.
    pub ok: usize,
    /// Failed.
    pub errors: usize,
    /// SSE events per stream (from the last stream).
    pub events: usize,
    /// Request → response headers.
    pub headers: Summary,
    /// Request → first body chunk.
    pub first_chunk: Summary,
    /// Request → end of stream.
    pub total: Summary,
    /// Added time to first chunk vs direct (p50), µs.
    pub added_first_chunk_p50_us: Option<f64>,
    /// Added total time vs direct (p50), µs.
    pub added_total_p50_us: Option<f64>,
    /// Added total divided by the number of events, µs.
    pub added_per_event_us: Option<f64>,
    /// Added total time vs the direct stream that asks for usage (p50), µs: like for like with
    /// airlockd, which asks upstream for the usage chunk and hides it from the client.
    #[serde(default)]
    pub added_total_vs_usage_p50_us: Option<f64>,
    /// That, divided by the number of events the client saw, µs.
    #[serde(default)]
    pub added_per_event_vs_usage_us: Option<f64>,
    /// First error seen.
    pub first_error: Option<String>,
}

/// New connection + first request.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ColdRun {
    /// Scenario.
    pub target: String,
    /// Successful.
    pub ok: u64,
    /// Failed.
    pub errors: u64,
    /// Latency of connect (+CONNECT) + TLS + one request.
    pub latency: Summary,
    /// Added p50 vs direct, µs.
    pub added_p50_us: Option<f64>,
    /// First error seen.
    pub first_error: Option<String>,
}

/// Memory of a proxy.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MemoryReport {
    /// Process.
    pub process: String,
    /// VmRSS 1 s after start, before any request, kB.
    pub idle_rss_kb: u64,
    /// VmRSS after the verification requests (CA leaf issued, pools warm), kB.
    pub warm_rss_kb: u64,
    /// VmRSS in the middle of its throughput run, kB.
    pub load_rss_kb: u64,
    /// VmHWM at the end of the run, kB.
    pub peak_hwm_kb: u64,
}

/// One of the project's targets.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TargetCheck {
    /// What.
    pub name: String,
    /// The target.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met?
    pub met: bool,
}
