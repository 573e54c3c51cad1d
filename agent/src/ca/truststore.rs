//! The Java trust store: a PKCS#12 file holding the platform's root certificates and this device's
//! Airlock CA as trusted-certificate entries (the ones `keytool -importcert` makes), for JVMs, which read
//! no CA environment variable and take their roots only from `-Djavax.net.ssl.trustStore`. It is written
//! next to the merged PEM bundle from the same roots, and rewritten with it whenever the CA changes. It
//! owns only that file and the check that a file still holds a given CA; it must not hold a private key,
//! install anything into the JDK's own `cacerts`, or set environment variables (the CLI does).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
use rustls_pki_types::CertificateDer;

use super::store::{CA_DIR_MODE, CERT_MODE};
use super::CaInfo;
use crate::paths::{create_dir_with_mode, write_atomic, StateDir};
use crate::{AgentError, Result};

/// The store's password. PKCS#12 files as Java and the crate write them always carry one (it keys the
/// integrity MAC), and a JVM given no `javax.net.ssl.trustStorePassword` skips the encrypted
/// certificates, so it trusts nothing. The file holds only public certificates, so the password
/// protects nothing secret: it is the JDK's own well-known `cacerts` password, printed by `airlock env`.
pub const TRUST_STORE_PASSWORD: &str = "changeit";

/// The `javax.net.ssl.trustStoreType` of the file.
pub const TRUST_STORE_TYPE: &str = "PKCS12";

/// The alias of the device CA in the store (`keytool -list` shows it).
pub const CA_ALIAS: &str = "airlock-device-ca";

/// Writes `state.java_trust_store()` (mode 0644): `roots`, then `ca`'s certificate.
pub(crate) fn write(
    state: &StateDir,
    roots: &[CertificateDer<'_>],
    ca: &CaInfo,
) -> Result<PathBuf> {
    let bytes = encode(roots, &ca_der(ca)?)?;
    let path = state.java_trust_store();
    create_dir_with_mode(&state.ca_dir(), CA_DIR_MODE)?;
    write_atomic(&path, &bytes, CERT_MODE)?;
    tracing::info!(path = %path.display(), roots = roots.len(), "wrote the Java trust store");
    Ok(path)
}

/// The PKCS#12 bytes: every distinct root as `system-root-NNN`, and the CA as [`CA_ALIAS`].
pub(crate) fn encode(roots: &[CertificateDer<'_>], ca_der: &[u8]) -> Result<Vec<u8>> {
    let mut store = KeyStore::new();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    seen.insert(ca_der);
    for der in roots {
        if !seen.insert(der.as_ref()) {
            continue;
        }
        // A root the crate cannot parse is one no JVM could use either; leave it out.
        match Certificate::from_der(der.as_ref()) {
            Ok(cert) => store.add_entry(
                &format!("system-root-{:03}", seen.len() - 1),
                KeyStoreEntry::Certificate(cert),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "left an unparsable root out of the Java trust store")
            }
        }
    }
    let ca = Certificate::from_der(ca_der).map_err(|e| {
        AgentError::Ca(format!(
            "cannot put the device CA into the Java trust store ({e}); run `airlock ca rotate`"
        ))
    })?;
    store.add_entry(CA_ALIAS, KeyStoreEntry::Certificate(ca));
    store.writer(TRUST_STORE_PASSWORD).write().map_err(|e| {
        AgentError::Ca(format!(
            "cannot encode the Java trust store ({e}); please report this"
        ))
    })
}

/// Whether the PKCS#12 file at `path` opens with [`TRUST_STORE_PASSWORD`] and trusts `ca` (a file left
/// from before a rotation does not, and would make Java reject the agent's certificates).
pub fn trust_store_holds(path: &Path, ca: &CaInfo) -> bool {
    let (Ok(bytes), Ok(der)) = (std::fs::read(path), ca_der(ca)) else {
        return false;
    };
    match KeyStore::from_pkcs12(&bytes, TRUST_STORE_PASSWORD, Pkcs12ImportPolicy::Strict) {
        Ok(store) => store.entries().any(|(_, entry)| {
            matches!(entry, KeyStoreEntry::Certificate(c) if c.as_der() == der.as_slice())
        }),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "the Java trust store does not open");
            false
        }
    }
}

