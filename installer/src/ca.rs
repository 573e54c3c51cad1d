//! The device CA as the trust stores see it: its PEM, the base64 body stores are compared on, and the
//! names every installed copy carries. Every copy is named after the CA's serial (mkcert's rule), so
//! CAs of different rotations coexist while both are wanted and the right ones are removed; anything
//! named with the Airlock prefix is ours to remove. It owns those names; it never reads the CA key.

use std::io::Write;
use std::path::Path;

use crate::error::{InstallerError, Result};

/// The prefix of every file name and keystore alias the installer writes.
pub const FILE_PREFIX: &str = "airlock-";
/// The prefix of every NSS nickname the installer writes.
pub const NICK_PREFIX: &str = "Airlock device CA ";

/// A device CA certificate to trust (public parts only).
#[derive(Debug, Clone)]
pub struct Ca {
    pem: String,
    body: String,
    serial: String,
    fingerprint_sha256: String,
}

impl Ca {
    /// The CA from its PEM, its serial (hex) and its SHA-256 fingerprint (hex pairs, any case and
    /// separator).
    pub fn new(pem: &str, serial: &str, fingerprint_sha256: &str) -> Result<Ca> {
        let body = pem_body(pem)
            .ok_or_else(|| InstallerError::BadCertificate("no CERTIFICATE block".into()))?;
        let serial: String = serial
            .chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if serial.is_empty() {
            return Err(InstallerError::BadCertificate("empty serial".into()));
        }
        Ok(Ca {
            pem: pem.trim().to_string() + "\n",
            body,
            serial,
            fingerprint_sha256: fingerprint_digits(fingerprint_sha256),
        })
    }

    /// The certificate, PEM, ending in a newline.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The serial in the names: its first 16 hex digits.
    pub fn short_serial(&self) -> &str {
        &self.serial[..self.serial.len().min(16)]
    }

    /// The name of files and keystore aliases: `airlock-<serial>`.
    pub fn file_name(&self) -> String {
        format!("{FILE_PREFIX}{}", self.short_serial())
    }

    /// The NSS nickname: `Airlock device CA <serial>`.
    pub fn nickname(&self) -> String {
        format!("{NICK_PREFIX}{}", self.short_serial())
    }

    /// Runs `f` with the certificate in a fresh temporary file ending in `.{ext}` (for the tools that
    /// read one), removed afterwards whatever `f` returns.
    pub fn with_file<T>(&self, ext: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let dir = std::env::temp_dir();
        let mut file = tempfile::Builder::new()
            .prefix(&format!("{}-", self.file_name()))
            .suffix(&format!(".{ext}"))
            .tempfile_in(&dir)
            .map_err(|e| InstallerError::io("create a temporary file in", &dir, e))?;
        file.write_all(self.pem().as_bytes())
            .map_err(|e| InstallerError::io("write", file.path(), e))?;
        f(file.path())
    }

    /// Whether `pem` (one or more certificates) holds this certificate.
    pub fn is_in(&self, pem: &str) -> bool {
        pem_bodies(pem).contains(&self.body)
    }

    /// Whether `fingerprint` (as `keytool` or `security` print it) is this certificate's SHA-256.
    pub fn has_fingerprint(&self, fingerprint: &str) -> bool {
        fingerprint_digits(fingerprint) == self.fingerprint_sha256
    }
}

/// Upper-case hex digits of a fingerprint, separators dropped.
fn fingerprint_digits(f: &str) -> String {
    f.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The base64 body of the first CERTIFICATE block, whitespace removed.
fn pem_body(pem: &str) -> Option<String> {
    pem_bodies(pem).into_iter().next()
}

/// The base64 bodies of every CERTIFICATE block in `pem`, whitespace removed.
fn pem_bodies(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(end) = after.find(END) else { break };
        let body: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !body.is_empty() {
            out.push(body);
        }
        rest = &after[end + END.len()..];
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX2\nabc=\n-----END CERTIFICATE-----\n";

    pub(crate) fn ca() -> Ca {
        Ca::new(PEM, "5F:2A:99:01:23:45:67:89:AB:CD:EF:00:11", "aa:bb:cc").unwrap()
    }

    #[test]
    fn names_carry_the_serial() {
        let ca = ca();
        assert_eq!(ca.file_name(), "airlock-5f2a990123456789");
        assert_eq!(ca.nickname(), "Airlock device CA 5f2a990123456789");
    }

    #[test]
    fn a_bundle_holds_the_ca_whatever_its_line_breaks() {
        let ca = ca();
        let bundle = "-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\r\nMIIBszCCAVmgAwIBAgIUX2abc=\r\n-----END CERTIFICATE-----\r\n";
        assert!(ca.is_in(bundle));
        assert!(!ca.is_in("-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n"));
        assert!(ca.has_fingerprint("AA:BB:CC"));
        assert!(ca.has_fingerprint("aabbcc"));
        assert!(!ca.has_fingerprint("AA:BB:CD"));
        assert!(Ca::new("not a pem", "01", "aa").is_err());
    }
}
