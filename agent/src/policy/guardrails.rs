//! `[guardrails]`: which detectors run, the admin's own rules (`[[guardrails.custom]]`), and what
//! happens to a finding (`[[guardrails.rules]]`: block, redact, warn, log or off — per rule id or
//! category, per direction, provider, model and app, with allowlists of values, fingerprints and
//! JSON paths). With no rule for a finding the built-in defaults apply: a secret in a request is
//! blocked, one in a response redacted; personal data and injection are warned about (header and
//! journal event) in requests and logged in responses. It owns the section and its checks; the
//! guardrails module owns detection.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::guardrails::CustomRule;

/// What happens to a finding.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing: the finding is not reported.
    Off,
    /// Recorded in the journal only.
    #[default]
    Log,
    /// Recorded, and the client gets an `x-airlock-guardrail` header.
    Warn,
    /// The matched text is replaced by `[REDACTED:<rule>]` before it goes on.
    Redact,
    /// The request is refused (airlock type `guardrail_violation`), or the stream ended.
    Block,
}

impl Action {
    /// As written in policy and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Warn => "warn",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// Which way the text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What the app sends to the provider.
    Request,
    /// What the provider answers.
    Response,
    /// Both (the default of a rule).
    #[default]
    Both,
}

impl Direction {
    /// As written in policy and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
            Direction::Both => "both",
        }
    }
}

/// One action rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    /// The rule ids this applies to (`aws_access_key`, `email`, a custom rule's id).
    #[serde(default)]
    pub rules: Vec<String>,
    /// The categories this applies to (`secret`, `pii`, `injection`, `custom`).
    #[serde(default)]
    pub categories: Vec<String>,
    /// `request`, `response` or `both` (default).
    #[serde(default)]
    pub direction: Direction,
    /// What happens.
    pub action: Action,
    /// Provider globs (default: every provider).
    #[serde(default)]
    pub providers: Vec<String>,
    /// Model globs (default: every model).
    #[serde(default)]
    pub models: Vec<String>,
    /// App (executable name) globs (default: every app).
    #[serde(default)]
    pub apps: Vec<String>,
    /// Values never acted on (exact matches: a test key the team shares, a public address).
    #[serde(default)]
    pub allow_values: Vec<String>,
    /// Fingerprints (`sha256:` of the value, `airlock guard fingerprint`) never acted on.
    #[serde(default)]
    pub allow_fingerprints: Vec<String>,
    /// JSON Pointer globs into the request body never acted on (`/tools/**` for tool schemas).
    #[serde(default)]
    pub allow_paths: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The `[guardrails]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsPolicy {
    /// Run the detectors at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Report only public IP addresses (default true).
    #[serde(default = "yes")]
    pub public_ips_only: bool,
    /// Regions (ISO 3166 alpha-2) whose national phone formats are recognised without a `+`.
    #[serde(default)]
    pub phone_regions: Option<Vec<String>>,
    /// Hold each response whole and inspect it before the client sees any of it (default false:
    /// streams flow, held back only as far as the longest pattern needs).
    #[serde(default)]
    pub buffer_responses: bool,
    /// The admin's own detectors.
    #[serde(default)]
    pub custom: Vec<CustomRule>,
    /// What happens to findings; the most specific rule wins (a rule id beats a category beats
    /// a rule naming neither), the first of equals.
    #[serde(default)]
    pub rules: Vec<ActionRule>,
}

impl Default for GuardrailsPolicy {
    fn default() -> Self {
        GuardrailsPolicy {
            enabled: true,
            public_ips_only: true,
            phone_regions: None,
            buffer_responses: false,
            custom: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Checks the section; the error names the key.
pub fn check(g: &GuardrailsPolicy) -> Result<(), (String, String)> {
    for (i, r) in g.rules.iter().enumerate() {
        for (j, c) in r.categories.iter().enumerate() {
            if crate::guardrails::Category::parse(c).is_none() {
                return Err((
                    format!("rules[{i}].categories[{j}]"),
                    format!("unknown category {c:?}; use secret, pii, injection or custom"),
                ));
            }
        }
        for (key, list) in [
            ("providers", &r.providers),
            ("models", &r.models),
            ("apps", &r.apps),
            ("allow_paths", &r.allow_paths),
        ] {
            for (j, p) in list.iter().enumerate() {
                if let Err(e) = globset::Glob::new(p) {
                    return Err((format!("rules[{i}].{key}[{j}]"), format!("not a glob: {e}")));
                }
            }
        }
        for (j, f) in r.allow_fingerprints.iter().enumerate() {
            if !f.starts_with("sha256:") || f.len() != 7 + 64 {
                return Err((
                    format!("rules[{i}].allow_fingerprints[{j}]"),
                    "a fingerprint is sha256: and 64 hex digits (airlock guard fingerprint)".into(),
                ));
            }
        }
    }
    let mut ids = std::collections::HashSet::new();
    for (i, c) in g.custom.iter().enumerate() {
        if !ids.insert(c.id.as_str()) {
            return Err((
                format!("custom[{i}].id"),
                format!("two custom rules are named {:?}", c.id),
            ));
        }
    }
    Ok(())
}
