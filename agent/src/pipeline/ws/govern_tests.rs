//! A socket's units meet the policy as HTTP requests do: model rules, budgets (reserved at the
//! create, settled by the terminal event), request guardrails, and a begin row in the journal before
//! the message goes on. Over the in-memory session of [`super::tests`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::tests::{by_message, create, events, payload, start_governed, Governed, Harness};
use super::Kind;
use crate::record::Outcome;

/// A session of `kind` on `path` whose pipeline governs by `governed`.
fn governed(kind: Kind, path: &str, governed: Governed) -> Harness {
    start_governed(kind, path, None, Vec::new(), false, governed)
}

#[tokio::test]
async fn a_model_the_policy_denies_is_refused_on_the_socket_and_never_reaches_the_upstream() {
    let mut h = governed(
        Kind::Responses,
        "/v1/responses",
        Governed::by("[models]\ndeny = [\"gpt-4.5*\"]\n"),
    );
    h.client_sends(&create("gpt-4.5-preview", json!({}))).await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["type"], "error");
    assert_eq!(err["status"], 403);
    assert_eq!(err["error"]["code"], "model_blocked");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"gpt-4.5-preview\"") && message.contains("gpt-4.5*"),
        "names the model and the rule: {message}"
    );
    // The next create, for an allowed model, goes on as sent.
    let ok = create("gpt-5", json!({}));
    h.client_sends(&ok).await;
    assert_eq!(
        h.upstream_gets().await,
        ok,
        "the refused create never reached the upstream"
    );
    let answer = events("resp_2", "gpt-5", 10, 2);
    h.relays(&answer).await;
    let records = h.close().await;
    let denied = by_message(&records, 1);
    assert_eq!(denied.outcome, Outcome::Rejected);
    assert_eq!(denied.decided_by.as_deref(), Some("authorize:models"));
    assert_eq!(by_message(&records, 2).outcome, Outcome::Completed);
}

const BUDGET: &str = r#"
[[budgets]]
name = "socket-daily"
scope = ["provider"]
limit_tokens = 100
window = "day"
reserve_output_tokens = 60
"#;

#[tokio::test]
async fn a_budget_reserves_each_create_and_settles_it_with_what_the_response_used() {
    let mut h = governed(Kind::Responses, "/v1/responses", Governed::by(BUDGET));
    // 1: admitted — its estimate (the message's size / 4 + 60 output tokens) fits in 100.
    let first = create("gpt-5", json!({}));
    h.client_sends(&first).await;
    assert_eq!(h.upstream_gets().await, first);
    // 2: while the first still holds its reservation, a second does not fit.
    h.client_sends(&create("gpt-5", json!({}))).await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["error"]["code"], "budget_exceeded", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("socket-daily"),
        "{err}"
    );
    // The first ends having used 15 tokens; the reservation becomes that, and a third fits.
    let answer = events("resp_1", "gpt-5", 10, 5);
    h.relays(&answer).await;
    let third = create("gpt-5", json!({}));
    h.client_sends(&third).await;
    assert_eq!(
        h.upstream_gets().await,
        third,
        "settled at what it used, the first leaves room"
    );
    let answer = events("resp_3", "gpt-5", 10, 5);
    h.relays(&answer).await;
    let records = h.close().await;
    let first = by_message(&records, 1);
    assert!(first.reserved.is_some_and(|r| r.tokens > 60));
    assert_eq!(
        by_message(&records, 2).decided_by.as_deref(),
        Some("authorize:budgets")
    );
    assert_eq!(by_message(&records, 3).outcome, Outcome::Completed);
}

#[tokio::test]
async fn a_secret_in_a_create_is_blocked_before_it_leaves() {
    let mut h = governed(Kind::Responses, "/v1/responses", Governed::default());
    let key = "AKIA".to_string() + "Z7QWERTYUIOPASDF";
    let leak = create(
        "gpt-5",
        json!({"input": [{"role": "user", "content": format!("my key is {key}")}]}),
    );
    h.client_sends(&leak).await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["error"]["code"], "guardrail_violation", "{err}");
    assert!(!err.to_string().contains(&key), "the value is never echoed");
    let ok = create("gpt-5", json!({}));
    h.client_sends(&ok).await;
    assert_eq!(
        h.upstream_gets().await,
        ok,
        "the create carrying the key never reached the upstream"
    );
    let answer = events("resp_2", "gpt-5", 10, 2);
    h.relays(&answer).await;
    let records = h.close().await;
    let blocked = by_message(&records, 1);
    assert_eq!(
        blocked.decided_by.as_deref(),
        Some("inspect_request:guardrails")
    );
    assert!(blocked
        .guardrails
        .iter()
        .any(|g| g.rule == "aws_access_key"));
}

