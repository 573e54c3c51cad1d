//! Spend and limits survive a restart: at start the counts are rebuilt from the journal's rows of
//! the last 32 days (the longest window, a calendar month, and a day). A finished request counts
//! what it used; one the agent was stopped or killed in the middle of counts what it reserved
//! (its provider may have served it). It must not write the journal.

use super::{Ask, Governance, Rules};
use crate::journal::read::{export, next_page};
use crate::journal::Kind;

/// Days of rows replayed.
const DAYS: i64 = 32;
/// Rows read per page.
const PAGE: usize = 10_000;

/// Replays the journal into `gov` under `rules`; the number of requests counted.
pub fn from_journal(
    gov: &Governance,
    rules: &Rules,
    conn: &rusqlite::Connection,
) -> rusqlite::Result<u64> {
    if rules.is_empty() {
        return Ok(0);
    }
    let since = gov.now_ms() - DAYS * 86_400_000;
    let mut after = 0;
    let mut counted = 0u64;
    loop {
        let rows = export(conn, since, after, PAGE, None)?;
        let next = next_page(&rows, PAGE);
        for r in rows {
            let b = &r.body;
            let (tokens, usd) = match r.kind {
                Kind::End => (
                    b["usage"]["input_tokens"].as_u64().unwrap_or(0)
                        + b["usage"]["output_tokens"].as_u64().unwrap_or(0),
                    b["cost_usd"].as_f64().unwrap_or(0.0),
                ),
                Kind::Begin => (
                    b["reserved"]["tokens"].as_u64().unwrap_or(0),
                    b["reserved"]["usd"].as_f64().unwrap_or(0.0),
                ),
                Kind::Event => continue,
            };
            let text = |k: &str| b[k].as_str().map(str::to_string);
            let ask = Ask {
                device: text("device"),
                user: text("user"),
                app: text("app"),
                provider: text("provider").unwrap_or_default(),
                model: text("model"),
                ..Ask::default()
            };
            let at = b["started_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or_else(|| gov.now_ms(), |t| t.as_millisecond());
            gov.replay(rules, &ask, at, tokens, usd);
            counted += 1;
        }
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(counted)
}
