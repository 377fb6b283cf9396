//! SEV-SNP: real reports and VCEKs (Trustee's and virtee/sev's test data, see
//! testdata/README.md), against AMD's built-in Milan ARK/ASK.

use rats::snp::{parse_cert_table, GUID_ARK, GUID_ASK, GUID_CRL, GUID_VCEK, GUID_VLEK};
use rats::{verify, Collateral, Input, Policy, RatsError, Tee};

/// 2025-01-01T00:00:00Z: inside both VCEKs' validity.
const AT: u64 = 1_735_689_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn input(vcek: &[u8], now: u64) -> Input {
    Input {
        report_data: None,
        collateral: Some(Collateral::parse(Tee::SevSnp, vcek).unwrap()),
        now,
    }
}

fn milan_report() -> Vec<u8> {
    hex::decode(data("report_milan.hex")).unwrap()
}

#[test]
fn trustee_report_verifies_with_its_vcek() {
    let report = data("test-report.bin");
    assert_eq!(Tee::detect(&report).unwrap(), Tee::SevSnp);
    let v = verify(&report, None, &input(&data("test-vcek.der"), AT)).unwrap();
    assert_eq!(v.tee, Tee::SevSnp);
    assert!(!v.debug, "policy 0x3001F does not allow debug");
    assert_eq!(v.claims["snp_reported_tcb_microcode"].canonical(), ["115"]);
    assert_eq!(v.claims["snp_reported_tcb_snp"].canonical(), ["8"]);
    assert_eq!(v.claims["snp_policy"].canonical(), [0x3001f.to_string()]);
    // The report's CURRENT_TCB (0x38) has microcode 0xce, its REPORTED_TCB (0x180)
    // 0x73: the VCEK attests an older TCB than the one running.
    assert_eq!(v.tcb_status.as_deref(), Some("OutOfDate"));
    assert_eq!(v.claims["snp_current_tcb_microcode"].canonical(), ["206"]);
    assert_eq!(
        v.claims["snp_tcb_out_of_date"].canonical(),
        ["microcode current 206 ≠ reported 115"]
    );
    let verdict = Policy::default().appraise(&v);
    assert_eq!(
        verdict.reasons,
        ["TCB status OutOfDate is not accepted (accepted: UpToDate)"]
    );
    let lenient = Policy {
        accepted_tcb_statuses: vec!["UpToDate".into(), "OutOfDate".into()],
        ..Default::default()
    };
    assert!(lenient.appraise(&v).accepted);
}

/// virtee/sev's report runs the TCB it reports (3, 0, 8, 115 in both fields): UpToDate,
/// which a policy expecting a `tcb_status` claim accepts.
#[test]
fn snp_reports_carry_a_tcb_status() {
    let v = verify(&milan_report(), None, &input(&data("vcek_milan.der"), AT)).unwrap();
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(v.claims["tcb_status"].canonical(), ["UpToDate"]);
    assert!(!v.claims.contains_key("snp_tcb_out_of_date"));
    let policy: Policy = toml::from_str("[expected]\ntcb_status = [\"UpToDate\"]\n").unwrap();
    assert!(policy.appraise(&v).accepted, "{:?}", policy.appraise(&v));
    assert!(Policy::default().appraise(&v).accepted);
}

#[test]
fn sev_crate_report_verifies_with_its_vcek() {
    let v = verify(&milan_report(), None, &input(&data("vcek_milan.der"), AT)).unwrap();
    assert_eq!(v.claims["snp_version"].canonical(), ["2"]);
}

