//! Renders a [`Results`] document as the markdown tables that `bench/run.sh` prints and
//! BENCHMARKS.md quotes: the standard tables, the agent as a ratio to the nginx floor, and the
//! noisy-neighbour and hostile-load sections when they ran. Pure formatting: it reads the results and
//! never changes them (ratios are computed here, from numbers in the file).

use std::fmt::Write as _;

use crate::results::{
    AgentSample, LatencyRun, NoisyCondition, Results, ThroughputRun, AIRLOCK_BASE, AIRLOCK_MITM,
    DIRECT, NGINX,
};

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn signed_us(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:+.1} ms", v / 1000.0)
    } else {
        format!("{v:+.0} µs")
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn cs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

fn per_cpu(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.iter()
        .map(|p| format!("{p:.0}%"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn sample(a: &AgentSample) -> String {
    format!(
        "RSS {}, HWM {}, {} fds, {} threads",
        mb(a.rss_kb),
        mb(a.hwm_kb),
        a.fds,
        a.threads
    )
}

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Machine: {} × {}, kernel {}, {} MiB; {}{}{}",
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.mem_total_mib,
        m.agent_version,
        m.mitmproxy_version
            .as_ref()
            .map_or_else(String::new, |v| format!(
                ", mitmproxy {}",
                v.trim_start_matches("Mitmproxy: ")
            )),
        m.nginx_version
            .as_ref()
            .map_or_else(String::new, |v| format!(
                ", {}",
                v.trim_start_matches("nginx version: ")
            ))
    );
    if !m.source.is_empty() {
        let _ = writeln!(s, "\nSource: {}.", m.source);
    }
    if r.quick {
        let _ = writeln!(
            s,
            "\n**Quick smoke run (short durations): not for publication.**"
        );
    }
    let _ = writeln!(
        s,
        "\nPinning: {}. Quiet: load average before `{}`, after `{}`; other processes used {:.1}% of one core on average during the run; busy processes before: {}.",
        r.pinning
            .iter()
            .map(|p| format!("{} on CPU {} ({} threads)", p.process, p.cpus, p.threads))
            .collect::<Vec<_>>()
            .join(", "),
        r.quiet.loadavg_before,
        r.quiet.loadavg_after,
        r.quiet.foreign_cpu_pct,
        if r.quiet.busy_processes_before.is_empty() {
            "none".to_string()
        } else {
            r.quiet.busy_processes_before.join(", ")
        }
    );
    let lim = |v: Option<u64>| v.map_or_else(|| "unlimited".into(), |v| v.to_string());
    let _ = writeln!(
        s,
        "\nRLIMIT_NOFILE: harness soft {}, hard {}; airlockd and nginx started with {}.",
        lim(r.nofile.soft),
        lim(r.nofile.hard),
        r.nofile
            .children
            .map_or_else(|| "the harness's".into(), |v| v.to_string())
    );
    if !r.latency.is_empty() || !r.throughput.is_empty() {
        main_tables(&mut s, r);
    }
    floor(&mut s, r);
    if !r.noisy.is_empty() {
        noisy(&mut s, &r.noisy);
    }
    if r.hostile.is_some() {
        hostile(&mut s, r);
    }
    if !r.targets.is_empty() {
        let _ = writeln!(s, "\n### Targets\n");
        let _ = writeln!(s, "| target | goal | measured | met |");
        let _ = writeln!(s, "|---|---|---|---|");
        for t in &r.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.name,
                t.target,
                t.measured,
                if t.met { "met" } else { "**missed**" }
            );
        }
    }
    s
}

