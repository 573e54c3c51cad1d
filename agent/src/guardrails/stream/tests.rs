use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::guardrails::actions::Guard;
use crate::policy::guardrails::{ActionRule, GuardrailsPolicy};

const KEY: StreamKey = (TextChannel::Content, 0);
const AWS: &str = "AKIAZ4ZK3JXQWT7PLD2M";
const GH: &str = "ghp_Zq8Lr2Vx9Kt4Wm6Np3Bs7Hd5Fj1Gc0Ya2Ue4";

fn guard(rules: Vec<ActionRule>) -> Arc<Guard> {
    Arc::new(
        Guard::compile(&GuardrailsPolicy {
            rules,
            ..GuardrailsPolicy::default()
        })
        .unwrap(),
    )
}

fn redact_pii() -> Vec<ActionRule> {
    vec![ActionRule {
        categories: vec!["pii".into()],
        direction: Direction::Response,
        action: Action::Redact,
        ..ActionRule::default()
    }]
}

/// Streams `text` in `pieces` (byte lengths, cycled, snapped to char boundaries) the way the
/// response stage does: each delta is released once its stream is decided past it, redacted.
/// Returns what the client got and the most text held back after any delta.
fn stream(g: &Arc<Guard>, text: &str, pieces: &[usize]) -> (String, usize, Result<(), Blocked>) {
    let mut sc = Scanner::new(g.clone(), Who::default());
    let mut queue: Vec<(usize, String)> = Vec::new();
    let mut out = String::new();
    let mut held = 0;
    let mut at = 0;
    let mut i = 0;
    let release = |sc: &Scanner, queue: &mut Vec<(usize, String)>, out: &mut String| {
        while let Some((off, d)) = queue.first() {
            if off + d.len() > sc.released(KEY) {
                break;
            }
            match sc.rewrite(KEY, *off, d) {
                Some((new, _)) => out.push_str(&new),
                None => out.push_str(d),
            }
            queue.remove(0);
        }
    };
    while at < text.len() {
        let mut end = (at + pieces[i % pieces.len()].max(1)).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        i += 1;
        let d = &text[at..end];
        sc.push(KEY, d);
        queue.push((at, d.to_string()));
        if let Err(b) = sc.advance(false) {
            return (out, held, Err(b));
        }
        held = held.max(sc.held());
        release(&sc, &mut queue, &mut out);
        at = end;
    }
    if let Err(b) = sc.advance(true) {
        return (out, held, Err(b));
    }
    release(&sc, &mut queue, &mut out);
    assert!(queue.is_empty(), "everything is released at the end");
    (out, held, Ok(()))
}

