//! A DCAP quote from an untrusted peer, verified against the real SGX collateral: any
//! bytes give a verdict or a typed error, never a panic. The fixture quote seeds the
//! corpus (`fuzz/seeds/dcap_quote`).
#![no_main]
use std::sync::OnceLock;

static INPUT: OnceLock<rats::Input> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let input = INPUT.get_or_init(|| {
        let coll = include_bytes!("../../crates/rats/testdata/sgx_quote_collateral.json");
        rats::Input {
            report_data: None,
            collateral: Some(rats::Collateral::parse(rats::Tee::SgxEcdsa, coll).unwrap()),
            now: 1_750_377_600,
        }
    });
    let _ = rats::verify(data, Some(rats::Tee::SgxEcdsa), input);
    let _ = rats::Tee::detect(data);
    let _ = rats::dcap::quote_pck_claims(data);
});
