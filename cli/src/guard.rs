//! `airlock guard`: the guardrail engine on files and streams, with the agent's own rules — `scan`
//! (files or stdin, human, `--json`, or the `--jsonl` protocol the tests, benchmark and evaluation
//! drive: lines `{"id", "text"}` in, `{"id", "findings": [{rule, category, start, end}]}` out, byte
//! offsets into `text`), `rules` (what is detected) and `fingerprint` (the `sha256:` an allowlist
//! names, of a value read from stdin). A matched value is never printed whole: a human report shows
//! the masked preview a record would. It needs no running agent and writes nothing.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use airlock_agent::guardrails::actions::{preview, Context, Guard};
use airlock_agent::guardrails::Finding;
use airlock_agent::policy::guardrails::{Action, Direction};
use airlock_agent::policy::Policy;
use anyhow::{Context as _, Result};
use serde_json::{json, Value};

/// `airlock guard` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GuardAction {
    /// Scan files (or stdin) for secrets, personal data, prompt injection and custom rules.
    /// Exit 0: nothing found; 1: findings; 2: an error.
    Scan {
        /// A policy file whose `[guardrails]` to use (custom rules, options, actions `off`);
        /// default: the built-in rules.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Judge the text as a request (default) or a response (the actions differ).
        #[arg(long, value_enum, default_value = "request")]
        direction: Dir,
        /// One JSON document with every finding.
        #[arg(long, conflicts_with = "jsonl")]
        json: bool,
        /// Read lines `{"id": …, "text": "…"}` on stdin, write one line of findings per input.
        #[arg(long)]
        jsonl: bool,
        /// Files to scan (default: stdin).
        files: Vec<PathBuf>,
    },
    /// List the built-in rules (and a policy's custom ones).
    Rules {
        /// A policy file whose custom rules to list too.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the `sha256:` fingerprint of a value read from stdin (for `allow_fingerprints`),
    /// so the value itself never goes into policy.
    Fingerprint,
}

/// `--direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dir {
    /// What an app sends.
    Request,
    /// What a provider answers.
    Response,
}

impl Dir {
    fn policy(self) -> Direction {
        match self {
            Dir::Request => Direction::Request,
            Dir::Response => Direction::Response,
        }
    }
}

fn load(policy: Option<&Path>) -> Result<Arc<Guard>> {
    match policy {
        Some(p) => Ok(Policy::from_file(p)?.guard),
        None => Ok(Arc::new(
            Guard::builtin().map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
    }
}

/// What the scanner reports of a text: findings whose action in `dir` is not `off`.
fn findings(guard: &Guard, text: &str, dir: Direction) -> Vec<(Finding, Action)> {
    let cx = Context::default();
    guard
        .engine()
        .scan(text)
        .into_iter()
        .filter_map(|f| {
            let a = guard.action(&f, &text[f.start..f.end], None, dir, &cx);
            (a != Action::Off).then_some((f, a))
        })
        .collect()
}

/// Runs a subcommand.
pub fn run(action: &GuardAction) -> Result<ExitCode> {
    match action {
        GuardAction::Scan {
            policy,
            direction,
            json,
            jsonl,
            files,
        } => {
            let guard = load(policy.as_deref())?;
            if *jsonl {
                return jsonl_protocol(&guard, direction.policy());
            }
            scan_files(&guard, direction.policy(), files, *json)
        }
        GuardAction::Rules { policy, json } => rules(policy.as_deref(), *json),
        GuardAction::Fingerprint => {
            let mut v = String::new();
            if std::io::stdin().is_terminal() {
                v = rpassword::prompt_password("value (not echoed): ")?;
            } else {
                std::io::stdin().read_to_string(&mut v)?;
            }
            let v = v.strip_suffix('\n').unwrap_or(&v);
            let v = v.strip_suffix('\r').unwrap_or(v);
            println!("{}", airlock_agent::guardrails::actions::fingerprint(v));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn jsonl_protocol(guard: &Guard, dir: Direction) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut reader = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = String::new();
    let mut n = 0u64;
    let mut errors = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).context("cannot read stdin")? == 0 {
            break;
        }
        n += 1;
        let l = line.trim_end_matches(['\n', '\r']);
        if l.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(o)) => {
                let id = o.get("id").cloned().unwrap_or(Value::Null);
                match o.get("text") {
                    Some(Value::String(text)) => {
                        let f: Vec<Value> = findings(guard, text, dir)
                            .into_iter()
                            .map(|(f, _)| {
                                json!({"rule": &*f.rule, "category": f.category.as_str(), "start": f.start, "end": f.end})
                            })
                            .collect();
                        json!({"id": id, "findings": f})
                    }
                    _ => {
                        errors += 1;
                        json!({"id": id, "findings": [], "error": format!("line {n}: \"text\" must be a string")})
                    }
                }
            }
            Ok(_) => {
                errors += 1;
                json!({"id": null, "findings": [], "error": format!("line {n}: expected an object {{\"id\": …, \"text\": \"…\"}}")})
            }
            Err(e) => {
                errors += 1;
                json!({"id": null, "findings": [], "error": format!("line {n}: not JSON: {e}")})
            }
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        // Answer at once when no more input is waiting (a client may wait for each reply).
        if reader.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    if errors > 0 {
        eprintln!("airlock guard scan: {errors} input line(s) were not {{\"id\", \"text\"}} objects; their replies carry \"error\"");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// 1-based line and column (in characters) of byte `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn scan_files(guard: &Guard, dir: Direction, files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let mut inputs: Vec<(String, String)> = Vec::new();
    if files.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("stdin is not UTF-8 text")?;
        inputs.push(("-".into(), text));
    } else {
        for f in files {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            // Binary or non-UTF-8 files are scanned as far as they are text.
            inputs.push((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    let mut any = false;
    let mut docs = Vec::new();
    for (name, text) in &inputs {
        let found = findings(guard, text, dir);
        any |= !found.is_empty();
        if json {
            let list: Vec<Value> = found
                .iter()
                .map(|(f, a)| {
                    let (line, column) = line_col(text, f.start);
                    json!({"rule": &*f.rule, "category": f.category.as_str(), "start": f.start, "end": f.end,
                           "line": line, "column": column, "action": a.as_str(),
                           "preview": preview(f.category, &text[f.start..f.end])})
                })
                .collect();
            docs.push(json!({"file": name, "findings": list}));
        } else {
            for (f, a) in &found {
                let (line, column) = line_col(text, f.start);
                println!(
                    "{name}:{line}:{column}: {} ({}) {} {}",
                    f.rule,
                    f.category.as_str(),
                    a.as_str(),
                    preview(f.category, &text[f.start..f.end])
                );
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"files": docs}))?);
    } else if !any {
        eprintln!("nothing found");
    }
    Ok(if any {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn rules(policy: Option<&Path>, json: bool) -> Result<ExitCode> {
    let guard = load(policy)?;
    let list = guard.engine().rule_list();
    if json {
        let v: Vec<Value> = list
            .iter()
            .map(|(id, cat, title)| json!({"rule": id, "category": cat.as_str(), "title": title}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (id, cat, title) in &list {
            println!("{:<10} {:<36} {title}", cat.as_str(), id);
        }
        eprintln!("{} rules", list.len());
    }
    Ok(ExitCode::SUCCESS)
}
