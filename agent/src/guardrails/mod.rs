//! Guardrails: the detectors that find secrets, personal data, prompt injection and an admin's own
//! patterns in text, in-process. An [`Engine`] is compiled once (from the shipped rule tables and
//! the policy's custom rules) and then scans any text with no per-request compilation: one
//! Aho-Corasick keyword pass selects which regexes run and where, validators (Luhn, mod-97,
//! checksums, entropy, phone metadata) confirm candidates, and overlapping findings are resolved to
//! the most specific. Findings are byte ranges into the text scanned; what to do with them (block,
//! redact, warn, log) is policy's. This module must never
//! log or store a matched value.

pub mod actions;
mod custom;
mod entropy;
mod injection;
pub mod inspect;
mod memo;
mod normalize;
mod pii;
pub mod redact;
mod secrets;
pub mod stream;
mod windows;

use std::sync::Arc;

pub use custom::CustomRule;

/// What kind of thing a finding is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A credential: API key, token, private key, password in a URL.
    Secret,
    /// Personal data: email, phone, card, IBAN, SSN, IP address, wallet, national id.
    Pii,
    /// Prompt injection and jailbreak markers.
    Injection,
    /// An admin's own rule from policy.
    Custom,
}

impl Category {
    /// The name in policy, findings and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Injection => "injection",
            Category::Custom => "custom",
        }
    }

    /// Parses a policy name.
    pub fn parse(s: &str) -> Option<Category> {
        match s {
            "secret" => Some(Category::Secret),
            "pii" => Some(Category::Pii),
            "injection" => Some(Category::Injection),
            "custom" => Some(Category::Custom),
            _ => None,
        }
    }
}

/// A set of categories (which detectors a stream must hold text back for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategorySet(u8);

impl CategorySet {
    /// Every category.
    pub const ALL: CategorySet = CategorySet(0b1111);

    fn bit(c: Category) -> u8 {
        1 << (c as u8)
    }

