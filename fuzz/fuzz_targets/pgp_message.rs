//! OpenPGP signed-message bytes into the simple-signing verifier, with a fixed keyring
//! (crates/enclave-image/testdata/policy/README.md says how it was made).
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use enclave_image::policy::{verify_message, Keyring};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        Keyring::from_bytes(include_bytes!("../../crates/enclave-image/testdata/policy/fuzz-pubring.gpg"))
            .expect("fixed keyring parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_message(data, keyring(), SystemTime::UNIX_EPOCH);
    let _ = Keyring::from_bytes(data);
});
