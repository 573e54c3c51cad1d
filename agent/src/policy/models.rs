//! `[models]`: which models may be asked for — a global allow and deny list, and one per provider
//! (`[models.anthropic]`). Entries are globs (`gpt-4o*`, `claude-?-haiku*`) or regular expressions
//! written `re:^o1-pro`; matching ignores case. Deny wins over allow everywhere; a provider's
//! non-empty `allow` admits only what it lists for that provider, the global `allow` does the same
//! for every provider without one, and otherwise `default` (the provider's, else the global one,
//! else `allow`) decides. It owns the section and the decision; the pipeline renders a refusal.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelDefault {
    /// Models no rule names are allowed.
    #[default]
    Allow,
    /// Models no rule names are refused.
    Deny,
}

/// One list of rules (global, or a provider's).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelList {
    /// What happens to a model no `allow` or `deny` entry names (a provider's overrides the global).
    #[serde(default)]
    pub default: Option<ModelDefault>,
    /// Models that may be used: globs, or `re:` regular expressions.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Models that may not be used (deny wins over allow).
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The `[models]` section: the global lists, and `[models.<provider>]` tables (any other key is
/// a provider's table, so it must be one).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ModelsPolicy {
    /// What happens to a model no rule names: `allow` (the default) or `deny`.
    #[serde(default)]
    pub default: Option<ModelDefault>,
    /// Models that may be used with every provider.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Models no provider may be asked for.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per provider (the provider names of `[[hosts]]`: `openai`, `anthropic`, `gemini` …).
    #[serde(flatten)]
    pub providers: BTreeMap<String, ModelList>,
}

