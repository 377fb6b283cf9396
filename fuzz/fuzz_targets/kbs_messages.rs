//! What a key broker and an agent read from each other: the RCAR messages and the
//! resource JWE, parsed and (for the JWE) decrypted with a fixed key, on bytes from
//! the network.
#![no_main]

use std::sync::OnceLock;

use kbs_protocol::jwe::{check_key, TeeKeyPair};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static TeeKeyPair {
    static KEY: OnceLock<TeeKeyPair> = OnceLock::new();
    KEY.get_or_init(TeeKeyPair::generate)
}

fuzz_target!(|body: &[u8]| {
    let _ = serde_json::from_slice::<kbs_protocol::AuthRequest>(body);
    let _ = serde_json::from_slice::<kbs_protocol::Challenge>(body).map(|c| kbs_protocol::selected_hash(&c));
    if let Ok(a) = serde_json::from_slice::<kbs_protocol::Attestation>(body) {
        let _ = check_key(&a.runtime_data.tee_pubkey);
        let _ = kbs_protocol::binding::digest(
            kbs_protocol::HashAlgorithm::Sha384,
            &a.runtime_data.nonce,
            &a.runtime_data.tee_pubkey,
            &a.tee_evidence.additional_evidence,
        );
        // SEV-SNP evidence in the guest's JSON form, encoded back to the report.
        let _ = kbs_protocol::snp::parse(&a.tee_evidence.primary_evidence);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = kbs_protocol::snp::parse(&v);
    }
    if let Ok(r) = serde_json::from_slice::<kbs_protocol::Response>(body) {
        let _ = key().decrypt(&r);
    }
});
