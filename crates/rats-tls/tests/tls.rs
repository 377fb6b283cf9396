//! Attested TLS over loopback TCP, with `sim` evidence made as `liberpal-sim` makes it
//! (a report signed by a platform key) and `sample` evidence; and the attacks the
//! format must withstand.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use rats::{Attester, Evidence, Policy, RatsError, Tee};
use rats_tls::tls::{Expect, Identity};
use rats_tls::{dice, Appraisal, CertOptions, KeyAlgorithm, RaTlsError};

/// A `sim` enclave's report source: what liberpal-sim answers on the evidence socket.
struct SimEnclave {
    platform: sim_tee::PlatformKey,
    mr_enclave: [u8; 48],
}

impl SimEnclave {
    fn new(seed: u8) -> SimEnclave {
        SimEnclave {
            platform: sim_tee::PlatformKey::generate().unwrap(),
            mr_enclave: [seed; 48],
        }
    }
}

impl Attester for SimEnclave {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let r = sim_tee::Report::unsigned(false, self.mr_enclave, [2; 48], 1, 1, *report_data);
        Ok(Evidence {
            tee: Tee::Sim,
            bytes: self.platform.sign_report(r).to_bytes().to_vec(),
            collateral: None,
        })
    }
}

/// Evidence that ignores what it is asked to bind: a compromised or broken attester.
struct Unbound(SimEnclave);

impl Attester for Unbound {
    fn attest(&self, _: &[u8; 64]) -> Result<Evidence, RatsError> {
        self.0.attest(&[9; 64])
    }
}

fn software_policy(mr_enclave: &[u8; 48]) -> Policy {
    let mut p = Policy {
        allow_software_tees: true,
        ..Policy::default()
    };
    p.expected
        .insert("sim_mr_enclave".into(), vec![hex::encode(mr_enclave)]);
    p
}

fn identity(a: impl Attester + Send + Sync + 'static) -> Arc<Identity> {
    Arc::new(Identity::new(Arc::new(a), CertOptions::default()))
}

/// What the server thread saw of each connection.
type Accepted = Vec<Result<Option<rats_tls::PeerInfo>, String>>;

/// Serves `n` connections with `identity`; each returns what accept said.
fn server(
    identity: Arc<Identity>,
    expect: Option<Expect>,
    n: usize,
) -> (u16, std::thread::JoinHandle<Accepted>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut out = Vec::new();
        for _ in 0..n {
            let (s, _) = l.accept().unwrap();
            match rats_tls::accept(s, identity.clone(), expect.as_ref()) {
                Ok((mut tls, peer)) => {
                    let mut buf = [0u8; 5];
                    if tls.read_exact(&mut buf).is_ok() {
                        let _ = tls.write_all(b"world");
                        let _ = tls.flush();
                    }
                    out.push(Ok(peer));
                }
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    });
    (port, h)
}

#[test]
fn server_attestation_with_a_fresh_nonce() {
    let enclave = SimEnclave::new(1);
    let policy = software_policy(&enclave.mr_enclave);
    let (port, h) = server(identity(enclave), None, 1);
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut tls, peer) = rats_tls::connect(s, None, &Expect::new(Appraisal::new(policy))).unwrap();
    assert_eq!(peer.verified.tee, Tee::Sim);
    assert!(peer.verdict.accepted);
    assert_eq!(
        peer.nonce.as_ref().map(Vec::len),
        Some(16),
        "the session's nonce"
    );
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"world");
    assert!(h.join().unwrap()[0].is_ok());
}

#[test]
fn mutual_attestation_gives_each_side_the_others_claims() {
    let (server_enclave, client_enclave) = (SimEnclave::new(3), SimEnclave::new(4));
    let (sp, cp) = (
        software_policy(&server_enclave.mr_enclave),
        software_policy(&client_enclave.mr_enclave),
    );
    let (port, h) = server(
        identity(server_enclave),
        Some(Expect::new(Appraisal::new(cp))),
        1,
    );
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut tls, peer) = rats_tls::connect(
        s,
        Some(identity(client_enclave)),
        &Expect::new(Appraisal::new(sp)),
    )
    .unwrap();
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    let hex_of = |p: &rats_tls::PeerInfo| p.verified.claims["sim_mr_enclave"].canonical();
    assert_eq!(hex_of(&peer), vec![hex::encode([3u8; 48])]);
    let client_seen = h
        .join()
        .unwrap()
        .remove(0)
        .unwrap()
        .expect("the client's proof");
    assert_eq!(hex_of(&client_seen), vec![hex::encode([4u8; 48])]);
}

