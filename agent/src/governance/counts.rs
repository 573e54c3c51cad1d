//! The counts behind one budget scope ([`Account`]: spend in the window, and what requests in
//! flight have reserved) and one rate-limit scope ([`Flow`]: admissions in the last minute, hour
//! and day, and requests in flight). Every deque holds only what its window still counts, so a
//! check costs the same however long the agent has run. It must not decide which rules apply.

use std::collections::VecDeque;

use super::window::Span;
use crate::policy::budgets::RateLimitPolicy;

/// Spend and reservations of one budget scope.
#[derive(Debug, Default)]
pub(super) struct Account {
    /// (at, tokens, usd), oldest first.
    spent: VecDeque<(i64, u64, f64)>,
    sum_tokens: u64,
    sum_usd: f64,
    pub(super) reserved_tokens: u64,
    pub(super) reserved_usd: f64,
}

impl Account {
    /// Forgets spend from before `start`.
    pub(super) fn age_out(&mut self, start: i64) {
        while let Some(&(at, t, u)) = self.spent.front() {
            if at >= start {
                break;
            }
            self.spent.pop_front();
            self.sum_tokens = self.sum_tokens.saturating_sub(t);
            self.sum_usd = (self.sum_usd - u).max(0.0);
        }
    }

    /// Tokens spent in the window (after [`Account::age_out`]).
    pub(super) fn used_tokens(&self, _start: i64) -> u64 {
        self.sum_tokens
    }

    /// USD spent in the window (after [`Account::age_out`]).
    pub(super) fn used_usd(&self, _start: i64) -> f64 {
        self.sum_usd
    }

    pub(super) fn reserve(&mut self, tokens: u64, usd: f64) {
        self.reserved_tokens = self.reserved_tokens.saturating_add(tokens);
        self.reserved_usd += usd;
    }

    pub(super) fn unreserve(&mut self, tokens: u64, usd: f64) {
        self.reserved_tokens = self.reserved_tokens.saturating_sub(tokens);
        self.reserved_usd = (self.reserved_usd - usd).max(0.0);
    }

    pub(super) fn spend(&mut self, at: i64, tokens: u64, usd: f64) {
        // Keep the deque in time order even when the clock steps back.
        let at = self.spent.back().map_or(at, |&(last, _, _)| at.max(last));
        self.spent.push_back((at, tokens, usd));
        self.sum_tokens = self.sum_tokens.saturating_add(tokens);
        self.sum_usd += usd;
    }

    /// When the oldest spend leaves a rolling window.
    pub(super) fn frees_at(&self, span: &Span) -> Option<i64> {
        self.spent.front().map(|&(at, _, _)| span.ages_out_at(at))
    }
}

/// Admissions of one window: (at, tokens, admission number), oldest first, with their token sum.
#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<(i64, u64, u64)>,
    tokens: u64,
}

impl Recent {
    fn prune(&mut self, since: i64) {
        while let Some(&(at, t, _)) = self.events.front() {
            if at > since {
                break;
            }
            self.events.pop_front();
            self.tokens = self.tokens.saturating_sub(t);
        }
    }

