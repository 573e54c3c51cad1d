//! The secret detector: credential formats from the shipped table (`rules/secrets.toml`: keywords,
//! a regex whose group `s` is the secret, entropy and allowlists per rule) plus the generic
//! "high-entropy value assigned to a key-like name" rule, which needs stop-word logic a table
//! cannot hold. One case-insensitive Aho-Corasick pass over the text finds every keyword; a rule's
//! regex then runs only on the windows around its keywords' hits, so text with no keyword costs
//! one automaton pass. It must not know what happens to findings.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::PatternID;
use regex_syntax::hir::Hir;
use serde::Deserialize;

use super::entropy::shannon;
use super::{bounded, ceil_char, floor_char, Category, Finding, GuardError};

/// The shipped table.
const TABLE: &str = include_str!("rules/secrets.toml");

/// Rank of a named format (beats the generic rule on overlap).
const RANK_NAMED: u8 = 3;
/// Rank of the generic assignment rule.
const RANK_GENERIC: u8 = 1;

#[derive(Debug, Deserialize)]
struct Table {
    rule: Vec<RuleDef>,
}

/// One rule as written in the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDef {
    pub(crate) id: String,
    #[allow(dead_code)]
    pub(crate) title: String,
    pub(crate) keywords: Vec<String>,
    pub(crate) regex: String,
    #[serde(default)]
    pub(crate) entropy: Option<f64>,
    #[serde(default = "yes")]
    pub(crate) boundary: bool,
    #[serde(default)]
    pub(crate) window: Option<usize>,
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// Strings the rule must find (checked by the tests).
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) examples: Vec<String>,
    /// Strings the rule must not find (checked by the tests).
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) counter: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A rule's regex. Built without the one-pass DFA the `regex` crate adds for capture groups (with
/// 350 rules that DFA alone held ~9 MB): captures are only ever resolved inside a match the lazy
/// DFA already found, a few dozen bytes, where the bounded backtracker is as quick.
type RuleRegex = regex_automata::meta::Regex;

fn rule_regex(pattern: &str) -> Result<RuleRegex, Box<regex_automata::meta::BuildError>> {
    regex_automata::meta::Builder::new()
        .configure(regex_automata::meta::Config::new().onepass(false))
        .build(pattern)
        .map_err(Box::new)
}

/// A rule's regex and the index of its `s` group, compiled the first time one of the rule's
/// keywords is seen: most of the 350 formats never come up on a given laptop, and compiling them
/// all at start held ~7 MB of NFAs in an idle agent. The pattern was parsed when the rules were
/// loaded ([`parse`]), and `every_builtin_rule_compiles` compiles each one, so this only fails on
/// a regex-automata size limit.
struct Lazy {
    /// The regex as written (also what the stream DFA is built from).
    pattern: String,
    compiled: std::sync::OnceLock<Option<(RuleRegex, Option<usize>)>>,
}

/// A rule's pattern parsed once at load: a syntax error fails the rules, and what the stream needs
/// to know of the pattern ([`reach`], [`match_starts`]) is read from it.
fn parse(id: &str, pattern: &str) -> Result<Hir, GuardError> {
    regex_syntax::parse(pattern).map_err(|e| GuardError::BuiltinRules(format!("{id}: {e}")))
}

impl Lazy {
    /// A pattern [`parse`] accepted, not compiled yet.
    fn new(pattern: &str) -> Lazy {
        Lazy {
            pattern: pattern.to_string(),
            compiled: std::sync::OnceLock::new(),
        }
    }

    /// The regex and its `s` group, compiled on first use; `None` if it cannot be compiled
    /// (logged once, the rule then finds nothing).
    fn get(&self, id: &str) -> Option<&(RuleRegex, Option<usize>)> {
        self.compiled
            .get_or_init(|| match rule_regex(&self.pattern) {
                Ok(re) => {
                    let group = re.group_info().to_index(PatternID::ZERO, "s");
                    Some((re, group))
                }
                Err(e) => {
                    tracing::error!(rule = id, error = %e, "a built-in secret rule does not compile; it is skipped");
                    None
                }
            })
            .as_ref()
    }
}

