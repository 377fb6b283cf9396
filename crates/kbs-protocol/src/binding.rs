//! Binding evidence to a session: the report data an attester must put in its
//! evidence, and a broker must find there.
//!
//! `report_data = H(JCS({"additional-evidence": s, "nonce": n, "tee-pubkey": jwk}))`
//! with `H` the challenge's hash (SHA-384 by default) and JCS the RFC 8785 canonical
//! JSON. Hardware report fields are wider than the digest: it is zero-padded to them
//! (48 bytes and 16 zeros in SGX/TDX/sim's 64 bytes). The `sample` TEE carries the bare
//! digest.

use crate::{HashAlgorithm, ProtocolError, TeePubKey};

/// The runtime-data object the digest is taken over.
pub fn runtime_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> serde_json::Value {
    serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    })
}

/// `H(JCS(runtime_data))`: the digest an attester binds into its evidence.
pub fn digest(
    hash: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>, ProtocolError> {
    let canonical =
        serde_json_canonicalizer::to_vec(&runtime_data(nonce, tee_pubkey, additional_evidence))
            .map_err(|e| ProtocolError::Malformed(format!("runtime data: {e}")))?;
    Ok(hash.digest(&canonical))
}

/// The digest zero-padded to the 64 bytes of an SGX, TDX or `sim` report.
pub fn report_data_64(digest: &[u8]) -> Result<[u8; 64], ProtocolError> {
    if digest.len() > 64 {
        return Err(ProtocolError::Unsupported(format!(
            "a {}-byte digest does not fit 64 bytes of report data",
            digest.len()
        )));
    }
    let mut out = [0u8; 64];
    out[..digest.len()].copy_from_slice(digest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "xx".into(),
            y: "yy".into(),
        }
    }

    #[test]
    fn digest_is_sha384_over_canonical_json() {
        let d = digest(HashAlgorithm::Sha384, "bm9uY2U=", &key(), "").unwrap();
        // Sorted keys, no whitespace: what both Trustee (JCS) and the stock client
        // (serde_json over a sorted map) hash.
        let expected = r#"{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"xx","y":"yy"}}"#;
        assert_eq!(d, sha2::Sha384::digest(expected.as_bytes()).to_vec());
        assert_eq!(d.len(), 48);
        assert_ne!(
            d,
            digest(HashAlgorithm::Sha384, "other", &key(), "").unwrap()
        );
    }

    #[test]
    fn padding() {
        let p = report_data_64(&[7u8; 48]).unwrap();
        assert_eq!(&p[..48], &[7u8; 48]);
        assert_eq!(&p[48..], &[0u8; 16]);
        assert!(report_data_64(&[0u8; 65]).is_err());
    }
}
