//! The DCAP collateral cache (`rats::dcap_cache`): a quote verified from a warm cache
//! gets exactly the verdict, claims and error it gets verified in full, for the real
//! fixtures (testdata/README.md) and every forgery the other tests make of them; an
//! entry is never used outside its collateral's window, never made from a failed
//! verification, and the cache stays bounded and shareable between threads.

use rats::dcap_cache::{cache_key, CacheStats};
use rats::{verify_with_cache, Collateral, CollateralCache, Input, RatsError, Tee, Verified};

/// 2025-06-20T00:00:00Z: inside both DCAP collateral windows.
const IN_WINDOW: u64 = 1_750_377_600;
/// The SGX collateral's window (testdata/README.md): the latest issue date
/// 2025-06-19T10:56:11Z, the earliest next update (the QE identity's)
/// 2025-07-19T10:01:18Z.
const SGX_FROM: u64 = 1_750_330_571;
const SGX_UNTIL: u64 = 1_752_919_278;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn input(tee: Tee, collateral: &str, now: u64) -> Input {
    Input {
        report_data: None,
        collateral: Some(Collateral::parse(tee, &data(collateral)).unwrap()),
        now,
    }
}

fn sgx(now: u64) -> Input {
    input(Tee::SgxEcdsa, "sgx_quote_collateral.json", now)
}

fn tdx(now: u64) -> Input {
    input(Tee::TdxEcdsa, "tdx_quote_collateral.json", now)
}

fn cold(q: &[u8], i: &Input) -> Result<Verified, RatsError> {
    verify_with_cache(q, None, i, None)
}

/// `q` verified through `cache` gives what it gives in full, error text included.
fn same(cache: &CollateralCache, q: &[u8], i: &Input) -> Result<Verified, RatsError> {
    let warm = verify_with_cache(q, None, i, Some(cache));
    assert_eq!(format!("{warm:?}"), format!("{:?}", cold(q, i)));
    warm
}

fn warmed() -> CollateralCache {
    let cache = CollateralCache::new(16);
    verify_with_cache(&data("sgx_quote"), None, &sgx(IN_WINDOW), Some(&cache)).unwrap();
    verify_with_cache(&data("tdx_quote"), None, &tdx(IN_WINDOW), Some(&cache)).unwrap();
    assert_eq!(cache.stats().inserts, 2);
    cache
}

#[test]
fn a_warm_cache_gives_the_fixtures_their_claims() {
    let cache = CollateralCache::new(16);
    for (q, i, status) in [
        (
            data("sgx_quote"),
            sgx(IN_WINDOW),
            "ConfigurationAndSWHardeningNeeded",
        ),
        (data("tdx_quote"), tdx(IN_WINDOW), "UpToDate"),
    ] {
        let full = cold(&q, &i).unwrap();
        let before = cache.stats();
        let first = verify_with_cache(&q, None, &i, Some(&cache)).unwrap();
        let second = verify_with_cache(&q, None, &i, Some(&cache)).unwrap();
        let after = cache.stats();
        assert_eq!(
            (after.inserts - before.inserts, after.hits - before.hits),
            (1, 1)
        );
        assert_eq!(first, full);
        assert_eq!(second, full);
        // The fixture's expected status (testdata/README.md), and every collateral claim.
        assert_eq!(second.tcb_status.as_deref(), Some(status));
        assert!(second.claims.contains_key("dcap_earliest_expiration_date"));
        assert_eq!(
            second.claims["dcap_revocation_checked"].canonical(),
            ["true"]
        );
    }
    assert_eq!(
        cold(&data("sgx_quote"), &sgx(IN_WINDOW))
            .unwrap()
            .advisory_ids,
        ["INTEL-SA-00289", "INTEL-SA-00615"]
    );

    // The report data is the caller's: a hit checks it as a full verification does.
    let q = data("sgx_quote");
    let mut i = sgx(IN_WINDOW);
    i.report_data = Some([0xee; 64]);
    let hits = cache.stats().hits;
    assert!(matches!(
        same(&cache, &q, &i).unwrap_err(),
        RatsError::ReportDataMismatch { .. }
    ));
    assert_eq!(cache.stats().hits, hits + 1);
}

