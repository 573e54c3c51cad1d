//! The usage view's data: journal rows grouped by model, app and provider (with
//! [`crate::usage::group`], as `airlock usage` groups them) and bucketed by time, turned into the
//! SVG charts of [`super::svg`]. It computes from rows it is given; it must not fetch them.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::svg;
use crate::usage::{group, By};

/// Buckets on the time axis.
pub const BUCKETS: usize = 24;

/// Most series drawn in one line chart (the rest are summed as "other").
const MAX_SERIES: usize = 6;

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_ms(t: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(t, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Tokens and USD per key per bucket, for the `BUCKETS` equal buckets from `from_ms` to `to_ms`.
/// Rows outside the range and events are left out.
pub fn bucket(
    rows: &[Value],
    by: By,
    from_ms: i64,
    to_ms: i64,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let span = (to_ms - from_ms).max(1);
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        if r.get("event").is_some() {
            continue;
        }
        let Some(t) = r["started_at"].as_str().and_then(parse_ms) else {
            continue;
        };
        if t < from_ms || t > to_ms {
            continue;
        }
        let i = usize::try_from((t - from_ms) * BUCKETS as i64 / span)
            .unwrap_or(0)
            .min(BUCKETS - 1);
        let key = group(by, std::slice::from_ref(r))
            .into_keys()
            .next()
            .unwrap_or_default();
        let tokens = r["usage"]["input_tokens"].as_f64().unwrap_or(0.0)
            + r["usage"]["output_tokens"].as_f64().unwrap_or(0.0);
        let cost = r["cost_usd"].as_f64().unwrap_or(0.0);
        let slot = &mut out.entry(key).or_insert_with(|| vec![(0.0, 0.0); BUCKETS])[i];
        slot.0 += tokens;
        slot.1 += cost;
    }
    out
}

/// Labels for the buckets: `HH:MM` for a range up to two days, else `MM-DD`.
fn x_labels(from_ms: i64, to_ms: i64) -> Vec<String> {
    let step = (to_ms - from_ms) / BUCKETS as i64;
    (0..BUCKETS as i64)
        .map(|i| {
            let t = OffsetDateTime::from_unix_timestamp((from_ms + step * i) / 1000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            if to_ms - from_ms <= 2 * 86_400_000 {
                format!("{:02}:{:02}", t.hour(), t.minute())
            } else {
                format!("{:02}-{:02}", u8::from(t.month()), t.day())
            }
        })
        .collect()
}

/// The usage view: totals, a bar chart of cost and of tokens per model, app and provider, and
/// tokens and cost over time per model.
pub fn charts(rows: &[Value], from_ms: i64, to_ms: i64) -> Value {
    let mut charts = Vec::new();
    let mut totals = json!({});
    for (by, name) in [
        (By::Model, "model"),
        (By::App, "app"),
        (By::Provider, "provider"),
    ] {
        let groups = group(by, rows);
        if by == By::Model {
            let (req, tok, usd, refused) = groups.values().fold((0, 0, 0.0, 0), |a, s| {
                (
                    a.0 + s.requests,
                    a.1 + s.input_tokens + s.output_tokens,
                    a.2 + s.cost_usd,
                    a.3 + s.refused,
                )
            });
            totals = json!({"requests": req, "tokens": tok, "cost_usd": usd, "refused": refused});
        }
        let mut cost: Vec<(String, f64)> = groups
            .iter()
            .map(|(k, s)| (k.clone(), s.cost_usd))
            .collect();
        let mut tokens: Vec<(String, f64)> = groups
            .iter()
            .map(|(k, s)| (k.clone(), (s.input_tokens + s.output_tokens) as f64))
            .collect();
        cost.sort_by(|a, b| b.1.total_cmp(&a.1));
        tokens.sort_by(|a, b| b.1.total_cmp(&a.1));
        charts.push(json!({"id": format!("cost-by-{name}"), "by": name,
            "svg": svg::bars(&format!("Cost (USD) by {name}"), true, &cost)}));
        charts.push(json!({"id": format!("tokens-by-{name}"), "by": name,
            "svg": svg::bars(&format!("Tokens by {name}"), false, &tokens)}));
    }
    let buckets = bucket(rows, By::Model, from_ms, to_ms);
    let labels = x_labels(from_ms, to_ms);
    for (metric, usd) in [("tokens", false), ("cost", true)] {
        let series = top_series(&buckets, usd);
        let title = if usd {
            "Cost (USD) over time by model (UTC)"
        } else {
            "Tokens over time by model (UTC)"
        };
        charts.insert(
            if usd { 1 } else { 0 },
            json!({"id": format!("{metric}-over-time"), "by": "time", "svg": svg::lines(title, usd, &labels, &series)}),
        );
    }
    json!({"totals": totals, "charts": charts, "from_ms": from_ms, "to_ms": to_ms})
}

/// The biggest series by total, the rest summed as `other`.
fn top_series(buckets: &BTreeMap<String, Vec<(f64, f64)>>, usd: bool) -> Vec<(String, Vec<f64>)> {
    let pick = |v: &(f64, f64)| if usd { v.1 } else { v.0 };
    let mut all: Vec<(String, Vec<f64>)> = buckets
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(pick).collect()))
        .collect();
    all.sort_by(|a, b| b.1.iter().sum::<f64>().total_cmp(&a.1.iter().sum::<f64>()));
    if all.len() > MAX_SERIES {
        let rest = all.split_off(MAX_SERIES - 1);
        let mut other = vec![0.0; BUCKETS];
        for (_, v) in rest {
            for (o, x) in other.iter_mut().zip(v) {
                *o += x;
            }
        }
        all.push(("other".into(), other));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, at: &str, tokens: u64, cost: f64) -> Value {
        json!({"provider": "openai", "model": model, "app": "python3", "started_at": at,
               "usage": {"input_tokens": tokens, "output_tokens": 0}, "cost_usd": cost, "outcome": "completed"})
    }

    #[test]
    fn rows_fall_in_their_time_bucket() {
        let from = parse_ms("2026-12-01T00:00:00Z").unwrap();
        let to = parse_ms("2026-12-02T00:00:00Z").unwrap();
        let rows = vec![
            row("a", "2026-12-01T00:10:00Z", 5, 0.1),
            row("a", "2026-12-01T00:50:00Z", 7, 0.2),
            row("a", "2026-12-01T23:59:00Z", 1, 0.0),
            row("b", "2026-12-01T05:30:00.123Z", 3, 0.0),
            row("b", "2026-11-30T05:30:00Z", 100, 0.0),
            json!({"event": "policy_applied", "started_at": "2026-12-01T01:00:00Z"}),
        ];
        let b = bucket(&rows, By::Model, from, to);
        assert_eq!(b.len(), 2);
        assert_eq!(b["a"][0].0, 12.0);
        assert!((b["a"][0].1 - 0.3).abs() < 1e-9);
        assert_eq!(b["a"][23].0, 1.0);
        assert_eq!(b["b"][5].0, 3.0);
        assert_eq!(
            b["b"].iter().map(|x| x.0).sum::<f64>(),
            3.0,
            "the row before the range is out"
        );
        assert_eq!(x_labels(from, to)[1], "01:00");
    }

    #[test]
    fn charts_have_a_bar_per_model_and_a_line_over_time() {
        let from = parse_ms("2026-12-01T00:00:00Z").unwrap();
        let to = from + 3_600_000;
        let rows = vec![
            row("gpt-4o", "2026-12-01T00:10:00Z", 5, 0.1),
            row("<b>x</b>", "2026-12-01T00:20:00Z", 2, 0.0),
        ];
        let v = charts(&rows, from, to);
        assert_eq!(v["totals"]["requests"], 2);
        assert_eq!(v["totals"]["tokens"], 7);
        let svg = v["charts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "tokens-by-model")
            .unwrap()["svg"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            svg.contains(r#"data-key="gpt-4o""#) && svg.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{svg}"
        );
        assert_eq!(v["charts"][0]["id"], "tokens-over-time");
    }
}
