//! The `agent` check: is the agent running and is it the one the state directory names. Turns the
//! outcome of `Session::find_agent` into a check; it must not start anything itself.

use anyhow::Result;
use serde_json::json;

use super::{Check, Status};
use crate::trust::Agent;

/// The command that starts the agent: the system service when its state is the system one.
pub fn start_command(state_dir: &str, system: bool) -> String {
    if system {
        "sudo systemctl start airlockd (the system service)".into()
    } else {
        format!("airlockd --state-dir {state_dir} (a user agent)")
    }
}

/// The check for what looking for the agent found.
pub fn check(found: &Result<Agent>, state_dir: &str, system: bool) -> Check {
    match found {
        Ok(Agent::Verified(v)) => Check::new(
            "agent",
            Status::Pass,
            format!("running, pid {} at {}", v.runtime.pid, v.addr()),
        )
        .details(json!({"pid": v.runtime.pid, "proxy_url": v.proxy_url(), "state_dir": state_dir})),
        Ok(Agent::NotRunning(n)) => not_running(&n.message(), state_dir, system),
        Err(e) => refused(&format!("{e:#}"), state_dir, system),
    }
}

fn not_running(message: &str, state_dir: &str, system: bool) -> Check {
    Check::new("agent", Status::Fail, "not running")
        .fix(start_command(state_dir, system))
        .details(json!({"message": message, "state_dir": state_dir}))
}

fn refused(message: &str, state_dir: &str, system: bool) -> Check {
    Check::new(
        "agent",
        Status::Fail,
        format!("cannot be trusted or reached: {message}"),
    )
    .fix(format!(
        "stop whatever holds the agent's socket or port, then {}",
        start_command(state_dir, system)
    ))
    .details(json!({"message": message, "state_dir": state_dir}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_user_agent_says_how_to_start_it() {
        let c = not_running("nothing answers", "/tmp/s", false);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("airlockd --state-dir /tmp/s (a user agent)")
        );
    }

    #[test]
    fn a_missing_system_agent_names_the_service() {
        let c = not_running("nothing answers", "/var/lib/airlock", true);
        assert!(c
            .fix
            .unwrap_or_default()
            .starts_with("sudo systemctl start airlockd"));
    }

    #[test]
    fn an_impostor_is_a_failure_with_its_reason() {
        let c = check(&Err(anyhow::anyhow!("served by pid 7")), "/tmp/s", false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("served by pid 7"));
    }
}
