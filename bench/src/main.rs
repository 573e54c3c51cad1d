//! `airlock-bench`: Airlock's benchmark harness. `airlock-bench run` starts the mock provider,
//! airlockd, nginx (the floor: a plain TLS-terminating reverse proxy) and mitmproxy on loopback,
//! pinned to their cores, measures added latency (open loop), maximum throughput (closed loop), CPU
//! per request, memory, stream and cold-connection timings against a direct baseline from the same
//! run, and on request the same under CPU hogs (`--noisy`) and under idle and slowloris connections
//! (`--hostile`); it writes the JSON results and prints markdown tables. `airlock-bench report`
//! re-renders a saved result file; `airlock-bench hog` is the busy loop the noisy-neighbour section
//! starts. `bench/run.sh` is the one command that builds everything and runs it.

mod client;
mod governance;
mod guard;
mod hostile;
mod load;
mod noisy;
mod policy;
mod procs;
mod report;
mod results;
mod schedule;
mod setup;
mod stats;
mod suite;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Airlock benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "airlock-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole suite.
    Run(Box<RunArgs>),
    /// Print the markdown tables of a saved result file.
    Report {
        /// Result file written by `run`.
        #[arg(default_value = "bench/results/latest.json")]
        file: PathBuf,
    },
    /// What signed policy costs: bundle verify + compile, and live swaps under load.
    Policy(policy::PolicyArgs),
    /// What governing costs: journal commits per second, begin latency, admission + settle.
    Governance(governance::GovernanceArgs),
    /// What guardrails cost: scan throughput, a 100 KB prompt, one chat request inspected.
    Guard(guard::GuardArgs),
    /// A CPU hog: one thread in a busy loop (the noisy-neighbour section starts these). Exits after
    /// `--secs`, or as soon as its parent is gone.
    #[command(hide = true)]
    Hog {
        /// Longest time to run, seconds.
        #[arg(long, default_value_t = 900)]
        secs: u64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Directory holding the release binaries airlockd and airlock-mock.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where to write the JSON results (a .md with the tables is written beside it).
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
    /// mitmdump executable.
    #[arg(long, default_value = "mitmdump")]
    mitmdump: PathBuf,
    /// Skip mitmproxy.
    #[arg(long)]
    no_mitmproxy: bool,
    /// nginx executable (Debian's package: `apt-get install nginx`).
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// Skip the nginx floor.
    #[arg(long)]
    no_nginx: bool,
    /// RLIMIT_NOFILE for airlockd and nginx (set with `prlimit` when they start); 0 leaves them the
    /// harness's own (raised) limit.
    #[arg(long, default_value_t = 65_536)]
    child_nofile: u64,
    /// Skip the standard tables (latency, stream, cold, throughput); use with --noisy or --hostile.
    #[arg(long)]
    skip_main: bool,
    /// Noisy neighbour: throughput and open-loop latency of airlock-mitm, airlock-base-url, nginx
    /// (and direct, for reference) quiet, with a busy loop on the proxy core, and with busy loops on
    /// both cores plus one unpinned.
    #[arg(long)]
    noisy: bool,
    /// Open-loop rate of the noisy-neighbour latency runs.
    #[arg(long, default_value_t = 1000)]
    noisy_rate: u64,
    /// Noisy-neighbour conditions to run (quiet, hog-proxy-core, two-hogs-proxy-core,
    /// hogs-both-cores); all by default. Ratios need `quiet` among them.
    #[arg(long, value_delimiter = ',')]
    noisy_conditions: Vec<String>,
    /// Hostile load: idle, half-open and slowloris connections held open against airlockd while
    /// legitimate MITM and base-URL requests run at --hostile-rate.
    #[arg(long)]
    hostile: bool,
    /// Idle connections of the hostile load (half silent, a quarter CONNECT then silent, a quarter
    /// a partial request head).
    #[arg(long, default_value_t = 5000)]
    hostile_idle: usize,
    /// Slowloris connections trickling one header byte a second.
    #[arg(long, default_value_t = 300)]
    hostile_slow_head: usize,
    /// Slowloris connections trickling one request-body byte a second.
    #[arg(long, default_value_t = 10)]
    hostile_slow_body: usize,
    /// Open-loop rate of the legitimate requests during the hostile load.
    #[arg(long, default_value_t = 200)]
    hostile_rate: u64,
    /// Shortest time the hostile connections stay open, seconds (long enough to see the agent's
    /// header and handshake timeouts act; the legitimate runs may make it longer).
    #[arg(long, default_value_t = 30)]
    hostile_hold: u64,
    /// Short smoke run (0.5 s warm-up, 2 s per measurement, few streams).
    #[arg(long)]
    quick: bool,
    /// Warm-up per measurement, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured time per measurement, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Open-loop rates, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    rates: Vec<u64>,
    /// Keep-alive connections in the open-loop pool.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Connections in the closed-loop throughput runs.
    #[arg(long, default_value_t = 64)]
    closed_connections: usize,
    /// airlockd worker threads.
    #[arg(long, default_value_t = 1)]
    agent_threads: usize,
    /// Mock worker threads.
    #[arg(long, default_value_t = 1)]
    mock_workers: usize,
    /// CPUs for airlockd and mitmdump (taskset list).
    #[arg(long, default_value = "0")]
    proxy_cpus: String,
    /// CPUs for this load generator and the mock (taskset list).
    #[arg(long, default_value = "1")]
    load_cpus: String,
    /// Do not pin anything.
    #[arg(long)]
    no_pin: bool,
    /// Stream: milliseconds between chunks.
    #[arg(long, default_value_t = 20)]
    stream_delay_ms: u32,
    /// Stream: words in the answer.
    #[arg(long, default_value_t = 10)]
    stream_words: u32,
    /// Streams measured per scenario.
    #[arg(long, default_value_t = 30)]
    stream_reps: usize,
    /// Cold connections measured per scenario.
    #[arg(long, default_value_t = 200)]
    cold_reps: usize,
    /// Keep the scratch directory (logs, policy, CAs) for inspection.
    #[arg(long)]
    keep_tmp: bool,
    /// Record `perf record -e cpu-clock --call-graph dwarf` profiles of airlockd during the MITM
    /// runs into this directory (perturbs the load core; not for the published run).
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Run this shell command during every measured window (after warm-up), e.g.
    /// `perf stat -e context-switches,cpu-migrations -p {pids} -- sleep {secs}` or
    /// `strace -f -c -p {pid} -o /tmp/{label}.txt & sleep {secs}; kill %1`; `{label}`, `{pid}`,
    /// `{pids}` and `{secs}` are substituted. Its output goes to the scratch directory (--keep-tmp).
    #[arg(long)]
    probe: Option<String>,
    /// Start each measurement once other processes use less than this much of a core (%), and redo
    /// it if they used more during it; 0 disables.
    #[arg(long, default_value_t = 10.0)]
    quiet_below: f64,
    /// Longest wait for quiet before each measurement, seconds.
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,
    /// How often a disturbed measurement is redone.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Only these scenarios besides the direct baseline (airlock-mitm, airlock-base-url,
    /// airlock-tunnel, nginx, mitmproxy).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run the agent with a realistic enterprise policy on top of the routing (50 model rules, 10
    /// budgets, 5 rate limits, none of them refusing), as `airlock-bench governance` measures it.
    #[arg(long)]
    enterprise: bool,
    /// Run the agent with guardrails off (`[guardrails] enabled = false`), to measure what they add.
    #[arg(long)]
    no_guardrails: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let results: results::Results = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a result file", file.display()))?;
            print!("{}", report::markdown(&results));
            Ok(())
        }
        Cmd::Run(args) => run(*args),
        Cmd::Policy(args) => policy::run(args),
        Cmd::Governance(args) => governance::run(args),
        Cmd::Guard(args) => guard::run(args),
        Cmd::Hog { secs } => {
            noisy::hog(Duration::from_secs(secs));
            Ok(())
        }
    }
}

