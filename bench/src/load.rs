//! The load loops: open loop (requests due at a fixed rate, latency from the due time, a fixed pool of
//! keep-alive connections) and closed loop (N connections each sending back to back, for maximum
//! throughput). Both are bounded: the open loop by its request count and a hard deadline, the closed
//! loop by its end time; every request has a timeout. They know nothing about processes or reports.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tokio::sync::Mutex;

use crate::client::Client;
use crate::schedule::{spawn_pacer, Schedule};
use crate::stats::Summary;

/// One request/response exchange; implemented by [`Client`] and by fakes in tests.
pub trait Exchanger: Send + 'static {
    /// Performs one exchange; `Ok` if it succeeded.
    fn exchange(&mut self) -> impl Future<Output = Result<()>> + Send;
}

impl Exchanger for Client {
    fn exchange(&mut self) -> impl Future<Output = Result<()>> + Send {
        self.chat()
    }
}

/// Result of an open-loop run (only requests due after the warm-up count).
#[derive(Debug, Default)]
pub struct OpenOutcome {
    /// Requests scheduled in the measured window.
    pub scheduled: u64,
    /// Successful measured requests.
    pub ok: u64,
    /// Failed or timed-out measured requests.
    pub errors: u64,
    /// Measured requests never sent because the hard deadline passed.
    pub not_sent: u64,
    /// Latency from due time to end of response, successful measured requests, ns.
    pub latencies_ns: Vec<u64>,
    /// How late the pacer handed requests out, ns (all requests).
    pub pacer_lag_ns: Vec<u64>,
    /// When the measured window started and when the last measured response ended.
    pub window: Option<(Instant, Instant)>,
    /// First error message seen, if any.
    pub first_error: Option<String>,
}

/// Runs `schedule` open loop over the given exchangers (one per connection), starting at `start`.
/// Requests due before `start + warmup` are sent but not measured. Requests not sent by
/// `start + hard_limit` (the pacer fell behind, or all connections were busy that long) are counted
/// as not sent; each request is abandoned after `req_timeout`.
pub async fn open_loop<E: Exchanger>(
    workers: Vec<E>,
    schedule: Schedule,
    start: Instant,
    warmup: Duration,
    hard_limit: Duration,
    req_timeout: Duration,
) -> Result<OpenOutcome> {
    let warm_n = schedule.first_index_at(warmup);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let rx = Arc::new(Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = spawn_pacer(schedule, start, start + hard_limit, tx, stop.clone())?;
    let mut handles = Vec::with_capacity(workers.len());
    for mut w in workers {
        let rx = rx.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut first_error = None;
            let mut last_end = None;
            let mut abandoned = 0u64;
            let give_up = start + hard_limit;
            loop {
                let next = { rx.lock().await.recv().await };
                let Some(i) = next else { break };
                if Instant::now() > give_up {
                    // Overloaded past the hard limit: drain the queue without sending.
                    abandoned += u64::from(i >= warm_n);
                    continue;
                }
                let due = start + schedule.offset(i);
                let r = tokio::time::timeout(req_timeout, w.exchange()).await;
                let end = Instant::now();
                if i < warm_n {
                    continue;
                }
                last_end = Some(end);
                match r {
                    Ok(Ok(())) => {
                        ok += 1;
                        lat.push(
                            u64::try_from(end.duration_since(due).as_nanos()).unwrap_or(u64::MAX),
                        );
                    }
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("request timed out after {req_timeout:?}")
                        });
                    }
                }
            }
            (lat, ok, errors, first_error, last_end, abandoned)
        }));
    }
    let mut out = OpenOutcome {
        scheduled: schedule.total.saturating_sub(warm_n),
        ..OpenOutcome::default()
    };
    let mut last = start + warmup;
    let mut abandoned = 0;
    for h in handles {
        let (lat, ok, errors, first_error, last_end, dropped) =
            h.await.map_err(|e| anyhow!("load worker failed: {e}"))?;
        abandoned += dropped;
        out.latencies_ns.extend(lat);
        out.ok += ok;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
        if let Some(t) = last_end {
            last = last.max(t);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let report = pacer.join().map_err(|_| anyhow!("pacer thread panicked"))?;
    out.not_sent =
        (schedule.total.saturating_sub(report.sent.max(warm_n)) + abandoned).min(out.scheduled);
    out.pacer_lag_ns = report.lag_ns;
    out.window = Some((start + warmup, last));
    Ok(out)
}

/// Result of a closed-loop run (requests that started and ended inside the measured window).
#[derive(Debug, Default)]
pub struct ClosedOutcome {
    /// Successful requests in the window.
    pub ok: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Measured window length.
    pub window: Duration,
    /// Latencies of the successful requests, ns.
    pub latencies_ns: Vec<u64>,
    /// First error message seen, if any.
    pub first_error: Option<String>,
}

impl ClosedOutcome {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let s = self.window.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }

    /// Latency summary.
    pub fn summary(&mut self) -> Summary {
        Summary::from_ns(&mut self.latencies_ns)
    }
}

