//! A policy's guardrails, compiled ([`Guard`]): the engine with the policy's options and custom
//! rules, and the action rules that say what each finding leads to — most specific first (a rule
//! id beats a category beats a rule naming neither; the first of equals), filtered by direction,
//! provider, model and app, with per-rule allowlists of values, fingerprints and JSON paths. With no
//! rule, the built-in default for the category and direction. Also what a record may keep of a
//! finding ([`Hit`]): a keyed hash and a masked preview, never the value. It must not change text.

use globset::{Glob, GlobMatcher};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{Category, CategorySet, Engine, Finding, GuardError, Options};
use crate::policy::guardrails::{Action, Direction, GuardrailsPolicy};

/// Who and what a request is, for the rules' filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Provider name.
    pub provider: &'a str,
    /// Model asked for.
    pub model: Option<&'a str>,
    /// Client executable name.
    pub app: Option<&'a str>,
}

struct Compiled {
    rules: Vec<String>,
    categories: Vec<Category>,
    direction: Direction,
    action: Action,
    providers: Vec<GlobMatcher>,
    models: Vec<GlobMatcher>,
    apps: Vec<GlobMatcher>,
    allow_values: Vec<String>,
    allow_fingerprints: Vec<String>,
    allow_paths: Vec<GlobMatcher>,
}

impl Compiled {
    fn specificity(&self, f: &Finding) -> Option<u8> {
        if self.rules.iter().any(|r| **r == *f.rule) {
            Some(3)
        } else if self.categories.contains(&f.category) {
            Some(2)
        } else if self.rules.is_empty() && self.categories.is_empty() {
            Some(1)
        } else {
            None
        }
    }

    fn applies(&self, dir: Direction, cx: &Context<'_>) -> bool {
        let any = |globs: &[GlobMatcher], v: Option<&str>| {
            globs.is_empty() || v.is_some_and(|v| globs.iter().any(|g| g.is_match(v)))
        };
        (self.direction == Direction::Both || self.direction == dir)
            && any(&self.providers, Some(cx.provider))
            && any(&self.models, cx.model)
            && any(&self.apps, cx.app)
    }

    fn allows(&self, value: &str, pointer: Option<&str>) -> bool {
        self.allow_values.iter().any(|v| v == value)
            || (!self.allow_fingerprints.is_empty()
                && self.allow_fingerprints.contains(&fingerprint(value)))
            || pointer.is_some_and(|p| self.allow_paths.iter().any(|g| g.is_match(p)))
    }
}

/// The built-in action for a finding no rule covers.
pub fn default_action(category: Category, dir: Direction) -> Action {
    match (category, dir) {
        (Category::Secret, Direction::Response) => Action::Redact,
        (Category::Secret, _) => Action::Block,
        (Category::Pii, Direction::Response) => Action::Log,
        (Category::Pii, _) => Action::Warn,
        (Category::Injection, _) => Action::Warn,
        (Category::Custom, _) => Action::Warn,
    }
}

/// The compiled `[guardrails]` of one policy.
pub struct Guard {
    engine: Engine,
    rules: Vec<Compiled>,
    enabled: bool,
    buffer_responses: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("enabled", &self.enabled)
            .field("rules", &self.rules.len())
            .field("engine", &self.engine)
            .finish()
    }
}

fn globs(list: &[String]) -> Result<Vec<GlobMatcher>, GuardError> {
    list.iter()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| GuardError::Custom {
                    id: p.clone(),
                    message: format!("not a glob: {e}"),
                })
        })
        .collect()
}

