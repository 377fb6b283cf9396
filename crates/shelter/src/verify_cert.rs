//! `shelter verify-cert`: what an RA-TLS certificate from any stack (ours, rats-tls,
//! librats, rats-rs, Gramine) carries, whether its evidence binds its key, and whether
//! the evidence verifies.
//!
//! The binding is judged by the forms in use (reference: ra-tls.md §1.4 and §2):
//! - Interoperable RA-TLS (CCC): report data = SHA-256(claims) ‖ 32 zero bytes, and the
//!   claims' `pubkey-hash` = H(SubjectPublicKeyInfo);
//! - the same hash without the zero padding, which rats-tls and librats accept (they
//!   compare 32 bytes) and rats-rs refuses: reported as a refusal;
//! - legacy certificates (raw evidence under Enclave-TLS/rats-tls OIDs
//!   1.2.840.113741.1337.*, Gramine's 0.6.9.42.840.113741.1337.6, the Intel SGX SDK's
//!   1.2.840.113741.1.13.1): report data begins with SHA-256(SubjectPublicKeyInfo)
//!   (Gramine) or SHA-256(the raw public key: for RSA the PKCS#1 `RSAPublicKey`, as
//!   Enclave-TLS hashes it with `i2d_RSAPublicKey`). Any other rule is reported as not
//!   binding the key, with the report data found.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use rats::{Collateral, Input, Tee};
use rats_tls::dice;
use serde_json::{json, Value};
use sha2::Digest as _;
use x509_parser::prelude::*;

use crate::cli::VerifyCert;
use crate::verify::{policy_or_default, time_or_now, REFUSED};

/// Legacy evidence OIDs whose value is the raw evidence.
const LEGACY: &[(&str, &str)] = &[
    (
        "1.2.840.113741.1337.6",
        "Enclave-TLS/rats-tls before 2022-12 (ECDSA quote)",
    ),
    (
        "1.2.840.113741.1337.8",
        "Enclave-TLS/rats-tls before 2022-12 (TDX quote)",
    ),
    (
        "1.2.840.113741.1337.20",
        "rats-tls before 2022-12 (SEV-SNP report)",
    ),
    ("0.6.9.42.840.113741.1337.6", "Gramine RA-TLS (SGX quote)"),
    // Intel SGX SDK attested TLS (`sgx_ttls`, X509_OID_FOR_QUOTE_STRING). PCK
    // certificates carry the same OID around a SEQUENCE of SGX extensions: only a raw
    // quote counts (see `find_evidence`).
    (
        INTEL_SGX_SDK_QUOTE,
        "Intel SGX SDK attested TLS (SGX quote)",
    ),
];

const INTEL_SGX_SDK_QUOTE: &str = "1.2.840.113741.1.13.1";

/// The evidence found in a certificate and how it is bound.
struct Found<'a> {
    format: String,
    tag: Option<u64>,
    evidence: &'a [u8],
    claims_buffer: Option<&'a [u8]>,
}

