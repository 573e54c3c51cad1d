//! `airlock doctor`: runs every check of this machine's Airlock setup (agent, policy, CA, trust
//! stores, shell variables, a live self-test, the clock, AI traffic bypassing the agent) and prints
//! one pass/warn/fail/skip line each, with the command that fixes a failure. `--json` prints
//! `{"ok": bool, "checks": [{"id", "status", "summary", "fix", "details"}]}`. The check ids
//! (`agent`, `policy`, `ca`, `ca-trust`, `shell`, `self-test`, `clock`, `bypass`) are stable: scripts
//! depend on them. Exit status: 0 when no check failed (warnings and skips included), 1 when at least
//! one failed. Each check's decision is a pure function in its own file, fed with the status JSON or
//! fixture text, so it is unit-tested without an agent; this file only gathers inputs and prints. It
//! must never change the agent, the trust stores or the environment.

mod agent;
mod bypass;
#[cfg(target_os = "linux")]
mod bypass_linux;
mod clock;
mod policy;
mod selftest;
mod shell;
mod tls;
mod trust;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use crate::trust::Agent;
use crate::Session;

/// `airlock doctor` flags.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// A host that is not intercepted, for the self-test's tunnel check.
    #[arg(long, value_name = "HOST:PORT", default_value = "example.com:443")]
    pub tunnel_host: String,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// All good.
    Pass,
    /// Works, but something deserves attention.
    Warn,
    /// Broken: the fix says what to run.
    Fail,
    /// Could not be checked here.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "\x1b[32m",
            Status::Warn => "\x1b[33m",
            Status::Fail => "\x1b[31m",
            Status::Skip => "\x1b[2m",
        }
    }
}

/// One check's line.
#[derive(Debug, Clone)]
pub struct Check {
    /// Stable id.
    pub id: &'static str,
    /// Outcome.
    pub status: Status,
    /// One sentence.
    pub summary: String,
    /// The command that fixes it, when it failed (or warned).
    pub fix: Option<String>,
    /// Facts behind the decision.
    pub details: Value,
}

impl Check {
    fn new(id: &'static str, status: Status, summary: impl Into<String>) -> Check {
        Check {
            id,
            status,
            summary: summary.into(),
            fix: None,
            details: json!({}),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    fn details(mut self, details: Value) -> Check {
        self.details = details;
        self
    }

    fn to_json(&self) -> Value {
        json!({"id": self.id, "status": self.status.word(), "summary": self.summary,
               "fix": self.fix, "details": self.details})
    }
}

/// Every check id, in the order they run.
pub const IDS: [&str; 8] = [
    "agent",
    "policy",
    "ca",
    "ca-trust",
    "shell",
    "self-test",
    "clock",
    "bypass",
];

/// Runs `airlock doctor`.
pub fn run(ctx: &Session, args: &DoctorArgs) -> Result<ExitCode> {
    let checks = gather(ctx, args);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let v =
            json!({"ok": !failed, "checks": checks.iter().map(Check::to_json).collect::<Vec<_>>()});
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        for c in &checks {
            outln!("{}", line(c, colour));
        }
        outln!(
            "{}",
            if failed {
                "Something failed: run the fix shown under it, then `airlock doctor` again."
            } else {
                "Nothing failed."
            }
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn line(c: &Check, colour: bool) -> String {
    let word = format!("{:<4}", c.status.word());
    let word = if colour {
        format!("{}{word}\x1b[0m", c.status.colour())
    } else {
        word
    };
    let mut s = format!("{word}  {:<9} {}", c.id, c.summary);
    if let Some(f) = &c.fix {
        s.push_str(&format!("\n                 fix: {f}"));
    }
    s
}

fn gather(ctx: &Session, args: &DoctorArgs) -> Vec<Check> {
    let found = ctx.find_agent();
    let first = agent::check(
        &found,
        &ctx.state.dir.root().display().to_string(),
        system_dir(ctx),
    );
    let Ok(Agent::Verified(v)) = found else {
        let mut out = vec![first];
        for id in &IDS[1..] {
            out.push(Check::new(
                id,
                Status::Skip,
                "skipped: the agent is not running",
            ));
        }
        return out;
    };
    let now = time::OffsetDateTime::now_utc();
    let mut out = vec![first, policy::check(&v.status, now)];
    let files = trust::CaFiles::read(&v);
    out.push(trust::ca_check(&v.status, &files, now));
    out.push(trust::trust_check(&trust::store_rows(&v), trust::is_root()));
    out.push(shell::check(&shell::gather(&v)));
    out.push(selftest::run(&v, &args.tunnel_host));
    out.push(clock::check(&v.status, files.validity, now));
    out.push(bypass::run(&v));
    out
}

fn system_dir(ctx: &Session) -> bool {
    ctx.state.dir.root() == std::path::Path::new(airlock_agent::paths::SYSTEM_STATE_DIR)
}