    fn push(&mut self, at: i64, tokens: u64, n: u64) {
        let at = self.events.back().map_or(at, |&(last, _, _)| at.max(last));
        self.events.push_back((at, tokens, n));
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// Replaces the estimate counted for admission `n` (if still in the window) with `tokens`.
    fn correct(&mut self, n: u64, tokens: u64) {
        // Admission numbers only grow, so the deque is sorted by them.
        if let Ok(i) = self.events.binary_search_by_key(&n, |&(_, _, k)| k) {
            if let Some(e) = self.events.get_mut(i) {
                self.tokens = self.tokens.saturating_sub(e.1).saturating_add(tokens);
                e.1 = tokens;
            }
        }
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Admissions and requests in flight of one rate-limit scope.
#[derive(Debug, Default)]
pub(super) struct Flow {
    windows: [Recent; 3],
    in_flight: u64,
    /// The next admission's number.
    next: u64,
}

/// The three windows a limit may use: (length, requests limit, tokens limit, name).
fn windows(p: &RateLimitPolicy) -> [(i64, Option<u64>, Option<u64>, &'static str); 3] {
    [
        (MINUTE, p.requests_per_minute, p.tokens_per_minute, "minute"),
        (HOUR, p.requests_per_hour, p.tokens_per_hour, "hour"),
        (DAY, p.requests_per_day, p.tokens_per_day, "day"),
    ]
}

fn secs_until(at_ms: i64, now: i64) -> u64 {
    u64::try_from((at_ms - now + 999) / 1000)
        .unwrap_or(0)
        .max(1)
}

impl Flow {
    /// `None` if a request estimated at `tokens` may start now; else what is reached and the
    /// seconds until it would fit.
    pub(super) fn check(
        &mut self,
        p: &RateLimitPolicy,
        now: i64,
        tokens: u64,
    ) -> Option<(String, u64)> {
        if let Some(c) = p.concurrency {
            if self.in_flight >= c {
                return Some((
                    format!("{} of {c} requests in flight at once", self.in_flight),
                    1,
                ));
            }
        }
        for (i, (len, requests, token_limit, name)) in windows(p).into_iter().enumerate() {
            let w = &mut self.windows[i];
            w.prune(now - len);
            if let Some(limit) = requests {
                let n = w.events.len() as u64;
                if n >= limit {
                    // The slot frees when the oldest admission that keeps it full leaves.
                    let idx = usize::try_from(n - limit).unwrap_or(0);
                    let at = w.events.get(idx).map_or(now, |&(at, _, _)| at);
                    return Some((
                        format!("{n} of {limit} requests per {name}"),
                        secs_until(at + len, now),
                    ));
                }
            }
            if let Some(limit) = token_limit {
                if w.tokens + tokens > limit {
                    if tokens > limit {
                        return Some((
                            format!("this request alone is estimated at {tokens} tokens, over the {limit} tokens per {name}; ask for fewer output tokens (max_tokens)"),
                            secs_until(now + len, now),
                        ));
                    }
                    let mut freed = 0u64;
                    let mut at = now;
                    for &(t_at, t, _) in &w.events {
                        freed += t;
                        at = t_at;
                        if w.tokens - freed + tokens <= limit {
                            break;
                        }
                    }
                    return Some((
                        format!(
                            "{} of {limit} tokens per {name} (this request needs about {tokens})",
                            w.tokens
                        ),
                        secs_until(at + len, now),
                    ));
                }
            }
        }
        None
    }

    /// Counts an admitted request, estimated at `tokens`; its admission number, for
    /// [`Flow::finish`].
    pub(super) fn start(&mut self, p: &RateLimitPolicy, now: i64, tokens: u64) -> u64 {
        self.in_flight += 1;
        self.count(p, now, tokens)
    }

    fn count(&mut self, p: &RateLimitPolicy, at: i64, tokens: u64) -> u64 {
        let n = self.next;
        self.next += 1;
        for (i, (_, requests, token_limit, _)) in windows(p).into_iter().enumerate() {
            if requests.is_some() || token_limit.is_some() {
                self.windows[i].push(at, tokens, n);
            }
        }
        n
    }

    /// Admission `n` has finished; with `used`, its estimate in the token windows becomes what
    /// it actually used (so a limit counts real tokens, not what admission assumed).
    pub(super) fn finish(&mut self, n: u64, used: Option<u64>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(tokens) = used {
            for w in &mut self.windows {
                w.correct(n, tokens);
            }
        }
    }

    /// Counts a request from before this start (the journal).
    pub(super) fn replay(&mut self, p: &RateLimitPolicy, at: i64, tokens: u64) {
        let _ = self.count(p, at, tokens);
    }

    /// What is left in each window, for `airlock status`.
    pub(super) fn headroom(&mut self, p: &RateLimitPolicy, now: i64) -> serde_json::Value {
        let mut v = serde_json::json!({"in_flight": self.in_flight, "concurrency": p.concurrency});
        for (i, (len, requests, token_limit, name)) in windows(p).into_iter().enumerate() {
            let w = &mut self.windows[i];
            w.prune(now - len);
            if let Some(l) = requests {
                v[format!("requests_per_{name}")] =
                    serde_json::json!({"used": w.events.len(), "limit": l});
            }
            if let Some(l) = token_limit {
                v[format!("tokens_per_{name}")] = serde_json::json!({"used": w.tokens, "limit": l});
            }
        }
        v
    }
}