impl Guard {
    /// Compiles a policy's section.
    pub fn compile(p: &GuardrailsPolicy) -> Result<Guard, GuardError> {
        let mut options = Options {
            public_ips_only: p.public_ips_only,
            ..Options::default()
        };
        if let Some(r) = &p.phone_regions {
            options.phone_regions = r.clone();
        }
        let engine = Engine::new(&options, &p.custom)?;
        let rules = p
            .rules
            .iter()
            .map(|r| {
                Ok(Compiled {
                    rules: r.rules.clone(),
                    categories: r
                        .categories
                        .iter()
                        .filter_map(|c| Category::parse(c))
                        .collect(),
                    direction: r.direction,
                    action: r.action,
                    providers: globs(&r.providers)?,
                    models: globs(&r.models)?,
                    apps: globs(&r.apps)?,
                    allow_values: r.allow_values.clone(),
                    allow_fingerprints: r.allow_fingerprints.clone(),
                    allow_paths: globs(&r.allow_paths)?,
                })
            })
            .collect::<Result<Vec<_>, GuardError>>()?;
        Ok(Guard {
            engine,
            rules,
            enabled: p.enabled,
            buffer_responses: p.buffer_responses,
        })
    }

    /// The built-in rules and defaults only.
    pub fn builtin() -> Result<Guard, GuardError> {
        Guard::compile(&GuardrailsPolicy::default())
    }

    /// Whether the detectors run at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether responses are held whole before the client sees them.
    pub fn buffer_responses(&self) -> bool {
        self.buffer_responses
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The categories whose findings may be redacted or blocked in `dir` for `cx` — what a
    /// response stream must hold text back for (a rule naming rule ids counts their categories).
    pub fn acting(&self, dir: Direction, cx: &Context<'_>) -> CategorySet {
        let acts = |a: Action| matches!(a, Action::Redact | Action::Block);
        let mut set = CategorySet::default();
        for c in [
            Category::Secret,
            Category::Pii,
            Category::Injection,
            Category::Custom,
        ] {
            if acts(default_action(c, dir)) {
                set.insert(c);
            }
        }
        for r in self
            .rules
            .iter()
            .filter(|r| acts(r.action) && r.applies(dir, cx))
        {
            if r.rules.is_empty() && r.categories.is_empty() {
                return CategorySet::ALL;
            }
            for c in &r.categories {
                set.insert(*c);
            }
            for id in &r.rules {
                set.insert(self.engine.category_of(id));
            }
        }
        set
    }

    /// What `f` (whose text is `value`, at JSON Pointer `pointer` of the body) leads to.
    pub fn action(
        &self,
        f: &Finding,
        value: &str,
        pointer: Option<&str>,
        dir: Direction,
        cx: &Context<'_>,
    ) -> Action {
        let mut best: Option<(u8, &Compiled)> = None;
        for r in &self.rules {
            if let Some(s) = r.specificity(f) {
                if r.applies(dir, cx) && best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, r));
                }
            }
        }
        match best {
            Some((_, r)) if r.allows(value, pointer) => Action::Off,
            Some((_, r)) => r.action,
            None => default_action(f.category, dir),
        }
    }
}

/// What a record keeps of a finding: a masked preview and a hash keyed with `key` (the
/// device's), never the value.
pub fn hit(
    key: &[u8; 32],
    f: &Finding,
    value: &str,
    pointer: Option<&str>,
    dir: Direction,
    action: Action,
) -> Hit {
    // HMAC takes a key of any length, so this always has a hash.
    let hash = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(value.as_bytes());
            format!(
                "hmac-sha256:{}",
                hex::encode(&mac.finalize().into_bytes()[..16])
            )
        }
        Err(_) => "hmac-sha256:unavailable".into(),
    };
    Hit {
        rule: f.rule.to_string(),
        category: f.category,
        direction: dir,
        pointer: pointer.map(str::to_string),
        action,
        count: 1,
        preview: preview(f.category, value),
        hash,
    }
}
/// `sha256:` and the hex digest of a value: what allowlists name instead of the value.
pub fn fingerprint(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// At most the first four and the last three characters of a long secret, less of personal data,
/// nothing of a short value.
pub fn preview(category: Category, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (head, tail) = match category {
        Category::Secret if n >= 16 => (4, 3),
        Category::Secret if n >= 10 => (2, 2),
        Category::Pii if n >= 12 => (2, 2),
        _ => (0, 0),
    };
    if head == 0 {
        return "…".into();
    }
    let h: String = chars[..head].iter().collect();
    let t: String = chars[n - tail..].iter().collect();
    format!("{h}…{t}")
}

/// One rule firing, as a record keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// Rule id.
    pub rule: String,
    /// Its category.
    pub category: Category,
    /// Request or response.
    pub direction: Direction,
    /// Where in the body (JSON Pointer), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// What was done.
    pub action: Action,
    /// How many times it fired there.
    pub count: u32,
    /// A masked preview (`AKIA…2MQ`).
    pub preview: String,
    /// A keyed hash of the value, to tell repeats apart without keeping it.
    pub hash: String,
}

