//! A request body's guardrails, decided: every text the body carries (by JSON Pointer,
//! [`crate::providers::request::texts`]) scanned, each finding's action taken from the policy,
//! `redact` applied to the string values in place (so the body stays valid JSON), and what the
//! caller must do next returned — refuse, add a warning header, send the rewritten body. It must
//! not touch the network or the record (the pipeline does).

use serde_json::Value;

use super::actions::{hit, merge, Context, Guard, Hit};
use super::redact::{self, Cut};
use crate::policy::guardrails::{Action, Direction};
use crate::policy::ApiKind;
use crate::providers::request::texts;

/// What inspecting a request decided.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Every finding not `off`, merged per rule and place.
    pub hits: Vec<Hit>,
    /// `rule (category)` of each finding whose action is `block`.
    pub blocked: Vec<String>,
    /// Rules whose action is `warn`.
    pub warned: Vec<String>,
    /// Whether a string value was redacted (the body must be sent re-serialised).
    pub redacted: bool,
}

/// Inspects `body`, a request to `api`'s `operation`, redacting it in place.
pub fn request(
    guard: &Guard,
    key: &[u8; 32],
    api: ApiKind,
    operation: &str,
    body: &mut Value,
    cx: &Context<'_>,
) -> Inspection {
    let mut out = Inspection::default();
    let mut hits = Vec::new();
    let mut redactions: Vec<(String, Vec<Cut>)> = Vec::new();
    for span in texts(api, operation, body) {
        let Some(text) = span.text(body) else {
            continue;
        };
        let found = guard.engine().scan_remembered(text);
        let mut cuts = Vec::new();
        for f in found {
            let v = &text[f.start..f.end];
            let action = guard.action(&f, v, Some(&span.pointer), Direction::Request, cx);
            if action == Action::Off {
                continue;
            }
            hits.push(hit(
                key,
                &f,
                v,
                Some(&span.pointer),
                Direction::Request,
                action,
            ));
            match action {
                Action::Block => {
                    let r = format!("{} ({})", f.rule, f.category.as_str());
                    if !out.blocked.contains(&r) {
                        out.blocked.push(r);
                    }
                }
                Action::Redact => cuts.push((f.start, f.end, format!("[REDACTED:{}]", f.rule))),
                Action::Warn => {
                    if !out.warned.iter().any(|w| **w == *f.rule) {
                        out.warned.push(f.rule.to_string());
                    }
                }
                Action::Log | Action::Off => {}
            }
        }
        if !cuts.is_empty() {
            redactions.push((span.pointer.clone(), cuts));
        }
    }
    if out.blocked.is_empty() {
        for (pointer, mut cuts) in redactions {
            if let Some(Value::String(s)) = body.pointer_mut(&pointer) {
                *s = redact::apply(s, &mut cuts);
                out.redacted = true;
            }
        }
    }
    out.hits = merge(hits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::guardrails::{ActionRule, GuardrailsPolicy};
    use proptest::prelude::*;

    fn redacting() -> Guard {
        Guard::compile(&GuardrailsPolicy {
            rules: vec![ActionRule {
                action: Action::Redact,
                ..ActionRule::default()
            }],
            ..GuardrailsPolicy::default()
        })
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn redaction_never_breaks_json_and_leaves_no_match(
            before in "\\PC{0,40}", after in "\\PC{0,40}", quote in prop::bool::ANY,
        ) {
            let g = redacting();
            let secret = "AKIAZ4ZK3JXQWT7PLD2M";
            let text = format!("{before}{}{secret} mail jane.doe@example.org{}{after}", if quote { "\"" } else { " " }, if quote { "\\" } else { " " });
            let mut body = serde_json::json!({"model": "gpt-4o", "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": text}]});
            let cx = Context { provider: "openai", model: Some("gpt-4o"), app: None };
            let i = request(&g, &[1; 32], ApiKind::Openai, "chat_completions", &mut body, &cx);
            prop_assert!(i.redacted);
            let wire = serde_json::to_string(&body).unwrap();
            let back: Value = serde_json::from_str(&wire).unwrap();
            let content = back["messages"][1]["content"].as_str().unwrap();
            prop_assert!(!content.contains(secret) && !content.contains("jane.doe@example.org"), "{}", content);
            prop_assert!(content.contains("[REDACTED:aws_access_key]") && content.contains("[REDACTED:email]"), "{}", content);
            prop_assert_eq!(&back["messages"][0]["content"], "be brief");
        }
    }

    #[test]
    fn a_long_message_sent_again_is_judged_and_redacted_as_the_first_time() {
        let g = redacting();
        let cx = Context {
            provider: "openai",
            model: Some("gpt-4o"),
            app: None,
        };
        let long = format!(
            "{} write to jane.doe@example.org with key AKIAZ4ZK3JXQWT7PLD2M {}",
            "context ".repeat(400),
            "more ".repeat(100)
        );
        assert!(long.len() > super::super::memo::MIN_BYTES);
        let turn = |last: &str| {
            let mut body = serde_json::json!({"model": "gpt-4o", "messages": [
                {"role": "user", "content": long}, {"role": "user", "content": last}]});
            let i = request(
                &g,
                &[1; 32],
                ApiKind::Openai,
                "chat_completions",
                &mut body,
                &cx,
            );
            (i.hits, body["messages"][0]["content"].clone())
        };
        let first = turn("first");
        let again = turn("second");
        assert_eq!(
            first, again,
            "the remembered findings act exactly as a fresh scan"
        );
        let text = again.1.as_str().unwrap();
        assert!(text.contains("[REDACTED:email]") && text.contains("[REDACTED:aws_access_key]"));
        assert_eq!(again.0.len(), 2, "{:?}", again.0);
    }
}
