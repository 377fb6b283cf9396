//! Signature payload JSON (simple signing and cosign) and cosign signature manifests.
#![no_main]

use enclave_image::policy::{cosign_signature_layers, parse_payload, COSIGN_TYPE, SIMPLE_SIGNING_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_payload(data, SIMPLE_SIGNING_TYPE);
    let _ = parse_payload(data, COSIGN_TYPE);
    let _ = cosign_signature_layers(data);
});