/// Every forgery `fixtures.rs` and `dcap_interop.rs` make, after the genuine quotes
/// warmed the cache: refused as in full, with the same error, and nothing cached.
#[test]
fn a_warm_cache_refuses_every_forgery_as_before() {
    let cache = warmed();
    let q = data("sgx_quote");
    let good = sgx(IN_WINDOW);
    let flipped = |at: usize| {
        let mut f = q.clone();
        f[at] ^= 1;
        f
    };
    // SGX quote v3 layout (Intel's `sgx_quote_3.h`): header 0..48, report body
    // 48..432, signature data length, the quote's signature 436..500, the attestation
    // key 500..564, the QE report 564..948, its signature 948..1012, the QE
    // authentication data (length at 1012), then the certification data.
    let keeps_the_key = [
        48 + 320 + 5,  // the report data: only the quote's signature covers it
        436 + 3,       // the quote's signature
        500 + 7,       // the attestation key: the QE report no longer binds it
        564 + 320 + 1, // the QE report's report data
        948 + 5,       // the QE report's signature
        1014 + 2,      // the QE authentication data
    ];
    let before = cache.stats();
    for at in keeps_the_key {
        let f = flipped(at);
        let i = good.clone();
        let Some(Collateral::Dcap(c)) = &i.collateral else {
            unreachable!()
        };
        let key = cache_key(Tee::SgxEcdsa, &f, c, rats::dcap::INTEL_SGX_ROOT_CA).unwrap();
        assert!(cache.contains(&key, IN_WINDOW), "byte {at} changes the key");
        let e = same(&cache, &f, &i).unwrap_err();
        assert!(matches!(e, RatsError::Signature { .. }), "byte {at}: {e}");
    }
    let after = cache.stats();
    // Each was found, failed its own checks, and was verified in full.
    assert_eq!(after.rejected - before.rejected, keeps_the_key.len() as u64);
    assert_eq!(after.hits, before.hits);

    // fixtures.rs's flips: header, body, QE report, PCK certificate.
    for (at, chain) in [
        (10, false),
        (100, false),
        (500, false),
        (700, false),
        (2000, true),
    ] {
        let e = same(&cache, &flipped(at), &good).unwrap_err();
        if chain {
            assert!(matches!(e, RatsError::CertificateChain { .. }), "{at}: {e}");
        } else {
            assert!(matches!(e, RatsError::Signature { .. }), "{at}: {e}");
        }
    }
    // Forged collateral.
    let Some(Collateral::Dcap(c)) = good.collateral.clone() else {
        unreachable!()
    };
    let with = |f: &dyn Fn(&mut rats::QuoteCollateralV3)| {
        let mut c = c.clone();
        f(&mut c);
        same(
            &cache,
            &q,
            &Input {
                collateral: Some(Collateral::Dcap(c)),
                ..good.clone()
            },
        )
        .unwrap_err()
    };
    assert!(matches!(
        with(&|c| c.tcb_info_signature[3] ^= 1),
        RatsError::Signature { .. }
    ));
    assert!(matches!(
        with(&|c| c.tcb_info = c.tcb_info.replacen("17", "18", 1)),
        RatsError::Signature { .. }
    ));
    assert!(matches!(
        with(&|c| c.qe_identity_signature[5] ^= 1),
        RatsError::Signature { .. }
    ));
    assert!(matches!(
        with(&|c| c.pck_crl[50] ^= 1),
        RatsError::CertificateChain { .. }
    ));
    // Another platform's collateral, both ways.
    for (quote, i) in [
        (
            data("sgx_quote"),
            input(Tee::SgxEcdsa, "tdx_quote_collateral.json", IN_WINDOW),
        ),
        (
            data("tdx_quote"),
            input(Tee::TdxEcdsa, "sgx_quote_collateral.json", IN_WINDOW),
        ),
    ] {
        let e = same(&cache, &quote, &i).unwrap_err();
        assert!(matches!(e, RatsError::Collateral { .. }), "{e}");
    }
    // TDX: body and signature.
    let t = data("tdx_quote");
    for at in [200, 700] {
        let mut f = t.clone();
        f[at] ^= 1;
        let e = same(&cache, &f, &tdx(IN_WINDOW)).unwrap_err();
        assert!(matches!(e, RatsError::Signature { .. }), "{at}: {e}");
    }
    // Truncated quotes.
    for len in [0, 8, 48, 436, 1000, 4599] {
        let tee = Some(Tee::SgxEcdsa);
        let e = verify_with_cache(&q[..len], tee, &good, Some(&cache)).unwrap_err();
        let full = verify_with_cache(&q[..len], tee, &good, None).unwrap_err();
        assert_eq!(e.to_string(), full.to_string());
        assert!(matches!(e, RatsError::Malformed { .. }), "{len}: {e}");
    }

    // No failure was cached, and the genuine quotes still verify from the cache.
    let end = cache.stats();
    assert_eq!((end.inserts, end.len), (2, 2));
    same(&cache, &q, &good).unwrap();
    same(&cache, &t, &tdx(IN_WINDOW)).unwrap();
    assert_eq!(cache.stats().hits, end.hits + 2);
}

