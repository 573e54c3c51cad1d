//! `airlock-bench guard`: what the guardrail engine costs, in-process on one thread. Scan throughput
//! (MB/s) on prompt-like text — prose, code and JSON, built from a fixed seed so every run scans
//! the same bytes — the time to scan one 100 KB prompt, and the cost of inspecting a typical chat
//! request (parse, find its texts, scan them, decide). Prints a markdown table.

use std::time::Instant;

use crate::stats::{micros, pct_of};
use airlock_agent::guardrails::actions::{Context, Guard};
use airlock_agent::guardrails::inspect;
use airlock_agent::guardrails::stream::{Scanner, Who};
use airlock_agent::guardrails::{Category, CategorySet};
use airlock_agent::policy::guardrails::Direction;
use airlock_agent::policy::ApiKind;
use airlock_agent::providers::request::texts;
use airlock_agent::providers::response::TextChannel;
use anyhow::{Context as _, Result};

/// Options of the guardrail benchmark.
#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// Seconds of scanning per text kind.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Scans of the 100 KB prompt timed.
    #[arg(long, default_value_t = 300)]
    prompts: usize,
    /// Chat requests inspected.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Streamed answers scanned delta by delta.
    #[arg(long, default_value_t = 2_000)]
    streams: usize,
    /// Turns of a 100 KB conversation inspected, each sent again with one new message.
    #[arg(long, default_value_t = 300)]
    turns: usize,
}

/// A small deterministic generator (xorshift), so the text is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, l: &[&'a str]) -> &'a str {
        l[(self.next() % l.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "request",
    "token",
    "key",
    "password",
    "user",
    "account",
    "data",
    "system",
    "please",
    "explain",
    "how",
    "to",
    "configure",
    "deploy",
    "a",
    "service",
    "with",
    "and",
    "for",
    "secret",
    "value",
    "function",
    "returns",
    "error",
    "when",
    "network",
    "call",
    "fails",
    "retry",
    "budget",
    "team",
    "meeting",
    "report",
    "customer",
    "invoice",
    "2024",
    "version",
    "3.2.1",
    "summarise",
    "this",
    "document",
    "in",
    "five",
    "bullet",
    "points",
    "auth",
    "header",
    "cache",
];

fn prose(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 64);
    while s.len() < bytes {
        let n = 6 + rng.next() % 14;
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(rng.pick(WORDS));
        }
        s.push_str(". ");
        if rng.next() % 6 == 0 {
            s.push('\n');
        }
    }
    s
}

const CODE: &[&str] = &[
    "fn handle(req: Request) -> Result<Response, Error> {\n    let token = req.headers().get(\"authorization\").ok_or(Error::Unauthorized)?;\n    let user = self.store.lookup(token).await?;\n    Ok(Response::new(user.name))\n}\n",
    "def get_client(api_key=None):\n    key = api_key or os.environ[\"API_KEY\"]\n    return Client(key=key, timeout=30, retries=3)\n\n",
    "const config = { baseURL: process.env.API_URL, timeout: 5000, headers: { 'content-type': 'application/json' } };\nexport async function fetchUser(id) { return (await axios.get(`/users/${id}`, config)).data; }\n",
    "SELECT id, email_hash, created_at FROM accounts WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY id LIMIT 100;\n",
    "for i in range(10):\n    if retry(i):\n        log.warning(\"attempt %d failed: %s\", i, err)\n        time.sleep(2 ** i)\n",
];

fn code(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 512);
    while s.len() < bytes {
        s.push_str(rng.pick(CODE));
    }
    s
}

fn json(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 512);
    while s.len() < bytes {
        let text = prose(rng, 200);
        let v = serde_json::json!({"model": "gpt-4o-mini", "temperature": 0.2, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text}], "max_tokens": 512, "metadata": {"trace": rng.next() % 100000}});
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

