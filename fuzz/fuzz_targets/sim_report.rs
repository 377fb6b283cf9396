//! A `sim` report from an untrusted peer: parsing and signature checking never panic,
//! and what parses re-encodes to the same bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(report) = sim_tee::Report::parse(data) {
        let _ = report.verify_signature();
        assert_eq!(&report.to_bytes()[..], data);
    }
});
