//! verdictd for real: the binary on loopback, driven by the attestation agent and by
//! hand-made protocol messages (attacks included). Every case also checks that the
//! server keeps serving and stored nothing it should not have.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use attestation_agent::{Agent, AgentError, Options, TeeChoice};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use serde_json::{json, Value};

#[test]
fn sample_workload_gets_a_secret_only_when_the_policy_allows() {
    let v = Verdictd::start(ADMIN_OPEN);
    store(&v, "default/key/demo", b"the demo secret");
    let rt = rt();

    // The default policy refuses the software TEEs.
    let mut agent = v.agent();
    let err = rt
        .block_on(agent.get_resource("kbs:///default/key/demo"))
        .unwrap_err();
    assert!(
        matches!(&err, AgentError::Kbs { status: 401, detail, .. } if detail.contains("denies")),
        "{err}"
    );

    set_policy(&v, "package policy\ndefault allow = true\n");
    let secret = rt
        .block_on(agent.get_resource("kbs:///default/key/demo"))
        .unwrap();
    assert_eq!(secret.as_slice(), b"the demo secret");

    // The token: ES256 EAR with the key in the header, the sample claims, and the
    // TEE key where Trustee looks for it.
    let token = rt.block_on(agent.attest()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"]["crv"], "P-256");
    assert_eq!(claims["eat_profile"], verdictd::token::EAT_PROFILE);
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "contraindicated");
    assert_eq!(cpu0["ear.trustworthiness-vector"]["hardware"], 97);
    // Trustee's sample claims (T:deps/verifier/src/sample/mod.rs), rats' beside them.
    let sample = &cpu0["ear.veraison.annotated-evidence"]["sample"];
    assert_eq!(sample["svn"], "1");
    assert_eq!(sample["launch_digest"], "abcde");
    assert_eq!(sample["sample_svn"], 1);
    assert_eq!(cpu0["ear.appraisal-policy-id"], "default");
    assert!(claims
        .pointer(verdictd::token::TEE_PUBKEY_POINTER)
        .is_some_and(|k| k["kty"] == "EC"));
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());

    // Cookie-only GET (no Bearer) on an attested session works too.
    let key = TeeKeyPair::generate();
    let (mut m, body, reply, jwe) = Manual::attest_and_get_demo(&v, &key);
    assert_eq!(key.decrypt(&jwe).unwrap().as_slice(), b"the demo secret");
    // Attesting again on an attested session returns its token.
    let (status, again) = m.attest(body);
    assert_eq!((status, &again["token"]), (200, &reply["token"]));

    // A P-521 TEE key: the secret comes back wrapped with ECDH-ES+A256KW on P-521.
    let key = TeeKeyPair::generate_p521();
    let (_, _, _, jwe) = Manual::attest_and_get_demo(&v, &key);
    assert_eq!(jwe.protected.other_fields["epk"]["crv"], "P-521");
    assert_eq!(key.decrypt(&jwe).unwrap().as_slice(), b"the demo secret");
    v.stop();
}