/// A coding agent's turn: the conversation so far (20 messages of 5 KB) sent again with one new
/// message, through the whole request inspection; the earlier messages are remembered by the engine.
fn resent_conversation(a: &GuardArgs, guard: &Guard, cx: &Context<'_>) {
    // A generator of its own, so the rows after this one scan what they always did.
    let rng = &mut Rng(0x2545_f491_4f6c_dd1d);
    let history: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": prose(rng, 5 << 10)})
        })
        .collect();
    let mut times = Vec::with_capacity(a.turns);
    for turn in 0..=a.turns {
        let mut messages = history.clone();
        messages.push(serde_json::json!({"role": "user",
            "content": format!("turn {turn}: {}", prose(rng, 300))}));
        let mut body = serde_json::json!({"model": "gpt-4o-mini", "messages": messages});
        let t = Instant::now();
        let _ = inspect::request(
            guard,
            &[0; 32],
            ApiKind::Openai,
            "chat_completions",
            &mut body,
            cx,
        );
        // The first turn scans everything; the rest find the history remembered.
        if turn > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    println!(
        "| inspect a 100 KB conversation sent again with one new message, p50 / p99 | {} / {} | ≤ 1 ms |",
        micros(pct_of(&times, 0.5)),
        micros(pct_of(&times, 0.99))
    );
}

