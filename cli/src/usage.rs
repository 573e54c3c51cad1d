//! `airlock usage`: requests, tokens and cost from the journal, grouped by provider, model, app,
//! user or day, over a time range — a user sees their own, root and the agent's user everyone's
//! (the control API decides). It reads the journal's rows through [`crate::journal`]; it must not
//! write anything.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::journal::{rows_since, RowSource};

/// What `--by` groups on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// The provider.
    Provider,
    /// The model asked for.
    Model,
    /// The client executable.
    App,
    /// The OS user.
    User,
    /// The UTC day the request started.
    Day,
}

/// One group's sums.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Sums {
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// USD of the priced requests.
    pub cost_usd: f64,
    /// Requests without a price (their cost is not in `cost_usd`).
    pub unpriced: u64,
    /// Requests refused by Airlock.
    pub refused: u64,
}

fn key(by: By, b: &serde_json::Value) -> String {
    let text = |k: &str| b[k].as_str().unwrap_or("(unknown)").to_string();
    match by {
        By::Provider => text("provider"),
        By::Model => text("model"),
        By::App => text("app"),
        By::User => text("user"),
        By::Day => b["started_at"]
            .as_str()
            .and_then(|t| t.get(..10))
            .unwrap_or("(unknown)")
            .to_string(),
    }
}

/// Groups request rows (events are skipped).
pub fn group(by: By, rows: &[serde_json::Value]) -> BTreeMap<String, Sums> {
    let mut out: BTreeMap<String, Sums> = BTreeMap::new();
    for b in rows {
        if b.get("event").is_some() {
            continue;
        }
        let s = out.entry(key(by, b)).or_default();
        s.requests += 1;
        s.input_tokens += b["usage"]["input_tokens"].as_u64().unwrap_or(0);
        s.output_tokens += b["usage"]["output_tokens"].as_u64().unwrap_or(0);
        match b["cost_usd"].as_f64() {
            Some(c) => s.cost_usd += c,
            None => s.unpriced += 1,
        }
        if b["outcome"] == "rejected" {
            s.refused += 1;
        }
    }
    out
}

/// Runs `airlock usage`.
pub fn run(src: RowSource, by: By, since: Duration, json: bool) -> Result<ExitCode> {
    let rows = rows_since(&src, Some(since))?;
    let groups = group(by, &rows);
    if json {
        let list: Vec<serde_json::Value> = groups
            .iter()
            .map(|(k, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["key"] = serde_json::json!(k);
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"by": format!("{by:?}").to_lowercase(),
                "since_secs": since.as_secs(), "groups": list})
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if groups.is_empty() {
        println!("no requests in the last {}", words(since));
        return Ok(ExitCode::SUCCESS);
    }
    let mut sorted: Vec<(&String, &Sums)> = groups.iter().collect();
    if by != By::Day {
        sorted.sort_by(|a, b| {
            b.1.cost_usd
                .total_cmp(&a.1.cost_usd)
                .then(b.1.requests.cmp(&a.1.requests))
        });
    }
    let width = sorted
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$}  {:>9}  {:>12}  {:>12}  {:>11}  {:>8}",
        format!("{by:?}").to_uppercase(),
        "REQUESTS",
        "INPUT TOK",
        "OUTPUT TOK",
        "COST USD",
        "REFUSED"
    );
    let mut total = Sums::default();
    for (k, s) in &sorted {
        println!(
            "{k:<width$}  {:>9}  {:>12}  {:>12}  {:>11}  {:>8}",
            s.requests,
            s.input_tokens,
            s.output_tokens,
            format!("{:.4}{}", s.cost_usd, if s.unpriced > 0 { "*" } else { "" }),
            s.refused
        );
        total.requests += s.requests;
        total.input_tokens += s.input_tokens;
        total.output_tokens += s.output_tokens;
        total.cost_usd += s.cost_usd;
        total.unpriced += s.unpriced;
        total.refused += s.refused;
    }
    println!(
        "{:<width$}  {:>9}  {:>12}  {:>12}  {:>11}  {:>8}",
        "TOTAL",
        total.requests,
        total.input_tokens,
        total.output_tokens,
        format!("{:.4}", total.cost_usd),
        total.refused
    );
    if total.unpriced > 0 {
        println!("* {} requests have no price (their model is not in the price table); their cost is not included", total.unpriced);
    }
    Ok(ExitCode::SUCCESS)
}

fn words(d: Duration) -> String {
    let s = d.as_secs();
    if s % 86_400 == 0 {
        format!("{} days", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{} hours", s / 3600)
    } else {
        format!("{} minutes", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_and_sum_with_unpriced_kept_apart() {
        let rows = vec![
            serde_json::json!({"provider": "openai", "model": "gpt-4o", "app": "python3", "user": "alice",
                "started_at": "2026-12-01T10:00:00Z", "usage": {"input_tokens": 10, "output_tokens": 5}, "cost_usd": 0.5, "outcome": "completed"}),
            serde_json::json!({"provider": "openai", "model": "gpt-4o", "app": "node", "user": "bob",
                "started_at": "2026-12-02T10:00:00Z", "usage": {"input_tokens": 1, "output_tokens": 1}, "cost_usd": null, "outcome": "completed"}),
            serde_json::json!({"provider": "anthropic", "model": "claude", "started_at": "2026-12-02T11:00:00Z",
                "cost_usd": 0.0, "outcome": "rejected"}),
            serde_json::json!({"event": "policy_applied"}),
        ];
        let g = group(By::Provider, &rows);
        assert_eq!(g.len(), 2);
        let o = &g["openai"];
        assert_eq!(
            (o.requests, o.input_tokens, o.output_tokens, o.unpriced),
            (2, 11, 6, 1)
        );
        assert!((o.cost_usd - 0.5).abs() < 1e-9);
        assert_eq!(g["anthropic"].refused, 1);
        let d = group(By::Day, &rows);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["2026-12-01", "2026-12-02"]);
        assert_eq!(group(By::App, &rows)["(unknown)"].requests, 1);
    }
}
