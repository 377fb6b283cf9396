//! `shelter verify-cert` on certificates made by our rats-tls and on one rebuilt with a
//! real SGX quote (dcap-qvl's sample, see rats/testdata/README.md) as its evidence.

use std::collections::BTreeMap;
use std::process::Command;

use rats_tls::dice;
use sha2::Digest as _;

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

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo, read independently.
fn spki_sha256(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    hex::encode(sha2::Sha256::digest(cert.public_key().raw))
}

#[test]
fn our_sample_certificate_binds_its_key() {
    let cert = rats_tls::generate(&rats::SampleAttester, &Default::default(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.der");
    std::fs::write(&path, &cert.cert_der).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "allow_software_tees = true\n").unwrap();
    let (code, out, err) = shelter(&[
        "verify-cert",
        "--cert",
        path.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["evidence_type"], "sample");
    assert_eq!(doc["tag"], dice::TAG_SAMPLE);
    assert_eq!(doc["format"], "Interoperable RA-TLS (2.23.133.5.4.9)");
    assert_eq!(doc["pubkey_hash_matches"], true);
    assert_eq!(doc["binding"]["bound"], true);
    assert_eq!(
        doc["certificate"]["spki_sha256"],
        spki_sha256(&cert.cert_der)
    );
    assert_eq!(doc["certificate"]["self_signature_valid"], true);

    // The default policy refuses software evidence, and says so.
    let (code, out, _) = shelter(&["verify-cert", "--cert", path.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("proves nothing about hardware"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("binding ") && l.contains("SHA-256(claims) ‖ zeros")),
        "{out}"
    );
}

/// A certificate whose evidence is dcap-qvl's real SGX quote: the quote verifies with
/// its collateral, but its report data was made for another key, which is reported
/// with both values.
#[test]
fn a_real_quote_in_a_new_certificate_does_not_bind_it() {
    let key = rcgen::KeyPair::generate().unwrap();
    let claims = dice::encode_claims(&BTreeMap::from([(
        dice::CLAIM_PUBKEY_HASH.to_string(),
        dice::pubkey_hash_claim(&key.public_key_der()),
    )]));
    let quote = std::fs::read(testdata("sgx_quote")).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(2025, 6, 19);
    params.not_after = rcgen::date_time_ymd(2025, 6, 21);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            dice::OID_EVIDENCE,
            dice::encode_evidence(dice::TAG_INTEL_QUOTE, &quote, &claims),
        ));
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem(cert.der())).unwrap();

    // The quote's own report data, from verifying it directly.
    let coll = std::fs::read(testdata("sgx_quote_collateral.json")).unwrap();
    let input = rats::Input {
        report_data: None,
        collateral: Some(rats::Collateral::parse(rats::Tee::SgxEcdsa, &coll).unwrap()),
        now: 1_750_377_600,
    };
    let direct = rats::verify(&quote, None, &input).unwrap();
    let want = hex::encode(dice::report_data(&claims));

    let (code, out, err) = shelter(&[
        "verify-cert",
        "--cert",
        path.to_str().unwrap(),
        "--collateral",
        &testdata("sgx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["evidence_type"], "sgx_ecdsa");
    assert_eq!(doc["pubkey_hash_matches"], true);
    assert_eq!(doc["binding"]["bound"], false);
    assert_eq!(
        doc["binding"]["how"],
        format!(
            "report data is {}; SHA-256(claims) ‖ zeros would be {want}",
            hex::encode(&direct.report_data)
        )
    );
    assert_eq!(
        doc["verified"]["tcb_status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(
        doc["verified"]["claims"]["sgx_mr_enclave"],
        direct.claims["sgx_mr_enclave"].canonical()[0]
    );
    assert!(doc["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("the report data does not bind this certificate's key"));

    // Without collateral: the quote is checked offline; the TCB status is Unknown.
    let (code, out, _) = shelter(&[
        "verify-cert",
        "--cert",
        path.to_str().unwrap(),
        "--at",
        "2025-06-20T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 3, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["verified"]["tcb_status"], "Unknown");
}

#[test]
fn files_that_are_not_attested_certificates_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = dir.path().join("plain.pem");
    std::fs::write(
        &plain,
        pem(rcgen::CertificateParams::default()
            .self_signed(&key)
            .unwrap()
            .der()),
    )
    .unwrap();
    for (file, needle) in [
        (&junk, "neither DER nor a PEM certificate"),
        (&plain, "no evidence extension"),
    ] {
        let (code, out, err) = shelter(&["verify-cert", "--cert", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(needle), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
