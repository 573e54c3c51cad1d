//! The settle stage: once a request has ended, its usage is settled — exact when the response carried
//! it and completed, otherwise estimated from the text that went each way and flagged — and then priced
//! ([`CostStage`]) from the price table (the shipped one with the policy's overrides), by the model that
//! actually answered when the response named one (Azure deployments map to their models by policy).
//! Anything without priced usage — a model or an operation with no price (realtime, audio, batch), a
//! response with no usage — is recorded as cost unknown with the reason; it is never counted as free.
//! Requests paid by subscription or seat keep `subscription` (with the API list-price equivalent in the
//! note, when the model has a price) and local model servers keep `local` at zero cost.
//! Budgets settle here too when they land.

use std::collections::BTreeMap;

use super::guard::RequestFacts;
use super::stage::SettleStage;
use crate::pricing::{Cost, PriceTable};
use crate::providers::request::texts;
use crate::providers::response::ResponseSummary;
use crate::record::{CostStatus, Outcome, Record, Usage};

/// Operations whose responses should carry usage; for them a missing usage is estimated.
const METERED: [&str; 11] = [
    "chat_completions",
    "completions",
    "responses",
    "embeddings",
    "messages",
    "generate_content",
    "stream_generate_content",
    "embed_content",
    "chat",
    "generate",
    "embed",
];

/// A rough token count for text when no tokenizer applies (wire-formats.md §10.4: ~4 bytes a token).
fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

fn request_text_tokens(request: &RequestFacts) -> u64 {
    let text_bytes: u64 = request
        .body
        .as_ref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .map(|v| {
            texts(request.api, &request.operation, &v)
                .iter()
                .map(|s| s.len as u64)
                .sum()
        })
        .unwrap_or(0);
    estimate_tokens(text_bytes)
}

/// Exact usage when the response carried it and completed; otherwise an estimate from the text that
/// went each way, flagged as such. A client that left while the provider was working (no status yet)
/// is estimated for its input: the provider had the request.
pub fn settle_usage(
    summary: &ResponseSummary,
    request: &RequestFacts,
    outcome: Outcome,
    status: Option<u16>,
) -> (Option<Usage>, bool) {
    let metered = METERED.contains(&request.operation.as_str());
    if status.is_none() {
        if outcome == Outcome::ClientClosed && metered {
            return (Some(Usage::plain(request_text_tokens(request), 0)), true);
        }
        return (None, false);
    }
    let success = status.is_some_and(|s| (200..300).contains(&s));
    let complete = outcome == Outcome::Completed && summary.terminal;
    match summary.usage {
        Some(u) if complete => (Some(u), false),
        _ if !success || !metered => (summary.usage, false),
        partial => {
            let mut u = partial.unwrap_or_default();
            if u.input_tokens == 0 {
                u.input_tokens = request_text_tokens(request);
            }
            u.output_tokens = u
                .output_tokens
                .max(estimate_tokens(summary.output_text_bytes));
            (Some(u), true)
        }
    }
}

/// Prices finished requests.
#[derive(Debug, Clone)]
pub struct CostStage {
    prices: PriceTable,
    deployments: BTreeMap<String, String>,
}

impl CostStage {
    /// A stage pricing with `prices`, mapping Azure deployments through `deployments`.
    pub fn new(prices: PriceTable, deployments: BTreeMap<String, String>) -> Self {
        CostStage {
            prices,
            deployments,
        }
    }

    /// The model name to price a record by.
    fn model_of<'a>(&'a self, r: &'a Record) -> Option<&'a str> {
        if r.provider == "azure" {
            if let Some(m) = r.model.as_deref().and_then(|d| self.deployments.get(d)) {
                return Some(m.as_str());
            }
        }
        r.response_model.as_deref().or(r.model.as_deref())
    }
}

/// Whose API price list a subscription backend's models are on: the ChatGPT plan's Codex backend
/// serves OpenAI models, Code Assist Google's Gemini models; others (Copilot serves several vendors'
/// models) are looked up under their own name.
fn list_price_provider(provider: &str) -> &str {
    match provider {
        "chatgpt" => "openai",
        "gemini_code_assist" => "gemini",
        other => other,
    }
}

