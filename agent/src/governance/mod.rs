//! Budgets and rate limits at admission. A policy's `[[budgets]]` and `[[rate_limits]]` compile to
//! [`Rules`]; the counts live in one [`Governance`] per agent, keyed by rule name and scope, so a
//! policy swap that keeps a rule keeps its spend. Admission ([`Governance::admit`]) checks every
//! rule that applies and, only if all pass, reserves the request's estimate in each — under one
//! lock, so concurrent requests can never together overspend beyond what their estimates
//! understated; the returned [`Hold`] settles the reservation with the actual usage when the
//! request's record finishes (whatever the ending). At start the counts are rebuilt from the
//! journal. It owns the arithmetic; the pipeline renders refusals.

pub mod clock;
mod counts;
pub mod rebuild;
mod report;
pub mod window;

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use clock::Clock;
use counts::{Account, Flow};

use crate::policy::budgets::{BudgetPolicy, Dim, Matcher, RateLimitPolicy};
use window::Span;

/// Output tokens reserved for a request that sets no maximum, when the budget says nothing.
pub const DEFAULT_RESERVE_OUTPUT: u64 = 1024;

/// What admission knows about a request.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// Device id.
    pub device: Option<String>,
    /// OS user name.
    pub user: Option<String>,
    /// Client executable name.
    pub app: Option<String>,
    /// Provider.
    pub provider: String,
    /// Model asked for.
    pub model: Option<String>,
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// The request's own output cap (`max_tokens` and kin), if it sets one.
    pub max_output_tokens: Option<u64>,
    /// USD per million input and output tokens, when the model has a price.
    pub price: Option<(f64, f64)>,
}

impl Ask {
    fn value(&self, d: Dim) -> Option<String> {
        match d {
            Dim::Device => self.device.clone(),
            Dim::User => self.user.clone(),
            Dim::App => self.app.clone(),
            Dim::Provider => Some(self.provider.clone()),
            Dim::Model => self.model.clone(),
        }
    }

