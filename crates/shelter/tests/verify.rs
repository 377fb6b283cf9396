//! `shelter verify` on the real fixtures kept in the rats crate.

use std::process::Command;

fn testdata(name: &str) -> String {
    format!("{}/../rats/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn shelter(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shelter"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sgx_quote_is_refused_by_default_and_accepted_by_a_lenient_policy() {
    let (quote, coll) = (testdata("sgx_quote"), testdata("sgx_quote_collateral.json"));
    let base = [
        "verify",
        "--evidence",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "2025-06-20T00:00:00Z",
    ];
    let (code, out, err) = shelter(&base);
    assert_eq!(code, 3, "{err}");
    assert!(out.starts_with("verdict: REFUSED\n"), "{out}");
    assert!(out.contains("ConfigurationAndSWHardeningNeeded"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "accepted_tcb_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\n\
         allowed_advisory_ids = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n",
    )
    .unwrap();
    let mut args = base.to_vec();
    args.extend(["--policy", policy.to_str().unwrap(), "--json"]);
    let (code, out, err) = shelter(&args);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["accepted"], true);
    assert_eq!(
        doc["verified"]["tcb_status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(doc["verified"]["tee"], "sgx_ecdsa");
    assert_eq!(
        doc["verified"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
}

#[test]
fn tdx_quote_is_accepted_at_unix_time() {
    let (code, out, err) = shelter(&[
        "verify",
        "--evidence",
        &testdata("tdx_quote"),
        "--collateral",
        &testdata("tdx_quote_collateral.json"),
        "--at",
        "1750377600",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["verified"]["tcb_status"], "UpToDate");
    assert!(doc["verified"]["claims"]["tdx_mr_td"].is_string());
}

#[test]
fn failures_are_one_line_with_a_nonzero_exit() {
    let cases: [(&[&str], &str); 5] = [
        (
            // Port 9 (discard) on loopback: nothing listens.
            &["--pccs", "http://127.0.0.1:9", "--at", "1750377600"],
            "offline?",
        ),
        (
            &["--collateral", "SGXC", "--at", "2026-06-20T00:00:00Z"],
            "collateral expired",
        ),
        (
            &["--collateral", "SGXC", "--at", "yesterday"],
            "neither Unix seconds nor RFC 3339",
        ),
        (
            &[
                "--collateral",
                "SGXC",
                "--at",
                "1750377600",
                "--report-data",
                "00ff",
            ],
            "bound to other report data",
        ),
        (
            &[
                "--collateral",
                "SGXC",
                "--kds",
                "http://127.0.0.1:9",
                "--at",
                "1750377600",
            ],
            "--kds serves SEV-SNP certificates; sgx_ecdsa evidence takes none",
        ),
    ];
    let coll = testdata("sgx_quote_collateral.json");
    for (extra, needle) in cases {
        let quote = testdata("sgx_quote");
        let mut args = vec!["verify", "--evidence", quote.as_str()];
        args.extend(
            extra
                .iter()
                .map(|a| if *a == "SGXC" { coll.as_str() } else { a }),
        );
        let (code, out, err) = shelter(&args);
        assert_eq!(code, 1, "{needle}: {out}{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.is_empty());
    }
}

/// `openssl crl -noout FLAG -dateopt iso_8601` of a hex-encoded DER CRL from the
/// collateral, as RFC 3339 (`2026-04-03T11:21:57Z`).
fn openssl_crl_date(hex_der: &str, flag: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args([
            "crl", "-inform", "DER", "-noout", flag, "-dateopt", "iso_8601",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let der = hex::decode(hex_der).unwrap();
    child.stdin.take().unwrap().write_all(&der).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let (_, date) = line.trim().split_once('=').unwrap();
    date.replacen(' ', "T", 1)
}

/// Collateral outside its window is refused in one line naming the item, the date it
/// passed and the verification time, in RFC 3339 (never webpki's `UnixTime(…)`): the
/// dates come from the collateral as openssl and its JSON documents give them.
#[test]
fn expired_collateral_names_the_item_and_both_dates() {
    let coll_path = testdata("sgx_quote_collateral.json");
    let coll: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&coll_path).unwrap()).unwrap();
    let doc =
        |k: &str| -> serde_json::Value { serde_json::from_str(coll[k].as_str().unwrap()).unwrap() };
    let root_crl_next = openssl_crl_date(coll["root_ca_crl"].as_str().unwrap(), "-nextupdate");
    let qe_next = doc("qe_identity")["nextUpdate"]
        .as_str()
        .unwrap()
        .to_string();
    let tcb_issued = doc("tcb_info")["issueDate"].as_str().unwrap().to_string();
    let cases = [
        // The CRL webpki reports (its nextUpdate is the last of the collateral's dates).
        (
            "2026-06-20T00:00:00Z",
            format!(
                "collateral expired: the root CA CRL's nextUpdate {root_crl_next} is before \
                 the verification time 2026-06-20T00:00:00Z"
            ),
        ),
        (
            "2025-07-19T10:01:19Z",
            format!(
                "collateral expired: the QE identity's nextUpdate {qe_next} is before the \
                 verification time 2025-07-19T10:01:19Z"
            ),
        ),
        (
            "2020-01-01T00:00:00Z",
            format!(
                "collateral not yet valid: the TCB info's issueDate {tcb_issued} is after \
                 the verification time 2020-01-01T00:00:00Z"
            ),
        ),
    ];
    for (at, wanted) in cases {
        let (code, out, err) = shelter(&[
            "verify",
            "--evidence",
            &testdata("sgx_quote"),
            "--collateral",
            &coll_path,
            "--at",
            at,
        ]);
        assert_eq!(code, 1, "{at}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(
            err.trim_end(),
            format!("shelter: sgx_ecdsa evidence: {wanted}")
        );
    }
    // Without --at: now, which is after every date of the collateral (kept from 2025).
    let (code, _, err) = shelter(&[
        "verify",
        "--evidence",
        &testdata("sgx_quote"),
        "--collateral",
        &coll_path,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "nextUpdate {root_crl_next} is before the verification time 20"
        )),
        "{err}"
    );
    assert!(!err.contains("UnixTime("), "{err}");
}

#[test]
fn snp_reports_verify_from_raw_or_hex_files() {
    // Trustee's report runs microcode 0xce but reports 0x73 (its VCEK's): OutOfDate,
    // refused by the default policy (exit 3); virtee/sev's runs what it reports.
    for (report, vcek, code_wanted, status) in [
        ("test-report.bin", "test-vcek.der", 3, "OutOfDate"),
        ("report_milan.hex", "vcek_milan.der", 0, "UpToDate"),
    ] {
        let (code, out, err) = shelter(&[
            "verify",
            "--evidence",
            &testdata(report),
            "--collateral",
            &testdata(vcek),
            "--at",
            "2025-01-01T00:00:00Z",
        ]);
        assert_eq!(code, code_wanted, "{report}: {out}{err}");
        assert!(out.contains("snp_measurement"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("tcb_status ") && l.ends_with(status)),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("tee ") && l.ends_with("sev_snp")),
            "{out}"
        );
    }
}

/// configfs-tsm's JSON envelope is its outblob, with its auxblob (the SNP certificate
/// table, in RFC 4122 GUID order) as the collateral: not `sample` evidence.
#[test]
fn a_configfs_tsm_json_report_verifies_as_snp() {
    let vcek = std::fs::read(testdata("test-vcek.der")).unwrap();
    let report = std::fs::read(testdata("test-report.bin")).unwrap();
    // The table: VCEK GUID 63da758d-e664-4564-adc5-f4b93be8accd, offset 48, length.
    let mut table = hex::decode("63da758de6644564adc5f4b93be8accd").unwrap();
    table.extend_from_slice(&48u32.to_le_bytes());
    table.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&vcek);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsm.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "provider": "sev_guest",
            "outblob": hex::encode(&report),
            "auxblob": hex::encode(&table),
        })
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = shelter(&[
        "verify",
        "--evidence",
        path.to_str().unwrap(),
        "--at",
        "2025-01-01T00:00:00Z",
        "--json",
    ]);
    // Verified (exit 3, not 1): refused only for its OutOfDate TCB.
    assert_eq!(code, 3, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["verified"]["tee"], "sev_snp");
    assert_eq!(doc["verified"]["tcb_status"], "OutOfDate");
    assert_eq!(doc["verified"]["claims"]["snp_reported_tcb_snp"], 8);
}

/// A DCAP quote without collateral: what the quote carries is verified (exit 3, not 1),
/// the TCB status is Unknown, which the default policy refuses and a policy may accept.
#[test]
fn a_quote_without_collateral_is_verified_offline_and_refused_by_default() {
    let quote = testdata("sgx_quote");
    let (code, out, err) = shelter(&["verify", "--evidence", &quote, "--at", "1750377600"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("TCB status Unknown is not accepted (accepted: UpToDate)"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("dcap_revocation_checked ") && l.ends_with("false")),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "accepted_tcb_statuses = [\"Unknown\"]\n").unwrap();
    let (code, out, err) = shelter(&[
        "verify",
        "--evidence",
        &quote,
        "--at",
        "1750377600",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Collateral fetched for another platform is named as such, in one line.
#[test]
fn collateral_for_another_platform_is_named() {
    let (code, out, err) = shelter(&[
        "verify",
        "--evidence",
        &testdata("tdx_quote"),
        "--collateral",
        &testdata("sgx_quote_collateral.json"),
        "--at",
        "1750377600",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("collateral is for FMSPC 00A067110000, quote is FMSPC B0C06F000000"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
