//! The hostile-load section: what legitimate requests see while thousands of connections sit idle
//! against airlockd and a slowloris client trickles bytes at it. On its own OS thread (its own
//! current-thread runtime, so the load generator's runtime stays clean) it holds open, and reopens
//! whenever the agent closes them:
//!
//! - `silent`: connect, send nothing;
//! - `connect-then-silent`: `CONNECT api.openai.com:443`, read the 200, then send no ClientHello;
//! - `partial-head`: a request line and one header of a base-URL request, never the blank line;
//! - `slowloris-head`: a request head trickled one header byte a second, never finished;
//! - `slowloris-body`: a complete head declaring a 1 MiB JSON body, then one body byte a second.
//!
//! It counts how many of each the agent closed and after how long. Meanwhile the suite measures
//! the open-loop latency of legitimate MITM and base-URL requests and samples the agent's VmRSS,
//! VmHWM, open file descriptors and threads; the same latency is measured just before, with nothing
//! else open. Every connection goes to airlockd on 127.0.0.1; the whole load is bounded by the hold
//! time and stops by itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::client::{Target, PROVIDER_HOST};
use crate::procs;
use crate::results::{AgentSample, HostileKindOutcome, HostileReport, AIRLOCK_BASE, AIRLOCK_MITM};
use crate::suite::{cpu_use, measure_latency, print_latency, snap, Config, Pids, Proxy, System};

/// Sizes and timing of the hostile load.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Idle connections: half silent, a quarter CONNECT then silent, a quarter partial head.
    pub idle: usize,
    /// Slowloris connections trickling a header byte a second.
    pub slow_head: usize,
    /// Slowloris connections trickling a body byte a second.
    pub slow_body: usize,
    /// Open-loop rate of the legitimate requests.
    pub rate: u64,
    /// Shortest hold.
    pub hold: Duration,
}

/// Kinds of hostile connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Silent,
    ConnectSilent,
    PartialHead,
    SlowHead,
    SlowBody,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Silent,
        Kind::ConnectSilent,
        Kind::PartialHead,
        Kind::SlowHead,
        Kind::SlowBody,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Silent => "silent",
            Kind::ConnectSilent => "connect-then-silent",
            Kind::PartialHead => "partial-head",
            Kind::SlowHead => "slowloris-head",
            Kind::SlowBody => "slowloris-body",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::Silent => "TCP connection, nothing sent",
            Kind::ConnectSilent => {
                "CONNECT api.openai.com:443 (intercepted), 200 read, then no ClientHello"
            }
            Kind::PartialHead => "base-URL request line and one header, never the blank line",
            Kind::SlowHead => "base-URL request head trickled one header byte a second",
            Kind::SlowBody => {
                "complete base-URL head with Content-Length 1 MiB, then one body byte a second"
            }
        }
    }

    fn count(self, plan: &Plan) -> usize {
        let quarter = plan.idle / 4;
        match self {
            Kind::Silent => plan.idle - 2 * quarter,
            Kind::ConnectSilent | Kind::PartialHead => quarter,
            Kind::SlowHead => plan.slow_head,
            Kind::SlowBody => plan.slow_body,
        }
    }
}

/// Counters of one kind, shared between the load thread and the suite.
#[derive(Default)]
struct KindStats {
    opened: AtomicU64,
    open_now: AtomicU64,
    closed_by_agent: AtomicU64,
    connect_failures: AtomicU64,
    lifetimes_s: Mutex<Vec<f64>>,
    first_error: Mutex<Option<String>>,
}

