//! `airlock-bench governance`: what governing costs a request, in-process. The journal's committed
//! rows per second (many concurrent requests each committing a `begin` row and handing over an
//! `end` row, as the pipeline does) and the latency of one `begin` commit; and the CPU of model
//! rules + budget admission + settle with an enterprise policy (10 budgets, 5 rate limits, 50
//! model rules). Prints a markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{micros, pct_of};
use airlock_agent::governance::{Ask, Governance, Rules};
use airlock_agent::journal::{Journal, SyncMode};
use airlock_agent::policy::{ModelDecision, Policy, PolicySource};
use anyhow::{Context, Result};

/// Options of the governance benchmark.
#[derive(Debug, clap::Args)]
pub struct GovernanceArgs {
    /// Requests to journal (each a begin and an end row).
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Admissions to time.
    #[arg(long, default_value_t = 200_000)]
    admissions: usize,
    /// `full` durability (a disk flush per commit) instead of `normal`.
    #[arg(long)]
    full: bool,
    /// Pause (µs) between a request's end and the same client's next begin — the client's own
    /// round trip; 0 sends the next begin at once, before the writer has taken the end.
    #[arg(long, default_value_t = 0)]
    think_us: u64,
}

/// The enterprise policy the admission figures are measured with.
pub fn enterprise_policy() -> String {
    format!(
        "schema = 1\nname = \"enterprise-bench\"\n{}",
        enterprise_sections()
    )
}

/// Its governance sections (model rules, budgets, rate limits), to follow a policy's top-level keys.
pub fn enterprise_sections() -> String {
    let mut t = String::from("[models]\ndefault = \"allow\"\ndeny = [");
    let rules: Vec<String> = (0..40).map(|i| format!("\"legacy-model-{i}*\"")).collect();
    t.push_str(&rules.join(", "));
    t.push_str(", \"re:^o1-pro\", \"gpt-4.5*\"]\n[models.anthropic]\nallow = [\"claude-*\", \"re:^claude-(haiku|sonnet)\"]\ndeny = [\"claude-3-opus*\", \"claude-2*\"]\n");
    t.push_str("[models.openai]\nallow = [\"gpt-4o*\", \"gpt-4.1*\", \"o3*\", \"o4-mini*\"]\n");
    for i in 0..10 {
        let scope = [
            "[\"user\"]",
            "[\"app\"]",
            "[\"user\", \"model\"]",
            "[]",
            "[\"device\"]",
        ][i % 5];
        t.push_str(&format!(
            "[[budgets]]\nname = \"b{i}\"\nscope = {scope}\nlimit_tokens = 1000000000000\nlimit_usd = 1000000.0\nwindow = \"{}\"\n{}\n",
            ["hour", "day", "week", "month"][i % 4],
            if i % 2 == 0 { "timezone = \"Europe/Berlin\"" } else { "align = \"rolling\"" }
        ));
    }
    for i in 0..5 {
        t.push_str(&format!(
            "[[rate_limits]]\nname = \"l{i}\"\nscope = [\"app\"]\nrequests_per_minute = 100000000\ntokens_per_minute = 100000000000\nconcurrency = 100000\n"
        ));
    }
    t
}