#[test]
fn attacks_are_refused_and_the_server_keeps_serving() {
    let v = Verdictd::start(&format!("max_body_bytes = 65536\n{ADMIN_OPEN}"));
    store(&v, "default/key/x", b"x");
    set_policy(&v, "package policy\ndefault allow = true\n");
    let mut c = v.client();
    let key = TeeKeyPair::generate();

    // Wrong protocol version and unknown TEE, at /auth.
    for (version, tee) in [
        ("0.1.1", "sample"),
        ("0.4.1", "sample"),
        ("0.4.0", "quantum"),
    ] {
        let body = json!({"version": version, "tee": tee, "extra-params": ""}).to_string();
        let (status, b) = call(
            &mut c,
            "POST",
            "/kbs/v0/auth",
            Some(body.into_bytes()),
            None,
        );
        assert_eq!((status, error_kind(&b)), (401, "AttestationError"), "{b}");
    }
    // Attest without a session.
    let (status, b) = call(
        &mut v.client(),
        "POST",
        "/kbs/v0/attest",
        Some(Manual::attestation("n", &key, &key, "n")),
        None,
    );
    assert_eq!(status, 401, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("cookie"), "{b}");

    // A nonce from another session (replay).
    let old = Manual::auth(&v);
    let mut m = Manual::auth(&v);
    let (status, b) = m.attest(Manual::attestation(&old.nonce, &key, &key, &old.nonce));
    assert_eq!(status, 401);
    assert!(b["detail"].as_str().unwrap().contains("nonce"), "{b}");

    // Evidence bound to another key than the one sent (a stolen quote).
    let mut m = Manual::auth(&v);
    let other = TeeKeyPair::generate();
    let n = m.nonce.clone();
    let (status, b) = m.attest(Manual::attestation(&n, &key, &other, &n));
    assert_eq!(status, 401);
    assert!(b["detail"].as_str().unwrap().contains("report data"), "{b}");

    // Tampered evidence: report data changed.
    let mut m = Manual::auth(&v);
    let n = m.nonce.clone();
    let mut body: Value = serde_json::from_slice(&Manual::attestation(&n, &key, &key, &n)).unwrap();
    body["tee-evidence"]["primary_evidence"]["report_data"] = json!(STANDARD.encode([1u8; 48]));
    let (status, _) = m.attest(serde_json::to_vec(&body).unwrap());
    assert_eq!(status, 401);
    // Not JSON at all (Trustee wraps every /attest failure as AttestationError).
    let mut m = Manual::auth(&v);
    let (status, b) = m.attest(b"{not json".to_vec());
    assert_eq!((status, error_kind(&b)), (401, "AttestationError"));

    // GET with neither cookie nor token; with a forged token; with a token of another
    // verdictd; with a malformed one.
    let (status, b) = call(
        &mut v.client(),
        "GET",
        "/kbs/v0/resource/default/key/x",
        None,
        None,
    );
    assert_eq!((status, error_kind(&b)), (401, "TokenNotFound"));
    let other_signer = verdictd::token::TokenSigner::new(None, 60).unwrap();
    let (forged, _) = other_signer
        .issue(
            json!({"ear.status": "affirming", "ear.veraison.annotated-evidence": {
            "runtime_data_claims": {"tee-pubkey": key.public_key()}}}),
        )
        .unwrap();
    for t in [forged.as_str(), "not.a.jwt", "e30.e30.e30"] {
        let (status, b) = call(
            &mut v.client(),
            "GET",
            "/kbs/v0/resource/default/key/x",
            None,
            Some(t),
        );
        assert_eq!((status, error_kind(&b)), (401, "TokenVerifierError"), "{b}");
    }

    // Paths: traversal, too many or too few segments, odd characters. Trustee's
    // resource plugin refuses them with 401 PluginInternalError (T:kbs/src/plugins/
    // implementations/resource/backend.rs "illegal ResourceDesc format", wrapped in
    // T:kbs/src/api_server.rs), after the token and the policy; so does verdictd.
    let mut agent = v.agent();
    let token = rt().block_on(agent.attest()).unwrap();
    for bad in [
        "default/../x",
        "default/key/x/y",
        "default/key",
        "default/key/.x",
        "a/b/c%2Fd",
    ] {
        let (status, b) = call(
            &mut v.client(),
            "GET",
            &format!("/kbs/v0/resource/{bad}"),
            None,
            Some(&token),
        );
        assert_eq!(
            (status, error_kind(&b)),
            (401, "PluginInternalError"),
            "{bad}: {b}"
        );
        let (status, b) = call(
            &mut v.client(),
            "POST",
            &format!("/kbs/v0/resource/{bad}"),
            Some(b"v".to_vec()),
            None,
        );
        assert_eq!(
            (status, error_kind(&b)),
            (401, "PluginInternalError"),
            "{bad}"
        );
    }
    // Without a token the token is what is missing, whatever the path.
    let (status, b) = call(&mut v.client(), "GET", "/kbs/v0/resource/a/b", None, None);
    assert_eq!((status, error_kind(&b)), (401, "TokenNotFound"), "{b}");
    // Unknown endpoints and methods: Trustee takes the segment as a plugin name (404).
    for (method, path) in [
        ("GET", "/kbs/v0/nonsense"),
        ("GET", "/kbs/v0/auth"),
        ("PUT", "/kbs/v0/attest"),
    ] {
        let (status, b) = call(&mut v.client(), method, path, None, None);
        assert_eq!(
            (status, error_kind(&b)),
            (404, "PluginNotFound"),
            "{method} {path}: {b}"
        );
    }
    // A body over the limit is refused before it is read whole, as JSON like every
    // other error.
    let (status, b) = call(
        &mut v.client(),
        "POST",
        "/kbs/v0/attest",
        Some(vec![b'x'; 200_000]),
        None,
    );
    assert_eq!((status, error_kind(&b)), (413, "PayloadTooLarge"), "{b}");

    // Still serving, and the real resource is still what it was.
    let (status, _) = call(&mut v.client(), "GET", "/healthz", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        rt().block_on(agent.get_resource("kbs:///default/key/x"))
            .unwrap()
            .as_slice(),
        b"x"
    );
    v.stop();
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn admin_token(key_pem: &Path, alg: jsonwebtoken::Algorithm, role: Option<&str>) -> String {
    let pem = std::fs::read(key_pem).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let now = verdictd::token::unix_now();
    let mut claims = json!({"iss": "test", "aud": ["kbs"], "iat": now, "exp": now + 600});
    if let Some(r) = role {
        claims["role"] = json!(r);
    }
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
}

#[test]
fn admin_api_takes_only_signed_tokens_with_an_allowed_role() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "ed.key"], d);
    openssl(&["pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub"], d);
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
        d,
    );
    openssl(&["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"], d);
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
        d,
    );
    openssl(&["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"], d);
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", "stranger.key"],
        d,
    );
    let v = Verdictd::start_in(
        dir,
        "insecure_http = true\nresource_policy = \"allow_all\"\n[admin]\nmode = \"bearer_jwt\"\npublic_keys = [\"ed.pub\", \"ec.pub\", \"rsa.pub\"]\n",
    );
    let d = v.dir.path().to_path_buf();
    use jsonwebtoken::Algorithm::*;
    let post = |token: Option<&str>, path: &str| {
        call(
            &mut v.client(),
            "POST",
            &format!("/kbs/v0/resource/{path}"),
            Some(b"admin secret".to_vec()),
            token,
        )
    };
    let refused = [
        (None, "no bearer"),
        (
            Some(admin_token(&d.join("stranger.key"), EdDSA, Some("admin"))),
            "unknown key",
        ),
        (
            Some(admin_token(&d.join("ed.key"), EdDSA, Some("user"))),
            "wrong role",
        ),
        (Some(admin_token(&d.join("ed.key"), EdDSA, None)), "no role"),
    ];
    for (token, why) in &refused {
        let (status, b) = post(token.as_deref(), "default/key/admin");
        // Trustee converts the admin error on the resource plugin's path into
        // AdminAuthInitialization (T:kbs/src/api_server.rs, T:kbs/src/error.rs).
        assert_eq!(
            (status, error_kind(&b)),
            (401, "AdminAuthInitialization"),
            "{why}: {b}"
        );
    }
    // Nothing was stored by the refused calls.
    let mut agent = v.agent();
    let err = rt()
        .block_on(agent.get_resource("kbs:///default/key/admin"))
        .unwrap_err();
    assert!(matches!(err, AgentError::Kbs { status: 401, .. }), "{err}");
    for (key, alg) in [("ed.key", EdDSA), ("ec.key", ES256), ("rsa.key", RS256)] {
        let (status, b) = post(
            Some(&admin_token(&d.join(key), alg, Some("admin"))),
            "default/key/admin",
        );
        assert_eq!(status, 200, "{key}: {b}");
    }
    assert_eq!(
        rt().block_on(agent.get_resource("kbs:///default/key/admin"))
            .unwrap()
            .as_slice(),
        b"admin secret"
    );
    // deny_all (the default) refuses even a good token.
    drop(v);
    let v = Verdictd::start("insecure_http = true\n");
    let (status, b) = call(
        &mut v.client(),
        "POST",
        "/kbs/v0/resource/a/b/c",
        Some(b"x".to_vec()),
        None,
    );
    assert_eq!((status, error_kind(&b)), (401, "AdminAuthInitialization"));
    // The policy endpoints name it AdminAuthAccess.
    let (status, b) = call(
        &mut v.client(),
        "GET",
        "/kbs/v0/resource-policy",
        None,
        None,
    );
    assert_eq!((status, error_kind(&b)), (401, "AdminAuthAccess"));
}

