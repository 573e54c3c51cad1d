//! What a bundle says (the signed [`Payload`]: fleet, version, validity, the policy as JSON, the keys
//! to rotate to) and building one from a TOML policy source. It owns the payload's shape and the
//! build-time checks (the policy compiles, the options make sense); it must not verify bundles or
//! touch key files.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{envelope, BundleError, PublicKey, SigningKey};
use crate::policy::{Policy, PolicyDocument, PolicySource};

/// What a bundle says, inside the signed payload (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    /// The fleet this bundle is for; an agent enrolled in another fleet refuses it.
    pub fleet: String,
    /// Monotonic per signing key: an agent never accepts a lower version from the same key.
    pub version: u64,
    /// When it was built, RFC 3339 UTC. Informational: clocks on laptops drift, so a bundle from
    /// "the future" is not refused.
    pub issued_at: String,
    /// When it stops being valid, RFC 3339 UTC; `None` = never.
    pub expires_at: Option<String>,
    /// The oldest agent that may apply it (semver, e.g. "0.1.0").
    pub min_agent_version: String,
    /// The [`PolicyDocument`] as JSON (`serde_json::to_value(&doc)`).
    pub policy: serde_json::Value,
    /// Public keys (KEYFILE.pub text) trusted from this bundle on, replacing the pinned ones: key
    /// rotation. The signing key stays trusted only if it is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_keys: Vec<String>,
}

/// How to build a bundle.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The fleet id the bundle is for.
    pub fleet: String,
    /// The bundle's version (at least 1; higher than any the same key signed before).
    pub version: u64,
    /// How long it stays valid from `now`; `None` = no expiry.
    pub expires_in: Option<std::time::Duration>,
    /// The oldest agent that may apply it (semver); `None` = this crate's version.
    pub min_agent_version: Option<String>,
    /// Keys to rotate to (see [`Payload::next_keys`]).
    pub next_keys: Vec<PublicKey>,
    /// The build time (`issued_at`, and the start of `expires_in`).
    pub now: OffsetDateTime,
}

/// RFC 3339 UTC, to the second.
pub(crate) fn rfc3339(t: OffsetDateTime) -> Result<String, BundleError> {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| BundleError::Options(format!("cannot write the time {t} as RFC 3339")))
}

/// Compiles and validates the TOML (as [`Policy::from_toml`] with `PolicySource::File(src_path)`, so
/// its errors name the file), then signs a payload carrying it and returns the DSSE envelope bytes
/// (pretty JSON).
pub fn build(
    src_toml: &str,
    src_path: &Path,
    key: &SigningKey,
    opts: &BuildOptions,
) -> Result<Vec<u8>, BundleError> {
    let source = PolicySource::File(src_path.to_path_buf());
    Policy::from_toml(src_toml, source.clone())?;
    let doc: PolicyDocument = toml::from_str(src_toml).map_err(|e| crate::AgentError::Policy {
        origin: source.to_string(),
        message: e.to_string(),
    })?;
    let policy = serde_json::to_value(&doc)
        .map_err(|e| BundleError::Options(format!("cannot encode the policy as JSON: {e}")))?;

    if opts.fleet.trim().is_empty() || opts.fleet.chars().any(char::is_control) {
        return Err(BundleError::Options(format!(
            "fleet id {:?} is empty or has control characters: use the id agents were enrolled with, e.g. \"acme-prod\"",
            opts.fleet
        )));
    }
    if opts.version == 0 {
        return Err(BundleError::Options(
            "version 0 is not a bundle version: versions start at 1 and must grow with every bundle".into(),
        ));
    }
    let min_agent_version = match &opts.min_agent_version {
        Some(v) => {
            semver::Version::parse(v).map_err(|e| {
                BundleError::Options(format!(
                    "minimum agent version {v:?} is not a semantic version ({e}): write it like \"0.1.0\""
                ))
            })?;
            v.clone()
        }
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    let expires_at = match opts.expires_in {
        None => None,
        Some(d) => {
            let at = time::Duration::try_from(d)
                .ok()
                .and_then(|d| opts.now.checked_add(d))
                .filter(|at| at.year() <= 9999)
                .ok_or_else(|| {
                    BundleError::Options(format!(
                        "an expiry {} s from now is past the year 9999: choose a shorter one",
                        d.as_secs()
                    ))
                })?;
            Some(rfc3339(at)?)
        }
    };
    let payload = Payload {
        fleet: opts.fleet.clone(),
        version: opts.version,
        issued_at: rfc3339(opts.now)?,
        expires_at,
        min_agent_version,
        policy,
        next_keys: opts.next_keys.iter().map(PublicKey::to_text).collect(),
    };
    let body = serde_json::to_vec(&payload)
        .map_err(|e| BundleError::Options(format!("cannot encode the payload: {e}")))?;
    envelope::seal(&body, key)
}
