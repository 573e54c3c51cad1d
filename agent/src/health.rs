//! The agent's health as people see it (`airlock status`, the tray, `airlock doctor`): `up`, or
//! `degraded` with each reason as a stable code and a sentence saying what to do. It owns the rules
//! that turn the status report's facts (the fleet ledger, the journal, recent outcomes) into
//! reasons; it must not gather those facts itself, so it is tested from plain values. Reasons a
//! client sees better than the agent (whether *this user's* trust stores hold the CA) are the
//! client's to add.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::record::Outcome;

/// A bundle this close to its expiry, with no newer one in, counts as stale.
pub const STALE_BEFORE_EXPIRY: time::Duration = time::Duration::hours(24);
/// Recent requests looked at for a failing upstream.
pub const UPSTREAM_WINDOW: time::Duration = time::Duration::minutes(5);
/// Fewest recent failures that count as a failing upstream (and they must be most of the recent
/// requests).
pub const UPSTREAM_MIN_FAILURES: usize = 3;

/// What [`assess`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The policy section of the status report (the fleet ledger's fields merged in).
    pub policy: &'a Value,
    /// The journal's status (`Null` without a journal).
    pub journal: &'a Value,
    /// Recent finished requests: when each started and how it ended.
    pub recent: &'a [(OffsetDateTime, Outcome)],
    /// Now.
    pub now: OffsetDateTime,
}

fn reason(code: &str, message: String) -> Value {
    json!({"code": code, "message": message})
}

/// `{"state": "up"|"degraded", "reasons": [{"code", "message"}]}`.
pub fn assess(f: Facts<'_>) -> Value {
    let mut reasons = Vec::new();
    policy_reasons(f.policy, f.now, &mut reasons);
    journal_reasons(f.journal, &mut reasons);
    upstream_reasons(f.recent, f.now, &mut reasons);
    json!({
        "state": if reasons.is_empty() { "up" } else { "degraded" },
        "reasons": reasons,
    })
}

