//! Report version 2's registers and config id, and version 1 still verifying.
//!
//! Expected register values come from the extend formula computed with
//! `openssl dgst -sha384` over the concatenated bytes (TDX's RTMR extend:
//! `R ← SHA-384(R ‖ digest)`, the digest being SHA-384 of the TCG2 tagged event
//! `"LEAA" ‖ u32le(len) ‖ text`, measurement.md §1.3), not from the code under test.

use std::io::Write;
use std::process::{Command, Stdio};

use sim_tee::measurement::eventlog::Event;
use sim_tee::rtmr::Measurements;
use sim_tee::{PlatformKey, Report};

fn openssl_sha384(bytes: &[u8]) -> [u8; 48] {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha384", "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout.try_into().expect("48 bytes")
}

fn tagged(text: &str) -> Vec<u8> {
    [
        &b"LEAA"[..],
        &(text.len() as u32).to_le_bytes(),
        text.as_bytes(),
    ]
    .concat()
}

#[test]
fn extends_follow_the_formula_and_the_report_signs_them() {
    let mut m = Measurements::new();
    let events = [
        (4, "github.com/confidential-containers PullImage {\"digest\":\"sha256:ab\",\"image\":\"r/a:1\"}"),
        (1, "github.com/inclavare-containers/rune Launch /bin/app"),
        (4, "example.org Loaded model weights v3"),
    ];
    let mut expected = [[0u8; 48]; 4];
    for (mr, text) in events {
        m.extend(mr, &Event::from_text(text).unwrap()).unwrap();
        let r = mr as usize - 1;
        let digest = openssl_sha384(&tagged(text));
        expected[r] = openssl_sha384(&[&expected[r][..], &digest[..]].concat());
    }
    assert_eq!(m.registers(), &expected);
    assert_eq!(m.counts(), &[1, 0, 0, 2]);
    assert_eq!(m.log().records().len(), 3);

    // Unknown registers and a full log change nothing.
    let e = Event::new("d", "op", "c").unwrap();
    for bad in [0, 5, u32::MAX] {
        let err = m.extend(bad, &e).unwrap_err().to_string();
        assert!(err.starts_with("unknown register: CC MR index"), "{err}");
    }
    assert_eq!(m.registers(), &expected);
    assert_eq!(m.log().records().len(), 3);

    let key = PlatformKey::generate().unwrap();
    let mut r = Report::unsigned(false, [1; 48], [2; 48], 3, 4, [5; 64]);
    m.apply(&mut r);
    r.config_id[..4].copy_from_slice(b"conf");
    let bytes = key.sign_report(r).to_bytes();
    assert_eq!(bytes.len(), 544);
    // The layout documented in report.rs, read by offset.
    assert_eq!(&bytes[4..6], &[2, 0]);
    assert_eq!(&bytes[176..180], b"conf");
    assert_eq!(&bytes[240..288], &expected[0]);
    assert_eq!(&bytes[384..432], &expected[3]);
    assert_eq!(
        &bytes[432..448],
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
    );
    let back = Report::parse(&bytes).unwrap();
    back.verify_signature().unwrap();
    assert_eq!(back.rtmr, expected);
    m.log().check_replay(&back.rtmr, &back.rtmr_counts).unwrap();
}

/// `testdata/report-v1.bin` was made by the sim-tee of main before version 2 (commit
/// 010df5f: `PlatformKey` from the seed 32 × 0x11, `Report::unsigned(false, [0xaa; 48],
/// [0xbb; 48], 7, 9, [0x5c; 64])`, `to_bytes()`).
#[test]
fn a_version_1_report_still_parses_and_verifies() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/report-v1.bin"
    ))
    .unwrap();
    assert_eq!(bytes.len(), sim_tee::REPORT_SIZE_V1);
    let r = Report::parse(&bytes).unwrap();
    r.verify_signature().unwrap();
    assert_eq!(r.version, 1);
    assert_eq!((r.mr_enclave, r.mr_signer), ([0xaa; 48], [0xbb; 48]));
    assert_eq!((r.product_id, r.svn, r.debug), (7, 9, false));
    assert_eq!(r.report_data, [0x5c; 64]);
    assert_eq!(
        (r.rtmr, r.rtmr_counts, r.config_id),
        ([[0; 48]; 4], [0; 4], [0; 64])
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("platform.key"), "11".repeat(32)).unwrap();
    assert_eq!(
        r.platform_key,
        PlatformKey::load_or_create(dir.path()).unwrap().public()
    );
    // Written back byte for byte; any change breaks the signature.
    assert_eq!(r.to_bytes(), bytes);
    for i in [5usize, 10, 120, 180, 250] {
        let mut b = bytes.clone();
        b[i] ^= 1;
        assert!(
            Report::parse(&b)
                .and_then(|r| r.verify_signature())
                .is_err(),
            "{i}"
        );
    }
}
