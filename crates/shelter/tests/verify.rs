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
    let cases: [(&[&str], &str); 6] = [
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
            &["--at", "1750377600"],
            "collateral (QuoteCollateralV3 JSON) is required",
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

#[test]
fn snp_reports_verify_from_raw_or_hex_files() {
    for (report, vcek) in [
        ("test-report.bin", "test-vcek.der"),
        ("report_milan.hex", "vcek_milan.der"),
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
        assert_eq!(code, 0, "{report}: {out}{err}");
        assert!(out.contains("snp_measurement"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("tee ") && l.ends_with("sev_snp")),
            "{out}"
        );
    }
}