/// The DER of `ca`'s certificate.
fn ca_der(ca: &CaInfo) -> Result<Vec<u8>> {
    pem::parse(&ca.cert_pem)
        .map(|p| p.into_contents())
        .map_err(|e| {
            AgentError::Ca(format!(
                "the device CA certificate at {} is not PEM ({e}); run `airlock ca rotate`",
                ca.cert_path.display()
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ca::CertificateAuthority;

    fn ca_in(dir: &Path) -> (StateDir, CaInfo) {
        let state = StateDir::new(dir.join("state"));
        let ca =
            CertificateAuthority::load_or_create(&state, &["api.openai.com".to_string()]).unwrap();
        (state, ca.info().clone())
    }

    fn der_of(info: &CaInfo) -> Vec<u8> {
        pem::parse(&info.cert_pem).unwrap().into_contents()
    }

    /// (alias, DER) of every trusted certificate Java would see in `bytes`.
    fn trusted(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let store =
            KeyStore::from_pkcs12(bytes, TRUST_STORE_PASSWORD, Pkcs12ImportPolicy::Strict).unwrap();
        store
            .entries()
            .map(|(alias, e)| match e {
                KeyStoreEntry::Certificate(c) => (alias.clone(), c.as_der().to_vec()),
                other => panic!("a trust store holds only certificates, found {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_store_trusts_each_root_once_and_the_device_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ca) = ca_in(dir.path());
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        let ca_der = der_of(&ca);
        // A duplicate root and the CA itself among the roots (an older bundle as SSL_CERT_FILE).
        let roots = vec![
            a.cert.der().clone(),
            b.cert.der().clone(),
            a.cert.der().clone(),
            CertificateDer::from(ca_der.clone()),
        ];
        let entries = trusted(&encode(&roots, &ca_der).unwrap());
        assert_eq!(
            entries.len(),
            3,
            "{:?}",
            entries.iter().map(|e| &e.0).collect::<Vec<_>>()
        );
        let ders: Vec<&[u8]> = entries.iter().map(|(_, d)| d.as_slice()).collect();
        assert!(ders.contains(&a.cert.der().as_ref()));
        assert!(ders.contains(&b.cert.der().as_ref()));
        let ca_entry = entries.iter().find(|(alias, _)| alias == CA_ALIAS).unwrap();
        assert_eq!(ca_entry.1, ca_der);
    }

    #[test]
    fn the_store_is_written_beside_the_bundle_and_goes_stale_when_the_ca_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let (state, ca) = ca_in(dir.path());
        let path = crate::ca::write_merged_bundle(&state, &ca).unwrap();
        let store = state.java_trust_store();
        assert_eq!(store.parent(), path.parent());
        #[cfg(unix)]
        assert_eq!(crate::paths::mode_of(&store), Some(0o644));
        assert!(trust_store_holds(&store, &ca));
        // Every platform root from the bundle is in the store too, plus the CA.
        let bundle_certs = std::fs::read_to_string(&path)
            .unwrap()
            .matches("-----BEGIN CERTIFICATE-----")
            .count();
        assert_eq!(trusted(&std::fs::read(&store).unwrap()).len(), bundle_certs);

        let rotated =
            CertificateAuthority::rotate(&state, &["api.openai.com".to_string()]).unwrap();
        let new = rotated.info().clone();
        assert!(
            !trust_store_holds(&store, &new),
            "the old store must not pass for the new CA"
        );
        crate::ca::write_merged_bundle(&state, &new).unwrap();
        assert!(trust_store_holds(&store, &new));
        assert!(!trust_store_holds(&store, &ca));
    }

    #[test]
    fn a_missing_or_foreign_file_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ca) = ca_in(dir.path());
        assert!(!trust_store_holds(&dir.path().join("missing.p12"), &ca));
        let junk = dir.path().join("junk.p12");
        std::fs::write(&junk, b"not a keystore").unwrap();
        assert!(!trust_store_holds(&junk, &ca));
    }
}
