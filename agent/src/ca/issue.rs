//! Building certificates with rcgen: the device CA's self-signed root (ECDSA P-256, name-constrained,
//! pathLen 0) and the per-host leaves it signs (fresh P-256 key each, SAN dNSName only, EKU serverAuth,
//! short-lived, backdated). It owns the certificate templates and the randomness for serials; it must not
//! read or write files, decide which hosts are allowed, or cache anything.

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{AgentError, Result};

/// Organisation name in the CA subject.
pub(crate) const CA_ORGANIZATION: &str = "Airlock";
/// Prefix of the CA subject common name; the per-device serial follows it.
pub(crate) const CA_COMMON_NAME_PREFIX: &str = "Airlock Device CA";
/// How long a new CA is valid (about ten years).
pub(crate) const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf is valid. Must stay ≤ 397 days (Apple, Chrome); short keeps a leaked leaf harmless.
pub(crate) const LEAF_VALIDITY: Duration = Duration::days(30);
/// How far notBefore is backdated, to tolerate clock skew between the laptop and its clients.
pub(crate) const BACKDATE: Duration = Duration::days(1);

/// A freshly generated CA: its key (PEM, PKCS#8) and certificate (PEM).
pub(crate) struct NewCa {
    pub key_pem: String,
    pub cert_pem: String,
}

/// A freshly issued leaf: its certificate and its own private key.
pub(crate) struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

fn rcgen_err(what: &str, e: rcgen::Error) -> AgentError {
    AgentError::Ca(format!(
        "{what}: {e}. This is a bug or an unsupported platform crypto setup; please report it"
    ))
}

/// A random per-device serial: 8 bytes, high bit clear (a positive INTEGER) and first byte non-zero (so
/// the DER encoding keeps all 8 bytes and the hex form is always 16 characters).
pub(crate) fn random_serial(provider: &CryptoProvider) -> Result<[u8; 8]> {
    let mut b = [0u8; 8];
    provider.secure_random.fill(&mut b).map_err(|_| {
        AgentError::Ca(
            "the system random number generator failed while creating the CA serial; check the OS \
             entropy source and retry"
                .into(),
        )
    })?;
    b[0] = (b[0] & 0x7f).max(1);
    Ok(b)
}

/// Generates a new CA key and self-signed certificate permitting exactly `domains` (already normalised)
/// and excluding every IPv4 and IPv6 address.
pub(crate) fn new_ca(provider: &CryptoProvider, domains: &[String]) -> Result<NewCa> {
    let serial = random_serial(provider)?;
    let serial_hex = hex::encode(serial);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| rcgen_err("cannot generate the CA key", e))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("{CA_COMMON_NAME_PREFIX} {serial_hex}"),
    );
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: domains
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .collect(),
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    // The subject key identifier is written by rcgen for CA certificates (truncated SHA-256 of the key).

    let cert = params
        .self_signed(&key)
        .map_err(|e| rcgen_err("cannot self-sign the CA certificate", e))?;
    Ok(NewCa {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// Issues a leaf for `host` (a normalised DNS name) with a fresh P-256 key, signed by `issuer`, valid
/// from a day ago for [`LEAF_VALIDITY`] but never past `ca_not_after`. No constraint check happens here.
pub(crate) fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    ca_not_after: OffsetDateTime,
    host: &str,
) -> Result<Leaf> {
    let now = OffsetDateTime::now_utc();
    if now >= ca_not_after {
        return Err(AgentError::Ca(format!(
            "the device CA expired at {ca_not_after}: run `airlock ca rotate`, then `airlock setup` to \
             trust the new one"
        )));
    }
    let san = rcgen::string::Ia5String::try_from(host).map_err(|_| {
        AgentError::Ca(format!(
            "cannot issue a certificate for {host:?}: not an ASCII DNS name"
        ))
    })?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| rcgen_err("cannot generate a leaf key", e))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(san)];
    // NoCa: no BasicConstraints and, importantly, no subject key identifier (an SKI equal to the CA's
    // breaks Windows SChannel; none at all is the simplest safe choice).
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = (now + LEAF_VALIDITY).min(ca_not_after);

    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| rcgen_err(&format!("cannot sign a certificate for {host}"), e))?;
    Ok(Leaf {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}
