//! `shelter verify-cert` on certificates made by our rats-tls, on one rebuilt with a
//! real SGX quote (dcap-qvl's sample, see rats/testdata/README.md) as its evidence, and
//! on real certificates from other stacks (rats-rs on Occlum, Enclave-TLS, Graphene,
//! Gramine, an Intel-SDK-OID certificate; testdata/README.md).
//!
//! For the other stacks' certificates the expected values are computed here, apart
//! from shelter: public-key hashes and self-signatures by the `openssl` command, quote
//! fields at the SGX quote v3 offsets (48-byte header, report body at 48: attributes
//! +48, MRENCLAVE +64, MRSIGNER +128, report data +320), the DICE evidence decoded by
//! hand from its CBOR (ra-tls.md §1.2, §1.3).

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

// ---- certificates from other stacks ----

fn cert_file(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `openssl`, feeding `stdin`; its stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the openssl command");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The certificate's public key as OpenSSL reads it: (DER SubjectPublicKeyInfo, PEM).
fn openssl_public_key(cert_pem: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let pem = openssl(&["x509", "-pubkey", "-noout"], cert_pem);
    (openssl(&["pkey", "-pubin", "-outform", "DER"], &pem), pem)
}

/// Whether OpenSSL finds the certificate's self-signature valid (at any time).
fn openssl_self_signature_valid(cert_pem_path: &str) -> bool {
    Command::new("openssl")
        .args(["verify", "-check_ss_sig", "-no_check_time", "-CAfile"])
        .args([cert_pem_path, cert_pem_path])
        .output()
        .unwrap()
        .status
        .success()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// The value of the extension `oid` in a PEM certificate.
fn extension(cert_pem: &[u8], oid: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .unwrap_or_else(|| panic!("no extension {oid}"))
        .value
        .to_vec()
}

/// A CBOR byte string at `*at` (major type 2, definite length).
fn cbor_bstr<'a>(b: &'a [u8], at: &mut usize) -> &'a [u8] {
    let head = b[*at];
    assert_eq!(head >> 5, 2, "a byte string at {at}");
    let (len, skip) = match head & 0x1f {
        n @ 0..=23 => (n as usize, 1),
        24 => (b[*at + 1] as usize, 2),
        25 => (u16::from_be_bytes([b[*at + 1], b[*at + 2]]) as usize, 3),
        26 => (
            u32::from_be_bytes(b[*at + 1..*at + 5].try_into().unwrap()) as usize,
            5,
        ),
        other => panic!("byte string length form {other}"),
    };
    let v = &b[*at + skip..*at + skip + len];
    *at += skip + len;
    v
}

/// A DICE evidence extension: (tag, evidence, claims buffer), decoded by hand.
fn dice_evidence(value: &[u8]) -> (u64, Vec<u8>, Vec<u8>) {
    assert_eq!(value[0], 0xd9, "a 2-byte tag");
    let tag = u16::from_be_bytes([value[1], value[2]]) as u64;
    assert_eq!(value[3], 0x82, "an array of 2");
    let mut at = 4;
    let evidence = cbor_bstr(value, &mut at).to_vec();
    let claims = cbor_bstr(value, &mut at).to_vec();
    assert_eq!(at, value.len());
    (tag, evidence, claims)
}

