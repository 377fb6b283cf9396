//! `sim` evidence with runtime measurements and init-data, through verdictd for real:
//! the log must replay into the registers the report signs (a record left out or
//! added is refused naming the first bad record), the events are `uefi_event_logs`
//! claims a resource policy can require, and the init-data sent must be the one whose
//! digest is the report's config id (`init_data`, `init_data_claims` as trustee gives
//! them; a mismatch is refused naming both digests).
//!
//! The report is made as `liberpal-sim` makes it (`sim_tee::rtmr::Measurements`,
//! `InitData::config_id`), signed by a platform key of the test's.

use crate::common::*;
use attestation_agent::eventlog::{Event, EventLog};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{Attestation, CompositeEvidence, InitData, RuntimeData};
use serde_json::{json, Value};
use sha2::Digest;
use sim_tee::measurement::initdata;
use sim_tee::rtmr::Measurements;

const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"aa.toml\" = \"[token_configs.kbs]\\nurl = 'http://kbs'\\n\"\n";

/// The events, at CC MR 4 as the agent records them.
fn events() -> Vec<Event> {
    vec![
        Event::image_policy(Some("kbs:///default/policy/images")).unwrap(),
        Event::pull_image("r.example/app:1", &format!("sha256:{}", "a".repeat(64))).unwrap(),
    ]
}

/// A sim session: auth as `sim`.
fn auth(v: &Verdictd) -> Manual {
    Manual::auth_as(v, "sim")
}

/// An attestation whose report was extended with `extended` and launched with
/// `launched` init-data, sending `log` and `sent` init-data.
fn attestation(
    m: &Manual,
    extended: &[Event],
    log: &EventLog,
    launched: Option<&str>,
    sent: Option<&str>,
) -> Vec<u8> {
    let key = TeeKeyPair::generate();
    let additional = log.to_additional_evidence();
    let digest = kbs_protocol::binding::digest(
        kbs_protocol::HashAlgorithm::Sha384,
        &m.nonce,
        &key.public_key(),
        &additional,
    )
    .unwrap();
    let mut measurements = Measurements::new();
    for e in extended {
        measurements.extend(4, e).unwrap();
    }
    let mut report = sim_tee::Report::unsigned(
        false,
        [0xaa; 48],
        [0xbb; 48],
        1,
        1,
        kbs_protocol::binding::report_data_64(&digest).unwrap(),
    );
    measurements.apply(&mut report);
    if let Some(doc) = launched {
        report.config_id = initdata::InitData::parse(doc).unwrap().config_id();
    }
    let platform = sim_tee::PlatformKey::generate().unwrap();
    let report = platform.sign_report(report).to_bytes();
    serde_json::to_vec(&Attestation {
        init_data: sent.map(|body| InitData {
            format: "toml".into(),
            body: body.into(),
        }),
        runtime_data: RuntimeData {
            nonce: m.nonce.clone(),
            tee_pubkey: key.public_key(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: json!({"report": STANDARD.encode(report)}),
            additional_evidence: additional,
        },
    })
    .unwrap()
}

fn log_of(events: &[Event]) -> EventLog {
    let mut log = EventLog::new();
    for e in events {
        log.extend(e).unwrap();
    }
    log
}

fn annotated(reply: &Value) -> Value {
    let token = reply["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"].clone()
}

/// A tenant's resource policy: the image pulled (trustee's Rego for TDX, on `sim`)
/// and the deployment configuration it was launched with.
const POLICY: &str = r#"package policy
import rego.v1
default allow := false
evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]
allow if {
    some e in evidence.sim.uefi_event_logs
    e.digest_matches_event
    e.details.unicode_name == "AAEL"
    e.details.data.domain == "github.com/confidential-containers"
    e.details.data.operation == "PullImage"
    e.details.data.content.digest == "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    evidence.init_data_claims["aa.toml"].token_configs.kbs.url == "http://kbs"
}
"#;

