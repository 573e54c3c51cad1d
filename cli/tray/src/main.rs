//! `airlock-tray`: Airlock's tray icon, a per-user process that shows whether the agent is up,
//! degraded (policy stale or expired, CA not trusted here, providers failing, journal failing, with
//! the reason) or down; today's spend, the budget closest to its limit, the last refused request and
//! the policy's version and age; and offers the dashboard, the shell setup and — when policy allows —
//! a pause of interception. It learns all of it from the `airlock` command beside it (which verifies
//! the agent), notifies on refusals and budgets, starts at login with `--autostart enable`, and runs
//! once per user. It is its own binary so that `airlock` and `airlockd` never link GTK; `airlock
//! tray` starts it. Exit codes: 0 done (also when another tray already runs), 1 error.

mod actions;
mod alerts;
mod autostart;
#[cfg(target_os = "linux")]
#[path = "gui_linux.rs"]
mod gui;
#[cfg(not(target_os = "linux"))]
#[path = "gui_other.rs"]
mod gui;
mod icon;
mod instance;
mod lines;
mod model;
mod snapshot;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use serde_json::json;

/// Airlock's tray icon.
#[derive(Debug, Parser)]
#[command(name = "airlock-tray", version, about)]
struct Args {
    /// The agent's state directory, passed on to `airlock` (default: its own default).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Start the tray at login (enable) or stop doing so (disable), then exit.
    #[arg(long, value_parser = ["enable", "disable"])]
    autostart: Option<String>,
    /// Print the menu the tray would show now, as JSON, and exit (for scripts and tests).
    #[arg(long)]
    once_json: bool,
    /// Seconds between looks at the agent.
    #[arg(long, default_value_t = 3)]
    interval: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock-tray: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    if let Some(what) = args.autostart.as_deref() {
        if what == "enable" {
            let exe = std::env::current_exe()?;
            let at = autostart::enable(&exe)?;
            println!("The tray starts at login from now on ({}).", at.display());
        } else {
            match autostart::disable()? {
                Some(at) => println!(
                    "The tray no longer starts at login (removed {}).",
                    at.display()
                ),
                None => println!("The tray was not set to start at login."),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cli = snapshot::Cli::find(args.state_dir.as_deref());
    if args.once_json {
        let today = time::OffsetDateTime::now_utc().date().to_string();
        let m = model::build(&cli.snapshot(&today), time::OffsetDateTime::now_utc());
        let items: Vec<_> = m
            .items
            .iter()
            .map(|i| match i {
                None => json!({"separator": true}),
                Some(i) => json!({"label": i.label, "action": format!("{:?}", i.action)}),
            })
            .collect();
        let v = json!({"state": m.state.word(), "tooltip": m.tooltip, "items": items});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let _instance = match instance::acquire(None)? {
        Ok(i) => i,
        Err(pid) => {
            eprintln!(
                "airlock-tray: already running{}; look for the Airlock icon in your panel",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    gui::run(cli, Duration::from_secs(args.interval.max(1)))?;
    Ok(ExitCode::SUCCESS)
}
