//! `airlock journal verify` and `airlock journal export`: the agent's journal, through the control
//! API when the agent runs (a user sees their own rows; root and the agent's user every row), or
//! straight from the file when it does not (`--file`, else `journal.db` in the state directory —
//! after a crash, before a restart). It must not write the journal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use airlock_agent::journal::{self, Exported, Verification};
use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::trust::{Agent, TrustedState};

/// Rows asked for per page.
const PAGE: usize = 5_000;

/// `airlock journal` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JournalAction {
    /// Check the hash chain: every row's hash over its contents and its link to the row before;
    /// exit 1 naming the first row that was edited, deleted or reordered.
    Verify {
        /// A journal file to check instead of the running agent's (a copy, or a stopped agent's).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print journal rows: each request once (as it ended, or as it began if it never ended) and
    /// each event, oldest first.
    Export {
        /// Only rows from this long ago on (`7d`, `24h`, `90m`).
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
        since: Option<Duration>,
        /// Output format.
        #[arg(long, value_parser = ["jsonl", "csv"], default_value = "jsonl")]
        format: String,
        /// A journal file to read instead of the running agent's.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Where the rows go.
enum Out<'a> {
    Csv(Box<csv::Writer<std::io::StdoutLock<'a>>>),
    Jsonl(std::io::BufWriter<std::io::StdoutLock<'a>>),
}

/// Where journal rows come from: the running agent (which shows each user their own), or a file.
pub enum RowSource {
    /// The agent, through its control socket.
    Agent(Box<crate::trust::Verified>),
    /// A journal file read directly.
    File(PathBuf),
}

/// `file` if given, else the running agent, else the state directory's journal file.
pub fn row_source(
    state: &TrustedState,
    agent: Result<Agent>,
    file: Option<&Path>,
) -> Result<RowSource> {
    if let Some(f) = file {
        return Ok(RowSource::File(f.to_path_buf()));
    }
    match agent? {
        Agent::Verified(v) => Ok(RowSource::Agent(v)),
        Agent::NotRunning(_) => Ok(RowSource::File(state.dir.root().join("journal.db"))),
    }
}

fn since_ms(since: Option<Duration>) -> i64 {
    since.map_or(0, |d| {
        airlock_agent::record::now_ms()
            .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Every row from `since` ago on, as `export --format jsonl` prints them.
pub fn rows_since(src: &RowSource, since: Option<Duration>) -> Result<Vec<Value>> {
    let since = since_ms(since);
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let (rows, next) = page(src, since, after)?;
        out.extend(rows.iter().map(jsonl_row));
        match next {
            Some(n) => after = n,
            None => return Ok(out),
        }
    }
}

fn open_check(path: &Path) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no journal at {} (the agent is not running, and has never run with this state directory); \
             give --file or --state-dir",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "you may not read {}: the journal is private to the agent's user; run this as that user or \
             with sudo, or start the agent and ask it (it shows you your own rows)",
            path.display()
        ),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

/// Runs a `journal` subcommand.
pub fn run(action: &JournalAction, state: &TrustedState, agent: Result<Agent>) -> Result<ExitCode> {
    match action {
        JournalAction::Verify { file, json } => {
            let (path, v) = match row_source(state, agent, file.as_deref())? {
                RowSource::Agent(a) => {
                    let answer = a.get("/airlock/v1/journal/verify")?;
                    let v: Verification = serde_json::from_value(answer["verification"].clone())
                        .context("the agent's verification answer is not what this CLI reads")?;
                    (answer["path"].as_str().unwrap_or("?").to_string(), v)
                }
                RowSource::File(p) => {
                    open_check(&p)?;
                    let v = journal::verify_file(&p)?;
                    (p.display().to_string(), v)
                }
            };
            print_verification(&path, &v, *json)?;
            Ok(if v.problem.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        JournalAction::Export {
            since,
            format,
            file,
        } => {
            let since_ms = since_ms(*since);
            let src = row_source(state, agent, file.as_deref())?;
            let stdout = std::io::stdout();
            let mut out = if format == "csv" {
                let mut w = csv::Writer::from_writer(stdout.lock());
                w.write_record(CSV_COLUMNS)?;
                Out::Csv(Box::new(w))
            } else {
                Out::Jsonl(std::io::BufWriter::new(stdout.lock()))
            };
            let mut after = 0i64;
            loop {
                let (rows, next) = page(&src, since_ms, after)?;
                for r in &rows {
                    match &mut out {
                        Out::Csv(w) => w.write_record(csv_row(r))?,
                        Out::Jsonl(w) => {
                            serde_json::to_writer(&mut *w, &jsonl_row(r))?;
                            w.write_all(b"\n")?;
                        }
                    }
                }
                match next {
                    Some(n) => after = n,
                    None => break,
                }
            }
            match &mut out {
                Out::Csv(w) => w.flush()?,
                Out::Jsonl(w) => w.flush()?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn page(src: &RowSource, since_ms: i64, after: i64) -> Result<(Vec<Exported>, Option<i64>)> {
    match src {
        RowSource::Agent(a) => {
            let v = a.get(&format!(
                "/airlock/v1/journal?since_ms={since_ms}&after={after}&limit={PAGE}"
            ))?;
            let rows: Vec<Exported> = serde_json::from_value(v["rows"].clone())
                .context("the agent's journal rows are not what this CLI reads")?;
            Ok((rows, v["next"].as_i64()))
        }
        RowSource::File(p) => {
            open_check(p)?;
            let conn = journal::open_reader(p)?;
            let rows = journal::read::export(&conn, since_ms, after, PAGE, None)?;
            let next = journal::read::next_page(&rows, PAGE);
            Ok((rows, next))
        }
    }
}

fn print_verification(path: &str, v: &Verification, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"path": path, "verification": v}))?
        );
        return Ok(());
    }
    match &v.problem {
        None => println!(
            "journal {path}: chain intact, {} rows{} (head {})",
            v.rows,
            match (v.first_seq, v.last_seq) {
                (Some(a), Some(b)) => format!(", rows {a} to {b}"),
                _ => String::new(),
            },
            &v.head_hash[..16.min(v.head_hash.len())]
        ),
        Some(p) => println!(
            "journal {path}: BROKEN at row {} ({}): {}\n{} rows before it verify",
            p.seq, p.id, p.message, v.rows
        ),
    }
    Ok(())
}

/// A row as `export --format jsonl` prints it: the record or event, with its place in the chain.
fn jsonl_row(r: &Exported) -> Value {
    let mut v = r.body.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "journal".into(),
            serde_json::json!({"seq": r.seq, "kind": r.kind, "uid": r.uid}),
        );
        if r.kind == journal::Kind::Begin {
            // Began and never ended: the agent stopped (or was killed) while it ran.
            obj.insert("outcome".into(), Value::String("unfinished".into()));
        }
    }
    v
}

const CSV_COLUMNS: [&str; 17] = [
    "seq",
    "kind",
    "id",
    "time",
    "uid",
    "provider",
    "operation",
    "model",
    "outcome",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "decided_by",
    "event",
    "details",
];

fn csv_row(r: &Exported) -> Vec<String> {
    let b = &r.body;
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let outcome = if r.kind == journal::Kind::Begin {
        "unfinished".to_string()
    } else {
        text(&b["outcome"])
    };
    vec![
        r.seq.to_string(),
        text(&serde_json::to_value(r.kind).unwrap_or_default()),
        text(if b["id"].is_null() {
            &Value::Null
        } else {
            &b["id"]
        }),
        text(if b["started_at"].is_null() {
            &b["at"]
        } else {
            &b["started_at"]
        }),
        r.uid.map(|u| u.to_string()).unwrap_or_default(),
        text(&b["provider"]),
        text(&b["operation"]),
        text(&b["model"]),
        outcome,
        text(&b["status"]),
        text(&b["usage"]["input_tokens"]),
        text(&b["usage"]["output_tokens"]),
        text(&b["cost_usd"]),
        text(&b["latency_ms"]),
        text(&b["decided_by"]),
        text(&b["event"]),
        if b["details"].is_null() {
            String::new()
        } else {
            b["details"].to_string()
        },
    ]
}
