//! Registry answers: manifest/index JSON parsing, the Content-Type check, platform
//! selection and image reference parsing never panic (enclave_image::registry).
#![no_main]
use enclave_image::registry::{
    check_content_type, parse_manifest, select_platform, ImageRef, ManifestKind, Platform,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte picks the announced media type, as a Content-Type would.
    let (sel, body) = data.split_first().unwrap_or((&0, data));
    let announced = enclave_image::registry::ACCEPTED_MANIFEST_TYPES.get(*sel as usize % 5);
    // The body's first line as the registry's Content-Type.
    let header = body.split(|b| *b == b'\n').next().map(String::from_utf8_lossy);
    let _ = check_content_type("fuzz", header.as_deref(), body);
    if let Ok(ManifestKind::Index(index)) = parse_manifest("fuzz", announced.copied(), body) {
        let _ = select_platform(&index, &Platform::current());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = ImageRef::parse(s) {
            // Display output must parse back to the same reference.
            assert_eq!(ImageRef::parse(&r.to_string()).ok(), Some(r));
        }
    }
});
