//! Latency statistics: nearest-rank percentiles over recorded samples (nanoseconds) and the summary
//! the report prints. It only does arithmetic on numbers it is given; it never measures anything.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The sample at fraction `p` (0..=1) of an ascending-sorted slice of timings, by rounding
/// `(n - 1) * p` (zero for an empty slice): what the in-process benchmarks' tables print.
pub fn pct_of(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A timing in microseconds, one decimal (`8.8 µs`).
pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Nearest-rank percentile of an ascending-sorted slice: the smallest sample such that at least `p`
/// percent of the samples are less than or equal to it. `p` is clamped to `0..=100`; `p = 0` gives
/// the minimum. `None` for an empty slice.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    // rank in 1..=n; computed in f64 then rounded up, with a small tolerance so that e.g.
    // 0.99 * 100 = 98.99999999999999 still gives rank 99.
    let exact = p / 100.0 * n as f64;
    let rank = (exact - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(n) - 1).copied()
}

/// Summary of a latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Summary {
    /// Sorts `samples_ns` in place and summarises them; all zeros for no samples.
    pub fn from_ns(samples_ns: &mut [u64]) -> Summary {
        if samples_ns.is_empty() {
            return Summary::default();
        }
        samples_ns.sort_unstable();
        let us = |p: f64| percentile(samples_ns, p).map_or(0.0, |v| v as f64 / 1000.0);
        let sum: u128 = samples_ns.iter().map(|&v| u128::from(v)).sum();
        Summary {
            count: samples_ns.len(),
            mean_us: sum as f64 / samples_ns.len() as f64 / 1000.0,
            p50_us: us(50.0),
            p90_us: us(90.0),
            p99_us: us(99.0),
            p999_us: us(99.9),
            max_us: us(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(1));
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 50.5), Some(51));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 250.0), Some(100));
    }

    #[test]
    fn tail_percentiles_need_enough_samples() {
        // 1000 samples: p99.9 is the 999th, so one outlier only shows at p100.
        let mut v: Vec<u64> = vec![10; 999];
        v.push(1_000_000);
        assert_eq!(percentile(&v, 99.9), Some(10));
        assert_eq!(percentile(&v, 100.0), Some(1_000_000));
        // Two outliers in 1000 move p99.9.
        v[998] = 1_000_000;
        v.sort_unstable();
        assert_eq!(percentile(&v, 99.9), Some(1_000_000));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 50.1), Some(2));
        assert_eq!(percentile(&[1, 2], f64::NAN), Some(1));
    }

    #[test]
    fn summary_sorts_and_converts_to_micros() {
        let mut v: Vec<u64> = (1..=1000).rev().map(|x| x * 1000).collect();
        let s = Summary::from_ns(&mut v);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.p999_us, 999.0);
        assert_eq!(s.max_us, 1000.0);
        assert!((s.mean_us - 500.5).abs() < 1e-9);
        assert_eq!(Summary::from_ns(&mut []), Summary::default());
    }
}