/// Quote v3 fields: (attributes, MRENCLAVE, MRSIGNER, report data), hex.
fn sgx_quote_fields(q: &[u8]) -> [String; 4] {
    assert_eq!(&q[..4], &[3, 0, 2, 0], "SGX ECDSA quote v3");
    [
        hex::encode(&q[96..112]),
        hex::encode(&q[112..144]),
        hex::encode(&q[176..208]),
        hex::encode(&q[368..432]),
    ]
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const UNKNOWN_TCB: &str = "TCB status Unknown is not accepted (accepted: UpToDate)";

/// rats-rs on Occlum: Interoperable RA-TLS, the report data = SHA-256(claims) ‖ zeros,
/// the claims' `pubkey-hash` = [1, SHA-256(SPKI)], an empty endorsements extension (so
/// no collateral: TCB unknown), a debug enclave, valid for 60 seconds.
#[test]
fn rats_rs_certificate_binds_its_key_through_its_claims() {
    let path = cert_file("rats-rs-demo-sgx-cert.pem");
    let pem = std::fs::read(&path).unwrap();
    let (spki, _) = openssl_public_key(&pem);
    let (tag, quote, claims) = dice_evidence(&extension(&pem, "2.23.133.5.4.9"));
    assert_eq!(tag, 60000);
    assert!(extension(&pem, "2.23.133.5.4.2").is_empty());
    // The claims map: {"pubkey-hash": bstr(CBOR [1, bstr(32)])}.
    assert_eq!(&claims[..2], &[0xa1, 0x6b]);
    assert_eq!(&claims[2..13], b"pubkey-hash");
    let mut at = 13;
    let entry = cbor_bstr(&claims, &mut at);
    assert_eq!(&entry[..4], &[0x82, 0x01, 0x58, 0x20]);
    assert_eq!(hex::encode(&entry[4..]), sha256_hex(&spki));
    let [attributes, mr_enclave, mr_signer, report_data] = sgx_quote_fields(&quote);
    assert_eq!(
        report_data,
        format!("{}{}", sha256_hex(&claims), "00".repeat(32))
    );

    let (code, out, err) = shelter(&[
        "verify-cert",
        "--cert",
        &path,
        "--at",
        "2024-04-15T16:53:30Z",
        "--json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let doc = json_of(&out);
    assert_eq!(doc["format"], "Interoperable RA-TLS (2.23.133.5.4.9)");
    assert_eq!(doc["tag"], 60000);
    assert_eq!(doc["evidence_type"], "sgx_ecdsa");
    assert_eq!(
        doc["certificate"]["self_signature_valid"],
        openssl_self_signature_valid(&path)
    );
    assert_eq!(doc["certificate"]["self_signature_valid"], true);
    assert_eq!(doc["certificate"]["spki_sha256"], sha256_hex(&spki));
    assert_eq!(doc["claims_sha256"], sha256_hex(&claims));
    assert_eq!(doc["pubkey_hash_matches"], true);
    assert_eq!(doc["binding"]["bound"], true);
    let v = &doc["verified"];
    assert_eq!(v["report_data"], report_data);
    assert_eq!(v["tcb_status"], "Unknown");
    assert_eq!(v["claims"]["sgx_attributes"], attributes);
    assert_eq!(v["claims"]["sgx_mr_enclave"], mr_enclave);
    assert_eq!(v["claims"]["sgx_mr_signer"], mr_signer);
    // ATTRIBUTES.DEBUG is bit 1 of the first byte.
    assert_eq!(quote[96] & 2, 2);
    assert_eq!(v["debug"], true);
    assert_eq!(
        doc["reasons"],
        serde_json::json!([UNKNOWN_TCB, "a debug enclave or guest is not allowed"])
    );

    // A policy that accepts an unknown TCB and debug enclaves accepts it.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        "accepted_tcb_statuses = [\"Unknown\"]\nallow_debug = true\n",
    )
    .unwrap();
    let args = |at| {
        [
            "verify-cert",
            "--cert",
            &path,
            "--policy",
            policy.to_str().unwrap(),
            "--at",
            at,
        ]
        .map(String::from)
    };
    let run = |at| {
        let a = args(at);
        shelter(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out, err) = run("2024-04-15T16:53:30Z");
    assert_eq!(code, 0, "{out}{err}");
    // A minute after it was made, it has expired; before, it was not yet valid. Each
    // said with the date passed (as openssl reads it) and the time, in RFC 3339.
    let (not_before, not_after) = (
        openssl_date(&pem, "-startdate"),
        openssl_date(&pem, "-enddate"),
    );
    let (code, out, _) = run("2024-04-15T16:55:00Z");
    assert_eq!(code, 3, "{out}");
    let line = format!(
        "- expired: the certificate's notAfter {not_after} is before the verification time 2024-04-15T16:55:00Z\n"
    );
    assert!(out.contains(&line), "{line}{out}");
    assert!(
        !out.contains("1713200100") && !out.contains("UnixTime("),
        "{out}"
    );
    let (code, out, _) = run("2024-04-15T16:50:00Z");
    assert_eq!(code, 3, "{out}");
    let line = format!(
        "- not yet valid: the certificate's notBefore {not_before} is after the verification time 2024-04-15T16:50:00Z\n"
    );
    assert!(out.contains(&line), "{line}{out}");
}

/// `openssl x509 -noout FLAG -dateopt iso_8601` of a PEM certificate, as RFC 3339
/// (`2024-04-15T16:54:01Z`).
fn openssl_date(cert_pem: &[u8], flag: &str) -> String {
    let out = openssl(&["x509", "-noout", flag, "-dateopt", "iso_8601"], cert_pem);
    let line = String::from_utf8(out).unwrap();
    let (_, date) = line.trim().split_once('=').unwrap();
    date.replacen(' ', "T", 1)
}

/// Enclave-TLS (wolfSSL and OpenSSL instances): the raw quote under
/// 1.2.840.113741.1337.6, its report data SHA-256 of the PKCS#1 RSAPublicKey then zeros.
#[test]
fn enclave_tls_certificates_bind_their_rsa_key() {
    for name in [
        "enclave-tls-cert-sample.pem",
        "enclave-tls-cert-openssl-sample.pem",
    ] {
        let path = cert_file(name);
        let pem = std::fs::read(&path).unwrap();
        let (spki, key_pem) = openssl_public_key(&pem);
        let rsa_public_key = openssl(
            &["rsa", "-pubin", "-RSAPublicKey_out", "-outform", "DER"],
            &key_pem,
        );
        let quote = extension(&pem, "1.2.840.113741.1337.6");
        let [_, mr_enclave, mr_signer, report_data] = sgx_quote_fields(&quote);
        assert_eq!(
            report_data,
            format!("{}{}", sha256_hex(&rsa_public_key), "00".repeat(32)),
            "{name}"
        );

        let (code, out, err) = shelter(&[
            "verify-cert",
            "--cert",
            &path,
            "--at",
            "2021-07-01T00:00:00Z",
            "--json",
        ]);
        assert_eq!(code, 3, "{name}: {out}{err}");
        let doc = json_of(&out);
        assert_eq!(
            doc["format"],
            "Enclave-TLS/rats-tls before 2022-12 (ECDSA quote), OID 1.2.840.113741.1337.6"
        );
        assert_eq!(doc["tag"], serde_json::Value::Null);
        assert_eq!(doc["evidence_type"], "sgx_ecdsa");
        assert_eq!(
            doc["certificate"]["self_signature_valid"],
            openssl_self_signature_valid(&path),
            "{name}"
        );
        assert_eq!(doc["certificate"]["self_signature_valid"], true, "{name}");
        assert_eq!(doc["certificate"]["spki_sha256"], sha256_hex(&spki));
        assert_eq!(doc["binding"]["bound"], true, "{name}");
        assert_eq!(
            doc["binding"]["how"],
            "legacy: report data begins with SHA-256(public key)"
        );
        let v = &doc["verified"];
        assert_eq!(v["report_data"], report_data);
        assert_eq!(v["claims"]["sgx_mr_enclave"], mr_enclave);
        assert_eq!(v["claims"]["sgx_mr_signer"], mr_signer);
        assert_eq!(v["debug"], false);
        assert_eq!(doc["reasons"], serde_json::json!([UNKNOWN_TCB]));
    }
}

/// Graphene's RA-TLS certificate from Intel's gRPC example: its quote's PCK chain ends at
/// Intel's sandbox root, which ra-tls.md §7 says to reject. The error names that root.
#[test]
fn graphene_certificate_from_intels_sandbox_is_refused_naming_its_root() {
    let path = cert_file("graphene-grpc-ra-tls.pem");
    let pem = std::fs::read(&path).unwrap();
    let quote = extension(&pem, "0.6.9.42.840.113741.1337.6");
    // The last certificate of the quote's PEM chain is its root.
    let text = String::from_utf8_lossy(&quote);
    let begin = text.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text.rfind("-----END CERTIFICATE-----").unwrap() + 25;
    let root_der = openssl(&["x509", "-outform", "DER"], text[begin..end].as_bytes());
    let root_sha256 = sha256_hex(&root_der);
    assert_ne!(
        root_sha256, "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
        "not the production root"
    );
    let crl = String::from_utf8(openssl(
        &["x509", "-noout", "-ext", "crlDistributionPoints"],
        text[begin..end].as_bytes(),
    ))
    .unwrap();
    assert!(crl.contains("https://sbx-certificates.trustedservices.intel.com/"));

    let (code, out, err) = shelter(&[
        "verify-cert",
        "--cert",
        &path,
        "--at",
        "2023-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("certificate chain"), "{err}");
    assert!(err.contains(&root_sha256), "{err}");
    assert!(
        err.contains("not at the production Intel SGX Root CA"),
        "{err}"
    );
    assert!(err.contains("pre-production (sandbox) PKI"), "{err}");
}

/// The only public Gramine ≥ 1.8 certificate lost its middle when it was copied: a
/// one-line error with the declared and actual lengths, not a parser's message.
#[test]
fn truncated_gramine_certificate_is_a_one_line_error() {
    use base64::Engine as _;
    let path = cert_file("gramine-ra-tls-truncated.pem");
    let text = std::fs::read_to_string(&path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // 30 82 hh ll: a SEQUENCE whose length takes two bytes.
    assert_eq!(&der[..2], &[0x30, 0x82]);
    let declared = 4 + u16::from_be_bytes([der[2], der[3]]) as usize;
    assert!(declared > der.len());

    let (code, out, err) = shelter(&["verify-cert", "--cert", &path]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "truncated certificate: its DER header declares {declared} bytes, the file holds {}",
            der.len()
        )),
        "{err}"
    );
}

/// confidential-token-broker's certificate: a quote under the Intel SGX SDK's OID
/// 1.2.840.113741.1.13.1, bound by a rule of its own (SHA-256 of "{n: …, e: …}"):
/// found, verified offline, and reported as not binding the key, with what it holds.
#[test]
fn intel_sdk_oid_certificate_reports_its_quote_and_the_missing_binding() {
    use base64::Engine as _;
    let jwks: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cert_file("confidential-token-broker-jwks.json")).unwrap(),
    )
    .unwrap();
    let key = &jwks["keys"][0];
    let der = base64::engine::general_purpose::STANDARD
        .decode(key["x5c"][0].as_str().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let der_path = dir.path().join("cert.der");
    std::fs::write(&der_path, &der).unwrap();
    let pem_path = dir.path().join("cert.pem");
    std::fs::write(&pem_path, pem(&der)).unwrap();
    let pem_path = pem_path.to_str().unwrap();
    let cert_pem = std::fs::read(pem_path).unwrap();
    let (spki, _) = openssl_public_key(&cert_pem);
    let quote = extension(&cert_pem, "1.2.840.113741.1.13.1");
    let [_, mr_enclave, _, report_data] = sgx_quote_fields(&quote);
    // The origin's rule (server/enclave/src/rsa.rs): SHA-256 of "{n: <n>, e: <e>}".
    let own_rule = format!(
        "{{n: {}, e: {}}}",
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap()
    );
    assert_eq!(&report_data[..64], sha256_hex(own_rule.as_bytes()));
    assert_ne!(&report_data[..64], sha256_hex(&spki));

    let (code, out, err) = shelter(&[
        "verify-cert",
        "--cert",
        der_path.to_str().unwrap(),
        "--at",
        "2023-09-27T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let doc = json_of(&out);
    assert_eq!(
        doc["format"],
        "Intel SGX SDK attested TLS (SGX quote), OID 1.2.840.113741.1.13.1"
    );
    assert_eq!(doc["evidence_type"], "sgx_ecdsa");
    assert_eq!(
        doc["certificate"]["self_signature_valid"],
        openssl_self_signature_valid(pem_path)
    );
    assert_eq!(doc["certificate"]["self_signature_valid"], false);
    assert_eq!(doc["certificate"]["spki_sha256"], sha256_hex(&spki));
    assert_eq!(doc["binding"]["bound"], false);
    assert_eq!(doc["verified"]["report_data"], report_data);
    assert_eq!(doc["verified"]["claims"]["sgx_mr_enclave"], mr_enclave);
    let reasons: Vec<&str> = doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons[0],
        "the certificate's self-signature does not verify"
    );
    assert!(
        reasons[1].starts_with(&format!(
            "the report data does not bind this certificate's key: report data is {report_data}; \
             neither SHA-256(SubjectPublicKeyInfo) {}",
            sha256_hex(&spki)
        )),
        "{reasons:?}"
    );
}

/// A PCK certificate carries 1.2.840.113741.1.13.1 too, around a SEQUENCE of SGX
/// extensions (Intel's PCK certificate profile): that is not evidence.
#[test]
fn a_pck_certificate_is_not_an_attested_certificate() {
    let quote = std::fs::read(testdata("sgx_quote")).unwrap();
    let text = String::from_utf8_lossy(&quote);
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pck.pem");
    std::fs::write(&path, &text[begin..end]).unwrap();
    assert_eq!(
        extension(text[begin..end].as_bytes(), "1.2.840.113741.1.13.1")[0],
        0x30
    );
    let (code, out, err) = shelter(&["verify-cert", "--cert", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no evidence extension"), "{err}");
}
