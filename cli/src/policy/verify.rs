//! `airlock policy verify` and `airlock policy lint`: the agent's own checks run on an admin's files,
//! so a bundle or a source that passes here is one an agent accepts. They report; they must not
//! change any file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::bundle;
use airlock_agent::policy::Policy;
use anyhow::Result;

/// Exit 0 printing what the bundle is, or 1 printing `refused: <code>: <message>` on stderr.
pub fn verify(path: &Path, pubkeys: &[PathBuf], fleet: Option<&str>) -> Result<ExitCode> {
    let keys = pubkeys
        .iter()
        .map(|p| bundle::read_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = super::read(path, "bundle")?;
    let now = time::OffsetDateTime::now_utc();
    match bundle::verify_with_keys(&bytes, &keys, fleet, now, super::AGENT_VERSION) {
        Ok(v) => {
            outln!(
                "valid: fleet {} version {} signed by {}, expires {}",
                v.payload.fleet,
                v.payload.version,
                v.key_id,
                v.payload.expires_at.as_deref().unwrap_or("never")
            );
            if let Some(p) = &v.policy {
                outln!(
                    "  policy {:?}: {} intercepted hosts; digest sha256:{}",
                    p.name,
                    p.hosts
                        .entries()
                        .iter()
                        .filter(|e| e.local.is_none())
                        .count(),
                    v.digest
                );
            }
            for k in &v.payload.next_keys {
                if let Ok(k) = bundle::PublicKey::from_text(k) {
                    outln!("  rotates trust to key {}", k.id());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Exit 0 with a one-line summary, or 1 with the compiler's error.
pub fn lint(path: &Path) -> Result<ExitCode> {
    match Policy::from_file(path) {
        Ok(p) => {
            let entries = p.hosts.entries();
            let local = entries.iter().filter(|e| e.local.is_some()).count();
            let mut summary = format!("{} intercepted hosts", entries.len() - local);
            if local > 0 {
                summary.push_str(&format!(", {local} local model servers"));
            }
            outln!("{}: valid ({summary}; policy {:?})", path.display(), p.name);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
