//! A signature server's reply, as the shim's carrier reads it: JSON, base64, PEM and a
//! signature check, all on bytes from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signature_server::client::parse_sign_reply;
use signature_server::Standard;

fuzz_target!(|body: &[u8]| {
    for standard in [Standard::Ed25519, Standard::Pkcs1] {
        let _ = parse_sign_reply(standard, b"signed bytes", body);
    }
});
