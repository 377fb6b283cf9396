//! The DCAP collateral cache's keys and lookups (`rats::dcap_cache`) on a quote and
//! collateral from an untrusted peer: the fixture collateral with one field replaced
//! by arbitrary bytes, an arbitrary quote, one of four verification times. Any bytes
//! give a key or none, the same twice, and a verification through a cache warmed with
//! the genuine fixtures gives exactly what a full verification gives (verdict, claims,
//! error text): the cache never accepts what `dcap-qvl` refuses.
//!
//! Input: byte 0 selects the TEE (bit 0), the collateral field replaced (bits 1–4; 9
//! and up replace none) and the time (bits 5–6); bytes 1–2 (u16 LE) are the quote's
//! length; the quote, then the field's bytes. The seeds (`fuzz/seeds/collateral_cache_key`)
//! are the fixture quotes with nothing replaced.
#![no_main]
use std::sync::OnceLock;

use rats::{Collateral, CollateralCache, Input, QuoteCollateralV3, Tee};

const SGX: &[u8] = include_bytes!("../../crates/rats/testdata/sgx_quote_collateral.json");
const TDX: &[u8] = include_bytes!("../../crates/rats/testdata/tdx_quote_collateral.json");
/// Inside both windows, the SGX window's last second and the one after, the epoch.
const TIMES: [u64; 4] = [1_750_377_600, 1_752_919_278, 1_752_919_279, 0];

fn collateral(tee: Tee) -> QuoteCollateralV3 {
    rats::dcap::parse_collateral(if tee == Tee::SgxEcdsa { SGX } else { TDX }).unwrap()
}

fn cache() -> &'static CollateralCache {
    static CACHE: OnceLock<CollateralCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let cache = CollateralCache::new(64);
        for (tee, quote) in [
            (Tee::SgxEcdsa, &include_bytes!("../../crates/rats/testdata/sgx_quote")[..]),
            (Tee::TdxEcdsa, &include_bytes!("../../crates/rats/testdata/tdx_quote")[..]),
        ] {
            let input = Input {
                report_data: None,
                collateral: Some(Collateral::Dcap(Box::new(collateral(tee)))),
                now: TIMES[0],
            };
            rats::verify_with_cache(quote, Some(tee), &input, Some(&cache)).unwrap();
        }
        cache
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let cache = cache();
    let [sel, a, b, rest @ ..] = data else {
        return;
    };
    let tee = if sel & 1 == 0 { Tee::SgxEcdsa } else { Tee::TdxEcdsa };
    let split = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
    let (quote, field) = rest.split_at(split);
    let mut c = collateral(tee);
    let text = || String::from_utf8_lossy(field).into_owned();
    match (sel >> 1) & 0xf {
        0 => c.pck_crl_issuer_chain = text(),
        1 => c.root_ca_crl = field.to_vec(),
        2 => c.pck_crl = field.to_vec(),
        3 => c.tcb_info_issuer_chain = text(),
        4 => c.tcb_info = text(),
        5 => c.tcb_info_signature = field.to_vec(),
        6 => c.qe_identity_issuer_chain = text(),
        7 => c.qe_identity = text(),
        8 => c.qe_identity_signature = field.to_vec(),
        _ => {}
    }
    let root = rats::dcap::INTEL_SGX_ROOT_CA;
    let key = rats::dcap_cache::cache_key(tee, quote, &c, root);
    assert_eq!(key, rats::dcap_cache::cache_key(tee, quote, &c, root));
    let now = TIMES[usize::from((sel >> 5) & 3)];
    if let Some(k) = &key {
        let _ = cache.contains(k, now);
    }
    let input = Input {
        report_data: None,
        collateral: Some(Collateral::Dcap(Box::new(c))),
        now,
    };
    let warm = rats::verify_with_cache(quote, Some(tee), &input, Some(cache));
    let cold = rats::verify_with_cache(quote, Some(tee), &input, None);
    assert_eq!(format!("{warm:?}"), format!("{cold:?}"));
});
