//! What `airlock env` prints and `airlock run` starts a command with: the environment of `envvars`,
//! filled in from the verified agent (every path from its state directory, the address from its runtime
//! file, base-URL prefixes from its policy), and the warning `run` gives before it starts a Node too old
//! to be proxied. It owns reading the user's current environment for that; it never talks to the
//! agent beyond what `trust` verified.

use std::process::ExitCode;

use airlock_agent::ca::{TRUST_STORE_PASSWORD, TRUST_STORE_TYPE};
use anyhow::{anyhow, Context, Result};

use crate::trust::Verified;
use crate::{baseurl, envvars, javaopts, nodecheck, userproxy};

/// How the environment points tools at the agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also set each SDK's base-URL variable to the agent's plain-HTTP prefix (`--base-url`).
    pub base_url: bool,
}

/// The environment pointing tools at the verified agent. The user's own proxy, which `HTTPS_PROXY`
/// replaces, is explained on stderr and kept in `AIRLOCK_UPSTREAM_PROXY`.
pub fn env_vars(v: &Verified, opts: Options) -> Vec<(String, String)> {
    let proxy = v.proxy_url();
    let user_proxy = userproxy::detect(|k| std::env::var(k).ok(), v.addr());
    if let Some(user) = &user_proxy {
        let upstream = userproxy::AgentUpstream {
            proxy: v.status["upstream"]["proxy"].as_str(),
            source: v.status["upstream"]["proxy_source"].as_str(),
        };
        eprintln!("{}", userproxy::advice(user, &upstream));
    }
    let existing = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .ok();
    let java_existing = std::env::var(javaopts::VAR).ok();
    let java_trust_store =
        v.ca.java_trust_store
            .as_deref()
            .map(|path| javaopts::TrustStore {
                path,
                kind: TRUST_STORE_TYPE,
                password: TRUST_STORE_PASSWORD,
            });
    if java_trust_store.is_none() {
        eprintln!(
            "airlock: no Java trust store holding the current CA in {}, so JAVA_TOOL_OPTIONS names none and \
             Java will not trust the agent: restart airlockd to write it",
            v.state.dir.ca_dir().display()
        );
    }
    let base_urls = if opts.base_url {
        baseurl::vars(v.addr(), &v.status)
    } else {
        Vec::new()
    };
    envvars::build(envvars::Inputs {
        proxy_url: &proxy,
        proxy_addr: v.addr(),
        bundle: &v.ca.bundle,
        ca_cert: &v.ca.cert,
        existing_no_proxy: existing.as_deref(),
        replaced_proxy: user_proxy.as_ref().map(|u| u.value.as_str()),
        java_trust_store,
        existing_java_tool_options: java_existing.as_deref(),
        base_urls: &base_urls,
    })
}

/// Runs `command` with that environment and passes on its exit code. A Node too old for the proxy
/// gets a one-line warning first (unless base-URL mode is on, which it does not need).
pub fn run(v: &Verified, opts: Options, command: &[String]) -> Result<ExitCode> {
    let vars = env_vars(v, opts);
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("give a command after --"))?;
    if !opts.base_url {
        if let Some(w) = nodecheck::warning(program, std::env::var("PATH").ok().as_deref()) {
            eprintln!("{w}");
        }
    }
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