pub fn run(v: &VerifyCert) -> Result<i32> {
    let bytes = std::fs::read(&v.cert).with_context(|| format!("{}", v.cert.display()))?;
    let der = certificate_der(&bytes).with_context(|| format!("{}", v.cert.display()))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow::anyhow!("{}: not an X.509 certificate ({e})", v.cert.display()))?;
    let now = time_or_now(v.at.as_deref())?;
    let policy = policy_or_default(v.policy.as_deref())?;
    let found = find_evidence(&cert)?;
    let spki = cert.public_key().raw;
    let raw_key = cert.public_key().subject_public_key.data.as_ref();
    let mut reasons = Vec::new();

    // The certificate itself.
    let self_signed = cert.verify_signature(None).is_ok();
    if !self_signed {
        reasons.push("the certificate's self-signature does not verify".to_string());
    }
    if let Some(w) = rats::validity::certificate("the certificate", &cert, now as i64) {
        reasons.push(w.reason(now as i64, false));
    }

    // The claims and the key they name.
    let claims = match found.claims_buffer {
        Some(buf) => Some(dice::decode_claims(buf)?),
        None => None,
    };
    let pubkey_hash = match claims.as_ref().map(|c| c.get(dice::CLAIM_PUBKEY_HASH)) {
        Some(Some(h)) => match dice::check_pubkey_hash(h, spki) {
            Ok(()) => Some(true),
            Err(e) => {
                reasons.push(format!("claims: {e}"));
                Some(false)
            }
        },
        Some(None) => {
            reasons.push("the claims carry no pubkey-hash".into());
            Some(false)
        }
        None => None,
    };

    // The evidence.
    let tee = match found.tag {
        Some(tag) => dice::tee_of(tag, found.evidence)?,
        None => Tee::detect(found.evidence)?,
    };
    let collateral = match &v.collateral {
        Some(path) => {
            let b = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            Some(Collateral::parse(tee, &b)?)
        }
        None => endorsements(&cert, tee)?,
    };
    let input = Input {
        report_data: None,
        collateral,
        now,
    };
    let verified = rats::verify(found.evidence, Some(tee), &input)
        .with_context(|| format!("{} evidence in the certificate", tee.name()))?;

    let binding = binding(&found, &verified.report_data, spki, raw_key);
    if !binding.0 {
        reasons.push(format!(
            "the report data does not bind this certificate's key: {}",
            binding.1
        ));
    }
    let verdict = policy.appraise(&verified);
    reasons.extend(verdict.reasons.iter().cloned());
    let accepted = reasons.is_empty();

    let custom: BTreeMap<String, String> = claims
        .iter()
        .flatten()
        .filter(|(k, _)| *k != dice::CLAIM_PUBKEY_HASH)
        .map(|(k, v)| (k.clone(), hex::encode(v)))
        .collect();
    let doc = json!({
        "accepted": accepted,
        "reasons": reasons,
        "certificate": {
            "subject": cert.subject().to_string(),
            "not_before": cert.validity().not_before.to_string(),
            "not_after": cert.validity().not_after.to_string(),
            "self_signature_valid": self_signed,
            "spki_sha256": hex::encode(sha2::Sha256::digest(spki)),
        },
        "format": found.format,
        "evidence_type": tee.name(),
        "tag": found.tag,
        "claims_sha256": found.claims_buffer.map(|b| hex::encode(sha2::Sha256::digest(b))),
        "pubkey_hash_matches": pubkey_hash,
        "custom_claims": custom,
        "binding": {"bound": binding.0, "how": binding.1},
        "verified": verified,
    });
    print(&doc, v.json)?;
    Ok(if accepted { 0 } else { REFUSED })
}

fn print(doc: &Value, as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?;
        return Ok(());
    }
    let accepted = doc["accepted"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "verdict: {}",
        if accepted { "ACCEPTED" } else { "REFUSED" }
    )?;
    for r in doc["reasons"].as_array().into_iter().flatten() {
        writeln!(out, "  - {}", r.as_str().unwrap_or_default())?;
    }
    let c = &doc["certificate"];
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut rows: Vec<(String, String)> = vec![
        ("format".into(), show(&doc["format"])),
        ("evidence_type".into(), show(&doc["evidence_type"])),
        ("subject".into(), show(&c["subject"])),
        ("not_before".into(), show(&c["not_before"])),
        ("not_after".into(), show(&c["not_after"])),
        (
            "self_signature_valid".into(),
            show(&c["self_signature_valid"]),
        ),
        ("spki_sha256".into(), show(&c["spki_sha256"])),
        ("claims_sha256".into(), show(&doc["claims_sha256"])),
        (
            "pubkey_hash_matches".into(),
            show(&doc["pubkey_hash_matches"]),
        ),
        ("binding".into(), show(&doc["binding"]["how"])),
    ];
    for (k, v) in doc["custom_claims"].as_object().into_iter().flatten() {
        rows.push((format!("claim {k}"), show(v)));
    }
    for (k, v) in doc["verified"]["claims"].as_object().into_iter().flatten() {
        let shown = match v {
            Value::Array(a) if a.is_empty() => "-".into(),
            Value::Array(a) => a.iter().map(show).collect::<Vec<_>>().join(", "),
            other => show(other),
        };
        rows.push((k.clone(), shown));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{k:width$}  {v}")?;
    }
    Ok(())
}