#[tokio::test]
async fn each_create_has_its_begin_row_committed_before_it_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let journal = crate::journal::Journal::open(
        &dir.path().join("journal.db"),
        crate::journal::SyncMode::Normal,
    )
    .unwrap();
    let mut h = governed(
        Kind::Responses,
        "/v1/responses",
        Governed {
            policy: "",
            journal: Some(journal.clone()),
        },
    );
    let c = create("gpt-5", json!({}));
    h.client_sends(&c).await;
    assert_eq!(h.upstream_gets().await, c);
    // The upstream has the message: its begin row is already durable.
    let begun: Vec<(String, String)> = {
        let conn = journal.reader().unwrap();
        let mut stmt = conn
            .prepare("SELECT id, body FROM journal WHERE kind = 'begin'")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(begun.len(), 1, "{begun:?}");
    let body: serde_json::Value = serde_json::from_str(&begun[0].1).unwrap();
    assert_eq!(body["operation"], "responses");
    assert_eq!(body["model"], "gpt-5");
    assert_eq!(body["websocket"]["message"], 1);
    let answer = events("resp_1", "gpt-5", 10, 2);
    h.relays(&answer).await;
    let records = h.close().await;
    assert_eq!(by_message(&records, 1).id, begun[0].0);
    journal.flush().await;
    let ended: i64 = journal
        .reader()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM journal WHERE kind = 'end' AND id = ?1",
            [&begun[0].0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended, 1);
}

const REDACT_EMAIL: &str = r#"
[[guardrails.rules]]
categories = ["pii"]
direction = "request"
action = "redact"
"#;

fn item(id: &str, text: &str) -> bytes::Bytes {
    let v = json!({"type": "conversation.item.create", "event_id": id,
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}});
    super::frame::masked_text_frame(v.to_string().as_bytes(), [3, 1, 4, 1])
}

#[tokio::test]
async fn realtime_conversation_items_are_read_by_the_guardrails_before_they_leave() {
    let mut h = governed(
        Kind::Realtime,
        "/v1/realtime?model=gpt-realtime",
        Governed::by(REDACT_EMAIL),
    );
    // A key: blocked, answered with Realtime's error event naming the client event.
    let key = "AKIA".to_string() + "Z7QWERTYUIOPASDF";
    h.client_sends(&item("evt_key", &format!("use {key}")))
        .await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "guardrail_violation", "{err}");
    assert_eq!(err["error"]["event_id"], "evt_key");
    assert!(!err.to_string().contains(&key));
    // An address: redacted in the item the upstream gets.
    h.client_sends(&item("evt_mail", "write to jane.doe@example.org please"))
        .await;
    let sent = payload(&h.upstream_gets().await);
    assert_eq!(sent["event_id"], "evt_mail");
    let text = sent["item"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("write to [REDACTED:") && !text.contains("jane.doe"),
        "{text}"
    );
    // Nothing to find: the frame goes on as it came, and no record is made for it.
    let plain = item("evt_plain", "hello there");
    h.client_sends(&plain).await;
    assert_eq!(h.upstream_gets().await, plain);
    let records = h.close().await;
    let events: Vec<_> = records
        .iter()
        .filter(|r| r.operation == "realtime_event")
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].outcome, Outcome::Rejected);
    assert_eq!(
        events[0].decided_by.as_deref(),
        Some("inspect_request:guardrails")
    );
    assert!(events[0]
        .guardrails
        .iter()
        .any(|g| g.rule == "aws_access_key"));
    assert_eq!(events[1].outcome, Outcome::Completed);
    assert!(events[1]
        .guardrails
        .iter()
        .any(|g| g.category == crate::guardrails::Category::Pii));
}

#[tokio::test]
async fn a_policy_put_in_force_while_the_socket_is_open_judges_its_next_create() {
    let mut h = governed(Kind::Responses, "/v1/responses", Governed::default());
    let first = create("gpt-4.5-preview", json!({}));
    h.client_sends(&first).await;
    assert_eq!(
        h.upstream_gets().await,
        first,
        "allowed when the socket opened"
    );
    let answer = events("resp_1", "gpt-4.5-preview", 10, 2);
    h.relays(&answer).await;
    // The admin denies the model; Codex keeps the same socket open.
    h.put_policy("[models]\ndeny = [\"gpt-4.5*\"]\n");
    h.client_sends(&create("gpt-4.5-preview", json!({}))).await;
    let err = payload(&h.client_gets().await);
    assert_eq!(err["error"]["code"], "model_blocked", "{err}");
    let records = h.close().await;
    assert_eq!(by_message(&records, 1).outcome, Outcome::Completed);
    assert_eq!(
        by_message(&records, 2).decided_by.as_deref(),
        Some("authorize:models")
    );
}

#[tokio::test]
async fn a_realtime_response_reserves_its_own_output_cap() {
    let mut h = governed(Kind::Realtime, "/v1/realtime?model=gpt-realtime", Governed::by(
            "[[budgets]]\nname = \"rt\"\nlimit_tokens = 1000\nwindow = \"day\"\nreserve_output_tokens = 60\n",
        ));
    let capped = super::frame::masked_text_frame(
        br#"{"type":"response.create","event_id":"evt_1","response":{"max_output_tokens":5}}"#,
        [1, 2, 3, 4],
    );
    h.client_sends(&capped).await;
    assert_eq!(h.upstream_gets().await, capped);
    let unbounded = super::frame::masked_text_frame(
        br#"{"type":"response.create","event_id":"evt_2","response":{"max_output_tokens":"inf"}}"#,
        [1, 2, 3, 4],
    );
    h.client_sends(&unbounded).await;
    assert_eq!(h.upstream_gets().await, unbounded, "both fit");
    let records = h.close().await;
    let reserved = |n| by_message(&records, n).reserved.map(|r| r.tokens);
    let (first, second) = (reserved(1).unwrap(), reserved(2).unwrap());
    assert!(first < 30, "its cap, not the policy's 60: {first}");
    assert!(second >= 60, "\"inf\": the policy's reserve: {second}");
}