/// Bytes searched either side of a keyword hit when a rule says nothing.
const WINDOW: usize = 512;

struct Rule {
    id: Arc<str>,
    regex: Lazy,
    entropy: Option<f64>,
    boundary: bool,
    window: usize,
    /// How far past the start of a keyword hit this rule's match (and the byte after it) can reach:
    /// while a stream has less text than that after a hit, the match may still be forming.
    reach: usize,
    /// The literals (lower-case) every match starts with, when the regex says: then a stream can
    /// tell from its text that no match around a keyword can still be forming.
    starts: Vec<Vec<u8>>,
    dfa: std::sync::OnceLock<Option<Dfa>>,
    allow: Vec<String>,
    rank: u8,
    /// Extra validation in code (the generic rule's stop-words).
    check: Option<fn(&str, &str) -> bool>,
}

/// The compiled secret rules.
pub(crate) struct Secrets {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// For each keyword pattern, the rules it selects.
    selects: Vec<Vec<usize>>,
    /// The longest keyword (bytes).
    max_keyword: usize,
    /// Every proper prefix of every keyword (lower-case): a stream's text ending in one may be
    /// in the middle of a keyword.
    prefixes: std::collections::HashSet<Vec<u8>>,
    /// The longest reach of any rule.
    max_reach: usize,
}

/// What a stream remembers between [`Secrets::hold_from`] calls: keyword hits whose rules may still
/// be matching, and how far the text has been searched for keywords.
#[derive(Default)]
pub(crate) struct SecretHold {
    searched: usize,
    open: Vec<Open>,
}

impl std::fmt::Debug for SecretHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHold")
            .field("searched", &self.searched)
            .field("open", &self.open.len())
            .finish()
    }
}

/// A keyword hit whose rules may still match.
struct Open {
    start: usize,
    end: usize,
    pattern: usize,
    /// Per rule tried: where its matches may start and how far each search has got.
    tracks: Vec<Track>,
}

/// One rule's anchored searches around a keyword hit, kept between calls so each byte of the
/// stream is looked at once.
struct Track {
    rule: usize,
    cache: Cache,
    /// The cache's clear count when the states below were made (a clear invalidates them).
    clears: usize,
    /// Where the search for the rule's start literals has got.
    scanned: usize,
    /// Searches still alive: where each started, its state, and how far it has read.
    live: Vec<Search>,
}

struct Search {
    start: usize,
    state: Option<LazyStateID>,
    at: usize,
}

type LazyStateID = regex_automata::hybrid::LazyStateID;

/// A lazy DFA of one rule's regex, searched anchored at its keyword.
type Dfa = regex_automata::hybrid::dfa::DFA;
type Cache = regex_automata::hybrid::dfa::Cache;

