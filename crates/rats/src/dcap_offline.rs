//! DCAP quotes checked without collateral: everything the quote carries can be
//! verified offline, and what needs Intel's collateral is reported as unknown.
//!
//! Checked (Intel SGX ECDSA Quote Library API, "Quote Format"; certification data
//! type 5 = the PCK certificate chain in PEM):
//! 1. the PCK chain PCK → PCK Processor/Platform CA → root, every signature and
//!    validity period at the given time, the root byte for byte the pinned
//!    production Intel SGX Root CA;
//! 2. the QE report's signature by the PCK certificate's key;
//! 3. the QE report's report data: SHA-256(attestation key ‖ QE authentication data)
//!    in its first 32 bytes;
//! 4. the quote's signature by the attestation key over header and body.
//!
//! Not checked, so reported: revocation (no CRLs), the TCB level and advisories (no
//! TCB info: `tcb_status` is [`UNKNOWN`], no `advisory_ids` claim), the QE's identity
//! (no QE identity). The claims `dcap_revocation_checked` and
//! `dcap_qe_identity_checked` are `false`, `dcap_unknown_claims` names every claim
//! left out ([`NEED_COLLATERAL`]), and the default policy refuses the `Unknown`
//! status. The PCK certificate's claims and the root key ID are known (see
//! `dcap_claims`).

use dcap_qvl::quote::{AuthDataV3, Quote};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::Digest as _;
use x509_parser::prelude::*;

use crate::dcap::{body_claims, INTEL_SGX_ROOT_CA};
use crate::dcap_claims::{self, NEED_COLLATERAL};
use crate::{ClaimValue, Input, RatsError, Tee, Verified};

/// The `tcb_status` of a DCAP quote verified without collateral.
pub const UNKNOWN: &str = "Unknown";

/// Offset of REPORTDATA in an SGX report body (the QE's report).
const REPORT_DATA_AT: usize = 320;

