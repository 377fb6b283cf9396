//! The software TEEs and the policy file.

use rats::{verify, Attester, Input, Policy, RatsError, SampleAttester, Tee};

fn sim_report(key: &sim_tee::PlatformKey, debug: bool, report_data: [u8; 64]) -> Vec<u8> {
    key.sign_report(sim_tee::Report::unsigned(
        debug,
        [0xaa; 48],
        [0xbb; 48],
        1,
        2,
        report_data,
    ))
    .to_bytes()
    .to_vec()
}

#[test]
fn sim_reports_verify_and_are_refused_unless_allowed() {
    let key = sim_tee::PlatformKey::generate().unwrap();
    let report = sim_report(&key, false, [5; 64]);
    let input = Input {
        report_data: Some([5; 64]),
        ..Input::default()
    };
    let v = verify(&report, None, &input).unwrap();
    assert_eq!(v.tee, Tee::Sim);
    assert_eq!(v.claims["sim_mr_enclave"].canonical(), ["aa".repeat(48)]);
    assert_eq!(
        v.claims["sim_platform_key"].canonical(),
        [hex::encode(key.public())]
    );
    assert_eq!(v.tcb_status, None);

    let verdict = Policy::default().appraise(&v);
    assert!(!verdict.accepted);
    assert!(
        verdict.reasons[0].contains("proves nothing about hardware"),
        "{verdict:?}"
    );
    let allow = Policy {
        allow_software_tees: true,
        ..Policy::default()
    };
    assert!(allow.appraise(&v).accepted);

    // Tampered anywhere: signature. Truncated: malformed. Other data: mismatch.
    for offset in [8, 60, 120, 200, 250] {
        let mut r = report.clone();
        r[offset] ^= 1;
        let e = verify(&r, Some(Tee::Sim), &Input::default()).unwrap_err();
        assert!(matches!(e, RatsError::Signature { .. }), "{offset}: {e}");
    }
    let e = verify(&report[..100], Some(Tee::Sim), &Input::default()).unwrap_err();
    assert!(matches!(e, RatsError::Malformed { .. }), "{e}");
    let other = Input {
        report_data: Some([6; 64]),
        ..Input::default()
    };
    assert!(matches!(
        verify(&report, None, &other).unwrap_err(),
        RatsError::ReportDataMismatch { .. }
    ));

    // A debug enclave needs allow_debug as well.
    let dbg = verify(&sim_report(&key, true, [5; 64]), None, &Input::default()).unwrap();
    assert!(!allow.appraise(&dbg).accepted);
}

#[test]
fn sample_evidence_round_trips_and_is_refused_by_default() {
    let evidence = SampleAttester.attest(&[9; 64]).unwrap().bytes;
    let json: serde_json::Value = serde_json::from_slice(&evidence).unwrap();
    assert_eq!(json["svn"], "1");
    let v = verify(
        &evidence,
        None,
        &Input {
            report_data: Some([9; 64]),
            ..Input::default()
        },
    )
    .unwrap();
    assert_eq!(v.tee, Tee::Sample);
    assert!(!Policy::default().appraise(&v).accepted);

    for bad in [
        &b"{}"[..],
        br#"{"svn":"x","report_data":""}"#,
        br#"{"svn":"1","report_data":"!!"}"#,
        br#"{"svn":"1","report_data":"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"}"#,
    ] {
        let e = verify(bad, Some(Tee::Sample), &Input::default()).unwrap_err();
        assert!(matches!(e, RatsError::Malformed { .. }), "{e}");
    }
}

