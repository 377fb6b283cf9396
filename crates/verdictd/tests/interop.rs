//! What a client or an operator written for Trustee's KBS sees when it talks to
//! verdictd instead: the same messages accepted, the same claims, the same decisions.
//! Expected values come from Trustee's source (T = confidential-containers/trustee at
//! 78962cd) and guest-components' (G = confidential-containers/guest-components).

use crate::common::*;
use attestation_agent::AgentError;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{Attestation, CompositeEvidence, InitData, RuntimeData};
use serde_json::{json, Value};

/// `kbs-client config set-sample-reference-value NAME VALUE [--as-integer|--as-bool]
/// [--as-single-value]`'s request body (T:tools/kbs-client/src/lib.rs set_sample_rv).
fn rv_message(name: &str, value: Value) -> Vec<u8> {
    json!({"version": "0.1.0", "type": "sample",
           "payload": STANDARD.encode(json!({name: value}).to_string())})
    .to_string()
    .into_bytes()
}

fn admin(v: &Verdictd, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
    call(&mut v.client(), method, path, body, None)
}

/// `kbs-client config set-attestation-policy --policy-file F` (T:tools/kbs-client/src/
/// lib.rs: type "rego" and id "default_cpu" unless given, the file base64url).
fn attestation_policy_message(policy: &str) -> Vec<u8> {
    json!({"type": "rego", "policy_id": "default_cpu",
           "policy": URL_SAFE_NO_PAD.encode(policy)})
    .to_string()
    .into_bytes()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn cpu0(token: &str) -> Value {
    claims_of(token)["submods"]["cpu0"].clone()
}

#[test]
fn bodies_up_to_trustees_2_mib_are_read_and_larger_ones_get_a_json_413() {
    let v = Verdictd::start(ADMIN_OPEN);
    // T:kbs/src/config.rs DEFAULT_PAYLOAD_REQUEST_SIZE = 2 (MiB): 1.5 MiB is read (and
    // refused for what it says: there is no session), 2 MiB + 1 is not read.
    let (status, b) = admin(&v, "POST", "/kbs/v0/attest", Some(vec![b' '; 3 << 19]));
    assert_eq!((status, error_kind(&b)), (401, "AttestationError"), "{b}");
    let (status, b) = admin(
        &v,
        "POST",
        "/kbs/v0/attest",
        Some(vec![b' '; (2 << 20) + 1]),
    );
    assert_eq!((status, error_kind(&b)), (413, "PayloadTooLarge"), "{b}");
    assert!(b["detail"].as_str().unwrap().contains("2097152"), "{b}");
}

#[test]
fn the_agent_takes_resource_uris_with_a_host_as_the_guest_components_do() {
    let v = Verdictd::start(&format!("resource_policy = \"allow_all\"\n{ADMIN_OPEN}"));
    store(&v, "default/key/demo", b"demo");
    let rt = rt();
    // G:attestation-agent/docs/RESOURCE_URI.md: the host and port are ignored (the
    // broker is the agent's --url); this one names a port nobody serves.
    for uri in [
        "kbs://127.0.0.1:1/default/key/demo",
        "kbs://127.0.0.1:8080/default/key/demo",
        "kbs:///default/key/demo?version=1",
    ] {
        let secret = rt.block_on(v.agent().get_resource(uri)).unwrap();
        assert_eq!(secret.as_slice(), b"demo", "{uri}");
    }
    // The query reaches the resource policy as `data.query`, as Trustee passes it
    // (T:kbs/src/api_server.rs policy_data).
    set_policy(
        &v,
        "package policy\nimport rego.v1\ndefault allow := false\nallow if data.query.version == \"1\"\n",
    );
    let secret = rt
        .block_on(v.agent().get_resource("kbs:///default/key/demo?version=1"))
        .unwrap();
    assert_eq!(secret.as_slice(), b"demo");
    let err = rt
        .block_on(v.agent().get_resource("kbs:///default/key/demo?version=2"))
        .unwrap_err();
    assert!(matches!(err, AgentError::Kbs { status: 401, .. }), "{err}");
    let err = rt
        .block_on(v.agent().get_resource("http://127.0.0.1/default/key/demo"))
        .unwrap_err();
    assert!(matches!(err, AgentError::BadUri(..)), "{err}");
}

#[test]
fn reference_values_are_any_json_and_can_be_deleted() {
    let v = Verdictd::start(ADMIN_OPEN);
    // `set-sample-reference-value major_version 1 --as-integer --as-single-value`.
    for (name, value) in [
        ("major_version", json!(1)),
        ("debug_ok", json!(false)),
        ("svn", json!(["1"])),
    ] {
        let (status, b) = admin(
            &v,
            "POST",
            "/kbs/v0/reference-value",
            Some(rv_message(name, value.clone())),
        );
        assert_eq!(status, 200, "{b}");
        // `get-reference-value --id NAME`: the value as stored (T:kbs/src/attestation/
        // backend.rs query_reference_value serialises the RVPS value).
        let (status, got) = admin(&v, "GET", &format!("/kbs/v0/reference-value/{name}"), None);
        assert_eq!((status, got), (200, value));
    }
    // Registering a name again replaces it (T:rvps/src/lib.rs: overwrite: true).
    admin(
        &v,
        "POST",
        "/kbs/v0/reference-value",
        Some(rv_message("svn", json!(["2"]))),
    );
    let (_, got) = admin(&v, "GET", "/kbs/v0/reference-value/svn", None);
    assert_eq!(got, json!(["2"]));
    let (status, _) = admin(&v, "DELETE", "/kbs/v0/reference-value/svn", None);
    assert_eq!(status, 200);
    // An unknown id: T answers RvpsError ("No reference value found for the given id").
    for method in ["GET", "DELETE"] {
        let (status, b) = admin(&v, method, "/kbs/v0/reference-value/svn", None);
        assert_eq!(
            (status, error_kind(&b)),
            (401, "RvpsError"),
            "{method}: {b}"
        );
        assert!(b["detail"]
            .as_str()
            .unwrap()
            .contains("No reference value found"));
    }
    let (status, b) = admin(&v, "POST", "/kbs/v0/reference-value", Some(b"{".to_vec()));
    assert_eq!((status, error_kind(&b)), (401, "RvpsError"), "{b}");
}

#[test]
fn a_trustee_policy_decides_the_same_here() {
    let v = Verdictd::start(ADMIN_OPEN);
    store(&v, "default/key/demo", b"demo");
    let rt = rt();
    // A resource policy written against Trustee's sample claims.
    set_policy(
        &v,
        "package policy\nimport rego.v1\ndefault allow := false\nallow if {\n  input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn == \"1\"\n}\n",
    );
    let mut agent = v.agent();
    assert_eq!(
        rt.block_on(agent.get_resource("kbs:///default/key/demo"))
            .unwrap()
            .as_slice(),
        b"demo"
    );
    // Without reference values, Trustee's default_cpu leaves hardware at 97 and
    // executables at 33: contraindicated (T:attestation-service/src/ear_token/
    // ear_default_policy_cpu.rego); the `affirming` resource policy refuses.
    let token = rt.block_on(agent.attest()).unwrap();
    let c = cpu0(&token);
    assert_eq!(c["ear.status"], "contraindicated");
    let tv = &c["ear.trustworthiness-vector"];
    assert_eq!(
        (&tv["executables"], &tv["hardware"], &tv["configuration"]),
        (&json!(33), &json!(97), &json!(2))
    );
    // The reference values default_cpu asks of the sample TEE, as kbs-client sends
    // them: an affirming token, and `affirming` releases.
    for (name, value) in [
        ("launch_digest", json!(["abcde"])),
        ("svn", json!(["1"])),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(4)),
    ] {
        let (status, b) = admin(
            &v,
            "POST",
            "/kbs/v0/reference-value",
            Some(rv_message(name, value)),
        );
        assert_eq!(status, 200, "{b}");
    }
    let token = rt.block_on(agent.attest()).unwrap();
    let c = cpu0(&token);
    assert_eq!(c["ear.status"], "affirming", "{c}");
    let tv = &c["ear.trustworthiness-vector"];
    assert_eq!(
        (&tv["executables"], &tv["hardware"], &tv["configuration"]),
        (&json!(3), &json!(2), &json!(2))
    );
    set_policy(&v, include_str!("../policies/affirming.rego"));
    assert_eq!(
        rt.block_on(v.agent().get_resource("kbs:///default/key/demo"))
            .unwrap()
            .as_slice(),
        b"demo"
    );
    // The annotated evidence's shape (T:attestation-service/src/ear_token/broker.rs
    // transform_claims): report_data lifted out of the TEE's claims, runtime data.
    let ae = &c["ear.veraison.annotated-evidence"];
    assert!(ae["sample"].get("report_data").is_none());
    assert_eq!(
        ae["report_data"]
            .as_str()
            .map(|s| STANDARD.decode(s).unwrap().len()),
        Some(48)
    );
    assert_eq!(ae["runtime_data_claims"]["additional-evidence"], "");
    assert!(ae["runtime_data_claims"]["nonce"].is_string());
    assert_eq!(ae["runtime_data_claims"]["tee-pubkey"]["kty"], "EC");
}

