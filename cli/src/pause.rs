//! `airlock pause [--minutes N]` and `airlock resume`: a pause of interception, for anyone at the
//! machine when the policy allows it (`[pause] allow = true`). While it runs the agent tunnels AI
//! hosts uninspected; the agent journals who paused and resumed. This module only asks the agent
//! and tells the person what it answered; the policy check is the agent's.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use crate::Session;

/// Runs `airlock pause`.
pub fn pause(ctx: &Session, minutes: Option<u32>) -> Result<ExitCode> {
    let agent = ctx.verified()?;
    let body = json!({ "minutes": minutes }).to_string();
    let (status, v) = agent.send("POST", "/airlock/v1/pause", body.as_bytes())?;
    if status != 200 {
        bail!(
            "the agent did not pause interception: {}",
            v["error"]["message"].as_str().unwrap_or("no reason given")
        );
    }
    outln!(
        "Interception paused for {} minutes, until {}. AI hosts are tunnelled uninspected until then; \
         `airlock resume` ends the pause now.",
        v["minutes"],
        v["paused_until"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `airlock resume`.
pub fn resume(ctx: &Session) -> Result<ExitCode> {
    let agent = ctx.verified()?;
    let (status, v) = agent.send("POST", "/airlock/v1/resume", b"")?;
    if status != 200 {
        bail!(
            "the agent did not resume interception: {}",
            v["error"]["message"].as_str().unwrap_or("no reason given")
        );
    }
    if v["was_paused"] == true {
        outln!("Interception resumed.");
    } else {
        outln!("Interception was not paused.");
    }
    Ok(ExitCode::SUCCESS)
}