impl KindStats {
    fn note_error(&self, e: String) {
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

/// The running load: its thread, stop flag and counters.
struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<Vec<(Kind, usize, KindStats)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Connections open now, over all kinds.
    fn open_now(&self) -> u64 {
        self.stats
            .iter()
            .map(|(_, _, s)| s.open_now.load(Ordering::Relaxed))
            .sum()
    }

    fn target(&self) -> u64 {
        self.stats.iter().map(|(_, n, _)| *n as u64).sum()
    }

    /// Stops every connection task and waits for the thread (bounded).
    fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow!("hostile load thread panicked"))?;
        }
        Ok(())
    }

    fn outcomes(&self) -> Vec<HostileKindOutcome> {
        self.stats
            .iter()
            .map(|(k, n, s)| {
                let mut life = s.lifetimes_s.lock().map(|l| l.clone()).unwrap_or_default();
                life.sort_by(f64::total_cmp);
                HostileKindOutcome {
                    kind: k.name().into(),
                    description: k.description().into(),
                    target_open: *n as u64,
                    opened: s.opened.load(Ordering::Relaxed),
                    closed_by_agent: s.closed_by_agent.load(Ordering::Relaxed),
                    connect_failures: s.connect_failures.load(Ordering::Relaxed),
                    lifetime_p50_s: life.get(life.len() / 2).copied(),
                    lifetime_max_s: life.last().copied(),
                    lifetime_min_s: life.first().copied(),
                    open_at_end: s.open_now.load(Ordering::Relaxed),
                    first_error: s.first_error.lock().ok().and_then(|e| e.clone()),
                }
            })
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Longest a hostile connection task waits for its next event before re-checking the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// Starts the load thread against `addr`, which must be loopback. `deadline` bounds it even if the
/// suite never stops it.
fn start_load(addr: SocketAddr, plan: &Plan, deadline: Instant) -> Result<Load> {
    if !addr.ip().is_loopback() {
        bail!("refusing hostile load against non-loopback {addr}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stats: Arc<Vec<(Kind, usize, KindStats)>> = Arc::new(
        Kind::ALL
            .iter()
            .map(|&k| (k, k.count(plan), KindStats::default()))
            .collect(),
    );
    let (st, sp) = (stats.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("bench-hostile".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    if let Some((_, _, s)) = st.first() {
                        s.note_error(format!("cannot start the hostile runtime: {e}"));
                    }
                    return;
                }
            };
            rt.block_on(async move {
                // Few connects in flight at once, so the agent's accept backlog never overflows and
                // the ramp measures the agent, not SYN retransmits.
                let gate = Arc::new(Semaphore::new(64));
                let mut tasks = Vec::new();
                for (ki, (kind, n, _)) in st.iter().enumerate() {
                    for i in 0..*n {
                        let (st, sp, gate) = (st.clone(), sp.clone(), gate.clone());
                        let kind = *kind;
                        // Spread the trickling writers' phase over the second.
                        let phase = Duration::from_millis((i as u64 * 1000) / (*n as u64).max(1));
                        tasks.push(tokio::spawn(async move {
                            conn_loop(addr, kind, &st[ki].2, &sp, &gate, phase, deadline).await;
                        }));
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
        .context("cannot start the hostile load thread")?;
    Ok(Load {
        stop,
        stats,
        thread: Some(thread),
    })
}

fn stopped(stop: &AtomicBool, deadline: Instant) -> bool {
    stop.load(Ordering::Relaxed) || Instant::now() >= deadline
}

/// Keeps one connection of `kind` open until stopped, reopening it whenever the agent closes it.
async fn conn_loop(
    addr: SocketAddr,
    kind: Kind,
    stats: &KindStats,
    stop: &AtomicBool,
    gate: &Semaphore,
    phase: Duration,
    deadline: Instant,
) {
    while !stopped(stop, deadline) {
        let tcp = {
            let Ok(_permit) = gate.acquire().await else {
                return;
            };
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        };
        let mut tcp = match tcp {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                stats.note_error(format!("connect: {e}"));
                tokio::time::sleep(TICK).await;
                continue;
            }
            Err(_) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                stats.note_error("connect timed out after 5 s".into());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        stats.opened.fetch_add(1, Ordering::Relaxed);
        stats.open_now.fetch_add(1, Ordering::Relaxed);
        let born = Instant::now();
        let closed = hold(&mut tcp, addr, kind, stop, phase, deadline).await;
        stats.open_now.fetch_sub(1, Ordering::Relaxed);
        match closed {
            Ok(true) => {
                stats.closed_by_agent.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = stats.lifetimes_s.lock() {
                    l.push(born.elapsed().as_secs_f64());
                }
            }
            Ok(false) => return,
            Err(e) => {
                // A reset or write error is the agent closing too.
                stats.closed_by_agent.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = stats.lifetimes_s.lock() {
                    l.push(born.elapsed().as_secs_f64());
                }
                stats.note_error(format!("{e:#}"));
            }
        }
    }
}

/// What a connection of `kind` sends first. Requests name the listener exactly (`Host: 127.0.0.1:PORT`),
/// as real clients do: a foreign Host is refused at once, which would measure nothing.
fn opening(kind: Kind, addr: SocketAddr) -> String {
    let head = format!("POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\n");
    match kind {
        Kind::Silent => String::new(),
        Kind::ConnectSilent => {
            format!("CONNECT {PROVIDER_HOST}:443 HTTP/1.1\r\nHost: {PROVIDER_HOST}:443\r\n\r\n")
        }
        Kind::PartialHead => format!("{head}Content-Type: application/json\r\n"),
        Kind::SlowHead => format!("{head}X-Slowloris: "),
        Kind::SlowBody => format!(
            "{head}Content-Type: application/json\r\nAuthorization: Bearer sk-airlock-bench-not-a-real-key\r\n\
             Content-Length: 1048576\r\n\r\n{{\"model\":\"gpt-4o-mini\",\"messages\":[],\"pad\":\""
        ),
    }
}

/// Holds one open connection: sends the kind's opening, then (for the trickling kinds) a byte a
/// second, and reads whatever the agent sends until it closes. `Ok(true)`: the agent closed it;
/// `Ok(false)`: stopped by us.
async fn hold(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    kind: Kind,
    stop: &AtomicBool,
    phase: Duration,
    deadline: Instant,
) -> Result<bool> {
    let first = opening(kind, addr);
    if !first.is_empty() {
        tcp.write_all(first.as_bytes()).await?;
    }
    let trickle = matches!(kind, Kind::SlowHead | Kind::SlowBody);
    let mut next_byte = tokio::time::Instant::now() + phase + Duration::from_secs(1);
    let mut buf = [0u8; 1024];
    loop {
        if stopped(stop, deadline) {
            return Ok(false);
        }
        let wake = if trickle {
            next_byte.min(tokio::time::Instant::now() + TICK)
        } else {
            tokio::time::Instant::now() + TICK
        };
        tokio::select! {
            r = tcp.read(&mut buf) => {
                match r {
                    Ok(0) => return Ok(true),
                    Ok(_) => continue, // the CONNECT 200 or an error answer: keep reading to the close
                    Err(e) => return Err(e.into()),
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if trickle && tokio::time::Instant::now() >= next_byte {
                    tcp.write_all(b"a").await?;
                    next_byte += Duration::from_secs(1);
                }
            }
        }
    }
}

fn agent_sample(pid: u32) -> AgentSample {
    let m = procs::memory(pid).unwrap_or_default();
    AgentSample {
        rss_kb: m.rss_kb,
        hwm_kb: m.hwm_kb,
        fds: procs::fd_count(pid),
        threads: procs::threads(pid),
    }
}

/// Runs the section.
pub async fn run(
    cfg: &Config,
    targets: &[Arc<Target>],
    sys: &mut System,
    pids: &Pids,
    clk: u64,
) -> Result<HostileReport> {
    let plan = &cfg.hostile_plan;
    let legit: Vec<&Arc<Target>> = [AIRLOCK_MITM, AIRLOCK_BASE]
        .iter()
        .filter_map(|n| targets.iter().find(|t| t.name == *n))
        .collect();
    let mut rep = HostileReport {
        rate: plan.rate,
        ..HostileReport::default()
    };
    eprintln!(
        "hostile load: {} idle + {} slowloris-head + {} slowloris-body connections, legitimate requests at {}/s",
        plan.idle, plan.slow_head, plan.slow_body, plan.rate
    );
    for t in &legit {
        sys.check_alive()?;
        let r = measure_latency(cfg, t, plan.rate, false, pids, clk).await?;
        print_latency(&r, " [quiet]");
        rep.quiet_latency.push(r);
    }
    rep.agent_before = agent_sample(pids.agent);

    let legit_time = (cfg.warmup + cfg.duration).mul_f64(1.5) + Duration::from_secs(2);
    let bound = Instant::now()
        + Duration::from_secs(120)
        + plan.hold
        + legit_time * (legit.len() as u32 + 1);
    let mut load = start_load(sys.agent.addr, plan, bound)?;
    let ramp_start = Instant::now();
    let target = load.target();
    let mut peak = rep.agent_before;
    let sample = |peak: &mut AgentSample| {
        let s = agent_sample(pids.agent);
        peak.rss_kb = peak.rss_kb.max(s.rss_kb);
        peak.hwm_kb = peak.hwm_kb.max(s.hwm_kb);
        peak.fds = peak.fds.max(s.fds);
        peak.threads = peak.threads.max(s.threads);
    };
    // Ramp: wait until every connection is open (or a minute has passed).
    while load.open_now() < target && ramp_start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sample(&mut peak);
        sys.check_alive()?;
    }
    rep.ramp_s = ramp_start.elapsed().as_secs_f64();
    let held_from = Instant::now();
    eprintln!(
        "  {} of {target} hostile connections open after {:.1} s; agent RSS {} kB, {} fds",
        load.open_now(),
        rep.ramp_s,
        peak.rss_kb,
        peak.fds
    );
    // What the open connections alone cost the agent.
    let a = snap(pids);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sample(&mut peak);
    }
    let b = snap(pids);
    rep.agent_idle_hostile_cpu_pct = cpu_use(&a, &b, Proxy::Agent, 0, clk)
        .proxy_pct
        .unwrap_or(0.0);

    // Legitimate requests, with a sampler running beside them.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (on, pid) = (sampling.clone(), pids.agent);
        tokio::spawn(async move {
            let mut peak = AgentSample::default();
            while on.load(Ordering::Relaxed) {
                let s = agent_sample(pid);
                peak.rss_kb = peak.rss_kb.max(s.rss_kb);
                peak.hwm_kb = peak.hwm_kb.max(s.hwm_kb);
                peak.fds = peak.fds.max(s.fds);
                peak.threads = peak.threads.max(s.threads);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };
    let mut result = Ok(());
    for t in &legit {
        if let Err(e) = sys.check_alive() {
            result = Err(e);
            break;
        }
        match measure_latency(cfg, t, plan.rate, false, pids, clk).await {
            Ok(r) => {
                print_latency(&r, " [hostile]");
                rep.hostile_latency.push(r);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // Hold at least as long as asked, so the agent's timeouts have time to act.
    while result.is_ok() && held_from.elapsed() < plan.hold {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sample(&mut peak);
        if let Err(e) = sys.check_alive() {
            result = Err(e);
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let s = sampler
        .await
        .map_err(|e| anyhow!("sampler task failed: {e}"))?;
    peak.rss_kb = peak.rss_kb.max(s.rss_kb);
    peak.hwm_kb = peak.hwm_kb.max(s.hwm_kb);
    peak.fds = peak.fds.max(s.fds);
    peak.threads = peak.threads.max(s.threads);
    rep.hold_s = held_from.elapsed().as_secs_f64();
    rep.kinds = load.outcomes();
    load.stop()?;
    result?;
    rep.agent_during = peak;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rep.agent_after = agent_sample(pids.agent);
    for k in &rep.kinds {
        eprintln!(
            "  {:<20} open {:>5}  opened {:>5}  closed by agent {:>5}  connect failures {:>4}  lifetime p50 {}  open at end {}",
            k.kind,
            k.target_open,
            k.opened,
            k.closed_by_agent,
            k.connect_failures,
            k.lifetime_p50_s.map_or_else(|| "-".into(), |v| format!("{v:.1} s")),
            k.open_at_end
        );
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_idle_connections() {
        let plan = Plan {
            idle: 5001,
            slow_head: 300,
            slow_body: 10,
            rate: 200,
            hold: Duration::from_secs(1),
        };
        let total: usize = Kind::ALL.iter().map(|k| k.count(&plan)).sum();
        assert_eq!(total, 5311);
        assert_eq!(Kind::ConnectSilent.count(&plan), 1250);
        assert_eq!(Kind::Silent.count(&plan), 2501);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_closed_by_the_server_are_counted_and_reopened() {
        // A server that reads the opening bytes and closes each connection after 100 ms.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut b = [0u8; 256];
                    let _ = tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                });
            }
        });
        let plan = Plan {
            idle: 8,
            slow_head: 2,
            slow_body: 1,
            rate: 1,
            hold: Duration::ZERO,
        };
        let mut load = start_load(addr, &plan, Instant::now() + Duration::from_secs(10)).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        load.stop().unwrap();
        server.abort();
        let out = load.outcomes();
        assert_eq!(out.len(), 5);
        for k in &out {
            assert!(k.closed_by_agent >= 1, "{k:?}");
            assert!(k.opened > k.target_open, "{k:?}");
            let p50 = k.lifetime_p50_s.unwrap();
            assert!((0.05..1.0).contains(&p50), "{k:?}");
        }
    }
}