#[test]
fn a_critical_evidence_extension_and_p384_keys_work_through_rustls() {
    let enclave = SimEnclave::new(5);
    let policy = software_policy(&enclave.mr_enclave);
    let options = CertOptions {
        critical: true,
        key: KeyAlgorithm::P384,
        custom_claims: BTreeMap::from([("app".to_string(), b"v1".to_vec())]),
        ..CertOptions::default()
    };
    let (port, h) = server(Arc::new(Identity::new(Arc::new(enclave), options)), None, 1);
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut tls, peer) = rats_tls::connect(s, None, &Expect::new(Appraisal::new(policy))).unwrap();
    assert_eq!(peer.custom_claims["app"], b"v1");
    tls.write_all(b"hello").unwrap();
    drop(tls);
    h.join().unwrap();
}

#[test]
fn the_default_policy_refuses_sim_and_the_server_keeps_serving() {
    let enclave = SimEnclave::new(6);
    let good = software_policy(&enclave.mr_enclave);
    let (port, h) = server(identity(enclave), None, 3);

    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let err = rats_tls::connect(s, None, &Expect::new(Appraisal::default())).unwrap_err();
    assert!(
        err.to_string().contains("proves nothing about hardware"),
        "{err}"
    );

    // Another measurement expected: refused, naming the claim.
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let err = rats_tls::connect(
        s,
        None,
        &Expect::new(Appraisal::new(software_policy(&[0; 48]))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sim_mr_enclave"), "{err}");

    // The server still serves a good client.
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut tls, _) = rats_tls::connect(s, None, &Expect::new(Appraisal::new(good))).unwrap();
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    h.join().unwrap();
}

#[test]
fn a_peer_that_closes_mid_handshake_is_an_error_not_a_hang() {
    let enclave = SimEnclave::new(7);
    let policy = software_policy(&enclave.mr_enclave);
    let (port, h) = server(identity(enclave), None, 2);
    // Connect and hang up at once.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut tls, _) = rats_tls::connect(s, None, &Expect::new(Appraisal::new(policy))).unwrap();
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    let results = h.join().unwrap();
    assert!(results[0].is_err() && results[1].is_ok(), "{results:?}");
}

/// Certificate-level attacks, checked by `rats_tls::verify` directly.
#[test]
fn forged_and_replayed_certificates_are_refused_with_reasons() {
    let enclave = SimEnclave::new(8);
    let appraisal = Appraisal::new(software_policy(&enclave.mr_enclave));
    let nonce = b"0123456789abcdef";
    let good = rats_tls::generate(&enclave, &CertOptions::default(), Some(nonce)).unwrap();
    rats_tls::verify(&good.cert_der, &appraisal, Some(nonce)).unwrap();

    // Replayed under another session's nonce.
    let err = rats_tls::verify(&good.cert_der, &appraisal, Some(b"another session!")).unwrap_err();
    assert!(matches!(err, RaTlsError::Nonce(_)), "{err}");
    // No nonce at all when one is required.
    let stale = rats_tls::generate(&enclave, &CertOptions::default(), None).unwrap();
    let err = rats_tls::verify(&stale.cert_der, &appraisal, Some(nonce)).unwrap_err();
    assert!(err.to_string().contains("carries no nonce"), "{err}");

    // Evidence that does not bind the claims.
    let unbound =
        rats_tls::generate(&Unbound(SimEnclave::new(8)), &CertOptions::default(), None).unwrap();
    let err = rats_tls::verify(&unbound.cert_der, &appraisal, None).unwrap_err();
    assert!(err.to_string().contains("report data"), "{err}");

    // Expired: checked at a time after its validity.
    let later = Appraisal {
        now: Some(4_000_000_000),
        ..appraisal.clone()
    };
    let err = rats_tls::verify(&good.cert_der, &later, None).unwrap_err();
    assert!(err.to_string().contains("not valid now"), "{err}");

    // Oversized, and not a certificate.
    let err = rats_tls::verify(&vec![0x30; 70_000], &appraisal, None).unwrap_err();
    assert!(err.to_string().contains("over the"), "{err}");
    let err = rats_tls::verify(b"\x30\x03junk", &appraisal, None).unwrap_err();
    assert!(
        err.to_string().contains("not an X.509 certificate"),
        "{err}"
    );
}

/// Certificates built by hand with rcgen, as an attacker would.
#[test]
fn hand_made_certificates_without_proper_evidence_are_refused() {
    let enclave = SimEnclave::new(9);
    let appraisal = Appraisal::new(software_policy(&enclave.mr_enclave));
    let make = |ext: Option<(&[u64], Vec<u8>)>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        if let Some((oid, value)) = ext {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(oid, value));
        }
        (params.self_signed(&key).unwrap().der().to_vec(), key)
    };
    // No extension.
    let (der, _) = make(None);
    assert!(matches!(
        rats_tls::verify(&der, &appraisal, None).unwrap_err(),
        RaTlsError::NoExtension
    ));
    // Wrong CBOR.
    let (der, _) = make(Some((dice::OID_EVIDENCE, vec![0xa0, 0x01])));
    let err = rats_tls::verify(&der, &appraisal, None).unwrap_err();
    assert!(matches!(err, RaTlsError::Extension(_)), "{err}");
    // Genuine evidence and claims, lifted from another certificate: the claims are
    // for the other certificate's key.
    let other = rats_tls::generate(&enclave, &CertOptions::default(), None).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&other.cert_der).unwrap();
    let oid = x509_parser::der_parser::oid::Oid::from(dice::OID_EVIDENCE).unwrap();
    let lifted = parsed
        .extensions()
        .iter()
        .find(|e| e.oid == oid)
        .unwrap()
        .value
        .to_vec();
    let (der, _) = make(Some((dice::OID_EVIDENCE, lifted)));
    assert!(matches!(
        rats_tls::verify(&der, &appraisal, None).unwrap_err(),
        RaTlsError::KeyMismatch
    ));
    // A legacy rats-tls certificate is recognised and named.
    let (der, _) = make(Some((&[1, 2, 840, 113741, 1337, 6], vec![1, 2, 3])));
    let err = rats_tls::verify(&der, &appraisal, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("rats-tls/Enclave-TLS before 2022-12"),
        "{err}"
    );
}

