//! The endorsements extension (`tcg-dice-endorsement-manifest`, 2.23.133.5.4.2) for
//! Intel quotes: the DCAP collateral a verifier needs, carried in the certificate so
//! that a verifier without network access to Intel's PCS or a PCCS can still check
//! the quote.
//!
//! The value is `60000([version, tcb_info, tcb_issuer_chain, crl_pck_cert,
//! crl_pck_proc_ca, crl_issuer_chain_pck_cert, qe_id_info, qe_id_issuer_chain,
//! (creation_datetime)])`, every entry after the version a byte string, in Open
//! Enclave's `oe_sgx_endorsements_fields_t` order (the mapping of CCC
//! interoperable-ra-tls issue 3). Entries are what Intel's QPL hands out in
//! `sgx_ql_qve_collateral_t`: NUL-terminated strings, `tcb_info` and `qe_id_info`
//! the whole signed JSON documents (`{"tcbInfo":…,"signature":…}`).
//!
//! Trust: nothing here is trusted because the peer sent it. Every document is signed
//! by Intel and checked up to the pinned Intel SGX Root CA by the quote verifier, so
//! the worst a forged entry can do is make the verification fail.

use rats::dcap::{crl_pem, signed_document};
use rats::QuoteCollateralV3;

use crate::dice::{self, Reader};
use crate::RaTlsError;

/// The collateral version emitted (`sgx_ql_qve_collateral_t` 3.0: CRLs as PEM).
pub const VERSION: u64 = 3;

/// Encodes DCAP collateral as the extension's value.
pub fn encode(c: &QuoteCollateralV3) -> Vec<u8> {
    let tcb_info = signed_document("tcbInfo", &c.tcb_info, &c.tcb_info_signature);
    let qe_identity = signed_document("enclaveIdentity", &c.qe_identity, &c.qe_identity_signature);
    let entries: [Vec<u8>; 7] = [
        nul_terminated(&tcb_info),
        nul_terminated(&c.tcb_info_issuer_chain),
        nul_terminated(&crl_pem(&c.pck_crl)),
        nul_terminated(&crl_pem(&c.root_ca_crl)),
        nul_terminated(&c.pck_crl_issuer_chain),
        nul_terminated(&qe_identity),
        nul_terminated(&c.qe_identity_issuer_chain),
    ];
    let mut out = Vec::with_capacity(entries.iter().map(Vec::len).sum::<usize>() + 32);
    dice::header(&mut out, 6, dice::TAG_INTEL_QUOTE);
    dice::header(&mut out, 4, 8);
    dice::header(&mut out, 0, VERSION);
    for e in &entries {
        dice::header(&mut out, 2, e.len() as u64);
        out.extend_from_slice(e);
    }
    out
}

/// Decodes the extension's value. `None` for an empty extension, which rats-rs emits
/// to mean "no endorsements".
pub fn decode(value: &[u8]) -> Result<Option<QuoteCollateralV3>, RaTlsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::new(value);
    let tag = r.expect(6, "endorsements: a tag")?;
    if tag != dice::TAG_INTEL_QUOTE {
        return Err(RaTlsError::Extension(format!(
            "endorsements: tag {tag}; only Intel quote collateral (tag 60000) is defined"
        )));
    }
    let n = r.expect(4, "endorsements: an array")?;
    if n != 8 && n != 9 {
        return Err(RaTlsError::Extension(format!(
            "endorsements: an array of {n}, not 8 or 9 entries"
        )));
    }
    // The version says how Intel's library laid the entries out; the decoding below
    // accepts every layout, so it is read and not judged.
    r.expect(0, "endorsements: a version number")?;
    let mut entry = |what: &str| -> Result<&[u8], RaTlsError> {
        Ok(strip_nul(r.bytes(&format!("endorsements: {what}"))?))
    };
    let tcb_info = entry("tcb_info")?;
    let tcb_info_issuer_chain = text(entry("tcb_issuer_chain")?, "tcb_issuer_chain")?;
    let pck_crl = crl_der(entry("crl_pck_cert")?, "crl_pck_cert")?;
    let root_ca_crl = crl_der(entry("crl_pck_proc_ca")?, "crl_pck_proc_ca")?;
    let pck_crl_issuer_chain = text(
        entry("crl_issuer_chain_pck_cert")?,
        "crl_issuer_chain_pck_cert",
    )?;
    let qe_id_info = entry("qe_id_info")?;
    let qe_identity_issuer_chain = text(entry("qe_id_issuer_chain")?, "qe_id_issuer_chain")?;
    if n == 9 {
        entry("creation_datetime")?;
    }
    r.end("endorsements")?;
    let (tcb_info, tcb_info_signature) = split_signed(tcb_info, "tcbInfo")?;
    let (qe_identity, qe_identity_signature) = split_signed(qe_id_info, "enclaveIdentity")?;
    Ok(Some(QuoteCollateralV3 {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        // The quote carries the PCK chain (certification data type 5).
        pck_certificate_chain: None,
    }))
}

