//! `airlock requests [-f] [--json]`: the agent's recent requests, oldest first, and with `-f` each
//! new one as it finishes (like `kubectl logs -f`), from the control API with the caller's rights (a
//! user sees their own requests; root and the agent's user see everyone's). Following polls
//! `GET /airlock/v1/requests?after=<last id>`, so nothing is printed twice or skipped while the agent
//! runs, and it waits through an agent restart instead of ending. It must not read the journal (that
//! is `airlock journal export`) nor print anything secret: records never hold credentials or bodies.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::style::{self, Style};
use crate::trust::Agent;
use crate::Session;

/// How often `-f` asks for new requests.
const POLL: Duration = Duration::from_millis(700);
/// Most records asked for in one poll.
const PAGE: usize = 500;

/// `airlock requests` flags.
#[derive(Debug, clap::Args)]
pub struct RequestsArgs {
    /// Keep printing requests as they finish, until interrupted (Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON record per line (JSON Lines), for scripts.
    #[arg(long)]
    pub json: bool,
    /// How many recent requests to show first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Only this provider's requests (openai, anthropic, gemini, …).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only requests for models matching this (a substring).
    #[arg(long)]
    pub model: Option<String>,
    /// Only this app's requests (the client executable's name, e.g. python3, node, curl).
    #[arg(long)]
    pub app: Option<String>,
    /// Only requests that ended this way.
    #[arg(long, value_parser = ["completed", "incomplete", "client_closed", "upstream_failed", "rejected"])]
    pub outcome: Option<String>,
}

impl RequestsArgs {
    fn keeps(&self, r: &Value) -> bool {
        let is = |key: &str, want: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| r[key].as_str().is_some_and(|v| v.eq_ignore_ascii_case(w)))
        };
        is("provider", &self.provider)
            && is("app", &self.app)
            && is("outcome", &self.outcome)
            && self.model.as_deref().is_none_or(|m| {
                r["model"]
                    .as_str()
                    .is_some_and(|v| v.to_lowercase().contains(&m.to_lowercase()))
            })
    }
}