/// The whole text with every finding policy redacts replaced: what any chunking must give.
fn whole(g: &Guard, text: &str) -> String {
    let cx = Context {
        provider: "",
        model: None,
        app: None,
    };
    let mut out = String::new();
    let mut at = 0;
    for f in g.engine().scan(text) {
        let v = &text[f.start..f.end];
        if g.action(&f, v, Some("/content/0"), Direction::Response, &cx) != Action::Redact
            || f.start < at
        {
            continue;
        }
        out.push_str(&text[at..f.start]);
        out.push_str(&format!("[REDACTED:{}]", f.rule));
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

#[test]
fn a_secret_split_byte_by_byte_never_reaches_the_client() {
    let g = guard(Vec::new());
    let text = format!("Here is the key you asked for: {AWS} and that is all.");
    for split in [1, 2, 3, 5, 7, 11, 64] {
        let (out, _, r) = stream(&g, &text, &[split]);
        assert!(r.is_ok());
        assert_eq!(
            out,
            "Here is the key you asked for: [REDACTED:aws_access_key] and that is all."
        );
        assert!(!out.contains("AKIA"));
    }
}

#[test]
fn prose_without_keywords_is_held_only_while_a_keyword_could_be_arriving() {
    let g = guard(Vec::new());
    let sc = Scanner::new(g.clone(), Who::default());
    // Words secret rules key on ("password", "token", "key", "secret", "auth") in plain prose.
    let text = "Please reset the password for the user account; the token and the key are secret, \
                auth is done by the team. The server is fine. "
        .repeat(20);
    let (out, held, _) = stream(&g, &text, &[4]);
    assert_eq!(out, text);
    assert!(
        held < 40,
        "plain prose held {held} bytes (bound {})",
        sc.bound()
    );
}

#[test]
fn a_certificate_is_released_as_soon_as_it_cannot_be_a_private_key() {
    let g = guard(Vec::new());
    let text = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        "MIIBszCCAVmgAwIBAgIUQ".repeat(30)
    );
    let (out, held, _) = stream(&g, &text, &[3]);
    assert_eq!(out, text);
    assert!(held < 64, "a certificate held {held} bytes");
}

#[test]
fn a_blocked_secret_ends_the_stream_before_any_of_it_goes_out() {
    let g = guard(vec![ActionRule {
        categories: vec!["secret".into()],
        direction: Direction::Response,
        action: Action::Block,
        ..ActionRule::default()
    }]);
    let text = format!("token: {GH} — keep it safe");
    for split in [1, 4, 9] {
        let (out, _, r) = stream(&g, &text, &[split]);
        let b = r.unwrap_err();
        assert_eq!(b.rules, vec!["github_pat (secret)".to_string()]);
        assert!(!out.contains("ghp_"), "released {out:?}");
    }
}

#[test]
fn pii_redacted_in_responses_holds_its_bound_and_no_more() {
    let g = guard(redact_pii());
    let sc = Scanner::new(g.clone(), Who::default());
    let text = "Write to jane.doe@example.com or call; card 4111 1111 1111 1111 ends it.".repeat(3);
    let (out, held, _) = stream(&g, &text, &[2, 5]);
    assert_eq!(out, whole(&g, &text));
    assert!(out.contains("[REDACTED:email]") && out.contains("[REDACTED:credit_card]"));
    assert!(held <= sc.bound() + 5, "held {held}, bound {}", sc.bound());
}

#[test]
fn the_record_names_what_was_redacted_without_the_value() {
    let g = guard(Vec::new());
    let mut sc = Scanner::new(g, Who::default());
    for part in ["key ", &AWS[..7], &AWS[7..], " done"] {
        sc.push(KEY, part);
        sc.advance(false).unwrap();
    }
    sc.advance(true).unwrap();
    let hits = sc.hits(&[7; 32]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule, "aws_access_key");
    assert_eq!(hits[0].action, Action::Redact);
    assert_eq!(hits[0].pointer.as_deref(), Some("/content/0"));
    assert!(!format!("{hits:?}").contains(AWS));
}

/// Pieces of text the property test strings together: prose, code, secrets of several shapes,
/// personal data, and near misses.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Sure, here is the answer. ".to_string()),
        Just("```python\nimport os\nclient = OpenAI()\n```\n".to_string()),
        Just(format!("aws key {AWS} ")),
        Just(format!("export GITHUB_TOKEN={GH}\n")),
        Just("api_key = \"Zk3Lq9Vr7Tx2Wm5Np8Bs4Hd6\"\n".to_string()),
        Just("sk-proj-".to_string()),
        Just("AKIA is a prefix, not a key. ".to_string()),
        Just("mail jane.doe@example.com, ".to_string()),
        Just("card 4111-1111-1111-1111. ".to_string()),
        Just("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string()),
        Just("héllo wörld — ünïcode ✓ ".to_string()),
        "[a-zA-Z0-9 _=:\\-]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the chunking, the client gets exactly the whole text's redaction, and no stream
    /// holds back more than the documented bound.
    #[test]
    fn any_chunking_gives_the_whole_texts_redaction_within_the_bound(
        parts in prop::collection::vec(fragment(), 1..12),
        pieces in prop::collection::vec(1usize..40, 1..8),
        pii in any::<bool>(),
    ) {
        let g = guard(if pii { redact_pii() } else { Vec::new() });
        let text: String = parts.concat();
        let bound = Scanner::new(g.clone(), Who::default()).bound();
        let (out, held, r) = stream(&g, &text, &pieces);
        prop_assert!(r.is_ok());
        prop_assert_eq!(out, whole(&g, &text));
        prop_assert!(held <= bound + 40, "held {} over bound {}", held, bound);
    }
}
