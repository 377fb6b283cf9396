//! SEV-SNP reports signed with a VLEK, verified offline through AMD's ASVKs, which rats
//! pins like the ARKs. The VLEK and its report are Trustee's test data (see
//! testdata/README.md): VLEK → SEV-VLEK-Milan → ARK-Milan.

use base64::Engine as _;
use rats::snp::{SnpCollateral, BUILTIN_ASVKS};
use rats::{verify, Collateral, Input, RatsError, Tee};
use sev::certs::snp::{builtin, ca, Certificate, Verifiable};

/// 2025-06-01T00:00:00Z: inside the VLEK's validity (2024-12-10 … 2025-12-10).
const AT: u64 = 1_748_736_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn input(collateral: &[u8], now: u64) -> Input {
    Input {
        report_data: None,
        collateral: Some(Collateral::parse(Tee::SevSnp, collateral).unwrap()),
        now,
    }
}

/// Each pinned ASVK is AMD's: `CN=SEV-VLEK-<product>`, signed by `sev`'s built-in
/// ARK of that product (Trustee's `check_{milan,genoa,turin}_certificates`).
#[test]
fn the_pinned_asvks_are_signed_by_amds_arks() {
    let arks = [
        builtin::milan::ark().unwrap(),
        builtin::genoa::ark().unwrap(),
        builtin::turin::ark().unwrap(),
    ];
    for ((product, asvk_pem), ark) in BUILTIN_ASVKS.iter().zip(arks) {
        let asvk = Certificate::from_pem(asvk_pem).unwrap();
        let der = asvk.to_der().unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), format!("SEV-VLEK-{product}"));
        (&ca::Chain { ark, ask: asvk }).verify().unwrap();
    }
}

#[test]
fn a_vlek_signed_report_verifies_with_the_vlek_alone() {
    let report = data("test-vlek-report.bin");
    assert!(rats::snp::signed_with_vlek(&report));
    let v = verify(&report, None, &input(&data("test-vlek.der"), AT)).unwrap();
    assert_eq!(v.tee, Tee::SevSnp);
    assert_eq!(v.claims["snp_version"].canonical(), ["3"]);
    // CURRENT_TCB microcode 0xdc, REPORTED_TCB 0xd9.
    assert_eq!(v.tcb_status.as_deref(), Some("OutOfDate"));
    assert_eq!(
        v.claims["snp_tcb_out_of_date"].canonical(),
        ["microcode current 220 ≠ reported 217"]
    );

    // Forged: the signature fails; late: the VLEK has expired.
    let mut forged = report.clone();
    forged[0x90] ^= 1;
    let e = verify(&forged, None, &input(&data("test-vlek.der"), AT)).unwrap_err();
    assert!(matches!(e, RatsError::Signature { .. }), "{e}");
    let e = verify(&report, None, &input(&data("test-vlek.der"), 1_767_225_600)).unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
}

/// `snpguest` and the KDS write PEM files with several certificates: every one is
/// read (VLEK, ASVK, ARK), in any order.
#[test]
fn a_pem_bundle_is_read_certificate_by_certificate() {
    let vlek = data("test-vlek.der");
    let asvk = std::str::from_utf8(BUILTIN_ASVKS[0].1).unwrap();
    let ark = std::str::from_utf8(builtin::milan::ARK).unwrap();
    let bundle = format!("{}{asvk}{ark}", pem(&vlek));
    let c = SnpCollateral::parse(bundle.as_bytes()).unwrap();
    assert_eq!(c.vek, vlek);
    assert_eq!(c.vlek.as_deref(), Some(&vlek[..]));
    assert!(c.ask.is_some() && c.ark.is_some());
    let report = data("test-vlek-report.bin");
    verify(&report, None, &input(bundle.as_bytes(), AT)).unwrap();
    // Reordered: the same.
    let reordered = format!("{ark}{}{asvk}", pem(&vlek));
    verify(&report, None, &input(reordered.as_bytes(), AT)).unwrap();

    // A VCEK bundle with Milan's ASK and ARK verifies a VCEK-signed report.
    let ask = std::str::from_utf8(builtin::milan::ASK).unwrap();
    let vcek_bundle = format!("{}{ask}{ark}", pem(&data("test-vcek.der")));
    verify(
        &data("test-report.bin"),
        None,
        &input(vcek_bundle.as_bytes(), 1_735_689_600),
    )
    .unwrap();

    // Two VLEKs, or no key at all: one-line errors.
    let two = format!("{}{}", pem(&vlek), pem(&vlek));
    let e = SnpCollateral::parse(two.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("two SEV-VLEK certificates"), "{e}");
    let e = SnpCollateral::parse(format!("{asvk}{ark}").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("neither a VCEK nor a VLEK"), "{e}");
}
