//! Real TDX quotes v5 with TD 1.5 bodies (testdata/README.md: Trustee's
//! `tdx_quote_5.dat`, a TD report 1.5 bound to a service TD, and dcap-qvl's
//! `tdx_quote_td15ex`, a TD report 1.5ex with its collateral).
//!
//! Expected values are read from the quote bytes at the offsets of Intel's
//! `sgx_quote_5.h` (`sgx_quote5_t`, `sgx_report2_body_v1_5_t`,
//! `sgx_report2_body_v1_5_ex_t`), not from what `rats` reports:
//!
//! | where | offset | bytes | field |
//! |---|---|---|---|
//! | header | 0 / 2 / 4 | 2 / 2 / 4 | version (5), attestation key type (2: ECDSA P-256), TEE type (0x81: TDX) |
//! | v5 descriptor | 48 / 50 | 2 / 4 | body type (2 TD 1.0, 3 TD 1.5, 4 TD 1.5ex), body size |
//! | body | 54 | size | the TD report |
//! | body | +0 | 16 | `tee_tcb_svn` |
//! | body | +120 | 8 | `td_attributes` (little-endian) |
//! | body | +136 | 48 | `mr_td` |
//! | body | +520 | 64 | `report_data` |
//! | body | +584 | 16 | `tee_tcb_svn2` |
//! | body | +600 | 48 | `mr_servicetd`: SHA-384 of the bound service TDs' TDINFO, else 0 |
//! | 1.5ex body | +648 / +649 | 1 / 32 | `vmid`, `td_id` |
//! | 1.5ex body | +817 / +829 / +877 | 12 / 48 / 8 | `init_tee_fmspc`, `curr_server_td_hash`, `curr_server_td_attr` (the body ends at 885) |
//! | after the body | 54 + size | 4 | signature data length (the quote ends after it) |
//!
//! TD_ATTRIBUTES bits: Intel TDX Module ABI 348551 (bit 28 SEPT_VE_DISABLE, bit 17
//! SERVTD_EXT). The FMSPC is read from the PCK certificate the quote carries (Intel's
//! PCK certificate profile: extension 1.2.840.113741.1.13.1.4, a 6-byte OCTET STRING).

use base64::Engine as _;
use rats::{verify, Collateral, Input, Policy, RatsError, Tee};

/// 2025-06-20T00:00:00Z: inside the validity of `tdx_quote_5.dat`'s PCK chain
/// (2024-03-18 to 2031-03-18).
const TD15_AT: u64 = 1_750_377_600;
/// 2026-10-15T00:00:00Z: inside the collateral window of `tdx_quote_td15ex`
/// (2026-10-08T00:28:26Z to 2026-11-06T23:45:11Z).
const TD15EX_AT: u64 = 1_792_022_400;
/// 2026-11-08T00:00:00Z: after that window.
const TD15EX_LATE: u64 = 1_794_096_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn u16_at(q: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([q[at], q[at + 1]])
}

fn u32_at(q: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(q[at..at + 4].try_into().unwrap())
}

/// The body of a v5 quote, checked against its descriptor: `(type, body)`.
fn v5_body(q: &[u8]) -> (u16, &[u8]) {
    assert_eq!(u16_at(q, 0), 5, "quote version");
    assert_eq!(u16_at(q, 2), 2, "attestation key type");
    assert_eq!(u32_at(q, 4), 0x81, "TEE type");
    let size = u32_at(q, 50) as usize;
    // The signature data ends the quote: no bytes beyond what the quote declares.
    let signature_len = u32_at(q, 54 + size) as usize;
    assert_eq!(54 + size + 4 + signature_len, q.len());
    (u16_at(q, 48), &q[54..54 + size])
}

fn hex_at(body: &[u8], at: usize, len: usize) -> String {
    hex::encode(&body[at..at + len])
}

/// The FMSPC of the first (PCK) certificate in the quote's PEM chain.
fn pck_fmspc(q: &[u8]) -> String {
    let text = String::from_utf8_lossy(q);
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap() + begin;
    let b64: String = text[begin + 27..end].split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // OID 1.2.840.113741.1.13.1.4, then OCTET STRING of 6.
    let marker = [
        0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x04, 0x04, 0x06,
    ];
    let at = der.windows(marker.len()).position(|w| w == marker).unwrap() + marker.len();
    hex::encode(&der[at..at + 6])
}

