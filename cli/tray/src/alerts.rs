//! Which desktop notifications to show: a new refused request, a budget passing its soft threshold
//! (its `soft_percent`, else 80 %). Rate-limited to one per kind a minute; what arrives in between is
//! counted and said with the next one ("3 requests refused"). It owns that bookkeeping and is tested
//! with an injected clock; it must not show anything (the caller hands the text to notify-rust).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Least time between two notifications of one kind.
pub const EVERY: Duration = Duration::from_secs(60);

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its title.
    pub summary: String,
    /// Its text.
    pub body: String,
}

#[derive(Debug, Default)]
struct Kind {
    last: Option<Instant>,
    pending: u32,
    latest: Option<String>,
}

/// What has been said so far.
#[derive(Debug, Default)]
pub struct Alerts {
    seen_refusals: BTreeSet<String>,
    primed: bool,
    over_soft: BTreeSet<String>,
    kinds: HashMap<&'static str, Kind>,
}

impl Alerts {
    /// A fresh tracker (the first snapshot only primes it: nothing old is announced).
    pub fn new() -> Alerts {
        Alerts::default()
    }

    /// The alerts for one snapshot of recent records and status, at `now`.
    pub fn update(&mut self, recent: &[Value], status: Option<&Value>, now: Instant) -> Vec<Alert> {
        let mut new_refusals = Vec::new();
        for r in recent.iter().filter(|r| r["outcome"] == "rejected") {
            if let Some(id) = r["id"].as_str() {
                if self.seen_refusals.insert(id.to_string()) && self.primed {
                    new_refusals.push(r);
                }
            }
        }
        let mut crossed = Vec::new();
        for b in status
            .map(|s| &s["governance"]["budgets"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = format!(
                "{}{}",
                b["name"].as_str().unwrap_or("budget"),
                b["scope"]
                    .as_str()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            );
            let soft = b["soft_percent"].as_f64().unwrap_or(80.0) / 100.0;
            let share = share(b);
            if share >= soft {
                if self.over_soft.insert(name.clone()) && self.primed {
                    crossed.push(format!("{name} is at {:.0}% of its limit", share * 100.0));
                }
            } else {
                self.over_soft.remove(&name);
            }
        }
        self.primed = true;
        let mut out = Vec::new();
        if let Some(last) = new_refusals.last() {
            let why = last["error"]
                .as_str()
                .unwrap_or("refused by policy")
                .to_string();
            let n = u32::try_from(new_refusals.len()).unwrap_or(u32::MAX);
            out.extend(self.gate("refused", n, why, now, |n, why| Alert {
                summary: if n == 1 {
                    "Airlock refused a request".into()
                } else {
                    format!("Airlock refused {n} requests")
                },
                body: why.to_string(),
            }));
        }
        if let Some(last) = crossed.last() {
            let n = u32::try_from(crossed.len()).unwrap_or(u32::MAX);
            out.extend(self.gate("budget", n, last.clone(), now, |n, text| Alert {
                summary: if n == 1 {
                    "Budget nearly used".into()
                } else {
                    format!("{n} budgets nearly used")
                },
                body: text.to_string(),
            }));
        }
        out
    }

    /// The alerts held back by the rate limit whose minute is up.
    pub fn flush(&mut self, now: Instant) -> Vec<Alert> {
        let mut out = Vec::new();
        for (kind, k) in &mut self.kinds {
            if k.pending > 0 && k.last.is_none_or(|l| now.duration_since(l) >= EVERY) {
                let n = k.pending;
                k.pending = 0;
                k.last = Some(now);
                let latest = k.latest.take().unwrap_or_default();
                out.push(Alert {
                    summary: match *kind {
                        "refused" => format!("Airlock refused {n} more request{}", plural(n)),
                        _ => format!("{n} more budget{} nearly used", plural(n)),
                    },
                    body: latest,
                });
            }
        }
        out
    }

    fn gate(
        &mut self,
        kind: &'static str,
        n: u32,
        text: String,
        now: Instant,
        make: impl Fn(u32, &str) -> Alert,
    ) -> Option<Alert> {
        let k = self.kinds.entry(kind).or_default();
        if k.last.is_some_and(|l| now.duration_since(l) < EVERY) {
            k.pending += n;
            k.latest = Some(text);
            return None;
        }
        let total = n + k.pending;
        k.pending = 0;
        k.latest = None;
        k.last = Some(now);
        Some(make(total, &text))
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn share(b: &Value) -> f64 {
    let t = match (b["used_tokens"].as_f64(), b["limit_tokens"].as_f64()) {
        (Some(u), Some(l)) if l > 0.0 => u / l,
        _ => 0.0,
    };
    let d = match (b["used_usd"].as_f64(), b["limit_usd"].as_f64()) {
        (Some(u), Some(l)) if l > 0.0 => u / l,
        _ => 0.0,
    };
    t.max(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(id: &str) -> Value {
        json!({"id": id, "outcome": "rejected", "error": format!("{id} denied")})
    }

    #[test]
    fn old_refusals_are_not_announced_new_ones_are_once() {
        let t0 = Instant::now();
        let mut a = Alerts::new();
        assert!(
            a.update(&[refused("r1")], None, t0).is_empty(),
            "the first look only primes"
        );
        let got = a.update(&[refused("r1"), refused("r2")], None, t0);
        assert_eq!(
            got,
            [Alert {
                summary: "Airlock refused a request".into(),
                body: "r2 denied".into()
            }]
        );
        assert!(
            a.update(&[refused("r1"), refused("r2")], None, t0 + EVERY * 2)
                .is_empty(),
            "said once"
        );
    }

    #[test]
    fn within_a_minute_refusals_are_counted_and_said_together_later() {
        let t0 = Instant::now();
        let mut a = Alerts::new();
        a.update(&[], None, t0);
        assert_eq!(a.update(&[refused("a")], None, t0).len(), 1);
        let t1 = t0 + Duration::from_secs(10);
        assert!(a
            .update(&[refused("a"), refused("b"), refused("c")], None, t1)
            .is_empty());
        assert!(a.flush(t1).is_empty(), "not before the minute is up");
        let later = a.flush(t0 + EVERY);
        assert_eq!(
            later,
            [Alert {
                summary: "Airlock refused 2 more requests".into(),
                body: "c denied".into()
            }]
        );
        assert!(a.flush(t0 + EVERY * 3).is_empty());
    }

    #[test]
    fn a_budget_crossing_its_soft_threshold_is_said_once_until_it_drops_back() {
        let t0 = Instant::now();
        let mut a = Alerts::new();
        let s = |used: u64| json!({"governance": {"budgets": [{"name": "team", "limit_tokens": 100, "used_tokens": used, "soft_percent": 75}]}});
        a.update(&[], Some(&s(10)), t0);
        let got = a.update(&[], Some(&s(80)), t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "team is at 80% of its limit");
        assert!(
            a.update(&[], Some(&s(90)), t0 + EVERY * 2).is_empty(),
            "still over: said once"
        );
        a.update(&[], Some(&s(0)), t0 + EVERY * 3);
        assert_eq!(
            a.update(&[], Some(&s(76)), t0 + EVERY * 5).len(),
            1,
            "a new window crosses again"
        );
    }
}
