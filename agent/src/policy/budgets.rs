//! `[[budgets]]` and `[[rate_limits]]`: spend and request limits, each scoped by any combination
//! of device, user, app, provider and model, and narrowed by globs on those (`match`). It owns the
//! sections' keys and their checks (with the key that is wrong named); the governance module keeps
//! the counts.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a budget or limit is counted per.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// This machine.
    Device,
    /// The OS user whose process sent the request.
    User,
    /// The client executable (`python3.11`, `node`, `curl`).
    App,
    /// The provider of `[[hosts]]`.
    Provider,
    /// The model asked for.
    Model,
}

impl Dim {
    /// As written in policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Device => "device",
            Dim::User => "user",
            Dim::App => "app",
            Dim::Provider => "provider",
            Dim::Model => "model",
        }
    }
}

/// Globs a request must match for a budget or limit to apply (all given ones).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MatchPolicy {
    /// Device id glob.
    #[serde(default)]
    pub device: Option<String>,
    /// User name glob.
    #[serde(default)]
    pub user: Option<String>,
    /// App (executable name) glob.
    #[serde(default)]
    pub app: Option<String>,
    /// Provider glob.
    #[serde(default)]
    pub provider: Option<String>,
    /// Model glob.
    #[serde(default)]
    pub model: Option<String>,
}

/// Budget windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// An hour.
    Hour,
    /// A day.
    Day,
    /// A week (calendar weeks start on Monday).
    Week,
    /// A month (rolling: 30 days).
    Month,
}

/// How a window is laid on the clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// The calendar's hours, days, weeks and months in `timezone`: spend resets at their start.
    #[default]
    Calendar,
    /// The last hour, day, week or 30 days: spend frees up as it ages out.
    Rolling,
}

/// One `[[budgets]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetPolicy {
    /// Its name, in refusals and `airlock status`.
    pub name: String,
    /// Counted separately per each combination of these (empty: one count for the machine).
    #[serde(default)]
    pub scope: Vec<Dim>,
    /// Only requests matching these globs count.
    #[serde(default, rename = "match")]
    pub matches: MatchPolicy,
    /// Tokens (input + output) allowed per window.
    #[serde(default)]
    pub limit_tokens: Option<u64>,
    /// USD allowed per window (requests whose model has no price count their tokens only).
    #[serde(default)]
    pub limit_usd: Option<f64>,
    /// The window.
    pub window: Window,
    /// Calendar-aligned (default) or rolling.
    #[serde(default)]
    pub align: Align,
    /// IANA time zone of calendar windows (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Past this percentage of a limit, responses carry `x-airlock-budget-remaining` and the
    /// journal gets a `budget_soft_limit` event.
    #[serde(default)]
    pub soft_percent: Option<u8>,
    /// Output tokens reserved for a request that sets no `max_tokens` (default 1024).
    #[serde(default)]
    pub reserve_output_tokens: Option<u64>,
}

/// One `[[rate_limits]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// Its name, in refusals and `airlock status`.
    pub name: String,
    /// Counted separately per each combination of these (empty: one count for the machine).
    #[serde(default)]
    pub scope: Vec<Dim>,
    /// Only requests matching these globs count.
    #[serde(default, rename = "match")]
    pub matches: MatchPolicy,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Requests per hour.
    #[serde(default)]
    pub requests_per_hour: Option<u64>,
    /// Requests per day.
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    /// Tokens (input + output) per minute: the estimate at admission, replaced by what the request
    /// used once it ends.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per hour.
    #[serde(default)]
    pub tokens_per_hour: Option<u64>,
    /// Tokens per day.
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrency: Option<u64>,
}

/// A compiled `match`.
#[derive(Debug, Clone, Default)]
pub struct Matcher(BTreeMap<Dim, GlobMatcher>);

impl Matcher {
    /// Compiles the globs; an error names the dimension.
    pub fn compile(m: &MatchPolicy) -> Result<Matcher, (String, String)> {
        let mut out = BTreeMap::new();
        for (dim, glob) in [
            (Dim::Device, &m.device),
            (Dim::User, &m.user),
            (Dim::App, &m.app),
            (Dim::Provider, &m.provider),
            (Dim::Model, &m.model),
        ] {
            if let Some(g) = glob {
                let matcher = GlobBuilder::new(g)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        (
                            dim.as_str().to_string(),
                            format!("{g:?} is not a glob ({e})"),
                        )
                    })?
                    .compile_matcher();
                out.insert(dim, matcher);
            }
        }
        Ok(Matcher(out))
    }

    /// Whether a request with these values matches (a value the request lacks never matches a glob).
    pub fn matches(&self, value: impl Fn(Dim) -> Option<String>) -> bool {
        self.0
            .iter()
            .all(|(dim, g)| value(*dim).is_some_and(|v| g.is_match(v)))
    }
}

/// Checks a budget entry; the error names the key under `budgets[i]` and what is wrong.
pub fn check_budget(b: &BudgetPolicy) -> Result<(), (String, String)> {
    if b.name.trim().is_empty() {
        return Err(("name".into(), "a budget needs a name".into()));
    }
    if b.limit_tokens.is_none() && b.limit_usd.is_none() {
        return Err((
            "limit_tokens".into(),
            "a budget needs limit_tokens, limit_usd or both".into(),
        ));
    }
    if let Some(usd) = b.limit_usd {
        if !usd.is_finite() || usd < 0.0 {
            return Err((
                "limit_usd".into(),
                "limit_usd must be a non-negative number".into(),
            ));
        }
    }
    if let Some(p) = b.soft_percent {
        if p == 0 || p > 100 {
            return Err((
                "soft_percent".into(),
                "soft_percent must be between 1 and 100".into(),
            ));
        }
    }
    if let Some(tz) = &b.timezone {
        if jiff::tz::TimeZone::get(tz).is_err() {
            return Err((
                "timezone".into(),
                format!("{tz:?} is not an IANA time zone (like \"Europe/Berlin\" or \"America/New_York\")"),
            ));
        }
        if b.align == Align::Rolling {
            return Err((
                "timezone".into(),
                "a rolling window has no time zone; remove it or use align = \"calendar\"".into(),
            ));
        }
    }
    Matcher::compile(&b.matches).map_err(|(k, m)| (format!("match.{k}"), m))?;
    Ok(())
}

/// Checks a rate limit entry, like [`check_budget`].
pub fn check_rate_limit(r: &RateLimitPolicy) -> Result<(), (String, String)> {
    if r.name.trim().is_empty() {
        return Err(("name".into(), "a rate limit needs a name".into()));
    }
    let any = [
        r.requests_per_minute,
        r.requests_per_hour,
        r.requests_per_day,
        r.tokens_per_minute,
        r.tokens_per_hour,
        r.tokens_per_day,
        r.concurrency,
    ];
    if any.iter().all(Option::is_none) {
        return Err((
            "requests_per_minute".into(),
            "a rate limit needs at least one of requests_per_minute/hour/day, tokens_per_minute/hour/day or concurrency".into(),
        ));
    }
    if any.contains(&Some(0)) {
        return Err(("requests_per_minute".into(), "a limit of 0 refuses everything; use [models] or blocked_hosts to refuse, or remove the limit".into()));
    }
    Matcher::compile(&r.matches).map_err(|(k, m)| (format!("match.{k}"), m))?;
    Ok(())
}