#[test]
fn the_tokio_api_does_mutual_attestation_too() {
    let (server_enclave, client_enclave) = (SimEnclave::new(10), SimEnclave::new(11));
    let sp = software_policy(&server_enclave.mr_enclave);
    let cp = software_policy(&client_enclave.mr_enclave);
    let (sid, cid) = (identity(server_enclave), identity(client_enclave));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let expect = Expect::new(Appraisal::new(cp));
            let (mut tls, peer) = rats_tls::tls::asynchronous::accept(a, sid, Some(&expect))
                .await
                .unwrap();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"world").await.unwrap();
            tls.shutdown().await.unwrap();
            peer.unwrap()
        });
        let expect = Expect::new(Appraisal::new(sp));
        let (mut tls, peer) = rats_tls::tls::asynchronous::connect(b, Some(cid), &expect)
            .await
            .unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"world");
        let client_seen = server.await.unwrap();
        assert_eq!(
            peer.verified.claims["sim_mr_enclave"].canonical(),
            vec![hex::encode([10u8; 48])]
        );
        assert_eq!(
            client_seen.verified.claims["sim_mr_enclave"].canonical(),
            vec![hex::encode([11u8; 48])]
        );

        // A refused server is an error naming the reason, over tokio as well.
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let other = identity(SimEnclave::new(12));
        tokio::spawn(async move {
            let _ = rats_tls::tls::asynchronous::accept(a, other, None).await;
        });
        let err = rats_tls::tls::asynchronous::connect(b, None, &expect)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sim_mr_enclave"), "{err}");
    });
}

#[test]
fn rsa_3072_keys_work_through_rustls_in_both_directions() {
    let (server_enclave, client_enclave) = (SimEnclave::new(11), SimEnclave::new(12));
    let (sp, cp) = (
        software_policy(&server_enclave.mr_enclave),
        software_policy(&client_enclave.mr_enclave),
    );
    let rsa = || CertOptions {
        key: KeyAlgorithm::Rsa3072,
        ..CertOptions::default()
    };
    let (port, h) = server(
        Arc::new(Identity::new(Arc::new(server_enclave), rsa())),
        Some(Expect::new(Appraisal::new(cp))),
        1,
    );
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = Arc::new(Identity::new(Arc::new(client_enclave), rsa()));
    let (mut tls, peer) =
        rats_tls::connect(s, Some(client), &Expect::new(Appraisal::new(sp))).unwrap();
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    let rsa_bits = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        match c.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(k) => k.key_size(),
            other => panic!("not RSA: {other:?}"),
        }
    };
    assert_eq!(rsa_bits(&peer.cert_der), 3072);
    let client_seen = h.join().unwrap().remove(0).unwrap().unwrap();
    assert_eq!(rsa_bits(&client_seen.cert_der), 3072);
}

