use std::sync::atomic::{AtomicI64, Ordering};

use super::*;

#[derive(Debug)]
struct Fake(AtomicI64);

impl Clock for Fake {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn gov(at: &str) -> (Arc<Governance>, Arc<Fake>) {
    let ms = at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let clock = Arc::new(Fake(AtomicI64::new(ms)));
    (Governance::new(clock.clone()), clock)
}

fn budget(toml_text: &str) -> BudgetPolicy {
    let b: BudgetPolicy = toml::from_str(toml_text).unwrap();
    crate::policy::budgets::check_budget(&b).unwrap();
    b
}

fn ask(user: &str, input: u64, max_out: Option<u64>) -> Ask {
    Ask {
        device: Some("dev_1".into()),
        user: Some(user.into()),
        app: Some("python3.11".into()),
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        input_tokens: input,
        max_output_tokens: max_out,
        price: Some((0.15, 0.6)),
    }
}

#[test]
fn concurrent_requests_cannot_together_overspend() {
    let (g, _) = gov("2026-12-01T10:00:00Z");
    let rules = Rules::compile(
        &[budget(
            "name = \"b\"\nscope = [\"user\"]\nlimit_tokens = 1000\nwindow = \"day\"\n",
        )],
        &[],
    );
    // Each asks for 100 in + 100 out = 200: five fit, the sixth does not while they are in flight.
    let holds: Vec<Hold> = (0..5)
        .map(|_| g.admit(&rules, &ask("alice", 100, Some(100))).unwrap())
        .collect();
    let refused = g.admit(&rules, &ask("alice", 100, Some(100))).unwrap_err();
    let Refusal::Budget { message } = refused else {
        panic!("{refused:?}")
    };
    assert!(
        message.contains("budget \"b\" (user=alice) is used up"),
        "{message}"
    );
    assert!(
        message.contains("1000 tokens reserved by requests in flight"),
        "{message}"
    );
    assert!(
        message.contains("it resets at 2026-12-02T00:00:00+00:00"),
        "{message}"
    );
    // Another user's scope is separate.
    assert!(g.admit(&rules, &ask("bob", 100, Some(100))).is_ok());
    // The five used less than they reserved: room opens up.
    for h in holds {
        h.settle(50, 0.0);
    }
    assert!(g.admit(&rules, &ask("alice", 100, Some(100))).is_ok());
    let st = g.status(&rules);
    let alice = st["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "user=alice")
        .unwrap()
        .clone();
    assert_eq!(alice["used_tokens"], 250);
}

#[test]
fn a_budget_crossed_at_an_exact_request_then_resets_with_the_calendar() {
    let (g, clock) = gov("2026-12-01T22:00:00Z");
    let rules = Rules::compile(
        &[budget(
            "name = \"daily\"\nlimit_tokens = 600\nwindow = \"day\"\ntimezone = \"Europe/Berlin\"\nreserve_output_tokens = 100\n",
        )],
        &[],
    );
    for _ in 0..3 {
        g.admit(&rules, &ask("a", 100, None))
            .unwrap()
            .settle(200, 0.0);
    }
    // 600 used: the fourth is refused, naming the reset at Berlin midnight.
    let Err(Refusal::Budget { message }) = g.admit(&rules, &ask("a", 100, None)) else {
        panic!()
    };
    assert!(
        message.contains("600 of 600 tokens used this day"),
        "{message}"
    );
    assert!(
        message.contains("it resets at 2026-12-02T00:00:00+01:00"),
        "{message}"
    );
    // 23:00 UTC is midnight in Berlin: a new day.
    clock.0.store(
        "2026-12-01T23:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
        Ordering::SeqCst,
    );
    assert!(g.admit(&rules, &ask("a", 100, None)).is_ok());
}

#[test]
fn usd_limits_soft_thresholds_and_rolling_windows() {
    let (g, clock) = gov("2026-12-01T10:00:00Z");
    let rules = Rules::compile(
        &[budget("name = \"usd\"\nlimit_usd = 1.0\nwindow = \"hour\"\nalign = \"rolling\"\nsoft_percent = 50\n")],
        &[],
    );
    let h = g.admit(&rules, &ask("a", 1000, Some(100))).unwrap();
    assert!(h.soft.is_empty());
    h.settle(1100, 0.6);
    let h = g.admit(&rules, &ask("a", 1000, Some(100))).unwrap();
    assert_eq!(h.soft.len(), 1, "past 50 %");
    assert!(h.soft[0].first);
    h.settle(1100, 0.3);
    let again = g.admit(&rules, &ask("a", 1000, Some(100))).unwrap();
    assert!(!again.soft[0].first, "told once per window");
    again.settle(0, 0.2);
    let Err(Refusal::Budget { message }) = g.admit(&rules, &ask("a", 1000, Some(100))) else {
        panic!()
    };
    assert!(
        message.contains("$1.1000 of $1.00 used this hour"),
        "{message}"
    );
    assert!(
        message.contains("ages out, next at 2026-12-01T11:00:00"),
        "{message}"
    );
    // An hour later the first spend has aged out.
    clock.0.fetch_add(3_600_001, Ordering::SeqCst);
    assert!(g.admit(&rules, &ask("a", 1000, Some(100))).is_ok());
}

#[test]
fn rate_limits_count_requests_tokens_and_concurrency_with_retry_after() {
    let (g, clock) = gov("2026-12-01T10:00:00Z");
    let limit: RateLimitPolicy = toml::from_str(
        "name = \"per-app\"\nscope = [\"app\"]\nrequests_per_minute = 3\ntokens_per_minute = 10000\nconcurrency = 2\n",
    )
    .unwrap();
    let rules = Rules::compile(&[], &[limit]);
    let a = g.admit(&rules, &ask("u", 10, Some(10))).unwrap();
    let b = g.admit(&rules, &ask("u", 10, Some(10))).unwrap();
    let Err(Refusal::RateLimited {
        message,
        retry_after,
    }) = g.admit(&rules, &ask("u", 10, Some(10)))
    else {
        panic!()
    };
    assert!(message.contains("2 of 2 requests in flight"), "{message}");
    assert_eq!(retry_after, 1);
    drop(a);
    b.settle(20, 0.0);
    clock.0.fetch_add(10_000, Ordering::SeqCst);
    g.admit(&rules, &ask("u", 10, Some(10)))
        .unwrap()
        .settle(20, 0.0);
    // Three in the minute: the fourth waits until the first (50 s from now) leaves.
    let Err(Refusal::RateLimited {
        message,
        retry_after,
    }) = g.admit(&rules, &ask("u", 10, Some(10)))
    else {
        panic!()
    };
    assert!(message.contains("3 of 3 requests per minute"), "{message}");
    assert_eq!(retry_after, 50);
    clock.0.fetch_add(50_001, Ordering::SeqCst);
    assert!(g.admit(&rules, &ask("u", 10, Some(10))).is_ok());
    // A request too big for the token limit by itself says so.
    let Err(Refusal::RateLimited { message, .. }) = g.admit(&rules, &ask("u", 20_000, Some(10)))
    else {
        panic!()
    };
    assert!(message.contains("alone is estimated"), "{message}");
}

#[test]
fn a_token_rate_limit_counts_what_requests_used_not_what_admission_assumed() {
    let (g, _clock) = gov("2026-12-01T10:00:00Z");
    let limit: RateLimitPolicy =
        toml::from_str("name = \"tpm\"\ntokens_per_minute = 5000\n").unwrap();
    let rules = Rules::compile(&[], &[limit]);
    // Each is estimated at 100 + 1000 tokens: four fit, a fifth would not...
    let held: Vec<Hold> = (0..4)
        .map(|_| g.admit(&rules, &ask("u", 100, Some(1000))).unwrap())
        .collect();
    assert!(g.admit(&rules, &ask("u", 100, Some(1000))).is_err());
    // ...but each used only 150, so once they settle there is room for more.
    for h in held {
        h.settle(150, 0.0);
    }
    assert!(g.admit(&rules, &ask("u", 100, Some(1000))).is_ok());
    let mut report = lock(&g.state);
    let flow = report.limits.values_mut().next().unwrap();
    let left = flow.headroom(&rules.limits[0].policy, g.now_ms());
    assert_eq!(left["tokens_per_minute"]["used"], 4 * 150 + 1100, "{left}");
}

#[test]
fn match_narrows_and_replay_rebuilds_spend() {
    let (g, _) = gov("2026-12-01T10:00:00Z");
    let rules = Rules::compile(
        &[budget("name = \"mini\"\nlimit_tokens = 500\nwindow = \"month\"\nmatch = { model = \"gpt-4o-mini*\" }\n")],
        &[],
    );
    let mut other = ask("a", 10_000, Some(10_000));
    other.model = Some("gpt-4o".into());
    assert!(
        g.admit(&rules, &other).is_ok(),
        "another model is not counted"
    );
    let now = g.now_ms();
    g.replay(&rules, &ask("a", 0, None), now - 1000, 450, 0.0);
    let Err(Refusal::Budget { .. }) = g.admit(&rules, &ask("a", 40, Some(20))) else {
        panic!("replayed spend not counted")
    };
    assert!(Rules::compile(&[], &[]).is_empty());
    assert!(!rules.needs_caller());
}
