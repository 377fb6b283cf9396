//! A whole peer certificate, as the TLS verifier checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let appraisal = rats_tls::Appraisal {
        policy: rats::Policy {
            allow_software_tees: true,
            ..Default::default()
        },
        collateral: None,
        now: Some(1_700_000_000),
    };
    let _ = rats_tls::verify(data, &appraisal, None);
    let _ = rats_tls::verify(data, &appraisal, Some(b"nonce"));
});