fn split_signed(doc: &[u8], body: &str) -> Result<(String, Vec<u8>), RaTlsError> {
    rats::dcap::split_signed_document(doc, body)
        .map_err(|e| RaTlsError::Extension(format!("endorsements: {e}")))
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

fn strip_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    &b[..end]
}

fn text(b: &[u8], what: &str) -> Result<String, RaTlsError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| RaTlsError::Extension(format!("endorsements: {what} is not text")))
}

fn crl_der(b: &[u8], what: &str) -> Result<Vec<u8>, RaTlsError> {
    rats::dcap::crl_der(b).map_err(|e| RaTlsError::Extension(format!("endorsements: {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collateral() -> QuoteCollateralV3 {
        let json = std::fs::read(format!(
            "{}/../rats/testdata/sgx_quote_collateral.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    fn same(a: &QuoteCollateralV3, b: &QuoteCollateralV3) {
        assert_eq!(a.tcb_info, b.tcb_info);
        assert_eq!(a.tcb_info_signature, b.tcb_info_signature);
        assert_eq!(a.qe_identity, b.qe_identity);
        assert_eq!(a.qe_identity_signature, b.qe_identity_signature);
        assert_eq!(a.pck_crl, b.pck_crl);
        assert_eq!(a.root_ca_crl, b.root_ca_crl);
        assert_eq!(a.pck_crl_issuer_chain, b.pck_crl_issuer_chain);
        assert_eq!(a.tcb_info_issuer_chain, b.tcb_info_issuer_chain);
        assert_eq!(a.qe_identity_issuer_chain, b.qe_identity_issuer_chain);
    }

    #[test]
    fn real_collateral_round_trips_byte_for_byte() {
        let c = collateral();
        let value = encode(&c);
        // d9 ea 60 (tag 60000), 88 (array of 8), 03 (version 3).
        assert_eq!(&value[..5], &[0xd9, 0xea, 0x60, 0x88, 0x03]);
        same(&decode(&value).unwrap().unwrap(), &c);
        assert!(decode(&[]).unwrap().is_none());
    }

    #[test]
    fn every_crl_form_intel_uses_is_read() {
        let der = collateral().pck_crl;
        let pem = crl_pem(&der);
        assert_eq!(crl_der(pem.as_bytes(), "t").unwrap(), der);
        assert_eq!(crl_der(hex::encode(&der).as_bytes(), "t").unwrap(), der);
        assert_eq!(crl_der(&der, "t").unwrap(), der);
        assert!(crl_der(b"-----BEGIN X509 CRL-----\nAAAA", "t").is_err());
        assert!(crl_der(b"zz", "t").is_err());
    }

    #[test]
    fn malformed_endorsements_are_refused_with_a_reason() {
        let good = encode(&collateral());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 3].to_vec(), "past the end"),
            ([good.clone(), vec![0]].concat(), "after the end"),
            // Another tag.
            (
                [&[0xda, 0x00, 0x1a, 0x75, 0x04][..], &good[3..]].concat(),
                "tag",
            ),
            // An array of 2.
            (vec![0xd9, 0xea, 0x60, 0x82, 0x03, 0x40], "array of 2"),
            // A version that is not a number.
            ([&good[..4], &[0x40][..], &good[5..]].concat(), "version"),
        ];
        for (bytes, want) in cases {
            let err = decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // A tcb_info that is not the signed document.
        let mut v = Vec::new();
        dice::header(&mut v, 6, dice::TAG_INTEL_QUOTE);
        dice::header(&mut v, 4, 8);
        dice::header(&mut v, 0, 3);
        for e in [&b"[]"[..], b"", b"", b"", b"", b"", b""] {
            dice::header(&mut v, 2, e.len() as u64);
            v.extend_from_slice(e);
        }
        assert!(decode(&v).unwrap_err().to_string().contains("tcbInfo"));
    }
}