fn bare(now: u64) -> Input {
    Input {
        report_data: None,
        collateral: None,
        now,
    }
}

fn td15ex_input(now: u64) -> Input {
    Input {
        report_data: None,
        collateral: Some(
            Collateral::parse(Tee::TdxEcdsa, &data("tdx_quote_td15ex_collateral.json")).unwrap(),
        ),
        now,
    }
}

const SERVICE_TD_REASON: &str = "the TD is bound to a service TD (SERVTD_EXT or mr_servicetd); \
                                 the policy does not allow service TDs";

/// Trustee's TD 1.5 quote (its test `test_quote_version` expects version 5): body type
/// 3, a non-zero `mr_servicetd` with SERVTD_EXT clear. No collateral for it is public
/// (Trustee fetches it from Alibaba Cloud's PCS in an ignored test), so it is verified
/// as far as the quote goes and the rest is named unknown.
#[test]
fn trustee_td15_quote_is_bound_to_a_service_td() {
    let q = data("tdx_quote_5.dat");
    let (body_type, body) = v5_body(&q);
    assert_eq!((body_type, body.len()), (3, 648));
    assert_eq!(Tee::detect(&q).unwrap(), Tee::TdxEcdsa);

    let v = verify(&q, None, &bare(TD15_AT)).unwrap();
    let claim = |name: &str| v.claims[name].canonical().join(",");
    assert_eq!(v.tcb_status.as_deref(), Some("Unknown"));
    assert_eq!(claim("tdx_report_body"), "td15");
    assert_eq!(claim("tdx_tee_tcb_svn"), hex_at(body, 0, 16));
    assert_eq!(claim("tdx_td_attributes"), hex_at(body, 120, 8));
    assert_eq!(claim("tdx_mr_td"), hex_at(body, 136, 48));
    assert_eq!(claim("report_data"), hex_at(body, 520, 64));
    assert_eq!(claim("tdx_tee_tcb_svn2"), hex_at(body, 584, 16));
    assert_eq!(claim("tdx_mr_servicetd"), hex_at(body, 600, 48));
    assert_ne!(
        hex_at(body, 600, 48),
        "00".repeat(48),
        "mr_servicetd is set"
    );
    // TD_ATTRIBUTES 0x10000000: SEPT_VE_DISABLE only, SERVTD_EXT clear.
    let attributes = u64::from_le_bytes(body[120..128].try_into().unwrap());
    assert_eq!(attributes, 0x1000_0000);
    assert_eq!(claim("tdx_sept_ve_disable"), "true");
    assert_eq!(claim("tdx_servtd_ext"), "false");
    assert_eq!(claim("tdx_service_td_bound"), "true");
    assert_eq!(claim("debug"), "false");
    // No 1.5ex fields in a 1.5 body.
    assert!(!v.claims.contains_key("tdx_td_id"));
    assert_eq!(claim("dcap_fmspc"), pck_fmspc(&q));
    assert_eq!(claim("dcap_fmspc"), "90c06f000000");
    assert_eq!(claim("dcap_revocation_checked"), "false");
    assert!(claim("dcap_unknown_claims").contains("dcap_tcb_date"));

    // The default policy refuses for both reasons; each is a separate switch.
    assert_eq!(
        Policy::default().appraise(&v).reasons,
        [
            "TCB status Unknown is not accepted (accepted: UpToDate)",
            SERVICE_TD_REASON
        ]
    );
    let unknown_ok = Policy {
        accepted_tcb_statuses: vec!["Unknown".into()],
        ..Policy::default()
    };
    assert_eq!(unknown_ok.appraise(&v).reasons, [SERVICE_TD_REASON]);
    let service_td_ok = Policy {
        allow_service_td: true,
        ..unknown_ok
    };
    assert!(service_td_ok.appraise(&v).accepted);
}