#[test]
fn flipped_bytes_give_the_right_error() {
    let report = data("test-report.bin");
    let vcek = data("test-vcek.der");
    let with_report = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut r = report.clone();
        f(&mut r);
        verify(&r, Some(Tee::SevSnp), &input(&vcek, AT)).unwrap_err()
    };
    let e = with_report(&|r| r[42] ^= 1);
    assert!(matches!(e, RatsError::Signature { .. }), "{e}");
    let e = with_report(&|r| r[384] = r[384].wrapping_add(1));
    assert!(matches!(e, RatsError::Tcb { .. }), "{e}");
    let e = with_report(&|r| r[0x2A0 + 5] ^= 1);
    assert!(matches!(e, RatsError::Signature { .. }), "{e}");
    // virtee/sev's negative cases.
    let mut r = milan_report();
    r[21] ^= 0x80;
    let e = verify(&r, None, &input(&data("vcek_milan.der"), AT)).unwrap_err();
    assert!(matches!(e, RatsError::Signature { .. }), "{e}");
    let mut c = data("vcek_milan.der");
    c[40] ^= 0xff;
    let e = verify(&milan_report(), None, &input(&c, AT)).unwrap_err();
    assert!(
        matches!(
            e,
            RatsError::CertificateChain { .. } | RatsError::Collateral { .. }
        ),
        "{e}"
    );
    // Another part's VCEK.
    let e = verify(&report, None, &input(&data("vcek_milan.der"), AT)).unwrap_err();
    assert!(
        matches!(e, RatsError::Tcb { .. } | RatsError::Signature { .. }),
        "{e}"
    );
}

#[test]
fn synthetic_vceks_never_validate_a_report() {
    for name in ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"] {
        let e = verify(&data("test-report.bin"), None, &input(&data(name), AT)).unwrap_err();
        assert!(
            matches!(e, RatsError::CertificateChain { .. }),
            "{name}: {e}"
        );
    }
}

#[test]
fn vcek_outside_its_validity_is_expired() {
    // 2031-01-01, after the VCEK's notAfter (2030-01-24).
    let e = verify(
        &data("test-report.bin"),
        None,
        &input(&data("test-vcek.der"), 1_924_992_000),
    )
    .unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
    // Said with the date passed (`openssl x509 -enddate` of the fixture) and the time.
    assert_eq!(
        e.to_string(),
        "sev_snp evidence: collateral expired: the VCEK's notAfter 2030-01-24T17:58:26Z \
         is before the verification time 2031-01-01T00:00:00Z"
    );
}

/// A certificate table as configfs-tsm's `auxblob` carries it, written by virtee/sev's
/// own writer (`CertTableEntry::cert_table_to_vec_bytes`, the kernel's layout), so the
/// GUID byte order is the peer's, not ours.
fn cert_table(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use sev::firmware::host::CertTableEntry;
    let entries: Vec<CertTableEntry> = entries
        .iter()
        .map(|(guid, data)| CertTableEntry::new(cert_type_of(guid), data.to_vec()))
        .collect();
    CertTableEntry::cert_table_to_vec_bytes(&entries).unwrap()
}

fn cert_type_of(s: &str) -> sev::firmware::host::CertType {
    use sev::firmware::host::CertType;
    match s {
        GUID_VCEK => CertType::VCEK,
        GUID_VLEK => CertType::VLEK,
        GUID_ASK => CertType::ASK,
        GUID_ARK => CertType::ARK,
        GUID_CRL => CertType::CRL,
        other => panic!("not an AMD GUID: {other}"),
    }
}

/// AMD's GUIDs go on the wire in RFC 4122 order (the string's digits in order), as
/// virtee/sev, AMD's sev-guest tools and the hosts write them; a table with every
/// AMD entry reads back entry for entry.
#[test]
fn certificate_table_guids_are_in_rfc4122_order() {
    let table = cert_table(&[
        (GUID_VCEK, b"vcek"),
        (GUID_VLEK, b"vlek"),
        (GUID_ASK, b"ask"),
        (GUID_ARK, b"ark"),
        (GUID_CRL, b"crl"),
    ]);
    // The VCEK's entry as the GHCB specification lays it out: GUID, offset 6*24, length 4.
    assert_eq!(
        hex::encode(&table[..24]),
        "63da758de6644564adc5f4b93be8accd9000000004000000"
    );
    assert_eq!(&table[5 * 24..6 * 24], &[0u8; 24], "terminator");
    let parsed = parse_cert_table(&table).unwrap();
    let names: Vec<&str> = parsed.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(
        names,
        [
            "63da758d-e664-4564-adc5-f4b93be8accd",
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
            "4ab7b379-bbac-4fe4-a02f-05aef327c782",
            "c0b406a4-a803-4952-9743-3fb6014cd0ae",
            "92f81bc3-5811-4d3d-97ff-d19f88dc67ea",
        ]
    );
    assert_eq!(parsed[3].1, b"ark");
}

