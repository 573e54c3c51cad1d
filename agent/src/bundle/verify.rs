//! Verifying a bundle: the fixed sequence of checks from raw bytes to a compiled policy, each with its
//! [`Reason`] code, so every agent refuses the same bundle for the same reason. It owns the order of
//! the checks and their wording; it must not change trust (that is [`super::TrustState::accept`],
//! called by whoever applies the result) and must stay cheap: no I/O, one pass over the bytes per
//! step.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::envelope::{self, Opened};
use super::{KeyId, Payload, PublicKey, Reason, Refusal, TrustState, MAX_BUNDLE_BYTES};
use crate::policy::{Policy, PolicyDocument, PolicySource};

/// A bundle that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// What it says, except that its `policy` is left `Null`: the policy is parsed once, straight
    /// into [`Verified::policy`] (use [`inspect`] for the JSON).
    pub payload: Payload,
    /// The compiled policy; `None` when `unchanged` (nothing to apply).
    pub policy: Option<Policy>,
    /// The trusted key whose signature verified.
    pub key_id: KeyId,
    /// Its version equals the one already accepted from that key: a no-op, not a refusal. A
    /// different bundle reusing a version is also `unchanged`; compare `digest` with the bundle in
    /// force to notice that.
    pub unchanged: bool,
    /// Hex SHA-256 of the envelope bytes.
    pub digest: String,
}

/// Hex SHA-256 of a bundle's bytes: how a bundle is named in logs and `airlock policy` output.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a bundle against what the agent trusts. The checks run in this order and the first that
/// fails is reported:
///
/// 1. `too_large`: more than [`MAX_BUNDLE_BYTES`].
/// 2. `malformed`: not a DSSE envelope, another payloadType, bad base64, no signature, a payload that
///    is not a [`Payload`] (bad times, a bad semver, a bad `next_keys` entry).
/// 3. `unknown_key` / `bad_signature`: a signature is looked up by its keyid among the trusted keys
///    (every trusted key is tried when it has none). `bad_signature` when a trusted key named by a
///    keyid does not verify, `unknown_key` when no signature names a trusted key, or none without a
///    keyid verifies with any trusted key (nothing then says which key made it).
/// 4. `wrong_fleet`: the payload's fleet is not the trust state's.
/// 5. `rollback`: the version is below the ratchet of the key that signed; equal is `unchanged`.
/// 6. `expired`: `now` is at or past `expires_at`. `issued_at` in the future is not refused.
/// 7. `agent_too_old`: `agent_version` is below `min_agent_version`.
/// 8. `invalid_policy`: the policy does not compile (skipped when `unchanged`); the message carries
///    the compiler's error.
pub fn verify(
    bytes: &[u8],
    trust: &TrustState,
    now: OffsetDateTime,
    agent_version: &str,
    source: PolicySource,
) -> Result<Verified, Refusal> {
    let keys = trust.public_keys();
    check(
        bytes,
        &keys,
        Some(&trust.fleet),
        Some(&trust.ratchets),
        now,
        agent_version,
        source,
    )
}

/// The same checks as [`verify`] with a set of keys and an optional fleet instead of a trust state,
/// and no ratchet (never `rollback`, never `unchanged`): for `airlock policy verify`.
pub fn verify_with_keys(
    bytes: &[u8],
    keys: &[PublicKey],
    fleet: Option<&str>,
    now: OffsetDateTime,
    agent_version: &str,
) -> Result<Verified, Refusal> {
    let source = PolicySource::Bundle("airlock policy verify".into());
    check(bytes, keys, fleet, None, now, agent_version, source)
}

/// Only the `too_large` and `malformed` checks: what a bundle claims, signature NOT checked. For
/// showing and diffing bundles, never for applying one.
pub fn inspect(bytes: &[u8]) -> Result<Payload, Refusal> {
    size(bytes)?;
    let opened = envelope::open(bytes)?;
    let (wire, _) = parse_payload(&opened)?;
    let policy = serde_json::from_str(wire.policy.get())
        .map_err(|e| Refusal::malformed(format!("the payload's policy is not JSON ({e})")))?;
    Ok(wire.into_payload(policy))
}