    /// `user=alice,model=gpt-4o`: the scope's values (`-` where unknown).
    fn key(&self, scope: &[Dim]) -> String {
        scope
            .iter()
            .map(|d| {
                format!(
                    "{}={}",
                    d.as_str(),
                    self.value(*d).unwrap_or_else(|| "-".into())
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Tokens and USD this request is assumed to cost, for a budget reserving `reserve_output`
    /// output tokens when the request sets no cap.
    fn estimate(&self, reserve_output: u64) -> (u64, f64) {
        let out = self.max_output_tokens.unwrap_or(reserve_output);
        let usd = self
            .price
            .map(|(i, o)| (self.input_tokens as f64 * i + out as f64 * o) / 1e6)
            .unwrap_or(0.0);
        (self.input_tokens.saturating_add(out), usd)
    }
}

struct Budget {
    policy: BudgetPolicy,
    matcher: Matcher,
    span: Span,
}

struct Limit {
    policy: RateLimitPolicy,
    matcher: Matcher,
}

/// A policy's budgets and rate limits, compiled.
#[derive(Default)]
pub struct Rules {
    budgets: Vec<Budget>,
    limits: Vec<Limit>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("budgets", &self.budgets.len())
            .field("limits", &self.limits.len())
            .finish()
    }
}

impl Rules {
    /// Compiles checked entries (see `policy::budgets::check_budget`).
    pub fn compile(budgets: &[BudgetPolicy], limits: &[RateLimitPolicy]) -> Rules {
        Rules {
            budgets: budgets
                .iter()
                .map(|b| Budget {
                    matcher: Matcher::compile(&b.matches).unwrap_or_default(),
                    span: Span::new(b.window, b.align, b.timezone.as_deref()),
                    policy: b.clone(),
                })
                .collect(),
            limits: limits
                .iter()
                .map(|l| Limit {
                    matcher: Matcher::compile(&l.matches).unwrap_or_default(),
                    policy: l.clone(),
                })
                .collect(),
        }
    }

    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.limits.is_empty()
    }

    /// Whether a rule counts per user or app, or matches on them (admission must then know the
    /// caller).
    pub fn needs_caller(&self) -> bool {
        let uses = |scope: &[Dim], m: &crate::policy::budgets::MatchPolicy| {
            scope.iter().any(|d| matches!(d, Dim::User | Dim::App))
                || m.user.is_some()
                || m.app.is_some()
        };
        self.budgets
            .iter()
            .any(|b| uses(&b.policy.scope, &b.policy.matches))
            || self
                .limits
                .iter()
                .any(|l| uses(&l.policy.scope, &l.policy.matches))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A budget has no room for it: `budget_exceeded`.
    Budget {
        /// What happened, the budget's use and when it resets.
        message: String,
    },
    /// A rate limit is reached: `rate_limited`, retry after this many seconds.
    RateLimited {
        /// What happened.
        message: String,
        /// Seconds until a slot frees.
        retry_after: u64,
    },
}

/// A budget past its soft threshold after admitting a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Soft {
    /// The budget.
    pub name: String,
    /// Its scope key.
    pub scope: String,
    /// What is left, in words (`12000 tokens, $1.20`).
    pub remaining: String,
    /// Whether this is the first time in this window (a journal event is due).
    pub first: bool,
}

/// What admission reserved, to settle when the request's record finishes.
#[derive(Debug)]
pub struct Hold {
    gov: Arc<Governance>,
    budgets: Vec<(String, String, u64, f64)>,
    /// (limit, scope, admission number).
    limits: Vec<(String, String, u64)>,
    /// Soft thresholds passed.
    pub soft: Vec<Soft>,
    /// The tokens and USD reserved (the largest estimate among the budgets), for the record.
    pub estimate: (u64, f64),
    settled: bool,
}

impl Hold {
    /// Replaces the reservations with the request's actual usage.
    pub fn settle(mut self, tokens: u64, usd: f64) {
        self.settle_inner(tokens, usd, true);
    }

    /// With `actual`, the rate limits' token windows count `tokens` instead of the estimate.
    fn settle_inner(&mut self, tokens: u64, usd: f64, actual: bool) {
        if self.settled {
            return;
        }
        self.settled = true;
        let now = self.gov.clock.now_ms();
        let mut state = lock(&self.gov.state);
        for (name, key, est_tokens, est_usd) in self.budgets.drain(..) {
            if let Some(a) = state.budgets.get_mut(&(name, key)) {
                a.unreserve(est_tokens, est_usd);
                a.spend(now, tokens, usd);
            }
        }
        for (name, key, n) in self.limits.drain(..) {
            if let Some(f) = state.limits.get_mut(&(name, key)) {
                f.finish(n, actual.then_some(tokens));
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Never settled (a path that forgot): release the reservation as if nothing was used,
        // and leave the rate limits counting the estimate.
        self.settle_inner(0, 0.0, false);
    }
}

#[derive(Default)]
struct State {
    budgets: HashMap<(String, String), Account>,
    limits: HashMap<(String, String), Flow>,
    /// (budget, scope, window start) already told about its soft threshold.
    soft_told: std::collections::HashSet<(String, String, i64)>,
}

/// The counts, one per agent.
pub struct Governance {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance").finish()
    }
}

fn tokens_and_usd(tokens: u64, usd: f64, with_usd: bool) -> String {
    if with_usd {
        format!("{tokens} tokens, ${usd:.4}")
    } else {
        format!("{tokens} tokens")
    }
}

impl Governance {
    /// Empty counts on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Governance> {
        Arc::new(Governance {
            state: Mutex::new(State::default()),
            clock,
        })
    }

    /// Now, by the governance clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Admits `ask` under `rules` (reserving its estimate everywhere) or says why not.
    pub fn admit(self: &Arc<Self>, rules: &Rules, ask: &Ask) -> Result<Hold, Refusal> {
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let applies = |m: &Matcher| m.matches(|d| ask.value(d));
        // Rate limits first: a refusal there is temporary, and must not be hidden by a budget.
        let mut limit_keys = Vec::new();
        for l in rules.limits.iter().filter(|l| applies(&l.matcher)) {
            let key = ask.key(&l.policy.scope);
            let flow = state
                .limits
                .entry((l.policy.name.clone(), key.clone()))
                .or_default();
            let (est, _) = ask.estimate(DEFAULT_RESERVE_OUTPUT);
            if let Some((what, retry_after)) = flow.check(&l.policy, now, est) {
                return Err(Refusal::RateLimited {
                    message: format!(
                        "rate limit {:?}{} reached: {what}; retry in {retry_after} s",
                        l.policy.name,
                        scope_words(&key)
                    ),
                    retry_after,
                });
            }
            limit_keys.push((l, key, est));
        }
        let mut budget_keys = Vec::new();
        // A request that names no model (listing models, a file upload) spends no tokens.
        let budgets = rules
            .budgets
            .iter()
            .filter(|b| ask.model.is_some() && applies(&b.matcher));
        for b in budgets {
            let key = ask.key(&b.policy.scope);
            let start = b.span.start(now);
            let account = state
                .budgets
                .entry((b.policy.name.clone(), key.clone()))
                .or_default();
            account.age_out(start);
            let (est_tokens, est_usd) = ask.estimate(
                b.policy
                    .reserve_output_tokens
                    .unwrap_or(DEFAULT_RESERVE_OUTPUT),
            );
            let over_tokens = b.policy.limit_tokens.filter(|lim| {
                account.used_tokens(start) + account.reserved_tokens + est_tokens > *lim
            });
            let over_usd = b.policy.limit_usd.filter(|lim| {
                account.used_usd(start) + account.reserved_usd + est_usd > *lim + 1e-12
            });
            if over_tokens.is_some() || over_usd.is_some() {
                let used = match (over_tokens, over_usd) {
                    (Some(lim), _) => format!(
                        "{} of {lim} tokens used this {}{}",
                        account.used_tokens(start),
                        b.span.name(),
                        reserved_words(account.reserved_tokens, "tokens")
                    ),
                    (None, Some(lim)) => format!(
                        "${:.4} of ${lim:.2} used this {}{}",
                        account.used_usd(start),
                        b.span.name(),
                        if account.reserved_usd > 0.0 {
                            format!(
                                ", ${:.4} reserved by requests in flight",
                                account.reserved_usd
                            )
                        } else {
                            String::new()
                        }
                    ),
                    (None, None) => String::new(),
                };
                let resets = match b.span.resets_at(now) {
                    Some(at) => format!("it resets at {}", b.span.show(at)),
                    None => match account.frees_at(&b.span) {
                        Some(at) => {
                            format!("spend frees up as it ages out, next at {}", b.span.show(at))
                        }
                        None => "spend frees up as requests in flight finish".into(),
                    },
                };
                return Err(Refusal::Budget {
                    message: format!(
                        "budget {:?}{} is used up: {used}; this request needs about {est_tokens} tokens; {resets}",
                        b.policy.name,
                        scope_words(&key)
                    ),
                });
            }
            budget_keys.push((b, key, est_tokens, est_usd, start));
        }
        // Every rule has room: reserve everywhere.
        let mut hold = Hold {
            gov: self.clone(),
            budgets: Vec::new(),
            limits: Vec::new(),
            soft: Vec::new(),
            estimate: (0, 0.0),
            settled: false,
        };
        for (l, key, est) in limit_keys {
            let flow = state
                .limits
                .entry((l.policy.name.clone(), key.clone()))
                .or_default();
            let n = flow.start(&l.policy, now, est);
            hold.limits.push((l.policy.name.clone(), key, n));
        }
        for (b, key, est_tokens, est_usd, start) in budget_keys {
            let account = state
                .budgets
                .entry((b.policy.name.clone(), key.clone()))
                .or_default();
            account.reserve(est_tokens, est_usd);
            let used_tokens = account.used_tokens(start) + account.reserved_tokens;
            let used_usd = account.used_usd(start) + account.reserved_usd;
            if let Some(p) = b.policy.soft_percent {
                let frac = |used: f64, lim: f64| lim > 0.0 && used / lim * 100.0 >= f64::from(p);
                let tok = b
                    .policy
                    .limit_tokens
                    .is_some_and(|l| frac(used_tokens as f64, l as f64));
                let usd = b.policy.limit_usd.is_some_and(|l| frac(used_usd, l));
                if tok || usd {
                    let left_t = b
                        .policy
                        .limit_tokens
                        .map(|l| l.saturating_sub(used_tokens))
                        .unwrap_or(0);
                    let left_u = b
                        .policy
                        .limit_usd
                        .map(|l| (l - used_usd).max(0.0))
                        .unwrap_or(0.0);
                    let first = state
                        .soft_told
                        .insert((b.policy.name.clone(), key.clone(), start));
                    hold.soft.push(Soft {
                        name: b.policy.name.clone(),
                        scope: key.clone(),
                        remaining: tokens_and_usd(left_t, left_u, b.policy.limit_usd.is_some()),
                        first,
                    });
                }
            }
            hold.estimate = (
                hold.estimate.0.max(est_tokens),
                hold.estimate.1.max(est_usd),
            );
            hold.budgets
                .push((b.policy.name.clone(), key, est_tokens, est_usd));
        }
        Ok(hold)
    }

    /// Counts a request that ended before this start (rebuilding from the journal): what it used,
    /// at `at_ms`, against every rule it matches.
    pub fn replay(&self, rules: &Rules, ask: &Ask, at_ms: i64, tokens: u64, usd: f64) {
        let mut state = lock(&self.state);
        let applies = |m: &Matcher| m.matches(|d| ask.value(d));
        for b in rules.budgets.iter().filter(|b| applies(&b.matcher)) {
            state
                .budgets
                .entry((b.policy.name.clone(), ask.key(&b.policy.scope)))
                .or_default()
                .spend(at_ms, tokens, usd);
        }
        for l in rules.limits.iter().filter(|l| applies(&l.matcher)) {
            state
                .limits
                .entry((l.policy.name.clone(), ask.key(&l.policy.scope)))
                .or_default()
                .replay(&l.policy, at_ms, tokens);
        }
    }
}

fn scope_words(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" ({key})")
    }
}

fn reserved_words(n: u64, unit: &str) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} {unit} reserved by requests in flight")
    }
}

#[cfg(test)]
mod tests;
