//! The CoRIM decoder against CoRIMs made elsewhere: measurement.md §3.3's 129-byte
//! vector (checked there with corim-rs), Trustee's and Veraison's example CoRIMs
//! (`testdata/README.md`; expected values from their YAML source and Trustee's
//! `extract_test_corim`), and CoRIMs encoded with Python's cbor2 6.2.1 (the hex below;
//! cbor2 also reproduces the 129-byte vector). None comes from our encoder.

use reference_values::corim::{decode, ReferenceValue, MAX_BYTES};
use serde_json::json;

/// measurement.md §3.3: `inclavare/sim/mr_enclave/digests` = SHA-384("example enclave").
const SPEC: &str = "d901f5a2006772762d64656d6f0181d901fa586da201a1006a636f6d69642d64656d6f04a1008182a100a20169696e636c617661726502\
6373696d81a2006a6d725f656e636c61766501a1028182075830e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5c\
fb261324656b2f6706fcb571bfab4bcf210f62";
const SPEC_DIGEST: &str = "e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5cfb261324656b2f6706fcb571bfab4bcf210f62";

/// cbor2: `18([<<{1: -7, 3: "application/rim+cbor"}>>, {}, <<SPEC>>, h'00'×64])`.
const SIGNED_SPEC: &str = "d2845819a2012603746170706c69636174696f6e2f72696d2b63626f72a05881d901f5a2006772762d64656d6f0181d901fa586da201a1006a636f6d69642d64656d6f04a1008182a100a20169696e636c6176617265026373696d81a2006a6d725f656e636c61766501a1028182075830e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5cfb261324656b2f6706fcb571bfab4bcf210f62584000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

/// cbor2: Trustee's id rule on every mkey kind — a CoSWID tag (skipped), then one
/// CoMID with class `{1: "v", 2: "m"}` and measurements: mkey uint 5 with a sha-256
/// digest; mkey "k" with name "n", serial "s", a digest under a text algorithm and a
/// tag-560 raw value; an OID mkey (no component) with a sha-512 digest.
const IDS: &str = "d901f5a200636964730182d901f940d901fa58cea201a100617404a1008182a100a201617602616d83a2000501a10281820158200101010101010101010101010101010101010101010101010101010101010101a200616b01a40b616e086173028182677368612d3235365820020202020202020202020202020202020202020202020202020202020202020204d90230420304a200d86f412a01a102818208584005050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).unwrap()
}

fn rv(id: &str, value: serde_json::Value, sample_name: Option<&str>) -> ReferenceValue {
    ReferenceValue {
        id: id.into(),
        value,
        sample_name: sample_name.map(str::to_string),
    }
}

#[test]
fn the_reference_vector_unsigned_signed_and_behind_tag_500_gives_its_value() {
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha384::digest(b"example enclave")),
        SPEC_DIGEST
    );
    let want = vec![rv(
        "inclavare/sim/mr_enclave/digests",
        json!([SPEC_DIGEST]),
        Some("sim_mr_enclave"),
    )];
    assert_eq!(decode(&bytes(SPEC)).unwrap(), want);
    assert_eq!(decode(&bytes(SIGNED_SPEC)).unwrap(), want);
    // Tags 500 and 502 in front, as Trustee strips them.
    for prefix in ["d901f4", "d901f6", "d901f4d901f6"] {
        assert_eq!(
            decode(&bytes(&format!("{prefix}{SPEC}"))).unwrap(),
            want,
            "{prefix}"
        );
    }
}

/// Trustee's `unsigned-example-corim.cbor` and Veraison's signed example, both from
/// `example-corim.yaml`: three measurements of ACME RoadRunner under one uuid mkey,
/// sha-256 (the YAML's base64 digests). Trustee's test expects the third under that id.
#[test]
fn trustees_and_veraisons_example_corims_give_their_three_digests() {
    let id = "ACME/RoadRunner/31fb5abf-023e-4992-aa4e-95f9c1503bfa/digests";
    let want = vec![
        rv(
            id,
            json!(["87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"]),
            None,
        ),
        rv(
            id,
            json!(["0263829989b6fd954f72baaf2fc64bc2e2f01d692d4de72986ea808f6e99813f"]),
            None,
        ),
        rv(
            id,
            json!(["a3a5e715f0cc574a73c3f9bebb6bc24f32ffd5b67b387244c2c909da779a1478"]),
            None,
        ),
    ];
    let unsigned = include_bytes!("../testdata/trustee-unsigned-example-corim.cbor");
    assert_eq!(decode(unsigned).unwrap(), want);
    let signed = include_bytes!("../testdata/veraison-signed-example-corim.cbor");
    assert_eq!(decode(signed).unwrap(), want);
}

