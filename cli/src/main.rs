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
mod peer;
mod policy;
mod setup;
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
    Path,
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
struct Session {
    state: TrustedState,
    named: Option<client::AgentAddr>,
    socket: Option<PathBuf>,
}

impl Session {
    fn find_agent(&self) -> Result<Agent> {
        trust::find_agent(&self.state, self.named.as_ref(), self.socket.as_deref())
    }

    /// The verified agent, or an error saying it is not running.
    fn verified(&self) -> Result<Verified> {
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
        Command::Status { json } => status(&ctx, json),
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

fn status(ctx: &Session, json: bool) -> Result<ExitCode> {
    let found = match ctx.find_agent() {
        Ok(found) => found,
        Err(e) => {
            if let (true, Some(r)) = (json, e.downcast_ref::<Refused>()) {
                let v = serde_json::json!({"running": false, "refused": true, "reason": r.message});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            }
            return Err(e);
        }
    };
    let v = match found {
        Agent::Verified(v) => v,
        Agent::NotRunning(n) => {
            if json {
                let v = serde_json::json!({"running": false, "listen": n.target.addr.to_string(),
                                           "control_socket": n.socket.path});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("Airlock agent: not running");
                outln!("  {}", n.message());
            }
            return Ok(ExitCode::from(3));
        }
    };
    let s = &v.status;
    let listen = v.addr();
    if json {
        // Paths and the address are the local ones the agent was verified against, never the answer's.
        let mut out = s.clone();
        out["running"] = Value::Bool(true);
        out["listen"] = Value::String(listen.to_string());
        out["proxy_url"] = Value::String(v.proxy_url());
        out["state_dir"] = serde_json::json!(v.state.dir.root());
        out["control_socket"] = serde_json::json!(v.socket.path);
        out["ca"]["cert_path"] = serde_json::json!(v.ca.cert);
        out["ca"]["bundle_path"] = serde_json::json!(v.ca.bundle);
        out["ca"]["java_trust_store_path"] = serde_json::json!(v.ca.java_trust_store);
        out["verified"] = Value::String(v.how());
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "Airlock agent: running (pid {}, version {}, up {}s)",
        v.runtime.pid,
        s["version"].as_str().unwrap_or("?"),
        s["uptime_secs"]
    );
    let held = if v.runtime.activated() {
        " (sockets held by the service manager)"
    } else {
        ""
    };
    outln!(
        "  Listening:     {listen}  (proxy http://{listen}, PAC http://{listen}/proxy.pac){held}"
    );
    outln!("  Verified:      {}", v.how());
    outln!(
        "  Control:       {} ({})",
        v.socket.path.display(),
        if v.may_write() {
            "you may change the agent"
        } else {
            "you may read it, and see your own requests; changes need root or the agent's user"
        }
    );
    outln!(
        "  Policy:        {} ({})",
        s["policy"]["name"].as_str().unwrap_or("?"),
        s["policy"]["source"].as_str().unwrap_or("?")
    );
    outln!(
        "  Device CA:     {}\n                 SHA-256 {}",
        v.ca.cert.display(),
        v.ca.info.fingerprint_sha256
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
    outln!(
        "  Intercepting:  {} hosts: {}",
        hosts.len(),
        hosts.join(", ")
    );
    if let Some(p) = s["upstream"]["proxy"].as_str() {
        outln!(
            "  Upstream:      through {p} ({})",
            s["upstream"]["proxy_source"].as_str().unwrap_or("?")
        );
    }
    outln!(
        "  Requests:      {} seen, {} in flight",
        s["requests_seen"],
        s["requests_in_flight"]
    );
    if let Some(t) = tunnels_line(s) {
        outln!("{t}");
    }
    out!("{}", limits_lines(s));
    out!("{}", governance_lines(s));
    let uncovered = uncovered_hosts(s);
    if !uncovered.is_empty() {
        outln!(
            "  WARNING: the policy intercepts {} outside the device CA's name constraints, so they are \
             tunnelled uninspected. Run `airlock ca rotate` to make a CA that covers them.",
            uncovered.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Tunnels opened and failed by reason (`airlock status`): "12 opened, 3 failed (dns 1, refused 2)".
fn tunnels_line(s: &Value) -> Option<String> {
    let t = &s["tunnels"];
    let opened = t["opened"].as_u64()?;
    let failed = &t["failed"];
    let total = failed["total"].as_u64().unwrap_or(0);
    let mut line = format!("  Tunnels:       {opened} opened, {total} could not connect");
    if total > 0 {
        let reasons: Vec<String> = failed
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| *k != "total" && v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            })
            .unwrap_or_default();
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    Some(line)
}

/// Bytes as MiB for people.
fn mib(v: &Value) -> String {
    match v.as_u64() {
        Some(b) if b >= 1 << 20 => format!("{} MiB", b >> 20),
        Some(b) => format!("{} KiB", b.div_ceil(1024)),
        None => "?".into(),
    }
}

/// The bounds in force and how close the agent is to them (`airlock status`).
/// Each budget's use, limit and reset, and each rate limit's headroom (`airlock status`).
fn governance_lines(s: &Value) -> String {
    let g = &s["governance"];
    let mut out = String::new();
    for b in g["budgets"].as_array().into_iter().flatten() {
        let mut parts = Vec::new();
        if let Some(l) = b["limit_tokens"].as_u64() {
            parts.push(format!(
                "{} of {l} tokens",
                b["used_tokens"].as_u64().unwrap_or(0)
            ));
        }
        if let Some(l) = b["limit_usd"].as_f64() {
            parts.push(format!(
                "${:.2} of ${l:.2}",
                b["used_usd"].as_f64().unwrap_or(0.0)
            ));
        }
        out.push_str(&format!(
            "  Budget:        {}{} — {} this {}{}\n",
            b["name"].as_str().unwrap_or("?"),
            b["scope"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            parts.join(", "),
            b["window"].as_str().unwrap_or("window"),
            b["resets_at"]
                .as_str()
                .map(|r| format!(", resets {r}"))
                .unwrap_or_default(),
        ));
    }
    for l in g["rate_limits"].as_array().into_iter().flatten() {
        let mut parts = Vec::new();
        if let Some(obj) = l.as_object() {
            for (k, v) in obj {
                if let (Some(used), Some(limit)) = (v["used"].as_u64(), v["limit"].as_u64()) {
                    parts.push(format!("{k} {used}/{limit}"));
                }
            }
        }
        if let Some(c) = l["concurrency"].as_u64() {
            parts.push(format!(
                "in flight {}/{c}",
                l["in_flight"].as_u64().unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "  Rate limit:    {} ({}) — {}\n",
            l["name"].as_str().unwrap_or("?"),
            l["scope"].as_str().unwrap_or(""),
            parts.join(", ")
        ));
    }
    out
}

fn limits_lines(s: &Value) -> String {
    let l = &s["limits"];
    if l.is_null() {
        return String::new();
    }
    let mut out = format!(
        "  Limits:        request body {} MiB, buffered bodies {} of {}, connections {} of {}\n",
        l["max_request_body_mib"],
        mib(&s["buffered_request_bytes"]["in_use"]),
        mib(&s["buffered_request_bytes"]["max"]),
        s["connections"]["open"],
        s["connections"]["max"],
    );
    out.push_str(&format!(
        "                 timeouts: headers {} s, TLS handshake {} s, provider response {} s, stream idle {} s\n",
        l["header_read_timeout_secs"],
        l["tls_handshake_timeout_secs"],
        l["response_header_timeout_secs"],
        l["stream_idle_timeout_secs"],
    ));
    let j = &s["journal"];
    if !j.is_null() {
        out.push_str(&format!(
            "  Journal:       {} ({}, {} rows, sync {})\n",
            j["path"].as_str().unwrap_or("?"),
            mib(&j["bytes"]),
            j["head_seq"],
            j["sync"].as_str().unwrap_or("?"),
        ));
        let failed = j["failed_commits"].as_u64().unwrap_or(0);
        if failed > 0 || j["retrying"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "  WARNING: {failed} journal commits failed ({}); finished records are kept and retried, \
                 new requests are refused until it can write. Free disk space in the state directory\n",
                j["last_error"].as_str().unwrap_or("unknown error"),
            ));
        }
        if j["lost"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "  WARNING: {} journal rows could not be written at all\n",
                j["lost"]
            ));
        }
    }
    out
}

fn uncovered_hosts(s: &Value) -> Vec<String> {
    s["ca"]["uncovered_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn ca(ctx: &Session, action: CaAction) -> Result<ExitCode> {
    match action {
        CaAction::Path => {
            let ca = trust::ca_files(&ctx.state)?;
            outln!("{}", ca.cert.display());
        }
        CaAction::Export => {
            let ca = trust::ca_files(&ctx.state)?;
            out!("{}", ca.info.cert_pem);
        }
        CaAction::Show { json } => {
            // The uncovered hosts come from the agent, so it is verified first; the rest is local.
            let uncovered = match ctx.find_agent()? {
                Agent::Verified(v) => uncovered_hosts(&v.status),
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
    fn status_counts_failed_tunnels_by_reason() {
        let s = serde_json::json!({"tunnels": {"opened": 12, "failed": {
            "dns": 1, "refused": 2, "timeout": 0, "unreachable": 0, "proxy_refused": 0, "other": 0, "total": 3}}});
        assert_eq!(
            tunnels_line(&s).unwrap(),
            "  Tunnels:       12 opened, 3 could not connect (dns 1, refused 2)"
        );
        let none = serde_json::json!({"tunnels": {"opened": 0, "failed": {"total": 0}}});
        assert_eq!(
            tunnels_line(&none).unwrap(),
            "  Tunnels:       0 opened, 0 could not connect"
        );
        assert_eq!(tunnels_line(&serde_json::json!({})), None, "an older agent");
    }

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

    #[test]
    fn status_shows_the_limits_and_warns_about_a_failing_journal() {
        let s = serde_json::json!({
            "limits": {"max_request_body_mib": 64, "header_read_timeout_secs": 10,
                       "tls_handshake_timeout_secs": 10, "response_header_timeout_secs": 600,
                       "stream_idle_timeout_secs": 300},
            "buffered_request_bytes": {"in_use": 3 << 20, "max": 512u64 << 20},
            "connections": {"open": 7, "max": 10000},
            "journal": {"path": "/s/journal.db", "bytes": 1u64 << 20, "head_seq": 42, "sync": "normal",
                        "failed_commits": 2, "retrying": 1, "lost": 0, "last_error": "database or disk is full"},
        });
        let out = limits_lines(&s);
        assert!(
            out.contains(
                "request body 64 MiB, buffered bodies 3 MiB of 512 MiB, connections 7 of 10000"
            ),
            "{out}"
        );
        assert!(out.contains("stream idle 300 s"), "{out}");
        assert!(
            out.contains("/s/journal.db (1 MiB, 42 rows, sync normal)"),
            "{out}"
        );
        assert!(
            out.contains("2 journal commits failed (database or disk is full)"),
            "{out}"
        );
        assert!(!out.contains("could not be written at all"), "{out}");
        assert_eq!(limits_lines(&serde_json::json!({})), "");
    }
}
