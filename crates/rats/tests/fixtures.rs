//! Real, public attestation evidence (see testdata/README.md for origins and licences),
//! verified offline at the fixed times its collateral is valid.

use rats::{verify, Collateral, Input, Policy, RatsError, Tee};

/// 2025-06-20T00:00:00Z: inside both DCAP collateral windows.
const IN_WINDOW: u64 = 1_750_377_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn dcap_input(tee: Tee, collateral: &str, now: u64) -> Input {
    Input {
        report_data: None,
        collateral: Some(Collateral::parse(tee, &data(collateral)).unwrap()),
        now,
    }
}

#[test]
fn pinned_root_is_intels_production_root() {
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(rats::dcap::INTEL_SGX_ROOT_CA)),
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    );
}

#[test]
fn sgx_quote_needs_configuration_and_is_refused_by_default() {
    let quote = data("sgx_quote");
    assert_eq!(Tee::detect(&quote).unwrap(), Tee::SgxEcdsa);
    let input = dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", IN_WINDOW);
    let v = verify(&quote, None, &input).unwrap();
    assert_eq!(
        v.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(v.claims.contains_key("sgx_mr_enclave"));
    assert!(v.claims.contains_key("sgx_mr_signer"));

    // The default policy refuses it, and says why; the status is still reported.
    let verdict = Policy::default().appraise(&v);
    assert!(!verdict.accepted);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.contains("ConfigurationAndSWHardeningNeeded")),
        "{verdict:?}"
    );
    assert!(verdict.reasons.iter().any(|r| r.contains("INTEL-SA-00289")));

    // Accepted when that status and both advisories are allowed.
    let lenient = Policy {
        accepted_tcb_statuses: vec![
            "UpToDate".into(),
            "ConfigurationAndSWHardeningNeeded".into(),
        ],
        allowed_advisory_ids: vec!["INTEL-SA-00289".into(), "INTEL-SA-00615".into()],
        ..Policy::default()
    };
    assert_eq!(lenient.appraise(&v).reasons, Vec::<String>::new());

    // Pinning the measurement: the right value passes, another fails.
    let mut pinned = lenient.clone();
    let mr = v.claims["sgx_mr_enclave"].canonical()[0].clone();
    pinned
        .expected
        .insert("sgx_mr_enclave".into(), vec![mr.to_uppercase()]);
    assert!(pinned.appraise(&v).accepted);
    pinned
        .expected
        .insert("sgx_mr_enclave".into(), vec!["00".repeat(32)]);
    assert!(!pinned.appraise(&v).accepted);
}

#[test]
fn tdx_quote_is_up_to_date() {
    let quote = data("tdx_quote");
    assert_eq!(Tee::detect(&quote).unwrap(), Tee::TdxEcdsa);
    let input = dcap_input(Tee::TdxEcdsa, "tdx_quote_collateral.json", IN_WINDOW);
    let v = verify(&quote, Some(Tee::TdxEcdsa), &input).unwrap();
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    assert!(v.advisory_ids.is_empty());
    for claim in ["tdx_mr_td", "tdx_rt_mr0", "tdx_rt_mr3", "tdx_mr_config_id"] {
        assert!(v.claims.contains_key(claim), "{claim}");
    }
    let verdict = Policy::default().appraise(&v);
    assert_eq!(verdict.accepted, !v.debug, "{verdict:?}");
}

