//! The noisy-neighbour section: the throughput and open-loop latency measurements of airlock-mitm,
//! airlock-base-url and nginx (and direct, for reference) repeated under several conditions — quiet,
//! one busy loop pinned to the proxy's core, two of them there (a third of the core left, with no
//! migration lottery), and busy loops on both cores plus one free to migrate — so each can be
//! reported as a ratio to its own quiet number. A laptop is never quiet; this is how the
//! agent fares when it is not. The hogs are child processes of the harness (`airlock-bench hog`), so
//! the wait-for-quiet logic counts them as ours, never as noise from other processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::client::Target;
use crate::procs::ChildGuard;
use crate::results::{NoisyCondition, AIRLOCK_BASE, AIRLOCK_MITM, DIRECT, NGINX};
use crate::suite::{
    measure_latency, measure_throughput, print_latency, print_throughput, Config, Pids, System,
};

/// The busy loop of one hog: spins on integer arithmetic until `max` has passed or the process that
/// started it is gone (checked ten times a second, so a killed harness never leaves a hog behind for
/// long).
pub fn hog(max: Duration) {
    let start = Instant::now();
    let parent = parent_pid();
    let mut last_check = Instant::now();
    let mut x: u64 = 1;
    loop {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            std::hint::black_box(x);
        }
        if last_check.elapsed() >= Duration::from_millis(100) {
            last_check = Instant::now();
            if start.elapsed() >= max || parent_pid() != parent {
                return;
            }
        }
    }
}

/// The parent's pid from /proc/self/stat (field 4), or 0.
fn parent_pid() -> u32 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One condition: its name, description and the CPU list of each hog (`None`: unpinned).
struct Condition {
    name: &'static str,
    description: String,
    hogs: Vec<Option<String>>,
}

fn conditions(cfg: &Config) -> Vec<Condition> {
    let proxy = cfg.proxy_cpus.clone();
    let load = cfg.load_cpus.clone();
    let on = |c: &Option<String>| c.as_deref().unwrap_or("any").to_string();
    vec![
        Condition {
            name: "quiet",
            description: "nothing else running".into(),
            hogs: vec![],
        },
        Condition {
            name: "hog-proxy-core",
            description: format!("one busy loop pinned to the proxy's CPU {}", on(&proxy)),
            hogs: vec![proxy.clone()],
        },
        Condition {
            name: "two-hogs-proxy-core",
            description: format!("two busy loops pinned to the proxy's CPU {}", on(&proxy)),
            hogs: vec![proxy.clone(), proxy.clone()],
        },
        Condition {
            name: "hogs-both-cores",
            description: format!(
                "busy loops pinned to CPU {} and CPU {}, plus one unpinned",
                on(&proxy),
                on(&load)
            ),
            hogs: vec![proxy, load, None],
        },
    ]
}

/// The online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-1`): an unpinned hog is given all of
/// them, since it would otherwise inherit the harness's own pinning to the load core.
fn all_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

fn start_hogs(cfg: &Config, cpus: &[Option<String>]) -> Result<Vec<ChildGuard>> {
    let mut out = Vec::new();
    let all = all_cpus();
    for (i, c) in cpus.iter().enumerate() {
        out.push(ChildGuard::spawn(
            &format!("hog {i}"),
            Path::new(&cfg.self_exe),
            &["hog".to_string(), "--secs".to_string(), "900".to_string()],
            Some(c.as_deref().unwrap_or(&all)),
            cfg.tmp.join(format!("hog-{i}.log")),
            &[],
        )?);
    }
    Ok(out)
}

/// Runs the section: for each condition, start its hogs, measure throughput then latency for each
/// scenario, stop the hogs.
pub async fn run(
    cfg: &Config,
    targets: &[Arc<Target>],
    sys: &mut System,
    pids: &Pids,
    clk: u64,
) -> Result<Vec<NoisyCondition>> {
    let chosen: Vec<&Arc<Target>> = [DIRECT, AIRLOCK_MITM, AIRLOCK_BASE, NGINX]
        .iter()
        .filter_map(|n| targets.iter().find(|t| t.name == *n))
        .collect();
    let mut out = Vec::new();
    let wanted = |name: &str| {
        cfg.noisy_conditions.is_empty() || cfg.noisy_conditions.iter().any(|c| c == name)
    };
    for c in conditions(cfg).into_iter().filter(|c| wanted(c.name)) {
        eprintln!("noisy neighbour: {} ({})", c.name, c.description);
        let mut hogs = start_hogs(cfg, &c.hogs)?;
        // Let the hogs reach their loops before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for h in &mut hogs {
            h.check_alive()?;
        }
        let mut p = pids.clone();
        p.hogs = hogs.iter().map(ChildGuard::pid).collect();
        let tag = format!(" [{}]", c.name);
        let mut cond = NoisyCondition {
            name: c.name.into(),
            description: c.description.clone(),
            hog_cpus: c
                .hogs
                .iter()
                .map(|h| h.clone().unwrap_or_else(|| "any".into()))
                .collect(),
            ..NoisyCondition::default()
        };
        for t in &chosen {
            sys.check_alive()?;
            let r = measure_throughput(cfg, t, &p, clk).await?;
            print_throughput(&r, &tag);
            cond.throughput.push(r);
            let r = measure_latency(cfg, t, cfg.noisy_rate, false, &p, clk).await?;
            print_latency(&r, &tag);
            cond.latency.push(r);
        }
        drop(hogs);
        out.push(cond);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_is_read() {
        assert!(parent_pid() > 0);
    }

    #[test]
    fn hog_stops_at_its_deadline() {
        let t0 = Instant::now();
        hog(Duration::from_millis(150));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