fn main_tables(s: &mut String, r: &Results) {
    let _ = writeln!(
        s,
        "\n### Added latency, open loop ({} keep-alive connections, {} s measured after {} s warm-up)\n",
        r.method.open_connections, r.method.duration_s, r.method.warmup_s
    );
    let _ = writeln!(
        s,
        "| rate | scenario | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | ok / errors / not sent | proxy CPU per request | generator lag p99 | other CPU |"
    );
    let _ = writeln!(
        s,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for l in &r.latency {
        let name = if l.repeat {
            format!("{} (repeat)", l.target)
        } else {
            l.target.clone()
        };
        let _ = writeln!(
            s,
            "| {}/s | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {:.0}% |",
            l.rate,
            name,
            us(l.latency.p50_us),
            us(l.latency.p99_us),
            us(l.latency.p999_us),
            opt(l.added.map(|a| a.p50_us), signed_us),
            opt(l.added.map(|a| a.p99_us), signed_us),
            opt(l.added.map(|a| a.p999_us), signed_us),
            l.ok,
            l.errors,
            l.not_sent,
            opt(l.cpu.proxy_us_per_req, us),
            us(l.pacer_lag_p99_us),
            l.cpu.foreign_pct,
        );
    }

    let _ = writeln!(
        s,
        "\n### Maximum throughput, closed loop ({} keep-alive connections, {} s)\n",
        r.method.closed_connections, r.method.duration_s
    );
    let _ = writeln!(
        s,
        "| scenario | req/s | vs direct | errors | p50 | p99 | proxy CPU | proxy CPU per request | req/s per proxy core (from CPU/request) | proxy context switches per request (voluntary / involuntary) | mock CPU per request | mock + generator CPU | other CPU |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let direct_rps = r
        .throughput
        .iter()
        .find(|t| t.target == DIRECT)
        .map(|t| t.rps);
    for t in &r.throughput {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% |",
            t.target,
            t.rps,
            direct_rps
                .filter(|d| *d > 0.0)
                .map_or_else(|| "–".into(), |d| format!("{:.2}×", t.rps / d)),
            t.errors,
            us(t.latency.p50_us),
            us(t.latency.p99_us),
            opt(t.cpu.proxy_pct, |v| format!("{v:.0}%")),
            opt(t.cpu.proxy_us_per_req, us),
            opt(t.cpu.proxy_us_per_req.filter(|v| *v > 0.0), |v| format!(
                "{:.0}",
                1e6 / v
            )),
            if t.cpu.proxy_vcsw_per_req.is_some() {
                format!(
                    "{} / {}",
                    cs(t.cpu.proxy_vcsw_per_req),
                    cs(t.cpu.proxy_ivcsw_per_req)
                )
            } else {
                "–".into()
            },
            opt(t.cpu.mock_us_per_req, us),
            t.cpu.mock_pct + t.cpu.harness_pct,
            t.cpu.foreign_pct,
        );
    }

    let _ = writeln!(
        s,
        "\n### Paced stream ({} words, {} ms between chunks, {} streams, one keep-alive connection)\n",
        r.method.stream_words, r.method.stream_delay_ms, r.method.stream_reps
    );
    let _ = writeln!(
        s,
        "| scenario | SSE events | headers p50 | first chunk p50 | first chunk p99 | total p50 | added first chunk | added total | added per event | added total vs direct+usage | added per event vs direct+usage |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &r.stream {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.target,
            t.events,
            us(t.headers.p50_us),
            us(t.first_chunk.p50_us),
            us(t.first_chunk.p99_us),
            us(t.total.p50_us),
            opt(t.added_first_chunk_p50_us, signed_us),
            opt(t.added_total_p50_us, signed_us),
            opt(t.added_per_event_us, signed_us),
            opt(t.added_total_vs_usage_p50_us, signed_us),
            opt(t.added_per_event_vs_usage_us, signed_us),
        );
    }

    let _ = writeln!(
        s,
        "\n### New connection + first request ({} sequential, TCP + CONNECT + TLS + one chat request)\n",
        r.method.cold_reps
    );
    let _ = writeln!(s, "| scenario | p50 | p99 | added p50 | errors |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for c in &r.cold {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            c.target,
            us(c.latency.p50_us),
            us(c.latency.p99_us),
            opt(c.added_p50_us, signed_us),
            c.errors
        );
    }

    let _ = writeln!(s, "\n### Memory\n");
    let _ = writeln!(
        s,
        "| process | idle RSS (1 s after start) | RSS after first requests | RSS under load (mid throughput run) | peak (VmHWM) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for m in &r.memory {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            m.process,
            mb(m.idle_rss_kb),
            mb(m.warm_rss_kb),
            mb(m.load_rss_kb),
            mb(m.peak_hwm_kb)
        );
    }
}