#[test]
fn certificate_tables_carry_the_vcek() {
    let vcek = data("test-vcek.der");
    let table = cert_table(&[(GUID_VCEK, &vcek)]);
    let parsed = parse_cert_table(&table).unwrap();
    assert_eq!(parsed, vec![(GUID_VCEK.to_string(), vcek.clone())]);
    verify(&data("test-report.bin"), None, &input(&table, AT)).unwrap();

    // Truncated, unterminated, out of bounds: typed errors.
    for bad in [&table[..10], &table[..24], &table[..table.len() - 1]] {
        assert!(matches!(
            parse_cert_table(bad).unwrap_err(),
            RatsError::Collateral { .. }
        ));
    }
}

#[test]
fn bad_reports_are_malformed() {
    let report = data("test-report.bin");
    let vcek = data("test-vcek.der");
    for len in [0, 4, 100, 1183] {
        let e = verify(&report[..len], Some(Tee::SevSnp), &input(&vcek, AT)).unwrap_err();
        assert!(matches!(e, RatsError::Malformed { .. }), "{len}: {e}");
    }
    let mut v9 = report.clone();
    v9[0] = 9;
    let e = verify(&v9, Some(Tee::SevSnp), &input(&vcek, AT)).unwrap_err();
    assert!(matches!(e, RatsError::Malformed { .. }), "{e}");
    let e = verify(&report, Some(Tee::SevSnp), &Input::default()).unwrap_err();
    assert!(matches!(e, RatsError::Collateral { .. }), "{e}");
}

/// KEY_INFO (offset 0x48): bits 4:2 name the signing key (0 VCEK, 1 VLEK, 7 none),
/// bit 1 says the signature was masked. Each is checked before the signature, with
/// an error that says what is missing.
#[test]
fn the_signing_key_named_in_the_report_is_the_one_checked() {
    let report = data("test-report.bin");
    let vcek = data("test-vcek.der");
    let with_key_info = |key_info: u32, c: &Input| {
        let mut r = report.clone();
        r[0x48..0x4c].copy_from_slice(&key_info.to_le_bytes());
        verify(&r, Some(Tee::SevSnp), c).unwrap_err()
    };
    // Signed with a VLEK, but only the VCEK is given.
    let e = with_key_info(1 << 2, &input(&vcek, AT));
    assert!(
        matches!(&e, RatsError::Collateral { reason, .. } if reason.contains("signed with its VLEK, but the certificate given is a VCEK")),
        "{e}"
    );
    // No signature at all.
    let e = with_key_info(7 << 2, &input(&vcek, AT));
    assert!(
        matches!(&e, RatsError::Signature { reason, .. } if reason.contains("SIGNING_KEY is none")),
        "{e}"
    );
    let e = with_key_info(1 << 1, &input(&vcek, AT));
    assert!(
        matches!(&e, RatsError::Signature { reason, .. } if reason.contains("MASK_CHIP_KEY")),
        "{e}"
    );
    let e = with_key_info(3 << 2, &input(&vcek, AT));
    assert!(matches!(e, RatsError::Malformed { .. }), "{e}");
    // A table with both keys: the VCEK-signed report uses the VCEK.
    let table = cert_table(&[(GUID_VCEK, &vcek), (GUID_VLEK, &vcek)]);
    verify(&report, None, &input(&table, AT)).unwrap();
}
