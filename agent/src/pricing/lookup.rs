//! Which price-table keys may price a `(provider, model)` pair, most specific first.
//!
//! Rules (all case-insensitive): the exact `provider/model`; OpenAI and Anthropic dated snapshots
//! (`-20250929`, `-2024-08-06`) fall back to the undated model; Azure falls back to OpenAI (Azure bills like
//! OpenAI); OpenAI fine-tunes (`ft:<base>:<org>:…`) fall back to `ft:<base>`; OpenRouter's `vendor/model`
//! falls back to the vendor's own table; Gemini's `models/` prefix is dropped. This module must never guess
//! across model families: no prefix matching, no "closest" model, so `gpt-4o-mini` can never be priced as
//! `gpt-4o`.

/// Candidate keys for `provider`'s `model`, in the order they should be tried.
pub(super) fn candidates(provider: &str, model: &str) -> Vec<String> {
    let provider = provider.trim().to_ascii_lowercase();
    let model = model.trim().to_ascii_lowercase();
    let mut out = Vec::with_capacity(4);
    if model.is_empty() {
        return out;
    }
    match provider.as_str() {
        "azure" => {
            native(&mut out, "azure", &model);
            native(&mut out, "openai", &model);
        }
        "openrouter" => {
            push(&mut out, format!("openrouter/{model}"));
            if let Some((vendor, name)) = model.split_once('/') {
                if let Some(own) = openrouter_vendor(vendor) {
                    native(&mut out, own, name);
                    if own == "anthropic" && name.contains('.') {
                        // OpenRouter writes Claude versions with dots (claude-sonnet-4.5), Anthropic with
                        // dashes (claude-sonnet-4-5): the same model, spelled differently.
                        native(&mut out, own, &name.replace('.', "-"));
                    }
                }
            }
        }
        other => native(&mut out, other, &model),
    }
    out
}

/// Keys for a model in a provider's own table.
fn native(out: &mut Vec<String>, provider: &str, model: &str) {
    let model = match provider {
        "gemini" => model.strip_prefix("models/").unwrap_or(model),
        _ => model,
    };
    push(out, format!("{provider}/{model}"));
    if matches!(provider, "openai" | "azure") {
        // A fine-tuned model `ft:<base>:<org>:<name>:<id>` is billed at its base's fine-tune rates.
        if let Some(base) = model
            .strip_prefix("ft:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(base, _)| base)
            .filter(|base| !base.is_empty())
        {
            push(out, format!("{provider}/ft:{base}"));
        }
    }
    if matches!(provider, "openai" | "anthropic" | "azure") {
        if let Some(undated) = strip_date(model) {
            push(out, format!("{provider}/{undated}"));
        }
    }
}

fn push(out: &mut Vec<String>, key: String) {
    if !out.contains(&key) {
        out.push(key);
    }
}

/// Airlock provider for an OpenRouter vendor prefix, when it has a table of its own.
fn openrouter_vendor(vendor: &str) -> Option<&'static str> {
    Some(match vendor {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "google" => "gemini",
        "mistralai" => "mistral",
        "deepseek" => "deepseek",
        "x-ai" => "xai",
        _ => return None,
    })
}

/// `model` without a trailing snapshot date (`-YYYYMMDD` or `-YYYY-MM-DD`), if it has one.
fn strip_date(model: &str) -> Option<&str> {
    let b = model.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11
        && b[n - 11] == b'-'
        && digits(n - 10..n - 6)
        && b[n - 6] == b'-'
        && digits(n - 5..n - 3)
        && b[n - 3] == b'-'
        && digits(n - 2..n)
        && plausible_date(
            &model[n - 10..n - 6],
            &model[n - 5..n - 3],
            &model[n - 2..n],
        )
    {
        return Some(&model[..n - 11]);
    }
    // -YYYYMMDD
    if n > 9
        && b[n - 9] == b'-'
        && digits(n - 8..n)
        && plausible_date(&model[n - 8..n - 4], &model[n - 4..n - 2], &model[n - 2..n])
    {
        return Some(&model[..n - 9]);
    }
    None
}

fn plausible_date(year: &str, month: &str, day: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        year.parse::<u32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return false;
    };
    (2020..2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_snapshot_dates() {
        assert_eq!(
            strip_date("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(strip_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_date("gpt-4o"), None);
        assert_eq!(strip_date("gpt-3.5-turbo-0125"), None);
        assert_eq!(strip_date("model-12345678"), None);
        assert_eq!(strip_date("-20250929"), None);
        assert_eq!(strip_date("x-2024-13-06"), None);
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            candidates("Azure", "GPT-4o-2024-08-06"),
            [
                "azure/gpt-4o-2024-08-06",
                "azure/gpt-4o",
                "openai/gpt-4o-2024-08-06",
                "openai/gpt-4o"
            ]
        );
        assert_eq!(
            candidates("gemini", "models/gemini-2.5-flash"),
            ["gemini/gemini-2.5-flash"]
        );
        assert_eq!(
            candidates("openrouter", "x-ai/grok-4"),
            ["openrouter/x-ai/grok-4", "xai/grok-4"]
        );
        assert_eq!(
            candidates("groq", "llama-3.3-70b-versatile"),
            ["groq/llama-3.3-70b-versatile"]
        );
        assert_eq!(
            candidates("openai", "ft:gpt-4o-mini-2024-07-18:acme:support:AbC123"),
            [
                "openai/ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
                "openai/ft:gpt-4o-mini-2024-07-18"
            ]
        );
        assert_eq!(candidates("openai", "ft:gpt-4o"), ["openai/ft:gpt-4o"]);
        assert!(candidates("openai", "  ").is_empty());
    }
}