/// airlockd against the nginx floor: throughput, CPU per request and added latency as ratios.
fn floor(s: &mut String, r: &Results) {
    let thr = |n: &str| r.throughput.iter().find(|t| t.target == n);
    let Some(ng) = thr(NGINX) else {
        return;
    };
    let _ = writeln!(
        s,
        "\n### The floor: airlockd as a ratio to nginx (TLS in, verified TLS out, one worker, same core)\n"
    );
    let _ = writeln!(
        s,
        "| scenario | req/s | req/s vs nginx | CPU per request (closed loop) | CPU per request vs nginx | {} |",
        r.method
            .rates
            .iter()
            .map(|rate| format!("CPU per request at {rate}/s vs nginx | added p50 at {rate}/s (nginx's)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|{}",
        "---:|---:|".repeat(r.method.rates.len())
    );
    let lat = |n: &str, rate: u64| {
        r.latency
            .iter()
            .find(|l| l.target == n && l.rate == rate && !l.repeat)
    };
    for name in [AIRLOCK_MITM, AIRLOCK_BASE, NGINX] {
        let Some(t) = thr(name) else { continue };
        let mut row = format!(
            "| {} | {:.0} | {} | {} | {} |",
            name,
            t.rps,
            ratio(Some(t.rps), Some(ng.rps)),
            opt(t.cpu.proxy_us_per_req, us),
            ratio(t.cpu.proxy_us_per_req, ng.cpu.proxy_us_per_req),
        );
        for &rate in &r.method.rates {
            let (a, n) = (lat(name, rate), lat(NGINX, rate));
            let _ = write!(
                row,
                " {} | {} ({}) |",
                ratio(
                    a.and_then(|l| l.cpu.proxy_us_per_req),
                    n.and_then(|l| l.cpu.proxy_us_per_req)
                ),
                opt(a.and_then(|l| l.added.map(|x| x.p50_us)), signed_us),
                opt(n.and_then(|l| l.added.map(|x| x.p50_us)), signed_us),
            );
        }
        let _ = writeln!(s, "{row}");
    }
}

fn find<'a, T>(v: &'a [T], name: &str, key: fn(&T) -> &str) -> Option<&'a T> {
    v.iter().find(|x| key(x) == name)
}

/// The noisy-neighbour tables: each scenario under each condition, as a ratio to its own quiet run.
fn noisy(s: &mut String, conds: &[NoisyCondition]) {
    let quiet = conds.iter().find(|c| c.name == "quiet");
    let _ = writeln!(s, "\n### Noisy neighbour: CPU hogs beside the benchmark\n");
    for c in conds {
        let _ = writeln!(s, "- `{}`: {}", c.name, c.description);
    }
    let _ = writeln!(s, "\nClosed-loop throughput:\n");
    let _ = writeln!(
        s,
        "| scenario | condition | req/s | vs its quiet | p99 | proxy CPU | proxy CPU per request | context switches per request (vol / invol) | hogs' CPU | mock + generator CPU | other CPU | busy per CPU |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let names: Vec<String> = conds
        .first()
        .map(|c| c.throughput.iter().map(|t| t.target.clone()).collect())
        .unwrap_or_default();
    let tkey: fn(&ThroughputRun) -> &str = |t| t.target.as_str();
    let lkey: fn(&LatencyRun) -> &str = |l| l.target.as_str();
    for name in &names {
        let q = quiet.and_then(|q| find(&q.throughput, name, tkey));
        for c in conds {
            let Some(t) = find(&c.throughput, name, tkey) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} / {} | {:.0}% | {:.0}% | {:.0}% | {} |",
                name,
                c.name,
                t.rps,
                ratio(Some(t.rps), q.map(|q| q.rps)),
                us(t.latency.p99_us),
                opt(t.cpu.proxy_pct, |v| format!("{v:.0}%")),
                opt(t.cpu.proxy_us_per_req, us),
                cs(t.cpu.proxy_vcsw_per_req),
                cs(t.cpu.proxy_ivcsw_per_req),
                t.cpu.hog_pct,
                t.cpu.mock_pct + t.cpu.harness_pct,
                t.cpu.foreign_pct,
                per_cpu(&t.cpu.per_cpu_busy_pct),
            );
        }
    }
    let rate = conds
        .iter()
        .flat_map(|c| c.latency.first())
        .map(|l| l.rate)
        .next()
        .unwrap_or(0);
    let _ = writeln!(s, "\nOpen-loop latency at {rate} req/s:\n");
    let _ = writeln!(
        s,
        "| scenario | condition | p50 | p50 vs its quiet | p99 | p99 vs its quiet | p99.9 | ok / errors / not sent | proxy CPU per request | context switches per request (vol / invol) | hogs' CPU | other CPU | busy per CPU | generator lag p99 |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    for name in &names {
        let q = quiet.and_then(|q| find(&q.latency, name, lkey));
        for c in conds {
            let Some(l) = find(&c.latency, name, lkey) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} / {} | {:.0}% | {:.0}% | {} | {} |",
                name,
                c.name,
                us(l.latency.p50_us),
                ratio(Some(l.latency.p50_us), q.map(|q| q.latency.p50_us)),
                us(l.latency.p99_us),
                ratio(Some(l.latency.p99_us), q.map(|q| q.latency.p99_us)),
                us(l.latency.p999_us),
                l.ok,
                l.errors,
                l.not_sent,
                opt(l.cpu.proxy_us_per_req, us),
                cs(l.cpu.proxy_vcsw_per_req),
                cs(l.cpu.proxy_ivcsw_per_req),
                l.cpu.hog_pct,
                l.cpu.foreign_pct,
                per_cpu(&l.cpu.per_cpu_busy_pct),
                us(l.pacer_lag_p99_us),
            );
        }
    }
}

