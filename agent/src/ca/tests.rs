//! Behaviour tests for the device CA: files and modes on disk, what real rustls clients accept and
//! refuse, leaf properties, the leaf cache, rotation, permission refusal, `is_ours` and the merged bundle.
//! They use temporary state directories only and must not touch the machine's trust stores.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::paths::mode_of;

fn domains() -> Vec<String> {
    vec!["api.openai.com".into(), "anthropic.com".into()]
}

fn new_ca() -> (tempfile::TempDir, StateDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let ca = CertificateAuthority::load_or_create(&state, &domains()).unwrap();
    (dir, state, ca)
}

fn verifier(ca: &CertificateAuthority) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap()
}

fn verify(
    ca: &CertificateAuthority,
    leaf: &CertificateDer<'_>,
    name: &str,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier(ca)
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

/// A full in-memory TLS handshake between a rustls client trusting only the Airlock CA (offering h2)
/// and the server config the CA hands out for `host`.
fn handshake(ca: &CertificateAuthority, host: &str) -> Result<ClientConnection, rustls::Error> {
    let server_config = ca.server_config(host).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let mut client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(client);
        }
    }
    panic!("handshake did not finish");
}

fn leaf_from_handshake(ca: &CertificateAuthority, host: &str) -> CertificateDer<'static> {
    let client = handshake(ca, host).unwrap();
    client.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn create_writes_key_private_and_cert_public_and_reload_keeps_the_same_ca() {
    let (_dir, state, ca) = new_ca();
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&state.ca_key()), Some(0o600));
        assert_eq!(mode_of(&state.ca_private_dir()), Some(0o700));
        assert_eq!(mode_of(&state.ca_cert()), Some(0o644));
        assert_eq!(mode_of(&state.ca_dir()), Some(0o755));
    }
    let key_pem = fs::read_to_string(state.ca_key()).unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));

    let again = CertificateAuthority::load_or_create(&state, &["other.example".into()]).unwrap();
    assert_eq!(
        again.info().fingerprint_sha256,
        ca.info().fingerprint_sha256
    );
    assert_eq!(fs::read_to_string(state.ca_key()).unwrap(), key_pem);
    assert_eq!(
        again.info().permitted_domains,
        vec!["anthropic.com", "api.openai.com"]
    );
    // The reloaded CA (rebuilt from the files) still signs leaves clients accept.
    handshake(&again, "api.openai.com").unwrap();
}

