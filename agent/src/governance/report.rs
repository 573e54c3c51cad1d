//! What the counts say, for people: each budget's use, limit and reset and each rate limit's
//! headroom (`airlock status`), and which rules would count a described request (`airlock policy
//! explain`). It must not change a count.

use super::{Ask, Governance, Rules};
use crate::policy::budgets::Matcher;
use crate::sync::lock;

impl Rules {
    /// The budgets and rate limits that would count `ask`, each with its scope key and what it
    /// limits (for `airlock policy explain`): `(kind, name, scope, limits)`.
    pub fn applying(&self, ask: &Ask) -> Vec<(&'static str, String, String, String)> {
        let applies = |m: &Matcher| m.matches(|d| ask.value(d));
        let mut out = Vec::new();
        for b in self
            .budgets
            .iter()
            .filter(|b| ask.model.is_some() && applies(&b.matcher))
        {
            let mut lim = Vec::new();
            if let Some(t) = b.policy.limit_tokens {
                lim.push(format!("{t} tokens"));
            }
            if let Some(u) = b.policy.limit_usd {
                lim.push(format!("${u:.2}"));
            }
            out.push((
                "budget",
                b.policy.name.clone(),
                ask.key(&b.policy.scope),
                format!("{} per {}", lim.join(" and "), b.span.name()),
            ));
        }
        for l in self.limits.iter().filter(|l| applies(&l.matcher)) {
            let p = &l.policy;
            let lim: Vec<String> = [
                (p.requests_per_minute, "requests/minute"),
                (p.requests_per_hour, "requests/hour"),
                (p.requests_per_day, "requests/day"),
                (p.tokens_per_minute, "tokens/minute"),
                (p.tokens_per_hour, "tokens/hour"),
                (p.tokens_per_day, "tokens/day"),
                (p.concurrency, "in flight"),
            ]
            .iter()
            .filter_map(|(v, what)| v.map(|v| format!("{v} {what}")))
            .collect();
            out.push((
                "rate limit",
                p.name.clone(),
                ask.key(&p.scope),
                lim.join(", "),
            ));
        }
        out
    }
}

impl Governance {
    /// Each budget's use and each limit's headroom, for `airlock status`.
    pub fn status(&self, rules: &Rules) -> serde_json::Value {
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let budgets: Vec<serde_json::Value> = rules
            .budgets
            .iter()
            .flat_map(|b| {
                let start = b.span.start(now);
                let mut rows = Vec::new();
                for ((name, key), a) in state.budgets.iter_mut() {
                    if *name != b.policy.name {
                        continue;
                    }
                    a.age_out(start);
                    rows.push(serde_json::json!({
                        "name": name,
                        "scope": key,
                        "window": b.span.name(),
                        "used_tokens": a.used_tokens(start),
                        "used_usd": a.used_usd(start),
                        "reserved_tokens": a.reserved_tokens,
                        "limit_tokens": b.policy.limit_tokens,
                        "limit_usd": b.policy.limit_usd,
                        "resets_at": b.span.resets_at(now).map(|t| b.span.show(t)),
                    }));
                }
                if rows.is_empty() {
                    rows.push(serde_json::json!({
                        "name": b.policy.name, "scope": null, "window": b.span.name(),
                        "used_tokens": 0, "used_usd": 0.0, "reserved_tokens": 0,
                        "limit_tokens": b.policy.limit_tokens, "limit_usd": b.policy.limit_usd,
                        "resets_at": b.span.resets_at(now).map(|t| b.span.show(t)),
                    }));
                }
                rows
            })
            .collect();
        let limits: Vec<serde_json::Value> = rules
            .limits
            .iter()
            .flat_map(|l| {
                state
                    .limits
                    .iter_mut()
                    .filter(|((name, _), _)| *name == l.policy.name)
                    .map(|((name, key), f)| {
                        let mut v = f.headroom(&l.policy, now);
                        v["name"] = serde_json::json!(name);
                        v["scope"] = serde_json::json!(key);
                        v
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        serde_json::json!({"budgets": budgets, "rate_limits": limits})
    }
}
