//! Attested certificates: making them (rcgen) and checking them (x509-parser).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rats::{Attester, Collateral, Policy, Tee, Verdict, Verified};
use x509_parser::prelude::*;

use crate::dice;
use crate::endorsements;
use crate::RaTlsError;

/// The largest peer certificate looked at. A DCAP quote is about 5 KiB, an SNP report
/// with its certificate table under 16 KiB.
pub const MAX_CERT_SIZE: usize = 64 * 1024;

/// The key of an attested certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    #[default]
    P256,
    P384,
    /// RSA-3072 with PKCS#1 v1.5 SHA-256 certificate signatures, as rats-tls made
    /// them. Making the key takes about a second, so prefer P-256 where certificates
    /// are made per handshake (freshness on).
    Rsa3072,
}

/// How our certificates are made.
#[derive(Debug, Clone)]
pub struct CertOptions {
    pub key: KeyAlgorithm,
    /// Mark the evidence extension critical (DICE's advice). Off by default, because
    /// OpenSSL, mbedTLS and webpki refuse unknown critical extensions.
    pub critical: bool,
    /// Claims of the application's own, carried next to the built-in ones.
    pub custom_claims: BTreeMap<String, Vec<u8>>,
    /// How long the certificate is valid after it is made (it is valid from an hour
    /// before, for clock skew).
    pub validity: Duration,
    /// Carry the attester's DCAP collateral in the endorsements extension
    /// (2.23.133.5.4.2), so that a verifier without collateral of its own can check
    /// the quote. Intel quotes only; other evidence carries no such extension.
    pub endorsements: bool,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            key: KeyAlgorithm::P256,
            critical: false,
            custom_claims: BTreeMap::new(),
            validity: Duration::from_secs(24 * 3600),
            endorsements: false,
        }
    }
}

/// A certificate with evidence, and its private key (PKCS#8 DER).
#[derive(Clone)]
pub struct AttestedCert {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
    pub tee: Tee,
}

impl std::fmt::Debug for AttestedCert {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedCert")
            .field("cert_der", &format!("{} bytes", self.cert_der.len()))
            .field("tee", &self.tee)
            .finish_non_exhaustive()
    }
}

/// Makes a fresh key and a self-signed certificate whose evidence binds that key and,
/// when given, the verifier's `nonce`.
pub fn generate(
    attester: &dyn Attester,
    options: &CertOptions,
    nonce: Option<&[u8]>,
) -> Result<AttestedCert, RaTlsError> {
    for name in options.custom_claims.keys() {
        if name == dice::CLAIM_PUBKEY_HASH || name == dice::CLAIM_NONCE {
            return Err(RaTlsError::Generate(format!(
                "custom claim {name:?} has the name of a built-in claim"
            )));
        }
    }
    let key = key_pair(options.key)?;
    let mut claims = options.custom_claims.clone();
    claims.insert(
        dice::CLAIM_PUBKEY_HASH.into(),
        dice::pubkey_hash_claim(&key.public_key_der()),
    );
    if let Some(n) = nonce {
        claims.insert(dice::CLAIM_NONCE.into(), n.to_vec());
    }
    let claims_buffer = dice::encode_claims(&claims);
    let evidence = attester
        .attest(&dice::report_data(&claims_buffer))
        .map_err(|e| RaTlsError::Attester(e.to_string()))?;
    let value = dice::encode_evidence(dice::tag_of(evidence.tee), &evidence.bytes, &claims_buffer);
    let mut ext = rcgen::CustomExtension::from_oid_content(dice::OID_EVIDENCE, value);
    ext.set_criticality(options.critical);
    let endorsements = match (options.endorsements, evidence.tee) {
        (true, Tee::SgxEcdsa | Tee::TdxEcdsa) => {
            let Some(bytes) = &evidence.collateral else {
                return Err(RaTlsError::Generate(
                    "endorsements were asked for, but the attester supplied no collateral".into(),
                ));
            };
            let Collateral::Dcap(c) = Collateral::parse(evidence.tee, bytes)? else {
                return Err(RaTlsError::Generate(
                    "the attester's collateral is not DCAP's".into(),
                ));
            };
            Some(rcgen::CustomExtension::from_oid_content(
                dice::OID_ENDORSEMENTS,
                endorsements::encode(&c),
            ))
        }
        _ => None,
    };

    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Inclavare Containers");
    dn.push(rcgen::DnType::CommonName, "RATS-TLS");
    params.distinguished_name = dn;
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now - ::time::Duration::hours(1);
    params.not_after = now + options.validity;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(|e| RaTlsError::Generate(e.to_string()))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.custom_extensions.push(ext);
    params.custom_extensions.extend(endorsements);
    let cert = params
        .self_signed(&key)
        .map_err(|e| RaTlsError::Generate(e.to_string()))?;
    Ok(AttestedCert {
        cert_der: cert.der().to_vec(),
        key_pkcs8: key.serialize_der(),
        tee: evidence.tee,
    })
}