#[test]
fn ids_follow_trustees_rule_for_every_mkey_kind() {
    assert_eq!(
        decode(&bytes(IDS)).unwrap(),
        vec![
            rv("v/m/claim5/digests", json!(["01".repeat(32)]), None),
            rv("v/m/k/n/s/digests", json!(["02".repeat(32)]), None),
            rv("v/m/k/n/s/raw_bytes", json!("0304"), None),
            rv("v/m/digests", json!(["05".repeat(64)]), None),
        ]
    );
}

#[test]
fn malformed_corims_are_refused_in_one_line_naming_what_is_wrong() {
    let spec = bytes(SPEC);
    let edit = |find: &str, replace: &str| {
        let h = SPEC.replacen(find, replace, 1);
        assert_ne!(h, SPEC, "{find}");
        bytes(&h)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "the document: not CBOR: it ends early"),
        (
            "JSON",
            b"{\"a\": 1}".to_vec(),
            "the document: not CBOR: it ends early",
        ),
        (
            "cut short",
            spec[..spec.len() - 1].to_vec(),
            "the document: not CBOR: it ends early",
        ),
        (
            "a byte after it",
            [spec.as_slice(), &[0]].concat(),
            "the document: 1 bytes after the item",
        ),
        (
            "untagged",
            spec[3..].to_vec(),
            "the document is a map, not a CoRIM (tag 501, or COSE_Sign1 tag 18)",
        ),
        (
            "another tag",
            edit("d901f5", "d901f7"),
            "the document is tag 503, not a CoRIM",
        ),
        (
            "a sha-384 id on 48 bytes said to be sha-256",
            edit("8182075830", "8182015830"),
            "tags[0] CoMID: reference-triples[0] measurements[0] mval digests[0]: a sha-256 digest is 32 bytes, not 48",
        ),
        (
            "the vendor a byte string",
            edit("0169696e636c61766172", "0149696e636c61766172"),
            "tags[0] CoMID: reference-triples[0] class vendor is a byte string, not a text string",
        ),
        (
            // cbor2: the spec's CoMID with digests [[7, "ab"]].
            "a digest that is text",
            bytes("d901f5a20061780181d901fa5835a201a100616304a1008182a100a20169696e636c6176617265026373696d81a2006a6d725f656e636c61766501a102818207626162"),
            "mval digests[0] value is a text string, not a byte string",
        ),
        (
            // cbor2: 501({0: "y", 0: "y" …}): key 0 twice.
            "a key twice",
            bytes("d901f5a30061780061790180"),
            "corim-map: key 0 appears twice",
        ),
        (
            // cbor2: 501({0: "x", 1: [506(<<{1: {0: "c"}, 4: {}}>>)]}).
            "no reference triples",
            bytes("d901f5a20061780181d901fa48a201a100616304a0"),
            "no reference triple with digests or a raw value",
        ),
        (
            // cbor2: 18([<<{}>>, {}, null, h'']).
            "a detached COSE payload",
            bytes("d28441a0a0f640"),
            "COSE_Sign1 payload is detached (null)",
        ),
        (
            // cbor2: 18([<<{}>>, {}, h'']).
            "a COSE_Sign1 of three items",
            bytes("d28341a0a040"),
            "COSE_Sign1 has 3 items, not 4",
        ),
        (
            "nested past the bound",
            [vec![0x81; 10_000], vec![0]].concat(),
            "the document: not CBOR: nested deeper than 32",
        ),
        (
            "too long",
            vec![0; MAX_BYTES + 1],
            "1048577 bytes, over the 1048576 allowed",
        ),
    ];
    for (name, input, want) in cases {
        let err = decode(&input).unwrap_err().to_string();
        assert!(err.starts_with("CoRIM: "), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains('\n'), "{name}: {err}");
    }
}