/// The literals (lower-case, deduplicated) every match of `pattern` starts with, when they are
/// all known and at least 3 bytes long (shorter ones would start a search almost anywhere).
fn match_starts(hir: &Hir) -> Vec<Vec<u8>> {
    let seq = regex_syntax::hir::literal::Extractor::new().extract(hir);
    let Some(lits) = seq.literals() else {
        return Vec::new();
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    for l in lits {
        let lower = l.as_bytes().to_ascii_lowercase();
        if lower.len() < 3 {
            return Vec::new();
        }
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

fn stream_dfa(pattern: &str) -> Option<Dfa> {
    Dfa::builder()
        .configure(Dfa::config().unicode_word_boundary(true))
        .build(pattern)
        .ok()
}

/// Reads `text` from where `search` got to; false once it cannot match any more (dead). Anything
/// the DFA cannot decide counts as alive.
fn step(dfa: &Dfa, cache: &mut Cache, text: &str, search: &mut Search) -> bool {
    use regex_automata::{Anchored, Input};
    if search.at == usize::MAX {
        return true; // undecidable (a byte the DFA gives up on): alive while the reach lasts
    }
    let Some(mut sid) = search.state.or_else(|| {
        let input = Input::new(text)
            .range(search.start..)
            .anchored(Anchored::Yes);
        dfa.start_state_forward(cache, &input).ok()
    }) else {
        return true;
    };
    let b = text.as_bytes();
    while search.at < b.len() {
        match dfa.next_state(cache, sid, b[search.at]) {
            Ok(next) => sid = next,
            Err(_) => {
                // The cache gave up on this state: read again from the start next time.
                search.state = None;
                search.at = search.start;
                return true;
            }
        }
        search.at += 1;
        if sid.is_dead() {
            return false;
        }
        if sid.is_quit() {
            search.state = None;
            search.at = usize::MAX;
            return true;
        }
    }
    search.state = Some(sid);
    true
}

/// Reach of a rule: its longest match from a keyword (which a match contains) plus one byte of
/// boundary; a rule whose repetitions are unbounded reaches across its window.
fn reach(hir: &Hir, window: usize, longest_keyword: usize) -> usize {
    let bound = 2 * window + longest_keyword;
    hir.properties()
        .maximum_len()
        .map_or(bound, |m| m.min(bound))
        + 1
}

/// The table's rules, parsed (for the tests and `airlock guard rules`).
pub(crate) fn table() -> Result<Vec<RuleDef>, GuardError> {
    toml::from_str::<Table>(TABLE)
        .map(|t| t.rule)
        .map_err(|e| GuardError::BuiltinRules(e.to_string()))
}

impl Secrets {
    pub(crate) fn builtin() -> Result<Secrets, GuardError> {
        let defs = table()?;
        let mut rules = Vec::with_capacity(defs.len() + 1);
        let mut patterns: Vec<String> = Vec::new();
        let mut selects: Vec<Vec<usize>> = Vec::new();
        let mut add_keywords = |keywords: &[String], idx: usize| {
            for k in keywords {
                let k = k.to_ascii_lowercase();
                match patterns.iter().position(|p| *p == k) {
                    Some(i) => selects[i].push(idx),
                    None => {
                        patterns.push(k);
                        selects.push(vec![idx]);
                    }
                }
            }
        };
        for d in defs {
            let hir = parse(&d.id, &d.regex)?;
            add_keywords(&d.keywords, rules.len());
            let window = d.window.unwrap_or(WINDOW);
            let longest_keyword = d.keywords.iter().map(String::len).max().unwrap_or(0);
            rules.push(Rule {
                id: d.id.into(),
                reach: reach(&hir, window, longest_keyword),
                starts: match_starts(&hir),
                dfa: std::sync::OnceLock::new(),
                regex: Lazy::new(&d.regex),
                entropy: d.entropy,
                boundary: d.boundary,
                window,
                allow: d.allow.iter().map(|a| a.to_ascii_lowercase()).collect(),
                rank: RANK_NAMED,
                check: None,
            });
        }
        let generic = generic_rule()?;
        add_keywords(&GENERIC_KEYWORDS.map(String::from), rules.len());
        rules.push(generic);
        // One non-overlapping leftmost-longest pass (the fast one): a keyword that contains
        // another (`sk-proj-` holds `sk-`) also selects the other's rules, since only the longer
        // is reported where both occur.
        let mut merged = selects.clone();
        for (i, p) in patterns.iter().enumerate() {
            for (j, q) in patterns.iter().enumerate() {
                if i != j && p.len() > q.len() && p.contains(q.as_str()) {
                    let extra = selects[j].clone();
                    merged[i].extend(extra);
                }
            }
        }
        for m in &mut merged {
            m.sort_unstable();
            m.dedup();
        }
        let selects = merged;
        let max_keyword = patterns.iter().map(String::len).max().unwrap_or(1);
        let prefixes = patterns
            .iter()
            .flat_map(|p| (1..p.len()).map(move |n| p.as_bytes()[..n].to_vec()))
            .collect();
        let max_reach = rules.iter().map(|r| r.reach).max().unwrap_or(WINDOW);
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            // A full DFA: a few MB once per process, and several times the NFA's speed.
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| GuardError::BuiltinRules(e.to_string()))?;
        Ok(Secrets {
            rules,
            keywords,
            selects,
            max_keyword,
            prefixes,
            max_reach,
        })
    }

    /// The most text a stream holds back for secrets: a rule's whole reach past its keyword, or a
    /// keyword still arriving.
    pub(crate) fn stream_bound(&self) -> usize {
        self.max_reach.max(self.max_keyword)
    }

    /// The earliest offset of `text` (a stream's text so far) at which a secret may still be
    /// forming: the start of a keyword hit whose rule could match text not yet seen, or the last
    /// bytes that may be the start of a keyword. Text before it is final for this detector.
    pub(crate) fn hold_from(&self, text: &str, state: &mut SecretHold) -> usize {
        let len = text.len();
        // A keyword split across deltas: its first bytes end the text.
        let b = text.as_bytes();
        let mut from = (len.saturating_sub(self.max_keyword.saturating_sub(1))..len)
            .find(|&i| self.prefixes.contains(&b[i..].to_ascii_lowercase()))
            .map_or(len, |i| floor_char(text, i));
        let search = state
            .searched
            .saturating_sub(self.max_keyword.saturating_sub(1));
        if search < len {
            let known = state.open.last().map(|o| o.start);
            for hit in self.keywords.find_iter(&text.as_bytes()[search..]) {
                let (s, e) = (search + hit.start(), search + hit.end());
                // A keyword ending where the last search ended may be found again.
                if known.is_some_and(|k| s <= k) {
                    continue;
                }
                state.open.push(Open {
                    start: s,
                    end: e,
                    pattern: hit.pattern().as_usize(),
                    tracks: Vec::new(),
                });
            }
            state.searched = len;
        }
        state.open.retain_mut(|o| {
            let rules = &self.selects[o.pattern];
            rules.iter().any(|&r| self.forming(text, o, r))
        });
        if let Some(o) = state.open.first() {
            from = from.min(o.start);
        }
        from
    }

    /// Whether rule `r`, selected by the keyword hit `o`, may still match once more text comes.
    fn forming(&self, text: &str, o: &mut Open, r: usize) -> bool {
        let rule = &self.rules[r];
        if o.start + rule.reach <= text.len() {
            return false;
        }
        if rule.check.is_some() {
            return generic_forming(text, o.end);
        }
        if rule.starts.is_empty() {
            return true;
        }
        let Some(dfa) = rule.dfa.get_or_init(|| stream_dfa(&rule.regex.pattern)) else {
            return true;
        };
        let i = match o.tracks.iter().position(|t| t.rule == r) {
            Some(i) => i,
            None => {
                let cache = dfa.create_cache();
                o.tracks.push(Track {
                    rule: r,
                    clears: cache.clear_count(),
                    cache,
                    scanned: o.start.saturating_sub(rule.window),
                    live: Vec::new(),
                });
                o.tracks.len() - 1
            }
        };
        let t = &mut o.tracks[i];
        if t.cache.clear_count() != t.clears {
            // The cache was cleared: its states are gone, so every search reads again from its start.
            for s in t.live.iter_mut().filter(|s| s.at != usize::MAX) {
                s.state = None;
                s.at = s.start;
            }
            t.clears = t.cache.clear_count();
        }
        // A match starts with one of the rule's literals somewhere in the window the rule is run on
        // around this keyword: find the new places where one starts (a literal cut by the end of the
        // text waits for more).
        let b = text.as_bytes();
        let mut arriving = false;
        while t.scanned < b.len() && !arriving {
            let p = t.scanned;
            for k in &rule.starts {
                let n = k.len().min(b.len() - p);
                if !b[p..p + n].eq_ignore_ascii_case(&k[..n]) {
                    continue;
                }
                if n < k.len() {
                    arriving = true;
                } else {
                    t.live.push(Search {
                        start: p,
                        state: None,
                        at: p,
                    });
                }
                break;
            }
            if !arriving {
                t.scanned += 1;
            }
        }
        let (cache, live) = (&mut t.cache, &mut t.live);
        live.retain_mut(|s| step(dfa, cache, text, s));
        arriving || !live.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The longest secret a rule can report, as far as windows bound it.
    pub(crate) fn longest_match(&self) -> usize {
        self.rules.iter().map(|r| r.window).max().unwrap_or(WINDOW)
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        // Per rule, the merged windows around its keywords' hits.
        let mut windows: Vec<Vec<(usize, usize)>> = Vec::new();
        for hit in self.keywords.find_iter(text) {
            if windows.is_empty() {
                windows = vec![Vec::new(); self.rules.len()];
            }
            for &r in &self.selects[hit.pattern().as_usize()] {
                let rule = &self.rules[r];
                let w = rule.window;
                if rule.check.is_some() && !assignment_follows(text, hit.end()) {
                    // The generic rule needs `name = value`: no operator soon after the name, no run.
                    continue;
                }
                let start = hit
                    .start()
                    .saturating_sub(if rule.check.is_some() { 48 } else { w });
                let end = (hit.end() + w).min(text.len());
                let list = &mut windows[r];
                match list.last_mut() {
                    Some(last) if start <= last.1 => last.1 = last.1.max(end),
                    _ => list.push((start, end)),
                }
            }
        }
        for (r, list) in windows.iter().enumerate() {
            let rule = &self.rules[r];
            for &(start, end) in list {
                let (start, end) = (floor_char(text, start), ceil_char(text, end));
                self.run(rule, text, start, end, out);
            }
        }
    }

    fn run(&self, rule: &Rule, text: &str, from: usize, to: usize, out: &mut Vec<Finding>) {
        let Some((regex, group)) = rule.regex.get(&rule.id) else {
            return;
        };
        let hay = &text[from..to];
        for caps in regex.captures_iter(hay) {
            let m = match *group {
                Some(g) => caps.get_group(g),
                None => caps.get_match().map(|m| m.span()),
            };
            let Some(m) = m else { continue };
            let (start, end) = (from + m.start, from + m.end);
            if start == end {
                continue;
            }
            if rule.boundary && !bounded(text, start, end) {
                continue;
            }
            let value = &hay[m.range()];
            if rule.entropy.is_some_and(|min| shannon(value) < min) {
                continue;
            }
            if !rule.allow.is_empty() {
                let lower = value.to_ascii_lowercase();
                if rule.allow.iter().any(|a| lower.contains(a.as_str())) {
                    continue;
                }
            }
            if let Some(check) = rule.check {
                let whole = caps.get_match().map_or("", |w| &hay[w.range()]);
                if !check(whole, value) {
                    continue;
                }
            }
            out.push(Finding::new(
                &rule.id,
                Category::Secret,
                start,
                end,
                rule.rank,
            ));
        }
    }
}

/// Whether an assignment (`=`, `:`, `=>`, ` is `) comes within a key name's tail after `at`.
fn assignment_follows(text: &str, at: usize) -> bool {
    let b = text.as_bytes();
    let tail = &b[at.min(b.len())..(at + 28).min(b.len())];
    tail.iter().any(|&c| c == b'=' || c == b':') || tail.windows(4).any(|w| w == b" is ")
}

/// Whether the generic rule may still match after a key name ending at `at`: the assignment may
/// still come, or its value has not ended yet. Once the value's token has ended the match is whole.
fn generic_forming(text: &str, at: usize) -> bool {
    let b = text.as_bytes();
    let tail = &b[at.min(b.len())..];
    let near = &tail[..tail.len().min(28)];
    let op = near
        .iter()
        .position(|&c| c == b'=' || c == b':')
        .map(|i| (i, 1))
        .into_iter()
        .chain(near.windows(4).position(|w| w == b" is ").map(|i| (i, 4)))
        .min();
    let Some((i, len)) = op else {
        // No operator yet: one may still arrive within the name's tail.
        return tail.len() < 28;
    };
    // After the operator: up to a few spaces (more of the operator), an optional quote, the value.
    let mut j = i + len;
    while j < tail.len()
        && matches!(
            tail[j],
            b' ' | b'\t'
                | b'='
                | b'>'
                | b'|'
                | b'?'
                | b'r'
                | b'b'
                | b'u'
                | b'f'
                | b'"'
                | b'\''
                | b'`'
        )
        && j < i + len + 8
    {
        j += 1;
    }
    let stop = |c: u8| {
        c.is_ascii_whitespace()
            || matches!(
                c,
                b'"' | b'\''
                    | b'`'
                    | b';'
                    | b','
                    | b'('
                    | b')'
                    | b'['
                    | b']'
                    | b'{'
                    | b'}'
                    | b'<'
                    | b'>'
                    | b'\\'
            )
    };
    // The value's token has ended (or the line did): nothing later changes this match.
    !tail[j.min(tail.len())..].iter().any(|&c| stop(c))
}

/// Names that say "the value is a credential".
const GENERIC_KEYWORDS: [&str; 9] = [
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "credential",
    "apikey",
    "pass",
];

/// `api_key = "…"`, `"password": "…"`, `TOKEN=…`, `client_secret := …`: a key-like name, an
/// assignment, and a literal value.
const GENERIC: &str = r#"(?i)(?:^|[^A-Za-z0-9])(?P<name>[A-Za-z0-9_.\-]{0,40}(?:api[_.\-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|passphrase|credentials?|auth[_.\-]?key|access[_.\-]?key|private[_.\-]?key|signing[_.\-]?key|encryption[_.\-]?key|master[_.\-]?key|_key|-key|\.key|pass)[A-Za-z0-9_.\-]{0,20})["'`]?\]?\s{0,4}(?::=|=>|\|\|=|\?=|=|:|\s+is\s+)\s{0,4}(?:[rbuf]?["'`])?(?P<s>[^\s"'`;,()\[\]{}<>\\]{8,200})"#;

fn generic_rule() -> Result<Rule, GuardError> {
    // Compiled at once: its keywords (key, token, password, secret …) come up in most code.
    let hir = parse("generic_secret", GENERIC)?;
    let regex = Lazy::new(GENERIC);
    regex.get("generic_secret");
    Ok(Rule {
        id: "generic_secret".into(),
        regex,
        entropy: Some(3.5),
        boundary: false,
        window: 256,
        reach: reach(&hir, 256, 0),
        starts: Vec::new(),
        dfa: std::sync::OnceLock::new(),
        allow: Vec::new(),
        rank: RANK_GENERIC,
        check: Some(generic_ok),
    })
}

/// Words in a value that make it a placeholder, not a secret.
const STOP_WORDS: [&str; 24] = [
    "example",
    "placeholder",
    "your",
    "xxxx",
    "changeme",
    "change_me",
    "redacted",
    "dummy",
    "sample",
    "****",
    "....",
    "<",
    "${",
    "{{",
    "%(",
    "process.env",
    "os.environ",
    "getenv",
    "env.",
    "fake",
    "todo",
    "insert",
    "replace",
    "undefined",
];

/// The generic rule's own checks on a candidate `value` (the whole match is `all`).
fn generic_ok(_all: &str, value: &str) -> bool {
    let v = value.trim_end_matches(['.', ':', '!', '?']);
    if v.len() < 8 {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    if STOP_WORDS.iter().any(|w| lower.contains(w)) {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let letters = v.bytes().filter(u8::is_ascii_alphabetic).count();
    // A secret mixes letters and digits (or is long and dense); a name, a word or a number does not.
    if letters == 0 || (digits == 0 && (v.len() < 20 || shannon(v) < 4.0)) {
        return false;
    }
    // A dotted or path-like identifier (`self.config.token`, `settings.SECRET_KEY`, `/etc/key.pem`).
    let ident = |s: &str| {
        s.split(['.', '/', ':'])
            .all(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !p.is_empty())
    };
    if (v.contains('.') || v.starts_with('/')) && ident(v.trim_start_matches('/')) && digits < 4 {
        return false;
    }
    // snake_case / kebab-case / SCREAMING names are code, not secrets.
    let wordy = v.split(['_', '-']).all(|p| {
        p.chars().all(|c| c.is_ascii_alphabetic()) || p.chars().all(|c| c.is_ascii_digit())
    });
    if wordy && v.contains(['_', '-']) {
        return false;
    }
    // A URL is judged by the URL rules; a hex hash of a file is not a credential.
    if lower.starts_with("http") || lower.starts_with("sha") || lower.starts_with("md5") {
        return false;
    }
    // All one character class repeated (`00000000`, `abcabcab`).
    shannon(v) >= 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &Secrets, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        s.scan(text, &mut out);
        out.into_iter()
            .map(|f| (f.rule.to_string(), text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn every_builtin_rule_compiles() {
        let s = Secrets::builtin().unwrap();
        for r in &s.rules {
            assert!(r.regex.get(&r.id).is_some(), "{} does not compile", r.id);
        }
    }

    #[test]
    fn a_rule_is_compiled_only_once_one_of_its_keywords_is_seen() {
        let s = Secrets::builtin().unwrap();
        let compiled = |s: &Secrets| {
            s.rules
                .iter()
                .filter(|r| r.regex.compiled.get().is_some())
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
        };
        // Only the generic rule, whose keywords are in most code, is compiled at start.
        assert_eq!(compiled(&s), ["generic_secret"]);
        assert!(found(&s, "Nothing here but plain words about the weather.").is_empty());
        assert_eq!(compiled(&s), ["generic_secret"]);
        let hits = found(&s, "AKIAIOSFODNN7EXAMPLF is an access key id");
        let now = compiled(&s);
        assert!(
            now.iter().any(|id| id.starts_with("aws")),
            "{now:?} {hits:?}"
        );
        assert!(
            now.len() < s.rules.len() / 4,
            "{} compiled: {now:?}",
            now.len()
        );
    }

    #[test]
    fn every_rule_finds_its_examples_and_not_its_counter_examples() {
        let s = Secrets::builtin().unwrap();
        let defs = table().unwrap();
        assert!(defs.len() >= 150, "only {} secret formats", defs.len());
        let mut failures = Vec::new();
        for d in &defs {
            assert!(!d.examples.is_empty(), "{} has no examples", d.id);
            for e in &d.examples {
                if !found(&s, e).iter().any(|(r, _)| *r == d.id) {
                    failures.push(format!("{} misses {e:?}", d.id));
                }
            }
            for c in &d.counter {
                if found(&s, c).iter().any(|(r, _)| *r == d.id) {
                    failures.push(format!("{} fires on counter-example {c:?}", d.id));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn generic_assignments_need_a_literal_high_entropy_value() {
        let s = Secrets::builtin().unwrap();
        let hit = |t: &str| found(&s, t).iter().any(|(r, _)| r == "generic_secret");
        assert!(hit(r#"db_password = "Zx9!qR4vT2mL8wKp""#));
        assert!(hit(r#"{"api_key": "a8f5f167f44f4964e6c998dee827110c9"}"#));
        assert!(hit("SERVICE_TOKEN=q7Hd93kLm2Xv81PzQw"));
        assert!(!hit(r#"password = os.environ["DB_PASSWORD"]"#));
        assert!(!hit("token = self.config.auth_token"));
        assert!(!hit(r#"api_key = "your_api_key_here""#));
        assert!(!hit("password: ${DB_PASSWORD}"));
        assert!(!hit("The secret is that nobody reads the manual."));
        assert!(!hit("key = MAX_RETRY_COUNT"));
        assert!(!hit(r#"password = "password123""#));
    }
}
