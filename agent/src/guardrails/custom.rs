//! An admin's own detectors from policy (`[[guardrails.custom]]`): a regex, or a list of keywords
//! (whole words, case-insensitive), with an id and a category, compiled once with the policy. Every
//! custom regex runs in one `RegexSet` pass to learn which can match, then only those run for
//! positions; keywords share one Aho-Corasick automaton. It must not decide actions.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::{bounded, Category, Finding, GuardError};

/// Rank of an admin's rule (beats every built-in on overlap: the admin named it).
const RANK: u8 = 4;
/// The longest custom regex match the stream scanner allows for, unless the rule says.
const LONGEST: usize = 256;
/// The largest compiled regex a custom rule may make.
const SIZE_LIMIT: usize = 4 << 20;

/// One custom rule as policy writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Rule id in findings and actions (snake_case).
    pub id: String,
    /// Category it reports under (default `custom`).
    #[serde(default = "custom_category")]
    pub category: Category,
    /// A regex (Rust syntax); the finding is the group named `s` if there is one.
    #[serde(default)]
    pub regex: Option<String>,
    /// Whole words or phrases, matched case-insensitively.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The longest match this rule can make, for the stream holdback (default 256 bytes).
    #[serde(default)]
    pub max_len: Option<usize>,
}

fn custom_category() -> Category {
    Category::Custom
}

struct Compiled {
    id: Arc<str>,
    category: Category,
    regex: Regex,
    group: Option<usize>,
}

/// The compiled custom rules.
#[derive(Default)]
pub(crate) struct Custom {
    set: Option<RegexSet>,
    regexes: Vec<Compiled>,
    keywords: Option<AhoCorasick>,
    /// For each keyword pattern: (id, category).
    keyword_rules: Vec<(Arc<str>, Category)>,
    longest: usize,
    count: usize,
}

impl Custom {
    pub(crate) fn compile(rules: &[CustomRule]) -> Result<Custom, GuardError> {
        let mut c = Custom {
            count: rules.len(),
            ..Custom::default()
        };
        let mut words = Vec::new();
        for r in rules {
            let bad = |message: String| GuardError::Custom {
                id: r.id.clone(),
                message,
            };
            if r.id.is_empty()
                || !r
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(bad("the id must be snake_case (a-z, 0-9, _)".into()));
            }
            if r.regex.is_none() && r.keywords.is_empty() {
                return Err(bad("give a regex or keywords".into()));
            }
            let id: Arc<str> = r.id.as_str().into();
            if let Some(p) = &r.regex {
                let regex = regex::RegexBuilder::new(p)
                    .size_limit(SIZE_LIMIT)
                    .build()
                    .map_err(|e| bad(format!("the regex does not compile: {e}")))?;
                if regex.is_match("") {
                    return Err(bad(
                        "the regex matches the empty string; it would match everywhere".into(),
                    ));
                }
                let group = regex.capture_names().position(|n| n == Some("s"));
                c.regexes.push(Compiled {
                    id: id.clone(),
                    category: r.category,
                    regex,
                    group,
                });
            }
            for k in &r.keywords {
                if k.trim().is_empty() {
                    return Err(bad("a keyword is empty".into()));
                }
                words.push(k.trim().to_lowercase());
                c.keyword_rules.push((id.clone(), r.category));
            }
            let longest = r.max_len.unwrap_or_else(|| {
                r.keywords
                    .iter()
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
                    .max(LONGEST)
            });
            c.longest = c.longest.max(longest);
        }
        if !c.regexes.is_empty() {
            let set = RegexSet::new(c.regexes.iter().map(|r| r.regex.as_str())).map_err(|e| {
                GuardError::Custom {
                    id: "(all)".into(),
                    message: e.to_string(),
                }
            })?;
            c.set = Some(set);
        }
        if !words.is_empty() {
            c.keywords = Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&words)
                    .map_err(|e| GuardError::Custom {
                        id: "(keywords)".into(),
                        message: e.to_string(),
                    })?,
            );
        }
        Ok(c)
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Every rule's id and category.
    pub(crate) fn ids(&self) -> Vec<(String, Category)> {
        let mut out: Vec<(String, Category)> = Vec::new();
        for (id, cat) in self
            .regexes
            .iter()
            .map(|r| (r.id.to_string(), r.category))
            .chain(self.keyword_rules.iter().map(|(i, c)| (i.to_string(), *c)))
        {
            if !out.iter().any(|(i, _)| *i == id) {
                out.push((id, cat));
            }
        }
        out
    }

    pub(crate) fn longest_match(&self) -> usize {
        self.longest
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        if let Some(set) = &self.set {
            for i in set.matches(text).iter() {
                let r = &self.regexes[i];
                for caps in r.regex.captures_iter(text) {
                    let m = r.group.and_then(|g| caps.get(g)).or_else(|| caps.get(0));
                    if let Some(m) = m.filter(|m| !m.is_empty()) {
                        out.push(Finding::new(&r.id, r.category, m.start(), m.end(), RANK));
                    }
                }
            }
        }
        if let Some(ac) = &self.keywords {
            // Case-insensitive for ASCII; other scripts match as written (lower case).
            for m in ac.find_iter(text) {
                if bounded(text, m.start(), m.end()) {
                    let (id, cat) = &self.keyword_rules[m.pattern().as_usize()];
                    out.push(Finding::new(id, *cat, m.start(), m.end(), RANK));
                }
            }
        }
    }
}