/// Runs the exchangers back to back from `start` until `start + warmup + measure`; counts the
/// requests that started at or after `start + warmup` and ended by the end.
pub async fn closed_loop<E: Exchanger>(
    workers: Vec<E>,
    start: Instant,
    warmup: Duration,
    measure: Duration,
    req_timeout: Duration,
) -> Result<ClosedOutcome> {
    let warm_end = start + warmup;
    let end = warm_end + measure;
    let mut handles = Vec::with_capacity(workers.len());
    for mut w in workers {
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut lat = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = tokio::time::timeout(req_timeout, w.exchange()).await;
                let t1 = Instant::now();
                let counted = t0 >= warm_end && t1 <= end;
                match r {
                    Ok(Ok(())) if counted => {
                        ok += 1;
                        lat.push(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                    }
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        errors += u64::from(counted);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // Do not spin on a dead target.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => {
                        errors += u64::from(counted);
                        first_error.get_or_insert_with(|| {
                            format!("request timed out after {req_timeout:?}")
                        });
                    }
                }
            }
            (lat, ok, errors, first_error)
        }));
    }
    let mut out = ClosedOutcome {
        window: measure,
        ..ClosedOutcome::default()
    };
    for h in handles {
        let (lat, ok, errors, first_error) =
            h.await.map_err(|e| anyhow!("load worker failed: {e}"))?;
        out.latencies_ns.extend(lat);
        out.ok += ok;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake server: each exchange takes a fixed time.
    struct Fixed(Duration);

    impl Exchanger for Fixed {
        fn exchange(&mut self) -> impl Future<Output = Result<()>> + Send {
            let d = self.0;
            async move {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn open_loop_counts_queueing_from_the_due_time() {
        // One connection, 20 ms per request, requests due every 5 ms: the server falls behind by
        // 15 ms per request, and that wait must show in the measured latency (no coordinated
        // omission): request k ends at about 20 (k + 1) ms and was due at 5 k ms.
        let schedule = Schedule {
            rate: 200,
            total: 10,
        };
        let start = Instant::now() + Duration::from_millis(2);
        let out = open_loop(
            vec![Fixed(Duration::from_millis(20))],
            schedule,
            start,
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await;
        let Ok(mut out) = out else {
            unreachable!("{out:?}")
        };
        assert_eq!(out.ok, 10);
        assert_eq!(out.errors, 0);
        out.latencies_ns.sort_unstable();
        let max = out.latencies_ns[9];
        // k = 9: 200 ms − 45 ms = 155 ms; a closed-loop measurement would say 20 ms.
        assert!(max >= 150_000_000, "max latency {max} ns");
        assert!(max < 400_000_000, "max latency {max} ns");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn open_loop_with_enough_connections_does_not_queue_and_skips_warmup() {
        let schedule = Schedule {
            rate: 200,
            total: 20,
        };
        let start = Instant::now() + Duration::from_millis(2);
        let workers = (0..8).map(|_| Fixed(Duration::from_millis(2))).collect();
        let out = open_loop(
            workers,
            schedule,
            start,
            Duration::from_millis(50),
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await;
        let Ok(out) = out else {
            unreachable!("{out:?}")
        };
        // 10 of 20 are due in the first 50 ms (warm-up).
        assert_eq!(out.scheduled, 10);
        assert_eq!(out.ok, 10);
        assert_eq!(out.not_sent, 0);
        assert!(
            out.latencies_ns.iter().all(|&l| l < 50_000_000),
            "{:?}",
            out.latencies_ns
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn open_loop_reports_requests_cut_by_the_hard_deadline() {
        let schedule = Schedule {
            rate: 100,
            total: 100,
        };
        let start = Instant::now();
        let out = open_loop(
            vec![Fixed(Duration::from_millis(1))],
            schedule,
            start,
            Duration::ZERO,
            Duration::from_millis(95),
            Duration::from_secs(5),
        )
        .await;
        let Ok(out) = out else {
            unreachable!("{out:?}")
        };
        assert_eq!(out.ok + out.not_sent, 100);
        assert!(out.not_sent >= 85, "not sent {}", out.not_sent);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn closed_loop_is_bounded_by_time() {
        let start = Instant::now();
        let workers = (0..4).map(|_| Fixed(Duration::from_millis(5))).collect();
        let out = closed_loop(
            workers,
            start,
            Duration::from_millis(20),
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
        .await;
        let Ok(out) = out else {
            unreachable!("{out:?}")
        };
        assert!(start.elapsed() < Duration::from_secs(2));
        // 4 connections × 100 ms / 5 ms ≈ 80 (timer granularity makes it fewer).
        assert!(out.ok > 20 && out.ok <= 84, "ok {}", out.ok);
        assert!(out.rps() > 200.0);
    }
}
