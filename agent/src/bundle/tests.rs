//! Tests of the whole bundle path: build → verify → accept, every refusal reason, the order in which
//! they are checked, and key rotation with per-key ratchets.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use time::OffsetDateTime;

use super::envelope::{self, Envelope};
use super::*;
use crate::policy::PolicySource;

const POLICY: &str = "schema = 1\nname = \"fleet policy\"\n\
    [[hosts]]\nhost = \"api.openai.com\"\nprovider = \"openai\"\n\
    [[hosts]]\nhost = \"api.anthropic.com\"\nprovider = \"anthropic\"\n";
const AGENT: &str = "0.1.0";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn opts(fleet: &str, version: u64) -> BuildOptions {
    BuildOptions {
        fleet: fleet.into(),
        version,
        expires_in: None,
        min_agent_version: None,
        next_keys: Vec::new(),
        now: now(),
    }
}

fn bundle_with(key: &SigningKey, o: &BuildOptions) -> Vec<u8> {
    build(POLICY, Path::new("fleet.toml"), key, o).unwrap()
}

fn bundle(key: &SigningKey, fleet: &str, version: u64) -> Vec<u8> {
    bundle_with(key, &opts(fleet, version))
}

/// Signs an arbitrary payload, for payloads `build` would never write.
fn signed(key: &SigningKey, payload: &serde_json::Value) -> Vec<u8> {
    envelope::seal(&serde_json::to_vec(payload).unwrap(), key).unwrap()
}

fn payload_json(policy: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"fleet": "acme", "version": 3, "issued_at": "2027-01-15T08:00:00Z",
        "expires_at": null, "min_agent_version": "0.1.0", "policy": policy})
}

fn trust(keys: &[&SigningKey]) -> TrustState {
    TrustState::new("acme".into(), keys.iter().map(|k| k.public_key()).collect())
}

fn src() -> PolicySource {
    PolicySource::Bundle("test".into())
}

fn refused(bytes: &[u8], t: &TrustState, at: OffsetDateTime) -> Refusal {
    match verify(bytes, t, at, AGENT, src()) {
        Ok(v) => panic!("accepted: {:?}", v.payload),
        Err(r) => r,
    }
}

fn code(bytes: &[u8], t: &TrustState) -> &'static str {
    refused(bytes, t, now()).reason.code()
}

fn key() -> SigningKey {
    SigningKey::generate().unwrap()
}

fn envelope_of(bytes: &[u8]) -> Envelope {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn a_built_bundle_verifies_and_then_is_unchanged() {
    let a = key();
    let mut o = opts("acme", 7);
    o.expires_in = Some(Duration::from_secs(30 * 86400));
    let bytes = bundle_with(&a, &o);
    let mut t = trust(&[&a]);
    let v = verify(&bytes, &t, now(), AGENT, src()).unwrap();
    assert_eq!(v.payload.fleet, "acme");
    assert_eq!(v.payload.version, 7);
    assert_eq!(v.payload.issued_at, "2027-01-15T08:00:00Z");
    assert_eq!(
        v.payload.expires_at.as_deref(),
        Some("2027-02-14T08:00:00Z")
    );
    assert_eq!(v.payload.min_agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.key_id, a.id());
    assert!(!v.unchanged);
    assert_eq!(v.digest, digest(&bytes));
    assert_eq!(v.digest.len(), 64);
    let policy = v.policy.as_ref().unwrap();
    assert_eq!(policy.name, "fleet policy");
    assert!(policy.hosts.lookup("api.anthropic.com").is_some());
    assert_eq!(policy.source, src());

    // The envelope is DSSE: our type, standard padded base64 of the exact signed bytes, our keyid.
    let env = envelope_of(&bytes);
    assert_eq!(env.payload_type, PAYLOAD_TYPE);
    let body = STANDARD.decode(&env.payload).unwrap();
    let sig =
        ed25519_dalek::Signature::from_slice(&STANDARD.decode(&env.signatures[0].sig).unwrap())
            .unwrap();
    assert!(a.public_key().verifies(&pae(PAYLOAD_TYPE, &body), &sig));
    assert_eq!(env.signatures[0].keyid.as_deref(), Some(a.id().as_str()));

    t.accept(&v);
    assert_eq!(t.ratchets[a.id().as_str()], 7);
    let again = verify(&bytes, &t, now(), AGENT, src()).unwrap();
    assert!(again.unchanged);
    assert!(
        again.policy.is_none(),
        "an unchanged bundle is not compiled"
    );
    // Trust state persists as JSON and comes back equal.
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<TrustState>(&json).unwrap(), t);
}

