//! The image an enclave pulled, as a claim a resource policy can pin: the attestation
//! agent records Confidential Containers' `PullImage` event with the manifest digest the
//! image library resolved from a real registry, verdictd shows it as
//! `<tee>.uefi_event_logs[]` (trustee's shape), and a Rego resource policy releases a
//! key only for the digest `skopeo inspect` reports for the pushed image. A log the
//! evidence is not bound to, or whose text does not match its digest, is refused.

use crate::common::*;
use attestation_agent::eventlog::{Event, EventLog};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use enclave_image::registry::{ImageSource, Puller, RegistryConfig};
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{Attestation, CompositeEvidence, RuntimeData};
use serde_json::Value;
use test_support::{Auth, Registry};

/// The resource policy of a tenant who releases the key only to an enclave that pulled
/// `digest` (the Rego measurement.md §1.5 gives for TDX, on `sample`'s claims).
fn pinning(digest: &str) -> String {
    format!(
        r#"package policy
import rego.v1
default allow := false
allow if {{
    some e in input.submods.cpu0["ear.veraison.annotated-evidence"].sample.uefi_event_logs
    e.digest_matches_event
    e.details.unicode_name == "AAEL"
    e.details.data.domain == "github.com/confidential-containers"
    e.details.data.operation == "PullImage"
    e.details.data.content.digest == "{digest}"
}}
"#
    )
}

fn tools() -> bool {
    for t in ["skopeo", "docker-registry"] {
        if !std::path::Path::new(&format!("/usr/bin/{t}")).exists() {
            eprintln!("skipped: /usr/bin/{t} is missing");
            return false;
        }
    }
    true
}

/// busybox pushed with skopeo; (reference, the digest `skopeo inspect` reports).
fn pushed(reg: &Registry) -> (String, String) {
    let tar = test_support::busybox_oci_tar().unwrap();
    let src = format!("oci-archive:{}:latest", tar.display());
    let reference = format!("{}/test/app:v1", reg.host());
    test_support::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{reference}"),
    ])
    .unwrap();
    let digest = test_support::skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
    .unwrap()
    .trim()
    .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    (reference, digest)
}

