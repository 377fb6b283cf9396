//! `enclave-image sign` and `push` against real peers: cosign signatures checked with
//! `openssl dgst -sha256 -verify` over the payload bytes fetched from the registry, simple
//! signatures with real `gpg --verify` and with skopeo's own policy enforcement
//! (containers/image, `signedBy` + lookaside), and both accepted by the library's
//! policy. Manifest digests expected come from `skopeo inspect`.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_image::policy::{Keys, Policy, Signatures};
use enclave_image::registry::{ImageSource, Puller};
use serde_json::Value;
use test_support::{free_port, leftovers, skopeo, Auth, Gpg, Registry};

fn openssl(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The library's verdict for `image` under `policy_json`, with the signatures found in
/// the registry (cosign) and in `lookaside` (simple).
fn library_verdict(
    host: &str,
    image: &str,
    policy_json: &str,
    lookaside: Option<&Path>,
) -> Result<(), String> {
    rt().block_on(async {
        let puller = Puller::new(config(host)).unwrap();
        let img = puller
            .open(&image.parse::<ImageSource>().unwrap())
            .await
            .unwrap();
        let cosign: Vec<_> = img
            .cosign_signatures(&img.manifest_digest)
            .await
            .unwrap()
            .iter()
            .filter_map(|s| s.for_policy())
            .collect();
        let simple = match lookaside {
            Some(dir) => img
                .lookaside_signatures(&format!("file://{}", dir.display()), &img.manifest_digest)
                .await
                .unwrap(),
            None => Vec::new(),
        };
        let policy = Policy::from_bytes(policy_json.as_bytes()).unwrap();
        policy
            .evaluate(
                image,
                &img.manifest_digest,
                &Signatures {
                    simple: &simple,
                    cosign: &cosign,
                },
                &Keys::local_files(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// (payload bytes, signature DER) of each layer of the cosign manifest at `sig_ref`,
/// read from the registry's storage.
fn cosign_layers(reg: &Registry, sig_ref: &str) -> Vec<(Vec<u8>, Vec<u8>, Value)> {
    let m = raw_manifest(sig_ref);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(
                l["mediaType"],
                "application/vnd.dev.cosign.simplesigning.v1+json"
            );
            let digest = l["digest"].as_str().unwrap();
            let path = reg.blob_path(digest);
            assert_eq!(sha256sum(&path), digest);
            let sig = l["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap();
            (
                std::fs::read(path).unwrap(),
                STANDARD.decode(sig).unwrap(),
                l.clone(),
            )
        })
        .collect()
}

fn openssl_verifies(dir: &Path, pub_pem: &str, payload: &[u8], der: &[u8]) -> bool {
    std::fs::write(dir.join("payload.json"), payload).unwrap();
    std::fs::write(dir.join("sig.der"), der).unwrap();
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            pub_pem,
            "-signature",
            "sig.der",
            "payload.json",
        ],
    )
    .is_ok_and(|o| o.trim() == "Verified OK")
}

#[test]
fn cosign_signatures_verify_with_openssl_and_the_policy_and_travel_with_push() {
    if !have(&["skopeo", "umoci", "docker-registry", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    let image = format!("{host}/test/app:v1");
    push_plain(&src, &image);
    let digest = skopeo_digest(&image);
    let sig_ref = format!("{host}/test/app:{}.sig", digest.replacen(':', "-", 1));

    // An openssl key (SEC1, with its EC PARAMETERS block first).
    openssl(
        d,
        &["ecparam", "-genkey", "-name", "prime256v1", "-out", "k.pem"],
    )
    .unwrap();
    openssl(d, &["ec", "-in", "k.pem", "-pubout", "-out", "pub.pem"]).unwrap();
    let out = ok(&tool_in(
        &tmp,
        &[
            "sign",
            "--cosign-key",
            d.join("k.pem").to_str().unwrap(),
            "--insecure-registry",
            &host,
            &image,
        ],
    ));
    assert_eq!(out.trim(), format!("docker://{sig_ref}"));
    let layers = cosign_layers(&reg, &sig_ref);
    assert_eq!(layers.len(), 1);
    let (payload, der, _) = &layers[0];
    assert!(
        openssl_verifies(d, "pub.pem", payload, der),
        "openssl does not verify"
    );
    let p: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        p["critical"]["identity"]["docker-reference"],
        format!("{host}/test/app")
    );
    assert_eq!(p["critical"]["type"], "cosign container image signature");
    assert_eq!(p["optional"], Value::Null);

    let policy = |key: &str, identity: &str| {
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/test":[{{"type":"sigstoreSigned","keyPath":"{}","signedIdentity":{identity}}}]}}}}}}"#,
            d.join(key).display()
        )
    };
    let same_repo = r#"{"type":"matchRepository"}"#;
    library_verdict(&host, &image, &policy("pub.pem", same_repo), None).unwrap();
    // One signature travels with push, counted in the singular.
    let one = format!("oci:{}/one:v1", d.display());
    let out = ok(&tool_in(
        &tmp,
        &["push", "--insecure-registry", &host, &image, &one],
    ));
    assert!(
        out.trim_end()
            .ends_with(&format!("@{digest}: 3 blobs, 1 cosign signature")),
        "{out}"
    );

    // A second signer (a key from `keygen --cosign`): both signatures are kept.
    let out = ok(&tool_in(
        &tmp,
        &["keygen", "--cosign", d.join("k2.pem").to_str().unwrap()],
    ));
    assert!(out.contains("k2.pem.pub"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("k2.pem")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ok(&tool_in(
        &tmp,
        &[
            "sign",
            "--cosign-key",
            d.join("k2.pem").to_str().unwrap(),
            "--insecure-registry",
            &host,
            &image,
        ],
    ));
    let layers = cosign_layers(&reg, &sig_ref);
    assert_eq!(layers.len(), 2);
    assert!(openssl_verifies(d, "pub.pem", &layers[0].0, &layers[0].1));
    assert!(openssl_verifies(
        d,
        "k2.pem.pub",
        &layers[1].0,
        &layers[1].1
    ));
    assert!(!openssl_verifies(d, "pub.pem", &layers[1].0, &layers[1].1));
    library_verdict(&host, &image, &policy("k2.pem.pub", same_repo), None).unwrap();
    // The same signature again is not stored twice (ECDSA here is deterministic).
    ok(&tool_in(
        &tmp,
        &[
            "sign",
            "--cosign-key",
            d.join("k.pem").to_str().unwrap(),
            "--insecure-registry",
            &host,
            &image,
        ],
    ));
    assert_eq!(cosign_layers(&reg, &sig_ref).len(), 2);

    // push: registry → layout → another repository; manifest and signatures travel.
    let copy = format!("oci:{}/copy:v1", d.display());
    let out = ok(&tool_in(
        &tmp,
        &["push", "--insecure-registry", &host, &image, &copy],
    ));
    assert!(
        out.contains(&format!("@{digest}: 3 blobs, 2 cosign signatures")),
        "{out}"
    );
    let copied = format!("{host}/test/copy:v1");
    ok(&tool_in(
        &tmp,
        &["push", "--insecure-registry", &host, &copy, &copied],
    ));
    assert_eq!(skopeo_digest(&copied), digest);
    let copied_sig = format!("{host}/test/copy:{}.sig", digest.replacen(':', "-", 1));
    let layers = cosign_layers(&reg, &copied_sig);
    assert_eq!(layers.len(), 2);
    assert!(openssl_verifies(d, "pub.pem", &layers[0].0, &layers[0].1));
    // The signature names test/app: only a policy that says so accepts it for test/copy.
    let e = library_verdict(&host, &copied, &policy("pub.pem", same_repo), None).unwrap_err();
    assert!(e.contains("is not accepted"), "{e}");
    let exact = format!(r#"{{"type":"exactRepository","dockerRepository":"{host}/test/app"}}"#);
    library_verdict(&host, &copied, &policy("pub.pem", &exact), None).unwrap();
    // skopeo reads what push wrote.
    skopeo(&["inspect", &copy]).unwrap();
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

#[test]
fn simple_signatures_verify_with_gpg_and_skopeo_and_the_policy() {
    if !have(&["skopeo", "umoci", "docker-registry", "gpg"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    let image = format!("{host}/test/app:v1");
    push_plain(&src, &image);
    let digest = skopeo_digest(&image);
    let gpg = Gpg::new(&d.join("gnupg")).unwrap();
    let other = Gpg::new(&d.join("gnupg-other")).unwrap();
    let lookaside = d.join("sigstore");

    let sign = |g: &Gpg| {
        tool_in(
            &tmp,
            &[
                "sign",
                "--gpg-home",
                g.home().to_str().unwrap(),
                "--sign-by",
                g.fingerprint(),
                "--lookaside",
                lookaside.to_str().unwrap(),
                "--insecure-registry",
                &host,
                &image,
            ],
        )
    };
    let out = ok(&sign(&gpg));
    // images.md §3.3: <base>/<repo path>@sha256=<hex>/signature-1, no registry host.
    let sig1 = lookaside.join(format!(
        "test/app@{}/signature-1",
        digest.replacen(':', "=", 1)
    ));
    assert_eq!(out.trim(), sig1.display().to_string());

    // Real gpg: a good signature by that key, whose signed data is the payload.
    let status = gpg
        .run(&[
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            sig1.to_str().unwrap(),
        ])
        .unwrap();
    assert!(
        status.contains(&format!("[GNUPG:] VALIDSIG {}", gpg.fingerprint())),
        "{status}"
    );
    let payload = gpg
        .run(&["--batch", "--quiet", "--decrypt", sig1.to_str().unwrap()])
        .unwrap();
    let p: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        p["critical"]["identity"]["docker-reference"],
        image.as_str()
    );
    assert_eq!(p["critical"]["type"], "atomic container signature");
    assert!(p["optional"]["timestamp"].as_u64().is_some());
    // The other key's gpg does not verify it.
    assert!(other
        .run(&["--batch", "--verify", sig1.to_str().unwrap()])
        .is_err());

    // skopeo (containers/image) enforces a signedBy policy with our lookaside signature.
    let keyring = d.join("pubring.asc");
    std::fs::write(&keyring, gpg.export_public().unwrap()).unwrap();
    let other_ring = d.join("other.asc");
    std::fs::write(&other_ring, other.export_public().unwrap()).unwrap();
    let regd = d.join("registries.d");
    std::fs::create_dir(&regd).unwrap();
    std::fs::write(
        regd.join("test.yaml"),
        format!(
            "docker:\n  {host}:\n    lookaside: file://{}\n",
            lookaside.display()
        ),
    )
    .unwrap();
    let policy = |ring: &Path| {
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/test/app":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            ring.display()
        )
    };
    let skopeo_pull = |policy_json: &str, to: &str| {
        let pf = d.join("policy.json");
        std::fs::write(&pf, policy_json).unwrap();
        test_support::run(
            "skopeo",
            &[
                "--policy",
                pf.to_str().unwrap(),
                "--registries.d",
                regd.to_str().unwrap(),
                "copy",
                "--src-tls-verify=false",
                "--remove-signatures",
                &format!("docker://{image}"),
                &format!("oci:{}:{to}", d.join("pulled").display()),
            ],
        )
    };
    skopeo_pull(&policy(&keyring), "ok").unwrap();
    let e = skopeo_pull(&policy(&other_ring), "bad").unwrap_err();
    assert!(e.contains("signature"), "{e}");
    // The library's policy agrees.
    library_verdict(&host, &image, &policy(&keyring), Some(&lookaside)).unwrap();
    let e = library_verdict(&host, &image, &policy(&other_ring), Some(&lookaside)).unwrap_err();
    assert!(e.contains("Invalid GPG signature"), "{e}");

    // A second signature goes to signature-2; skopeo accepts either key's policy now.
    ok(&sign(&other));
    let sig2 = sig1.with_file_name("signature-2");
    let status = other
        .run(&[
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            sig2.to_str().unwrap(),
        ])
        .unwrap();
    assert!(status.contains("[GNUPG:] VALIDSIG"), "{status}");
    skopeo_pull(&policy(&other_ring), "second").unwrap();
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

#[test]
fn bad_signing_input_fails_in_one_line_and_writes_nothing() {
    if !have(&["skopeo", "umoci", "docker-registry", "gpg", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    let image = format!("{host}/test/app:v1");
    push_plain(&src, &image);
    let digest = skopeo_digest(&image);
    let gpg = Gpg::new(&d.join("gnupg")).unwrap();
    let lookaside = d.join("sigstore");
    std::fs::create_dir(&lookaside).unwrap();
    openssl(
        d,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "k.pem",
        ],
    )
    .unwrap();
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]).unwrap();
    std::fs::write(d.join("junk.pem"), "not a key").unwrap();
    let down = format!("127.0.0.1:{}", free_port().unwrap());
    let key = |k: &str| d.join(k).display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["--cosign-key".into(), key("junk.pem"), "--insecure-registry".into(), host.clone(), image.clone()],
         format!("{}: cosign key: no PEM private key block", key("junk.pem"))),
        (vec!["--cosign-key".into(), key("ed.pem"), "--insecure-registry".into(), host.clone(), image.clone()],
         "(a P-256 key is needed)".into()),
        (vec!["--cosign-key".into(), key("k.pem"), "--insecure-registry".into(), host.clone(), format!("{host}/test/none:v1")],
         format!("{host}/test/none: manifest v1: HTTP 404")),
        (vec!["--cosign-key".into(), key("k.pem"), "--insecure-registry".into(), down.clone(), format!("{down}/test/app:v1")],
         format!("{down}/test/app: manifest v1:")),
        (vec!["--cosign-key".into(), key("k.pem"), src.clone()],
         "an oci: image needs --identity".into()),
        (vec!["--gpg-home".into(), gpg.home().display().to_string(), "--sign-by".into(), "0000000000000000000000000000000000000000".into(),
              "--lookaside".into(), lookaside.display().to_string(), "--insecure-registry".into(), host.clone(), image.clone()],
         "gpg --local-user 0000000000000000000000000000000000000000 --output - --sign: exit status: 2".into()),
    ];
    for (args, want) in cases {
        let mut full = vec!["sign"];
        full.extend(args.iter().map(String::as_str));
        let line = one_line_error(&tool_in(&tmp, &full));
        assert!(line.contains(&want), "{args:?}: {line}\nwanted: {want}");
    }
    // No signature anywhere.
    assert!(skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!(
            "docker://{host}/test/app:{}.sig",
            digest.replacen(':', "-", 1)
        )
    ])
    .is_err());
    assert_eq!(tree(&lookaside), Vec::<String>::new());
    assert_eq!(tree(&tmp), Vec::<String>::new());
    assert_eq!(leftovers(&tmp), Vec::<String>::new());
}