/// One compiled entry.
#[derive(Debug, Clone)]
enum Pattern {
    Glob(GlobMatcher),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Rule {
    /// Where it is written, `models.deny[0]` or `models.anthropic.allow[1]`.
    key: String,
    /// As written.
    text: String,
    pattern: Pattern,
}

impl Rule {
    fn matches(&self, model: &str) -> bool {
        match &self.pattern {
            Pattern::Glob(g) => g.is_match(model),
            Pattern::Regex(r) => r.is_match(model),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Compiled {
    default: Option<ModelDefault>,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

/// Why a model was allowed or refused: the rule, or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Because {
    /// The key of the rule (`models.deny[0]`), or of the default that decided
    /// (`models.default`, `models.openai.default`), or `models` when no rule exists.
    pub key: String,
    /// The rule as written (`gpt-4.5*`), or `allow`/`deny` for a default.
    pub rule: String,
}

/// A model decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelDecision {
    /// May be used.
    Allow(Because),
    /// May not be used.
    Deny(Because),
}

/// The compiled `[models]` section.
#[derive(Debug, Clone, Default)]
pub struct ModelRules {
    global: Compiled,
    providers: BTreeMap<String, Compiled>,
}

/// Where a bad entry is: its list's dotted key (`models.openai.allow`) and its index, and what is
/// wrong.
pub type BadEntry = (String, usize, String);

fn compile_rule(key: String, text: &str) -> Result<Rule, String> {
    let pattern = if let Some(re) = text.strip_prefix("re:") {
        RegexBuilder::new(re)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map(Pattern::Regex)
            .map_err(|e| format!("{re:?} is not a regular expression: {e}"))?
    } else {
        if text.trim().is_empty() {
            return Err("an empty model pattern matches nothing; remove it".into());
        }
        GlobBuilder::new(text)
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map(|g| Pattern::Glob(g.compile_matcher()))
            .map_err(|e| {
                format!("{text:?} is not a glob ({e}); write `re:` before a regular expression")
            })?
    };
    Ok(Rule {
        key,
        text: text.to_string(),
        pattern,
    })
}

fn compile_list(
    at: &str,
    default: Option<ModelDefault>,
    allow: &[String],
    deny: &[String],
) -> Result<Compiled, BadEntry> {
    let rules = |name: &str, list: &[String]| -> Result<Vec<Rule>, BadEntry> {
        list.iter()
            .enumerate()
            .map(|(i, t)| {
                compile_rule(format!("{at}.{name}[{i}]"), t)
                    .map_err(|m| (format!("{at}.{name}"), i, m))
            })
            .collect()
    };
    Ok(Compiled {
        default,
        allow: rules("allow", allow)?,
        deny: rules("deny", deny)?,
    })
}

impl ModelRules {
    /// Compiles the section; an error names the key (`models.deny[2]`) and what is wrong.
    pub fn compile(p: &ModelsPolicy) -> Result<ModelRules, BadEntry> {
        let global = compile_list("models", p.default, &p.allow, &p.deny)?;
        let mut providers = BTreeMap::new();
        for (name, list) in &p.providers {
            let at = format!("models.{name}");
            providers.insert(
                name.to_ascii_lowercase(),
                compile_list(&at, list.default, &list.allow, &list.deny)?,
            );
        }
        Ok(ModelRules { global, providers })
    }

    /// Whether any rule exists (no rules: every model is allowed, at no cost).
    pub fn is_empty(&self) -> bool {
        let empty = |c: &Compiled| c.allow.is_empty() && c.deny.is_empty() && c.default.is_none();
        empty(&self.global) && self.providers.values().all(empty)
    }

    /// Decides `model` for `provider`.
    pub fn decide(&self, provider: &str, model: &str) -> ModelDecision {
        let own = self.providers.get(&provider.to_ascii_lowercase());
        let by = |r: &Rule| Because {
            key: r.key.clone(),
            rule: r.text.clone(),
        };
        let lists = own.into_iter().chain(std::iter::once(&self.global));
        for list in lists.clone() {
            if let Some(r) = list.deny.iter().find(|r| r.matches(model)) {
                return ModelDecision::Deny(by(r));
            }
        }
        for list in lists {
            if let Some(r) = list.allow.iter().find(|r| r.matches(model)) {
                return ModelDecision::Allow(by(r));
            }
        }
        let listing = |c: &Compiled, at: String| -> Option<Because> {
            (!c.allow.is_empty()).then(|| Because {
                rule: format!(
                    "only {}",
                    c.allow
                        .iter()
                        .map(|r| r.text.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                key: at,
            })
        };
        // A non-empty allow list admits only what it names: the provider's first, else the global.
        if let Some(b) = own.and_then(|c| listing(c, format!("models.{provider}.allow"))) {
            return ModelDecision::Deny(b);
        }
        if own.is_none_or(|c| c.allow.is_empty()) {
            if let Some(b) = listing(&self.global, "models.allow".into()) {
                return ModelDecision::Deny(b);
            }
        }
        let (default, key) = match own.and_then(|c| c.default) {
            Some(d) => (d, format!("models.{provider}.default")),
            None => match self.global.default {
                Some(d) => (d, "models.default".to_string()),
                None => (ModelDefault::Allow, "models".to_string()),
            },
        };
        let b = Because {
            key,
            rule: match default {
                ModelDefault::Allow => "allow",
                ModelDefault::Deny => "deny",
            }
            .into(),
        };
        match default {
            ModelDefault::Allow => ModelDecision::Allow(b),
            ModelDefault::Deny => ModelDecision::Deny(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> ModelRules {
        #[derive(Deserialize)]
        struct Doc {
            models: ModelsPolicy,
        }
        let doc: Doc = toml::from_str(toml_text).unwrap();
        ModelRules::compile(&doc.models).unwrap()
    }

    fn denied(r: &ModelRules, provider: &str, model: &str) -> Option<String> {
        match r.decide(provider, model) {
            ModelDecision::Deny(b) => Some(format!("{} {}", b.key, b.rule)),
            ModelDecision::Allow(_) => None,
        }
    }

    #[test]
    fn deny_wins_and_provider_allow_lists_admit_only_what_they_name() {
        let r = rules(
            r#"
            [models]
            default = "allow"
            deny = ["gpt-4.5*", "re:^o1-pro"]
            [models.anthropic]
            allow = ["claude-*"]
            deny = ["claude-3-opus*"]
            "#,
        );
        assert_eq!(
            denied(&r, "openai", "gpt-4.5-preview").as_deref(),
            Some("models.deny[0] gpt-4.5*")
        );
        assert_eq!(
            denied(&r, "openai", "O1-PRO-2025").as_deref(),
            Some("models.deny[1] re:^o1-pro"),
            "case ignored"
        );
        assert_eq!(denied(&r, "openai", "gpt-4o-mini"), None);
        assert_eq!(denied(&r, "openai", "my-o1-pro"), None, "anchored regex");
        assert_eq!(denied(&r, "anthropic", "claude-sonnet-4-5"), None);
        assert_eq!(
            denied(&r, "anthropic", "claude-3-opus-20240229").as_deref(),
            Some("models.anthropic.deny[0] claude-3-opus*"),
            "deny wins over the provider's allow"
        );
        assert_eq!(
            denied(&r, "anthropic", "gpt-4o").as_deref(),
            Some("models.anthropic.allow only claude-*")
        );
        assert_eq!(
            denied(&r, "Anthropic", "gpt-4.5"),
            Some("models.deny[0] gpt-4.5*".into()),
            "global deny applies to every provider"
        );
    }

    #[test]
    fn default_deny_and_the_global_allow_list() {
        let r = rules(
            r#"
            [models]
            default = "deny"
            [models.openai]
            allow = ["gpt-4o-mini"]
            [models.gemini]
            default = "allow"
            "#,
        );
        assert_eq!(denied(&r, "openai", "gpt-4o-mini"), None);
        assert!(denied(&r, "openai", "gpt-4o").is_some());
        assert_eq!(
            denied(&r, "mistral", "mistral-large").as_deref(),
            Some("models.default deny")
        );
        assert_eq!(
            denied(&r, "gemini", "gemini-2.5-pro"),
            None,
            "the provider's default wins"
        );
        let g = rules("[models]\nallow = [\"gpt-4o*\", \"claude-*\"]\n");
        assert!(denied(&g, "openai", "o3")
            .unwrap()
            .contains("models.allow only gpt-4o*, claude-*"));
        assert_eq!(denied(&g, "anthropic", "claude-haiku-4-5"), None);
        assert!(ModelRules::default().is_empty());
        assert!(!g.is_empty());
    }

    #[test]
    fn a_bad_pattern_names_its_key() {
        let doc: ModelsPolicy = toml::from_str("deny = [\"ok\", \"re:(\"]\n").unwrap();
        let (key, i, msg) = ModelRules::compile(&doc).unwrap_err();
        assert_eq!((key.as_str(), i), ("models.deny", 1));
        assert!(msg.contains("not a regular expression"), "{msg}");
        let doc: ModelsPolicy = toml::from_str("[openai]\nallow = [\"gpt-[4\"]\n").unwrap();
        let (key, i, msg) = ModelRules::compile(&doc).unwrap_err();
        assert_eq!((key.as_str(), i), ("models.openai.allow", 0));
        assert!(msg.contains("not a glob"), "{msg}");
    }
}
