//! `airlock setup`, `airlock uninstall` and `airlock ca trust-status`: which agent's CA and address
//! they work for (the system agent's state directory, or for `--user` the system agent's if there is
//! one, else the user's own), making that CA first if it does not exist (`airlockd --init`, as the
//! service's user), the environment new shells get (the same variables `airlock env` prints), the
//! plan shown and confirmed before anything changes, and the report after. The changes themselves are
//! the `airlock-installer` crate's; this module owns the choices and the words.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::ca::{CaInfo, TRUST_STORE_PASSWORD, TRUST_STORE_TYPE};
use airlock_agent::paths::{StateDir, DEFAULT_LISTEN, SYSTEM_STATE_DIR};
use airlock_installer::env::EnvText;
use airlock_installer::manifest::Manifest;
use airlock_installer::plan::{self, Scope, Setup, Uninstall};
use airlock_installer::stores::Kind;
use airlock_installer::{cmd, Ca};
use anyhow::{anyhow, bail, Context, Result};

use crate::{envvars, javaopts};

/// The service account the packages create.
pub const SERVICE_USER: &str = "airlock";

/// The flags `setup` and `uninstall` share: for whom, whether to ask, and the agent's address.
#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// System-wide: the system trust store, Java, /etc/profile.d (the default as root).
    #[arg(long, conflicts_with = "user")]
    system: bool,
    /// For your account only, without root: your NSS databases (Chromium, Firefox), your shells'
    /// rc files, fish and environment.d (the default for other users).
    #[arg(long)]
    user: bool,
    /// Do it without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The agent's proxy address: what new shells are pointed at, and whose PAC URL the desktop
    /// setting holds.
    #[arg(long, env = "AIRLOCK_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
}

impl ScopeArgs {
    /// System or user: as asked, else by who runs it.
    fn scope(&self) -> Result<Scope> {
        match (self.system, self.user) {
            (true, _) if !is_root() => bail!(
                "`--system` changes the machine's trust stores and /etc: run it as root (`sudo airlock setup --system`), \
                 or use `--user` for your account alone"
            ),
            (true, _) => Ok(Scope::System),
            (_, true) => Ok(Scope::User),
            _ if is_root() => Ok(Scope::System),
            _ => Ok(Scope::User),
        }
    }

    fn pac_url(&self) -> String {
        format!("http://{}/proxy.pac", self.listen)
    }
}

/// `airlock setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    #[command(flatten)]
    common: ScopeArgs,
    /// Also point the desktop's automatic proxy setting (GNOME, macOS, Windows) at the agent's PAC
    /// file; uninstall puts the previous setting back.
    #[arg(long)]
    desktop_proxy: bool,
    /// Only these trust stores (comma-separated: system, nss, java).
    #[arg(long, value_delimiter = ',', value_parser = ["system", "nss", "java"])]
    only: Option<Vec<String>>,
    /// Leave shell startup files alone.
    #[arg(long)]
    no_env: bool,
}

/// `airlock uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    common: ScopeArgs,
    /// Also delete the agent's state directory: the device CA, the journal, stored credentials.
    #[arg(long)]
    purge: bool,
}

