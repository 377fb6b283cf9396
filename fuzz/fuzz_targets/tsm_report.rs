//! configfs-tsm's JSON envelope (`{provider, outblob, auxblob}`) and SEV-SNP PEM
//! bundles from an untrusted peer: typed errors, never a panic. The envelope's outblob
//! is verified as evidence (DCAP offline, SNP with the auxblob as collateral).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Some(report)) = rats::tsm::TsmReport::from_json(data) {
        let _ = report.evidence();
        let _ = report.to_json();
    }
    let _ = rats::snp::SnpCollateral::parse(data);
    let input = rats::Input {
        now: 1_750_377_600,
        ..Default::default()
    };
    let _ = rats::verify(data, None, &input);
});
