//! The metering fixture corpus: every file under `tests/fixtures/<provider>/<case>.toml` is a response as a
//! provider sends it (wire-formats.md), with the usage, model, completeness, error and cost the agent must
//! read from it. Each fixture is parsed whole, split in two at every byte offset, fed a byte at a time and
//! in random pieces, and (for server-sent events and JSON-array streams) again with CRLF line endings;
//! every way of feeding it must give the same summary, and that summary must match the hand-written
//! expectation. Costs are checked against a per-fixture price (so refreshing the shipped table doesn't
//! move them) or, where a fixture gives none, the embedded table. OpenAI-style streams also go through the
//! usage-chunk stripper, which must remove exactly the usage frame (or field) and nothing else.
//!
//! Fixture format (all keys checked; an unknown or missing one fails the load, naming the file):
//! `description`, `api` (openai | anthropic | gemini | azure | code_assist), `provider` (the directory name; the pricing
//! provider), `operation`, `status`, `content_type`, optional `json_is_array_stream`, `response` (the
//! body as sent) or `content_encoding` + `response_b64`, `price_key` (the table entry the cost must come
//! from) with an optional `[price]` (that entry's rates, USD per 1M tokens; the embedded table otherwise),
//! optional `usage_chunk` ("frame" | "field": how usage sits in an OpenAI-style stream), optional
//! `known_bug`, and `[expect]`: `model` ("none" for none), the six `Usage` fields or `usage = "none"`,
//! `terminal`, optional `error` / `unreadable` (substrings; absent means none), `output_text_bytes`, and
//! `cost_usd` (hand-computed, with the arithmetic in a comment).
//!
//! A fixture whose expectation the code does not meet yet carries `known_bug = "..."`: it is still run, and
//! still fails the test, but is listed separately at the end so the report reads as a bug list.

// All of this file is test code (clippy.toml allows these in #[test] functions; here the helpers share it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_agent::policy::ApiKind;
use airlock_agent::pricing::{Cost, PriceTable};
use airlock_agent::providers::response::{Framing, ResponseParser, ResponseSummary};
use airlock_agent::providers::strip::UsageChunkStripper;
use airlock_agent::record::Usage;

/// Provider names a fixture may use (Airlock's pricing names; `vllm` stands for a self-hosted server
/// priced by a policy override).
const PROVIDERS: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "azure",
    "groq",
    "xai",
    "openrouter",
    "deepseek",
    "mistral",
    "together",
    "vllm",
];

const OPERATIONS: &[&str] = &[
    "chat_completions",
    "completions",
    "responses",
    "embeddings",
    "messages",
    "count_tokens",
    "generate_content",
    "stream_generate_content",
    "embed_content",
];

/// Relative tolerance for costs.
const COST_TOLERANCE: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

/// How the usage the agent injected (`stream_options.include_usage`) shows up in an OpenAI-style stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageChunk {
    /// A frame of its own with `choices: []` or `choices: null`: the stripper drops the whole frame.
    Frame,
    /// A `usage` field beside non-empty `choices`: the stripper removes just that field.
    Field,
}

#[derive(Debug)]
struct Expect {
    model: Option<String>,
    usage: Option<Usage>,
    terminal: bool,
    error: Option<String>,
    unreadable: Option<String>,
    output_text_bytes: u64,
    cost_usd: Option<f64>,
}

#[derive(Debug)]
struct Fixture {
    /// `provider/case`.
    name: String,
    path: PathBuf,
    api: ApiKind,
    provider: String,
    operation: String,
    content_type: String,
    content_encoding: Option<String>,
    json_is_array_stream: bool,
    framing: Framing,
    body: Vec<u8>,
    price_key: Option<String>,
    price: Option<serde_json::Value>,
    usage_chunk: Option<UsageChunk>,
    known_bug: Option<String>,
    expect: Expect,
}

impl Fixture {
    fn is_sse(&self) -> bool {
        self.framing == Framing::Sse
    }

