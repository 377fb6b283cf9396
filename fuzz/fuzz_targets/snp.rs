//! An SEV-SNP report and a certificate table from an untrusted host: typed errors,
//! never a panic. The report is checked against the real test VCEK.
#![no_main]
use std::sync::OnceLock;

static INPUT: OnceLock<rats::Input> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let input = INPUT.get_or_init(|| {
        let vcek = include_bytes!("../../crates/rats/testdata/test-vcek.der");
        rats::Input {
            report_data: None,
            collateral: Some(rats::Collateral::parse(rats::Tee::SevSnp, vcek).unwrap()),
            now: 1_735_689_600,
        }
    });
    let _ = rats::verify(data, Some(rats::Tee::SevSnp), input);
    let _ = rats::snp::parse_cert_table(data);
    let _ = rats::Collateral::parse(rats::Tee::SevSnp, data);
});
