//! Where a DCAP verification's time goes: the raw `dcap-qvl` call and `rats::verify`
//! (cold, no collateral cache) on the SGX and TDX fixtures, next to the pieces
//! `dcap-qvl`'s `verify_impl` is made of, each timed alone on the same input.
//!
//! `cargo run --release -p rats --example dcap_profile [RUNS]`: medians of RUNS batches
//! (after 5 warm-up batches). `… dcap_profile loop sgx|tdx N [rats]` only calls
//! `dcap-qvl` (or `rats::verify` without cache) N times, for `perf record`. The pieces are timed with the public crates `dcap-qvl`
//! builds on (its own steps are private), so their sum is an estimate; the table says
//! how much of the raw call it explains. ECDSA verifications are counted per purpose
//! as `verify_impl` does them (dcap-qvl 0.7.1 `src/verify.rs`, its webpki fork verifying
//! the root CA CRL once at parse and the PCK CRL once per chain).

use std::time::Instant;

use dcap_qvl::quote::Quote;
use rats::{Collateral, Input, Tee};
use x509_parser::prelude::*;

const AT: u64 = 1_750_377_600;

fn median(f: &mut dyn FnMut(), runs: usize, batch: usize) -> f64 {
    let mut t = Vec::with_capacity(runs);
    for round in 0..runs + 5 {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if round >= 5 {
            t.push(start.elapsed().as_secs_f64() / batch as f64);
        }
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn pem_ders(pem: &[u8]) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem)
        .map(|p| p.unwrap().contents)
        .collect()
}