/// MB/s of `scan` run over `text` again and again for `seconds`.
fn throughput(seconds: f64, text: &str, mut scan: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        scan();
        bytes += text.len();
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Runs the benchmark and prints its table.
pub fn run(a: GuardArgs) -> Result<()> {
    let guard = Guard::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = guard.engine();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let kinds = [
        ("prose", prose(&mut rng, 64 << 10)),
        ("code", code(&mut rng, 64 << 10)),
        ("JSON", json(&mut rng, 64 << 10)),
    ];
    println!("| measure | value | target |\n|---|---:|---|");
    let mut found = 0usize;
    // A secret rule's regex is compiled the first time one of its keywords is seen: the first texts
    // pay for that once per process.
    let first = Instant::now();
    for (_, text) in &kinds {
        found += engine.scan(text).len();
    }
    let first = first.elapsed();
    let again = Instant::now();
    for (_, text) in &kinds {
        found += engine.scan(text).len();
    }
    println!(
        "| first scan of the three texts after start (compiles the rules their keywords select), then again | {} / {} | — |",
        micros(first),
        micros(again.elapsed())
    );
    for (name, text) in &kinds {
        let mbs = throughput(a.seconds, text, || found += engine.scan(text).len());
        println!(
            "| scan throughput, {name} (64 KB texts), one core | {mbs:.0} MB/s | ≥ 200 MB/s |"
        );
    }
    // Where the time goes: each detector alone over the same texts.
    for (label, cat) in [
        ("secrets", Category::Secret),
        ("personal data", Category::Pii),
        ("injection", Category::Injection),
    ] {
        let mut cats = CategorySet::default();
        cats.insert(cat);
        let mut each = Vec::new();
        for (_, text) in &kinds {
            let mbs = throughput(a.seconds / 4.0, text, || {
                found += engine.scan_only(text, cats).len()
            });
            each.push(format!("{mbs:.0}"));
        }
        println!(
            "| {label} detector alone, prose / code / JSON | {} MB/s | — |",
            each.join(" / ")
        );
    }
    let mut prompt = String::new();
    for (_, t) in &kinds {
        prompt.push_str(&t[..t.len().min(34 << 10)]);
    }
    let cut = (0..=(100usize << 10).min(prompt.len()))
        .rev()
        .find(|&i| prompt.is_char_boundary(i))
        .unwrap_or(0);
    let prompt = &prompt[..cut];
    let mut times = Vec::with_capacity(a.prompts);
    for _ in 0..a.prompts {
        let t = Instant::now();
        found += engine.scan(prompt).len();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| one 100 KB prompt (prose + code + JSON), p50 / p99 | {} / {} | ≤ 1 ms |",
        micros(pct_of(&times, 0.5)),
        micros(pct_of(&times, 0.99))
    );
    let body = serde_json::to_vec(&serde_json::json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "Can you explain why my deploy fails? The log says: connection refused on port 5432 after 3 retries, and the config sets host=db.internal user=app."}]}))
    .context("body")?;
    let cx = Context {
        provider: "openai",
        model: Some("gpt-4o-mini"),
        app: Some("python3"),
    };
    let mut times = Vec::with_capacity(a.requests);
    for _ in 0..a.requests {
        let t = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        for span in texts(ApiKind::Openai, "chat_completions", &v) {
            if let Some(text) = span.text(&v) {
                for f in engine.scan(text) {
                    let _ = guard.action(
                        &f,
                        &text[f.start..f.end],
                        Some(&span.pointer),
                        Direction::Request,
                        &cx,
                    );
                    found += 1;
                }
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| inspect a typical chat request (parse, texts, scan, decide), p50 / p99 | {} / {} | ≤ 50 µs added p50 |",
        micros(pct_of(&times, 0.5)),
        micros(pct_of(&times, 0.99))
    );
    resent_conversation(&a, &guard, &cx);
    stream_cost(&a, &mut rng)?;
    println!(
        "\n({found} findings in all; {} secret formats)",
        engine.secret_rules()
    );
    Ok(())
}

/// A streamed answer (prose and a code block that names keys and tokens but holds none) in 4-byte
/// deltas through the response scanner, as the response stage drives it: what it costs per answer and
/// per delta, and how much text it holds back.
fn stream_cost(a: &GuardArgs, rng: &mut Rng) -> Result<()> {
    let guard = std::sync::Arc::new(Guard::builtin().map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut answer = prose(rng, 600);
    answer.push_str("\n```python\nimport os\napi_key = os.environ[\"OPENAI_API_KEY\"]\nclient = OpenAI(api_key=api_key)\ntoken: str = get_token()\n```\n");
    answer.push_str(&prose(rng, 400));
    let deltas: Vec<&str> = {
        let mut v = Vec::new();
        let mut at = 0;
        while at < answer.len() {
            let mut end = (at + 4).min(answer.len());
            while !answer.is_char_boundary(end) {
                end += 1;
            }
            v.push(&answer[at..end]);
            at = end;
        }
        v
    };
    let key = (TextChannel::Content, 0);
    let mut times = Vec::with_capacity(a.streams);
    let mut held_sum = 0usize;
    let mut held_max = 0usize;
    for _ in 0..a.streams {
        let t = Instant::now();
        let mut sc = Scanner::new(guard.clone(), Who::default());
        let mut offset = 0;
        for d in &deltas {
            sc.push(key, d);
            sc.advance(false)
                .map_err(|b| anyhow::anyhow!("blocked: {:?}", b.rules))?;
            let _ = sc.rewrite(key, offset, d);
            offset += d.len();
            held_sum += sc.held();
            held_max = held_max.max(sc.held());
        }
        sc.advance(true)
            .map_err(|b| anyhow::anyhow!("blocked: {:?}", b.rules))?;
        let _ = sc.hits(&[0; 32]);
        times.push(t.elapsed());
    }
    times.sort();
    let p50 = pct_of(&times, 0.5);
    println!(
        "| scan a streamed answer ({} B in {} deltas), p50 / p99 per answer | {} / {} ({:.2} µs per delta) | — |",
        answer.len(),
        deltas.len(),
        micros(p50),
        micros(pct_of(&times, 0.99)),
        p50.as_secs_f64() * 1e6 / deltas.len() as f64
    );
    println!(
        "| text held back while streaming, mean / max | {:.1} B / {} B | ≤ the rule set's bound |",
        held_sum as f64 / (a.streams * deltas.len()).max(1) as f64,
        held_max
    );
    Ok(())
}