pub(crate) fn verify(tee: Tee, quote: &[u8], input: &Input) -> Result<Verified, RatsError> {
    let name = tee.name();
    let malformed = |reason: String| RatsError::Malformed { tee: name, reason };
    let signature = |reason: String| RatsError::Signature { tee: name, reason };
    let chain_error = |reason: String| RatsError::CertificateChain { tee: name, reason };

    let parsed = Quote::parse(quote).map_err(|e| malformed(format!("{e:#}")))?;
    crate::dcap::check_td_attributes(tee, quote)?;
    if parsed.header.attestation_key_type != 2 {
        return Err(malformed(format!(
            "attestation key type {} (only 2, ECDSA P-256, is supported)",
            parsed.header.attestation_key_type
        )));
    }
    let auth: AuthDataV3 = parsed.auth_data.clone().into_v3();
    if auth.certification_data.cert_type != 5 {
        return Err(RatsError::Collateral {
            tee: name,
            reason: format!(
                "certification data type {}: without collateral only type 5 (the PCK \
                 chain in the quote) can be checked",
                auth.certification_data.cert_type
            ),
        });
    }
    let chain = dcap_qvl::intel::extract_cert_chain(&parsed)
        .map_err(|e| malformed(format!("PCK certificate chain: {e:#}")))?;
    let certs: Vec<X509Certificate> = chain
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| malformed(format!("PCK certificate chain: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let (Some(pck), Some(root)) = (certs.first(), chain.last()) else {
        return Err(malformed("empty PCK certificate chain".into()));
    };
    if certs.len() < 2 {
        return Err(chain_error("the PCK chain has no issuer".into()));
    }

    // 1. The chain, each certificate signed by the next, the last Intel's root.
    if root[..] != *INTEL_SGX_ROOT_CA {
        return Err(chain_error(foreign_root(&certs, root)));
    }
    for (i, cert) in certs.iter().enumerate() {
        let issuer = certs.get(i + 1).unwrap_or(cert);
        let what = cert.subject().to_string();
        if cert.issuer() != issuer.subject() {
            return Err(chain_error(format!(
                "{what} is issued by {}, not by the next certificate",
                cert.issuer()
            )));
        }
        verify_ecdsa(
            issuer.public_key().subject_public_key.data.as_ref(),
            cert.tbs_certificate.as_ref(),
            Signature::from_der(cert.signature_value.data.as_ref()).ok(),
        )
        .map_err(|()| chain_error(format!("{what}: signature does not verify")))?;
        if let Some(w) = crate::validity::certificate("", cert, input.now as i64) {
            return Err(RatsError::CollateralExpired {
                tee: name,
                reason: w.reason(input.now as i64, true),
            });
        }
    }

    // 2. The QE report, signed by the PCK key.
    verify_ecdsa(
        pck.public_key().subject_public_key.data.as_ref(),
        &auth.qe_report,
        Signature::from_slice(&auth.qe_report_signature).ok(),
    )
    .map_err(|()| signature("the QE report's signature by the PCK key does not verify".into()))?;

    // 3. The QE report binds the attestation key.
    let mut hashed = sha2::Sha256::new();
    hashed.update(auth.ecdsa_attestation_key);
    hashed.update(&auth.qe_auth_data.data);
    if hashed.finalize()[..] != auth.qe_report[REPORT_DATA_AT..REPORT_DATA_AT + 32] {
        return Err(signature(
            "the QE report does not bind the attestation key (QE report data hash mismatch)".into(),
        ));
    }

    // 4. The quote, signed by the attestation key.
    let mut key = [0x04u8; 65];
    key[1..].copy_from_slice(&auth.ecdsa_attestation_key);
    let signed = quote
        .get(..parsed.signed_length())
        .ok_or_else(|| malformed("shorter than its signed part".into()))?;
    verify_ecdsa(
        &key,
        signed,
        Signature::from_slice(&auth.ecdsa_signature).ok(),
    )
    .map_err(|()| {
        signature("the quote's signature by the attestation key does not verify".into())
    })?;

    let mut v = body_claims(tee, &parsed.report)?;
    v.tcb_status = Some(UNKNOWN.into());
    // The PCK certificate and the root are verified: their claims are known.
    v.claims.extend(
        dcap_claims::pck_certificate_claims(&chain[0])
            .map_err(|e| malformed(format!("PCK certificate: {e}")))?,
    );
    v.bytes(
        "dcap_root_key_id",
        &dcap_claims::root_key_id(root).map_err(malformed)?,
    )
    .bool("dcap_revocation_checked", false)
    .bool("dcap_qe_identity_checked", false);
    v.claims.insert(
        "dcap_unknown_claims".into(),
        ClaimValue::List(NEED_COLLATERAL.iter().map(|s| s.to_string()).collect()),
    );
    crate::check_report_data(name, &v.report_data, input)?;
    let mut v = v.finish();
    // Advisories come from the TCB info: unknown here, which is not "none".
    v.claims.remove("advisory_ids");
    Ok(v)
}

/// Why a chain ending at another root is refused, naming that root; a root whose CRL
/// lives on Intel's sandbox hosts (`sbx…trustedservices.intel.com`) is Intel's
/// pre-production PKI, which real platforms never chain to.
fn foreign_root(certs: &[X509Certificate], root_der: &[u8]) -> String {
    let Some(root) = certs.last() else {
        return "empty PCK certificate chain".into();
    };
    let mut what = format!(
        "the PCK chain ends at {} (SHA-256 {}), not at the production Intel SGX Root CA",
        root.subject(),
        hex::encode(sha2::Sha256::digest(root_der))
    );
    let sandbox = certs
        .iter()
        .flat_map(crl_urls)
        .find(|u| u.contains("://sbx") && u.contains("trustedservices.intel.com"));
    if let Some(url) = sandbox {
        what.push_str(&format!(
            ": Intel's pre-production (sandbox) PKI, whose CRLs are at {url}"
        ));
    }
    what
}

/// The URIs of a certificate's CRL distribution points.
fn crl_urls(cert: &X509Certificate) -> Vec<String> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    out.extend(names.iter().filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    }));
                }
            }
        }
    }
    out
}

/// ECDSA P-256 with SHA-256; `key` in SEC1 form.
fn verify_ecdsa(key: &[u8], message: &[u8], sig: Option<Signature>) -> Result<(), ()> {
    let key = VerifyingKey::from_sec1_bytes(key).map_err(|_| ())?;
    key.verify(message, &sig.ok_or(())?).map_err(|_| ())
}