fn size(bytes: &[u8]) -> Result<(), Refusal> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(Refusal::new(
            Reason::TooLarge,
            format!(
                "the bundle is {} bytes, over the {MAX_BUNDLE_BYTES}-byte (4 MiB) limit; no policy is \
                 that large: check that the source serves the file `airlock policy build` wrote",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// The payload as signed, with its policy left as raw JSON text: parsing it into a
/// `serde_json::Value` and then into a [`PolicyDocument`] (what [`Policy::from_json`] takes) costs
/// about four times as much as parsing the text straight into the document.
#[derive(Deserialize)]
struct Wire<'a> {
    fleet: String,
    version: u64,
    issued_at: String,
    expires_at: Option<String>,
    min_agent_version: String,
    #[serde(borrow)]
    policy: &'a RawValue,
    #[serde(default)]
    next_keys: Vec<String>,
}

impl Wire<'_> {
    fn into_payload(self, policy: serde_json::Value) -> Payload {
        Payload {
            fleet: self.fleet,
            version: self.version,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            min_agent_version: self.min_agent_version,
            policy,
            next_keys: self.next_keys,
        }
    }
}

/// What the payload's text fields mean, parsed during the `malformed` step.
struct Parsed {
    expires_at: Option<OffsetDateTime>,
    min_agent: semver::Version,
}

fn parse_payload(opened: &Opened) -> Result<(Wire<'_>, Parsed), Refusal> {
    const FIX: &str = "build bundles with `airlock policy build`";
    let bad = |what: String| Refusal::malformed(format!("the payload {what}; {FIX}"));
    let payload: Wire<'_> = serde_json::from_slice(&opened.body)
        .map_err(|e| bad(format!("is not an Airlock bundle payload ({e})")))?;
    let time = |field: &str, v: &str| {
        OffsetDateTime::parse(v, &Rfc3339)
            .map_err(|e| bad(format!("field {field} {v:?} is not an RFC 3339 time ({e})")))
    };
    time("issued_at", &payload.issued_at)?;
    let expires_at = match &payload.expires_at {
        Some(v) => Some(time("expires_at", v)?),
        None => None,
    };
    let min_agent = semver::Version::parse(&payload.min_agent_version).map_err(|e| {
        bad(format!(
            "field min_agent_version {:?} is not a semantic version ({e})",
            payload.min_agent_version
        ))
    })?;
    for (i, k) in payload.next_keys.iter().enumerate() {
        PublicKey::from_text(k).map_err(|e| bad(format!("next_keys[{i}] is unusable ({e})")))?;
    }
    Ok((
        payload,
        Parsed {
            expires_at,
            min_agent,
        },
    ))
}

fn signer(opened: &Opened, keys: &[PublicKey]) -> Result<KeyId, Refusal> {
    let ids: Vec<KeyId> = keys.iter().map(PublicKey::id).collect();
    let signed = opened.signed_bytes();
    let mut failed_trusted: Option<&str> = None;
    for (keyid, sig) in &opened.signatures {
        let candidates: Vec<usize> = match keyid {
            Some(k) => ids
                .iter()
                .position(|id| id.as_str() == k)
                .into_iter()
                .collect(),
            None => (0..keys.len()).collect(),
        };
        if let Some(&i) = candidates.iter().find(|&&i| keys[i].verifies(&signed, sig)) {
            return Ok(ids[i].clone());
        }
        if let (Some(k), false) = (keyid, candidates.is_empty()) {
            failed_trusted.get_or_insert(k);
        }
    }
    if let Some(k) = failed_trusted {
        return Err(Refusal::new(
            Reason::BadSignature,
            format!(
                "the signature by trusted key {k} does not verify: the bundle was altered after \
                 signing or signed wrongly; rebuild it with `airlock policy build` and publish it unmodified"
            ),
        ));
    }
    let named: Vec<&str> = opened
        .signatures
        .iter()
        .map(|(k, _)| k.as_deref().unwrap_or("(no keyid)"))
        .collect();
    let trusted: Vec<&str> = ids.iter().map(KeyId::as_str).collect();
    Err(Refusal::new(
        Reason::UnknownKey,
        format!(
            "no signature is by a trusted key (signed by {}; trusted: {}): sign with the fleet's \
             current key, or rotate to the new key with --next-key in a bundle signed by a trusted one",
            named.join(", "),
            if trusted.is_empty() { "none".to_string() } else { trusted.join(", ") }
        ),
    ))
}

fn check(
    bytes: &[u8],
    keys: &[PublicKey],
    fleet: Option<&str>,
    ratchets: Option<&BTreeMap<String, u64>>,
    now: OffsetDateTime,
    agent_version: &str,
    source: PolicySource,
) -> Result<Verified, Refusal> {
    size(bytes)?;
    let opened = envelope::open(bytes)?;
    let (payload, parsed) = parse_payload(&opened)?;
    let key_id = signer(&opened, keys)?;

    if let Some(fleet) = fleet.filter(|f| *f != payload.fleet) {
        return Err(Refusal::new(
            Reason::WrongFleet,
            format!(
                "the bundle is for fleet {:?}, not {fleet:?}: publish the bundle built for fleet \
                 {fleet:?} (airlock policy build --fleet {fleet})",
                payload.fleet
            ),
        ));
    }
    let ratchet = ratchets.and_then(|r| r.get(key_id.as_str()).copied());
    if let Some(r) = ratchet.filter(|r| payload.version < *r) {
        return Err(Refusal::new(
            Reason::Rollback,
            format!(
                "version {} is older than version {r} already accepted from key {key_id}: versions \
                 never go back; build the bundle with a --version above {r}",
                payload.version
            ),
        ));
    }
    let unchanged = ratchet == Some(payload.version);
    if let Some(at) = parsed.expires_at.filter(|at| now >= *at) {
        return Err(Refusal::new(
            Reason::Expired,
            format!(
                "the bundle expired at {} (it is now {}): build and publish a fresh one",
                at.format(&Rfc3339).unwrap_or_default(),
                now.format(&Rfc3339).unwrap_or_default()
            ),
        ));
    }
    let too_old = |why: String| Refusal::new(Reason::AgentTooOld, why);
    let agent = semver::Version::parse(agent_version).map_err(|e| {
        too_old(format!(
            "this agent's version {agent_version:?} is not a semantic version ({e}), so it cannot \
             show it is at least {}: install a released airlockd",
            parsed.min_agent
        ))
    })?;
    if agent < parsed.min_agent {
        return Err(too_old(format!(
            "the bundle needs airlockd {} or newer, this is {agent}: upgrade airlockd, or build the \
             bundle with a lower --min-agent-version",
            parsed.min_agent
        )));
    }
    let policy = if unchanged {
        None
    } else {
        let mut policy = compile(payload.policy.get(), source).map_err(|e| {
            Refusal::new(
                Reason::InvalidPolicy,
                format!("the bundle's policy does not compile: {e}; fix the source and rebuild"),
            )
        })?;
        policy.version = Some(payload.version);
        Some(policy)
    };
    Ok(Verified {
        payload: payload.into_payload(serde_json::Value::Null),
        policy,
        key_id,
        unchanged,
        digest: digest(bytes),
    })
}

/// [`Policy::from_json`] from the JSON text rather than a `Value` (see [`Wire`]), with the same
/// errors.
fn compile(json: &str, source: PolicySource) -> crate::Result<Policy> {
    let doc: PolicyDocument =
        serde_json::from_str(json).map_err(|e| crate::AgentError::Policy {
            origin: source.to_string(),
            message: e.to_string(),
        })?;
    Policy::compile(doc, source)
}