fn key_pair(alg: KeyAlgorithm) -> Result<rcgen::KeyPair, RaTlsError> {
    let fail = |e: &dyn std::fmt::Display| RaTlsError::Generate(e.to_string());
    match alg {
        KeyAlgorithm::P256 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| fail(&e))
        }
        KeyAlgorithm::P384 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| fail(&e))
        }
        KeyAlgorithm::Rsa3072 => {
            // ring signs with RSA keys but cannot make them.
            use rsa::pkcs8::EncodePrivateKey as _;
            let key =
                rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).map_err(|e| fail(&e))?;
            let der = key.to_pkcs8_der().map_err(|e| fail(&e))?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| fail(&e))
        }
    }
}

/// What a peer's certificate is checked against.
#[derive(Debug, Clone, Default)]
pub struct Appraisal {
    pub policy: Policy,
    /// Collateral for hardware evidence (DCAP collateral, the VCEK).
    pub collateral: Option<Collateral>,
    /// Seconds since the epoch to check validity at; `None`: the system clock.
    pub now: Option<u64>,
}

impl Appraisal {
    pub fn new(policy: Policy) -> Self {
        Appraisal {
            policy,
            ..Default::default()
        }
    }

    fn now(&self) -> u64 {
        self.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
    }
}

/// What a verified peer proved.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The evidence's claims (measurements, TCB status, ...).
    pub verified: Verified,
    /// The policy's decision (always accepted when returned by [`verify`]).
    pub verdict: Verdict,
    /// The peer's own claims from the certificate.
    pub custom_claims: BTreeMap<String, Vec<u8>>,
    /// The nonce the evidence carries, if any.
    pub nonce: Option<Vec<u8>>,
    /// The certificate itself, for a relay to pass on so that its client can check
    /// the evidence without trusting the relay.
    pub cert_der: Vec<u8>,
}

/// OIDs of earlier RA-TLS formats, recognised to say what they are.
const LEGACY: &[(&str, &str)] = &[
    (
        "1.2.840.113741.1337.",
        "rats-tls/Enclave-TLS before 2022-12",
    ),
    ("0.6.9.42.840.113741.1337.6", "Gramine RA-TLS"),
    ("1.2.840.113741.1.13.1", "Intel SGX SDK RA-TLS"),
];

/// Checks a peer's certificate: its self-signature and validity, the evidence
/// extension, that the evidence binds exactly the claims and the claims this
/// certificate's key, the `nonce` when one is required, then the evidence itself
/// (through `rats`) and the policy.
pub fn verify(
    der: &[u8],
    appraisal: &Appraisal,
    nonce: Option<&[u8]>,
) -> Result<PeerInfo, RaTlsError> {
    let info = inspect(der, appraisal, nonce)?;
    if !info.verdict.accepted {
        return Err(RaTlsError::Refused(info.verdict.reasons));
    }
    Ok(info)
}

