//! Asking `airlock` what the agent is doing: `status --json`, `ca trust-status --json`, `requests
//! --json` and `usage --by day --json`, run as child processes of the `airlock` beside this program.
//! That binary finds and verifies the agent (state directory, runtime file, peer credentials), so the
//! tray never re-implements trust; it only reads JSON. It must not block the GUI: the poller runs on
//! its own thread and sends snapshots over a channel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::model::Snapshot;

/// How to run `airlock`.
#[derive(Debug, Clone)]
pub struct Cli {
    /// The `airlock` binary.
    pub program: PathBuf,
    /// Global flags passed on (`--state-dir DIR`).
    pub global: Vec<String>,
}

impl Cli {
    /// `airlock` beside this executable, else on PATH; `--state-dir` passed on when given.
    pub fn find(state_dir: Option<&Path>) -> Cli {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join(exe_name())))
            .filter(|p| p.is_file());
        let mut global = Vec::new();
        if let Some(d) = state_dir {
            global.push("--state-dir".into());
            global.push(d.display().to_string());
        }
        Cli {
            program: beside.unwrap_or_else(|| PathBuf::from(exe_name())),
            global,
        }
    }

    /// A command for `airlock ARGS…` with the global flags.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.global).args(args).env("NO_COLOR", "1");
        c
    }

    /// Runs `airlock ARGS…` and returns its exit code and stdout.
    fn run(&self, args: &[&str]) -> Option<(i32, String)> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| tracing::warn!(program = %self.program.display(), error = %e, "cannot run airlock"))
            .ok()?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        Some((out.status.code().unwrap_or(-1), text))
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let (code, text) = self.run(args)?;
        (code == 0)
            .then(|| serde_json::from_str(&text).ok())
            .flatten()
    }

    /// One snapshot of the agent.
    pub fn snapshot(&self, today: &str) -> Snapshot {
        let Some((code, text)) = self.run(&["status", "--json"]) else {
            return down(format!("cannot run {}", self.program.display()));
        };
        let status: Option<Value> = serde_json::from_str(&text).ok();
        let running = code == 0 && status.as_ref().is_some_and(|s| s["running"] == true);
        if !running {
            let why = status
                .as_ref()
                .and_then(|s| s["reason"].as_str().map(str::to_string))
                .or_else(|| {
                    text.lines()
                        .rev()
                        .find(|l| l.starts_with("airlock:"))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "the agent is not running".into());
            return down(why);
        }
        let recent = self
            .run(&["requests", "--json", "-n", "50"])
            .filter(|(c, _)| *c == 0)
            .map(|(_, t)| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        let spend_today = self
            .json(&["usage", "--by", "day", "--since", "1d", "--json"])
            .map(|u| spend_on(&u, today));
        Snapshot {
            status,
            down_reason: None,
            trust: self.json(&["ca", "trust-status", "--json"]),
            spend_today,
            recent,
        }
    }
}

fn down(why: String) -> Snapshot {
    Snapshot {
        down_reason: Some(why),
        ..Snapshot::default()
    }
}

/// Today's cost from `airlock usage --by day --json`.
pub fn spend_on(usage: &Value, day: &str) -> f64 {
    usage["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["key"].as_str() == Some(day))
        .filter_map(|g| g["cost_usd"].as_f64())
        // A fold from +0.0: an empty f64 `sum()` is -0.0, which prints as "$-0.00".
        .fold(0.0, |a, b| a + b)
}

fn exe_name() -> &'static str {
    if cfg!(windows) {
        "airlock.exe"
    } else {
        "airlock"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn todays_spend_is_the_day_group_of_today_only() {
        let u = json!({"groups": [{"key": "2026-12-01", "cost_usd": 4.0}, {"key": "2026-12-02", "cost_usd": 1.25}]});
        assert_eq!(spend_on(&u, "2026-12-02"), 1.25);
        assert_eq!(spend_on(&u, "2026-12-03"), 0.0);
        assert_eq!(format!("{:.2}", spend_on(&json!({}), "2026-12-02")), "0.00");
    }

    #[test]
    fn the_state_dir_is_passed_on_and_colour_is_off() {
        let cli = Cli::find(Some(Path::new("/var/lib/airlock")));
        let c = cli.command(&["status", "--json"]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--state-dir", "/var/lib/airlock", "status", "--json"]
        );
        assert!(c.get_envs().any(|(k, v)| k == "NO_COLOR" && v.is_some()));
    }
}
