//! The SGX attester against a stand-in aesmd replaying the real fixture quote: the
//! protocol, the checks on what aesmd returns, and the evidence verifying with the
//! real collateral.

use aesm::replay::{Behaviour, ReplayAesmd};
use rats::sgx::{Aesm, SgxAttester, REPORT_SIZE, TARGET_INFO_SIZE};
use rats::{verify, Attester, Collateral, Input, RatsError, Tee};

/// 2025-06-20T00:00:00Z: inside the fixture collateral's window.
const IN_WINDOW: u64 = 1_750_377_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The enclave whose REPORT the fixture quote carries: it answers any TARGETINFO with
/// that REPORT when asked for its report data.
fn fixture_enclave(
) -> impl Fn(&[u8; TARGET_INFO_SIZE], &[u8; 64]) -> Result<[u8; REPORT_SIZE], String> {
    let report = aesm::report_of_quote(&data("sgx_quote")).unwrap();
    move |ti, rd| {
        assert_ne!(ti, &[0u8; TARGET_INFO_SIZE], "targeted at the QE");
        let mut r = report;
        r[320..384].copy_from_slice(rd);
        Ok(r)
    }
}

fn fixture_report_data() -> [u8; 64] {
    aesm::report_data(&data("sgx_quote")[48..])
        .unwrap()
        .try_into()
        .unwrap()
}

fn with_aesmd(behaviour: Behaviour) -> (tempfile::TempDir, ReplayAesmd, Aesm) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aesm.socket");
    let d = ReplayAesmd::start(&socket, data("sgx_quote"), behaviour).unwrap();
    (dir, d, Aesm::new(&socket))
}

#[test]
fn the_quote_from_aesmd_verifies_with_the_real_collateral() {
    let (_dir, d, aesm) = with_aesmd(Behaviour::default());
    let attester = SgxAttester::new(aesm, fixture_enclave());
    let rd = fixture_report_data();
    let ev = attester.attest(&rd).unwrap();
    assert_eq!(ev.tee, Tee::SgxEcdsa);
    assert_eq!(ev.bytes, data("sgx_quote"), "aesmd's padding is dropped");
    assert_eq!(d.requests(), aesm::replay::QUOTE_EXCHANGE);
    let input = Input {
        report_data: Some(rd),
        collateral: Some(
            Collateral::parse(Tee::SgxEcdsa, &data("sgx_quote_collateral.json")).unwrap(),
        ),
        now: IN_WINDOW,
    };
    let v = verify(&ev.bytes, None, &input).unwrap();
    assert_eq!(
        v.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
}

#[test]
fn another_report_data_gets_no_quote_of_the_fixture() {
    // The replay can only quote its one REPORT: other report data is refused the way
    // a QE refuses an invalid report, and the error says so.
    let (_dir, _d, aesm) = with_aesmd(Behaviour::default());
    let e = SgxAttester::new(aesm, fixture_enclave())
        .attest(&[7; 64])
        .unwrap_err();
    assert!(e.to_string().contains("GetQuoteEx: error 47"), "{e}");
}

#[test]
fn a_host_swapping_quotes_is_caught() {
    let (_dir, _d, aesm) = with_aesmd(Behaviour {
        quote_any_report: true,
        ..Default::default()
    });
    let e = SgxAttester::new(aesm, fixture_enclave())
        .attest(&[7; 64])
        .unwrap_err();
    assert!(
        matches!(&e, RatsError::Attester { tee: "sgx_ecdsa", reason } if reason.contains("quote of another report")),
        "{e}"
    );
}

#[test]
fn an_enclave_that_ignores_the_report_data_is_caught() {
    let (_dir, d, aesm) = with_aesmd(Behaviour::default());
    let report = aesm::report_of_quote(&data("sgx_quote")).unwrap();
    let e = SgxAttester::new(aesm, move |_: &[u8; 512], _: &[u8; 64]| Ok(report))
        .attest(&[7; 64])
        .unwrap_err();
    assert!(e.to_string().contains("bound to other report data"), "{e}");
    assert!(!d.requests().contains(&"GetQuoteEx"), "nothing was quoted");
}

#[test]
fn aesmd_failures_are_one_line_each() {
    for (fail, behaviour, expect) in [
        (
            "no ECDSA key",
            Behaviour {
                no_ecdsa_key: true,
                ..Default::default()
            },
            "no ECDSA P-256 attestation key",
        ),
        (
            "no PCCS",
            Behaviour {
                fail: Some(("GetQuoteEx", 44)),
                ..Default::default()
            },
            "aesmd GetQuoteEx: error 44 (no platform certification data (is the PCCS reachable?))",
        ),
        (
            "no QE",
            Behaviour {
                fail: Some(("InitQuoteEx", 42)),
                ..Default::default()
            },
            "aesmd InitQuoteEx: error 42",
        ),
    ] {
        let (_dir, _d, aesm) = with_aesmd(behaviour);
        let e = SgxAttester::new(aesm, fixture_enclave())
            .attest(&fixture_report_data())
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{fail}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // No aesmd at all.
    let dir = tempfile::tempdir().unwrap();
    let aesm = Aesm::new(dir.path().join("aesm.socket"));
    assert!(!aesm.present());
    let e = SgxAttester::new(aesm, fixture_enclave())
        .attest(&fixture_report_data())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("sgx_ecdsa attester: aesmd is not reachable at "),
        "{e}"
    );
}

#[test]
fn a_stopped_stand_in_leaves_no_socket() {
    let (dir, d, aesm) = with_aesmd(Behaviour::default());
    assert!(aesm.present());
    drop(d);
    assert!(!dir.path().join("aesm.socket").exists());
}