#[test]
fn sessions_are_bounded_and_expire() {
    let v = Verdictd::start(&format!(
        "{ADMIN_OPEN}[session]\ntimeout_secs = 2\nmax_sessions = 2\nchallenge_timeout_secs = 1\nmax_challenges = 2\n"
    ));
    let mut a = Manual::auth(&v);
    let mut b = Manual::auth(&v);
    // Challenges are not stored: a third one evicts none (no 429), all three attest.
    let mut c = Manual::auth(&v);
    let key = TeeKeyPair::generate();
    for m in [&mut a, &mut b, &mut c] {
        let n = m.nonce.clone();
        let (status, e) = m.attest(Manual::attestation(&n, &key, &key, &n));
        assert_eq!(status, 200, "{e}");
    }
    // The attested table holds two: the oldest session was evicted. (The postgres
    // backend bounds its table at each sweep, every 60 s, not at each insert: the
    // expiry below holds for both.)
    if !postgres() {
        let (status, e) = call(
            &mut a.client,
            "GET",
            "/kbs/v0/resource/default/key/x",
            None,
            None,
        );
        assert_eq!((status, error_kind(&e)), (401, "TokenNotFound"), "{e}");
    }
    // A challenge expires after challenge_timeout_secs.
    let mut d = Manual::auth(&v);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let n = d.nonce.clone();
    let (status, e) = d.attest(Manual::attestation(&n, &key, &key, &n));
    assert_eq!(status, 401);
    assert!(e["detail"].as_str().unwrap().contains("expired"), "{e}");
    // Attested sessions outlive challenges, and expire after timeout_secs.
    let (status, e) = b.attest(Vec::new());
    assert_eq!(status, 200, "{e}");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (status, _) = b.attest(Vec::new());
    assert_eq!(status, 401);
    let (_, metrics) = call(&mut v.client(), "GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(!metrics.contains("status=\"429\""), "{metrics}");
    assert!(
        metrics.contains("kbs_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn localfs_storage_over_https_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A CA (cert.pem, what the agent trusts) and the server's certificate from it.
    test_support::openssl_self_signed(dir.path(), "ca.key", "cert.pem", "/CN=test CA", &[])
        .unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        dir.path(),
    );
    std::fs::write(dir.path().join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "cert.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
        dir.path(),
    );
    let config = "resource_policy = \"allow_all\"\n[tls]\ncertificate = \"server.pem\"\nprivate_key = \"key.pem\"\n[storage]\ntype = \"localfs\"\ndir = \"resources\"\n[admin]\nmode = \"insecure_allow_all\"\n";
    // Relative paths are the config file's directory's.
    let v = Verdictd::start_in(dir, config);
    assert!(v.url.starts_with("https://127.0.0.1:"), "{}", v.url);
    store(&v, "repo/type/tag", b"kept on disk");
    let file = v.dir.path().join("resources/repo\\x2Ftype\\x2Ftag");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Without the CA, the agent refuses to talk.
    assert!(Agent::new(
        &v.url,
        Options {
            tee: TeeChoice::Sample,
            ca_pem: None
        }
    )
    .is_err());
    let dir = v.stop();
    let v = Verdictd::start_in(dir, config);
    let secret = rt()
        .block_on(v.agent().get_resource("kbs:///repo/type/tag"))
        .unwrap();
    assert_eq!(secret.as_slice(), b"kept on disk");
}

#[test]
fn bad_configurations_fail_at_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (config, expect) in [
        ("", "insecure_http"),
        ("insecure_http = true\nresource_policy = \"nope\"\n", "nope"),
        (
            "insecure_http = true\n[storage]\ntype = \"localfs\"\n",
            "needs dir",
        ),
        (
            "insecure_http = true\n[admin]\nmode = \"bearer_jwt\"\n",
            "public_keys",
        ),
        ("insecure_http = true\nbogus = 1\n", "bogus"),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{config}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{config}: {err}");
    }
    // The command line's --insecure-http completes a config without [tls].
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(&path)
        .arg("--insecure-http")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("listening on http://127.0.0.1:"),
        "{line:?}"
    );
}
