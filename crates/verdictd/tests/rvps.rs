//! verdictd as a reference value provider: signed bundles (`shelter rv bundle`'s
//! `bundle-message.json`: Trustee's RVPS message of type `dsse`) are checked against
//! `[rvps] trusted_keys` and their expiry before anything is stored; bad ones get one
//! line and change nothing. A bundle's CoRIM, or a CoRIM in Trustee's unsigned `corim`
//! message, is read as Trustee reads it; CoRIMs here come from measurement.md §3.3,
//! Trustee and Veraison (`reference-values/testdata`), never from our encoder.

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use reference_values::{
    message, seal, timestamp, EnclaveInfo, ImageInfo, Predicate, SigningKey, Statement, Tool,
    MESSAGE_TYPE,
};
use serde_json::{json, Value};

fn bundle(
    key: &SigningKey,
    value: &str,
    issued: chrono::DateTime<Utc>,
    valid: Duration,
) -> Vec<u8> {
    let sample = [("sim_mr_enclave".to_string(), json!([value]))].into();
    bundle_with(key, sample, String::new(), issued, valid)
}

/// A bundle valid for a day whose values are only in its CoRIM (`corim`, raw bytes).
fn corim_bundle(key: &SigningKey, corim: &[u8]) -> Vec<u8> {
    bundle_with(
        key,
        Default::default(),
        STANDARD.encode(corim),
        Utc::now(),
        Duration::days(1),
    )
}

/// measurement.md §3.3's CoRIM (`inclavare`, `sim`, mkey `mr_enclave`, one SHA-384
/// digest) with its digest, the last 48 bytes, replaced by `digest`. (Python's cbor2
/// encodes the same bytes.)
fn spec_corim(digest: [u8; 48]) -> Vec<u8> {
    let spec = hex::decode("d901f5a2006772762d64656d6f0181d901fa586da201a1006a636f6d69642d64656d6f04a1008182a100a20169696e636c6176617265026373696d81a2006a6d725f656e636c61766501a1028182075830").unwrap();
    [spec, digest.to_vec()].concat()
}

fn bundle_with(
    key: &SigningKey,
    sample: std::collections::BTreeMap<String, Value>,
    corim: String,
    issued: chrono::DateTime<Utc>,
    valid: Duration,
) -> Vec<u8> {
    let predicate = Predicate {
        image: ImageInfo {
            source: "oci:/layout:v1".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            config_digest: format!("sha256:{}", "cd".repeat(32)),
            diff_ids: vec![],
            platform: "linux/amd64".into(),
        },
        enclave: EnclaveInfo {
            tee: "sim".into(),
            pal: "liberpal-sim".into(),
            pal_version: "0.1.0".into(),
            measurement: sim_measurement(),
            entrypoint: "/bin/app".into(),
            args: vec![],
            manifest: Some("/enclave.manifest.json".into()),
            debug: false,
            program_digest: format!("sha384:{}", "00".repeat(48)),
        },
        reference_values: sample,
        corim,
        issued: timestamp(issued),
        expires: timestamp(issued + valid),
        tool: Tool {
            name: "test".into(),
            version: "0".into(),
        },
    };
    let statement = Statement::new("oci:/layout:v1", predicate).unwrap();
    let envelope = serde_json::to_vec(&seal(&statement, key)).unwrap();
    message(MESSAGE_TYPE, &envelope).to_string().into_bytes()
}

fn sim_measurement() -> String {
    "inclavare-sim mr_enclave v1".into()
}

fn get(v: &Verdictd, name: &str) -> (u16, Value) {
    call(
        &mut v.client(),
        "GET",
        &format!("/kbs/v0/reference-value/{name}"),
        None,
        None,
    )
}

fn post(v: &Verdictd, body: Vec<u8>) -> (u16, Value) {
    call(
        &mut v.client(),
        "POST",
        "/kbs/v0/reference-value",
        Some(body),
        None,
    )
}