/// 2025-06-20T00:00:00Z: inside the SGX fixture's collateral window.
const IN_WINDOW: u64 = 1_750_377_600;

fn rats_testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../rats/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A real SGX quote with its collateral, as an attester with Intel's QPL hands them out.
struct RecordedSgx {
    collateral: Option<Vec<u8>>,
}

impl Attester for RecordedSgx {
    fn attest(&self, _: &[u8; 64]) -> Result<Evidence, RatsError> {
        Ok(Evidence {
            tee: Tee::SgxEcdsa,
            bytes: rats_testdata("sgx_quote"),
            collateral: self.collateral.clone(),
        })
    }
}

#[test]
fn endorsements_carry_the_attesters_collateral_only_when_asked() {
    let json = rats_testdata("sgx_quote_collateral.json");
    let options = CertOptions {
        endorsements: true,
        ..CertOptions::default()
    };
    let attester = RecordedSgx {
        collateral: Some(json.clone()),
    };
    let cert = rats_tls::generate(&attester, &options, None).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der).unwrap();
    let oid = x509_parser::der_parser::oid::Oid::from(dice::OID_ENDORSEMENTS).unwrap();
    let ext = parsed.extensions().iter().find(|e| e.oid == oid).unwrap();
    assert!(!ext.critical);
    let carried = rats_tls::endorsements::decode(ext.value).unwrap().unwrap();
    let want: rats::QuoteCollateralV3 = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (carried.tcb_info, carried.qe_identity_signature),
        (want.tcb_info, want.qe_identity_signature)
    );

    // Not asked: no extension.
    let plain = rats_tls::generate(&attester, &CertOptions::default(), None).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&plain.cert_der).unwrap();
    assert!(parsed.extensions().iter().all(|e| e.oid != oid));
    // Asked, but the attester has nothing to give: a clear error.
    let err = rats_tls::generate(&RecordedSgx { collateral: None }, &options, None).unwrap_err();
    assert!(err.to_string().contains("no collateral"), "{err}");
    // Software evidence has no endorsements to carry.
    let sim = rats_tls::generate(&SimEnclave::new(13), &options, None).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&sim.cert_der).unwrap();
    assert!(parsed.extensions().iter().all(|e| e.oid != oid));
}

/// A verifier without collateral of its own checks an SGX quote with the certificate's
/// endorsements. The quote is real, so its report data cannot bind this certificate's
/// claims: a report-data mismatch is the furthest it can get, and it is reached only
/// after the quote, the PCK chain and every collateral signature verified.
#[test]
fn endorsements_in_the_certificate_verify_a_real_sgx_quote_offline() {
    let collateral: rats::QuoteCollateralV3 =
        serde_json::from_slice(&rats_testdata("sgx_quote_collateral.json")).unwrap();
    let make = |endorsements: Option<Vec<u8>>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let claims = dice::encode_claims(&BTreeMap::from([(
            dice::CLAIM_PUBKEY_HASH.to_string(),
            dice::pubkey_hash_claim(&key.public_key_der()),
        )]));
        let mut params = rcgen::CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2025, 6, 19);
        params.not_after = rcgen::date_time_ymd(2025, 6, 21);
        let evidence =
            dice::encode_evidence(dice::TAG_INTEL_QUOTE, &rats_testdata("sgx_quote"), &claims);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                dice::OID_EVIDENCE,
                evidence,
            ));
        if let Some(e) = endorsements {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    dice::OID_ENDORSEMENTS,
                    e,
                ));
        }
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let appraisal = Appraisal {
        now: Some(IN_WINDOW),
        ..Appraisal::default()
    };
    // How far a real quote can get: everything verified but the binding.
    let only_binding_fails = |e: &RaTlsError| {
        matches!(
            e,
            RaTlsError::Evidence(RatsError::ReportDataMismatch { .. })
        )
    };
    let good = make(Some(rats_tls::endorsements::encode(&collateral)));
    let err = rats_tls::inspect(&good, &appraisal, None).unwrap_err();
    assert!(only_binding_fails(&err), "{err}");
    // Without them, what the quote carries (its signatures, the PCK chain) is still
    // checked offline, as far as the binding; its TCB status would be `Unknown`.
    let err = rats_tls::inspect(&make(None), &appraisal, None).unwrap_err();
    assert!(only_binding_fails(&err), "{err}");
    // An empty extension (what rats-rs emits) means none.
    let err = rats_tls::inspect(&make(Some(vec![])), &appraisal, None).unwrap_err();
    assert!(only_binding_fails(&err), "{err}");
    // A forged TCB info signature is caught by the quote verifier.
    let mut forged = collateral.clone();
    forged.tcb_info_signature[7] ^= 1;
    let forged_cert = make(Some(rats_tls::endorsements::encode(&forged)));
    let err = rats_tls::inspect(&forged_cert, &appraisal, None).unwrap_err();
    assert!(!only_binding_fails(&err), "{err}");
    assert!(err.to_string().to_lowercase().contains("tcb"), "{err}");
    // The verifier's own collateral comes first: the forged endorsements are ignored.
    let own = Appraisal {
        collateral: Some(rats::Collateral::Dcap(Box::new(collateral))),
        ..appraisal
    };
    let err = rats_tls::inspect(&forged_cert, &own, None).unwrap_err();
    assert!(only_binding_fails(&err), "{err}");
}