/// The hostile-load tables: legitimate latency quiet and under load, the agent's footprint, and
/// what happened to each kind of hostile connection.
fn hostile(s: &mut String, r: &Results) {
    let Some(h) = r.hostile.as_ref() else {
        return;
    };
    let open: u64 = h.kinds.iter().map(|k| k.target_open).sum();
    let _ = writeln!(
        s,
        "\n### Hostile load: {open} idle and slowloris connections held open against airlockd\n"
    );
    let _ = writeln!(
        s,
        "All opened in {:.1} s, then held {:.1} s (reopened whenever the agent closed one); legitimate requests at {} req/s open loop, {} keep-alive connections. airlockd CPU with only the hostile connections open: {:.1}% of a core.\n",
        h.ramp_s, h.hold_s, h.rate, r.method.open_connections, h.agent_idle_hostile_cpu_pct
    );
    let _ = writeln!(
        s,
        "| scenario | p50 quiet | p50 hostile | p99 quiet | p99 hostile | p99.9 quiet | p99.9 hostile | ok / errors / not sent (hostile) | agent CPU per request quiet / hostile | generator lag p99 (hostile) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let lkey: fn(&LatencyRun) -> &str = |l| l.target.as_str();
    for l in &h.hostile_latency {
        let q = find(&h.quiet_latency, &l.target, lkey);
        let qv = |f: fn(&LatencyRun) -> f64| q.map_or_else(|| "–".into(), |q| us(f(q)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} | {} |",
            l.target,
            qv(|x| x.latency.p50_us),
            us(l.latency.p50_us),
            qv(|x| x.latency.p99_us),
            us(l.latency.p99_us),
            qv(|x| x.latency.p999_us),
            us(l.latency.p999_us),
            l.ok,
            l.errors,
            l.not_sent,
            opt(q.and_then(|q| q.cpu.proxy_us_per_req), us),
            opt(l.cpu.proxy_us_per_req, us),
            us(l.pacer_lag_p99_us),
        );
    }
    let _ = writeln!(s, "\n| airlockd | RSS | HWM | open fds | threads |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (what, a) in [
        ("before (quiet)", &h.agent_before),
        ("hostile load (largest sample)", &h.agent_during),
        ("3 s after the hostile connections closed", &h.agent_after),
    ] {
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} |",
            mb(a.rss_kb),
            mb(a.hwm_kb),
            a.fds,
            a.threads
        );
    }
    let _ = writeln!(
        s,
        "\n| hostile connection | what it does | held open | opened (incl. reopened) | closed by the agent | lifetime before close: min / p50 / max | open at the end | connect failures |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    let secs = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.1} s"));
    for k in &h.kinds {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |",
            k.kind,
            k.description,
            k.target_open,
            k.opened,
            k.closed_by_agent,
            secs(k.lifetime_min_s),
            secs(k.lifetime_p50_s),
            secs(k.lifetime_max_s),
            k.open_at_end,
            k.connect_failures,
        );
    }
    let _ = writeln!(
        s,
        "\nSummary: {}.",
        [
            ("before", &h.agent_before),
            ("under load", &h.agent_during),
            ("after", &h.agent_after)
        ]
        .iter()
        .map(|(w, a)| format!("{w}: {}", sample(a)))
        .collect::<Vec<_>>()
        .join("; ")
    );
}
