//! A CoRIM as verdictd reads it (a bundle's `corim`, Trustee's `corim` message):
//! decoding never panics, never recurses past its bound, and whatever it accepts has
//! at least one value with a non-empty id.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(values) = reference_values::corim::decode(data) {
        assert!(!values.is_empty());
        assert!(values.iter().all(|v| !v.id.is_empty()));
    }
});
