//! `airlock tray`: starts the tray icon, which is its own program (`airlock-tray`, package
//! `airlock-tray`) so that this command, which runs on headless servers too, never links GTK. It
//! looks for `airlock-tray` beside this executable, then on PATH, and runs it with the flags
//! (`--autostart`, `--once-json`) and the `--state-dir` this command was given; when it is missing
//! it says which binary to install. It must not draw anything or talk to the agent itself: the tray
//! asks this `airlock` binary, which verifies the agent.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{anyhow, Result};

/// `airlock tray` flags (passed on to `airlock-tray`).
#[derive(Debug, clap::Args)]
pub struct TrayArgs {
    /// Start the tray at login (enable: an XDG autostart entry, a LaunchAgent or a Run key) or stop
    /// doing so (disable), then exit.
    #[arg(long, value_parser = ["enable", "disable"])]
    pub autostart: Option<String>,
    /// Print the menu the tray would show now, as JSON, and exit.
    #[arg(long)]
    pub once_json: bool,
}

fn program() -> PathBuf {
    let name = if cfg!(windows) {
        "airlock-tray.exe"
    } else {
        "airlock-tray"
    };
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `airlock-tray` with the flags; its exit code.
/// `state_dir` is the global `--state-dir` as clap parsed it, passed on to the `airlock` the tray runs.
pub fn run(args: &TrayArgs, state_dir: Option<&std::path::Path>) -> Result<ExitCode> {
    let prog = program();
    let mut cmd = Command::new(&prog);
    if let Some(d) = state_dir {
        cmd.arg("--state-dir").arg(d);
    }
    if let Some(a) = &args.autostart {
        cmd.args(["--autostart", a]);
    }
    if args.once_json {
        cmd.arg("--once-json");
    }
    let status = cmd.status().map_err(|e| {
        anyhow!(
            "cannot start {} ({e}): the tray icon is its own program; install the airlock-tray \
             package (or put the airlock-tray binary from the same release beside airlock or on PATH)",
            prog.display()
        )
    })?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
