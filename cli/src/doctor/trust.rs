//! The `ca` check (the device CA's files are there, in force and cover the intercepted hosts) and the
//! `ca-trust` check (each trust store holds the current CA, read through the installer's
//! `trust_status` as `airlock ca trust-status` does). Also the PEM helpers the other checks share. It
//! must not write any store: fixing is `airlock setup`'s job.

use std::path::Path;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{Check, Status};
use crate::trust::Verified;

/// Whether this process runs as root (it then sees and may change the system stores).
pub fn is_root() -> bool {
    crate::owner::current_uid() == Some(0)
}

/// Every DER certificate in a PEM text (other blocks and garbage skipped).
pub fn pem_certs(text: &[u8]) -> Vec<Vec<u8>> {
    let mut r = text;
    rustls_pemfile::certs(&mut r)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// The validity window of a PEM certificate.
pub fn validity(pem: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let der = pem_certs(pem.as_bytes()).into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = cert.validity();
    Some((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

/// What the `ca` check reads from disk.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The certificate file exists.
    pub cert_present: bool,
    /// The merged bundle exists.
    pub bundle_present: bool,
    /// Its validity window, when it parsed.
    pub validity: Option<(OffsetDateTime, OffsetDateTime)>,
}

impl CaFiles {
    /// Reads the facts for the verified agent.
    pub fn read(v: &Verified) -> CaFiles {
        CaFiles {
            cert_present: v.ca.cert.is_file(),
            bundle_present: v.ca.bundle.is_file(),
            validity: validity(&v.ca.info.cert_pem),
        }
    }
}

fn restart_fix() -> String {
    "airlock ca rotate (a new CA covering every intercepted host), then `airlock setup` to trust it"
        .into()
}

/// The `ca` check from the status JSON and the files, at `now`.
pub fn ca_check(status: &Value, files: &CaFiles, now: OffsetDateTime) -> Check {
    let ca = &status["ca"];
    let uncovered: Vec<&str> = ca["uncovered_hosts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let details = json!({"cert_path": ca["cert_path"], "bundle_path": ca["bundle_path"],
        "serial": ca["serial"], "fingerprint_sha256": ca["fingerprint_sha256"],
        "not_after": ca["not_after"], "uncovered_hosts": uncovered,
        "cert_present": files.cert_present, "bundle_present": files.bundle_present});
    let fail = |summary: String| {
        Check::new("ca", Status::Fail, summary)
            .fix(restart_fix())
            .details(details.clone())
    };
    if !files.cert_present || !files.bundle_present {
        return fail(format!(
            "a device CA file is missing ({} or {})",
            ca["cert_path"].as_str().unwrap_or("?"),
            ca["bundle_path"].as_str().unwrap_or("?")
        ));
    }
    let Some((from, to)) = files.validity else {
        return fail("the device CA certificate cannot be read".into());
    };
    if to <= now {
        return fail(format!("the device CA expired at {to}"));
    }
    if from > now {
        return Check::new(
            "ca",
            Status::Fail,
            format!("the device CA is not valid before {from}: this clock is behind"),
        )
        .fix("set the clock right (timedatectl set-ntp true)")
        .details(details);
    }
    if !uncovered.is_empty() {
        return fail(format!(
            "the device CA may not sign for intercepted hosts {}",
            uncovered.join(", ")
        ));
    }
    Check::new(
        "ca",
        Status::Pass,
        format!(
            "device CA {} valid until {}, covers every intercepted host",
            ca["serial"].as_str().unwrap_or("?"),
            ca["not_after"].as_str().unwrap_or("?")
        ),
    )
    .details(details)
}

/// The trust stores' rows (`airlock ca trust-status --json`'s `stores`), or an error text.
pub fn store_rows(v: &Verified) -> Result<Value, String> {
    let info = &v.ca.info;
    let ca = airlock_installer::Ca::new(&info.cert_pem, &info.serial, &info.fingerprint_sha256)
        .map_err(|e| format!("cannot read the device CA: {e}"))?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let rows = airlock_installer::plan::trust_status(
        is_root(),
        home,
        Some(v.state.dir.merged_bundle()),
        &ca,
    );
    serde_json::to_value(rows).map_err(|e| e.to_string())
}

/// The `ca-trust` check from the store rows; `root` says whether `airlock setup` runs as root.
pub fn trust_check(rows: &Result<Value, String>, root: bool) -> Check {
    let rows = match rows {
        Ok(Value::Array(r)) => r,
        Ok(_) => return Check::new("ca-trust", Status::Skip, "no trust stores found"),
        Err(e) => {
            return Check::new("ca-trust", Status::Fail, e.clone()).fix("airlock setup");
        }
    };
    let mut missing = Vec::new();
    let mut unreadable = Vec::new();
    let mut sudo = false;
    for r in rows {
        let store = r["store"].as_str().unwrap_or("?");
        if r["current"] == true {
            continue;
        }
        if r["current"].is_null() {
            unreadable.push(format!(
                "{store} ({})",
                r["error"].as_str().unwrap_or("cannot check")
            ));
            continue;
        }
        missing.push(store.to_string());
        if r["writable"] != true || r["kind"] == "system" && !root {
            sudo = true;
        }
    }
    let details = json!({"stores": rows});
    if !missing.is_empty() {
        let fix = if sudo && !root {
            "sudo airlock setup --system"
        } else {
            "airlock setup"
        };
        return Check::new(
            "ca-trust",
            Status::Fail,
            format!("the device CA is not trusted in: {}", missing.join("; ")),
        )
        .fix(fix)
        .details(details);
    }
    if !unreadable.is_empty() {
        return Check::new(
            "ca-trust",
            Status::Warn,
            format!(
                "trusted where readable; cannot check {}",
                unreadable.join("; ")
            ),
        )
        .details(details);
    }
    Check::new(
        "ca-trust",
        Status::Pass,
        format!("the device CA is trusted in all {} stores", rows.len()),
    )
    .details(details)
}

/// Whether the PEM file at `path` holds the certificate `der`.
pub fn file_holds(path: &Path, der: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|t| pem_certs(&t).iter().any(|c| c == der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn files() -> CaFiles {
        CaFiles {
            cert_present: true,
            bundle_present: true,
            validity: Some((at("2026-01-01T00:00:00Z"), at("2036-01-01T00:00:00Z"))),
        }
    }

    #[test]
    fn a_good_ca_passes_and_an_expired_one_fails() {
        let s = json!({"ca": {"serial": "ab", "not_after": "2036-01-01T00:00:00Z", "uncovered_hosts": []}});
        assert_eq!(
            ca_check(&s, &files(), at("2026-12-02T00:00:00Z")).status,
            Status::Pass
        );
        let c = ca_check(&s, &files(), at("2037-01-01T00:00:00Z"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("expired"));
    }

    #[test]
    fn uncovered_hosts_fail_with_rotate() {
        let s = json!({"ca": {"uncovered_hosts": ["api.x.ai"]}});
        let c = ca_check(&s, &files(), at("2026-12-02T00:00:00Z"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("api.x.ai"));
        assert!(c.fix.unwrap().starts_with("airlock ca rotate"));
    }

    #[test]
    fn a_missing_file_fails() {
        let f = CaFiles {
            bundle_present: false,
            ..files()
        };
        assert_eq!(
            ca_check(&json!({"ca": {}}), &f, at("2026-12-02T00:00:00Z")).status,
            Status::Fail
        );
    }

    #[test]
    fn a_store_without_the_ca_fails_with_setup() {
        let rows = json!([
            {"kind": "bundle", "store": "merged bundle", "current": true, "stale": [], "writable": false},
            {"kind": "nss", "store": "NSS db ~/.pki/nssdb", "current": false, "stale": [], "writable": true},
        ]);
        let c = trust_check(&Ok(rows.clone()), true);
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("NSS db"));
        assert_eq!(c.fix.as_deref(), Some("airlock setup"));
        let rows = json!([{"kind": "system", "store": "system store", "current": false, "writable": false}]);
        assert_eq!(
            trust_check(&Ok(rows), false).fix.as_deref(),
            Some("sudo airlock setup --system")
        );
    }

    #[test]
    fn every_store_trusting_passes_and_unreadable_warns() {
        let ok = json!([{"kind": "bundle", "store": "b", "current": true, "stale": []}]);
        assert_eq!(trust_check(&Ok(ok), false).status, Status::Pass);
        let odd = json!([{"kind": "java", "store": "j", "error": "no keytool"}]);
        assert_eq!(trust_check(&Ok(odd), false).status, Status::Warn);
    }

    #[test]
    fn pem_blocks_are_found() {
        let t = b"junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certs(t), vec![vec![1u8, 2, 3]]);
    }
}
