//! What a collateral service (PCS, PCCS, KDS) answers: the HTTP response, its
//! URL-encoded issuer-chain headers, the signed JSON documents, the CRL forms and
//! the KDS's PEM certificate chains.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    if let Ok(r) = rats::fetch::parse_response(raw) {
        for (_, v) in &r.headers {
            let _ = rats::fetch::percent_decode(v);
        }
        let _ = rats::dcap::split_signed_document(&r.body, "tcbInfo");
        let _ = rats::dcap::split_signed_document(&r.body, "enclaveIdentity");
        let _ = rats::dcap::crl_der(&r.body);
        let _ = rats::fetch::pem_certificates(&r.body);
    }
});
