//! DCAP collateral from an untrusted PCCS, read for its validity windows (CRL
//! thisUpdate/nextUpdate, TCB info and QE identity dates, certificate chains) and an
//! arbitrary dcap-qvl error text explained against them: any bytes give reasons or
//! nothing, never a panic. The fixture collateral seeds the corpus by hand
//! (`crates/rats/testdata/*_collateral.json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (head, tail) = data.split_at(data.len().min(64));
    let msg = String::from_utf8_lossy(head);
    let _ = rats::validity::humanise_unix_times(&msg);
    if let Ok(collateral) = rats::dcap::parse_collateral(tail) {
        for now in [0, 1_750_377_600, i64::MAX] {
            let found = rats::validity::dcap_collateral(&collateral, &[tail.to_vec()], now);
            let _ = rats::validity::explain_dcap(&msg, &found, now);
        }
    }
});
