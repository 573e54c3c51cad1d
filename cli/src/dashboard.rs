//! `airlock dashboard`: the local dashboard (being built).

use std::process::ExitCode;

use anyhow::Result;

use crate::Session;

/// `airlock dashboard` flags.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Print the URL (with its token) and keep serving, without opening a browser.
    #[arg(long)]
    pub print_url: bool,
}

/// Runs `airlock dashboard`.
pub fn run(_ctx: &Session, _args: &DashboardArgs) -> Result<ExitCode> {
    anyhow::bail!("not built yet")
}