/// Why a record that reached a provider has no usage to price.
fn no_usage_note(r: &Record) -> String {
    let op = r.operation.as_str();
    if !METERED.contains(&op) {
        return format!(
            "Airlock does not meter {op} requests yet, so their cost is unknown; check the provider's usage page"
        );
    }
    match r.status {
        Some(s) if !(200..300).contains(&s) => format!(
            "the provider answered {s} without usage; failed requests are usually not billed, but the cost is unknown"
        ),
        None => "no response arrived, so the cost is unknown".into(),
        Some(_) => "the response carried no usage and none could be estimated".into(),
    }
}

impl SettleStage for CostStage {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn settle(&self, r: &mut Record) {
        match r.cost_status {
            Some(CostStatus::NotBilled) => return,
            Some(CostStatus::Local) => {
                r.cost_usd = Some(0.0);
                return;
            }
            Some(CostStatus::Subscription) => {
                // No per-token charge; say what the same usage would cost on the API, when priced.
                r.cost_usd = None;
                let list = match (r.usage, self.model_of(r)) {
                    (Some(usage), Some(model)) => {
                        match self
                            .prices
                            .cost(list_price_provider(&r.provider), model, &usage)
                        {
                            Cost::Priced { usd, model_key } => Some((usd, model_key)),
                            Cost::Unknown { .. } => None,
                        }
                    }
                    _ => None,
                };
                if let (Some((usd, key)), Some(note)) = (list, r.cost_note.as_mut()) {
                    note.push_str(&format!(
                        "; at API list prices ({key}) it would cost ${usd:.6}"
                    ));
                }
                return;
            }
            _ => {}
        }
        let Some(usage) = r.usage else {
            r.cost_usd = None;
            r.cost_status = Some(CostStatus::Unknown);
            r.cost_note = Some(no_usage_note(r));
            return;
        };
        let Some(model) = self.model_of(r).map(str::to_string) else {
            r.cost_status = Some(CostStatus::Unknown);
            r.cost_note = Some("the request and response named no model to price".into());
            return;
        };
        match self.prices.cost(&r.provider, &model, &usage) {
            Cost::Priced { usd, model_key } => {
                r.cost_usd = Some(usd);
                r.cost_status = Some(if r.usage_estimated {
                    CostStatus::Estimated
                } else {
                    CostStatus::Priced
                });
                r.cost_note = Some(model_key);
            }
            Cost::Unknown { reason } => {
                r.cost_status = Some(CostStatus::Unknown);
                r.cost_note = Some(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(provider: &str, model: &str, status: Option<CostStatus>) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "req_1", "started_at": "2026-12-01T12:00:00Z", "mode": "proxy", "host": "h",
            "provider": provider, "operation": "responses", "model": model, "stream": true,
            "method": "POST", "path": "/", "status": 200, "outcome": "completed", "credential": "oauth",
            "response_model": null, "usage": {"input_tokens": 1000000, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0},
            "usage_estimated": false, "usage_injected": false, "cost_usd": null, "cost_status": null,
            "cost_note": "paid by subscription", "upstream_error": null, "latency_ms": null, "ttfb_ms": null,
            "request_bytes": 0, "response_bytes": 0, "error": null
        }))
        .unwrap();
        r.cost_status = status;
        r
    }

    #[test]
    fn subscriptions_and_local_servers_keep_their_status_and_never_get_a_per_token_cost() {
        let stage = CostStage::new(PriceTable::embedded().unwrap(), BTreeMap::new());
        let mut r = record("chatgpt", "gpt-5", Some(CostStatus::Subscription));
        stage.settle(&mut r);
        assert_eq!(
            (r.cost_status, r.cost_usd),
            (Some(CostStatus::Subscription), None)
        );
        let note = r.cost_note.unwrap();
        assert!(
            note.starts_with(
                "paid by subscription; at API list prices (openai/gpt-5) it would cost $"
            ),
            "{note}"
        );
        let mut r = record("github_copilot", "gpt-4.1", Some(CostStatus::Subscription));
        stage.settle(&mut r);
        assert_eq!(
            r.cost_note.as_deref(),
            Some("paid by subscription"),
            "no price list of its own"
        );
        let mut r = record("ollama", "llama3.2", Some(CostStatus::Local));
        stage.settle(&mut r);
        assert_eq!(
            (r.cost_status, r.cost_usd),
            (Some(CostStatus::Local), Some(0.0))
        );
        let mut r = record("openai", "gpt-5", None);
        stage.settle(&mut r);
        assert_eq!(r.cost_status, Some(CostStatus::Priced));
        assert!(r.cost_usd.unwrap() > 0.0);
    }
}