/// The DER of a certificate file: DER as it is, or the first certificate of a PEM file.
/// A certificate shorter than its outer SEQUENCE says is refused as truncated (a PEM
/// block copied with lines missing is the usual cause).
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>> {
    let der = if bytes.first() == Some(&0x30) {
        bytes.to_vec()
    } else {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|e| anyhow::anyhow!("neither DER nor a PEM certificate ({e})"))?;
        if pem.label != "CERTIFICATE" {
            bail!("a PEM {}, not a CERTIFICATE", pem.label);
        }
        pem.contents
    };
    if let Some(declared) = der_length(&der) {
        if declared > der.len() {
            bail!(
                "truncated certificate: its DER header declares {declared} bytes, the file holds {}",
                der.len()
            );
        }
    }
    Ok(der)
}

/// The total length a DER element declares (header included), if its header is whole.
fn der_length(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = der
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some(2 + n + len)
}

/// The evidence extension (2.23.133.5.4.9), or a legacy one.
fn find_evidence<'a>(cert: &'a X509Certificate<'a>) -> Result<Found<'a>> {
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if oid == "2.23.133.5.4.9" {
            let t = dice::decode_evidence(ext.value)?;
            return Ok(Found {
                format: "Interoperable RA-TLS (2.23.133.5.4.9)".into(),
                tag: Some(t.tag),
                evidence: t.evidence,
                claims_buffer: Some(t.claims_buffer),
            });
        }
    }
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if let Some((_, what)) = LEGACY.iter().find(|(o, _)| *o == oid) {
            if oid == INTEL_SGX_SDK_QUOTE && ext.value.first() == Some(&0x30) {
                continue;
            }
            return Ok(Found {
                format: format!("{what}, OID {oid}"),
                tag: None,
                evidence: ext.value,
                claims_buffer: None,
            });
        }
    }
    bail!("no evidence extension (2.23.133.5.4.9, nor a legacy RA-TLS OID): not an attested certificate")
}

/// DCAP collateral from the endorsements extension (2.23.133.5.4.2), for Intel quotes.
fn endorsements(cert: &X509Certificate, tee: Tee) -> Result<Option<Collateral>> {
    if !matches!(tee, Tee::SgxEcdsa | Tee::TdxEcdsa) {
        return Ok(None);
    }
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == "2.23.133.5.4.2" {
            return Ok(
                rats_tls::endorsements::decode(ext.value)?.map(|c| Collateral::Dcap(Box::new(c)))
            );
        }
    }
    Ok(None)
}

/// Whether the evidence's report data binds the certificate's key, and how (or what
/// it holds instead).
fn binding(found: &Found, report_data: &[u8], spki: &[u8], raw_key: &[u8]) -> (bool, String) {
    let rd = hex::encode(report_data);
    if let Some(buf) = found.claims_buffer {
        let h = sha2::Sha256::digest(buf);
        let want = dice::report_data(buf);
        if report_data == want {
            return (
                true,
                "Interoperable RA-TLS: report data = SHA-256(claims) ‖ zeros".into(),
            );
        }
        if report_data.get(..32) == Some(&h[..]) {
            return (
                false,
                format!(
                    "report data begins with SHA-256(claims) but is not zero-padded ({rd}); \
                     rats-tls and librats compare 32 bytes and accept it, rats-rs and this \
                     verifier do not"
                ),
            );
        }
        return (
            false,
            format!(
                "report data is {rd}; SHA-256(claims) ‖ zeros would be {}",
                hex::encode(want)
            ),
        );
    }
    let spki_hash = sha2::Sha256::digest(spki);
    let key_hash = sha2::Sha256::digest(raw_key);
    if report_data.get(..32) == Some(&spki_hash[..]) {
        return (
            true,
            "legacy: report data begins with SHA-256(SubjectPublicKeyInfo)".into(),
        );
    }
    if report_data.get(..32) == Some(&key_hash[..]) {
        return (
            true,
            "legacy: report data begins with SHA-256(public key)".into(),
        );
    }
    (
        false,
        format!(
            "report data is {rd}; neither SHA-256(SubjectPublicKeyInfo) {} nor SHA-256(public key) {}",
            hex::encode(spki_hash),
            hex::encode(key_hash)
        ),
    )
}