/// OpenSSL, the TLS stack of rats-tls and librats, completes a TLS 1.3 handshake with
/// our server, reads the evidence extension, and accepts the certificate's profile
/// (the reason the extension is non-critical by default); the certificate it received
/// verifies here.
#[test]
fn openssl_handshakes_with_our_server_and_accepts_its_certificate() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("skipped: openssl is not installed");
        return;
    };
    assert!(out.status.success());
    let enclave = SimEnclave::new(14);
    let policy = software_policy(&enclave.mr_enclave);
    let (port, h) = server(identity(enclave), None, 1);
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_3", "-showcerts", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("TLSv1.3"), "{text}");
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    let pem = &text[begin..end];
    h.join().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.pem");
    std::fs::write(&path, pem).unwrap();
    let show = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("2.23.133.5.4.9"));
    let check = std::process::Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(&path)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let peer = rats_tls::verify(&der, &Appraisal::new(policy), None).unwrap();
    assert_eq!(peer.verified.tee, Tee::Sim);

    // A critical extension is what OpenSSL refuses.
    let critical = CertOptions {
        critical: true,
        ..CertOptions::default()
    };
    let cert = rats_tls::generate(&SimEnclave::new(15), &critical, None).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&cert.cert_der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    std::fs::write(&path, pem).unwrap();
    let check = std::process::Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(&path)
        .arg(&path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("unhandled critical extension")
            || String::from_utf8_lossy(&check.stderr).contains("unhandled critical extension"),
        "{check:?}"
    );
}

/// rats-rs makes its certificates differently (CA:TRUE critical, keyCertSign, serial
/// 42, 60 seconds of validity, an empty endorsements extension): they are accepted.
#[test]
fn a_certificate_with_the_rats_rs_profile_is_accepted() {
    let enclave = SimEnclave::new(16);
    let key = rcgen::KeyPair::generate().unwrap();
    let claims = dice::encode_claims(&BTreeMap::from([(
        dice::CLAIM_PUBKEY_HASH.to_string(),
        dice::pubkey_hash_claim(&key.public_key_der()),
    )]));
    let evidence = enclave.attest(&dice::report_data(&claims)).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Inclavare Containers");
    dn.push(rcgen::DnType::CommonName, "rats-rs");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(rcgen::SerialNumber::from(42u64));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::seconds(60);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            dice::OID_EVIDENCE,
            dice::encode_evidence(dice::TAG_SIM, &evidence.bytes, &claims),
        ));
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            dice::OID_ENDORSEMENTS,
            vec![],
        ));
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(parsed.basic_constraints().unwrap().unwrap().value.ca);
    let peer = rats_tls::verify(
        &der,
        &Appraisal::new(software_policy(&enclave.mr_enclave)),
        None,
    )
    .unwrap();
    assert_eq!(peer.verified.tee, Tee::Sim);
}
