//! `airlock credentials set|list|rm|fingerprint`: the org credentials the agent injects. `set NAME`
//! reads the secret from standard input, or from a prompt that does not echo when stdin is a
//! terminal — never from the command line, where every user could read it in the process list —
//! and hands it to the agent over its control socket (root or the agent's user), which keeps it in
//! its credential store. `fingerprint` prints what `allowed_fingerprints` lists for a key. It must
//! not print a secret.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::trust::Verified;

/// `airlock credentials` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CredentialsAction {
    /// Store a secret as NAME in the agent's credential store (read from stdin, or a no-echo
    /// prompt); replaces an earlier one.
    Set {
        /// The name policy refers to (`secret = "NAME"`).
        name: String,
    },
    /// The names the agent holds and when each was set (never the values).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove NAME from the agent's credential store.
    Rm {
        /// The name.
        name: String,
    },
    /// Print the fingerprint of a key read from stdin (or a no-echo prompt), for
    /// `allowed_fingerprints`; needs no agent.
    Fingerprint,
}

/// Reads a secret without echoing it or taking it from argv.
pub fn read_secret(prompt: &str) -> Result<String> {
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).context("cannot read the secret from the terminal")?
    } else {
        let mut s = String::new();
        std::io::stdin()
            .take(64 << 10)
            .read_to_string(&mut s)
            .context("cannot read the secret from standard input")?;
        s
    };
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.trim().is_empty() {
        bail!("no secret given: pipe it in (`printf %s \"$KEY\" | airlock credentials set NAME`) or type it at the prompt");
    }
    Ok(text)
}

/// `airlock credentials fingerprint`.
pub fn fingerprint() -> Result<ExitCode> {
    let key = read_secret("Key: ")?;
    println!("{}", airlock_agent::credentials::fingerprint(&key));
    Ok(ExitCode::SUCCESS)
}

/// The other subcommands, through the verified agent.
pub fn run(agent: &Verified, action: &CredentialsAction) -> Result<ExitCode> {
    match action {
        CredentialsAction::Set { name } => {
            let secret = read_secret(&format!("Secret for {name}: "))?;
            let (status, v) = agent.send(
                "POST",
                &format!("/airlock/v1/credentials/set?name={}", encode(name)),
                secret.as_bytes(),
            )?;
            if status != 200 {
                bail!(
                    "{}",
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("the agent refused to store it")
                );
            }
            println!(
                "set {name} (kept in the agent's {} credential store)",
                v["store"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        CredentialsAction::List { json } => {
            let v = agent.get("/airlock/v1/credentials")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["credentials"].as_array().cloned().unwrap_or_default();
            println!("store: {}", v["store"].as_str().unwrap_or("?"));
            if list.is_empty() {
                println!("no credentials set (airlock credentials set NAME)");
            }
            for c in list {
                println!(
                    "{:<32} set {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["set_at"].as_str().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CredentialsAction::Rm { name } => {
            let (status, v) = agent.send(
                "POST",
                &format!("/airlock/v1/credentials/rm?name={}", encode(name)),
                b"",
            )?;
            if status != 200 {
                bail!(
                    "{}",
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("the agent refused")
                );
            }
            match v["result"].as_str() {
                Some("removed") => println!("removed {name}"),
                _ => println!("{name} was not set"),
            }
            Ok(ExitCode::SUCCESS)
        }
        CredentialsAction::Fingerprint => fingerprint(),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
