//! The `policy` check: is the policy in force fresh and verified. Reads the status `policy` object
//! and the `health.reasons` the agent gives about it; it must not fetch or apply a policy.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Check, Status};

const FIX_FLEET: &str = "check the device reaches the fleet's policy URL (`airlock status --json` \
                         shows the enrollment), or apply a fresh signed bundle with `airlock policy \
                         apply BUNDLE`";

/// The check from the status JSON, at `now`.
pub fn check(status: &Value, now: OffsetDateTime) -> Check {
    let p = &status["policy"];
    let reasons: Vec<&Value> = status["health"]["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|x| x["code"].as_str().is_some_and(|c| c.starts_with("policy_")))
                .collect()
        })
        .unwrap_or_default();
    let expires = p["bundle"]["expires_at"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let details = json!({
        "name": p["name"], "source": p["source"], "fleet": p["fleet"], "version": p["version"],
        "expires_at": p["bundle"]["expires_at"], "expired": p["expired"],
        "unavailable": p["unavailable"], "last_refusal": p["last_refusal"],
        "reasons": reasons,
    });
    let name = p["name"].as_str().unwrap_or("?");
    let expired = p["expired"] == true
        || expires.is_some_and(|at| at <= now)
        || reasons.iter().any(|r| r["code"] == "policy_expired");
    if expired {
        return Check::new(
            "policy",
            Status::Fail,
            format!(
                "policy bundle {name} version {} expired at {}",
                p["version"],
                p["bundle"]["expires_at"].as_str().unwrap_or("?")
            ),
        )
        .fix(FIX_FLEET)
        .details(details);
    }
    if let Some(why) = p["unavailable"].as_str() {
        return Check::new("policy", Status::Fail, format!("no policy in force: {why}"))
            .fix(FIX_FLEET)
            .details(details);
    }
    if let Some(r) = reasons.first() {
        return Check::new(
            "policy",
            Status::Warn,
            format!("stale: {}", r["message"].as_str().unwrap_or("?")),
        )
        .fix(FIX_FLEET)
        .details(details);
    }
    if !p["last_refusal"].is_null() {
        return Check::new(
            "policy",
            Status::Warn,
            format!(
                "{name} in force, but the last bundle offered was refused: {}",
                refusal_text(&p["last_refusal"])
            ),
        )
        .fix("ask the fleet admin to publish a correctly signed, newer bundle")
        .details(details);
    }
    let summary = if p["fleet"].is_null() && p["enrollment"].is_null() {
        format!(
            "{name} from {} (not enrolled in a fleet: the local policy governs)",
            p["source"].as_str().unwrap_or("?")
        )
    } else {
        format!(
            "{name} version {} from fleet {}, verified, expires {}",
            p["version"],
            p["fleet"].as_str().unwrap_or("?"),
            p["bundle"]["expires_at"].as_str().unwrap_or("never")
        )
    };
    Check::new("policy", Status::Pass, summary).details(details)
}

fn refusal_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("reason"))
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-02T12:00:00Z", &Rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn an_unenrolled_agent_passes_with_a_note() {
        let s = json!({"policy": {"name": "airlock-default", "source": "embedded default",
                       "fleet": null, "enrollment": null, "bundle": null, "expired": false,
                       "unavailable": null, "last_refusal": null},
                       "health": {"state": "up", "reasons": []}});
        let c = check(&s, now());
        assert_eq!(c.status, Status::Pass);
        assert!(c.summary.contains("not enrolled"), "{}", c.summary);
    }

    #[test]
    fn an_expired_bundle_fails() {
        let s = json!({"policy": {"name": "acme", "fleet": "acme", "version": 3, "expired": false,
                       "bundle": {"expires_at": "2026-12-02T11:00:00Z"}}});
        let c = check(&s, now());
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.is_some());
    }

    #[test]
    fn the_agents_expired_flag_fails() {
        let s = json!({"policy": {"name": "acme", "expired": true, "bundle": null}});
        assert_eq!(check(&s, now()).status, Status::Fail);
    }

    #[test]
    fn a_stale_reason_warns() {
        let s = json!({"policy": {"name": "acme", "fleet": "acme", "version": 3, "expired": false,
                       "bundle": {"expires_at": "2026-12-02T13:00:00Z"}},
                       "health": {"reasons": [{"code": "policy_stale", "message": "expires soon"},
                                              {"code": "upstream_failing", "message": "x"}]}});
        let c = check(&s, now());
        assert_eq!(c.status, Status::Warn);
        assert!(c.summary.contains("expires soon"));
    }

    #[test]
    fn no_policy_in_force_fails() {
        let s = json!({"policy": {"name": "acme", "unavailable": "no bundle verified"}});
        assert_eq!(check(&s, now()).status, Status::Fail);
    }

    #[test]
    fn a_refused_bundle_warns() {
        let s = json!({"policy": {"name": "acme", "fleet": "acme", "version": 3,
                       "bundle": {"expires_at": "2027-01-01T00:00:00Z"},
                       "last_refusal": {"message": "bad signature"}}});
        let c = check(&s, now());
        assert_eq!(c.status, Status::Warn);
        assert!(c.summary.contains("bad signature"));
    }
}
