//! `airlock-bench policy`: what signed policy costs. Verifying and compiling a bundle of a given size
//! (a policy padded with price entries to ~100 KB by default), and swapping a policy into a running
//! agent every 100 ms while clients keep requests and streams going against the mock — the swap's
//! own time and the clients' latency percentiles before and during the swaps. Everything runs
//! in-process on loopback; it prints a markdown table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::pct_of;
use airlock_agent::agent::{self, AgentConfig};
use airlock_agent::bundle::{self, BuildOptions, SigningKey, TrustState};
use airlock_agent::fleet::AGENT_VERSION;
use airlock_agent::paths::StateDir;
use airlock_agent::policy::{Policy, PolicySource, DEFAULT_POLICY_TOML};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Options of the policy benchmark.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Size of the policy to verify, KiB.
    #[arg(long, default_value_t = 100)]
    size_kib: usize,
    /// Verifications to time.
    #[arg(long, default_value_t = 200)]
    verifications: usize,
    /// Seconds of swapping under load.
    #[arg(long, default_value_t = 10)]
    swap_secs: u64,
}

fn padded_policy(size: usize, extra: &str) -> String {
    let mut text = format!("{DEFAULT_POLICY_TOML}\n{extra}\n");
    let mut i = 0;
    while text.len() < size {
        text.push_str(&format!(
            "\n[prices.\"bench/model-{i:05}\"]\ninput = {}.25\noutput = {}.5\ncache_read = 0.125\n",
            i % 50,
            i % 70
        ));
        i += 1;
    }
    text
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Runs the benchmark and prints its table.
pub fn run(args: PolicyArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: PolicyArgs) -> Result<()> {
    // 1. verify + compile.
    let key = SigningKey::generate()?;
    let text = padded_policy(args.size_kib * 1024, "");
    let opts = BuildOptions {
        fleet: "bench".into(),
        version: 1,
        expires_in: None,
        min_agent_version: None,
        next_keys: Vec::new(),
        now: time::OffsetDateTime::now_utc(),
    };
    let envelope = bundle::build(&text, std::path::Path::new("bench.toml"), &key, &opts)?;
    let trust = TrustState::new("bench".into(), vec![key.public_key()]);
    let mut times = Vec::with_capacity(args.verifications);
    for _ in 0..args.verifications {
        let t = Instant::now();
        let v = bundle::verify(
            &envelope,
            &trust,
            time::OffsetDateTime::now_utc(),
            AGENT_VERSION,
            PolicySource::Bundle("bench".into()),
        )
        .map_err(|r| anyhow::anyhow!("{r}"))?;
        times.push(t.elapsed());
        assert!(v.policy.is_some());
    }
    times.sort();

    // 2. swaps under load.
    let mock_dir = tempdir()?;
    let mut cfg = airlock_mock::Config::new(&mock_dir);
    cfg.chunk_delay = Duration::from_millis(5);
    let mock = airlock_mock::start(cfg).await?;
    let overrides = format!(
        "[upstream.overrides.\"api.openai.com\"]\naddress = \"{}\"\nca_file = \"{}\"\n",
        mock.addr,
        mock.ca_file.display()
    );
    let state_dir = tempdir()?;
    let mk = |n: usize| {
        Policy::from_toml(
            &padded_policy(args.size_kib * 1024, &overrides).replacen(
                "airlock-default",
                &format!("bench-{n}"),
                1,
            ),
            PolicySource::Embedded,
        )
    };
    let running = agent::start(AgentConfig {
        listen: "127.0.0.1:0".parse()?,
        state: StateDir::new(&state_dir),
        policy: mk(0)?,
        records_in_memory: 100_000,
        unavailable: None,
        ledger: None,
    })
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let swapping = Arc::new(AtomicBool::new(false));
    let before = Arc::new(Mutex::new(Vec::new()));
    let during = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for n in 0..4 {
        let (stop, swapping, before, during) = (
            stop.clone(),
            swapping.clone(),
            before.clone(),
            during.clone(),
        );
        let addr = running.addr;
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .context("connect")?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let stream = (i + n) % 2 == 0;
                let body = serde_json::json!({"model": "gpt-4o-mini", "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]});
                let req = http::Request::post("/openai/v1/chat/completions")
                    .header("host", addr.to_string())
                    .header("authorization", "Bearer sk-bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))?;
                send.ready().await?;
                let t = Instant::now();
                let resp = send.send_request(req).await?;
                anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
                resp.into_body().collect().await?;
                let took = t.elapsed();
                let into = if swapping.load(Ordering::Relaxed) {
                    &during
                } else {
                    &before
                };
                into.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((stream, took));
                i += 1;
            }
            anyhow::Ok(i)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.swap_secs)).await;
    swapping.store(true, Ordering::Relaxed);
    let mut swaps = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(args.swap_secs) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n += 1;
        let next = mk(n)?;
        let t = Instant::now();
        running.shared.apply_policy(next)?;
        swaps.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for c in clients {
        requests += c.await??;
    }
    running.shutdown(Duration::from_secs(2)).await;
    swaps.sort();
    let split = |v: &Mutex<Vec<(bool, Duration)>>, want: bool| -> Result<Vec<Duration>> {
        let mut out: Vec<Duration> = v
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .iter()
            .filter(|(s, _)| *s == want)
            .map(|(_, d)| *d)
            .collect();
        out.sort();
        Ok(out)
    };

    println!(
        "| policy ({} KiB bundle) | p50 | p99 | max |",
        envelope.len() / 1024
    );
    println!("|---|---|---|---|");
    let row = |name: String, v: &[Duration]| {
        println!(
            "| {name} | {} | {} | {} |",
            ms(pct_of(v, 0.5)),
            ms(pct_of(v, 0.99)),
            ms(pct_of(v, 1.0))
        );
    };
    row("verify + compile".into(), &times);
    row(
        format!(
            "swap (apply, {} swaps every 100 ms under load)",
            swaps.len()
        ),
        &swaps,
    );
    for (kind, stream) in [
        ("whole answer", false),
        ("stream (12 frames, 5 ms apart)", true),
    ] {
        let b = split(&before, stream)?;
        let d = split(&during, stream)?;
        row(format!("{kind}, before swaps ({} requests)", b.len()), &b);
        row(format!("{kind}, during swaps ({} requests)", d.len()), &d);
    }
    println!("\n{requests} requests, none failed.");
    Ok(())
}

/// A fresh directory under the system temp dir.
fn tempdir() -> Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "airlock-bench-policy-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
