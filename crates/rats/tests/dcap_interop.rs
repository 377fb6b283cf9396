//! DCAP interoperability: collateral for another platform, quotes without
//! collateral, TD 1.5 classification. Expected values from the real fixtures
//! (testdata/README.md): SGX quote FMSPC 00A067110000 with a PCK Processor CA CRL,
//! TDX quote FMSPC B0C06F000000 with a PCK Platform CA CRL.

use rats::{verify, Collateral, Input, Policy, RatsError, Tee};

/// 2025-06-20T00:00:00Z: inside both DCAP collateral windows.
const IN_WINDOW: u64 = 1_750_377_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn with_collateral(tee: Tee, collateral: &str) -> Input {
    Input {
        report_data: None,
        collateral: Some(Collateral::parse(tee, &data(collateral)).unwrap()),
        now: IN_WINDOW,
    }
}

#[test]
fn collateral_for_another_platform_names_the_mismatch() {
    let e = verify(
        &data("sgx_quote"),
        None,
        &with_collateral(Tee::SgxEcdsa, "tdx_quote_collateral.json"),
    )
    .unwrap_err();
    let RatsError::Collateral { reason, .. } = &e else {
        panic!("not a collateral error: {e}");
    };
    assert_eq!(
        reason,
        "collateral is for FMSPC B0C06F000000, quote is FMSPC 00A067110000; \
         collateral is TDX TCB info, quote is SGX; \
         collateral's PCK CRL is from the Intel SGX PCK Platform CA, \
         quote's PCK certificate from the processor CA"
    );
    assert_eq!(e.to_string().lines().count(), 1);

    let e = verify(
        &data("tdx_quote"),
        None,
        &with_collateral(Tee::TdxEcdsa, "sgx_quote_collateral.json"),
    )
    .unwrap_err();
    let RatsError::Collateral { reason, .. } = &e else {
        panic!("not a collateral error: {e}");
    };
    assert!(
        reason.starts_with("collateral is for FMSPC 00A067110000, quote is FMSPC B0C06F000000;"),
        "{reason}"
    );
    assert!(
        reason.contains("PCK CRL is from the Intel SGX PCK Processor CA, quote's PCK certificate from the platform CA"),
        "{reason}"
    );
}

fn bare(now: u64) -> Input {
    Input {
        report_data: None,
        collateral: None,
        now,
    }
}

/// Without collateral the quote's own signature, its QE report (signature and binding
/// of the attestation key) and the PCK chain to Intel's pinned root are checked; the
/// TCB status is `Unknown` and revocation unchecked, which the default policy refuses
/// and a policy may accept by name.
#[test]
fn quotes_without_collateral_are_checked_as_far_as_they_can_be() {
    for (quote, coll, tee, fmspc) in [
        (
            "sgx_quote",
            "sgx_quote_collateral.json",
            Tee::SgxEcdsa,
            "00a067110000",
        ),
        (
            "tdx_quote",
            "tdx_quote_collateral.json",
            Tee::TdxEcdsa,
            "b0c06f000000",
        ),
    ] {
        let v = verify(&data(quote), None, &bare(IN_WINDOW)).unwrap();
        assert_eq!(v.tee, tee);
        assert_eq!(v.tcb_status.as_deref(), Some("Unknown"), "{quote}");
        assert_eq!(v.claims["dcap_fmspc"].canonical(), [fmspc]);
        assert_eq!(v.claims["dcap_revocation_checked"].canonical(), ["false"]);
        assert_eq!(v.claims["dcap_qe_identity_checked"].canonical(), ["false"]);
        // The same body claims as with collateral.
        let full = verify(&data(quote), None, &with_collateral(tee, coll)).unwrap();
        for (name, value) in &full.claims {
            if name.starts_with("sgx_") || name.starts_with("tdx_") || name == "report_data" {
                assert_eq!(v.claims.get(name), Some(value), "{quote}: {name}");
            }
        }
        let verdict = Policy::default().appraise(&v);
        assert_eq!(
            verdict.reasons,
            ["TCB status Unknown is not accepted (accepted: UpToDate)"]
        );
        let explicit = Policy {
            accepted_tcb_statuses: vec!["Unknown".into()],
            ..Policy::default()
        };
        assert!(explicit.appraise(&v).accepted, "{quote}");
    }
}

/// The negative cases of testdata/README.md that need no collateral. In the v3 SGX
/// quote: header 48 + body 384 bytes, then the signature data length (4), the quote
/// signature (64), the attestation key (64), the QE report (384), its signature (64).
#[test]
fn offline_checks_catch_each_forgery() {
    let quote = data("sgx_quote");
    let flipped = |at: usize| {
        let mut q = quote.clone();
        q[at] ^= 1;
        verify(&q, Some(Tee::SgxEcdsa), &bare(IN_WINDOW)).unwrap_err()
    };
    let e = flipped(100);
    assert!(
        matches!(&e, RatsError::Signature { reason, .. } if reason.contains("quote's signature")),
        "{e}"
    );
    let e = flipped(436 + 64 + 64 + 10);
    assert!(
        matches!(&e, RatsError::Signature { reason, .. } if reason.contains("QE report's signature")),
        "{e}"
    );
    let e = flipped(436 + 64 + 3);
    assert!(
        matches!(&e, RatsError::Signature { reason, .. } if reason.contains("does not bind the attestation key")),
        "{e}"
    );
    // After the Intel SGX Root CA's notAfter (2049-12-31).
    let e = verify(&quote, None, &bare(2_556_144_000)).unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
    // Report data is still checked.
    let wrong = Input {
        report_data: Some([0xaa; 64]),
        ..bare(IN_WINDOW)
    };
    let e = verify(&quote, None, &wrong).unwrap_err();
    assert!(matches!(e, RatsError::ReportDataMismatch { .. }), "{e}");
}

/// TD attributes are classified before the signatures are checked: the real TDX
/// quote (TD_ATTRIBUTES 0x10000000 at offset 168) reports them as claims, and each
/// error is named. (Editing the attributes also breaks the quote's signature: the
/// classification is what is tested here; see rats::tdx for parsed TD 1.5 bodies.)
#[test]
fn td_attribute_errors_are_named() {
    let quote = data("tdx_quote");
    let input = with_collateral(Tee::TdxEcdsa, "tdx_quote_collateral.json");
    let v = verify(&quote, None, &input).unwrap();
    assert_eq!(v.claims["tdx_sept_ve_disable"].canonical(), ["true"]);
    assert_eq!(v.claims["tdx_service_td_bound"].canonical(), ["false"]);
    assert_eq!(v.claims["tdx_report_body"].canonical(), ["td10"]);
    for (attributes, needle) in [
        (0u64, "SEPT_VE_DISABLE (bit 28) is clear"),
        (0x3000_0000, "MIGRATABLE (bit 29) is set"),
        (0x1000_0000 | 1 << 33, "reserved TD attribute bits"),
    ] {
        let mut q = quote.clone();
        q[168..176].copy_from_slice(&attributes.to_le_bytes());
        for input in [&input, &bare(IN_WINDOW)] {
            let e = verify(&q, None, input).unwrap_err();
            assert!(
                matches!(&e, RatsError::TdAttributes { reason, .. } if reason.contains(needle)),
                "{e}"
            );
        }
    }
}