#[test]
fn only_current_bundles_signed_by_a_trusted_key_are_stored() {
    let trusted = SigningKey::generate_p256().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rv.pub"), trusted.public().to_pem()).unwrap();
    let v = Verdictd::start_in(
        dir,
        &format!("{ADMIN_OPEN}[rvps]\ntrusted_keys = [\"rv.pub\"]\n"),
    );
    let now = Utc::now();
    let a = "aa".repeat(48);

    let stranger = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[3; 32]));
    let mut tampered: Value =
        serde_json::from_slice(&bundle(&trusted, &a, now, Duration::days(1))).unwrap();
    // Re-encode the envelope with another value under the same signature.
    let other = bundle(&stranger, &"bb".repeat(48), now, Duration::days(1));
    let other: Value = serde_json::from_slice(&other).unwrap();
    let envelope = |m: &Value| -> Value {
        let bytes = reference_values::dsse::decode_b64(m["payload"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let mut env = envelope(&tampered);
    env["payload"] = envelope(&other)["payload"].clone();
    tampered = message(MESSAGE_TYPE, env.to_string().as_bytes());

    for (name, body, want) in [
        (
            "signed by an unknown key",
            bundle(&stranger, &a, now, Duration::days(1)),
            "DSSE signature: no signature verifies against a trusted key",
        ),
        (
            "payload changed after signing",
            tampered.to_string().into_bytes(),
            "DSSE signature",
        ),
        (
            "expired",
            bundle(&trusted, &a, now - Duration::days(2), Duration::days(1)),
            "the reference-value bundle expired at",
        ),
        ("not JSON", b"{".to_vec(), "parse message"),
        (
            "not a DSSE envelope",
            message(MESSAGE_TYPE, b"[]").to_string().into_bytes(),
            "DSSE envelope",
        ),
    ] {
        let (status, b) = post(&v, body);
        assert_eq!((status, error_kind(&b)), (401, "RvpsError"), "{name}: {b}");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains(want), "{name}: {detail}");
        assert!(!detail.contains('\n'), "{name}: {detail}");
        let (status, _) = get(&v, "sim_mr_enclave");
        assert_eq!(status, 401, "{name}: stored anyway");
    }

    // A good one is stored, and readable as Trustee's RVPS gives it back.
    let (status, b) = post(&v, bundle(&trusted, &a, now, Duration::days(1)));
    assert_eq!(status, 200, "{b}");
    assert_eq!(get(&v, "sim_mr_enclave"), (200, json!([a])));

    // Expiry is honoured after storage too: a value whose bundle expired is forgotten.
    let (status, b) = post(
        &v,
        bundle(&trusted, &"cc".repeat(48), Utc::now(), Duration::seconds(2)),
    );
    assert_eq!(status, 200, "{b}");
    assert_eq!(get(&v, "sim_mr_enclave").1, json!(["cc".repeat(48)]));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(get(&v, "sim_mr_enclave").0, 401);
    let log = std::fs::read_to_string(v.dir.path().join("verdictd.log")).unwrap();
    assert!(log.contains("signed reference values registered"), "{log}");
}

#[test]
fn signed_bundles_need_configured_keys() {
    let v = Verdictd::start(ADMIN_OPEN);
    let key = SigningKey::generate_p256().unwrap();
    let (status, b) = post(
        &v,
        bundle(&key, &"aa".repeat(48), Utc::now(), Duration::days(1)),
    );
    assert_eq!((status, error_kind(&b)), (401, "RvpsError"), "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("no trusted keys are configured"),
        "{b}"
    );
    // A config naming a key that is not one: verdictd does not start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rv.pub"), "not a key").unwrap();
    std::fs::write(
        dir.path().join("verdictd.toml"),
        format!("listen = \"127.0.0.1:0\"\n{ADMIN_OPEN}[rvps]\ntrusted_keys = [\"rv.pub\"]\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(dir.path().join("verdictd.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[rvps] trusted key") && err.contains("rv.pub"),
        "{err}"
    );
}

/// The resource a sim enclave reporting `mr_enclave` gets after attesting: (status,
/// body).
fn sim_enclave_gets_the_key(v: &Verdictd, mr_enclave: [u8; 48]) -> (u16, Value) {
    let mut m = Manual::auth_as(v, "sim");
    let body = m.sim_attestation(mr_enclave);
    let (status, reply) = m.attest(body);
    assert_eq!(status, 200, "{reply}");
    call(
        &mut m.client,
        "GET",
        "/kbs/v0/resource/default/key/demo",
        None,
        None,
    )
}

#[test]
fn a_bundle_carrying_only_a_corim_admits_the_enclave_it_names() {
    let trusted = SigningKey::generate_p256().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rv.pub"), trusted.public().to_pem()).unwrap();
    // A policy that allows sim but names no measurement: only a provisioned reference
    // value admits (`require_reference_values`, the default).
    std::fs::write(
        dir.path().join("attestation.toml"),
        "allow_software_tees = true\n",
    )
    .unwrap();
    let v = Verdictd::start_in(
        dir,
        &format!(
            "resource_policy = \"affirming\"\nattestation_policy = \"attestation.toml\"\n\
             {ADMIN_OPEN}[rvps]\ntrusted_keys = [\"rv.pub\"]\n"
        ),
    );
    store(&v, "default/key/demo", b"the key");
    let (good, other) = ([0xaa; 48], [0xbb; 48]);

    let (status, b) = sim_enclave_gets_the_key(&v, good);
    assert_ne!(status, 200, "{b}");
    assert!(
        b.to_string()
            .contains("no reference value sim_mr_enclave is provisioned"),
        "{b}"
    );

    let (status, b) = post(&v, corim_bundle(&trusted, &spec_corim(good)));
    assert_eq!(status, 200, "{b}");
    // Under the name the policy queries and under Trustee's id.
    for name in ["sim_mr_enclave", "inclavare/sim/mr_enclave/digests"] {
        assert_eq!(get(&v, name), (200, json!([hex::encode(good)])), "{name}");
    }
    let (status, b) = sim_enclave_gets_the_key(&v, good);
    assert_eq!(status, 200, "{b}");

    // Another CoRIM-only bundle replaces the value: the same enclave is refused, the
    // reason naming the value found and the one expected.
    let (status, b) = post(&v, corim_bundle(&trusted, &spec_corim(other)));
    assert_eq!(status, 200, "{b}");
    let (status, b) = sim_enclave_gets_the_key(&v, good);
    assert_ne!(status, 200, "{b}");
    let reason = format!(
        "claim sim.sim_mr_enclave is {}, not among the reference values sim_mr_enclave ({})",
        hex::encode(good),
        hex::encode(other)
    );
    assert!(b.to_string().contains(&reason), "{b}");
}

#[test]
fn a_malformed_corim_is_refused_in_one_line_and_nothing_is_stored() {
    let trusted = SigningKey::generate_p256().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rv.pub"), trusted.public().to_pem()).unwrap();
    let v = Verdictd::start_in(
        dir,
        &format!("{ADMIN_OPEN}[rvps]\ntrusted_keys = [\"rv.pub\"]\n"),
    );
    let good = spec_corim([0xaa; 48]);
    // SHA-384's IANA id 7 made sha-256's (1) on the same 48 bytes.
    let mut sha256 = good.clone();
    let at = sha256.len() - 51;
    assert_eq!(sha256[at - 1..at + 2], [0x82, 7, 0x58]);
    sha256[at] = 1;
    let disagreeing = bundle_with(
        &trusted,
        [("sim_mr_enclave".to_string(), json!(["bb".repeat(48)]))].into(),
        STANDARD.encode(&good),
        Utc::now(),
        Duration::days(1),
    );
    let unsigned_corim = |payload: &[u8]| message("corim", payload).to_string().into_bytes();
    for (name, body, want) in [
        (
            "a sha-256 digest of 48 bytes",
            corim_bundle(&trusted, &sha256),
            "CoRIM: tags[0] CoMID: reference-triples[0] measurements[0] mval digests[0]: a sha-256 digest is 32 bytes, not 48",
        ),
        (
            "cut short",
            corim_bundle(&trusted, &good[..good.len() - 1]),
            "CoRIM: the document: not CBOR: it ends early",
        ),
        (
            "not base64",
            bundle_with(&trusted, Default::default(), "!!".into(), Utc::now(), Duration::days(1)),
            "CoRIM: not standard base64",
        ),
        (
            "its sample form says otherwise",
            disagreeing,
            "the sample value sim_mr_enclave is",
        ),
        (
            "an unsigned corim message holding JSON",
            unsigned_corim(b"{\"sim_mr_enclave\": []}"),
            "CoRIM: the document: not CBOR",
        ),
        (
            "an unsigned corim message holding a map",
            unsigned_corim(&good[3..]),
            "CoRIM: the document is a map, not a CoRIM (tag 501, or COSE_Sign1 tag 18)",
        ),
    ] {
        let (status, b) = post(&v, body);
        assert_eq!((status, error_kind(&b)), (401, "RvpsError"), "{name}: {b}");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains(want), "{name}: {detail}");
        assert!(!detail.contains('\n'), "{name}: {detail}");
        for id in ["sim_mr_enclave", "inclavare/sim/mr_enclave/digests"] {
            assert_eq!(get(&v, id).0, 401, "{name}: {id} stored anyway");
        }
    }
}

/// Trustee's `corim` message (unsigned; a COSE_Sign1's signature unchecked, as by
/// Trustee), with Trustee's and Veraison's example CoRIMs: Trustee's
/// `extract_test_corim` expects `a3a5…` under the RoadRunner id (three digests share
/// it; the last one stays, as in Trustee's store).
#[test]
fn trustees_corim_messages_are_read_as_trustee_reads_them() {
    let v = Verdictd::start(ADMIN_OPEN);
    let id = "ACME/RoadRunner/31fb5abf-023e-4992-aa4e-95f9c1503bfa/digests";
    for (name, corim) in [
        (
            "trustee",
            &include_bytes!("../../reference-values/testdata/trustee-unsigned-example-corim.cbor")
                [..],
        ),
        (
            "veraison signed",
            &include_bytes!("../../reference-values/testdata/veraison-signed-example-corim.cbor")[..],
        ),
    ] {
        let (status, b) = post(&v, message("corim", corim).to_string().into_bytes());
        assert_eq!(status, 200, "{name}: {b}");
        assert_eq!(
            get(&v, id),
            (
                200,
                json!(["a3a5e715f0cc574a73c3f9bebb6bc24f32ffd5b67b387244c2c909da779a1478"])
            ),
            "{name}"
        );
        let (status, _) = call(
            &mut v.client(),
            "DELETE",
            &format!("/kbs/v0/reference-value/{id}"),
            None,
            None,
        );
        assert_eq!(status, 200, "{name}");
    }
    let digest = "e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5cfb261324656b2f6706fcb571bfab4bcf210f62";
    let spec = spec_corim(hex::decode(digest).unwrap().try_into().unwrap());
    let (status, b) = post(&v, message("corim", &spec).to_string().into_bytes());
    assert_eq!(status, 200, "{b}");
    assert_eq!(get(&v, "sim_mr_enclave"), (200, json!([digest])));
}
