//! `[credentials.<provider>]`: what happens to the key an app presents. `passthrough` (the default)
//! sends the app's own key on and records its fingerprint; `inject` replaces whatever the app sent
//! with a named secret from the credential store (an org provider key, or the org gateway's virtual
//! key); `deny_personal` refuses keys whose fingerprint is not on the org's list (airlock type
//! `personal_key_blocked`). It owns the section and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens to the app's key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// The app's own key goes upstream; its fingerprint is recorded.
    #[default]
    Passthrough,
    /// The named secret replaces whatever the app sent.
    Inject,
    /// Only keys on `allowed_fingerprints` pass.
    DenyPersonal,
}

/// One provider's rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialRule {
    /// What happens to the app's key.
    #[serde(default)]
    pub mode: CredentialMode,
    /// With `inject`: the secret's name (`airlock credentials set NAME`).
    #[serde(default)]
    pub secret: Option<String>,
    /// With `deny_personal`: the fingerprints (`sha256:…`, `airlock credentials fingerprint`)
    /// of the org's keys.
    #[serde(default)]
    pub allowed_fingerprints: Vec<String>,
}

/// Checks a rule; the error names the key.
pub fn check(rule: &CredentialRule) -> Result<(), (&'static str, String)> {
    match rule.mode {
        CredentialMode::Inject if rule.secret.as_deref().is_none_or(|s| s.trim().is_empty()) => Err((
            "secret",
            "mode = \"inject\" needs secret = \"NAME\" (set it with `airlock credentials set NAME`)".into(),
        )),
        CredentialMode::DenyPersonal if rule.allowed_fingerprints.is_empty() => Err((
            "allowed_fingerprints",
            "mode = \"deny_personal\" with no allowed_fingerprints refuses every key; list the org's (airlock credentials fingerprint)".into(),
        )),
        _ => {
            for f in &rule.allowed_fingerprints {
                let ok = f
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                if !ok {
                    return Err((
                        "allowed_fingerprints",
                        format!("{f:?} is not a fingerprint: write sha256: and 64 hex digits (airlock credentials fingerprint)"),
                    ));
                }
            }
            Ok(())
        }
    }
}
