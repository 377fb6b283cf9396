//! Verifications per second per core of the real fixtures through `rats::verify`, next
//! to the raw `dcap-qvl` / `sev` call on the same input, interleaved in one run. DCAP
//! quotes are timed cold (no collateral cache: every quote verified in full) and with
//! cached collateral (`rats::verify`'s process-wide cache, warm: the quote's own
//! signatures only); the goal of issue 20 is cached ≥ 4× raw `dcap-qvl`.
//!
//! `cargo run --release -p rats --example verify_bench [RUNS] [BATCH]`: RUNS timed
//! batches (after 5 warm-up batches) of BATCH verifications each; prints a Markdown
//! table of medians, each row's time against its group's raw call.

use std::time::Instant;

use rats::{Collateral, Input, Tee};

const AT: u64 = 1_750_377_600;

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let read = |n: &str| std::fs::read(format!("{dir}/{n}")).unwrap();
    // (name, the raw call's index, the call)
    type Case = (String, usize, Box<dyn Fn()>);
    let mut cases: Vec<Case> = Vec::new();
    for (tee, quote, coll) in [
        (Tee::SgxEcdsa, "sgx_quote", "sgx_quote_collateral.json"),
        (Tee::TdxEcdsa, "tdx_quote", "tdx_quote_collateral.json"),
    ] {
        let q = read(quote);
        let raw: rats::QuoteCollateralV3 = serde_json::from_slice(&read(coll)).unwrap();
        let input = Input {
            report_data: None,
            collateral: Some(Collateral::Dcap(Box::new(raw.clone()))),
            now: AT,
        };
        let raw_at = cases.len() + 2;
        let (q2, input2) = (q.clone(), input.clone());
        cases.push((
            format!("{tee} rats::verify, cold (no cache)"),
            raw_at,
            Box::new(move || {
                rats::verify_with_cache(&q2, Some(tee), &input2, None).unwrap();
            }),
        ));
        let q3 = q.clone();
        rats::verify(&q3, Some(tee), &input).unwrap();
        cases.push((
            format!("{tee} rats::verify, cached collateral"),
            raw_at,
            Box::new(move || {
                rats::verify(&q3, Some(tee), &input).unwrap();
            }),
        ));
        cases.push((
            format!("{tee} dcap-qvl raw"),
            raw_at,
            Box::new(move || {
                dcap_qvl::verify::QuoteVerifier::new(rats::dcap::INTEL_SGX_ROOT_CA.to_vec())
                    .allow_debug(true)
                    .verify(&q, &raw, AT)
                    .unwrap();
            }),
        ));
    }
    {
        use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
        use sev::parser::ByteParser;
        let report = read("test-report.bin");
        let vcek = read("test-vcek.der");
        let input = Input {
            report_data: None,
            collateral: Some(Collateral::parse(Tee::SevSnp, &vcek).unwrap()),
            now: 1_735_689_600,
        };
        let r2 = report.clone();
        let raw_at = cases.len() + 1;
        cases.push((
            "sev_snp rats::verify".into(),
            raw_at,
            Box::new(move || {
                rats::verify(&r2, Some(Tee::SevSnp), &input).unwrap();
            }),
        ));
        cases.push((
            "sev_snp sev raw".into(),
            raw_at,
            Box::new(move || {
                let chain = Chain {
                    ca: ca::Chain {
                        ark: builtin::milan::ark().unwrap(),
                        ask: builtin::milan::ask().unwrap(),
                    },
                    vek: Certificate::from_der(&vcek).unwrap(),
                };
                let vek = (&chain).verify().unwrap();
                let parsed = sev::firmware::guest::AttestationReport::from_bytes(&report).unwrap();
                (vek, &parsed).verify().unwrap();
            }),
        ));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..runs + 5 {
        for (i, (_, _, f)) in cases.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            let per = start.elapsed().as_secs_f64() / batch as f64;
            if round >= 5 {
                times[i].push(per);
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\n### evidence verification: real fixtures, one core\n");
    println!(
        "{runs} batches of {batch} after 5 warm-up batches, interleaved; load average {}\n",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("| verification | median µs | verifications/s | time / raw | speed × raw |");
    println!("|---|---:|---:|---:|---:|");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    for (i, (name, raw, _)) in cases.iter().enumerate() {
        println!(
            "| {name} | {:.1} | {:.0} | {:.3} | {:.2} |",
            medians[i] * 1e6,
            1.0 / medians[i],
            medians[i] / medians[*raw],
            medians[*raw] / medians[i]
        );
    }
    let stats = rats::CollateralCache::global().stats();
    println!(
        "\ncollateral cache: {} hits, {} misses, {} entries (the cached rows' quotes were \
         verified from it; the cold rows bypass it)",
        stats.hits, stats.misses, stats.len
    );
}