#[test]
fn policy_files_load_from_toml_and_json_and_name_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("p.toml");
    std::fs::write(
        &toml,
        "accepted_tcb_statuses = [\"UpToDate\", \"SWHardeningNeeded\"]\nallow_debug = true\n\
         [expected]\nsgx_mr_signer = [\"ab\"]\n",
    )
    .unwrap();
    let p = Policy::load(&toml).unwrap();
    assert_eq!(p.accepted_tcb_statuses.len(), 2);
    assert!(p.allow_debug && !p.allow_software_tees);
    assert_eq!(p.expected["sgx_mr_signer"], ["ab"]);

    let json = dir.path().join("p.json");
    std::fs::write(&json, r#"{"allow_software_tees": true}"#).unwrap();
    assert!(Policy::load(&json).unwrap().allow_software_tees);

    std::fs::write(&toml, "allow_debgu = true\n").unwrap();
    let e = Policy::load(&toml).unwrap_err().to_string();
    assert!(e.contains("allow_debgu"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn unknown_evidence_is_a_typed_error() {
    for bad in [&b""[..], b"hello world, not evidence", &[0u8; 2000]] {
        assert!(matches!(
            verify(bad, None, &Input::default()).unwrap_err(),
            RatsError::UnknownType(_)
        ));
    }
    assert!(Tee::from_name("tpm").is_err());
    for t in Tee::ALL {
        assert_eq!(Tee::from_name(t.name()).unwrap(), t);
    }
}

/// A version 2 report whose registers were extended with `events` (CC MR, text), and
/// the log.
fn measured(
    key: &sim_tee::PlatformKey,
    events: &[(u32, &str)],
) -> (Vec<u8>, measurement::eventlog::EventLog) {
    let mut m = sim_tee::rtmr::Measurements::new();
    for (mr, text) in events {
        m.extend(*mr, &measurement::eventlog::Event::from_text(text).unwrap())
            .unwrap();
    }
    let mut r = sim_tee::Report::unsigned(false, [0xaa; 48], [0xbb; 48], 1, 2, [5; 64]);
    m.apply(&mut r);
    r.config_id = [0x33; 64];
    (key.sign_report(r).to_bytes(), m.log().clone())
}

#[test]
fn a_sim_event_log_must_replay_into_the_signed_registers() {
    use rats::verify_with_event_log;
    let key = sim_tee::PlatformKey::generate().unwrap();
    let events = [
        (4, "github.com/confidential-containers PullImage {\"digest\":\"sha256:ab\",\"image\":\"r/a:1\"}"),
        (4, "example.org Loaded model-v3"),
        (2, "example.org Config x"),
    ];
    let (report, log) = measured(&key, &events);
    let input = Input::default();
    let v = verify_with_event_log(&report, None, &input, &log.to_bytes()).unwrap();
    assert_eq!(v.claims["sim_report_version"].canonical(), ["2"]);
    assert_eq!(v.claims["sim_config_id"].canonical(), ["33".repeat(64)]);
    assert_eq!(v.claims["sim_rtmr3_count"].canonical(), ["2"]);
    assert_eq!(v.claims["sim_rtmr0"].canonical(), ["00".repeat(48)]);
    assert_eq!(
        v.claims["sim_event_log"].canonical(),
        events
            .iter()
            .map(|(_, t)| t.to_string())
            .collect::<Vec<_>>()
    );
    // A policy can require an event (a list claim matches by any item).
    let mut policy = Policy {
        allow_software_tees: true,
        ..Policy::default()
    };
    policy.expected.insert(
        "sim_event_log".into(),
        vec!["example.org Loaded model-v3".into()],
    );
    assert!(policy.appraise(&v).accepted);
    policy.expected.insert(
        "sim_event_log".into(),
        vec!["example.org Loaded model-v4".into()],
    );
    assert!(!policy.appraise(&v).accepted);

    // The log without its last record, with one more, or from another enclave: the
    // first bad record is named, in one line.
    let (_, short) = measured(&key, &events[..2]);
    let e = verify_with_event_log(&report, None, &input, &short.to_bytes()).unwrap_err();
    assert!(matches!(e, RatsError::EventLog { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("sim evidence: event log record 2: does not replay to RTMR1 (CC MR 2)"),
        "{e}"
    );
    let mut long = log.clone();
    long.extend(&measurement::eventlog::Event::new("x.org", "op", "late").unwrap())
        .unwrap();
    let e = verify_with_event_log(&report, None, &input, &long.to_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sim evidence: event log record 3: "),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'));
    let (_, other) = measured(
        &key,
        &[(4, "example.org Loaded model-v9"), events[1], events[2]],
    );
    let e = verify_with_event_log(&report, None, &input, &other.to_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sim evidence: event log record 0: "),
        "{e}"
    );
    // No log at all for a report that was extended: nothing replays.
    let empty = measurement::eventlog::EventLog::new().to_bytes();
    let e = verify_with_event_log(&report, None, &input, &empty).unwrap_err();
    assert!(e.to_string().contains("event log record 0: "), "{e}");
    // Garbage is a one-line parse error.
    let e = verify_with_event_log(&report, None, &input, b"garbage").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sim evidence: event log: truncated"),
        "{e}"
    );
    // Verification without the log still checks the signature and shows the registers.
    let v = verify(&report, None, &input).unwrap();
    assert!(!v.claims.contains_key("sim_event_log"));
    assert_eq!(v.claims["sim_rtmr1_count"].canonical(), ["1"]);
    // Other evidence has no registers this replays.
    let sample = SampleAttester.attest(&[0; 64]).unwrap().bytes;
    assert!(verify_with_event_log(&sample, None, &input, &empty).is_err());
}

/// A version 1 report made by the sim-tee of main before version 2 (see
/// crates/sim-tee/tests/rtmr.rs) verifies, alone or with an empty log.
#[test]
fn a_version_1_sim_report_still_verifies() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sim-tee/testdata/report-v1.bin"
    ))
    .unwrap();
    let input = Input {
        report_data: Some([0x5c; 64]),
        ..Input::default()
    };
    let v = verify(&bytes, None, &input).unwrap();
    assert_eq!(v.claims["sim_report_version"].canonical(), ["1"]);
    assert_eq!(v.claims["sim_mr_enclave"].canonical(), ["aa".repeat(48)]);
    assert!(!v.claims.contains_key("sim_rtmr0") && !v.claims.contains_key("sim_config_id"));
    let empty = measurement::eventlog::EventLog::new().to_bytes();
    rats::verify_with_event_log(&bytes, None, &input, &empty).unwrap();
    let mut one = measurement::eventlog::EventLog::new();
    one.extend(&measurement::eventlog::Event::new("d", "op", "c").unwrap())
        .unwrap();
    let e = rats::verify_with_event_log(&bytes, None, &input, &one.to_bytes()).unwrap_err();
    assert!(
        e.to_string().contains("version 1 report has no registers"),
        "{e}"
    );
}
