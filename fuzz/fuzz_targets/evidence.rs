//! Evidence of any type from an untrusted peer (type detection, sim reports, sample
//! JSON) and DCAP collateral JSON: typed errors, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rats::verify(data, None, &rats::Input::default());
    let _ = rats::Collateral::parse(rats::Tee::TdxEcdsa, data);
});
