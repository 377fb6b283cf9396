//! verdictd as a reference value provider: signed bundles (`shelter rv bundle`'s
//! `bundle-message.json`: Trustee's RVPS message of type `dsse`) are checked against
//! `[rvps] trusted_keys` and their expiry before anything is stored; bad ones get one
//! line and change nothing.

mod common;

use chrono::{Duration, Utc};
use common::*;
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
        reference_values: [("sim_mr_enclave".to_string(), json!([value]))].into(),
        corim: String::new(),
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
