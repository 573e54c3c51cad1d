//! The menu's information lines, one function each: the budget nearest its limit, the last refused
//! request, the policy's version and age. Pure functions of the status and records, used by
//! [`crate::model`]; they must not decide the state or the actions.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The budget nearest its limit: "gpt-daily: 1.2M of 2M tokens (60%), resets 00:00".
pub(crate) fn closest_budget(s: &Value) -> Option<String> {
    let mut best: Option<(f64, String)> = None;
    for b in s["governance"]["budgets"].as_array().into_iter().flatten() {
        let name = b["name"].as_str().unwrap_or("budget");
        let mut candidates = Vec::new();
        if let Some(l) = b["limit_tokens"].as_f64().filter(|l| *l > 0.0) {
            let used = b["used_tokens"].as_f64().unwrap_or(0.0);
            candidates.push((used / l, format!("{} of {} tokens", short(used), short(l))));
        }
        if let Some(l) = b["limit_usd"].as_f64().filter(|l| *l > 0.0) {
            let used = b["used_usd"].as_f64().unwrap_or(0.0);
            candidates.push((used / l, format!("${used:.2} of ${l:.2}")));
        }
        for (share, text) in candidates {
            if best.as_ref().is_none_or(|(s, _)| share > *s) {
                let resets = b["resets_at"]
                    .as_str()
                    .map(|r| format!(", resets {}", r.get(..16).unwrap_or(r).replace('T', " ")))
                    .unwrap_or_default();
                best = Some((
                    share,
                    format!(
                        "Budget {name}: {text} ({:.0}%){resets}",
                        (share * 100.0).min(999.0)
                    ),
                ));
            }
        }
    }
    best.map(|(_, t)| t)
}

fn short(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// "Last refused: gpt-4.5-preview — <reason>", from the newest refused record.
pub(crate) fn last_refusal(recent: &[Value]) -> Option<String> {
    let r = recent.iter().rev().find(|r| r["outcome"] == "rejected")?;
    let what = r["model"]
        .as_str()
        .or(r["host"].as_str())
        .unwrap_or("a request");
    let why = r["error"].as_str().unwrap_or("refused by policy");
    let why: String = if why.chars().count() > 90 {
        why.chars().take(89).chain(['…']).collect()
    } else {
        why.to_string()
    };
    Some(format!("Last refused: {what} — {why}"))
}

pub(crate) fn policy_line(s: &Value, now: OffsetDateTime) -> String {
    let p = &s["policy"];
    let name = p["name"].as_str().unwrap_or("?");
    let version = p["version"]
        .as_u64()
        .map(|v| format!(" v{v}"))
        .unwrap_or_default();
    let age = p["bundle"]["applied_at"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(|at| format!(", applied {} ago", ago(now - at)))
        .unwrap_or_default();
    format!("Policy: {name}{version}{age}")
}

fn ago(d: time::Duration) -> String {
    let m = d.whole_minutes().max(0);
    match m {
        0 => "just now".into(),
        1..=59 => format!("{m} min"),
        60..=2879 => format!("{} h", m / 60),
        _ => format!("{} days", m / 1440),
    }
}