#[test]
fn a_forged_or_tampered_signature_is_bad_signature() {
    let (a, mallory) = (key(), key());
    let t = trust(&[&a]);
    let good = bundle(&a, "acme", 1);

    // Mallory's signature over the same payload, labelled as A's.
    let mut env = envelope_of(&good);
    let body = STANDARD.decode(&env.payload).unwrap();
    env.signatures[0].sig = STANDARD.encode(mallory.sign(&pae(PAYLOAD_TYPE, &body)).to_bytes());
    assert_eq!(
        code(&serde_json::to_vec(&env).unwrap(), &t),
        "bad_signature"
    );

    // A's signature, payload changed after signing.
    let mut env = envelope_of(&good);
    let text = String::from_utf8(STANDARD.decode(&env.payload).unwrap()).unwrap();
    env.payload = STANDARD.encode(text.replace("\"version\":1", "\"version\":9"));
    let r = refused(&serde_json::to_vec(&env).unwrap(), &t, now());
    assert_eq!(r.reason, Reason::BadSignature, "{r}");
    assert!(r.message.contains(a.id().as_str()), "{r}");
}

#[test]
fn a_bundle_from_an_untrusted_key_is_unknown_key() {
    let (a, b) = (key(), key());
    let t = trust(&[&a]);
    let r = refused(&bundle(&b, "acme", 1), &t, now());
    assert_eq!(r.reason, Reason::UnknownKey);
    assert!(
        r.message.contains(b.id().as_str()) && r.message.contains(a.id().as_str()),
        "{r}"
    );

    // Without keyids every trusted key is tried: A's signature still verifies, B's is unknown.
    let strip = |bytes: Vec<u8>| {
        let mut env = envelope_of(&bytes);
        env.signatures[0].keyid = None;
        serde_json::to_vec(&env).unwrap()
    };
    let v = verify(&strip(bundle(&a, "acme", 1)), &t, now(), AGENT, src()).unwrap();
    assert_eq!(v.key_id, a.id());
    assert_eq!(code(&strip(bundle(&b, "acme", 1)), &t), "unknown_key");
    // Nothing trusted at all.
    assert_eq!(code(&bundle(&a, "acme", 1), &trust(&[])), "unknown_key");
}

#[test]
fn fleet_rollback_expiry_and_agent_version_are_each_refused() {
    let a = key();
    let mut t = trust(&[&a]);
    assert_eq!(code(&bundle(&a, "globex", 1), &t), "wrong_fleet");

    let v5 = verify(&bundle(&a, "acme", 5), &t, now(), AGENT, src()).unwrap();
    t.accept(&v5);
    let r = refused(&bundle(&a, "acme", 4), &t, now());
    assert_eq!(r.reason, Reason::Rollback);
    assert!(r.message.contains("above 5"), "{r}");
    assert!(
        verify(&bundle(&a, "acme", 5), &t, now(), AGENT, src())
            .unwrap()
            .unchanged
    );
    assert!(
        !verify(&bundle(&a, "acme", 6), &t, now(), AGENT, src())
            .unwrap()
            .unchanged
    );

    let mut o = opts("acme", 10);
    o.expires_in = Some(Duration::from_secs(3600));
    let expiring = bundle_with(&a, &o);
    let hour = time::Duration::hours(1);
    verify(
        &expiring,
        &t,
        now() + hour - time::Duration::seconds(1),
        AGENT,
        src(),
    )
    .unwrap();
    assert_eq!(refused(&expiring, &t, now() + hour).reason, Reason::Expired);

    let mut o = opts("acme", 10);
    o.min_agent_version = Some("99.0.0".into());
    let r = refused(&bundle_with(&a, &o), &t, now());
    assert_eq!(r.reason, Reason::AgentTooOld);
    assert!(r.message.contains("99.0.0"), "{r}");
    let mut o = opts("acme", 10);
    o.min_agent_version = Some(AGENT.into());
    verify(&bundle_with(&a, &o), &t, now(), AGENT, src()).unwrap();
}