fn run(a: RunArgs) -> Result<()> {
    if !a.no_pin {
        // Pin this process (all threads so far: just this one; later threads inherit) to the load CPUs
        // before the runtime starts; the mock inherits it, the proxies get their own list.
        let pid = std::process::id().to_string();
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &a.load_cpus, &pid])
            .stdout(Stdio::null())
            .status()
            .context("cannot run taskset (util-linux); use --no-pin to run unpinned")?;
        if !status.success() {
            bail!("taskset could not pin the harness to CPU {}", a.load_cpus);
        }
    }
    for o in &a.only {
        if ![
            results::AIRLOCK_MITM,
            results::AIRLOCK_BASE,
            results::AIRLOCK_TUNNEL,
            results::NGINX,
            results::MITMPROXY,
        ]
        .contains(&o.as_str())
        {
            bail!(
                "--only {o}: known scenarios are airlock-mitm, airlock-base-url, airlock-tunnel, nginx, mitmproxy"
            );
        }
    }
    for c in &a.noisy_conditions {
        if ![
            "quiet",
            "hog-proxy-core",
            "two-hogs-proxy-core",
            "hogs-both-cores",
        ]
        .contains(&c.as_str())
        {
            bail!("--noisy-conditions {c}: known conditions are quiet, hog-proxy-core, two-hogs-proxy-core, hogs-both-cores");
        }
    }
    if a.skip_main && !a.noisy && !a.hostile {
        bail!("--skip-main leaves nothing to measure; add --noisy and/or --hostile");
    }
    // Many connections (the hostile load holds thousands): soft limit up to the hard one, and both
    // to what the children get when allowed.
    let hostile_fds = (a.hostile_idle + a.hostile_slow_head + a.hostile_slow_body) as u64 + 1024;
    let (soft, hard) = procs::raise_nofile(a.child_nofile.max(hostile_fds));
    eprintln!(
        "RLIMIT_NOFILE of the harness: soft {}, hard {}",
        soft.map_or_else(|| "unlimited".into(), |v| v.to_string()),
        hard.map_or_else(|| "unlimited".into(), |v| v.to_string())
    );
    if a.hostile && soft.is_some_and(|s| s < hostile_fds) {
        bail!(
            "the hostile load needs about {hostile_fds} file descriptors but RLIMIT_NOFILE is only {} (hard {}); \
             raise the hard limit (ulimit -Hn, or run as root) or lower --hostile-idle",
            soft.unwrap_or(0),
            hard.map_or_else(|| "unlimited".into(), |v| v.to_string())
        );
    }
    let skip_mitm = a.no_mitmproxy
        || (!a.only.is_empty() && !a.only.iter().any(|o| o == results::MITMPROXY))
        || (a.skip_main && a.only.is_empty());
    let want_nginx =
        !a.no_nginx && (a.only.is_empty() || a.only.iter().any(|o| o == results::NGINX) || a.noisy);
    let nginx = if want_nginx {
        Some(resolve(&a.nginx).with_context(|| {
            format!(
                "{} not found: install Debian's nginx (apt-get install nginx) or pass --no-nginx",
                a.nginx.display()
            )
        })?)
    } else {
        None
    };
    let mitmdump = if skip_mitm {
        None
    } else {
        Some(resolve(&a.mitmdump).with_context(|| {
            format!(
                "{} not found: install mitmproxy (pip install mitmproxy) or pass --no-mitmproxy",
                a.mitmdump.display()
            )
        })?)
    };
    let (warmup, duration, stream_reps, cold_reps) = if a.quick {
        (0.5, 2.0, 5, 30)
    } else {
        (a.warmup, a.duration, a.stream_reps, a.cold_reps)
    };
    let tmp = std::env::temp_dir().join(format!("airlock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let _cleanup = TmpDir {
        path: tmp.clone(),
        keep: a.keep_tmp,
    };
    let (proxy_cpus, load_cpus) = if a.no_pin {
        (None, None)
    } else {
        (Some(a.proxy_cpus.clone()), Some(a.load_cpus.clone()))
    };
    let cfg = suite::Config {
        command: std::env::var("AIRLOCK_BENCH_COMMAND")
            .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
        bin_dir: a.bin_dir.clone(),
        mitmdump,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(duration),
        rates: a.rates.clone(),
        open_connections: a.connections.max(1),
        closed_connections: a.closed_connections.max(1),
        agent_threads: a.agent_threads.max(1),
        mock_workers: a.mock_workers.max(1),
        proxy_cpus,
        load_cpus,
        stream_delay_ms: a.stream_delay_ms,
        stream_words: a.stream_words,
        stream_reps,
        cold_reps,
        request_timeout: Duration::from_secs(10),
        quick: a.quick,
        tmp: tmp.clone(),
        perf_dir: a.perf_dir.clone(),
        probe: a.probe.clone(),
        only: a.only.clone(),
        enterprise: a.enterprise,
        guardrails: !a.no_guardrails,
        quiet_below_pct: if a.quick { 0.0 } else { a.quiet_below.max(0.0) },
        quiet_wait: Duration::from_secs(a.quiet_wait),
        retries: if a.quick { 0 } else { a.retries },
        nginx,
        // Never more than the harness's own hard limit: prlimit may not raise it unless root.
        child_nofile: (a.child_nofile > 0)
            .then(|| hard.map_or(a.child_nofile, |h| h.min(a.child_nofile))),
        skip_main: a.skip_main,
        noisy: a.noisy,
        noisy_rate: a.noisy_rate.max(1),
        noisy_conditions: a.noisy_conditions.clone(),
        self_exe: std::env::current_exe()
            .context("cannot find this executable (for the CPU hogs)")?,
        hostile: a.hostile,
        hostile_plan: hostile::Plan {
            idle: a.hostile_idle,
            slow_head: a.hostile_slow_head,
            slow_body: a.hostile_slow_body,
            rate: a.hostile_rate.max(1),
            hold: Duration::from_secs(a.hostile_hold),
        },
        nofile: (soft, hard),
    };
    // One thread: the load generator shares its core with the mock, and a single scheduler avoids
    // cross-thread wake-ups in the measurement.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let results = rt.block_on(async {
        tokio::select! {
            r = suite::run(cfg) => r,
            _ = interrupted() => bail!("interrupted; child processes stopped"),
        }
    })?;
    let json = serde_json::to_string_pretty(&results)?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, json + "\n")
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let md = report::markdown(&results);
    let md_path = a.out.with_extension("md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    print!("{md}");
    eprintln!("\nresults: {} and {}", a.out.display(), md_path.display());
    if a.keep_tmp {
        eprintln!("scratch directory kept: {}", tmp.display());
    }
    Ok(())
}

/// Resolves a program name on PATH (or checks a path).
fn resolve(p: &std::path::Path) -> Result<PathBuf> {
    if p.components().count() > 1 {
        if p.exists() {
            return Ok(p.to_path_buf());
        }
        bail!("{} does not exist", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join(p);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("{} is not on PATH", p.display())
}

/// Removes the scratch directory on drop unless asked to keep it.
struct TmpDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