/// The payload of an EAR token.
fn ear_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn the_pulled_digest_is_a_claim_a_resource_policy_pins() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    let (reference, skopeo_digest) = pushed(&reg);

    // What an enclave does: resolve the manifest, record the event, attest.
    let rt = rt();
    let source: ImageSource = reference.parse().unwrap();
    let image = rt
        .block_on(async {
            Puller::new(RegistryConfig {
                insecure_http: vec![reg.host()],
                ..RegistryConfig::default()
            })?
            .open(&source)
            .await
        })
        .unwrap();
    let event = Event::pull_image(&reference, &image.manifest_digest).unwrap();

    let v = Verdictd::start(ADMIN_OPEN);
    store(&v, "default/image-kek/app", b"the KEK");
    set_policy(&v, &pinning(&skopeo_digest));

    let mut agent = v.agent();
    agent.extend_runtime_measurement(&event).unwrap();
    let token = rt.block_on(agent.attest()).unwrap();
    let logs = &ear_claims(&token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
        ["uefi_event_logs"];
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    let e = &logs[0];
    assert_eq!(e["details"]["data"]["content"]["digest"], skopeo_digest);
    assert_eq!(e["details"]["data"]["content"]["image"], reference);
    assert_eq!(e["digest_matches_event"], true);
    assert_eq!(e["index"], 4);
    assert_eq!(e["type_name"], "EV_EVENT_TAG");
    // The binding: the log is what the evidence's runtime data carried.
    let rd = &ear_claims(&token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
        ["runtime_data_claims"]["additional-evidence"];
    assert_eq!(
        EventLog::from_additional_evidence(rd.as_str().unwrap()).unwrap(),
        agent.event_log().unwrap()
    );
    let kek = rt
        .block_on(agent.get_resource("kbs:///default/image-kek/app"))
        .unwrap();
    assert_eq!(&kek[..], b"the KEK");

    // Without the event, or with another image's digest: no key.
    let mut bare = v.agent();
    let err = rt
        .block_on(bare.get_resource("kbs:///default/image-kek/app"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("denies"), "{err}");
    let mut other = v.agent();
    other
        .extend_runtime_measurement(
            &Event::pull_image(&reference, &format!("sha256:{}", "0".repeat(64))).unwrap(),
        )
        .unwrap();
    let err = rt
        .block_on(other.get_resource("kbs:///default/image-kek/app"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("denies"), "{err}");
    drop(v);
    drop(reg);
    assert_eq!(test_support::leftovers(dir.path()), Vec::<String>::new());
}

/// An attestation whose sample evidence is bound to `bound_additional` but which sends
/// `sent_additional`.
fn attestation(m: &Manual, key: &TeeKeyPair, bound: &str, sent: &str) -> Vec<u8> {
    let digest = kbs_protocol::binding::digest(
        kbs_protocol::HashAlgorithm::Sha384,
        &m.nonce,
        &key.public_key(),
        bound,
    )
    .unwrap();
    serde_json::to_vec(&Attestation {
        init_data: None,
        runtime_data: RuntimeData {
            nonce: m.nonce.clone(),
            tee_pubkey: key.public_key(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: serde_json::to_value(rats::SampleEvidence::new(&digest)).unwrap(),
            additional_evidence: sent.into(),
        },
    })
    .unwrap()
}

#[test]
fn a_forged_or_unbound_event_is_refused() {
    let v = Verdictd::start(ADMIN_OPEN);
    let key = TeeKeyPair::generate();
    let log = |digest: &str| {
        let mut l = EventLog::new();
        l.extend(&Event::pull_image("r.example/app:1", digest).unwrap())
            .unwrap();
        l
    };
    let genuine = log(&format!("sha256:{}", "a".repeat(64)));
    let forged = log(&format!("sha256:{}", "b".repeat(64)));

    // The host swaps the log for another image's after the enclave made its evidence
    // (or adds one to evidence made without): the report data no longer matches.
    for (bound, sent) in [
        (
            genuine.to_additional_evidence(),
            forged.to_additional_evidence(),
        ),
        (String::new(), forged.to_additional_evidence()),
    ] {
        let mut m = Manual::auth(&v);
        let body = attestation(&m, &key, &bound, &sent);
        let (status, reply) = m.attest(body);
        assert_eq!(status, 401, "{reply}");
        let detail = reply["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("REPORT_DATA"), "{detail}");
    }

    // Bound, but the record's text is not what its digest says.
    let mut bytes = genuine.to_bytes();
    let (g, f) = (
        Event::pull_image("r.example/app:1", &format!("sha256:{}", "a".repeat(64)))
            .unwrap()
            .tagged(),
        Event::pull_image("r.example/app:1", &format!("sha256:{}", "b".repeat(64)))
            .unwrap()
            .tagged(),
    );
    let at = bytes.windows(g.len()).position(|w| w == g).unwrap();
    bytes[at..at + f.len()].copy_from_slice(&f);
    let lying = serde_json::json!({
        "cc_eventlog": base64::engine::general_purpose::STANDARD.encode(&bytes)
    })
    .to_string();
    let mut m = Manual::auth(&v);
    let (status, reply) = m.attest(attestation(&m, &key, &lying, &lying));
    assert_eq!(status, 401, "{reply}");
    assert!(
        reply["detail"]
            .as_str()
            .unwrap_or_default()
            .ends_with("event log record 0: its SHA-384 digest does not match its event"),
        "{reply}"
    );

    // Device evidence is still refused, in one line.
    let mut m = Manual::auth(&v);
    let (status, reply) = m.attest(attestation(
        &m,
        &key,
        r#"{"nvidia":{}}"#,
        r#"{"nvidia":{}}"#,
    ));
    assert_eq!(status, 401, "{reply}");
    assert!(
        reply["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("device evidence is not supported"),
        "{reply}"
    );

    // The control: the genuine log, bound, is accepted.
    let mut m = Manual::auth(&v);
    let g = genuine.to_additional_evidence();
    let (status, reply) = m.attest(attestation(&m, &key, &g, &g));
    assert_eq!(status, 200, "{reply}");
}
