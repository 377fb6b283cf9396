//! containers-policy.json: strict parsing, then scope lookup and evaluation with no
//! signatures (nothing may panic; keys are never read from disk).
#![no_main]

use enclave_image::policy::{Keys, Policy, Signatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::from_bytes(data) {
        let _ = p.key_paths();
        let digest = format!("sha256:{}", "0".repeat(64));
        for image in ["busybox", "127.0.0.1:5000/test/app:v1", "a.example.com/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000"] {
            let _ = p.scope_for(image);
            let _ = p.evaluate(image, &digest, &Signatures::default(), &Keys::fetched_only());
        }
    }
});
