use super::*;
use chrono::TimeZone;

fn predicate(expires: &str) -> Predicate {
    Predicate {
        image: ImageInfo {
            source: "oci:/l:v1".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            config_digest: format!("sha256:{}", "cd".repeat(32)),
            diff_ids: vec![],
            platform: "linux/amd64".into(),
        },
        enclave: EnclaveInfo {
            tee: "sim".into(),
            pal: "liberpal-sim".into(),
            pal_version: "0.1.0".into(),
            measurement: "inclavare-sim mr_enclave v1".into(),
            entrypoint: "/bin/app".into(),
            args: vec![],
            manifest: None,
            debug: true,
            program_digest: format!("sha384:{}", "00".repeat(48)),
        },
        reference_values: BTreeMap::from([(
            "sim_mr_enclave".to_string(),
            serde_json::json!(["11".repeat(48)]),
        )]),
        corim: String::new(),
        issued: "2026-01-01T00:00:00Z".into(),
        expires: expires.into(),
        tool: Tool {
            name: "test".into(),
            version: "0".into(),
        },
    }
}

fn bundle(key: &SigningKey, expires: &str) -> Vec<u8> {
    let s = Statement::new("oci:/l:v1", predicate(expires)).unwrap();
    let env = serde_json::to_vec(&seal(&s, key)).unwrap();
    serde_json::to_vec(&message(MESSAGE_TYPE, &env)).unwrap()
}

fn at(y: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, 6, 1, 0, 0, 0).unwrap()
}

#[test]
fn a_signed_current_bundle_opens_and_nothing_else_does() {
    let key = SigningKey::generate_p256().unwrap();
    let good = bundle(&key, "2027-01-01T00:00:00Z");
    let o = open(&good, &[key.public()], at(2026)).unwrap();
    assert_eq!(
        o.statement.predicate.reference_values["sim_mr_enclave"][0],
        "11".repeat(48)
    );
    assert_eq!(o.statement.subject[0].digest["sha256"], "ab".repeat(32));

    let err = open(&good, &[key.public()], at(2027)).unwrap_err();
    assert!(matches!(err, RvError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired at 2027-01-01T00:00:00Z"));
    let stranger = SigningKey::generate_p256().unwrap().public();
    let err = open(&good, &[stranger], at(2026)).unwrap_err();
    assert!(matches!(err, RvError::Signature(_)), "{err}");
    assert!(!err.to_string().contains('\n'));

    // A signed statement about nothing, or not ours.
    let mut s = Statement::new("x", predicate("2027-01-01T00:00:00Z")).unwrap();
    s.predicate_type = "https://slsa.dev/provenance/v1".into();
    let env = serde_json::to_vec(&seal(&s, &key)).unwrap();
    let m = serde_json::to_vec(&message(MESSAGE_TYPE, &env)).unwrap();
    assert!(matches!(
        open(&m, &[key.public()], at(2026)),
        Err(RvError::Statement(_))
    ));
    // Trustee's unsigned types are not bundles.
    let m = serde_json::to_vec(&message("sample", b"{}")).unwrap();
    assert!(matches!(
        open(&m, &[key.public()], at(2026)),
        Err(RvError::Message(_))
    ));
}

#[test]
fn keys_round_trip_through_pem_and_ed25519_works_too() {
    for key in [
        SigningKey::generate_p256().unwrap(),
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    ] {
        let pem = key.to_pem().unwrap();
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.public(), key.public());
        let public = TrustedKey::from_pem(&key.public().to_pem()).unwrap();
        assert_eq!(public, key.public());
        let b = bundle(&again, "2027-01-01T00:00:00Z");
        open(&b, &[public], at(2026)).unwrap();
    }
    assert!(TrustedKey::from_pem("garbage").is_err());
}

/// measurement.md §3.3's CoRIM: `inclavare/sim/mr_enclave/digests` = SHA-384 of
/// `example enclave`.
const SPEC_CORIM: &str = "d901f5a2006772762d64656d6f0181d901fa586da201a1006a636f6d69642d64656d6f04a1008182a100a20169696e636c617661726502\
6373696d81a2006a6d725f656e636c61766501a1028182075830e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5c\
fb261324656b2f6706fcb571bfab4bcf210f62";
const SPEC_DIGEST: &str = "e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5cfb261324656b2f6706fcb571bfab4bcf210f62";

fn sealed(key: &SigningKey, p: Predicate) -> Vec<u8> {
    let s = Statement::new("oci:/l:v1", p).unwrap();
    let env = serde_json::to_vec(&seal(&s, key)).unwrap();
    serde_json::to_vec(&message(MESSAGE_TYPE, &env)).unwrap()
}

#[test]
fn a_bundle_with_only_a_corim_provisions_its_values_under_both_names() {
    let key = SigningKey::generate_p256().unwrap();
    let corim = STANDARD.encode(hex::decode(SPEC_CORIM).unwrap());
    let mut p = predicate("2027-01-01T00:00:00Z");
    p.reference_values.clear();
    p.corim = corim.clone();
    let o = open(&sealed(&key, p), &[key.public()], at(2026)).unwrap();
    let want = serde_json::json!([SPEC_DIGEST]);
    assert_eq!(
        o.values,
        BTreeMap::from([
            ("inclavare/sim/mr_enclave/digests".to_string(), want.clone()),
            ("sim_mr_enclave".to_string(), want.clone()),
        ])
    );

    // Both forms, agreeing (case and order do not matter): the same values.
    let mut p = predicate("2027-01-01T00:00:00Z");
    p.reference_values = BTreeMap::from([(
        "sim_mr_enclave".to_string(),
        serde_json::json!([SPEC_DIGEST.to_uppercase()]),
    )]);
    p.corim = corim.clone();
    let o = open(&sealed(&key, p), &[key.public()], at(2026)).unwrap();
    assert_eq!(o.values["inclavare/sim/mr_enclave/digests"], want);

    // Disagreeing, a CoRIM that is not one, or neither form: refused, one line each.
    let mut disagree = predicate("2027-01-01T00:00:00Z");
    disagree.corim = corim;
    let mut not_base64 = predicate("2027-01-01T00:00:00Z");
    not_base64.corim = "!!".into();
    let mut not_corim = predicate("2027-01-01T00:00:00Z");
    not_corim.corim = STANDARD.encode([0xa0]);
    let mut neither = predicate("2027-01-01T00:00:00Z");
    neither.reference_values.clear();
    for (p, want) in [
        (
            disagree,
            format!(
                "CoRIM: inclavare/sim/mr_enclave/digests is [\"{SPEC_DIGEST}\"], the sample value sim_mr_enclave is [\"{}\"]",
                "11".repeat(48)
            ),
        ),
        (not_base64, "CoRIM: not standard base64".to_string()),
        (
            not_corim,
            "CoRIM: the document is a map, not a CoRIM".to_string(),
        ),
        (neither, "0 reference values (1 to 1024)".to_string()),
    ] {
        let err = open(&sealed(&key, p), &[key.public()], at(2026)).unwrap_err();
        assert!(err.to_string().contains(&want), "{want}: {err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}