#[test]
fn flipped_bytes_give_the_right_error() {
    let sgx = data("sgx_quote");
    let input = dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", IN_WINDOW);
    let flipped = |offset: usize| {
        let mut q = sgx.clone();
        q[offset] ^= 1;
        verify(&q, Some(Tee::SgxEcdsa), &input).unwrap_err()
    };
    // Signed header and body; the QE report; its signature; the PCK certificate.
    assert!(
        matches!(flipped(10), RatsError::Signature { .. }),
        "{}",
        flipped(10)
    );
    assert!(matches!(flipped(100), RatsError::Signature { .. }));
    assert!(
        matches!(flipped(500), RatsError::Signature { .. }),
        "{}",
        flipped(500)
    );
    assert!(matches!(flipped(700), RatsError::Signature { .. }));
    assert!(
        matches!(flipped(2000), RatsError::CertificateChain { .. }),
        "{}",
        flipped(2000)
    );

    // Collateral: TCB info signature, TCB info body, a CRL.
    let Some(Collateral::Dcap(good)) = input.collateral.clone() else {
        unreachable!()
    };
    let with = |f: &dyn Fn(&mut rats::QuoteCollateralV3)| {
        let mut c = good.clone();
        f(&mut c);
        let input = Input {
            collateral: Some(Collateral::Dcap(c)),
            ..input.clone()
        };
        verify(&sgx, None, &input).unwrap_err()
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

    // TDX: body and signature.
    let tdx = data("tdx_quote");
    let tin = dcap_input(Tee::TdxEcdsa, "tdx_quote_collateral.json", IN_WINDOW);
    for offset in [200, 700] {
        let mut q = tdx.clone();
        q[offset] ^= 1;
        let e = verify(&q, None, &tin).unwrap_err();
        assert!(matches!(e, RatsError::Signature { .. }), "{offset}: {e}");
    }
}

#[test]
fn collateral_outside_its_window_is_expired() {
    let sgx = data("sgx_quote");
    let year_later = IN_WINDOW + 365 * 86_400;
    let e = verify(
        &sgx,
        None,
        &dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", year_later),
    )
    .unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
    // Just after the SGX window ends (2025-07-19T10:01:18Z).
    let e = verify(
        &sgx,
        None,
        &dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", 1_752_919_279),
    )
    .unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
    // The QE identity's nextUpdate, as its JSON document has it, and the time.
    assert_eq!(
        e.to_string(),
        "sgx_ecdsa evidence: collateral expired: the QE identity's nextUpdate \
         2025-07-19T10:01:18Z is before the verification time 2025-07-19T10:01:19Z"
    );
    let e = verify(
        &data("tdx_quote"),
        None,
        &dcap_input(Tee::TdxEcdsa, "tdx_quote_collateral.json", year_later),
    )
    .unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
}

#[test]
fn report_data_must_match_when_given() {
    let sgx = data("sgx_quote");
    let mut input = dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", IN_WINDOW);
    let v = verify(&sgx, None, &input).unwrap();
    input.report_data = Some(v.report_data.clone().try_into().unwrap());
    verify(&sgx, None, &input).unwrap();
    input.report_data = Some([0xee; 64]);
    assert!(matches!(
        verify(&sgx, None, &input).unwrap_err(),
        RatsError::ReportDataMismatch { .. }
    ));
}

#[test]
fn bad_input_gives_typed_errors_never_panics() {
    let sgx = data("sgx_quote");
    let input = dcap_input(Tee::SgxEcdsa, "sgx_quote_collateral.json", IN_WINDOW);
    for len in [0, 1, 7, 8, 48, 100, 436, 1000, 4599] {
        let e = verify(&sgx[..len], Some(Tee::SgxEcdsa), &input).unwrap_err();
        assert!(matches!(e, RatsError::Malformed { .. }), "{len}: {e}");
    }
    // Oversized: trailing bytes after the signature data are ignored, as for the TDX
    // fixture's 70 zero bytes; a wrong version is refused.
    let mut long = sgx.clone();
    long.extend_from_slice(&[0; 1000]);
    verify(&long, None, &input).unwrap();
    let mut v9 = sgx.clone();
    v9[0] = 9;
    assert!(verify(&v9, Some(Tee::SgxEcdsa), &input).is_err());
    assert!(matches!(
        Tee::detect(&v9).unwrap_err(),
        RatsError::UnknownType(_)
    ));
    // A TDX quote handed in as SGX.
    let e = verify(&data("tdx_quote"), Some(Tee::SgxEcdsa), &input).unwrap_err();
    assert!(matches!(e, RatsError::Malformed { .. }), "{e}");
    // Garbage collateral.
    assert!(matches!(
        Collateral::parse(Tee::SgxEcdsa, b"{\"nope\":1}").unwrap_err(),
        RatsError::Collateral { .. }
    ));
    // No collateral, at time 0: the quote is checked offline (see dcap_interop.rs), and
    // its PCK certificate (valid 2023-09-20 … 2030-09-20) is not valid then.
    let e = verify(&sgx, None, &Input::default()).unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
}