#[test]
fn replayed_events_and_bound_init_data_are_claims_a_policy_requires() {
    let v = Verdictd::start(ADMIN_OPEN);
    store(&v, "default/key/app", b"the key");
    set_policy(&v, POLICY);
    let all = events();

    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all), Some(DOC), Some(DOC)));
    assert_eq!(status, 200, "{reply}");
    let a = annotated(&reply);
    let digest = hex::encode(sha2::Sha256::digest(DOC.as_bytes()));
    assert_eq!(a["init_data"], format!("{digest}{}", "00".repeat(32)));
    assert_eq!(
        a["init_data_claims"],
        json!({"aa.toml": {"token_configs": {"kbs": {"url": "http://kbs"}}}})
    );
    let logs = a["sim"]["uefi_event_logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[1]["details"]["data"]["operation"], "PullImage");
    assert_eq!(logs[1]["index"], 4);
    assert_eq!(a["sim"]["sim_rtmr3_count"], 2);
    assert_eq!(
        a["sim"]["sim_event_log"][0],
        "github.com/inclavare-containers/rune ImagePolicy kbs:///default/policy/images"
    );
    let (status, jwe) = call(
        &mut m.client,
        "GET",
        "/kbs/v0/resource/default/key/app",
        None,
        None,
    );
    assert_eq!(status, 200, "{jwe}");

    // Without init-data: `init_data` is the (zero) config id, claims null, and the
    // policy that needs the configuration refuses the key.
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all), None, None));
    assert_eq!(status, 200, "{reply}");
    let a = annotated(&reply);
    assert_eq!(a["init_data"], "00".repeat(64));
    assert_eq!(a["init_data_claims"], Value::Null);
    let (status, _) = call(
        &mut m.client,
        "GET",
        "/kbs/v0/resource/default/key/app",
        None,
        None,
    );
    assert_ne!(status, 200);
}

#[test]
fn a_log_that_does_not_replay_or_other_init_data_is_refused() {
    let v = Verdictd::start(ADMIN_OPEN);
    let all = events();
    let detail = |reply: &Value| reply["detail"].as_str().unwrap_or_default().to_string();

    // The host drops the pull event from the log (still bound by the report data):
    // the register says two extends.
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all[..1]), None, None));
    assert_eq!(status, 401, "{reply}");
    let d = detail(&reply);
    assert!(
        d.contains("sim evidence refused: sim evidence: event log record 0: does not replay to RTMR3 (CC MR 4): 1 records give")
            && d.contains("after 2 extends")
            && !d.contains('\n'),
        "{d}"
    );
    // An event the runtime never measured, added to the log.
    let extra = Event::new("example.org", "Loaded", "other-model").unwrap();
    let mut more = all.clone();
    more.push(extra);
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&more), None, None));
    assert_eq!(status, 401, "{reply}");
    assert!(
        detail(&reply).contains("event log record 2: does not replay"),
        "{reply}"
    );
    // No log sent for a report whose registers were extended.
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &EventLog::new(), None, None));
    assert_eq!(status, 401, "{reply}");
    assert!(
        detail(&reply).contains("event log record 0: does not replay"),
        "{reply}"
    );

    // Another document than the one launched: both digests named.
    let other = DOC.replace("http://kbs", "http://evil");
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(
        &m,
        &all,
        &log_of(&all),
        Some(DOC),
        Some(&other),
    ));
    assert_eq!(status, 401, "{reply}");
    let d = detail(&reply);
    let launched = hex::encode(sha2::Sha256::digest(DOC.as_bytes()));
    let sent = hex::encode(sha2::Sha256::digest(other.as_bytes()));
    assert!(
        d.contains(&launched) && d.contains(&sent) && !d.contains('\n'),
        "{d}"
    );
    // Init-data sent to an enclave launched without: refused too.
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all), None, Some(DOC)));
    assert_eq!(status, 401, "{reply}");
    assert!(detail(&reply).contains(&"0".repeat(128)), "{reply}");
    // Not TOML, or an unknown algorithm: one line.
    for bad in [
        "not toml ===",
        "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n",
    ] {
        let mut m = auth(&v);
        let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all), None, Some(bad)));
        assert_eq!(status, 401, "{reply}");
        assert!(
            detail(&reply).contains("init-data") && !detail(&reply).contains('\n'),
            "{reply}"
        );
    }
    // The control: all consistent.
    let mut m = auth(&v);
    let (status, reply) = m.attest(attestation(&m, &all, &log_of(&all), Some(DOC), Some(DOC)));
    assert_eq!(status, 200, "{reply}");
}
