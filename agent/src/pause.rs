//! Paused interception: while a pause a person asked for runs (policy `[pause] allow`), CONNECTs to
//! AI hosts are tunnelled uninspected instead of intercepted. This module owns the pause's end time
//! and its answers (active, until when); it must not decide who may pause (the control route checks
//! the policy) nor journal anything (the caller does, with who asked).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// When the running pause ends, as unix seconds; 0 when none runs.
#[derive(Debug, Default)]
pub struct Pause {
    until: AtomicI64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Pause {
    /// No pause running.
    pub fn new() -> Pause {
        Pause::default()
    }

    /// Whether a pause runs now. Asked on every intercepted CONNECT: without a pause it is one
    /// atomic load, no clock read.
    pub fn active(&self) -> bool {
        self.until.load(Ordering::Relaxed) != 0 && self.active_at(unix_now())
    }

    fn active_at(&self, now: i64) -> bool {
        now < self.until.load(Ordering::Relaxed)
    }

    /// Starts (or replaces) a pause of `length`; when it ends.
    pub fn start(&self, length: Duration) -> i64 {
        let secs = i64::try_from(length.as_secs()).unwrap_or(i64::MAX);
        let until = unix_now().saturating_add(secs);
        self.until.store(until, Ordering::Relaxed);
        until
    }

    /// Ends the pause; whether one was running.
    pub fn end(&self) -> bool {
        let was = self.until.swap(0, Ordering::Relaxed);
        was > unix_now()
    }

    /// When the running pause ends (RFC 3339, UTC), if one runs.
    pub fn until(&self) -> Option<String> {
        let until = self.until.load(Ordering::Relaxed);
        if !self.active_at(unix_now()) {
            return None;
        }
        rfc3339(until)
    }
}

/// Unix seconds as RFC 3339 in UTC.
pub fn rfc3339(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_runs_until_its_end_and_can_be_ended_early() {
        let p = Pause::new();
        assert!(!p.active());
        assert_eq!(p.until(), None);
        let until = p.start(Duration::from_secs(15 * 60));
        assert!(p.active());
        assert!(p.active_at(until - 1));
        assert!(!p.active_at(until), "it ends at its end time");
        assert!(p.until().is_some_and(|u| u.ends_with('Z')));
        assert!(p.end(), "one was running");
        assert!(!p.active());
        assert!(!p.end(), "none left to end");
    }
}