/// Bytes of the TD 1.5 body are signed: flipping `mr_servicetd` or `tee_tcb_svn2`
/// breaks the quote's signature, checked without collateral.
#[test]
fn the_td15_fields_are_signed() {
    let q = data("tdx_quote_5.dat");
    for at in [54 + 584, 54 + 600, 54 + 647] {
        let mut forged = q.clone();
        forged[at] ^= 1;
        let e = verify(&forged, None, &bare(TD15_AT)).unwrap_err();
        assert!(
            matches!(&e, RatsError::Signature { reason, .. } if reason.contains("quote's signature")),
            "byte {at}: {e}"
        );
    }
}

/// dcap-qvl's TD 1.5ex quote with its collateral: `UpToDate`, no advisories (dcap-qvl's
/// test `td15_ex_quote_verifies`), no service TD, accepted by the default policy.
#[test]
fn dcap_qvl_td15ex_quote_verifies_with_its_collateral() {
    let q = data("tdx_quote_td15ex");
    let (body_type, body) = v5_body(&q);
    // dcap-qvl asserts the same framing: 04 00, then 885 (0x375) as u32.
    assert_eq!(&q[48..54], &[4, 0, 0x75, 0x03, 0, 0]);
    assert_eq!((body_type, body.len()), (4, 885));

    let v = verify(&q, None, &td15ex_input(TD15EX_AT)).unwrap();
    let claim = |name: &str| v.claims[name].canonical().join(",");
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    assert!(v.advisory_ids.is_empty());
    assert_eq!(claim("tdx_report_body"), "td15ex");
    assert_eq!(claim("tdx_tee_tcb_svn"), hex_at(body, 0, 16));
    assert_eq!(claim("tdx_td_attributes"), hex_at(body, 120, 8));
    assert_eq!(claim("report_data"), hex_at(body, 520, 64));
    assert_eq!(claim("tdx_tee_tcb_svn2"), hex_at(body, 584, 16));
    assert_eq!(claim("tdx_mr_servicetd"), "00".repeat(48));
    assert_eq!(claim("tdx_vmid"), body[648].to_string());
    assert_eq!(claim("tdx_td_id"), hex_at(body, 649, 32));
    assert_ne!(hex_at(body, 649, 32), "00".repeat(32), "td_id is set");
    assert_eq!(claim("tdx_init_tee_fmspc"), hex_at(body, 817, 12));
    assert_eq!(claim("tdx_cur_servtd_hash"), hex_at(body, 829, 48));
    assert_eq!(claim("tdx_cur_servtd_attributes"), hex_at(body, 877, 8));
    assert_eq!(claim("tdx_service_td_bound"), "false");
    // The collateral is for the quote's platform.
    let coll: serde_json::Value =
        serde_json::from_slice(&data("tdx_quote_td15ex_collateral.json")).unwrap();
    let info: serde_json::Value = serde_json::from_str(coll["tcb_info"].as_str().unwrap()).unwrap();
    assert_eq!(
        claim("dcap_fmspc"),
        info["fmspc"].as_str().unwrap().to_ascii_lowercase()
    );
    assert_eq!(claim("dcap_fmspc"), pck_fmspc(&q));
    assert_eq!(claim("dcap_unknown_claims"), "");
    assert!(Policy::default().appraise(&v).accepted);

    // Without collateral: the same body, TCB unknown.
    let offline = verify(&q, None, &bare(TD15EX_AT)).unwrap();
    assert_eq!(offline.tcb_status.as_deref(), Some("Unknown"));
    for (name, value) in &v.claims {
        if name.starts_with("tdx_") {
            assert_eq!(offline.claims.get(name), Some(value), "{name}");
        }
    }

    // After the collateral's window.
    let e = verify(&q, None, &td15ex_input(TD15EX_LATE)).unwrap_err();
    assert!(matches!(e, RatsError::CollateralExpired { .. }), "{e}");
}

/// The 1.5ex fields are signed (dcap-qvl's `td15_ex_extension_is_signed` flips
/// `td_id`'s first byte and the body's last byte).
#[test]
fn the_td15ex_fields_are_signed() {
    let q = data("tdx_quote_td15ex");
    for at in [54 + 649, 54 + 884] {
        let mut forged = q.clone();
        forged[at] ^= 1;
        for input in [td15ex_input(TD15EX_AT), bare(TD15EX_AT)] {
            let e = verify(&forged, None, &input).unwrap_err();
            assert!(matches!(e, RatsError::Signature { .. }), "byte {at}: {e}");
        }
    }
}