    fn is_openai_style_sse(&self) -> bool {
        self.is_sse()
            && matches!(self.api, ApiKind::Openai | ApiKind::Azure)
            && self.operation != "responses"
    }

    /// The body as sent, and (for unencoded SSE and JSON-array streams) the same body with CRLF line
    /// endings: a different SSE line ending, and JSON whitespace as Google sends it.
    fn bodies(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![("LF", self.body.clone())];
        let crlf_framing = matches!(self.framing, Framing::Sse | Framing::JsonArray);
        if crlf_framing && self.content_encoding.is_none() {
            out.push(("CRLF", to_crlf(&self.body)));
        }
        out
    }

    fn parser(&self) -> ResponseParser {
        ResponseParser::new(
            self.api,
            &self.operation,
            self.framing,
            self.content_encoding.as_deref(),
        )
    }

    fn parse_chunks<'a>(&self, chunks: impl IntoIterator<Item = &'a [u8]>) -> ResponseSummary {
        let mut p = self.parser();
        for c in chunks {
            p.feed(c);
        }
        p.finish()
    }
}

fn to_crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    for &b in body {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A TOML table being read: every key must be used, so a misspelt field can't silently assert nothing.
struct Fields<'a> {
    file: &'a str,
    section: &'static str,
    table: toml::Table,
    used: BTreeSet<String>,
}

impl<'a> Fields<'a> {
    fn new(file: &'a str, section: &'static str, table: toml::Table) -> Self {
        Fields {
            file,
            section,
            table,
            used: BTreeSet::new(),
        }
    }

    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!("fixture {}: {}{}", self.file, self.section, msg)
    }

    fn get(&mut self, key: &str) -> Option<toml::Value> {
        self.used.insert(key.to_string());
        self.table.get(key).cloned()
    }

    fn opt_str(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(toml::Value::String(s)) if !s.is_empty() => Some(s),
            Some(other) => self.fail(format_args!(
                "`{key}` must be a non-empty string, not {other}"
            )),
        }
    }

    fn str(&mut self, key: &str) -> String {
        self.opt_str(key)
            .unwrap_or_else(|| self.fail(format_args!("missing string field `{key}`")))
    }

    fn opt_bool(&mut self, key: &str) -> Option<bool> {
        match self.get(key) {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(b),
            Some(other) => self.fail(format_args!("`{key}` must be true or false, not {other}")),
        }
    }

    fn bool(&mut self, key: &str) -> bool {
        self.opt_bool(key)
            .unwrap_or_else(|| self.fail(format_args!("missing boolean field `{key}`")))
    }

    fn u64(&mut self, key: &str) -> u64 {
        match self.get(key) {
            Some(toml::Value::Integer(i)) if i >= 0 => i as u64,
            None => self.fail(format_args!("missing integer field `{key}`")),
            Some(other) => self.fail(format_args!(
                "`{key}` must be a non-negative integer, not {other}"
            )),
        }
    }

    fn opt_f64(&mut self, key: &str) -> Option<f64> {
        match self.get(key) {
            None => None,
            Some(toml::Value::Float(f)) if f.is_finite() && f >= 0.0 => Some(f),
            Some(toml::Value::Integer(i)) if i >= 0 => Some(i as f64),
            Some(other) => self.fail(format_args!(
                "`{key}` must be a non-negative number, not {other}"
            )),
        }
    }

    fn opt_table(&mut self, key: &str) -> Option<toml::Table> {
        match self.get(key) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(other) => self.fail(format_args!("`{key}` must be a table, not {other}")),
        }
    }

    fn done(self) {
        let unknown: Vec<&String> = self
            .table
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if !unknown.is_empty() {
            self.fail(format_args!("unknown field(s) {unknown:?}"));
        }
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load_all() -> Vec<Fixture> {
    let root = fixtures_dir();
    let mut paths = Vec::new();
    for dir in
        std::fs::read_dir(&root).unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
    {
        let dir = dir.unwrap().path();
        assert!(
            dir.is_dir(),
            "{}: fixtures live in <provider>/<case>.toml",
            dir.display()
        );
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            assert!(
                f.extension().is_some_and(|e| e == "toml"),
                "{}: not a .toml fixture",
                f.display()
            );
            paths.push(f);
        }
    }
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures under {}", root.display());
    paths.iter().map(|p| load(p)).collect()
}

