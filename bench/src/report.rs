//! Renders a [`Results`] document as the markdown tables that `bench/run.sh` prints and
//! BENCHMARKS.md quotes. Pure formatting: it reads the results and never changes them.

use std::fmt::Write as _;

use crate::results::{Results, DIRECT};

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

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Machine: {} × {}, kernel {}, {} MiB; {}{}",
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
        "| scenario | req/s | vs direct | errors | p50 | p99 | proxy CPU | proxy CPU per request | req/s per proxy core (from CPU/request) | mock CPU per request | mock + generator CPU | other CPU |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let direct_rps = r
        .throughput
        .iter()
        .find(|t| t.target == DIRECT)
        .map(|t| t.rps);
    for t in &r.throughput {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% |",
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
    s
}
