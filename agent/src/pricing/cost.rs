//! The cost arithmetic: one [`ModelPrice`] and one [`Usage`] → USD.
//!
//! Owns how token classes map to rates (uncached input, cache reads, 5-minute and 1-hour cache writes,
//! text output, reasoning) and the context-length tier choice. It must not look anything up or decide
//! what an unknown model costs; that is the table's job.

use super::ModelPrice;
use crate::record::Usage;

/// The rates that apply to one request, after the tier choice. USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
    reasoning: Option<f64>,
}

/// Base rates, replaced field by field by the highest tier whose threshold `input_tokens` exceeds.
fn rates(price: &ModelPrice, input_tokens: u64) -> Rates {
    let mut r = Rates {
        input: price.input,
        output: price.output,
        cache_read: price.cache_read,
        cache_write: price.cache_write,
        cache_write_1h: price.cache_write_1h,
        reasoning: price.reasoning,
    };
    let tier = price
        .tiers
        .iter()
        .filter(|t| input_tokens > t.above_input_tokens)
        .max_by_key(|t| t.above_input_tokens);
    if let Some(t) = tier {
        r.input = t.input.unwrap_or(r.input);
        r.output = t.output.unwrap_or(r.output);
        r.cache_read = t.cache_read.or(r.cache_read);
        r.cache_write = t.cache_write.or(r.cache_write);
        r.cache_write_1h = t.cache_write_1h.or(r.cache_write_1h);
    }
    r
}

/// USD for `usage` at `price`. Subsets are clamped to their totals, so inconsistent usage can't go negative.
pub(super) fn usd(price: &ModelPrice, usage: &Usage) -> f64 {
    let r = rates(price, usage.input_tokens);
    let writes_1h = usage.cache_write_1h_tokens.min(usage.cache_write_tokens);
    let writes_5m = usage.cache_write_tokens - writes_1h;
    let reasoning = usage.reasoning_tokens.min(usage.output_tokens);
    let text_out = usage.output_tokens - reasoning;

    let cache_read = r.cache_read.unwrap_or(r.input);
    let cache_write = r.cache_write.unwrap_or(r.input);
    let cache_write_1h = r.cache_write_1h.unwrap_or(cache_write);
    let reasoning_rate = r.reasoning.unwrap_or(r.output);

    let per_million = tokens(usage.uncached_input_tokens()) * r.input
        + tokens(usage.cache_read_tokens) * cache_read
        + tokens(writes_5m) * cache_write
        + tokens(writes_1h) * cache_write_1h
        + tokens(text_out) * r.output
        + tokens(reasoning) * reasoning_rate;
    per_million / 1_000_000.0
}

/// Token counts as f64 (exact below 2^53, far beyond any request).
#[allow(clippy::cast_precision_loss)]
fn tokens(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTier;

    fn tiered() -> ModelPrice {
        ModelPrice {
            input: 1.0,
            output: 2.0,
            cache_read: Some(0.1),
            tiers: vec![
                PriceTier {
                    above_input_tokens: 100,
                    input: Some(3.0),
                    ..PriceTier::default()
                },
                PriceTier {
                    above_input_tokens: 1_000,
                    input: Some(5.0),
                    output: Some(7.0),
                    ..PriceTier::default()
                },
            ],
            ..ModelPrice::default()
        }
    }

    #[test]
    fn highest_matching_tier_wins_field_by_field() {
        let p = tiered();
        assert_eq!(rates(&p, 100).input, 1.0);
        let r = rates(&p, 101);
        assert_eq!((r.input, r.output, r.cache_read), (3.0, 2.0, Some(0.1)));
        let r = rates(&p, 5_000);
        assert_eq!((r.input, r.output, r.cache_read), (5.0, 7.0, Some(0.1)));
    }

    #[test]
    fn inconsistent_subsets_are_clamped() {
        let p = ModelPrice {
            input: 1.0,
            output: 1.0,
            ..ModelPrice::default()
        };
        let u = Usage {
            input_tokens: 10,
            cache_write_tokens: 5,
            cache_write_1h_tokens: 50,
            output_tokens: 10,
            reasoning_tokens: 99,
            ..Usage::default()
        };
        // 5 uncached + 5 writes (all 1h) + 10 output (all reasoning), all at 1 per 1M = 20e-6.
        assert!((usd(&p, &u) - 20e-6).abs() < 1e-18);
    }
}