/// Hits merged by (rule, direction, pointer, action), counting repeats.
pub fn merge(hits: Vec<Hit>) -> Vec<Hit> {
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        match out.iter_mut().find(|o| {
            o.rule == h.rule
                && o.direction == h.direction
                && o.pointer == h.pointer
                && o.action == h.action
        }) {
            Some(o) => o.count += h.count,
            None => out.push(h),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::guardrails::ActionRule;
    use std::sync::Arc;

    fn finding(rule: &str, category: Category) -> Finding {
        Finding::new(&Arc::from(rule), category, 0, 4, 1)
    }

    #[test]
    fn the_most_specific_rule_decides_and_defaults_fill_the_rest() {
        let p = GuardrailsPolicy {
            rules: vec![
                ActionRule {
                    categories: vec!["pii".into()],
                    action: Action::Redact,
                    ..ActionRule::default()
                },
                ActionRule {
                    rules: vec!["ipv4".into()],
                    action: Action::Log,
                    ..ActionRule::default()
                },
                ActionRule {
                    categories: vec!["secret".into()],
                    apps: vec!["ci-*".into()],
                    action: Action::Warn,
                    allow_paths: vec!["/tools/**".into()],
                    ..ActionRule::default()
                },
            ],
            ..GuardrailsPolicy::default()
        };
        let g = Guard::compile(&p).unwrap();
        let cx = Context {
            provider: "openai",
            model: Some("gpt-4o"),
            app: Some("python3"),
        };
        let ci = Context {
            app: Some("ci-runner"),
            ..cx
        };
        let req = Direction::Request;
        assert_eq!(
            g.action(&finding("email", Category::Pii), "a@b.c", None, req, &cx),
            Action::Redact
        );
        assert_eq!(
            g.action(&finding("ipv4", Category::Pii), "8.8.8.8", None, req, &cx),
            Action::Log
        );
        assert_eq!(
            g.action(
                &finding("aws_access_key", Category::Secret),
                "x",
                None,
                req,
                &cx
            ),
            Action::Block
        );
        assert_eq!(
            g.action(
                &finding("aws_access_key", Category::Secret),
                "x",
                None,
                req,
                &ci
            ),
            Action::Warn
        );
        assert_eq!(
            g.action(
                &finding("aws_access_key", Category::Secret),
                "x",
                Some("/tools/0/description"),
                req,
                &ci
            ),
            Action::Off
        );
        assert_eq!(
            g.action(
                &finding("aws_access_key", Category::Secret),
                "x",
                None,
                Direction::Response,
                &cx
            ),
            Action::Redact
        );
    }

    #[test]
    fn records_keep_a_masked_preview_and_a_keyed_hash_never_the_value() {
        let v = "AKIAZ4ZK3JXQWT7PLD2M";
        let h = hit(
            &[7; 32],
            &finding("aws_access_key", Category::Secret),
            v,
            Some("/messages/0/content"),
            Direction::Request,
            Action::Block,
        );
        assert_eq!(h.preview, "AKIA…D2M");
        let shown = serde_json::to_string(&h).unwrap();
        assert!(!shown.contains(v), "{shown}");
        let again = hit(
            &[7; 32],
            &finding("aws_access_key", Category::Secret),
            v,
            None,
            Direction::Request,
            Action::Block,
        );
        assert_eq!(h.hash, again.hash);
        assert_ne!(
            hit(
                &[8; 32],
                &finding("aws_access_key", Category::Secret),
                v,
                None,
                Direction::Request,
                Action::Block
            )
            .hash,
            h.hash
        );
        assert_eq!(preview(Category::Pii, "a@b.co"), "…");
    }
}