    /// Adds `c`.
    pub fn insert(&mut self, c: Category) {
        self.0 |= Self::bit(c);
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: Category) -> bool {
        self.0 & Self::bit(c) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// How far past its start an injection finding may need to see before it is final in a stream
/// (phrases, encoded blocks): what a stream holds back when injection is redacted or blocked.
const INJECTION_STREAM_BOUND: usize = 512;

/// One thing found: which rule, and where (UTF-8 byte offsets into the text scanned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Rule id (`aws_access_key`, `credit_card`, `instruction_override` …).
    pub rule: Arc<str>,
    /// Its category.
    pub category: Category,
    /// Start, inclusive.
    pub start: usize,
    /// End, exclusive.
    pub end: usize,
    /// How specific the rule is: a named format beats a generic one when two overlap.
    pub(crate) rank: u8,
}

impl Finding {
    pub(crate) fn new(
        rule: &Arc<str>,
        category: Category,
        start: usize,
        end: usize,
        rank: u8,
    ) -> Self {
        Finding {
            rule: rule.clone(),
            category,
            start,
            end,
            rank,
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The shipped rule table does not parse (a build defect).
    #[error("the built-in secret rules do not load: {0}")]
    BuiltinRules(String),
    /// A custom rule from policy is wrong.
    #[error("guardrails custom rule {id:?}: {message}")]
    Custom {
        /// The rule.
        id: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Detector settings from policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Report only public IP addresses (not private, loopback, link-local, documentation ranges).
    pub public_ips_only: bool,
    /// Regions (ISO 3166 alpha-2) whose national phone formats are recognised without a `+`.
    pub phone_regions: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            public_ips_only: true,
            phone_regions: [
                "US", "GB", "DE", "FR", "IN", "CA", "BR", "IL", "AU", "ES", "IT", "NL",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// The shipped detectors, compiled once per process and shared by every policy's engine.
struct Builtin {
    secrets: secrets::Secrets,
    pii: pii::Pii,
    injection: injection::Injection,
}

static BUILTIN: std::sync::OnceLock<Result<Arc<Builtin>, String>> = std::sync::OnceLock::new();

fn builtin() -> Result<Arc<Builtin>, GuardError> {
    BUILTIN
        .get_or_init(|| {
            let b = || -> Result<Builtin, GuardError> {
                Ok(Builtin {
                    secrets: secrets::Secrets::builtin()?,
                    pii: pii::Pii::new()?,
                    injection: injection::Injection::new()?,
                })
            };
            b().map(Arc::new).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(GuardError::BuiltinRules)
}

/// The compiled detectors: the shared built-ins, this policy's options and custom rules.
pub struct Engine {
    builtin: Arc<Builtin>,
    pii_options: pii::PiiOptions,
    custom: custom::Custom,
    /// The findings of long texts already scanned ([`Engine::scan_remembered`]).
    memo: memo::Memo,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("secret_rules", &self.builtin.secrets.len())
            .field("custom_rules", &self.custom.len())
            .finish()
    }
}

impl Engine {
    /// The shipped rules with default options.
    pub fn builtin() -> Result<Engine, GuardError> {
        Engine::new(&Options::default(), &[])
    }

    /// The shipped rules, `options`, and an admin's `custom` rules.
    pub fn new(options: &Options, custom: &[CustomRule]) -> Result<Engine, GuardError> {
        Ok(Engine {
            builtin: builtin()?,
            pii_options: pii::PiiOptions::new(options),
            custom: custom::Custom::compile(custom)?,
            memo: memo::Memo::default(),
        })
    }

    /// Every rule: (id, category, title).
    pub fn rule_list(&self) -> Vec<(String, Category, String)> {
        let mut out: Vec<(String, Category, String)> = secrets::table()
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.id, Category::Secret, d.title))
            .collect();
        out.push((
            "generic_secret".into(),
            Category::Secret,
            "a high-entropy value assigned to a key-like name".into(),
        ));
        for (rules, cat) in [
            (pii::RULES, Category::Pii),
            (injection::RULES, Category::Injection),
        ] {
            out.extend(
                rules
                    .iter()
                    .map(|(id, title)| (id.to_string(), cat, title.to_string())),
            );
        }
        for (id, cat) in self.custom.ids() {
            out.push((id, cat, "custom rule from policy".into()));
        }
        out
    }

    /// The category of the rule `id` (a custom rule's own, else by the built-in tables; an unknown
    /// id is taken for a secret format).
    pub fn category_of(&self, id: &str) -> Category {
        if let Some((_, c)) = self.custom.ids().into_iter().find(|(i, _)| i == id) {
            return c;
        }
        if pii::RULES.iter().any(|(i, _)| *i == id) {
            Category::Pii
        } else if injection::RULES.iter().any(|(i, _)| *i == id) {
            Category::Injection
        } else {
            Category::Secret
        }
    }

    /// The number of secret formats known.
    pub fn secret_rules(&self) -> usize {
        self.builtin.secrets.len()
    }

    /// Every finding in `text`, in order of start, overlaps resolved.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        let b = &self.builtin;
        b.secrets.scan(text, &mut out);
        b.pii.scan(text, &self.pii_options, &mut out);
        b.injection.scan(text, &mut out);
        self.custom.scan(text, &mut out);
        resolve(out)
    }

    /// [`Engine::scan`], remembering the findings of long texts: a text scanned before (a
    /// conversation's earlier messages, sent again each turn) costs a hash and a lookup.
    pub fn scan_remembered(&self, text: &str) -> Vec<Finding> {
        self.memo.findings(text, |t| self.scan(t))
    }

    /// The findings of only the detectors in `cats`, overlaps resolved.
    pub fn scan_only(&self, text: &str, cats: CategorySet) -> Vec<Finding> {
        let mut out = Vec::new();
        let b = &self.builtin;
        if cats.contains(Category::Secret) {
            b.secrets.scan(text, &mut out);
        }
        if cats.contains(Category::Pii) {
            b.pii.scan(text, &self.pii_options, &mut out);
        }
        if cats.contains(Category::Injection) {
            b.injection.scan(text, &mut out);
        }
        if cats.contains(Category::Custom) {
            self.custom.scan(text, &mut out);
        }
        resolve(out)
    }

    /// The most text (bytes) a stream holds back for the detectors in `cats`: for secrets, the
    /// reach of the longest rule past its keyword (held only while such a keyword is open); for the
    /// others, their longest match and the byte after it (always held).
    pub fn stream_bound(&self, cats: CategorySet) -> usize {
        let mut bound = 0;
        if cats.contains(Category::Secret) {
            bound = bound.max(self.builtin.secrets.stream_bound());
        }
        bound.max(self.fixed_lag(cats))
    }

    /// What the detectors other than secrets always hold back in a stream.
    fn fixed_lag(&self, cats: CategorySet) -> usize {
        let mut lag = 0;
        if cats.contains(Category::Pii) {
            lag = lag.max(pii::LONGEST + 2);
        }
        if cats.contains(Category::Injection) {
            lag = lag.max(INJECTION_STREAM_BOUND);
        }
        if cats.contains(Category::Custom) {
            lag = lag.max(self.custom.longest_match() + 2);
        }
        lag
    }

    /// The earliest offset of a stream's `text` so far at which a finding of `cats` may still be
    /// forming; everything before it is final (what a later byte can change lies after it).
    pub(crate) fn hold_from(&self, text: &str, cats: CategorySet, state: &mut HoldState) -> usize {
        let mut from = floor_char(text, text.len().saturating_sub(self.fixed_lag(cats)));
        if cats.contains(Category::Secret) {
            from = from.min(self.builtin.secrets.hold_from(text, &mut state.secrets));
        }
        from
    }

    /// The longest span any rule can match that the stream scanner must be able to see whole
    /// (bytes): the holdback bound of a redacting stream.
    pub fn longest_match(&self) -> usize {
        self.builtin
            .secrets
            .longest_match()
            .max(pii::LONGEST)
            .max(self.custom.longest_match())
    }
}

/// What a stream's hold computation remembers between calls.
#[derive(Debug, Default)]
pub(crate) struct HoldState {
    secrets: secrets::SecretHold,
}

/// Sorts findings and drops those overlapped by a more specific (or, equally specific, longer)
/// one. Findings of different categories that overlap are both kept (an email inside a URL with a
/// password is both PII and a secret), except that an injection finding never hides another.
fn resolve(mut all: Vec<Finding>) -> Vec<Finding> {
    if all.len() < 2 {
        return all;
    }
    // Best first: higher rank, then longer, then earlier.
    all.sort_by(|a, b| {
        b.rank
            .cmp(&a.rank)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(all.len());
    for f in all {
        let hidden = kept.iter().any(|k| {
            k.category == f.category
                && k.start < f.end
                && f.start < k.end
                && !(k.category == Category::Injection && k.rule != f.rule)
        });
        if !hidden {
            kept.push(f);
        }
    }
    kept.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)));
    kept
}

/// Whether the byte before `start` and the byte at `end` are not ASCII letters or digits.
pub(crate) fn bounded(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let before = start == 0 || !b[start - 1].is_ascii_alphanumeric();
    let after = end >= b.len() || !b[end].is_ascii_alphanumeric();
    before && after
}

/// The nearest char boundary at or before `i`.
pub(crate) fn floor_char(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The nearest char boundary at or after `i`.
pub(crate) fn ceil_char(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
