//! An enclave manifest shipped in an untrusted image: parsing and verification never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = sim_tee::Manifest::parse(data) {
        let _ = manifest.mr_signer();
        let _ = manifest.verify(b"program");
    }
});
