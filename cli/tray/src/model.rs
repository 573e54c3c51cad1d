//! The tray's menu model: what the icon and its menu say for one snapshot of the agent (its status,
//! this user's trust stores, today's spend, recent requests). Pure and GUI-free, so every state —
//! up, each degraded reason, paused, down — is unit-tested without a display; the GUI only renders
//! what this returns. It must not run commands or touch the icon.

use serde_json::Value;

use crate::lines::{closest_budget, last_refusal, policy_line};
use time::OffsetDateTime;

/// What the tray knows at one moment, as `airlock` reported it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `airlock status --json`, or `None` when the agent is not running.
    pub status: Option<Value>,
    /// Why the status is missing (the CLI's words), when it is.
    pub down_reason: Option<String>,
    /// `airlock ca trust-status --json`, when it answered.
    pub trust: Option<Value>,
    /// Today's spend in USD, when the journal answered.
    pub spend_today: Option<f64>,
    /// Recent requests, oldest first (`airlock requests --json`).
    pub recent: Vec<Value>,
}

/// The icon's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Working.
    Up,
    /// Working, but something needs attention: the reasons' codes and sentences.
    Degraded(Vec<(String, String)>),
    /// A pause of interception runs until then.
    Paused(String),
    /// Not running (or not verifiable): why.
    Down(String),
}

impl State {
    /// One word for the tooltip and tests.
    pub fn word(&self) -> &'static str {
        match self {
            State::Up => "up",
            State::Degraded(_) => "degraded",
            State::Paused(_) => "paused",
            State::Down(_) => "down",
        }
    }
}

/// What a menu item does when chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Only shows something.
    None,
    /// `airlock dashboard`.
    OpenDashboard,
    /// The shell setup line onto the clipboard.
    CopyShellSetup,
    /// `airlock pause --minutes N`.
    Pause(u32),
    /// `airlock resume`.
    Resume,
    /// Ends the tray.
    Quit,
}

/// One menu line.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What it says.
    pub label: String,
    /// What choosing it does ([`Action::None`]: a line of information, shown disabled).
    pub action: Action,
}

impl Item {
    fn info(label: impl Into<String>) -> Item {
        Item {
            label: label.into(),
            action: Action::None,
        }
    }

    fn act(label: impl Into<String>, action: Action) -> Item {
        Item {
            label: label.into(),
            action,
        }
    }
}

/// The icon's state, its tooltip and its menu (`None` items are separators).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The state.
    pub state: State,
    /// The tooltip: the state and its first reason.
    pub tooltip: String,
    /// The menu, top to bottom; `None` is a separator.
    pub items: Vec<Option<Item>>,
}

/// The menu's line while the agent is not running.
pub const DOWN_ITEM: &str = "Agent not running — start it: sudo systemctl start airlockd";

/// The shell line "Copy shell setup" puts on the clipboard.
pub const SHELL_SETUP: &str = "eval \"$(airlock env)\"";