#[test]
fn a_policy_that_does_not_compile_is_invalid_policy_with_the_compilers_words() {
    let a = key();
    let t = trust(&[&a]);
    let r = refused(
        &signed(&a, &payload_json(serde_json::json!({"schema": 2}))),
        &t,
        now(),
    );
    assert_eq!(r.reason, Reason::InvalidPolicy);
    assert!(r.message.contains("schema 2"), "{r}");
    let bad_host =
        serde_json::json!({"schema": 1, "hosts": [{"host": "not a host", "provider": "openai"}]});
    let r = refused(&signed(&a, &payload_json(bad_host)), &t, now());
    assert_eq!(r.reason, Reason::InvalidPolicy);
    assert!(r.message.contains("not a DNS name"), "{r}");
    let unknown = serde_json::json!({"schema": 1, "budgetz": {}});
    let r = refused(&signed(&a, &payload_json(unknown)), &t, now());
    assert_eq!(r.reason, Reason::InvalidPolicy);
    assert!(r.message.contains("budgetz"), "{r}");
    let r = refused(
        &signed(&a, &payload_json(serde_json::json!("schema = 1"))),
        &t,
        now(),
    );
    assert_eq!(r.reason, Reason::InvalidPolicy, "{r}");
    // The same shape with a good policy is accepted, so the refusals above are about the policy.
    let ok = signed(&a, &payload_json(serde_json::json!({"schema": 1})));
    verify(&ok, &t, now(), AGENT, src()).unwrap();
}

