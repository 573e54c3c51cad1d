//! The `clock` check: is this machine's clock plausible for the times signed policy and the device
//! CA depend on — not before the bundle's `issued_at` or the CA's `not_before`, not past their
//! expiry, and in step with the agent's own `started_at` + `uptime_secs`. Pure arithmetic on the
//! status; it must not set the clock.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{Check, Status};

/// How far the agent's view may drift from ours before it is reported.
pub const SKEW: Duration = Duration::minutes(5);

const FIX: &str = "set the clock right: sudo timedatectl set-ntp true (or your OS's time settings)";

fn at(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// The check from the status, the device CA's validity window, at `now`.
pub fn check(
    status: &Value,
    ca: Option<(OffsetDateTime, OffsetDateTime)>,
    now: OffsetDateTime,
) -> Check {
    let b = &status["policy"]["bundle"];
    let issued = at(&b["issued_at"]);
    let expires = at(&b["expires_at"]);
    let agent_now = at(&status["started_at"])
        .zip(status["uptime_secs"].as_i64())
        .map(|(s, u)| s + Duration::seconds(u));
    let fmt = |t: OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .format(&Rfc3339)
            .unwrap_or_default()
    };
    let details = json!({"now": fmt(now), "bundle_issued_at": b["issued_at"],
        "bundle_expires_at": b["expires_at"], "agent_now": agent_now.map(fmt),
        "ca_not_before": ca.map(|c| fmt(c.0)), "ca_not_after": ca.map(|c| fmt(c.1))});
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    if let Some(i) = issued.filter(|i| *i > now + SKEW) {
        fails.push(format!(
            "the policy bundle was issued at {}, after this clock's {}: the clock is behind",
            fmt(i),
            fmt(now)
        ));
    }
    if let Some((from, _)) = ca.filter(|c| c.0 > now) {
        fails.push(format!(
            "the device CA is valid only from {}: the clock is behind",
            fmt(from)
        ));
    }
    if let Some((_, to)) = ca.filter(|c| c.1 <= now) {
        fails.push(format!(
            "the device CA expired at {} by this clock",
            fmt(to)
        ));
    }
    if let Some(e) = expires.filter(|e| *e <= now) {
        warns.push(format!(
            "the policy bundle expired at {} by this clock (see the policy check)",
            fmt(e)
        ));
    }
    if let Some(a) = agent_now.filter(|a| (*a - now).abs() > SKEW) {
        warns.push(format!(
            "the agent's clock reads {} while this one reads {}: the time changed since it started",
            fmt(a),
            fmt(now)
        ));
    }
    if !fails.is_empty() {
        fails.extend(warns);
        return Check::new("clock", Status::Fail, fails.join("; "))
            .fix(FIX)
            .details(details);
    }
    if !warns.is_empty() {
        return Check::new("clock", Status::Warn, warns.join("; "))
            .fix(FIX)
            .details(details);
    }
    Check::new(
        "clock",
        Status::Pass,
        format!(
            "{} is within the policy bundle's and the device CA's validity",
            fmt(now)
        ),
    )
    .details(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn status() -> Value {
        json!({"started_at": "2026-12-02T11:00:00Z", "uptime_secs": 3600,
               "policy": {"bundle": {"issued_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-09T00:00:00Z"}}})
    }

    fn ca() -> Option<(OffsetDateTime, OffsetDateTime)> {
        Some((t("2026-01-01T00:00:00Z"), t("2036-01-01T00:00:00Z")))
    }

    #[test]
    fn a_sane_clock_passes() {
        assert_eq!(
            check(&status(), ca(), t("2026-12-02T12:00:30Z")).status,
            Status::Pass
        );
    }

    #[test]
    fn a_bundle_issued_in_the_future_means_the_clock_is_behind() {
        let c = check(&status(), ca(), t("2026-11-30T12:00:00Z"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("clock is behind"));
    }

    #[test]
    fn a_ca_not_yet_valid_fails() {
        let c = check(&json!({}), ca(), t("2025-06-01T00:00:00Z"));
        assert_eq!(c.status, Status::Fail);
    }

    #[test]
    fn drift_from_the_agent_warns() {
        let c = check(&status(), ca(), t("2026-12-02T13:00:00Z"));
        assert_eq!(c.status, Status::Warn);
        assert!(c.summary.contains("agent's clock"));
    }
}
