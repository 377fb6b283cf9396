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