#[test]
fn broken_envelopes_are_malformed_and_oversized_ones_too_large() {
    let a = key();
    let t = trust(&[&a]);
    let good = bundle(&a, "acme", 1);
    assert_eq!(code(&good[..good.len() / 2], &t), "malformed", "truncated");
    assert_eq!(code(b"{\"payloadType\": ", &t), "malformed");
    assert_eq!(code(b"schema = 1\n", &t), "malformed");

    let mut env = envelope_of(&good);
    env.payload_type = "application/vnd.in-toto+json".into();
    let r = refused(&serde_json::to_vec(&env).unwrap(), &t, now());
    assert_eq!(r.reason, Reason::Malformed);
    assert!(r.message.contains("payloadType"), "{r}");

    let mut env = envelope_of(&good);
    env.payload = "not base64 !!".into();
    assert_eq!(code(&serde_json::to_vec(&env).unwrap(), &t), "malformed");
    let mut env = envelope_of(&good);
    env.signatures[0].sig = STANDARD.encode([1u8; 10]);
    assert_eq!(code(&serde_json::to_vec(&env).unwrap(), &t), "malformed");
    let mut env = envelope_of(&good);
    env.signatures.clear();
    assert_eq!(code(&serde_json::to_vec(&env).unwrap(), &t), "malformed");

    // Validly signed, but not a payload, or a payload with a bad time / semver / next key.
    assert_eq!(code(&signed(&a, &serde_json::json!({})), &t), "malformed");
    for (field, value) in [
        ("issued_at", serde_json::json!("yesterday")),
        ("expires_at", serde_json::json!("2027-13-01T00:00:00Z")),
        ("min_agent_version", serde_json::json!("1.0")),
        (
            "next_keys",
            serde_json::json!(["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]),
        ),
    ] {
        let mut p = payload_json(serde_json::json!({"schema": 1}));
        p[field] = value;
        let r = refused(&signed(&a, &p), &t, now());
        assert_eq!(r.reason, Reason::Malformed, "{field}: {r}");
        assert!(r.message.contains(field), "{r}");
    }

    let mut huge = good.clone();
    huge.resize(MAX_BUNDLE_BYTES + 1, b' ');
    assert_eq!(code(&huge, &t), "too_large");
    let mut edge = good;
    edge.resize(MAX_BUNDLE_BYTES, b' ');
    verify(&edge, &t, now(), AGENT, src()).unwrap();
}

#[test]
fn the_first_failing_check_is_the_one_reported() {
    let (a, b) = (key(), key());
    let mut t = trust(&[&a]);
    let hour = time::Duration::hours(1);
    let expiring = |k: &SigningKey, fleet: &str, version: u64| {
        let mut o = opts(fleet, version);
        o.expires_in = Some(Duration::from_secs(60));
        bundle_with(k, &o)
    };
    // Oversized garbage is too_large, not malformed.
    assert_eq!(code(&vec![b'x'; MAX_BUNDLE_BYTES + 1], &t), "too_large");
    // A bad payload with a bad signature is malformed.
    let mut env = envelope_of(&signed(&a, &serde_json::json!({})));
    env.signatures[0].sig = STANDARD.encode([7u8; 64]);
    assert_eq!(code(&serde_json::to_vec(&env).unwrap(), &t), "malformed");
    // Expired, wrong fleet and from an unknown key: unknown_key.
    assert_eq!(
        refused(&expiring(&b, "globex", 1), &t, now() + hour).reason,
        Reason::UnknownKey
    );
    // Expired and for another fleet: wrong_fleet.
    assert_eq!(
        refused(&expiring(&a, "globex", 1), &t, now() + hour).reason,
        Reason::WrongFleet
    );

    t.accept(&verify(&bundle(&a, "acme", 5), &t, now(), AGENT, src()).unwrap());
    // A rollback that is also expired: rollback.
    assert_eq!(
        refused(&expiring(&a, "acme", 4), &t, now() + hour).reason,
        Reason::Rollback
    );
    // Expired and needing a newer agent: expired.
    let mut o = opts("acme", 6);
    o.expires_in = Some(Duration::from_secs(60));
    o.min_agent_version = Some("99.0.0".into());
    assert_eq!(
        refused(&bundle_with(&a, &o), &t, now() + hour).reason,
        Reason::Expired
    );
    // Needing a newer agent and not compiling: agent_too_old.
    let mut p = payload_json(serde_json::json!({"schema": 2}));
    p["version"] = 6.into();
    p["min_agent_version"] = "99.0.0".into();
    assert_eq!(code(&signed(&a, &p), &t), "agent_too_old");
}

#[test]
fn rotation_moves_trust_to_the_next_keys_with_a_ratchet_per_key() {
    let (a, b) = (key(), key());
    let mut t = trust(&[&a]);
    // A signs a huge version before rotating (say its key later leaks).
    t.accept(&verify(&bundle(&a, "acme", 1_000_000), &t, now(), AGENT, src()).unwrap());
    assert_eq!(
        code(&bundle(&b, "acme", 5), &t),
        "unknown_key",
        "B is not trusted yet"
    );

    let mut o = opts("acme", 1_000_001);
    o.next_keys = vec![b.public_key()];
    let rotation = verify(&bundle_with(&a, &o), &t, now(), AGENT, src()).unwrap();
    assert_eq!(rotation.payload.next_keys, [b.public_key().to_text()]);
    t.accept(&rotation);
    assert_eq!(t.keys, [b.public_key().to_text()]);

    // A is no longer trusted, whatever version it signs; B's version 5 is no rollback.
    assert_eq!(code(&bundle(&a, "acme", 2_000_000), &t), "unknown_key");
    let v = verify(&bundle(&b, "acme", 5), &t, now(), AGENT, src()).unwrap();
    assert_eq!(v.key_id, b.id());
    assert!(!v.unchanged);
    t.accept(&v);
    assert_eq!(t.ratchets[b.id().as_str()], 5);
    assert_eq!(t.ratchets[a.id().as_str()], 1_000_001);
    assert_eq!(code(&bundle(&b, "acme", 4), &t), "rollback");

    // Rotating to a set that keeps the signer keeps it trusted.
    let mut o = opts("acme", 6);
    o.next_keys = vec![b.public_key(), a.public_key()];
    t.accept(&verify(&bundle_with(&b, &o), &t, now(), AGENT, src()).unwrap());
    assert_eq!(t.public_keys().len(), 2);
}

#[test]
fn verify_with_keys_has_no_ratchet_and_an_optional_fleet() {
    let a = key();
    let keys = [a.public_key()];
    let bytes = bundle(&a, "acme", 3);
    let v = verify_with_keys(&bytes, &keys, None, now(), AGENT).unwrap();
    assert!(v.policy.is_some() && !v.unchanged);
    let r = verify_with_keys(&bytes, &keys, Some("globex"), now(), AGENT).unwrap_err();
    assert_eq!(r.reason, Reason::WrongFleet);
    assert_eq!(r.to_string(), format!("wrong_fleet: {}", r.message));
    let r = verify_with_keys(&bytes, &[key().public_key()], None, now(), AGENT).unwrap_err();
    assert_eq!(r.reason, Reason::UnknownKey);
    // inspect reads what a bundle claims without any key.
    assert_eq!(inspect(&bytes).unwrap().version, 3);
}

#[test]
fn build_refuses_bad_sources_and_options() {
    let a = key();
    let e = build(
        "schema = 1\nbogus = 1\n",
        Path::new("/src/fleet.toml"),
        &a,
        &opts("acme", 1),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/src/fleet.toml") && e.contains("bogus"), "{e}");
    let e = build(POLICY, Path::new("p.toml"), &a, &opts("acme", 0)).unwrap_err();
    assert!(e.to_string().contains("start at 1"), "{e}");
    let e = build(POLICY, Path::new("p.toml"), &a, &opts(" ", 1)).unwrap_err();
    assert!(e.to_string().contains("fleet id"), "{e}");
    let mut o = opts("acme", 1);
    o.min_agent_version = Some("latest".into());
    assert!(build(POLICY, Path::new("p.toml"), &a, &o)
        .unwrap_err()
        .to_string()
        .contains("semantic"));
    o.min_agent_version = None;
    o.expires_in = Some(Duration::from_secs(u64::MAX));
    assert!(build(POLICY, Path::new("p.toml"), &a, &o)
        .unwrap_err()
        .to_string()
        .contains("9999"));
}

#[test]
fn a_100kb_policy_verifies_and_compiles() {
    let mut text = String::from(POLICY);
    let mut n = 0;
    while text.len() < 100 * 1024 {
        text.push_str(&format!(
            "[prices.\"corp/model-{n}\"]\ninput = {n}.5\noutput = 2.25\n\n[[hosts]]\nhost = \"llm-{n}.corp.example\"\nprovider = \"openai\"\n"
        ));
        n += 1;
    }
    let a = key();
    let bytes = build(&text, Path::new("big.toml"), &a, &opts("acme", 1)).unwrap();
    assert!(bytes.len() > 100 * 1024);
    let v = verify(&bytes, &trust(&[&a]), now(), AGENT, src()).unwrap();
    let policy = v.policy.unwrap();
    assert!(policy
        .hosts
        .lookup(&format!("llm-{}.corp.example", n - 1))
        .is_some());
}