fn key_of(der: &[u8]) -> Vec<u8> {
    let (_, c) = X509Certificate::from_der(der).unwrap();
    c.public_key().subject_public_key.data.to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let read = |n: &str| std::fs::read(format!("{dir}/{n}")).unwrap();
    if args.first().map(String::as_str) == Some("loop") {
        let tee = args.get(1).map_or("sgx", String::as_str);
        let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
        let q = read(&format!("{tee}_quote"));
        let c: rats::QuoteCollateralV3 =
            serde_json::from_slice(&read(&format!("{tee}_quote_collateral.json"))).unwrap();
        if args.get(3).map(String::as_str) == Some("rats") {
            let input = Input {
                report_data: None,
                collateral: Some(Collateral::Dcap(Box::new(c))),
                now: AT,
            };
            for _ in 0..n {
                rats::verify_with_cache(&q, None, &input, None).unwrap();
            }
            return;
        }
        for _ in 0..n {
            dcap_qvl::verify::QuoteVerifier::new(rats::dcap::INTEL_SGX_ROOT_CA.to_vec())
                .allow_debug(true)
                .verify(&q, &c, AT)
                .unwrap();
        }
        return;
    }
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    for (tee, quote, coll) in [
        (Tee::SgxEcdsa, "sgx_quote", "sgx_quote_collateral.json"),
        (Tee::TdxEcdsa, "tdx_quote", "tdx_quote_collateral.json"),
    ] {
        let q = read(quote);
        let c: rats::QuoteCollateralV3 = serde_json::from_slice(&read(coll)).unwrap();
        let input = Input {
            report_data: None,
            collateral: Some(Collateral::Dcap(Box::new(c.clone()))),
            now: AT,
        };
        let parsed = Quote::parse(&q).unwrap();
        let auth = parsed.auth_data.clone().into_v3();
        let pck_chain = dcap_qvl::intel::extract_cert_chain(&parsed).unwrap();
        let tcb_chain = pem_ders(c.tcb_info_issuer_chain.as_bytes());
        let root = rats::dcap::INTEL_SGX_ROOT_CA;
        let ak = {
            let mut k = vec![4u8];
            k.extend_from_slice(&auth.ecdsa_attestation_key);
            k
        };
        let pck_key = key_of(&pck_chain[0]);
        let tcb_key = key_of(&tcb_chain[0]);
        let root_key = key_of(root);
        let pck_ca_key = key_of(&pck_chain[1]);
        // dcap-qvl's own verifier (RustCrypto p256 through its webpki fork), DER signatures.
        let backend = dcap_qvl::verify::rustcrypto::backend();
        let raw_sig = |b: &[u8]| (backend.encode_ecdsa)(b).unwrap();
        let ecdsa = |key: &[u8], msg: &[u8], sig: &Vec<u8>| {
            backend.sig_algo.verify_signature(key, msg, sig).unwrap()
        };
        let cert_sig = |der: &[u8]| {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            (
                cert.tbs_certificate.as_ref().to_vec(),
                cert.signature_value.data.to_vec(),
            )
        };
        let (tcb_tbs, tcb_cert_sig) = cert_sig(&tcb_chain[0]);
        let (leaf_tbs, leaf_sig) = cert_sig(&pck_chain[0]);
        let (ca_tbs, ca_sig) = cert_sig(&pck_chain[1]);
        let crl_sig = |der: &[u8]| {
            let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
            (
                crl.tbs_cert_list.as_ref().to_vec(),
                crl.signature_value.data.to_vec(),
            )
        };
        let (root_crl_tbs, root_crl_sig) = crl_sig(&c.root_ca_crl);
        let (pck_crl_tbs, pck_crl_sig) = crl_sig(&c.pck_crl);
        let tcb_info_sig = raw_sig(&c.tcb_info_signature);
        let qe_id_sig = raw_sig(&c.qe_identity_signature);
        let qe_report_sig = raw_sig(&auth.qe_report_signature);
        let isv_sig = raw_sig(&auth.ecdsa_signature);
        let signed = q[..parsed.signed_length()].to_vec();

        let batch = 20;
        let mut rows: Vec<(&str, &str, f64)> = Vec::new();
        let raw = median(
            &mut || {
                dcap_qvl::verify::QuoteVerifier::new(root.to_vec())
                    .allow_debug(true)
                    .verify(&q, &c, AT)
                    .unwrap();
            },
            runs,
            batch,
        );
        let cold = median(
            &mut || {
                rats::verify_with_cache(&q, Some(tee), &input, None).unwrap();
            },
            runs,
            batch,
        );
        let cache = rats::CollateralCache::new(4);
        let cached = median(
            &mut || {
                rats::verify_with_cache(&q, Some(tee), &input, Some(&cache)).unwrap();
            },
            runs,
            batch,
        );
        let mut t = |group: &'static str, what: &'static str, f: &mut dyn FnMut()| {
            let m = median(f, runs, batch);
            rows.push((group, what, m));
        };
        t("collateral", "ECDSA: root CA CRL signature", &mut || {
            ecdsa(&root_key, &root_crl_tbs, &root_crl_sig)
        });
        t("collateral", "ECDSA: TCB signing cert by root", &mut || {
            ecdsa(&root_key, &tcb_tbs, &tcb_cert_sig)
        });
        t("collateral", "ECDSA: TCB info signature", &mut || {
            ecdsa(&tcb_key, c.tcb_info.as_bytes(), &tcb_info_sig)
        });
        t("collateral", "ECDSA: QE identity signature", &mut || {
            ecdsa(&tcb_key, c.qe_identity.as_bytes(), &qe_id_sig)
        });
        t("collateral", "ECDSA: PCK CRL signature", &mut || {
            ecdsa(&pck_ca_key, &pck_crl_tbs, &pck_crl_sig)
        });
        t("collateral", "JSON: TCB info", &mut || {
            serde_json::from_str::<dcap_qvl::TcbInfo>(&c.tcb_info).unwrap();
        });
        t("collateral", "JSON: QE identity", &mut || {
            serde_json::from_str::<dcap_qvl::QeIdentity>(&c.qe_identity).unwrap();
        });
        t("collateral", "DER: both CRLs parsed", &mut || {
            CertificateRevocationList::from_der(&c.root_ca_crl).unwrap();
            CertificateRevocationList::from_der(&c.pck_crl).unwrap();
        });
        t("collateral", "PEM+DER: TCB/QE issuer chains", &mut || {
            for pem in [&c.tcb_info_issuer_chain, &c.qe_identity_issuer_chain] {
                for der in pem_ders(pem.as_bytes()) {
                    X509Certificate::from_der(&der).unwrap();
                }
            }
        });
        t("PCK chain", "ECDSA: PCK CA cert by root", &mut || {
            ecdsa(&root_key, &ca_tbs, &ca_sig)
        });
        t("PCK chain", "ECDSA: PCK cert by PCK CA", &mut || {
            ecdsa(&pck_ca_key, &leaf_tbs, &leaf_sig)
        });
        t("PCK chain", "PEM+DER: quote's PCK chain", &mut || {
            for der in dcap_qvl::intel::extract_cert_chain(&parsed).unwrap() {
                X509Certificate::from_der(&der).unwrap();
            }
        });
        t("PCK chain", "PCK SGX extension", &mut || {
            dcap_qvl::intel::parse_pck_extension(&pck_chain[0]).unwrap();
        });
        t("quote", "ECDSA: QE report by PCK key", &mut || {
            ecdsa(&pck_key, &auth.qe_report, &qe_report_sig)
        });
        t("quote", "ECDSA: quote by attestation key", &mut || {
            ecdsa(&ak, &signed, &isv_sig)
        });
        t(
            "fast path",
            "ECDSA (ring): QE report by PCK key",
            &mut || {
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    &pck_key,
                )
                .verify(&auth.qe_report, &auth.qe_report_signature)
                .unwrap()
            },
        );
        t(
            "fast path",
            "ECDSA (ring): quote by attestation key",
            &mut || {
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    &ak,
                )
                .verify(&signed, &auth.ecdsa_signature)
                .unwrap()
            },
        );
        t("quote", "quote parse", &mut || {
            Quote::parse(&q).unwrap();
        });

        println!("\n### {tee}: where a cold verification goes (one core, medians of {runs})\n");
        println!(
            "raw dcap-qvl: {:.0} µs; rats::verify without cache: {:.0} µs (rats's own share \
             {:.0} µs); with cached collateral: {:.0} µs ({:.1}× raw)\n",
            raw * 1e6,
            cold * 1e6,
            (cold - raw) * 1e6,
            cached * 1e6,
            raw / cached
        );
        println!("| group | piece | µs | share of raw |");
        println!("|---|---|---:|---:|");
        let mut groups: Vec<(&str, f64)> = Vec::new();
        for (g, what, m) in &rows {
            println!(
                "| {g} | {what} | {:.1} | {:.1}% |",
                m * 1e6,
                100.0 * m / raw
            );
            match groups.iter_mut().find(|(n, _)| n == g) {
                Some((_, s)) => *s += m,
                None => groups.push((g, *m)),
            }
        }
        // The fast path's own pieces are not part of the raw call.
        let sum: f64 = groups
            .iter()
            .filter(|(g, _)| *g != "fast path")
            .map(|(_, s)| s)
            .sum();
        for (g, s) in &groups {
            println!(
                "| **{g}** | (sum) | {:.1} | {:.1}% |",
                s * 1e6,
                100.0 * s / raw
            );
        }
        println!(
            "| | rest of the raw call (allocation, path building, CRL lookups, TCB matching) | {:.1} | {:.1}% |",
            (raw - sum) * 1e6,
            100.0 * (raw - sum) / raw
        );
    }
}