fn is_root() -> bool {
    crate::owner::current_uid() == Some(0)
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The agent whose CA is trusted: `--state-dir`, else the system agent's for `--system`; for
/// `--user`, the system agent's when it has a CA, else the user's own.
fn target_state(scope: Scope, explicit: Option<&Path>) -> Result<StateDir> {
    if let Some(p) = explicit {
        return Ok(StateDir::new(p));
    }
    let system = StateDir::new(SYSTEM_STATE_DIR);
    match scope {
        Scope::System => Ok(system),
        Scope::User if system.ca_cert().is_file() => Ok(system),
        // The user's own agent: $AIRLOCK_STATE_DIR, else the XDG state folder (root included: a
        // root `--user` setup is for root's account, not the system agent).
        Scope::User => {
            match std::env::var_os(airlock_agent::paths::STATE_DIR_ENV).filter(|v| !v.is_empty()) {
                Some(p) => Ok(StateDir::new(PathBuf::from(p))),
                None => Ok(StateDir::new(xdg_state()?.join("airlock"))),
            }
        }
    }
}

/// Where setup keeps what it changed: the state directory for the system, the user's XDG state
/// folder for a user (whichever agent they point at).
fn manifest_path(scope: Scope, state: &StateDir) -> Result<PathBuf> {
    match scope {
        Scope::System => Ok(state.root().join("setup.json")),
        Scope::User => Ok(xdg_state()?.join("airlock/setup-user.json")),
    }
}

/// `$XDG_STATE_HOME`, else `~/.local/state`.
fn xdg_state() -> Result<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local/state")))
        .ok_or_else(|| anyhow!("HOME is not set, so there is no place for your setup: set HOME"))
}

/// `airlockd`: beside this `airlock`, else on PATH.
fn airlockd() -> Result<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("airlockd")))
        .filter(|p| p.is_file())
        .or_else(|| cmd::find("airlockd"))
        .ok_or_else(|| {
            anyhow!("cannot find airlockd beside airlock or on PATH; install the airlock package")
        })
}

