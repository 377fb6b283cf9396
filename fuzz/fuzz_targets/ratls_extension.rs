//! The Interoperable RA-TLS evidence and endorsements extensions and the claims, from a
//! peer's certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rats_tls::dice;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = dice::decode_evidence(data) {
        let _ = dice::tee_of(t.tag, t.evidence);
        if let Ok(claims) = dice::decode_claims(t.claims_buffer) {
            if let Some(h) = claims.get(dice::CLAIM_PUBKEY_HASH) {
                let _ = dice::check_pubkey_hash(h, b"spki");
            }
        }
    }
    let _ = dice::decode_claims(data);
    let _ = dice::check_pubkey_hash(data, b"spki");
    let _ = rats_tls::endorsements::decode(data);
});
