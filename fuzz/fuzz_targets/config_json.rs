//! A bundle's config.json: parsing and the pre-create checks never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = rune_core::spec::parse(data) {
        let _ = rune_core::spec::check(&spec, std::path::Path::new("/nonexistent-bundle"));
        let _ = rune_core::enclave::config_from_spec(&spec);
    }
});