/// Makes the state directory and CA if they are not there, as the service's user when root sets
/// up the system agent.
fn ensure_ca(scope: Scope, state: &StateDir) -> Result<CaInfo> {
    if let Ok(info) = CaInfo::read(state) {
        return Ok(info);
    }
    let daemon = airlockd()?;
    let dir = state.root().display().to_string();
    let service_user = (scope == Scope::System && is_root())
        .then(|| crate::owner::account(SERVICE_USER))
        .flatten();
    let out = match service_user {
        Some((uid, gid)) => {
            if !state.root().exists() {
                crate::owner::create_owned_dir(state.root(), uid, gid)
                    .with_context(|| format!("cannot create {dir} for the {SERVICE_USER} user"))?;
            }
            let runuser = cmd::require("runuser", "the agent's state", "util-linux")?;
            std::process::Command::new(runuser)
                .args(["-u", SERVICE_USER, "--"])
                .arg(&daemon)
                .args(["--init", "--state-dir", &dir])
                .env_remove("AIRLOCK_STATE_DIR")
                .output()
        }
        None => std::process::Command::new(&daemon)
            .args(["--init", "--state-dir", &dir])
            .output(),
    }
    .with_context(|| format!("cannot run {}", daemon.display()))?;
    if !out.status.success() {
        bail!(
            "`airlockd --init --state-dir {dir}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    CaInfo::read(state).map_err(|e| anyhow!("{e}"))
}

/// What `airlock env` would print for the agent at `state` listening on `listen`.
fn env_text(state: &StateDir, listen: SocketAddr) -> EnvText {
    let proxy = format!("http://{listen}");
    let java = state.java_trust_store();
    let java_store = java.is_file().then(|| javaopts::TrustStore {
        path: &java,
        kind: TRUST_STORE_TYPE,
        password: TRUST_STORE_PASSWORD,
    });
    let vars = envvars::build(envvars::Inputs {
        proxy_url: &proxy,
        proxy_addr: listen,
        bundle: &state.merged_bundle(),
        ca_cert: &state.ca_cert(),
        existing_no_proxy: None,
        replaced_proxy: None,
        java_trust_store: java_store,
        existing_java_tool_options: None,
        base_urls: &[],
    });
    EnvText {
        posix: envvars::render(&vars, "posix"),
        fish: envvars::render(&vars, "fish"),
        vars,
    }
}

fn installer_ca(info: &CaInfo) -> Result<Ca> {
    Ok(Ca::new(
        &info.cert_pem,
        &info.serial,
        &info.fingerprint_sha256,
    )?)
}

/// Asks on the terminal; without one, `--yes` is required.
fn confirm(what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{what} needs confirmation and there is no terminal to ask on: run it again with --yes"
        );
    }
    eprint!("Go ahead? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}

fn report(out: &plan::Outcome) {
    for (ok, line) in &out.steps {
        outln!("  {}: {line}", if *ok { "done" } else { "FAILED" });
    }
}

/// `airlock setup`.
pub fn setup(args: &SetupArgs, state_dir: Option<&Path>) -> Result<ExitCode> {
    let scope = args.common.scope()?;
    if args.desktop_proxy && airlock_installer::desktop::backend().is_none() {
        bail!("--desktop-proxy: no desktop proxy setting found (gsettings, networksetup or reg.exe); leave the flag off");
    }
    let state = target_state(scope, state_dir)?;
    let manifest = manifest_path(scope, &state)?;
    let only = args.only.as_ref().map(|o| {
        o.iter()
            .map(|w| match w.as_str() {
                "system" => Kind::System,
                "nss" => Kind::Nss,
                _ => Kind::Java,
            })
            .collect::<Vec<_>>()
    });
    let fresh = !state.ca_cert().is_file();
    // Folders this setup brings into being (the user's state folder on a first run): uninstall
    // takes them away again when they are empty.
    let created_before = manifest
        .parent()
        .map(airlock_installer::fsutil::missing_dirs)
        .unwrap_or_default();
    let info = ensure_ca(scope, &state)?;
    let ca = installer_ca(&info)?;
    let setup = Setup {
        scope,
        home: home(),
        shell: std::env::var("SHELL").ok(),
        bundle: Some(state.merged_bundle()),
        env: (!args.no_env).then(|| env_text(&state, args.common.listen)),
        pac_url: args.desktop_proxy.then(|| args.common.pac_url()),
        only,
    };
    let plan = plan::plan_setup(&setup);
    outln!(
        "airlock setup ({}) for the agent in {} (device CA {}{}, SHA-256 {}):",
        scope.word(),
        state.root().display(),
        info.serial,
        if fresh { ", just made" } else { "" },
        info.fingerprint_sha256
    );
    for s in &plan.steps {
        outln!("  - {}", s.describe());
    }
    for l in &plan.left {
        outln!("  (left alone: {l})");
    }
    if plan.steps.is_empty() {
        outln!("Nothing to change.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.common.yes && !confirm("airlock setup")? {
        outln!("Nothing changed.");
        return Ok(ExitCode::from(1));
    }
    let out = plan::apply_setup(plan, scope, &ca, &manifest, created_before)?;
    report(&out);
    if out.failures() > 0 {
        eprintln!(
            "airlock: {} of the changes failed (above); fix what each says and run `airlock setup` again — what \
             succeeded is recorded in {} and `airlock uninstall` removes it",
            out.failures(),
            manifest.display()
        );
        return Ok(ExitCode::from(1));
    }
    outln!("Done. New shells go through the agent; in this one run: eval \"$(airlock env)\"");
    outln!("Restart browsers (Chromium, Firefox) so they read their NSS databases again.");
    Ok(ExitCode::SUCCESS)
}

/// `airlock uninstall`.
pub fn uninstall(args: &UninstallArgs, state_dir: Option<&Path>) -> Result<ExitCode> {
    let scope = args.common.scope()?;
    let state = target_state(scope, state_dir)?;
    let manifest_file = manifest_path(scope, &state)?;
    let manifest = Manifest::load(&manifest_file)?;
    let purge = match (args.purge, scope) {
        (false, _) => None,
        (true, Scope::System) => Some(state.root().to_path_buf()),
        // A user purges only their own agent's state, never the system agent's.
        (true, Scope::User) if state.root() != Path::new(SYSTEM_STATE_DIR) => {
            Some(state.root().to_path_buf())
        }
        (true, Scope::User) => bail!(
            "--purge would delete the system agent's state in {SYSTEM_STATE_DIR}: that takes `sudo airlock uninstall --purge`"
        ),
    };
    let u = Uninstall {
        scope,
        home: home(),
        purge,
    };
    let steps = plan::plan_uninstall(&u, manifest.as_ref());
    let service = if scope == Scope::System {
        running_service()
    } else {
        None
    };
    outln!("airlock uninstall ({}):", scope.word());
    if let Some(s) = &service {
        outln!("  - stop and disable {s}");
    }
    for s in &steps {
        outln!("  - {}", s.describe());
    }
    if steps.is_empty() && service.is_none() {
        // Nothing found: the manifest (if any) goes too.
        let _ = airlock_installer::fsutil::remove_file(&manifest_file);
        outln!("Nothing of Airlock's is installed here.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.common.yes && !confirm("airlock uninstall")? {
        outln!("Nothing changed.");
        return Ok(ExitCode::from(1));
    }
    if let Some(s) = &service {
        stop_service(s);
    }
    let out = plan::apply_uninstall(steps, &manifest_file, Some(&args.common.pac_url()))?;
    report(&out);
    if out.failures() > 0 {
        eprintln!(
            "airlock: {} removals failed (above); fix what each says and run `airlock uninstall` again",
            out.failures()
        );
        return Ok(ExitCode::from(1));
    }
    outln!("Done. Open shells keep their variables until they exit: `unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy`.");
    Ok(ExitCode::SUCCESS)
}

/// The systemd units to stop, when systemd runs this machine and they are loaded.
fn running_service() -> Option<String> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let systemctl = cmd::find("systemctl")?;
    let (_, out) = cmd::output(&systemctl, ["is-enabled", "airlockd.service"]).ok()?;
    out.status
        .success()
        .then(|| "airlockd.service and airlockd.socket".to_string())
}

fn stop_service(what: &str) {
    if let Some(systemctl) = cmd::find("systemctl") {
        match cmd::run(
            &systemctl,
            ["disable", "--now", "airlockd.socket", "airlockd.service"],
        ) {
            Ok(_) => outln!("  done: stop and disable {what}"),
            Err(e) => outln!("  FAILED: stop and disable {what}: {e}"),
        }
    }
}

/// `airlock ca trust-status`.
pub fn trust_status(state: &StateDir, json: bool) -> Result<ExitCode> {
    let info = CaInfo::read(state).map_err(|e| {
        anyhow!("{e}; there is no device CA yet: start airlockd or run `airlock setup`")
    })?;
    let ca = installer_ca(&info)?;
    let rows = plan::trust_status(is_root(), home(), Some(state.merged_bundle()), &ca);
    if json {
        let v = serde_json::json!({
            "ca": {"serial": info.serial, "fingerprint_sha256": info.fingerprint_sha256,
                   "cert_path": info.cert_path},
            "stores": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "Device CA {} (SHA-256 {})",
        info.serial,
        info.fingerprint_sha256
    );
    for r in &rows {
        let state = match (&r.holding, &r.error) {
            (Some(h), _) if h.current && h.stale.is_empty() => "trusted".to_string(),
            (Some(h), _) if h.current => {
                format!("trusted; also holds old Airlock CAs {}", h.stale.join(", "))
            }
            (Some(h), _) if !h.stale.is_empty() => format!(
                "NOT trusted (holds only old Airlock CAs {}): run `airlock setup`",
                h.stale.join(", ")
            ),
            (Some(_), _) => format!(
                "NOT trusted: run `{}airlock setup{}`",
                if r.writable { "" } else { "sudo " },
                if r.writable && !is_root() {
                    " --user"
                } else {
                    ""
                }
            ),
            (None, Some(e)) => format!("cannot check: {e}"),
            (None, None) => "cannot check".into(),
        };
        outln!("  {:<8} {state}\n           {}", r.kind.word(), r.store);
    }
    Ok(ExitCode::SUCCESS)
}