#[test]
fn an_entry_is_not_used_outside_its_window() {
    let cache = warmed();
    let q = data("sgx_quote");
    let hits = cache.stats().hits;
    // One second after the QE identity's nextUpdate: refused as before, with the
    // message fixtures.rs expects.
    let e = same(&cache, &q, &sgx(SGX_UNTIL + 1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sgx_ecdsa evidence: collateral expired: the QE identity's nextUpdate \
         2025-07-19T10:01:18Z is before the verification time 2025-07-19T10:01:19Z"
    );
    let late = same(&cache, &q, &sgx(IN_WINDOW + 365 * 86_400)).unwrap_err();
    assert!(
        matches!(late, RatsError::CollateralExpired { .. }),
        "{late}"
    );
    let late = same(&cache, &data("tdx_quote"), &tdx(IN_WINDOW + 365 * 86_400)).unwrap_err();
    assert!(
        matches!(late, RatsError::CollateralExpired { .. }),
        "{late}"
    );
    // Before the latest issue date, and at the nextUpdate itself: whatever the full
    // verification says, from it.
    let early = same(&cache, &q, &sgx(SGX_FROM - 1));
    let at_end = same(&cache, &q, &sgx(SGX_UNTIL));
    assert_eq!(cache.stats().hits, hits, "{early:?} {at_end:?}");
    // Inside the window, the entry serves again, at either edge.
    same(&cache, &q, &sgx(SGX_FROM)).unwrap();
    same(&cache, &q, &sgx(SGX_UNTIL - 1)).unwrap();
    assert_eq!(cache.stats().hits, hits + 2);
    // Nothing was added for the failures.
    assert_eq!(
        cache.stats().inserts,
        2 + u64::from(at_end.is_ok()) + u64::from(early.is_ok())
    );
}

#[test]
fn collateral_carrying_its_own_pck_chain_is_verified_in_full() {
    // dcap-qvl prefers the collateral's `pck_certificate_chain` over the quote's: the
    // fast path, which reads the quote's, leaves such collateral alone.
    let cache = CollateralCache::new(16);
    let q = data("tdx_quote_td15ex");
    let i = input(
        Tee::TdxEcdsa,
        "tdx_quote_td15ex_collateral.json",
        1_792_022_400,
    );
    for _ in 0..2 {
        let v = same(&cache, &q, &i).unwrap();
        assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    }
    assert_eq!(cache.stats(), CacheStats::default());
}

#[test]
fn the_key_covers_every_collateral_byte_and_not_the_report_data() {
    let q = data("sgx_quote");
    let Some(Collateral::Dcap(c)) = sgx(IN_WINDOW).collateral else {
        unreachable!()
    };
    let root = rats::dcap::INTEL_SGX_ROOT_CA;
    let key = |q: &[u8], c: &rats::QuoteCollateralV3| cache_key(Tee::SgxEcdsa, q, c, root).unwrap();
    let base = key(&q, &c);
    assert_eq!(key(&q, &c), base);
    assert_eq!(cache_key(Tee::SgxEcdsa, &q[..100], &c, root), None);
    let edits: [&dyn Fn(&mut rats::QuoteCollateralV3); 9] = [
        &|c| c.pck_crl_issuer_chain.push('\n'),
        &|c| c.root_ca_crl[40] ^= 1,
        &|c| c.pck_crl[40] ^= 1,
        &|c| c.tcb_info_issuer_chain.push('\n'),
        &|c| c.tcb_info.push(' '),
        &|c| c.tcb_info_signature[0] ^= 1,
        &|c| c.qe_identity_issuer_chain.push('\n'),
        &|c| c.qe_identity.push(' '),
        &|c| c.qe_identity_signature[0] ^= 1,
    ];
    for (n, edit) in edits.iter().enumerate() {
        let mut e = (*c).clone();
        edit(&mut e);
        assert_ne!(key(&q, &e), base, "collateral field {n}");
    }
    // Moving a byte from one field to the next is another key (fields are framed).
    let mut moved = (*c).clone();
    let last = moved.tcb_info_issuer_chain.pop().unwrap();
    moved.tcb_info.insert(0, last);
    assert_ne!(key(&q, &moved), base);
    // Another root, another TEE name, another header or PCK chain: another key.
    assert_ne!(
        cache_key(Tee::SgxEcdsa, &q, &c, &data("TrustedRootCA.der")[1..]),
        Some(base)
    );
    assert_ne!(cache_key(Tee::TdxEcdsa, &q, &c, root), Some(base));
    let mut h = q.clone();
    h[10] ^= 1; // the header's QE SVN
    assert_ne!(key(&h, &c), base);
    let mut pck = q.clone();
    pck[2000] ^= 1;
    assert_ne!(key(&pck, &c), base);
    // The report data and the signatures are the quote's own: the same key.
    let mut rd = q.clone();
    rd[48 + 320] ^= 1;
    rd[436] ^= 1;
    assert_eq!(key(&rd, &c), base);
}

#[test]
fn the_cache_is_bounded() {
    let cache = CollateralCache::new(1);
    let (s, t) = (data("sgx_quote"), data("tdx_quote"));
    same(&cache, &s, &sgx(IN_WINDOW)).unwrap();
    same(&cache, &t, &tdx(IN_WINDOW)).unwrap();
    same(&cache, &s, &sgx(IN_WINDOW)).unwrap();
    let st = cache.stats();
    assert_eq!((st.len, st.inserts, st.hits), (1, 3, 0));
    same(&cache, &s, &sgx(IN_WINDOW)).unwrap();
    assert_eq!(cache.stats().hits, 1);
    // Capacity 0 keeps nothing.
    cache.set_capacity(0);
    same(&cache, &s, &sgx(IN_WINDOW)).unwrap();
    same(&cache, &s, &sgx(IN_WINDOW)).unwrap();
    let st = cache.stats();
    assert_eq!((st.len, st.inserts, st.hits), (0, 3, 1));
}

#[test]
fn threads_share_one_cache() {
    let cache = CollateralCache::new(16);
    let (s, t) = (data("sgx_quote"), data("tdx_quote"));
    let (vs, vt) = (
        cold(&s, &sgx(IN_WINDOW)).unwrap(),
        cold(&t, &tdx(IN_WINDOW)).unwrap(),
    );
    std::thread::scope(|scope| {
        for n in 0..4 {
            let (cache, s, t, vs, vt) = (&cache, &s, &t, &vs, &vt);
            scope.spawn(move || {
                for k in 0..10 {
                    if (n + k) % 2 == 0 {
                        let v = verify_with_cache(s, None, &sgx(IN_WINDOW), Some(cache));
                        assert_eq!(&v.unwrap(), vs);
                    } else {
                        let v = verify_with_cache(t, None, &tdx(IN_WINDOW), Some(cache));
                        assert_eq!(&v.unwrap(), vt);
                    }
                }
            });
        }
    });
    let st = cache.stats();
    assert_eq!(st.len, 2);
    assert_eq!(st.hits + st.misses, 40);
    assert!(st.hits >= 30, "{st:?}");
}
