//! `airlock policy verify` and `airlock policy lint`: the agent's own checks run on an admin's files,
//! so a bundle or a source that passes here is one an agent accepts. They report; they must not
//! change any file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::bundle;
use airlock_agent::policy::Policy;
use anyhow::Result;

/// Exit 0 printing what the bundle is, or 1 printing `refused: <code>: <message>` on stderr; with
/// `json`, `{"valid": true, …}` or `{"valid": false, "reason", "message"}` on stdout.
pub fn verify(
    path: &Path,
    pubkeys: &[PathBuf],
    fleet: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let keys = pubkeys
        .iter()
        .map(|p| bundle::read_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = super::read(path, "bundle")?;
    let now = time::OffsetDateTime::now_utc();
    match bundle::verify_with_keys(&bytes, &keys, fleet, now, super::AGENT_VERSION) {
        Ok(v) if json => {
            let policy = v.policy.as_ref().map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "intercepted_hosts": p.hosts.entries().iter().filter(|e| e.local.is_none()).count(),
                })
            });
            let next: Vec<String> = v
                .payload
                .next_keys
                .iter()
                .filter_map(|k| bundle::PublicKey::from_text(k).ok())
                .map(|k| k.id().to_string())
                .collect();
            let out = serde_json::json!({
                "valid": true,
                "fleet": v.payload.fleet,
                "version": v.payload.version,
                "key_id": v.key_id,
                "expires_at": v.payload.expires_at,
                "digest": format!("sha256:{}", v.digest),
                "policy": policy,
                "next_keys": next,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) if json => {
            let out = serde_json::json!({
                "valid": false,
                "reason": refusal.reason.code(),
                "message": refusal.message,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::from(1))
        }
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

/// Exit 0 with a one-line summary, or 1 with the compiler's error; with `json`, `{"valid": …}` on
/// stdout either way.
pub fn lint(path: &Path, json: bool) -> Result<ExitCode> {
    if json {
        let out = match Policy::from_file(path) {
            Ok(p) => {
                let entries = p.hosts.entries();
                let local = entries.iter().filter(|e| e.local.is_some()).count();
                serde_json::json!({"valid": true, "file": path, "policy": p.name,
                                   "intercepted_hosts": entries.len() - local, "local_model_servers": local})
            }
            Err(e) => serde_json::json!({"valid": false, "file": path, "error": e.to_string()}),
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::from(if out["valid"] == true { 0 } else { 1 }));
    }
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
