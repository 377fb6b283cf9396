//! `verdictd policy test`, the binary for real: the shared attestation fixtures
//! (crates/rats/testdata, whose README gives the expected verification results),
//! sample and sim evidence made here, and the decisions compared with a running
//! verdictd's for the same evidence and policies.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use serde_json::{json, Value};

/// 2025-06-20T00:00:00Z: inside the SGX and TDX fixtures' collateral windows.
const IN_WINDOW: &str = "2025-06-20T00:00:00Z";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rats/testdata")
        .join(name)
}

fn builtin(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("policies/{name}.rego")),
    )
    .unwrap()
}

/// The 1-based line of `policy` that is `text` (trimmed).
fn line_of(policy: &str, text: &str) -> usize {
    policy
        .lines()
        .position(|l| l.trim() == text)
        .unwrap_or_else(|| panic!("{text:?} not in the policy"))
        + 1
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn policy_test<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .args(["policy", "test"])
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The `decision` line.
fn decision(r: &Run) -> &str {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("decision"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no decision line: {}{}", r.stdout, r.stderr))
}

/// The TDX fixture with its collateral, inside its window, and `extra`.
fn tdx_args(extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--evidence".to_string(),
        fixture("tdx_quote").display().to_string(),
        "--collateral".into(),
        fixture("tdx_quote_collateral.json").display().to_string(),
        "--at".into(),
        IN_WINDOW.into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_tdx_quote_is_released_by_the_default_policy_and_the_rule_named() {
    let r = policy_test(&tdx_args(&["--resource", "default/key/1"]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The fixture README: valid, UpToDate, no advisories.
    assert!(r.stdout.contains("TEE          tdx\n"), "{}", r.stdout);
    assert!(r.stdout.contains("TCB status UpToDate"), "{}", r.stdout);
    assert!(r.stdout.contains("advisories none"), "{}", r.stdout);
    // No reference values: the built-in default_cpu leaves it contraindicated, which
    // the default resource policy (Trustee's) does not look at.
    assert!(
        r.stdout.contains("status     contraindicated"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("no reference value mr_td is registered"));
    assert!(
        r.stdout.contains("tdx.quote.header.tee_type"),
        "{}",
        r.stdout
    );
    let policy = builtin("default");
    assert_eq!(
        decision(&r),
        format!(
            "allowed by the resource policy default (built-in): allow = true, from `allow if {{` (line {})",
            line_of(&policy, "allow if {")
        )
    );

    // The same as JSON.
    let r = policy_test(&tdx_args(&["--resource", "default/key/1", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["evidence"]["tee"], "tdx");
    assert_eq!(v["evidence"]["form"], "raw evidence");
    assert_eq!(v["at"], IN_WINDOW);
    let tdx = &v["appraisal"]["ear.veraison.annotated-evidence"]["tdx"];
    assert_eq!(tdx["tcb_status"], "UpToDate");
    assert_eq!(tdx["advisory_ids"], json!([]));
    let defs = v["resource"]["decision"]["definitions"].as_array().unwrap();
    assert_eq!(defs.len(), 2);
    assert_eq!(defs[1]["value"], true);
    assert!(v["refused"].is_null());
}

#[test]
fn a_denying_resource_policy_names_the_rule_and_the_condition() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "package policy\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n    input.submods.cpu0[\"ear.veraison.annotated-evidence\"].tdx.tcb_status == \"UpToDate\"\n    data[\"resource-path\"][0] == \"prod\"\n}\n";
    let file = dir.path().join("prod-only.rego");
    std::fs::write(&file, policy).unwrap();
    let file = file.display().to_string();

    let r = policy_test(&tdx_args(&[
        "--resource-policy",
        &file,
        "--resource",
        "test/key/1",
    ]));
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        decision(&r),
        format!(
            "denied by the resource policy {file}: allow = false, from `default allow := false` (line 4); `allow if {{` (line 6) failed at line 8: data[\"resource-path\"][0] == \"prod\""
        )
    );
    assert!(r.stdout.contains("line 6     allow if {  -> did not hold"));

    // The path it asks for: allowed, by the rule.
    let r = policy_test(&tdx_args(&[
        "--resource-policy",
        &file,
        "--resource",
        "prod/key/1",
    ]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        decision(&r).ends_with("from `allow if {` (line 6)"),
        "{}",
        r.stdout
    );

    // Rego text: a rule without braces that ends in a string, and a helper rule.
    let one_line = "package policy\nimport rego.v1\nallow if data[\"resource-path\"][0] == \"prod\"\nis_prod if data[\"resource-path\"][0] == \"prod\"\n";
    let r = policy_test(&tdx_args(&[
        "--resource-policy",
        one_line,
        "--resource",
        "test/key/1",
    ]));
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        decision(&r),
        "denied by the resource policy (Rego text): allow is undefined; `allow if data[\"resource-path\"][0] == \"prod\"` (line 3) failed at line 3: data[\"resource-path\"][0] == \"prod\""
    );
    assert!(
        r.stdout.contains("rule       is_prod = undefined"),
        "{}",
        r.stdout
    );

    // Trustee's `affirming` policy on the contraindicated appraisal (no reference
    // values): denied at its `every`.
    let r = policy_test(&tdx_args(&[
        "--resource-policy",
        "affirming",
        "--resource",
        "a/b/c",
    ]));
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let affirming = builtin("affirming");
    let every = line_of(&affirming, "every _, submod in input.submods {");
    assert!(
        decision(&r).contains(&format!("failed at line {every}: every _, submod in input.submods {{ submod[\"ear.status\"] == \"affirming\" }}")),
        "{}",
        r.stdout
    );

    // Registered reference values for this quote make it affirming (executables 4:
    // the RTMRs; hardware 2: mr_td, UpToDate; configuration 2: xfam, not debug), and
    // `affirming` then releases it.
    let r = policy_test(&tdx_args(&["--resource", "a/b/c", "--json"]));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let body = &v["appraisal"]["ear.veraison.annotated-evidence"]["tdx"]["quote"]["body"];
    let rv = json!({"mr_td": [body["mr_td"]], "rtmr_1": [body["rtmr_1"]],
                    "rtmr_2": [body["rtmr_2"]], "xfam": [body["xfam"]]});
    // As kbs-client's set-sample-reference-value sends them (an RVPS message).
    let message = json!({"version": "0.1.0", "type": "sample",
                         "payload": STANDARD.encode(rv.to_string())});
    let rv_file = dir.path().join("rv.json");
    std::fs::write(&rv_file, message.to_string()).unwrap();
    let r = policy_test(&tdx_args(&[
        "--resource-policy",
        "affirming",
        "--reference-values",
        rv_file.to_str().unwrap(),
        "--resource",
        "a/b/c",
    ]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("status     affirming"), "{}", r.stdout);
}

/// Sample evidence as the CoCo sample attester makes it (not bound to any session).
fn sample_file(dir: &Path) -> String {
    let file = dir.join("sample.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&rats::SampleEvidence::new(&[7u8; 48])).unwrap(),
    )
    .unwrap();
    file.display().to_string()
}

/// A version 2 sim report, signed by a fresh platform key as liberpal-sim signs it.
fn sim_file(dir: &Path) -> String {
    let report = sim_tee::Report::unsigned(false, [0xaa; 48], [0xbb; 48], 1, 1, [7u8; 64]);
    let platform = sim_tee::PlatformKey::generate().unwrap();
    let file = dir.join("sim.report");
    std::fs::write(&file, platform.sign_report(report).to_bytes()).unwrap();
    file.display().to_string()
}

#[test]
fn software_tees_are_denied_under_the_default_policies_and_said_why() {
    let dir = tempfile::tempdir().unwrap();
    let policy = builtin("default");
    for (file, tee, condition) in [
        (sample_file(dir.path()), "sample", "not evidence.sample"),
        (sim_file(dir.path()), "sim", "not evidence.sim"),
    ] {
        let r = policy_test(&["--evidence", &file, "--resource", "default/key/1"]);
        assert_eq!(r.code, 3, "{tee}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(&format!(
                "TEE          {tee}: a software TEE, its evidence proves nothing about hardware"
            )),
            "{}",
            r.stdout
        );
        assert!(
            decision(&r).ends_with(&format!(
                "failed at line {}: {condition}",
                line_of(&policy, condition)
            )),
            "{}",
            r.stdout
        );
    }
    // The sim enclave's measurement is no provisioned reference value: the gate says so.
    let r = policy_test(&["--evidence", &sim_file(dir.path()), "--resource", "a/b/c"]);
    assert!(
        r.stdout
            .contains("no reference value sim_mr_enclave is provisioned"),
        "{}",
        r.stdout
    );
    // Provisioned (the report's mr_enclave, 0xaa × 48): default_cpu's sim rule gives
    // executables 3 and the gate is quiet, but hardware stays 97 (sim proves nothing
    // about hardware), so the token is still contraindicated and the default resource
    // policy still denies.
    let rv_file = dir.path().join("sim-rv.json");
    std::fs::write(
        &rv_file,
        json!({"sim_mr_enclave": ["aa".repeat(48)]}).to_string(),
    )
    .unwrap();
    let r = policy_test(&[
        "--evidence",
        &sim_file(dir.path()),
        "--reference-values",
        rv_file.to_str().unwrap(),
        "--resource",
        "default/key/1",
        "--json",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let vector = &v["appraisal"]["ear.trustworthiness-vector"];
    assert_eq!(vector["executables"], json!(3), "{v}");
    assert_eq!(vector["hardware"], json!(97), "{v}");
    assert_eq!(v["appraisal"]["ear.status"], "contraindicated", "{v}");
    assert_eq!(v["decision"], "denied", "{v}");
    assert!(
        !v["appraisal"]["verdictd.reasons"]
            .to_string()
            .contains("sim_mr_enclave"),
        "{v}"
    );

    // A rats appraisal policy with its defaults refuses software TEEs itself, in its
    // own words, and `affirming` then denies.
    let rats_policy = dir.path().join("rats.toml");
    std::fs::write(&rats_policy, "allow_debug = false\n").unwrap();
    let r = policy_test(&[
        "--evidence",
        &sample_file(dir.path()),
        "--attestation-policy",
        rats_policy.to_str().unwrap(),
        "--resource-policy",
        "affirming",
        "--resource",
        "a/b/c",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "reasons    sample evidence proves nothing about hardware; the policy does not allow software TEEs"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("status     contraindicated"),
        "{}",
        r.stdout
    );
}

#[test]
fn collateral_past_its_window_is_the_reason() {
    let quote = fixture("sgx_quote").display().to_string();
    let coll = fixture("sgx_quote_collateral.json").display().to_string();
    let run = |at: &str| {
        policy_test(&[
            "--evidence",
            &quote,
            "--collateral",
            &coll,
            "--at",
            at,
            "--resource",
            "default/key/1",
        ])
    };
    // Inside the window: the fixture README's result; no reference value is
    // provisioned for its enclave, so the default resource policy denies it.
    let r = run(IN_WINDOW);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        decision(&r).ends_with(&format!(
            "failed at line {}: not unmeasured_sgx",
            line_of(&builtin("default"), "not unmeasured_sgx")
        )),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("TCB status ConfigurationAndSWHardeningNeeded"));
    assert!(r
        .stdout
        .contains("advisories INTEL-SA-00289, INTEL-SA-00615"));
    // The measurement gate: no mr_enclave reference value.
    assert!(r
        .stdout
        .contains("no reference value mr_enclave is provisioned"));

    // After it (the window ends 2025-07-19T10:01:18Z): refused by the verifier.
    let r = run("2025-08-01T00:00:00Z");
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    // The first item past its date: the TCB info, whose nextUpdate the collateral says.
    let collateral: Value =
        serde_json::from_slice(&std::fs::read(fixture("sgx_quote_collateral.json")).unwrap())
            .unwrap();
    let tcb_info: Value = serde_json::from_str(collateral["tcb_info"].as_str().unwrap()).unwrap();
    let next_update = tcb_info["nextUpdate"].as_str().unwrap();
    let d = decision(&r);
    assert!(
        d.starts_with("denied: the attestation is refused: sgx evidence refused: ")
            && d.ends_with(&format!(
                "collateral expired: the TCB info's nextUpdate {next_update} is before the verification time 2025-08-01T00:00:00Z"
            )),
        "{d}"
    );
    // No token, so no resource policy was asked.
    assert!(!r.stdout.contains("\n  allow "), "{}", r.stdout);
}

/// The measurement gate on real SGX evidence: the fixture quote passes it only when its
/// `mr_enclave` is a provisioned reference value. The expected values are read off the
/// quote's bytes at Intel's `sgx_report_body_t` offsets (quote v3 header 48 bytes;
/// mr_enclave at body offset 64, mr_signer at 128), not from verdictd's output.
#[test]
fn an_sgx_enclave_passes_the_measurement_gate_only_with_its_mr_enclave_provisioned() {
    let quote_bytes = std::fs::read(fixture("sgx_quote")).unwrap();
    let mr_enclave = hex::encode(&quote_bytes[48 + 64..48 + 96]);
    let mr_signer = hex::encode(&quote_bytes[48 + 128..48 + 160]);
    let dir = tempfile::tempdir().unwrap();
    let run = |values: Value, code: i32| {
        let rv_file = dir.path().join("rv.json");
        std::fs::write(&rv_file, values.to_string()).unwrap();
        let r = policy_test(&[
            "--evidence",
            fixture("sgx_quote").to_str().unwrap(),
            "--collateral",
            fixture("sgx_quote_collateral.json").to_str().unwrap(),
            "--at",
            IN_WINDOW,
            "--reference-values",
            rv_file.to_str().unwrap(),
            "--resource",
            "default/key/1",
            "--json",
        ]);
        assert_eq!(r.code, code, "{}{}", r.stdout, r.stderr);
        serde_json::from_str::<Value>(&r.stdout).unwrap()
    };
    let reasons = |v: &Value| v["appraisal"]["verdictd.reasons"].to_string();
    let executables =
        |v: &Value| v["appraisal"]["ear.trustworthiness-vector"]["executables"].clone();

    // Provisioned: default_cpu's SGX rule gives executables 3, the gate says nothing,
    // and the default resource policy releases.
    let v = run(
        json!({"mr_enclave": [mr_enclave], "mr_signer": [mr_signer]}),
        0,
    );
    assert_eq!(v["decision"], "allowed", "{v}");
    assert_eq!(
        v["appraisal"]["ear.veraison.annotated-evidence"]["sgx"]["body"]["mr_enclave"],
        json!(mr_enclave)
    );
    assert_eq!(executables(&v), json!(3), "{v}");
    assert!(!reasons(&v).contains("mr_enclave"), "{v}");

    // Another enclave's measurement provisioned: contraindicated (96), the reason names
    // the value found and the one expected, and the default resource policy denies.
    let other = "ab".repeat(32);
    let v = run(json!({"mr_enclave": [other], "mr_signer": [mr_signer]}), 3);
    assert_eq!(v["decision"], "denied", "{v}");
    assert_eq!(executables(&v), json!(96), "{v}");
    assert!(
        reasons(&v).contains(&format!(
            "claim sgx.body.mr_enclave is {mr_enclave}, not among the reference values mr_enclave ({other})"
        )),
        "{v}"
    );
}

#[test]
fn snp_reports_take_their_vcek_from_a_file_or_a_directory() {
    let report = fixture("test-report.bin").display().to_string();
    let vcek = fixture("test-vcek.der");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&vcek, dir.path().join("vcek.der")).unwrap();
    // Inside the VCEK's validity (2023-01-24 … 2030-01-24).
    for collateral in [vcek.display().to_string(), dir.path().display().to_string()] {
        let r = policy_test(&[
            "--evidence",
            &report,
            "--collateral",
            &collateral,
            "--at",
            "2025-01-01T00:00:00Z",
            "--resource",
            "default/key/1",
        ]);
        assert_eq!(r.code, 0, "{collateral}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("TEE          snp\n"), "{}", r.stdout);
        // The fixture README: reported_tcb bootloader 3, TEE 0, SNP 8, microcode 115.
        assert!(
            r.stdout.contains("snp.reported_tcb_microcode"),
            "{}",
            r.stdout
        );
    }
    // After the VCEK's notAfter: refused, naming it.
    let r = policy_test(&[
        "--evidence",
        &report,
        "--collateral",
        &vcek.display().to_string(),
        "--at",
        "2031-01-01T00:00:00Z",
        "--resource",
        "default/key/1",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        decision(&r).contains("2030-01-24T17:58:26Z"),
        "{}",
        r.stdout
    );
}

/// One attestation through a running verdictd (the stored resource `default/key/demo`
/// fetched by the session's cookie): whether it was released, and the body sent.
fn server_decides(v: &Verdictd) -> (bool, Vec<u8>) {
    let mut m = Manual::auth(v);
    let key = TeeKeyPair::generate();
    let body = Manual::attestation(&m.nonce.clone(), &key, &key, &m.nonce.clone());
    let (status, reply) = m.attest(body.clone());
    assert_eq!(status, 200, "{reply}");
    let (status, got) = call(
        &mut m.client,
        "GET",
        "/kbs/v0/resource/default/key/demo",
        None,
        None,
    );
    match status {
        200 => (true, body),
        401 => {
            assert_eq!(error_kind(&got), "PolicyDeny", "{got}");
            (false, body)
        }
        other => panic!("{other}: {got}"),
    }
}

#[test]
fn decisions_agree_with_a_running_verdictd() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rats_strict = d.join("rats-strict.toml");
    std::fs::write(&rats_strict, "allow_debug = false\n").unwrap();
    let rats_software = d.join("rats-software.toml");
    std::fs::write(&rats_software, "allow_software_tees = true\n").unwrap();
    let default_cpu = d.join("default_cpu.rego");
    std::fs::write(&default_cpu, verdictd::ear_policy::DEFAULT_CPU).unwrap();
    // Trustee's sample reference values for default_cpu (T:kbs quickstart), as an RVPS
    // message.
    let rv = json!({"launch_digest": ["abcde"], "svn": ["1"], "major_version": 1,
                    "minimum_minor_version": 4});
    let message =
        json!({"version": "0.1.0", "type": "sample", "payload": STANDARD.encode(rv.to_string())})
            .to_string();
    let rv_file = d.join("rv.json");
    std::fs::write(&rv_file, &message).unwrap();

    // The server's own config names the first case's policies; the dry run reads it.
    let server_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&rats_software, server_dir.path().join("att.toml")).unwrap();
    let v = Verdictd::start_in(
        server_dir,
        &format!(
            "resource_policy = \"affirming\"\nattestation_policy = \"att.toml\"\n{ADMIN_OPEN}"
        ),
    );
    store(&v, "default/key/demo", b"s");
    let (released, body) = server_decides(&v);
    let evidence = d.join("attestation.json");
    std::fs::write(&evidence, &body).unwrap();
    let config = v.dir.path().join("verdictd.toml");
    let r = policy_test(&[
        "--config",
        config.to_str().unwrap(),
        "--evidence",
        evidence.to_str().unwrap(),
        "--resource",
        "default/key/demo",
    ]);
    assert!(
        released,
        "a software TEE allowed by the rats policy is affirming"
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r
        .stdout
        .contains("(attestation)\nbinding      bound to its runtime data"));

    // Then policies set through the admin API, and given to the dry run as files.
    // (attestation policy, resource policy, register the reference values first); once
    // registered they stay, and the dry run is given them from then on.
    let cases: [(&Path, &str, bool); 6] = [
        (&default_cpu, "default", false),
        (&default_cpu, "allow_all", false),
        (&default_cpu, "affirming", false),
        (&default_cpu, "affirming", true),
        (&rats_strict, "affirming", false),
        (&rats_software, "deny_all", false),
    ];
    let mut outcomes = vec![];
    let mut registered = false;
    for (attestation_policy, resource_policy, register) in cases {
        let text = std::fs::read_to_string(attestation_policy).unwrap();
        let upload = json!({"type": "rego", "policy_id": "default_cpu",
                            "policy": URL_SAFE_NO_PAD.encode(&text)});
        let (status, b) = call(
            &mut v.client(),
            "POST",
            "/kbs/v0/attestation-policy",
            Some(upload.to_string().into_bytes()),
            None,
        );
        assert_eq!(status, 200, "{b}");
        set_policy(&v, &builtin(resource_policy));
        if register {
            registered = true;
            let (status, b) = call(
                &mut v.client(),
                "POST",
                "/kbs/v0/reference-value",
                Some(message.clone().into_bytes()),
                None,
            );
            assert_eq!(status, 200, "{b}");
        }
        let (released, body) = server_decides(&v);
        std::fs::write(&evidence, &body).unwrap();
        let mut args = vec![
            "--attestation-policy",
            attestation_policy.to_str().unwrap(),
            "--resource-policy",
            resource_policy,
            "--evidence",
            evidence.to_str().unwrap(),
            "--resource",
            "default/key/demo",
        ];
        if registered {
            args.extend(["--reference-values", rv_file.to_str().unwrap()]);
        }
        let r = policy_test(&args);
        assert_eq!(
            (r.code, released),
            (if released { 0 } else { 3 }, released),
            "{attestation_policy:?} {resource_policy} rv={registered}: {}{}",
            r.stdout,
            r.stderr
        );
        outcomes.push(released);
    }
    // Both outcomes were exercised.
    assert_eq!(outcomes, [false, true, false, true, false, false]);

    // A key no secret could be encrypted to: the server refuses the attestation, and
    // the dry run denies with the server's words.
    let mut m = Manual::auth(&v);
    let key = TeeKeyPair::generate();
    let mut body: Value = serde_json::from_slice(&Manual::attestation(
        &m.nonce.clone(),
        &key,
        &key,
        &m.nonce.clone(),
    ))
    .unwrap();
    body["runtime-data"]["tee-pubkey"]["crv"] = json!("P-999");
    let (status, reply) = m.attest(body.to_string().into_bytes());
    assert_eq!(
        (status, error_kind(&reply)),
        (401, "AttestationError"),
        "{reply}"
    );
    std::fs::write(&evidence, body.to_string()).unwrap();
    let r = policy_test(&[
        "--evidence",
        evidence.to_str().unwrap(),
        "--resource",
        "default/key/demo",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        decision(&r),
        format!(
            "denied: the attestation is refused: {}",
            reply["detail"].as_str().unwrap()
        )
    );
}

#[test]
fn bad_input_is_one_line_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = sample_file(d);
    let garbage = d.join("garbage");
    std::fs::write(&garbage, b"not evidence at all").unwrap();
    let unknown_json = d.join("unknown.json");
    std::fs::write(&unknown_json, b"{\"foo\": 1}").unwrap();
    let bad_rego = d.join("bad.rego");
    std::fs::write(&bad_rego, "package policy\ntrust_claims := {").unwrap();
    let not_json = d.join("rv.txt");
    std::fs::write(&not_json, "nope").unwrap();
    let missing = d.join("missing").display().to_string();
    let snp_report = fixture("test-report.bin").display().to_string();
    let g = garbage.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--evidence", &missing], "evidence "),
        (vec!["--evidence", g], "neither a DCAP quote"),
        (
            vec!["--evidence", unknown_json.to_str().unwrap()],
            "not evidence of a TEE",
        ),
        (
            vec![
                "--evidence",
                &sample,
                "--attestation-policy",
                bad_rego.to_str().unwrap(),
            ],
            "attestation policy",
        ),
        (
            vec!["--evidence", &sample, "--attestation-policy", &missing],
            "attestation policy",
        ),
        (
            vec![
                "--evidence",
                &sample,
                "--resource-policy",
                "package policy\nallow if {",
            ],
            "resource policy",
        ),
        (
            vec!["--evidence", &sample, "--resource-policy", &missing],
            "resource policy",
        ),
        (vec!["--evidence", &sample, "--at", "yesterday"], "--at"),
        (
            vec!["--evidence", &sample, "--report-data", "xyz"],
            "--report-data",
        ),
        (
            vec!["--evidence", &sample, "--collateral", g],
            "takes no collateral",
        ),
        (
            vec![
                "--evidence",
                &sample,
                "--reference-values",
                not_json.to_str().unwrap(),
            ],
            "reference values",
        ),
        (vec!["--evidence", &sample, "--tee", "tpm"], "--tee"),
        (vec!["--evidence", &snp_report], "needs --collateral"),
    ];
    for (args, want) in cases {
        let mut args = args.clone();
        if !args.contains(&"--resource") {
            args.extend(["--resource", "default/key/1"]);
        }
        let r = policy_test(&args);
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        let line = r.stderr.strip_suffix('\n').unwrap_or(&r.stderr);
        assert!(
            !line.contains('\n') && line.starts_with("verdictd: ") && line.contains(want),
            "{args:?}: {:?}",
            r.stderr
        );
    }
    // A resource path the server would refuse.
    let r = policy_test(&["--evidence", &sample, "--resource", "a/b"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("illegal ResourceDesc format"),
        "{}",
        r.stderr
    );
    // Without a subcommand verdictd still serves: its own flags are unchanged.
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [tls]"));
}
