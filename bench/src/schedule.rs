//! Open-loop scheduling: request `i` of a run is due at `start + i / rate`, whatever happened to the
//! requests before it. A dedicated OS thread (the pacer) hands each index to the load generator at its
//! due time, sleeping with the kernel's high-resolution timer and spinning the last stretch, because
//! tokio's timer wheel only has millisecond resolution. Latency is then measured from the due time, so
//! a slow server cannot hide its stalls by slowing the generator down (coordinated omission).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

/// How long before a due time the pacer stops sleeping and spins. Linux's default timer slack for a
/// normal thread is 50 µs, so a sleep usually ends 50–80 µs late; spinning the last 120 µs keeps the
/// pacer within a few microseconds of the schedule at a cost of a few percent of one core.
const SPIN: Duration = Duration::from_micros(120);

/// A fixed-rate schedule of `total` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Requests per second (at least 1).
    pub rate: u64,
    /// Number of requests in the run.
    pub total: u64,
}

impl Schedule {
    /// A schedule of `rate` requests per second for `duration`.
    pub fn for_duration(rate: u64, duration: Duration) -> Schedule {
        let rate = rate.max(1);
        let total = (u128::from(rate) * duration.as_nanos() / 1_000_000_000) as u64;
        Schedule { rate, total }
    }

    /// When request `i` is due, relative to the start of the run. Exact in integer nanoseconds, so
    /// no rounding error accumulates over a long run.
    pub fn offset(&self, i: u64) -> Duration {
        let ns = u128::from(i) * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Index of the first request due at or after `at` (relative to the start).
    pub fn first_index_at(&self, at: Duration) -> u64 {
        let n = at.as_nanos() * u128::from(self.rate.max(1));
        let idx = n.div_ceil(1_000_000_000);
        u64::try_from(idx).unwrap_or(u64::MAX).min(self.total)
    }
}

/// What the pacer did.
#[derive(Debug, Default)]
pub struct PacerReport {
    /// Indices handed out.
    pub sent: u64,
    /// For each index handed out: how late the hand-out was, in nanoseconds.
    pub lag_ns: Vec<u64>,
}

/// Starts the pacer thread: it sends `0..schedule.total` on `tx`, each at `start + offset(i)`. It
/// stops early when `stop` is set, when the receiver is gone, or at `hard_deadline` (indices not
/// sent by then are reported as not sent by the caller).
pub fn spawn_pacer(
    schedule: Schedule,
    start: Instant,
    hard_deadline: Instant,
    tx: UnboundedSender<u64>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<PacerReport>> {
    std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let mut report = PacerReport {
                sent: 0,
                lag_ns: Vec::with_capacity(usize::try_from(schedule.total).unwrap_or(0)),
            };
            for i in 0..schedule.total {
                let due = start + schedule.offset(i);
                if due > hard_deadline || stop.load(Ordering::Relaxed) {
                    break;
                }
                sleep_until_precise(due, &stop);
                let now = Instant::now();
                if tx.send(i).is_err() {
                    break;
                }
                report.sent += 1;
                report
                    .lag_ns
                    .push(u64::try_from(now.duration_since(due).as_nanos()).unwrap_or(u64::MAX));
            }
            report
        })
}

/// Sleeps until `due` with a kernel sleep and then a short spin. Sleeps in slices of at most 50 ms
/// so a stop request is noticed quickly.
pub fn sleep_until_precise(due: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left <= SPIN {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((left - SPIN).min(Duration::from_millis(50)));
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_exact_and_do_not_drift() {
        let s = Schedule::for_duration(1000, Duration::from_secs(10));
        assert_eq!(s.total, 10_000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(9_999), Duration::from_millis(9_999));
        // A rate that does not divide a second: 3/s is due at 0, 333.333333 ms, 666.666666 ms, 1 s.
        let s = Schedule::for_duration(3, Duration::from_secs(2));
        assert_eq!(s.total, 6);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(300_000), Duration::from_secs(100_000));
    }

    #[test]
    fn first_index_at_splits_warmup_from_measurement() {
        let s = Schedule::for_duration(200, Duration::from_secs(12));
        assert_eq!(s.first_index_at(Duration::ZERO), 0);
        assert_eq!(s.first_index_at(Duration::from_secs(2)), 400);
        assert_eq!(s.first_index_at(Duration::from_micros(2_000_001)), 401);
        assert_eq!(s.first_index_at(Duration::from_secs(100)), s.total);
        assert!(s.offset(s.first_index_at(Duration::from_millis(7))) >= Duration::from_millis(7));
    }

    #[test]
    fn pacer_hands_out_every_index_on_time_and_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let schedule = Schedule::for_duration(500, Duration::from_millis(100));
        let start = Instant::now() + Duration::from_millis(5);
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = spawn_pacer(schedule, start, start + Duration::from_secs(5), tx, stop)
            .map_err(|e| e.to_string());
        let Ok(pacer) = pacer else {
            unreachable!("cannot spawn pacer: {pacer:?}")
        };
        let mut got = Vec::new();
        while let Some(i) = rx.blocking_recv() {
            got.push((i, Instant::now()));
        }
        let report = pacer.join().unwrap_or_default();
        assert_eq!(report.sent, 50);
        assert_eq!(got.len(), 50);
        for (k, (i, at)) in got.iter().enumerate() {
            assert_eq!(*i, k as u64);
            // Never early.
            assert!(*at >= start + schedule.offset(*i));
        }
        // Loose bound for a busy CI machine: the median hand-out is within 2 ms of its due time.
        let mut lag = report.lag_ns.clone();
        lag.sort_unstable();
        assert!(lag[lag.len() / 2] < 2_000_000, "median lag {} ns", lag[25]);
    }

    #[test]
    fn pacer_stops_at_the_hard_deadline() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let schedule = Schedule {
            rate: 100,
            total: 1_000_000,
        };
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let Ok(pacer) = spawn_pacer(schedule, start, start + Duration::from_millis(50), tx, stop)
        else {
            unreachable!("cannot spawn pacer")
        };
        let mut n = 0;
        while rx.blocking_recv().is_some() {
            n += 1;
        }
        let report = pacer.join().unwrap_or_default();
        assert_eq!(report.sent, n);
        assert!((5..=6).contains(&n), "sent {n}");
    }
}