fn load(path: &Path) -> Fixture {
    let rel = path
        .strip_prefix(fixtures_dir())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/");
    let name = rel.trim_end_matches(".toml").to_string();
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("fixture {rel}: cannot read: {e}"));
    let table: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("fixture {rel}: not valid TOML: {e}"));
    let mut f = Fields::new(&rel, "", table);

    let description = f.str("description");
    if description.len() < 20 {
        f.fail("`description` should say what the case is and where its wire shape comes from");
    }
    let api = match f.str("api").as_str() {
        "openai" => ApiKind::Openai,
        "anthropic" => ApiKind::Anthropic,
        "gemini" => ApiKind::Gemini,
        "azure" => ApiKind::Azure,
        "code_assist" => ApiKind::CodeAssist,
        other => f.fail(format_args!(
            "`api` must be openai, anthropic, gemini, azure or code_assist, not {other:?}"
        )),
    };
    let provider = f.str("provider");
    if !PROVIDERS.contains(&provider.as_str()) {
        f.fail(format_args!(
            "`provider` {provider:?} is not one of {PROVIDERS:?}"
        ));
    }
    let dir = name.split('/').next().unwrap_or_default();
    if dir != provider {
        f.fail(format_args!(
            "lives under {dir}/ but says provider = {provider:?}"
        ));
    }
    let operation = f.str("operation");
    if !OPERATIONS.contains(&operation.as_str()) {
        f.fail(format_args!(
            "`operation` {operation:?} is not one of {OPERATIONS:?}"
        ));
    }
    let status = f.u64("status");
    if !(100..600).contains(&status) {
        f.fail(format_args!("`status` {status} is not an HTTP status"));
    }
    let content_type = f.str("content_type");
    let content_encoding = f.opt_str("content_encoding");
    let json_is_array_stream = f.opt_bool("json_is_array_stream").unwrap_or(false);
    let framing = Framing::from_content_type(Some(&content_type), json_is_array_stream);
    if framing == Framing::Opaque {
        f.fail(format_args!(
            "content type {content_type:?} is not one the parser reads"
        ));
    }
    let plain = f.opt_str("response");
    let b64 = f.opt_str("response_b64");
    let body = match (plain, b64, &content_encoding) {
        (Some(text), None, None) => text.into_bytes(),
        (None, Some(b64), Some(_)) => {
            base64_decode(&b64).unwrap_or_else(|e| f.fail(format_args!("`response_b64`: {e}")))
        }
        (Some(_), _, Some(_)) => {
            f.fail("an encoded body must be given as `response_b64`, not `response`")
        }
        (None, Some(_), None) => f.fail("`response_b64` needs `content_encoding`"),
        (Some(_), Some(_), _) => f.fail("give `response` or `response_b64`, not both"),
        (None, None, _) => f.fail("missing `response` (or `response_b64`)"),
    };
    let price_key = f.opt_str("price_key");
    let price = f.opt_table("price").map(|t| {
        serde_json::to_value(toml::Value::Table(t))
            .unwrap_or_else(|e| f.fail(format_args!("`price`: {e}")))
    });
    let usage_chunk = match f.opt_str("usage_chunk").as_deref() {
        None => None,
        Some("frame") => Some(UsageChunk::Frame),
        Some("field") => Some(UsageChunk::Field),
        Some(other) => f.fail(format_args!(
            "`usage_chunk` must be \"frame\" or \"field\", not {other:?}"
        )),
    };
    let known_bug = f.opt_str("known_bug");
    let expect_table = f
        .opt_table("expect")
        .unwrap_or_else(|| f.fail("missing [expect]: a fixture that asserts nothing is a defect"));
    f.done();

    let mut e = Fields::new(&rel, "[expect] ", expect_table);
    let model = match e.str("model").as_str() {
        "none" => None,
        m => Some(m.to_string()),
    };
    let usage = match e.opt_str("usage").as_deref() {
        Some("none") => None,
        Some(other) => e.fail(format_args!(
            "`usage` may only be \"none\" (otherwise give the token fields), not {other:?}"
        )),
        None => Some(Usage {
            input_tokens: e.u64("input_tokens"),
            cache_read_tokens: e.u64("cache_read_tokens"),
            cache_write_tokens: e.u64("cache_write_tokens"),
            cache_write_1h_tokens: e.u64("cache_write_1h_tokens"),
            output_tokens: e.u64("output_tokens"),
            reasoning_tokens: e.u64("reasoning_tokens"),
        }),
    };
    let terminal = e.bool("terminal");
    let error = e.opt_str("error");
    let unreadable = e.opt_str("unreadable");
    let output_text_bytes = e.u64("output_text_bytes");
    let cost_usd = e.opt_f64("cost_usd");
    match (&usage, cost_usd, &price_key) {
        (Some(_), Some(_), Some(_)) | (None, None, None) => {}
        (Some(_), None, _) => e.fail("usage is expected, so `cost_usd` is required"),
        (Some(_), _, None) => {
            e.fail("usage is expected, so top-level `price_key` (the table entry) is required")
        }
        (None, Some(_), _) => e.fail("`usage = \"none\"` means no cost: drop `cost_usd`"),
        (None, _, Some(_)) => e.fail("`usage = \"none\"` means no cost: drop `price_key`"),
    }
    if price.is_some() && price_key.is_none() {
        e.fail("[price] needs top-level `price_key`");
    }
    if status >= 400 && error.is_none() {
        e.fail(format_args!("status {status} needs an expected `error`"));
    }
    e.done();

    Fixture {
        name,
        path: path.to_path_buf(),
        api,
        provider,
        operation,
        content_type,
        content_encoding,
        json_is_array_stream,
        framing,
        body,
        price_key,
        price,
        usage_chunk,
        known_bug,
        expect: Expect {
            model,
            usage,
            terminal,
            error,
            unreadable,
            output_text_bytes,
            cost_usd,
        },
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(format!("{:?} is not base64", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------

/// Compares one summary with the fixture's expectation.
fn check_expectation(fx: &Fixture, s: &ResponseSummary, problems: &mut Vec<String>) {
    let e = &fx.expect;
    if s.model != e.model {
        problems.push(format!("model: expected {:?}, got {:?}", e.model, s.model));
    }
    if s.usage != e.usage {
        problems.push(format!(
            "usage:\n      expected {:?}\n      got      {:?}",
            e.usage, s.usage
        ));
    }
    if s.terminal != e.terminal {
        problems.push(format!(
            "terminal: expected {}, got {}",
            e.terminal, s.terminal
        ));
    }
    match (&e.error, &s.error) {
        (None, None) => {}
        // The provider's error type and code, exactly — never its message, which can echo prompt
        // text or the tail of a wrong key.
        (Some(want), Some(got)) if got == want && !got.contains(' ') => {}
        (want, got) => problems.push(format!(
            "error: expected {}, got {got:?}",
            want.as_ref()
                .map_or("none".to_string(), |w| format!("{w:?}"))
        )),
    }
    match (&e.unreadable, &s.unreadable) {
        (None, None) => {}
        (Some(want), Some(got)) if got.contains(want.as_str()) => {}
        (want, got) => problems.push(format!(
            "unreadable: expected {}, got {got:?}",
            want.as_ref()
                .map_or("none".to_string(), |w| format!("one containing {w:?}"))
        )),
    }
    if s.output_text_bytes != e.output_text_bytes {
        problems.push(format!(
            "output_text_bytes: expected {}, got {}",
            e.output_text_bytes, s.output_text_bytes
        ));
    }
}

/// Prices the fixture's usage (as parsed) and compares it with `cost_usd`.
fn check_cost(fx: &Fixture, s: &ResponseSummary, problems: &mut Vec<String>) {
    let (Some(want), Some(key)) = (fx.expect.cost_usd, fx.price_key.as_deref()) else {
        return;
    };
    let Some(usage) = s.usage else {
        problems.push("cost: no usage was parsed, so nothing could be priced".into());
        return;
    };
    let Some(model) = s.model.as_deref() else {
        problems.push("cost: no model was parsed, so nothing could be priced".into());
        return;
    };
    let table = match &fx.price {
        Some(price) => {
            let json = serde_json::json!({
                "format": "airlock-prices/1",
                "unit": "USD per 1M tokens",
                "source": {"name": format!("fixture {}", fx.name)},
                "models": {key: price},
            });
            match PriceTable::from_json(&json.to_string()) {
                Ok(t) => t,
                Err(err) => {
                    problems.push(format!("cost: the fixture's [price] is not valid: {err}"));
                    return;
                }
            }
        }
        None => PriceTable::embedded().expect("the embedded price table loads"),
    };
    match table.cost(&fx.provider, model, &usage) {
        Cost::Priced { usd, model_key } => {
            if model_key != key {
                problems.push(format!(
                    "cost: priced from {model_key:?}, expected the entry {key:?}"
                ));
            }
            let tolerance = COST_TOLERANCE * want.abs().max(1e-9);
            if (usd - want).abs() > tolerance {
                problems.push(format!(
                    "cost: expected ${want} (hand-computed), got ${usd} (difference {:e})",
                    usd - want
                ));
            }
        }
        Cost::Unknown { reason } => problems.push(format!("cost: not priced: {reason}")),
    }
}

/// The first field where two summaries differ, for messages.
fn diff(a: &ResponseSummary, b: &ResponseSummary) -> String {
    let mut out = String::new();
    if a.usage != b.usage {
        let _ = write!(out, " usage {:?} vs {:?};", a.usage, b.usage);
    }
    if a.model != b.model {
        let _ = write!(out, " model {:?} vs {:?};", a.model, b.model);
    }
    if a.terminal != b.terminal {
        let _ = write!(out, " terminal {} vs {};", a.terminal, b.terminal);
    }
    if a.error != b.error {
        let _ = write!(out, " error {:?} vs {:?};", a.error, b.error);
    }
    if a.output_text_bytes != b.output_text_bytes {
        let _ = write!(
            out,
            " output_text_bytes {} vs {};",
            a.output_text_bytes, b.output_text_bytes
        );
    }
    if a.unreadable != b.unreadable {
        let _ = write!(out, " unreadable {:?} vs {:?};", a.unreadable, b.unreadable);
    }
    out
}

/// Runs every feeding of one fixture and checks it. Returns the problems found.
fn run_fixture(fx: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let whole = fx.parse_chunks([&fx.body[..]]);
    check_expectation(fx, &whole, &mut problems);
    check_cost(fx, &whole, &mut problems);

    for (label, body) in fx.bodies() {
        // (a) one feed.
        let one = fx.parse_chunks([&body[..]]);
        if one != whole {
            problems.push(format!(
                "{label}, one feed: differs from the LF body:{}",
                diff(&whole, &one)
            ));
        }
        // (b) two feeds, split at every offset (for streams and encoded bodies: a plain JSON body is
        // only buffered, so one split is as good as another); then a byte at a time.
        let every_split = fx.framing != Framing::Json || fx.content_encoding.is_some();
        let splits = if every_split { body.len() } else { 0 };
        for k in 0..=splits {
            let s = fx.parse_chunks([&body[..k], &body[k..]]);
            if s != whole {
                problems.push(format!(
                    "{label}, split at byte {k} of {}:{}",
                    body.len(),
                    diff(&whole, &s)
                ));
                break; // one example per variant is enough
            }
        }
        let bytewise = fx.parse_chunks(body.chunks(1));
        if bytewise != whole {
            problems.push(format!(
                "{label}, one byte at a time:{}",
                diff(&whole, &bytewise)
            ));
        }
    }
    problems
}

/// Runs `f` over the fixtures on all cores; results in fixture order.
fn par_map<T: Send>(fixtures: &[Fixture], f: impl Fn(&Fixture) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(fx) = fixtures.get(i) else { break };
                let r = f(fx);
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Reports per-fixture problems; known bugs are listed last. Panics if anything failed.
fn report(title: &str, fixtures: &[Fixture], problems: Vec<Vec<String>>, use_known_bugs: bool) {
    let mut failures = String::new();
    let mut known = String::new();
    let mut stale = String::new();
    let mut failed = 0;
    for (fx, probs) in fixtures.iter().zip(problems) {
        let bug = fx.known_bug.as_deref().filter(|_| use_known_bugs);
        match (probs.is_empty(), bug) {
            (true, None) => {}
            (true, Some(bug)) => {
                failed += 1;
                let _ = writeln!(
                    stale,
                    "  {}: marked known_bug ({bug}) but now passes: remove `known_bug`",
                    fx.name
                );
            }
            (false, None) => {
                failed += 1;
                let _ = writeln!(failures, "  {} ({}):", fx.name, fx.path.display());
                for p in &probs {
                    let _ = writeln!(failures, "    - {p}");
                }
            }
            (false, Some(bug)) => {
                failed += 1;
                let _ = writeln!(known, "  {}: {bug}", fx.name);
                for p in &probs {
                    let _ = writeln!(known, "    - {p}");
                }
            }
        }
    }
    if failed == 0 {
        return;
    }
    let mut msg = format!(
        "\n{title}: {failed} of {} fixtures failed\n",
        fixtures.len()
    );
    if !failures.is_empty() {
        let _ = write!(msg, "\nFAILURES\n{failures}");
    }
    if !stale.is_empty() {
        let _ = write!(msg, "\nSTALE known_bug MARKERS\n{stale}");
    }
    if !known.is_empty() {
        let _ = write!(
            msg,
            "\nKNOWN BUGS (still failing, expectations kept)\n{known}"
        );
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

#[test]
fn corpus_fixtures_meter_as_expected() {
    let fixtures = load_all();
    let problems = par_map(&fixtures, run_fixture);
    report("metering corpus", &fixtures, problems, true);
}

#[test]
fn corpus_covers_every_provider() {
    let fixtures = load_all();
    for p in PROVIDERS {
        assert!(
            fixtures.iter().any(|f| f.provider == *p),
            "no fixture for provider {p}"
        );
    }
    let sse = fixtures.iter().filter(|f| f.is_sse()).count();
    let arrays = fixtures
        .iter()
        .filter(|f| f.framing == Framing::JsonArray)
        .count();
    let encoded = fixtures
        .iter()
        .filter(|f| f.content_encoding.is_some())
        .count();
    assert!(
        sse >= 20 && arrays >= 1 && encoded >= 1,
        "{sse} SSE, {arrays} JSON-array, {encoded} encoded fixtures"
    );
    // Every fixture's declared framing matches the body it carries.
    for f in &fixtures {
        let first = f.body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        match (f.framing, f.content_encoding.is_some(), first) {
            (_, true, _) => {}
            (Framing::Sse, _, Some(b'd' | b'e' | b':')) => {}
            (Framing::Json, _, Some(b'{')) => {}
            (Framing::JsonArray, _, Some(b'[' | b'{')) => {}
            (framing, _, first) => panic!(
                "fixture {}: framing {framing:?} (content type {:?}, json_is_array_stream {}) but the body starts with {:?}",
                f.name,
                f.content_type,
                f.json_is_array_stream,
                first.map(char::from)
            ),
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Cuts `len` bytes into random pieces: mostly tiny, sometimes large, occasionally empty.
fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut at = 0usize;
    while at < len {
        let step = match rng.below(10) {
            0 => 0,
            1..=5 => 1 + rng.below(8) as usize,
            6..=8 => 1 + rng.below(128) as usize,
            _ => 1 + rng.below(2048) as usize,
        };
        at = (at + step).min(len);
        cuts.push(at);
    }
    cuts
}

#[test]
fn random_chunkings_give_identical_summaries() {
    const ROUNDS: usize = 128;
    let fixtures = load_all();
    let problems = par_map(&fixtures, |fx| {
        let mut problems = Vec::new();
        let seed = fx.name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        }) | 1;
        let mut rng = Rng(seed);
        let whole = fx.parse_chunks([&fx.body[..]]);
        for (label, body) in fx.bodies() {
            for round in 0..ROUNDS {
                let cuts = random_cuts(&mut rng, body.len());
                let s = fx.parse_chunks(cuts.windows(2).map(|w| &body[w[0]..w[1]]));
                if s != whole {
                    problems.push(format!(
                        "{label}, round {round} (seed {seed:#x}), cuts {cuts:?}:{}",
                        diff(&whole, &s)
                    ));
                    break;
                }
            }
        }
        problems
    });
    report("random chunkings", &fixtures, problems, false);
}

// --- Usage-chunk stripping --------------------------------------------------------------------------------

/// The frames of an LF SSE body, as byte ranges including their blank line (a cut-off last frame has none).
fn frames(body: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        match body[start..].find("\n\n") {
            Some(i) => {
                out.push(start..start + i + 2);
                start += i + 2;
            }
            None => {
                out.push(start..body.len());
                break;
            }
        }
    }
    out
}

/// The JSON of a frame's single `data:` line, if it has one.
fn frame_json(frame: &str) -> Option<serde_json::Value> {
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data:"))?
        .trim_start();
    serde_json::from_str(data).ok()
}

/// The byte range of `,"usage":{…}` inside `frame` (textually, by brace matching).
fn usage_field_range(frame: &str) -> Option<std::ops::Range<usize>> {
    let start = frame.find(",\"usage\":{")?;
    let open = start + ",\"usage\":".len();
    let (mut depth, mut in_str, mut esc) = (0u32, false, false);
    for (i, c) in frame[open..].char_indices() {
        if in_str {
            match c {
                _ if esc => esc = false,
                '\\' => esc = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start..open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// What a client must receive from the stripper: the body with the injected usage deleted textually.
/// Once usage was asked for, every chunk carries `"usage":null`; a stream that did not ask has no such
/// field, so the client must not see it either.
fn without_null_usage(s: &str) -> String {
    s.replace(",\"usage\":null", "")
}

fn stripped_expectation(fx: &Fixture) -> Result<(String, u32), String> {
    let body = std::str::from_utf8(&fx.body).map_err(|e| e.to_string())?;
    let mut with_usage = Vec::new();
    for r in frames(body) {
        let Some(v) = frame_json(&body[r.clone()]) else {
            continue;
        };
        if v.get("usage").is_some_and(|u| !u.is_null()) {
            let no_choices = match v.get("choices") {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            with_usage.push((r, no_choices));
        }
    }
    match (fx.usage_chunk, with_usage.as_slice()) {
        (None, []) => Ok((without_null_usage(body), 0)),
        (None, [..]) => Err(format!(
            "{} frame(s) carry top-level usage: declare usage_chunk = \"frame\" or \"field\"",
            with_usage.len()
        )),
        (Some(_), []) => Err("usage_chunk is declared but no frame carries usage".into()),
        (Some(kind), [(r, no_choices)]) => {
            let (r, no_choices) = (r.clone(), *no_choices);
            match kind {
                UsageChunk::Frame if no_choices => Ok((
                    without_null_usage(&format!("{}{}", &body[..r.start], &body[r.end..])),
                    1,
                )),
                UsageChunk::Field if !no_choices => {
                    let frame = &body[r.clone()];
                    let f = usage_field_range(frame)
                        .ok_or("no `,\"usage\":{…}` text in the usage frame")?;
                    let rewritten = format!("{}{}", &frame[..f.start], &frame[f.end..]);
                    let v = frame_json(&rewritten).ok_or("the frame without usage is not JSON")?;
                    if v.get("usage").is_some() {
                        return Err("the frame still has usage after deleting it".into());
                    }
                    Ok((
                        without_null_usage(&format!(
                            "{}{rewritten}{}",
                            &body[..r.start],
                            &body[r.end..]
                        )),
                        1,
                    ))
                }
                _ => Err(format!(
                    "usage_chunk = {kind:?} but the usage frame {} choices",
                    if no_choices { "has no" } else { "has" }
                )),
            }
        }
        (Some(_), [..]) => Err(format!(
            "{} frames carry usage; an injected usage chunk is exactly one",
            with_usage.len()
        )),
    }
}

fn strip(chunks: impl IntoIterator<Item = impl AsRef<[u8]>>) -> (Vec<u8>, u32) {
    let mut s = UsageChunkStripper::new();
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&s.feed(c.as_ref()));
    }
    out.extend_from_slice(&s.finish());
    (out, s.stripped)
}

#[test]
fn injected_usage_chunks_are_stripped_exactly() {
    let fixtures = load_all();
    let openai_sse = fixtures.iter().filter(|f| f.is_openai_style_sse()).count();
    let injected = fixtures
        .iter()
        .filter(|f| f.is_openai_style_sse() && f.usage_chunk.is_some())
        .count();
    assert!(
        openai_sse >= 10 && injected >= 5,
        "{openai_sse} OpenAI-style streams, {injected} with injected usage"
    );
    let problems = par_map(&fixtures, |fx| {
        let mut problems = Vec::new();
        if !fx.is_openai_style_sse() {
            if fx.usage_chunk.is_some() {
                problems.push("usage_chunk only applies to OpenAI-style SSE fixtures".into());
            }
            return problems;
        }
        let (expected_lf, expected_count) = match stripped_expectation(fx) {
            Ok(e) => e,
            Err(e) => return vec![e],
        };
        for (label, body) in fx.bodies() {
            let expected = if label == "CRLF" {
                expected_lf.replace('\n', "\r\n")
            } else {
                expected_lf.clone()
            };
            let mut cases: Vec<(String, (Vec<u8>, u32))> = (0..=body.len())
                .map(|k| (format!("split at {k}"), strip([&body[..k], &body[k..]])))
                .collect();
            cases.push(("a byte at a time".into(), strip(body.chunks(1))));
            for (how, (out, count)) in cases {
                if out != expected.as_bytes() || count != expected_count {
                    problems.push(format!(
                        "{label}, {how}: stripped {count} frame(s) (expected {expected_count})\n      expected {expected:?}\n      got      {:?}",
                        String::from_utf8_lossy(&out)
                    ));
                    break;
                }
            }
            // What the client receives no longer carries usage, and still parses the same otherwise.
            if fx.usage_chunk.is_some() {
                let s = fx.parse_chunks([expected.as_bytes()]);
                if s.usage.is_some() {
                    problems.push(format!(
                        "{label}: the stripped stream still carries usage {:?}",
                        s.usage
                    ));
                }
                let whole = fx.parse_chunks([&fx.body[..]]);
                if (s.model.as_ref(), s.terminal, s.output_text_bytes)
                    != (
                        whole.model.as_ref(),
                        whole.terminal,
                        whole.output_text_bytes,
                    )
                {
                    problems.push(format!(
                        "{label}: stripping changed more than usage:{}",
                        diff(&whole, &s)
                    ));
                }
            }
        }
        problems
    });
    report("usage-chunk stripping", &fixtures, problems, false);
}
