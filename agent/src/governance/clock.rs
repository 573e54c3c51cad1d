//! The clock budgets and rate limits count by. The system clock, or — only when the agent is
//! started with `AIRLOCK_TEST_CLOCK_FILE` set, which it warns about loudly — a file holding a Unix
//! time in seconds that tests rewrite to move time forward (window rollover without waiting a
//! day). It owns nothing else.

use std::path::PathBuf;

/// Milliseconds since the Unix epoch, now.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::record::now_ms()
    }
}

/// A clock read from a file (tests only): its content is a Unix time in seconds (fractions
/// allowed); unreadable content falls back to the system clock.
#[derive(Debug)]
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now_ms(&self) -> i64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|s| (s * 1000.0) as i64)
            .unwrap_or_else(|| SystemClock.now_ms())
    }
}

/// The environment variable naming a test clock file.
pub const TEST_CLOCK_ENV: &str = "AIRLOCK_TEST_CLOCK_FILE";

/// The system clock, or the test clock the environment names.
pub fn from_env() -> std::sync::Arc<dyn Clock> {
    match std::env::var_os(TEST_CLOCK_ENV).filter(|v| !v.is_empty()) {
        Some(p) => {
            tracing::warn!(file = ?p, "budgets and rate limits count by a TEST CLOCK read from a file ({TEST_CLOCK_ENV}); never set this outside tests");
            std::sync::Arc::new(FileClock(PathBuf::from(p)))
        }
        None => std::sync::Arc::new(SystemClock),
    }
}