/// Runs `airlock requests`.
pub fn run(ctx: &Session, args: &RequestsArgs) -> Result<ExitCode> {
    let agent = ctx.verified()?;
    let color = !args.json && style::enabled();
    let first = agent.get(&format!("/airlock/v1/requests?limit={}", args.limit.max(1)))?;
    let records = records_of(&first);
    if !args.json && !records.is_empty() {
        outln!("{}", style::paint(color, Style::Dim, HEADER));
    }
    let mut last = records
        .last()
        .and_then(|r| r["id"].as_str())
        .map(str::to_string);
    let mut shown = print(&records, args, color)?;
    if !args.follow {
        if shown == 0 && !args.json {
            eprintln!("{}", nothing_yet(&first));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json && shown == 0 {
        eprintln!("Waiting for requests (Ctrl-C to stop)…");
    }
    let mut agent = agent;
    let mut down = false;
    loop {
        std::thread::sleep(POLL);
        let path = match &last {
            Some(id) => format!("/airlock/v1/requests?limit={PAGE}&after={id}"),
            None => format!("/airlock/v1/requests?limit={PAGE}"),
        };
        match agent.get(&path) {
            Ok(v) => {
                if down {
                    eprintln!("airlock: the agent is back; following its requests again");
                    down = false;
                }
                let new = records_of(&v);
                if let Some(id) = new.last().and_then(|r| r["id"].as_str()) {
                    last = Some(id.to_string());
                }
                if !args.json && shown == 0 && new.iter().any(|r| args.keeps(r)) {
                    outln!("{}", style::paint(color, Style::Dim, HEADER));
                }
                shown += print(&new, args, color)?;
            }
            Err(e) => {
                if !down {
                    eprintln!("airlock: {e:#}\nairlock: waiting for the agent to come back (Ctrl-C to stop)");
                    down = true;
                }
                // A restarted agent is a new process: verify it afresh before believing it.
                if let Ok(Agent::Verified(v)) = ctx.find_agent() {
                    agent = *v;
                    last = None;
                }
            }
        }
    }
}

fn records_of(v: &Value) -> Vec<Value> {
    v["records"].as_array().cloned().unwrap_or_default()
}

fn print(records: &[Value], args: &RequestsArgs, color: bool) -> Result<usize> {
    let mut n = 0;
    for r in records.iter().filter(|r| args.keeps(r)) {
        if args.json {
            outln!("{}", serde_json::to_string(r)?);
        } else {
            outln!("{}", line(r, color));
        }
        n += 1;
    }
    Ok(n)
}

fn nothing_yet(v: &Value) -> String {
    if v["all_users"] == true {
        "No requests yet. Point a tool at the agent (eval \"$(airlock env)\") and make a call."
            .into()
    } else {
        "No requests of yours yet (you see only your own; root sees everyone's). Point a tool at \
         the agent (eval \"$(airlock env)\") and make a call."
            .into()
    }
}

/// The column heads of [`line`].
pub const HEADER: &str =
    "TIME                 OUTCOME           PROVIDER    MODEL                     APP          TOKENS       COST      LATENCY";

/// One record as a line for people: when, how it ended, who asked what, its tokens, cost and
/// latency, and for a refusal or failure, why.
pub fn line(r: &Value, color: bool) -> String {
    let time = r["started_at"]
        .as_str()
        .map(|t| t.get(..19).unwrap_or(t).replace('T', " "))
        .unwrap_or_default();
    let outcome = r["outcome"].as_str().unwrap_or("?");
    let status = r["status"]
        .as_u64()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let shown = format!("{outcome}{status}");
    let tone = match outcome {
        "completed" if r["status"].as_u64().is_some_and(|s| s < 400) => Style::Good,
        "completed" | "client_closed" | "incomplete" => Style::Warn,
        _ => Style::Bad,
    };
    let usage = &r["usage"];
    let tokens = match (
        usage["input_tokens"].as_u64(),
        usage["output_tokens"].as_u64(),
    ) {
        (Some(i), Some(o)) => format!("{i}+{o}"),
        _ => "-".into(),
    };
    let cost = r["cost_usd"]
        .as_f64()
        .map_or_else(|| "-".into(), |c| format!("${c:.4}"));
    let latency = r["latency_ms"]
        .as_f64()
        .map_or_else(|| "-".into(), |ms| format!("{ms:.0} ms"));
    let mut out = format!(
        "{time:<20} {} {:<11} {:<25} {:<12} {tokens:<12} {cost:<9} {latency}",
        style::paint(color, tone, &format!("{shown:<17}")),
        cut(r["provider"].as_str().unwrap_or("-"), 11),
        cut(r["model"].as_str().unwrap_or("-"), 25),
        cut(r["app"].as_str().unwrap_or("-"), 12),
    );
    // Good means it completed with a success status; anything else shows why.
    if let Some(why) = r["error"].as_str().filter(|_| tone != Style::Good) {
        let by = r["decided_by"]
            .as_str()
            .map(|d| format!(" [{d}]"))
            .unwrap_or_default();
        out.push_str(&format!("\n    {}{by}", style::paint(color, tone, why)));
    }
    let hits = r["guardrails"].as_array().map_or(0, Vec::len);
    if hits > 0 {
        let rules: Vec<&str> = r["guardrails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["rule"].as_str())
            .collect();
        out.push_str(&format!("\n    guardrails: {}", rules.join(", ")));
    }
    out
}

/// `s` at most `n` characters, with an ellipsis when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> RequestsArgs {
        RequestsArgs {
            follow: false,
            json: false,
            limit: 20,
            provider: None,
            model: None,
            app: None,
            outcome: None,
        }
    }

    #[test]
    fn a_completed_call_shows_its_tokens_cost_and_latency() {
        let r = json!({"started_at": "2026-12-02T19:58:01.123Z", "outcome": "completed", "status": 200,
                       "provider": "openai", "model": "gpt-4o-mini", "app": "python3",
                       "usage": {"input_tokens": 12, "output_tokens": 5}, "cost_usd": 0.0000048,
                       "latency_ms": 81.6});
        let l = line(&r, false);
        assert!(l.starts_with("2026-12-02 19:58:01  completed 200"), "{l}");
        for part in [
            "openai",
            "gpt-4o-mini",
            "python3",
            "12+5",
            "$0.0000",
            "82 ms",
        ] {
            assert!(l.contains(part), "{part} in {l}");
        }
        assert!(!l.contains('\n'), "one line for a call that worked: {l}");
    }

    #[test]
    fn a_refusal_says_why_and_which_stage_decided() {
        let r = json!({"started_at": "2026-12-02T19:58:01Z", "outcome": "rejected", "status": 403,
                       "provider": "openai", "model": "gpt-4.5-preview",
                       "error": "model gpt-4.5-preview is denied by models.deny rule \"gpt-4.5*\"",
                       "decided_by": "authorize:models"});
        let l = line(&r, false);
        assert!(l.contains("rejected 403"), "{l}");
        assert!(l.contains("\n    model gpt-4.5-preview is denied by models.deny rule \"gpt-4.5*\" [authorize:models]"), "{l}");
        assert!(
            line(&r, true).contains("\x1b[31m"),
            "refusals are red on a terminal"
        );
    }

    #[test]
    fn filters_match_provider_app_outcome_exactly_and_model_by_substring() {
        let r = json!({"provider": "openai", "app": "node", "outcome": "rejected", "model": "gpt-4o-mini"});
        let mut a = args();
        assert!(a.keeps(&r));
        a.model = Some("4O-MINI".into());
        assert!(a.keeps(&r));
        a.provider = Some("anthropic".into());
        assert!(!a.keeps(&r));
        let mut b = args();
        b.outcome = Some("completed".into());
        assert!(!b.keeps(&r));
        b.outcome = Some("rejected".into());
        b.app = Some("node".into());
        assert!(b.keeps(&r));
    }

    #[test]
    fn long_names_are_cut_to_their_column() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