/// Runs the benchmark and prints its table.
pub fn run(args: GovernanceArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: GovernanceArgs) -> Result<()> {
    // 1. The journal.
    let dir = std::env::temp_dir().join(format!("airlock-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sync = if args.full {
        SyncMode::Full
    } else {
        SyncMode::Normal
    };
    let journal = Journal::open(&dir.join("journal.db"), sync)?;
    let text = enterprise_policy();
    let policy = Policy::from_toml(&text, PolicySource::Embedded)?;
    let template = record_template()?;
    let per_task = args.requests / args.concurrency.max(1);
    // A blocking sleep: tokio's timers round up to a millisecond.
    let think = Duration::from_micros(args.think_us);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let j = journal.clone();
        let mut rec = template.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for i in 0..per_task {
                rec.id = format!("req_{t}_{i}");
                let t0 = Instant::now();
                j.begin(&rec).await.context("begin")?;
                lat.push(t0.elapsed());
                j.end(&rec);
                if think > Duration::ZERO {
                    std::thread::sleep(think);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    journal.flush().await;
    let secs = started.elapsed().as_secs_f64();
    let status = journal.status();
    let rows = status["rows_written"].as_u64().unwrap_or(0);
    let (commits, direct) = (
        status["commits"].as_u64().unwrap_or(0),
        status["direct_commits"].as_u64().unwrap_or(0),
    );
    lat.sort();
    let verify_start = Instant::now();
    let v = airlock_agent::journal::verify_file(journal.path())?;
    let verify_secs = verify_start.elapsed().as_secs_f64();
    journal.close(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);

    // 2. Admission + settle with the enterprise policy.
    let gov = Governance::new(Arc::new(airlock_agent::governance::clock::SystemClock));
    let rules: &Rules = &policy.governance;
    let ask = Ask {
        device: Some("dev_0123".into()),
        user: Some("alice".into()),
        app: Some("python3.11".into()),
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        input_tokens: 400,
        max_output_tokens: Some(256),
        price: Some((0.15, 0.6)),
    };
    let mut times = Vec::with_capacity(args.admissions);
    for _ in 0..args.admissions {
        let t0 = Instant::now();
        let decided = policy.models.decide("openai", "gpt-4o-mini");
        let hold = gov
            .admit(rules, &ask)
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        hold.settle(600, 0.0002);
        times.push(t0.elapsed());
        debug_assert!(matches!(decided, ModelDecision::Allow(_)));
    }
    times.sort();

    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| journal: committed rows/s ({} requests = {rows} rows, {} in flight, sync {}) | **{:.0}** |",
        per_task * args.concurrency,
        args.concurrency,
        if args.full { "full" } else { "normal" },
        rows as f64 / secs
    );
    println!("| journal: commits (made by the begin itself) | {commits} ({direct}) |");
    println!(
        "| journal: begin commit latency p50 / p99{} | {} / {} |",
        if args.think_us > 0 {
            format!(" ({} µs between requests)", args.think_us)
        } else {
            String::new()
        },
        micros(pct_of(&lat, 0.5)),
        micros(pct_of(&lat, 0.99))
    );
    println!(
        "| journal: verify, rows/s | {:.0} ({} rows, chain {}) |",
        v.rows as f64 / verify_secs,
        v.rows,
        if v.problem.is_none() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    println!(
        "| model rules + admit + settle, enterprise policy (50 model rules, 10 budgets, 5 limits) p50 / p99 | {} / {} |",
        micros(pct_of(&times, 0.5)),
        micros(pct_of(&times, 0.99))
    );
    Ok(())
}

fn record_template() -> Result<airlock_agent::record::Record> {
    let text = r#"{"id":"req_0","started_at":"2026-12-01T00:00:00Z","mode":"proxy","host":"api.openai.com",
        "provider":"openai","operation":"chat_completions","model":"gpt-4o-mini","stream":false,"method":"POST",
        "path":"/v1/chat/completions","status":200,"outcome":"completed","credential":"bearer",
        "response_model":"gpt-4o-mini-2024-07-18","usage":{"input_tokens":400,"cache_read_tokens":0,"cache_write_tokens":0,"cache_write_1h_tokens":0,"output_tokens":200,"reasoning_tokens":0},"usage_estimated":false,
        "usage_injected":false,"cost_usd":0.00018,"cost_status":"priced","cost_note":"openai/gpt-4o-mini",
        "upstream_error":null,"latency_ms":1.2,"ttfb_ms":0.8,"request_bytes":1600,"response_bytes":600,"error":null,
        "uid":1000,"user":"alice","pid":4242,"app":"python3.11","app_path":"/usr/bin/python3.11","device":"dev_0123"}"#;
    Ok(serde_json::from_str(text)?)
}
