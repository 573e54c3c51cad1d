//! The device CA on disk: reading and parsing the public certificate, reading the private key after
//! checking that nobody but its owner can read it, writing a new CA with the right modes (key 0600 in a
//! 0700 directory, certificate 0644 in a 0755 directory) and moving a replaced certificate to the retired
//! directory. On load it checks and refuses; it must never silently repair permissions or regenerate a
//! key that exists.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::issue::NewCa;
use super::CaInfo;
use crate::paths::{create_dir_with_mode, mode_of, write_atomic, StateDir};
use crate::{AgentError, Result};

/// Mode of the public CA directory.
pub(crate) const CA_DIR_MODE: u32 = 0o755;
/// Mode of the directory holding the key.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the key file.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of public certificate files.
pub(crate) const CERT_MODE: u32 = 0o644;

/// A CA certificate read from disk, with what the CA needs beyond [`CaInfo`].
pub(crate) struct ParsedCa {
    pub info: CaInfo,
    pub der: CertificateDer<'static>,
    /// The raw DER of the subject name, compared byte for byte with issuers.
    pub subject_raw: Vec<u8>,
    /// The subject public key (uncompressed EC point).
    pub public_key: Vec<u8>,
    pub not_after: OffsetDateTime,
}

/// SHA-256 of `der` as upper-case hex pairs joined by ':'.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `path` exists; errors other than "not found" (e.g. permission denied) are reported.
pub(crate) fn exists(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(AgentError::Ca(format!(
            "cannot look at {} (permission denied): run airlockd as the user that owns the state \
             directory, or choose another one with --state-dir",
            path.display()
        ))),
        Err(e) => Err(AgentError::io("cannot check", path, e)),
    }
}

/// Parses the first certificate in `pem_text` (read from `path`) as an Airlock CA.
pub(crate) fn parse_ca_pem(pem_text: &str, path: &Path) -> Result<ParsedCa> {
    let broken = |what: &str| {
        AgentError::Ca(format!(
            "the CA certificate at {} {what}: restore it from a backup or run `airlock ca rotate` to \
             make a new CA",
            path.display()
        ))
    };
    let block = pem::parse(pem_text).map_err(|_| broken("is not PEM"))?;
    if block.tag() != "CERTIFICATE" {
        return Err(broken("does not hold a CERTIFICATE block"));
    }
    let der = CertificateDer::from(block.into_contents());
    let (_, x509) =
        X509Certificate::from_der(&der).map_err(|_| broken("is not a valid X.509 certificate"))?;
    if !x509.is_ca() {
        return Err(broken("is not a CA certificate"));
    }
    let subject = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut permitted_domains = Vec::new();
    if let Ok(Some(nc)) = x509.name_constraints() {
        for subtree in nc.value.permitted_subtrees.iter().flatten() {
            if let GeneralName::DNSName(d) = subtree.base {
                permitted_domains.push(d.to_ascii_lowercase());
            }
        }
    }
    let not_after = x509.validity().not_after.to_datetime();
    let not_after_text = not_after
        .format(&Rfc3339)
        .map_err(|_| broken("has an unprintable expiry date"))?;
    let info = CaInfo {
        cert_pem: pem_text.to_string(),
        fingerprint_sha256: fingerprint(&der),
        subject,
        serial: hex::encode(x509.raw_serial()),
        permitted_domains,
        not_after: not_after_text,
        cert_path: path.to_path_buf(),
    };
    let subject_raw = x509.subject().as_raw().to_vec();
    let public_key = x509.public_key().subject_public_key.data.to_vec();
    Ok(ParsedCa {
        info,
        der: der.clone(),
        subject_raw,
        public_key,
        not_after,
    })
}

/// Reads and parses the CA certificate in `state`.
pub(crate) fn read_cert(state: &StateDir) -> Result<ParsedCa> {
    let path = state.ca_cert();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(AgentError::Ca(format!(
                "no device CA at {}: start airlockd once (it creates the CA) or run `airlock ca rotate`",
                path.display()
            )))
        }
        Err(e) => return Err(AgentError::io("cannot read the CA certificate", path, e)),
    };
    parse_ca_pem(&text, &path)
}

/// Reads the CA key in `state`, refusing a key file that group or others can access.
pub(crate) fn read_key(state: &StateDir) -> Result<KeyPair> {
    let path = state.ca_key();
    let unreadable = |why: &str| {
        AgentError::Ca(format!(
            "the CA key at {} is unreadable ({why}): run airlockd as the user that owns it, or run \
             `airlock ca rotate` to make a new CA",
            path.display()
        ))
    };
    if let Some(mode) = mode_of(&path) {
        if mode & 0o077 != 0 {
            return Err(AgentError::Ca(format!(
                "the CA key at {p} has mode {mode:04o}, so other users can read it; refusing to use it. \
                 Run `chmod 600 {p}` as its owner (and consider `airlock ca rotate` if it may have been \
                 copied)",
                p = path.display()
            )));
        }
    }
    if let Some(mode) = mode_of(&state.ca_private_dir()) {
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %state.ca_private_dir().display(),
                mode = format!("{mode:04o}"),
                "the CA private directory is accessible to other users; run `chmod 700` on it"
            );
        }
    }
    let pem_text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(AgentError::Ca(format!(
                "the CA key at {} is missing while its certificate exists: run `airlock ca rotate` to \
                 make a new CA (the old certificate is retired so it can be removed from trust stores)",
                path.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(unreadable("permission denied"))
        }
        Err(e) => return Err(AgentError::io("cannot read the CA key", path, e)),
    };
    KeyPair::from_pem(&pem_text).map_err(|_| unreadable("not a PEM private key rcgen can use"))
}

/// Writes a new CA into `state`: directories first, then the key, then the certificate.
pub(crate) fn write_new(state: &StateDir, ca: &NewCa) -> Result<()> {
    create_dir_with_mode(&state.ca_dir(), CA_DIR_MODE)?;
    create_dir_with_mode(&state.ca_private_dir(), PRIVATE_DIR_MODE)?;
    write_atomic(&state.ca_key(), ca.key_pem.as_bytes(), KEY_MODE)?;
    write_atomic(&state.ca_cert(), ca.cert_pem.as_bytes(), CERT_MODE)
}

/// Copies the current certificate (if any) into the retired directory, named by its serial (or its
/// fingerprint when it cannot be parsed). Returns where it went.
pub(crate) fn retire_current(state: &StateDir) -> Result<Option<PathBuf>> {
    let path = state.ca_cert();
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("cannot read the CA certificate", path, e)),
    };
    let name = match std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| parse_ca_pem(t, &path).ok())
    {
        Some(p) => p.info.serial,
        None => format!("unparsed-{}", hex::encode(&Sha256::digest(&bytes)[..8])),
    };
    let dir = state.ca_retired_dir();
    create_dir_with_mode(&dir, CA_DIR_MODE)?;
    let dest = dir.join(format!("{name}.pem"));
    write_atomic(&dest, &bytes, CERT_MODE)?;
    Ok(Some(dest))
}