#[test]
fn info_is_readable_from_the_certificate_alone() {
    let (_dir, state, ca) = new_ca();
    fs::remove_file(state.ca_key()).unwrap();
    let info = CaInfo::read(&state).unwrap();
    assert_eq!(info.fingerprint_sha256, ca.info().fingerprint_sha256);
    assert_eq!(info.serial.len(), 16);
    assert_eq!(info.subject, format!("Airlock Device CA {}", info.serial));
    assert_eq!(info.cert_path, state.ca_cert());
    let fp = &info.fingerprint_sha256;
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp
        .chars()
        .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
    let not_after = OffsetDateTime::parse(
        &info.not_after,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(not_after > OffsetDateTime::now_utc() + time::Duration::days(3600));
    // The key is gone but the certificate exists: loading refuses and says to rotate.
    let err = CertificateAuthority::load_or_create(&state, &domains())
        .unwrap_err()
        .to_string();
    assert!(err.contains("airlock ca rotate"), "{err}");
    let none = CaInfo::read(&StateDir::new(_dir.path().join("nowhere")))
        .unwrap_err()
        .to_string();
    assert!(none.contains("no device CA"), "{none}");
}

#[test]
fn ca_certificate_is_a_name_constrained_p256_root() {
    let (_dir, _state, ca) = new_ca();
    let (_, x) = X509Certificate::from_der(&ca.der).unwrap();
    assert_eq!(x.subject().as_raw(), x.issuer().as_raw());
    assert_eq!(
        x.subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "Airlock"
    );
    assert_eq!(hex_of(x.raw_serial()), ca.info().serial);
    // id-ecPublicKey with the P-256 curve.
    assert_eq!(
        x.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    let curve = x
        .public_key()
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    let not_before = x.validity().not_before.to_datetime();
    assert!(not_before < OffsetDateTime::now_utc() - time::Duration::hours(23));

    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(x.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::SubjectKeyIdentifier(_)
    )));

    let nc = x.name_constraints().unwrap().unwrap();
    assert!(nc.critical, "name constraints must be critical");
    let permitted: Vec<String> = nc
        .value
        .permitted_subtrees
        .iter()
        .flatten()
        .filter_map(|s| match s.base {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(permitted, vec!["anthropic.com", "api.openai.com"]);
    let excluded: Vec<Vec<u8>> = nc
        .value
        .excluded_subtrees
        .iter()
        .flatten()
        .filter_map(|s| match s.base {
            GeneralName::IPAddress(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(excluded, vec![vec![0u8; 8], vec![0u8; 32]]);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn clients_trusting_the_ca_accept_leaves_for_permitted_hosts_and_subdomains() {
    let (_dir, _state, ca) = new_ca();
    let client = handshake(&ca, "api.openai.com").unwrap();
    assert_eq!(client.alpn_protocol(), Some(&b"h2"[..]));
    handshake(&ca, "api.anthropic.com").unwrap();
    handshake(&ca, "eu.api.openai.com").unwrap();
    let leaf = leaf_from_handshake(&ca, "api.openai.com");
    verify(&ca, &leaf, "api.openai.com").unwrap();
}

#[test]
fn name_constraints_make_clients_reject_a_leaf_for_another_domain() {
    let (_dir, _state, ca) = new_ca();
    let bank = ca.issue_leaf_unchecked("bank.example.com").unwrap();
    let err = verify(&ca, &bank.cert, "bank.example.com").unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("NameConstraintViolation"), "{text}");

    // A permitted leaf presented for the wrong name fails differently: that is a name mismatch, so the
    // rejection above really comes from the CA's constraints.
    let openai = ca.issue_leaf_unchecked("api.openai.com").unwrap();
    let err = verify(&ca, &openai.cert, "api.anthropic.com").unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("NotValidForName"), "{text}");
    assert!(!text.contains("NameConstraint"), "{text}");
}

#[test]
fn server_config_refuses_hosts_outside_the_constraints() {
    let (_dir, _state, ca) = new_ca();
    for host in [
        "bank.example.com",
        "openai.com",
        "evilanthropic.com",
        "1.2.3.4",
        "*.anthropic.com",
    ] {
        assert!(!ca.covers(host), "{host}");
        let err = ca.server_config(host).unwrap_err().to_string();
        assert!(err.contains("refusing to issue"), "{err}");
    }
    assert!(ca.covers("API.OpenAI.com."));
    assert!(ca.covers("claude.anthropic.com"));
}

#[test]
fn leaf_has_its_own_key_short_backdated_validity_and_server_auth() {
    let (_dir, _state, ca) = new_ca();
    let der = leaf_from_handshake(&ca, "api.openai.com");
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    let (_, root) = X509Certificate::from_der(&ca.der).unwrap();

    assert_ne!(leaf.public_key().raw, root.public_key().raw);
    let now = OffsetDateTime::now_utc();
    let nb = leaf.validity().not_before.to_datetime();
    let na = leaf.validity().not_after.to_datetime();
    assert!(
        nb < now - time::Duration::hours(23),
        "notBefore {nb} is not backdated"
    );
    assert!(na - nb <= time::Duration::days(397));
    assert!(na > now + time::Duration::days(7));
    assert!(!leaf.is_ca());

    let eku = leaf.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth);
    assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(names, vec!["DNSName(api.openai.com)"]);

    // No SKI on the leaf (so never the CA's); the AKI names the CA's SKI.
    let root_ski = root
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let mut aki = None;
    for e in leaf.extensions() {
        match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(_) => panic!("leaf carries an SKI"),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    assert_eq!(aki, Some(root_ski));

    // Two hosts get two different keys.
    let other = leaf_from_handshake(&ca, "api.anthropic.com");
    let (_, other) = X509Certificate::from_der(&other).unwrap();
    assert_ne!(other.public_key().raw, leaf.public_key().raw);
}

#[test]
fn same_host_reuses_the_cached_config_and_the_cache_stays_bounded() {
    let (_dir, _state, ca) = new_ca();
    let ca = ca.with_cache_limits(2, Duration::from_secs(3600));
    let a1 = ca.server_config("api.openai.com").unwrap();
    let a2 = ca.server_config("API.openai.com.").unwrap();
    assert!(Arc::ptr_eq(&a1, &a2));

    ca.server_config("a.api.openai.com").unwrap();
    ca.server_config("b.api.openai.com").unwrap();
    {
        let cache = ca.leaves.lock().unwrap();
        assert_eq!(cache.len(), 2);
        assert!(
            !cache.contains("api.openai.com"),
            "the oldest entry was not evicted"
        );
    }
    let a3 = ca.server_config("api.openai.com").unwrap();
    assert!(!Arc::ptr_eq(&a1, &a3));
}

#[test]
fn stale_cache_entries_are_regenerated() {
    let (_dir, _state, ca) = new_ca();
    let ca = ca.with_cache_limits(8, Duration::ZERO);
    let a1 = ca.server_config("api.openai.com").unwrap();
    let a2 = ca.server_config("api.openai.com").unwrap();
    assert!(!Arc::ptr_eq(&a1, &a2));
}

#[test]
fn rotate_makes_a_new_ca_for_new_domains_and_retires_the_old_cert() {
    let (_dir, state, old) = new_ca();
    let mut wider = domains();
    wider.push("generativelanguage.googleapis.com".into());

    assert_eq!(
        old.info().uncovered(&wider),
        vec!["generativelanguage.googleapis.com"]
    );
    let new = CertificateAuthority::rotate(&state, &wider).unwrap();
    assert_ne!(new.info().fingerprint_sha256, old.info().fingerprint_sha256);
    assert_ne!(new.info().serial, old.info().serial);
    assert!(new
        .info()
        .permitted_domains
        .contains(&"generativelanguage.googleapis.com".to_string()));
    assert!(new.info().uncovered(&wider).is_empty());
    assert!(new.covers("generativelanguage.googleapis.com"));

    let retired = state
        .ca_retired_dir()
        .join(format!("{}.pem", old.info().serial));
    assert_eq!(fs::read_to_string(&retired).unwrap(), old.info().cert_pem);
    assert_eq!(
        CaInfo::read(&state).unwrap().fingerprint_sha256,
        new.info().fingerprint_sha256
    );
    // The new CA's leaves don't chain to the old CA.
    let leaf = leaf_from_handshake(&new, "api.openai.com");
    assert!(!old.is_ours(&leaf));
    assert!(new.is_ours(&leaf));
}

#[cfg(unix)]
#[test]
fn group_readable_key_is_refused_with_a_chmod_hint() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, state, _ca) = new_ca();
    fs::set_permissions(state.ca_key(), fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertificateAuthority::load_or_create(&state, &domains())
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    // Nothing was silently fixed.
    assert_eq!(mode_of(&state.ca_key()), Some(0o644));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let (_dir, state, _ca) = new_ca();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    crate::paths::write_atomic(&state.ca_key(), other.serialize_pem().as_bytes(), 0o600).unwrap();
    let err = CertificateAuthority::load_or_create(&state, &domains())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not belong"), "{err}");
}

#[test]
fn creating_a_ca_for_no_domains_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let err = CertificateAuthority::load_or_create(&state, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no permitted domains"), "{err}");
    assert!(!state.ca_key().exists());
}

#[test]
fn is_ours_recognises_the_ca_and_its_leaves_but_not_strangers() {
    let (_dir, _state, ca) = new_ca();
    assert!(ca.is_ours(&ca.der));
    let leaf = leaf_from_handshake(&ca, "api.openai.com");
    assert!(ca.is_ours(&leaf));
    let stranger = rcgen::generate_simple_self_signed(vec!["api.openai.com".to_string()]).unwrap();
    assert!(!ca.is_ours(stranger.cert.der()));
    assert!(!ca.is_ours(&CertificateDer::from(vec![1u8, 2, 3])));
    // Another device's Airlock CA is not ours either.
    let (_d2, _s2, other) = new_ca();
    assert!(!ca.is_ours(&other.der));
}

#[test]
fn merged_bundle_holds_platform_roots_then_the_airlock_ca() {
    let (_dir, state, ca) = new_ca();
    let path = write_merged_bundle(&state, ca.info()).unwrap();
    assert_eq!(path, state.merged_bundle());
    #[cfg(unix)]
    assert_eq!(mode_of(&path), Some(0o644));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.matches("-----BEGIN CERTIFICATE-----").count() > 1);
    assert!(text.trim_end().ends_with(ca.info().cert_pem.trim_end()));
    assert_eq!(text.matches(ca.info().cert_pem.trim_end()).count(), 1);
}

#[test]
fn merged_bundle_drops_airlock_cas_found_among_platform_roots() {
    // When SSL_CERT_FILE already points at an older bundle, the "platform roots" contain Airlock CAs.
    let (_dir, _state, ca) = new_ca();
    let (_d2, _s2, old) = new_ca();
    let stranger = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
    let roots = vec![
        stranger.cert.der().clone(),
        old.der.clone(),
        ca.der.clone(),
        stranger.cert.der().clone(),
    ];
    let text = bundle::merged_text(&roots, ca.info());
    assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(!text.contains(old.info().cert_pem.trim_end()));
    assert!(text.trim_end().ends_with(ca.info().cert_pem.trim_end()));
}