#[test]
fn rego_attestation_policies_are_accepted_as_trustee_accepts_them() {
    let v = Verdictd::start(ADMIN_OPEN);
    let rt = rt();
    let rego = "package policy\nimport rego.v1\ndefault hardware := 97\nhardware := 2 if { input.sample.svn in query_reference_value(\"svn\") }\ntrust_claims := {\"hardware\": hardware, \"executables\": 2, \"configuration\": 2}\nextensions := [{\"name\": \"ear.trustee.identifiers\", \"key\": -18, \"value\": {\"validated\": {}}}]\n";
    let (status, b) = admin(
        &v,
        "POST",
        "/kbs/v0/attestation-policy",
        Some(attestation_policy_message(rego)),
    );
    assert_eq!(status, 200, "{b}");
    let token = rt.block_on(v.agent().attest()).unwrap();
    assert_eq!(cpu0(&token)["ear.trustworthiness-vector"]["hardware"], 97);
    admin(
        &v,
        "POST",
        "/kbs/v0/reference-value",
        Some(rv_message("svn", json!(["1"]))),
    );
    let token = rt.block_on(v.agent().attest()).unwrap();
    let c = cpu0(&token);
    assert_eq!(c["ear.status"], "affirming", "{c}");
    assert_eq!(c["ear.trustee.identifiers"], json!({"validated": {}}));
    // A Rego that does not compile is refused, the old policy kept; Trustee wraps
    // set_policy's errors as AttestationError (T:kbs/src/attestation/backend.rs).
    let (status, b) = admin(
        &v,
        "POST",
        "/kbs/v0/attestation-policy",
        Some(attestation_policy_message(
            "package policy\ntrust_claims := {",
        )),
    );
    assert_eq!((status, error_kind(&b)), (401, "AttestationError"), "{b}");
    assert!(!b["detail"].as_str().unwrap().contains('\n'));
    let token = rt.block_on(v.agent().attest()).unwrap();
    assert_eq!(cpu0(&token)["ear.status"], "affirming");
    // verdictd's own rats policies (TOML) stay accepted.
    let (status, b) = admin(
        &v,
        "POST",
        "/kbs/v0/attestation-policy",
        Some(attestation_policy_message("allow_software_tees = true\n")),
    );
    assert_eq!(status, 200, "{b}");
    let token = rt.block_on(v.agent().attest()).unwrap();
    assert_eq!(cpu0(&token)["ear.trustworthiness-vector"]["hardware"], 2);
}