fn policy_reasons(p: &Value, now: OffsetDateTime, out: &mut Vec<Value>) {
    if p["expired"] == true {
        out.push(reason(
            "policy_expired",
            "the fleet's policy bundle has expired and no newer one has arrived; check the device \
             can reach the policy URL (`airlock status --json` shows the enrollment) or apply a \
             fresh bundle with `airlock policy apply`"
                .into(),
        ));
    }
    if let Some(why) = p["unavailable"].as_str() {
        out.push(reason(
            "policy_stale",
            format!("the device has no policy it may govern by: {why}"),
        ));
    }
    if let Some(why) = p["enrollment_error"].as_str() {
        out.push(reason(
            "policy_stale",
            format!("the enrollment file is not followed: {why}"),
        ));
    }
    if p["expired"] != true {
        let expires = p["bundle"]["expires_at"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        if let Some(at) = expires.filter(|at| *at - now < STALE_BEFORE_EXPIRY) {
            out.push(reason(
                "policy_stale",
                format!(
                    "policy bundle version {} expires at {} and no newer one has arrived; check \
                     the device can reach the fleet's policy URL",
                    p["version"],
                    at.format(&Rfc3339).unwrap_or_default()
                ),
            ));
        }
    }
    if !p["enrollment"].is_null() && p["bundle"].is_null() && p["unavailable"].is_null() {
        out.push(reason(
            "policy_stale",
            "the device is enrolled but no bundle from its fleet is in force yet".into(),
        ));
    }
}

fn journal_reasons(j: &Value, out: &mut Vec<Value>) {
    let retrying = j["retrying"].as_u64().unwrap_or(0);
    let lost = j["lost"].as_u64().unwrap_or(0);
    if retrying > 0 {
        out.push(reason(
            "journal_failing",
            format!(
                "the journal cannot write ({}); new requests are refused until it can — free disk \
                 space in the state directory",
                j["last_error"].as_str().unwrap_or("unknown error")
            ),
        ));
    } else if lost > 0 {
        out.push(reason(
            "journal_failing",
            format!("{lost} journal rows could not be written; see the agent's log"),
        ));
    }
}

fn upstream_reasons(
    recent: &[(OffsetDateTime, Outcome)],
    now: OffsetDateTime,
    out: &mut Vec<Value>,
) {
    let window: Vec<Outcome> = recent
        .iter()
        .filter(|(at, _)| now - *at <= UPSTREAM_WINDOW)
        .map(|(_, o)| *o)
        .collect();
    let failed = window
        .iter()
        .filter(|o| matches!(o, Outcome::UpstreamFailed | Outcome::Incomplete))
        .count();
    if failed >= UPSTREAM_MIN_FAILURES && failed * 2 > window.len() {
        out.push(reason(
            "upstream_failing",
            format!(
                "{failed} of the last {} requests could not reach their provider; check the \
                 network or the upstream proxy (`airlock requests` shows the errors)",
                window.len()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn codes(v: &Value) -> Vec<&str> {
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect()
    }

    fn assess_with(policy: Value, journal: Value, recent: &[(OffsetDateTime, Outcome)]) -> Value {
        assess(Facts {
            policy: &policy,
            journal: &journal,
            recent,
            now: at("2026-12-02T12:00:00Z"),
        })
    }

    #[test]
    fn a_local_policy_and_a_healthy_journal_are_up() {
        let v = assess_with(
            json!({"name": "default", "bundle": null}),
            json!({"retrying": 0, "lost": 0}),
            &[],
        );
        assert_eq!(v["state"], "up");
        assert!(codes(&v).is_empty());
    }

    #[test]
    fn an_expired_or_unavailable_or_soon_expiring_bundle_degrades() {
        let expired = assess_with(
            json!({"expired": true, "bundle": {"expires_at": "2026-12-01T00:00:00Z"}}),
            Value::Null,
            &[],
        );
        assert_eq!(codes(&expired), ["policy_expired"]);
        assert_eq!(expired["state"], "degraded");
        let soon = assess_with(
            json!({"expired": false, "version": 7, "enrollment": {"fleet": "acme"},
                   "bundle": {"expires_at": "2026-12-02T18:00:00Z"}}),
            Value::Null,
            &[],
        );
        assert_eq!(codes(&soon), ["policy_stale"]);
        assert!(soon["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("version 7"));
        let later = assess_with(
            json!({"enrollment": {"fleet": "acme"}, "bundle": {"expires_at": "2026-12-20T00:00:00Z"}}),
            Value::Null,
            &[],
        );
        assert_eq!(later["state"], "up");
        let waiting = assess_with(
            json!({"enrollment": {"fleet": "acme"}, "bundle": null}),
            Value::Null,
            &[],
        );
        assert_eq!(codes(&waiting), ["policy_stale"]);
        let refusing = assess_with(
            json!({"enrollment": {"fleet": "acme"}, "bundle": null, "unavailable": "no bundle verified"}),
            Value::Null,
            &[],
        );
        assert_eq!(codes(&refusing), ["policy_stale"], "one reason, not two");
    }

    #[test]
    fn a_journal_that_cannot_write_degrades() {
        let v = assess_with(
            json!({}),
            json!({"retrying": 2, "lost": 0, "last_error": "disk full"}),
            &[],
        );
        assert_eq!(codes(&v), ["journal_failing"]);
        assert!(v["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("disk full"));
    }

    #[test]
    fn mostly_failing_recent_requests_mean_a_failing_upstream() {
        let t = at("2026-12-02T11:59:00Z");
        let old = at("2026-12-02T11:00:00Z");
        let fail = |n| vec![(t, Outcome::UpstreamFailed); n];
        assert_eq!(
            codes(&assess_with(json!({}), Value::Null, &fail(3))),
            ["upstream_failing"]
        );
        assert!(
            codes(&assess_with(json!({}), Value::Null, &fail(2))).is_empty(),
            "two are noise"
        );
        let mut mixed = fail(3);
        mixed.extend(vec![(t, Outcome::Completed); 3]);
        assert!(
            codes(&assess_with(json!({}), Value::Null, &mixed)).is_empty(),
            "half is not most"
        );
        let stale = vec![(old, Outcome::UpstreamFailed); 5];
        assert!(
            codes(&assess_with(json!({}), Value::Null, &stale)).is_empty(),
            "old failures age out"
        );
    }
}