/// [`verify`] up to the policy: every check but the last, whose verdict is returned
/// in [`PeerInfo::verdict`] whatever it says (for a tool that shows why).
pub fn inspect(
    der: &[u8],
    appraisal: &Appraisal,
    nonce: Option<&[u8]>,
) -> Result<PeerInfo, RaTlsError> {
    if der.len() > MAX_CERT_SIZE {
        return Err(RaTlsError::Certificate(format!(
            "{} bytes, over the {MAX_CERT_SIZE}-byte limit",
            der.len()
        )));
    }
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| RaTlsError::Certificate(format!("not an X.509 certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(RaTlsError::Certificate(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    cert.verify_signature(None)
        .map_err(|e| RaTlsError::Certificate(format!("self-signature does not verify ({e})")))?;
    let now = appraisal.now();
    let at =
        ASN1Time::from_timestamp(now as i64).map_err(|e| RaTlsError::Certificate(e.to_string()))?;
    if !cert.validity().is_valid_at(at) {
        return Err(RaTlsError::Certificate(format!(
            "not valid now: valid from {} to {}",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    let evidence_oid = x509_parser::der_parser::oid::Oid::from(dice::OID_EVIDENCE)
        .map_err(|_| RaTlsError::Certificate("evidence OID".into()))?;
    let ext = cert.extensions().iter().find(|e| e.oid == evidence_oid);
    let Some(ext) = ext else {
        for e in cert.extensions() {
            let oid = e.oid.to_id_string();
            if let Some((_, what)) = LEGACY.iter().find(|(p, _)| oid.starts_with(p)) {
                return Err(RaTlsError::Legacy(format!("{what} (OID {oid})")));
            }
        }
        return Err(RaTlsError::NoExtension);
    };
    let tagged = dice::decode_evidence(ext.value)?;
    let claims = dice::decode_claims(tagged.claims_buffer)?;
    let hash = claims
        .get(dice::CLAIM_PUBKEY_HASH)
        .ok_or_else(|| RaTlsError::Extension("no pubkey-hash claim".into()))?;
    dice::check_pubkey_hash(hash, cert.public_key().raw)?;
    let carried = claims.get(dice::CLAIM_NONCE);
    if let Some(expected) = nonce {
        match carried {
            Some(n) if n[..] == *expected => {}
            Some(n) => {
                return Err(RaTlsError::Nonce(format!(
                    "the evidence answers nonce {}, not this session's {}",
                    hex::encode(n),
                    hex::encode(expected)
                )))
            }
            None => return Err(RaTlsError::Nonce("the evidence carries no nonce".into())),
        }
    }
    let tee = dice::tee_of(tagged.tag, tagged.evidence)?;
    // The verifier's own collateral comes first; the peer's endorsements are used only
    // in its absence (they are Intel-signed and checked like any other collateral).
    let mut collateral = appraisal.collateral.clone();
    if collateral.is_none() && matches!(tee, Tee::SgxEcdsa | Tee::TdxEcdsa) {
        let oid = x509_parser::der_parser::oid::Oid::from(dice::OID_ENDORSEMENTS)
            .map_err(|_| RaTlsError::Certificate("endorsements OID".into()))?;
        if let Some(e) = cert.extensions().iter().find(|e| e.oid == oid) {
            collateral = endorsements::decode(e.value)?.map(|c| Collateral::Dcap(Box::new(c)));
        }
    }
    let input = rats::Input {
        report_data: Some(dice::report_data(tagged.claims_buffer)),
        collateral,
        now,
    };
    let verified = rats::verify(tagged.evidence, Some(tee), &input)?;
    let verdict = appraisal.policy.appraise(&verified);
    let custom_claims = claims
        .iter()
        .filter(|(k, _)| *k != dice::CLAIM_PUBKEY_HASH && *k != dice::CLAIM_NONCE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(PeerInfo {
        verified,
        verdict,
        custom_claims,
        nonce: carried.cloned(),
        cert_der: der.to_vec(),
    })
}
