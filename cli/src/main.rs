//! `airlock`: the command people use to see and use the agent — `status`, `env`, `run -- CMD`, and the
//! device CA (`ca path|show|export|rotate`). It talks to `airlockd` over its loopback status API and reads
//! the agent's state directory; it never handles AI traffic itself.

mod client;
mod envvars;

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_agent::ca::{CaInfo, CertificateAuthority};
use airlock_agent::paths::StateDir;
use airlock_agent::policy::Policy;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

/// Airlock: see and use this machine's AI governance agent.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about)]
struct Cli {
    /// Address of the agent (default: from its runtime file, else 127.0.0.1:8479).
    #[arg(long, global = true)]
    addr: Option<String>,
    /// The agent's state directory (default: $AIRLOCK_STATE_DIR, or what the running agent reports).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Whether the agent is up, its address, CA, interception hosts and requests seen.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print shell exports that send this shell's tools through the agent: eval "$(airlock env)".
    Env {
        /// Shell syntax.
        #[arg(long, value_parser = ["posix", "fish", "powershell"], default_value = "posix")]
        shell: String,
    },
    /// Run a command with its proxy and CA settings pointed at the agent.
    Run {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// The device CA.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
}

#[derive(Debug, Subcommand)]
enum CaAction {
    /// Print the path of the CA certificate.
    Path,
    /// Print the CA's name, fingerprint, validity and the domains it may sign for.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the CA certificate (PEM).
    Export,
    /// Replace the CA with a new one covering every host the policy intercepts.
    Rotate {
        /// Policy whose hosts the new CA must cover (default: the running agent's, else the embedded one).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What the CLI knows about the agent and its state.
struct Session {
    addr: client::AgentAddr,
    status: Option<Value>,
    state: StateDir,
}

fn context(cli: &Cli) -> Result<Session> {
    let explicit_state = cli.state_dir.clone().or_else(|| {
        std::env::var_os(airlock_agent::paths::STATE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let default_state = StateDir::resolve(explicit_state.as_deref()).ok();
    let addr = client::resolve_addr(cli.addr.as_deref(), default_state.as_ref())?;
    let status = client::get_json(addr.addr, "/airlock/v1/status")?;
    // The running agent knows its own state directory best, unless the user named one.
    let state = match (
        &explicit_state,
        status.as_ref().and_then(|s| s["state_dir"].as_str()),
    ) {
        (Some(p), _) => StateDir::new(p),
        (None, Some(p)) => StateDir::new(p),
        (None, None) => match default_state {
            Some(s) => s,
            None => StateDir::resolve(None)?,
        },
    };
    Ok(Session {
        addr,
        status,
        state,
    })
}

fn not_running(addr: &client::AgentAddr) -> String {
    format!(
        "the Airlock agent is not running (nothing answers at {}, from {}). Start it with `airlockd` \
         (or pass --addr if it listens elsewhere)",
        addr.addr, addr.source
    )
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = context(&cli)?;
    match cli.command {
        Command::Status { json } => status(&ctx, json),
        Command::Env { shell } => {
            let vars = env_vars(&ctx)?;
            print!("{}", envvars::render(&vars, &shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { command } => run_command(&ctx, &command),
        Command::Ca { action } => ca(&ctx, action),
    }
}

fn status(ctx: &Session, json: bool) -> Result<ExitCode> {
    let Some(s) = &ctx.status else {
        if json {
            let v = serde_json::json!({"running": false, "listen": ctx.addr.addr.to_string()});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("Airlock agent: not running");
            println!("  {}", not_running(&ctx.addr));
        }
        return Ok(ExitCode::from(3));
    };
    if json {
        let mut v = s.clone();
        v["running"] = Value::Bool(true);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let listen = s["listen"].as_str().unwrap_or("?");
    println!(
        "Airlock agent: running (pid {}, version {}, up {}s)",
        s["pid"],
        s["version"].as_str().unwrap_or("?"),
        s["uptime_secs"]
    );
    println!("  Listening:     {listen}  (proxy http://{listen}, PAC http://{listen}/proxy.pac)");
    println!(
        "  Policy:        {} ({})",
        s["policy"]["name"].as_str().unwrap_or("?"),
        s["policy"]["source"].as_str().unwrap_or("?")
    );
    println!(
        "  Device CA:     {}\n                 SHA-256 {}",
        s["ca"]["cert_path"].as_str().unwrap_or("?"),
        s["ca"]["fingerprint_sha256"].as_str().unwrap_or("?")
    );
    let hosts: Vec<&str> = s["interception_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| h["intercepted"] == true)
                .filter_map(|h| h["host"].as_str())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "  Intercepting:  {} hosts: {}",
        hosts.len(),
        hosts.join(", ")
    );
    println!(
        "  Requests:      {} seen, {} in flight",
        s["requests_seen"], s["requests_in_flight"]
    );
    let uncovered: Vec<&str> = s["ca"]["uncovered_hosts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !uncovered.is_empty() {
        println!(
            "  WARNING: the policy intercepts {} outside the device CA's name constraints, so they are \
             tunnelled uninspected. Run `airlock ca rotate` to make a CA that covers them.",
            uncovered.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn env_vars(ctx: &Session) -> Result<Vec<(String, String)>> {
    let Some(s) = &ctx.status else {
        bail!("{}", not_running(&ctx.addr));
    };
    let proxy = s["proxy_url"]
        .as_str()
        .ok_or_else(|| anyhow!("the agent's status has no proxy_url"))?;
    let ca = s["ca"]["cert_path"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.state.ca_cert());
    let bundle = s["ca"]["bundle_path"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| ca.clone());
    let existing = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .ok();
    Ok(envvars::build(proxy, &bundle, &ca, existing.as_deref()))
}

fn run_command(ctx: &Session, command: &[String]) -> Result<ExitCode> {
    let vars = env_vars(ctx)?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("give a command after --"))?;
    let status = std::process::Command::new(program)
        .args(args)
        .envs(vars)
        .status()
        .with_context(|| format!("cannot run {program:?}"))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(128 + 1), // killed by a signal
    })
}

fn ca(ctx: &Session, action: CaAction) -> Result<ExitCode> {
    let missing = |e: airlock_agent::AgentError| {
        anyhow!(
            "{e}. No device CA at {} yet: start `airlockd` once to create it (or pass --state-dir)",
            ctx.state.ca_cert().display()
        )
    };
    match action {
        CaAction::Path => {
            let info = CaInfo::read(&ctx.state).map_err(missing)?;
            println!("{}", info.cert_path.display());
        }
        CaAction::Export => {
            let info = CaInfo::read(&ctx.state).map_err(missing)?;
            print!("{}", info.cert_pem);
        }
        CaAction::Show { json } => {
            let info = CaInfo::read(&ctx.state).map_err(missing)?;
            let uncovered: Vec<String> = ctx
                .status
                .as_ref()
                .and_then(|s| s["ca"]["uncovered_hosts"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if json {
                let mut v = serde_json::to_value(&info)?;
                v["uncovered_hosts"] = serde_json::json!(uncovered);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Subject:      {}", info.subject);
                println!("Serial:       {}", info.serial);
                println!("SHA-256:      {}", info.fingerprint_sha256);
                println!("Valid until:  {}", info.not_after);
                println!("Certificate:  {}", info.cert_path.display());
                println!("May sign for: {}", info.permitted_domains.join(", "));
                if !uncovered.is_empty() {
                    println!(
                        "Not covered:  {} (intercepted by policy; run `airlock ca rotate`)",
                        uncovered.join(", ")
                    );
                }
            }
        }
        CaAction::Rotate { policy } => {
            let domains = match (&policy, &ctx.status) {
                (Some(p), _) => Policy::from_file(p)?.hosts.ca_domains(),
                (None, Some(s)) => domains_from_status(s),
                (None, None) => Policy::embedded()?.hosts.ca_domains(),
            };
            let ca = CertificateAuthority::rotate(&ctx.state, &domains).map_err(|e| {
                anyhow!(
                    "{e}. Rotating needs write access to {}: run as the user that runs airlockd",
                    ctx.state.root().display()
                )
            })?;
            println!("New device CA: {}", ca.info().subject);
            println!("SHA-256:       {}", ca.info().fingerprint_sha256);
            println!("May sign for:  {}", ca.info().permitted_domains.join(", "));
            if ctx.status.is_some() {
                client::post_json(ctx.addr.addr, "/airlock/v1/ca/reload")?;
                println!("The running agent now uses it.");
            } else {
                println!("The agent will use it when it starts.");
            }
            println!(
                "Tools that trusted the old CA must trust the new one: re-run `eval \"$(airlock env)\"` in open shells."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CA domains for the hosts a running agent intercepts.
fn domains_from_status(s: &Value) -> Vec<String> {
    let mut d: Vec<String> = s["interception_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["host"].as_str())
                .map(|h| h.trim_start_matches("*.").to_string())
                .collect()
        })
        .unwrap_or_default();
    d.sort();
    d.dedup();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_covers_wildcards_by_their_suffix() {
        let s = serde_json::json!({"interception_hosts": [
            {"host": "api.openai.com"}, {"host": "*.openai.azure.com"}, {"host": "api.openai.com"}
        ]});
        assert_eq!(
            domains_from_status(&s),
            ["api.openai.com", "openai.azure.com"]
        );
    }
}
