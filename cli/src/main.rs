//! `airlock`: the command people use to see and use the agent — `status`, `env`, `run -- CMD`,
//! `inventory`, and the device CA (`ca path|show|export|rotate`). It reads the agent's state
//! directory and talks to `airlockd` over its control socket (HTTP over a unix socket), but only after
//! `trust` has verified that what answers is the agent the state directory names; every path it hands
//! out comes from that directory. It never handles AI traffic itself. Exit codes: 0 done, 1 error, 3 (`status`) the agent is not running, 4 something
//! else answers where the agent should be, 5 the state directory could have been written by others.

/// `println!` that ends the program quietly when stdout is a closed pipe (`airlock status | head`),
/// instead of panicking the way `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            crate::stdout_failed(e);
        }
    }};
}

/// `print!` with the same care as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            crate::stdout_failed(e);
        }
    }};
}

/// Stdout went away: a closed pipe is a normal way for a reader to stop; anything else is reported.
fn stdout_failed(e: std::io::Error) {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("airlock: cannot write to standard output: {e}");
    }
    std::process::exit(if e.kind() == std::io::ErrorKind::BrokenPipe {
        0
    } else {
        1
    });
}

mod baseurl;
mod client;
mod control;
mod credentials;
mod dashboard;
mod doctor;
mod duration;
mod enroll;
mod envvars;
mod guard;
mod inventory;
mod javaopts;
mod journal;
mod launch;
mod nodecheck;
mod owner;
mod pause;
mod peer;
mod policy;
mod requests;
mod setup;
mod status;
mod style;
mod tray;
mod trust;
mod usage;
mod userproxy;

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_agent::ca::CertificateAuthority;
use airlock_agent::policy::Policy;
use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

use trust::{Agent, Refused, TrustedState, Verified};

