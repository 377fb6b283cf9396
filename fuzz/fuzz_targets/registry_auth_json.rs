//! containers-auth.json (registry credentials, a KBS resource): parsing and the
//! credential lookup for a few references (nothing may panic).
#![no_main]

use enclave_image::registry::{credentials_from_auth_file, ImageRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for image in ["busybox", "127.0.0.1:5000/test/app:v1", "quay.io/ns/app"] {
        let r = ImageRef::parse(image).expect("a valid reference");
        let _ = credentials_from_auth_file("fuzz", data, &r);
    }
});