#[test]
fn init_data_claims_are_the_parsed_document() {
    use sha2::Digest;
    let v = Verdictd::start(ADMIN_OPEN);
    // Init-data as the guest sends it (kbs_types InitData, format toml), with an
    // aa.toml that T:attestation-service/src/lib.rs parse_init_data parses.
    let body = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x = 1\"\n";
    let mut m = Manual::auth(&v);
    let key = TeeKeyPair::generate();
    let digest = kbs_protocol::binding::digest(
        kbs_protocol::HashAlgorithm::Sha384,
        &m.nonce,
        &key.public_key(),
        "",
    )
    .unwrap();
    let attestation = Attestation {
        init_data: Some(InitData {
            format: "toml".into(),
            body: body.into(),
        }),
        runtime_data: RuntimeData {
            nonce: m.nonce.clone(),
            tee_pubkey: key.public_key(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: serde_json::to_value(rats::SampleEvidence::new(&digest)).unwrap(),
            additional_evidence: String::new(),
        },
    };
    let (status, reply) = m.attest(serde_json::to_vec(&attestation).unwrap());
    assert_eq!(status, 200, "{reply}");
    let ae = &cpu0(reply["token"].as_str().unwrap())["ear.veraison.annotated-evidence"];
    assert_eq!(ae["init_data_claims"], json!({"aa.toml": {"x": 1}}));
    // sample: the init-data digest in standard base64 (T:deps/verifier/src/sample).
    assert_eq!(
        ae["init_data"],
        STANDARD.encode(sha2::Sha384::digest(body.as_bytes()))
    );
}

#[test]
fn admin_answers_have_trustees_shapes() {
    let v = Verdictd::start(ADMIN_OPEN);
    // T:kbs/src/api_server.rs: GET resource-policy lists the policy ids.
    let (status, b) = admin(&v, "GET", "/kbs/v0/resource-policy", None);
    assert_eq!((status, b), (200, json!(["resource-policy"])));
    for (body, kind) in [
        (b"not json".to_vec(), "ParsePolicyError"),
        (b"{}".to_vec(), "ParsePolicyError"),
        (
            json!({"policy": "!!"}).to_string().into_bytes(),
            "ParsePolicyError",
        ),
        (
            json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow if {")})
                .to_string()
                .into_bytes(),
            "PolicyEngineError",
        ),
    ] {
        let (status, b) = admin(&v, "POST", "/kbs/v0/resource-policy", Some(body));
        assert_eq!((status, error_kind(&b)), (401, kind), "{b}");
    }
    // A missing resource: the resource plugin's error (401, so the client attests
    // again), not a 404 that makes it stop.
    set_policy(&v, "package policy\ndefault allow := true\n");
    let err = rt()
        .block_on(v.agent().get_resource("kbs:///default/key/none"))
        .unwrap_err();
    assert!(matches!(err, AgentError::Kbs { status: 401, .. }), "{err}");
}

/// An enclave whose claims are not among the reference values, as a new user first
/// meets it: the refusal the agent reports and verdictd's log name the claim, the value
/// found and the reference values, beside the trust vector Trustee's token gives
/// (hardware 97: T:attestation-service/src/ear_token/ear_default_policy_cpu.rego).
/// The sample evidence's `svn` is "1" (T:deps/verifier/src/sample/mod.rs).
#[test]
fn a_refusal_names_the_claim_its_value_and_the_reference_values() {
    let v = Verdictd::start(&format!("resource_policy = \"affirming\"\n{ADMIN_OPEN}"));
    store(&v, "default/key/demo", b"demo");
    let rt = rt();
    let detail = |v: &Verdictd| match rt.block_on(v.agent().get_resource("kbs:///default/key/demo"))
    {
        Err(AgentError::Kbs {
            status: 401,
            detail,
            ..
        }) => detail,
        other => panic!("{other:?}"),
    };

    // Trustee's default_cpu, the reference values as kbs-client sends them, svn "2".
    for (name, value) in [
        ("launch_digest", json!(["abcde"])),
        ("svn", json!(["2"])),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(4)),
    ] {
        let (status, b) = admin(
            &v,
            "POST",
            "/kbs/v0/reference-value",
            Some(rv_message(name, value)),
        );
        assert_eq!(status, 200, "{b}");
    }
    let token = rt.block_on(v.agent().attest()).unwrap();
    assert_eq!(cpu0(&token)["ear.trustworthiness-vector"]["hardware"], 97);
    let why = "claim sample.svn is 1, not among the reference values svn (2)";
    let d = detail(&v);
    assert!(
        d.starts_with("Access denied by policy: the resource policy denies default/key/demo"),
        "{d}"
    );
    assert!(d.contains(why), "{d}");
    assert!(d.contains("hardware 97"), "{d}");
    assert!(!d.contains("launch_digest"), "{d}");
    assert!(!d.contains('\n'), "{d}");
    let log = std::fs::read_to_string(v.dir.path().join("verdictd.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("attested") && l.contains(why)),
        "{log}"
    );
    // The agent's command, as a user runs it: one line, with the same words.
    let agent = test_support::release_artifact("attestation-agent", "attestation-agent").unwrap();
    let out = std::process::Command::new(agent)
        .args(["--url", &v.url, "--tee", "sample", "get-resource"])
        .arg("kbs:///default/key/demo")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("attestation-agent: "), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
    // A reference value the policy needs and nobody registered is named too.
    let (status, _) = admin(&v, "DELETE", "/kbs/v0/reference-value/svn", None);
    assert_eq!(status, 200);
    let d = detail(&v);
    assert!(d.contains("no reference value svn is registered"), "{d}");

    // verdictd's own rats policy: the claim by its rats name.
    let (status, b) = admin(
        &v,
        "POST",
        "/kbs/v0/attestation-policy",
        Some(attestation_policy_message(
            "allow_software_tees = true\n[expected]\nsample_svn = [\"2\", \"3\"]\n",
        )),
    );
    assert_eq!(status, 200, "{b}");
    let d = detail(&v);
    assert!(
        d.contains("claim sample_svn is 1, not among the reference values (2, 3)"),
        "{d}"
    );
}