/// Airlock: see and use this machine's AI governance agent.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about)]
struct Cli {
    /// Address you expect the agent on (default: its runtime file's; it must agree with that file).
    #[arg(long, global = true)]
    addr: Option<String>,
    /// The agent's state directory (default: $AIRLOCK_STATE_DIR, else ~/.local/state/airlock, or
    /// /var/lib/airlock for root or when only it has a running agent).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// The agent's control socket (default: $AIRLOCK_SOCKET, else airlock.sock in the state
    /// directory). Whatever serves it must be the process the state directory's runtime file names.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
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
        /// Also set the SDKs' base-URL variables (OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
        /// GOOGLE_GEMINI_BASE_URL, …) to the agent, for runtimes that cannot be proxied.
        #[arg(long)]
        base_url: bool,
    },
    /// Run a command with its proxy and CA settings pointed at the agent.
    Run {
        /// Also set the SDKs' base-URL variables to the agent (see `airlock env --base-url`).
        #[arg(long)]
        base_url: bool,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// The AI apps this machine talks to (inspected or only seen in tunnels), and the AI tools and
    /// MCP servers configured for you.
    Inventory {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The device CA.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Enroll this device in a fleet: pin its signing keys and where its bundles come from
    /// (writes the daemon's enrollment file; needs root or the daemon's user). --show prints it.
    Enroll(enroll::EnrollArgs),
    /// Leave the fleet: remove the enrollment file (the daemon then runs its own policy).
    Unenroll(enroll::UnenrollArgs),
    /// Requests, tokens and cost from the journal, grouped (your own; root sees everyone's).
    Usage {
        /// What to group by.
        #[arg(long, value_enum, default_value = "model")]
        by: usage::By,
        /// How far back (`30d`, `24h`, `90m`).
        #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "30d")]
        since: std::time::Duration,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Org credentials the agent injects: set (from stdin or a no-echo prompt), list, rm,
    /// fingerprint.
    Credentials {
        #[command(subcommand)]
        action: credentials::CredentialsAction,
    },
    /// Guardrails on files and streams: scan for secrets, personal data, prompt injection and
    /// custom rules with the agent's own engine; list the rules; fingerprint a value.
    Guard {
        #[command(subcommand)]
        action: guard::GuardAction,
    },
    /// The journal: verify its hash chain, export its rows.
    Journal {
        #[command(subcommand)]
        action: journal::JournalAction,
    },
    /// Signed policy bundles: keygen, build, verify, lint, diff (admin commands on files).
    Policy {
        #[command(subcommand)]
        action: policy::PolicyAction,
    },
    /// Trust the device CA in this machine's trust stores (system, NSS, Java) and point new shells
    /// at the agent; shows what it will change and asks unless --yes.
    Setup(setup::SetupArgs),
    /// Undo `airlock setup`: every Airlock CA out of the trust stores, the shell files and desktop
    /// proxy setting it wrote, the service; --purge also deletes the state directory.
    Uninstall(setup::UninstallArgs),
    /// Recent requests, oldest first; -f keeps printing new ones as they finish (like
    /// `kubectl logs -f`). Your own requests; root and the agent's user see everyone's.
    Requests(requests::RequestsArgs),
    /// The local dashboard: live requests, usage charts, budgets, policy and CA status, served on a
    /// random loopback port with a one-time token and opened in your browser.
    Dashboard(dashboard::DashboardArgs),
    /// Check that Airlock works for you — agent, policy, CA trust, this shell's settings, a live
    /// self-test, the clock, AI apps that bypass the agent — and say how to fix what does not.
    Doctor(doctor::DoctorArgs),
    /// Pause interception for a while (AI hosts tunnelled uninspected), when the policy allows it;
    /// journaled with who asked.
    Pause {
        /// How long (default: the longest the policy allows, usually 15).
        #[arg(long)]
        minutes: Option<u32>,
    },
    /// End a pause of interception now.
    Resume,
    /// The tray icon: the agent's state at a glance, today's spend, the last refusal, the dashboard.
    Tray(tray::TrayArgs),
    /// Print shell completions: airlock completions bash > /etc/bash_completion.d/airlock.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write airlock.1 and airlock-<command>.1 here.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CaAction {
    /// Print the path of the CA certificate.
    Path {
        /// Machine-readable output: the certificate, merged bundle and Java trust store paths.
        #[arg(long)]
        json: bool,
    },
    /// Print the CA's name, fingerprint, validity and the domains it may sign for.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the CA certificate (PEM).
    Export,
    /// Which trust stores hold the current CA (system, NSS databases, Java keystores, the merged
    /// bundle), and which still hold old ones.
    TrustStatus {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Replace the CA with a new one covering every host the policy intercepts.
    Rotate {
        /// Policy whose hosts the new CA must cover (default: the verified running agent's, else the
        /// embedded one).
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
            ExitCode::from(e.downcast_ref::<Refused>().map_or(1, Refused::exit_code))
        }
    }
}

/// Where the agent should be, as the user named it.
pub(crate) struct Session {
    state: TrustedState,
    named: Option<client::AgentAddr>,
    socket: Option<PathBuf>,
}

impl Session {
    pub(crate) fn find_agent(&self) -> Result<Agent> {
        trust::find_agent(&self.state, self.named.as_ref(), self.socket.as_deref())
    }

    /// The verified agent, or an error saying it is not running.
    pub(crate) fn verified(&self) -> Result<Verified> {
        match self.find_agent()? {
            Agent::Verified(v) => Ok(*v),
            Agent::NotRunning(n) => bail!("{}", n.message()),
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        // Files only: no agent and no state directory needed (an admin's machine has neither).
        Command::Policy { action }
            if !matches!(
                action,
                policy::PolicyAction::Apply { .. } | policy::PolicyAction::Show { .. }
            ) =>
        {
            return policy::run(action)
        }
        Command::Enroll(args) => return enroll::enroll(args, &DaemonPaths::of(&cli).daemon()),
        Command::Setup(args) => return setup::setup(args, cli.state_dir.as_deref()),
        Command::Uninstall(args) => return setup::uninstall(args, cli.state_dir.as_deref()),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "airlock", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => return man(dir.as_deref()),
        Command::Tray(args) => return tray::run(args, cli.state_dir.as_deref()),
        Command::Credentials {
            action: credentials::CredentialsAction::Fingerprint,
        } => return credentials::fingerprint(),
        Command::Unenroll(args) => return enroll::unenroll(args, &DaemonPaths::of(&cli).daemon()),
        _ => {}
    }
    let paths = DaemonPaths::of(&cli);
    let ctx = Session {
        named: client::named_addr(cli.addr.as_deref())?,
        state: trust::state_dir(cli.state_dir.as_deref())?,
        socket: cli.socket,
    };
    match cli.command {
        Command::Status { json } => status::run(&ctx, json),
        Command::Requests(args) => requests::run(&ctx, &args),
        Command::Dashboard(args) => dashboard::run(&ctx, &args),
        Command::Doctor(args) => doctor::run(&ctx, &args),
        Command::Pause { minutes } => pause::pause(&ctx, minutes),
        Command::Resume => pause::resume(&ctx),
        Command::Env { shell, base_url } => {
            let vars = launch::env_vars(&ctx.verified()?, launch::Options { base_url });
            out!("{}", envvars::render(&vars, &shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { base_url, command } => {
            launch::run(&ctx.verified()?, launch::Options { base_url }, &command)
        }
        Command::Inventory { json } => inventory::run(ctx.find_agent()?, json),
        Command::Ca { action } => ca(&ctx, action),
        Command::Policy {
            action: policy::PolicyAction::Apply { bundle },
        } => policy::apply(&ctx.verified()?, &bundle),
        Command::Policy {
            action: policy::PolicyAction::Show { json },
        } => policy::show(&ctx.verified()?, json),
        Command::Policy { action } => policy::run(&action),
        Command::Journal { action } => journal::run(&action, &ctx.state, ctx.find_agent()),
        Command::Guard { action } => guard::run(&action),
        Command::Credentials { action } => credentials::run(&ctx.verified()?, &action),
        Command::Usage { by, since, json } => usage::run(
            journal::row_source(&ctx.state, ctx.find_agent(), None)?,
            by,
            since,
            json,
        ),
        Command::Enroll(args) => enroll::enroll(&args, &paths.daemon()),
        Command::Unenroll(args) => enroll::unenroll(&args, &paths.daemon()),
        Command::Setup(_)
        | Command::Uninstall(_)
        | Command::Completions { .. }
        | Command::Tray(_)
        | Command::Man { .. } => unreachable_command(),
    }
}

/// Commands answered before the state directory is read never get here.
fn unreachable_command() -> Result<ExitCode> {
    bail!("internal error: command dispatched twice")
}

/// `airlock man`: the page on stdout, or every command's page into `dir`.
fn man(dir: Option<&std::path::Path>) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        out!("{}", String::from_utf8_lossy(&buf));
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, c: clap::Command| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
    };
    for sub in cmd.get_subcommands() {
        let name = format!("airlock-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("airlock", cmd)?;
    Ok(ExitCode::SUCCESS)
}

/// The global flags that locate the daemon, kept for commands that confirm a change with it.
struct DaemonPaths {
    addr: Option<String>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
}

impl DaemonPaths {
    fn of(cli: &Cli) -> DaemonPaths {
        DaemonPaths {
            addr: cli.addr.clone(),
            state_dir: cli.state_dir.clone(),
            socket: cli.socket.clone(),
        }
    }

    fn daemon(&self) -> enroll::Daemon<'_> {
        enroll::Daemon {
            addr: self.addr.as_deref(),
            state_dir: self.state_dir.as_deref(),
            socket: self.socket.as_deref(),
        }
    }
}

fn ca(ctx: &Session, action: CaAction) -> Result<ExitCode> {
    match action {
        CaAction::Path { json } => {
            let ca = trust::ca_files(&ctx.state)?;
            if json {
                let v = serde_json::json!({"cert_path": ca.cert, "bundle_path": ca.bundle,
                                           "java_trust_store_path": ca.java_trust_store});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("{}", ca.cert.display());
            }
        }
        CaAction::Export => {
            let ca = trust::ca_files(&ctx.state)?;
            out!("{}", ca.info.cert_pem);
        }
        CaAction::Show { json } => {
            // The uncovered hosts come from the agent, so it is verified first; the rest is local.
            let uncovered = match ctx.find_agent()? {
                Agent::Verified(v) => status::uncovered_hosts(&v.status),
                Agent::NotRunning(_) => Vec::new(),
            };
            let info = trust::ca_files(&ctx.state)?.info;
            if json {
                let mut v = serde_json::to_value(&info)?;
                v["uncovered_hosts"] = serde_json::json!(uncovered);
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("Subject:      {}", info.subject);
                outln!("Serial:       {}", info.serial);
                outln!("SHA-256:      {}", info.fingerprint_sha256);
                outln!("Valid until:  {}", info.not_after);
                outln!("Certificate:  {}", info.cert_path.display());
                outln!("May sign for: {}", info.permitted_domains.join(", "));
                if !uncovered.is_empty() {
                    outln!(
                        "Not covered:  {} (intercepted by policy; run `airlock ca rotate`)",
                        uncovered.join(", ")
                    );
                }
            }
        }
        CaAction::Rotate { policy } => rotate(ctx, policy)?,
        CaAction::TrustStatus { json } => return setup::trust_status(&ctx.state.dir, json),
    }
    Ok(ExitCode::SUCCESS)
}

/// Rotates the CA. Its name constraints come from `--policy`, else from the verified agent, else
/// (agent down) from the embedded policy; never from something that merely answers on the port.
fn rotate(ctx: &Session, policy: Option<PathBuf>) -> Result<()> {
    let agent = ctx.find_agent()?;
    if let Agent::Verified(v) = &agent {
        // The agent would refuse the reload; refuse before the CA on disk is replaced.
        if !v.may_write() {
            bail!("{}", not_yours("airlock ca rotate", v));
        }
    }
    let domains = match (&policy, &agent) {
        (Some(p), _) => Policy::from_file(p)?.hosts.ca_domains(),
        (None, Agent::Verified(v)) => domains_from_status(&v.status),
        (None, Agent::NotRunning(_)) => Policy::embedded()?.hosts.ca_domains(),
    };
    let ca = CertificateAuthority::rotate(&ctx.state.dir, &domains).map_err(|e| {
        anyhow!(
            "{e}. Rotating needs write access to {}: run as the user that runs airlockd",
            ctx.state.dir.root().display()
        )
    })?;
    let new = ca.info();
    outln!("New device CA: {}", new.subject);
    outln!("SHA-256:       {}", new.fingerprint_sha256);
    outln!("May sign for:  {}", new.permitted_domains.join(", "));
    match &agent {
        Agent::Verified(v) => {
            let after = v.post("/airlock/v1/ca/reload")?;
            let now = after["ca"]["fingerprint_sha256"].as_str().unwrap_or("");
            if trust::same_fingerprint(now, &new.fingerprint_sha256) {
                outln!("The running agent now uses it.");
            } else {
                bail!(
                    "the agent at {} reloaded but presents SHA-256 {now}, not the new CA: restart airlockd",
                    v.addr()
                );
            }
        }
        Agent::NotRunning(_) => outln!("The agent will use it when it starts."),
    }
    outln!(
        "Tools that trusted the old CA must trust the new one: re-run `eval \"$(airlock env)\"` in open shells."
    );
    Ok(())
}

/// Why this user may not change the verified agent: the agent's rule (root or its own user), in the
/// words of the control API's refusal.
fn not_yours(what: &str, v: &Verified) -> String {
    let agent_user = match v.runtime.uid {
        Some(0) | None => "root".to_string(),
        Some(uid) => format!("root or {}", owner::who(uid)),
    };
    let you = owner::current_uid().map_or_else(|| "another user".to_string(), owner::who);
    format!(
        "`{what}` may only be done by {agent_user}, the agent's user; you are {you}. Run it with sudo \
         (`sudo {what}`)"
    )
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