/// The model for `snap` at `now`.
pub fn build(snap: &Snapshot, now: OffsetDateTime) -> Model {
    let Some(s) = &snap.status else {
        let why = snap
            .down_reason
            .clone()
            .unwrap_or_else(|| "the agent is not running".into());
        return Model {
            state: State::Down(why.clone()),
            tooltip: format!("Airlock: down — {why}"),
            items: vec![
                Some(Item::info(DOWN_ITEM)),
                None,
                Some(Item::act("Quit", Action::Quit)),
            ],
        };
    };
    let state = state_of(s, snap.trust.as_ref());
    let tooltip = match &state {
        State::Up => "Airlock: up".to_string(),
        State::Degraded(r) => format!(
            "Airlock: degraded — {}",
            r.first().map_or("", |(_, m)| m.as_str())
        ),
        State::Paused(until) => format!("Airlock: interception paused until {until}"),
        State::Down(why) => format!("Airlock: down — {why}"),
    };
    let mut items = vec![Some(Item::info(headline(&state)))];
    if let State::Degraded(reasons) = &state {
        for (code, _) in reasons {
            items.push(Some(Item::info(format!("  {}", reason_words(code)))));
        }
    }
    items.push(None);
    items.push(Some(Item::info(match snap.spend_today {
        Some(usd) => format!("Today: ${usd:.2}"),
        None => "Today: spend unknown".into(),
    })));
    if let Some(b) = closest_budget(s) {
        items.push(Some(Item::info(b)));
    }
    if let Some(r) = last_refusal(&snap.recent) {
        items.push(Some(Item::info(r)));
    }
    items.push(Some(Item::info(policy_line(s, now))));
    items.push(None);
    items.push(Some(Item::act("Open dashboard", Action::OpenDashboard)));
    items.push(Some(Item::act("Copy shell setup", Action::CopyShellSetup)));
    let pause = &s["pause"];
    if matches!(state, State::Paused(_)) {
        items.push(Some(Item::act("Resume interception", Action::Resume)));
    } else if pause["allowed"] == true {
        let minutes = pause["max_minutes"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(15)
            .min(15);
        items.push(Some(Item::act(
            format!("Pause interception for {minutes} minutes"),
            Action::Pause(minutes),
        )));
    }
    items.push(None);
    items.push(Some(Item::act("Quit", Action::Quit)));
    Model {
        state,
        tooltip,
        items,
    }
}

fn state_of(s: &Value, trust: Option<&Value>) -> State {
    if let Some(until) = s["pause"]["paused_until"].as_str() {
        return State::Paused(until.to_string());
    }
    let mut reasons: Vec<(String, String)> = s["health"]["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["code"].as_str().unwrap_or("unknown").to_string(),
                r["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    if let Some(missing) = untrusted_stores(trust) {
        reasons.push((
            "ca_untrusted".into(),
            format!("the device CA is not trusted in {missing}; run `airlock setup`"),
        ));
    }
    if reasons.is_empty() {
        State::Up
    } else {
        State::Degraded(reasons)
    }
}

/// The stores that lack the current CA, from `airlock ca trust-status --json`.
fn untrusted_stores(trust: Option<&Value>) -> Option<String> {
    let stores = trust?["stores"].as_array()?;
    let missing: Vec<&str> = stores
        .iter()
        .filter(|st| st["current"] == false)
        .filter_map(|st| st["store"].as_str())
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn headline(state: &State) -> String {
    match state {
        State::Up => "Airlock: protecting AI traffic".into(),
        State::Degraded(_) => "Airlock: degraded".into(),
        State::Paused(until) => format!("Airlock: paused until {until}"),
        State::Down(_) => "Airlock agent not running".into(),
    }
}

fn reason_words(code: &str) -> &'static str {
    match code {
        "policy_stale" => "Policy stale: no fresh bundle from the fleet",
        "policy_expired" => "Policy expired",
        "upstream_failing" => "Providers unreachable: recent calls failed",
        "journal_failing" => "Journal cannot write: calls are refused",
        "ca_untrusted" => "CA not trusted: run airlock setup",
        _ => "Needs attention: see airlock status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-02T12:00:00Z", &Rfc3339).unwrap()
    }

    fn status() -> Value {
        json!({
            "health": {"state": "up", "reasons": []},
            "pause": {"allowed": false, "max_minutes": 15, "paused_until": null},
            "policy": {"name": "acme", "version": 12, "bundle": {"applied_at": "2026-12-02T09:00:00Z"}},
            "governance": {"budgets": [
                {"name": "team", "limit_tokens": 2_000_000, "used_tokens": 1_200_000, "resets_at": "2026-12-03T00:00:00+01:00"},
                {"name": "usd", "limit_usd": 50.0, "used_usd": 5.0},
            ]},
        })
    }

    fn labels(m: &Model) -> Vec<String> {
        m.items.iter().flatten().map(|i| i.label.clone()).collect()
    }

    fn action(m: &Model, a: Action) -> bool {
        m.items.iter().flatten().any(|i| i.action == a)
    }

    #[test]
    fn up_shows_spend_the_closest_budget_the_last_refusal_and_the_policy_age() {
        let snap = Snapshot {
            status: Some(status()),
            spend_today: Some(1.234),
            recent: vec![
                json!({"outcome": "rejected", "model": "gpt-4.5-preview", "error": "model denied by models.deny[0]"}),
                json!({"outcome": "completed", "model": "gpt-4o"}),
            ],
            ..Snapshot::default()
        };
        let m = build(&snap, now());
        assert_eq!(m.state, State::Up);
        assert_eq!(m.tooltip, "Airlock: up");
        let l = labels(&m);
        assert!(l.contains(&"Today: $1.23".to_string()), "{l:?}");
        assert!(
            l.contains(
                &"Budget team: 1.2M of 2.0M tokens (60%), resets 2026-12-03 00:00".to_string()
            ),
            "{l:?}"
        );
        assert!(
            l.contains(
                &"Last refused: gpt-4.5-preview — model denied by models.deny[0]".to_string()
            ),
            "{l:?}"
        );
        assert!(
            l.contains(&"Policy: acme v12, applied 3 h ago".to_string()),
            "{l:?}"
        );
        assert!(
            action(&m, Action::OpenDashboard)
                && action(&m, Action::CopyShellSetup)
                && action(&m, Action::Quit)
        );
        assert!(
            !m.items
                .iter()
                .flatten()
                .any(|i| matches!(i.action, Action::Pause(_))),
            "pause only when the policy allows it"
        );
    }

    #[test]
    fn each_degraded_reason_is_named_and_the_tooltip_says_the_first() {
        for (code, words) in [
            ("policy_stale", "Policy stale"),
            ("policy_expired", "Policy expired"),
            ("upstream_failing", "Providers unreachable"),
            ("journal_failing", "Journal cannot write"),
        ] {
            let mut s = status();
            s["health"] = json!({"state": "degraded", "reasons": [{"code": code, "message": format!("{code} happened")}]});
            let m = build(
                &Snapshot {
                    status: Some(s),
                    ..Snapshot::default()
                },
                now(),
            );
            assert_eq!(m.state.word(), "degraded");
            assert_eq!(m.tooltip, format!("Airlock: degraded — {code} happened"));
            assert!(
                labels(&m).iter().any(|l| l.contains(words)),
                "{code}: {:?}",
                labels(&m)
            );
        }
    }

    #[test]
    fn a_store_without_the_ca_degrades_with_the_fix() {
        let trust = json!({"stores": [{"kind": "system", "store": "system", "current": true, "stale": []},
                                      {"kind": "nss", "store": "nss:~/.pki/nssdb", "current": false, "stale": []},
                                      {"kind": "java", "store": "java", "error": "no keytool"}]});
        let m = build(
            &Snapshot {
                status: Some(status()),
                trust: Some(trust),
                ..Snapshot::default()
            },
            now(),
        );
        match &m.state {
            State::Degraded(r) => {
                assert_eq!(r[0].0, "ca_untrusted");
                assert!(r[0].1.contains("nss:~/.pki/nssdb") && r[0].1.contains("airlock setup"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pause_is_offered_when_allowed_and_resume_while_paused() {
        let mut s = status();
        s["pause"] = json!({"allowed": true, "max_minutes": 60, "paused_until": null});
        let m = build(
            &Snapshot {
                status: Some(s.clone()),
                ..Snapshot::default()
            },
            now(),
        );
        assert!(labels(&m).contains(&"Pause interception for 15 minutes".to_string()));
        assert!(action(&m, Action::Pause(15)) && !action(&m, Action::Resume));
        s["pause"]["paused_until"] = json!("2026-12-02T12:15:00Z");
        let paused = build(
            &Snapshot {
                status: Some(s),
                ..Snapshot::default()
            },
            now(),
        );
        assert_eq!(paused.state, State::Paused("2026-12-02T12:15:00Z".into()));
        assert!(
            action(&paused, Action::Resume)
                && !paused
                    .items
                    .iter()
                    .flatten()
                    .any(|i| matches!(i.action, Action::Pause(_)))
        );
    }

    #[test]
    fn down_says_how_to_start_the_agent_and_offers_only_quit() {
        let m = build(
            &Snapshot {
                down_reason: Some("no agent answers at 127.0.0.1:8479".into()),
                ..Snapshot::default()
            },
            now(),
        );
        assert_eq!(m.state.word(), "down");
        assert!(m.tooltip.contains("no agent answers"));
        assert_eq!(labels(&m), [DOWN_ITEM, "Quit"]);
        let actions: Vec<Action> = m
            .items
            .iter()
            .flatten()
            .map(|i| i.action)
            .filter(|a| *a != Action::None)
            .collect();
        assert_eq!(actions, [Action::Quit]);
    }
}
