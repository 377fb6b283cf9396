//! Cosign key-based signatures made with openssl (images.md §3.4, §6.6): a P-256 key from
//! `openssl ecparam`, the payload signed with `openssl dgst -sha256 -sign` (DER), checked
//! with `openssl dgst -verify` first, then by `Policy::evaluate`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use enclave_image::policy::{
    cosign_signature_layers, cosign_signature_tag, CosignSignature, Keys, Policy, Signatures,
    COSIGN_LAYER_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION,
};

const REPO: &str = "127.0.0.1:5000/test/app";

fn digest() -> String {
    format!("sha256:{}", "d4".repeat(32))
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pub_pem: PathBuf,
    other_pub_pem: PathBuf,
}

fn openssl(root: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(root)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl {args:?}: {e}"))
        .status
        .success()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for (k, p) in [("k.pem", "pub.pem"), ("k2.pem", "pub2.pem")] {
            assert!(openssl(
                &root,
                &[
                    "ecparam",
                    "-genkey",
                    "-name",
                    "prime256v1",
                    "-noout",
                    "-out",
                    k
                ]
            ));
            assert!(openssl(&root, &["ec", "-in", k, "-pubout", "-out", p]));
        }
        Fixture {
            pub_pem: root.join("pub.pem"),
            other_pub_pem: root.join("pub2.pem"),
            root,
            _dir: dir,
        }
    })
}

fn payload(manifest_digest: &str, reference: &str) -> Vec<u8> {
    // The shape cosign writes (sigstore/cosign:specs/SIGNATURE_SPEC.md).
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{manifest_digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// Signs `payload` with openssl and checks the result with openssl too.
fn sign(payload: &[u8], key: &str, name: &str) -> CosignSignature {
    let f = fixture();
    let p = format!("{name}.json");
    std::fs::write(f.root.join(&p), payload).unwrap();
    let s = format!("{name}.der");
    assert!(openssl(
        &f.root,
        &["dgst", "-sha256", "-sign", key, "-out", &s, &p]
    ));
    let pubk = if key == "k.pem" {
        "pub.pem"
    } else {
        "pub2.pem"
    };
    assert!(openssl(
        &f.root,
        &["dgst", "-sha256", "-verify", pubk, "-signature", &s, &p]
    ));
    let der = std::fs::read(f.root.join(&s)).unwrap();
    CosignSignature {
        payload: payload.to_vec(),
        signature: base64::engine::general_purpose::STANDARD.encode(der),
    }
}

fn sigstore_policy(key: &Path, identity: Option<&str>) -> Policy {
    let id = identity
        .map(|i| format!(r#","signedIdentity":{i}"#))
        .unwrap_or_default();
    let json = format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{REPO}":[{{"type":"sigstoreSigned","keyPath":"{}"{id}}}]}}}}}}"#,
        key.display()
    );
    Policy::from_bytes(json.as_bytes()).unwrap()
}

fn eval(p: &Policy, image: &str, sigs: &[CosignSignature]) -> Result<(), String> {
    p.evaluate(
        image,
        &digest(),
        &Signatures {
            simple: &[],
            cosign: sigs,
        },
        &Keys::local_files(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

const MATCH_REPO: &str = r#"{"type":"matchRepository"}"#;

#[test]
fn openssl_signatures_verify() {
    let f = fixture();
    let p = sigstore_policy(&f.pub_pem, Some(MATCH_REPO));
    // ECDSA signatures are randomized; several cover both high and low S values.
    for i in 0..8 {
        let s = sign(&payload(&digest(), REPO), "k.pem", &format!("ok{i}"));
        eval(&p, &format!("{REPO}:v1"), &[s]).unwrap();
    }
    let s = sign(&payload(&digest(), REPO), "k.pem", "exact");
    let exact = sigstore_policy(
        &f.pub_pem,
        Some(&format!(
            r#"{{"type":"exactRepository","dockerRepository":"{REPO}"}}"#
        )),
    );
    eval(&exact, &format!("{REPO}:v1"), std::slice::from_ref(&s)).unwrap();
    eval(&exact, &format!("{REPO}@{}", digest()), &[s]).unwrap();
}

#[test]
fn tampered_payload_other_key_and_bad_signature_are_refused() {
    let f = fixture();
    let p = sigstore_policy(&f.pub_pem, Some(MATCH_REPO));
    let image = format!("{REPO}:v1");
    let mut s = sign(&payload(&digest(), REPO), "k.pem", "tamper");
    // Still valid JSON, one byte changed after signing.
    let pos = s.payload.len() - 40;
    s.payload[pos] = if s.payload[pos] == b'4' { b'5' } else { b'4' };
    let e = eval(&p, &image, &[s]).unwrap_err();
    assert!(
        e.starts_with("cryptographic signature verification failed"),
        "{e}"
    );

    let s = sign(&payload(&digest(), REPO), "k2.pem", "other");
    let e = eval(&p, &image, std::slice::from_ref(&s)).unwrap_err();
    assert!(
        e.starts_with("cryptographic signature verification failed"),
        "{e}"
    );
    // The other key's policy accepts it.
    eval(
        &sigstore_policy(&f.other_pub_pem, Some(MATCH_REPO)),
        &image,
        &[s],
    )
    .unwrap();

    let mut s = sign(&payload(&digest(), REPO), "k.pem", "garbled");
    s.signature = "not base64!".into();
    assert!(eval(&p, &image, &[s]).unwrap_err().contains("not base64"));
    assert!(eval(&p, &image, &[])
        .unwrap_err()
        .starts_with("A signature was required, but no signature exists"));
}

#[test]
fn wrong_digest_and_identity_are_refused() {
    let f = fixture();
    let image = format!("{REPO}:v1");
    let other = format!("sha256:{}", "ee".repeat(32));
    let s = sign(&payload(&other, REPO), "k.pem", "wrongdigest");
    let e = eval(&sigstore_policy(&f.pub_pem, Some(MATCH_REPO)), &image, &[s]).unwrap_err();
    assert!(e.starts_with("Signature for docker digest"), "{e}");

    let s = sign(
        &payload(&digest(), "127.0.0.1:5000/test/else"),
        "k.pem",
        "otherrepo",
    );
    let e = eval(&sigstore_policy(&f.pub_pem, Some(MATCH_REPO)), &image, &[s]).unwrap_err();
    assert!(
        e.starts_with("Signature for identity 127.0.0.1:5000/test/else is not accepted"),
        "{e}"
    );

    // cosign signs a repository only: the default identity (matchRepoDigestOrExact)
    // cannot accept it for a tag pull, as in containers/image (images.md §3.1).
    let s = sign(&payload(&digest(), REPO), "k.pem", "default");
    let e = eval(&sigstore_policy(&f.pub_pem, None), &image, &[s]).unwrap_err();
    assert!(
        e.starts_with(&format!("Signature for identity {REPO} is not accepted")),
        "{e}"
    );

    // Nor for a digest pull: containers/image's prmMatchRepoDigestOrExact refuses a
    // signature naming a repository alone (`reference.IsNameOnly`) before looking at
    // the image (signature/policy_reference_match.go); matchRepository accepts it.
    let by_digest = format!("{REPO}@{}", digest());
    let s = sign(&payload(&digest(), REPO), "k.pem", "default-digest");
    let e = eval(
        &sigstore_policy(&f.pub_pem, None),
        &by_digest,
        std::slice::from_ref(&s),
    )
    .unwrap_err();
    assert!(
        e.starts_with(&format!("Signature for identity {REPO} is not accepted")),
        "{e}"
    );
    eval(
        &sigstore_policy(&f.pub_pem, Some(MATCH_REPO)),
        &by_digest,
        &[s],
    )
    .unwrap();

    // A simple-signing payload type is not a cosign payload.
    let wrong_type = String::from_utf8(payload(&digest(), REPO))
        .unwrap()
        .replace(
            "cosign container image signature",
            "atomic container signature",
        );
    let s = sign(wrong_type.as_bytes(), "k.pem", "wrongtype");
    let e = eval(&sigstore_policy(&f.pub_pem, Some(MATCH_REPO)), &image, &[s]).unwrap_err();
    assert!(e.starts_with("Unrecognized signature type"), "{e}");
}

#[test]
fn keys_from_data_and_kbs() {
    let f = fixture();
    let s = sign(&payload(&digest(), REPO), "k.pem", "kbs");
    let sigs = [s];
    let image = format!("{REPO}:v1");
    let pem = std::fs::read(&f.pub_pem).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
    for keys in [
        format!(r#""keyData":"{b64}""#),
        format!(r#""keyDatas":["{b64}"]"#),
    ] {
        let json = format!(
            r#"{{"default":[{{"type":"sigstoreSigned",{keys},"signedIdentity":{MATCH_REPO}}}]}}"#
        );
        let p = Policy::from_bytes(json.as_bytes()).unwrap();
        p.evaluate(
            &image,
            &digest(),
            &Signatures {
                simple: &[],
                cosign: &sigs,
            },
            &Keys::fetched_only(),
        )
        .unwrap();
    }
    let json = format!(
        r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"kbs:///default/keys/cosign","signedIdentity":{MATCH_REPO}}}]}}"#
    );
    let p = Policy::from_bytes(json.as_bytes()).unwrap();
    let mut keys = Keys::fetched_only();
    keys.insert("kbs:///default/keys/cosign", pem);
    p.evaluate(
        &image,
        &digest(),
        &Signatures {
            simple: &[],
            cosign: &sigs,
        },
        &keys,
    )
    .unwrap();
}

#[test]
fn signature_manifest_layers_and_tag() {
    // The manifest shape of images.md §3.4 / §6.6.
    let d = digest();
    let tag = cosign_signature_tag(&d).unwrap();
    assert_eq!(tag, format!("sha256-{}.sig", "d4".repeat(32)));
    let blob = format!("sha256:{}", "11".repeat(32));
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{blob}","size":2}},
            "layers":[{{"mediaType":"{COSIGN_LAYER_MEDIA_TYPE}","digest":"{blob}","size":230,
                        "annotations":{{"{COSIGN_SIGNATURE_ANNOTATION}":"MEUCIQ=="}}}}]}}"#
    );
    let l = cosign_signature_layers(m.as_bytes()).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].digest.as_str(), l[0].size, l[0].signature.as_str()),
        (blob.as_str(), 230, "MEUCIQ==")
    );
}

/// cosign signs the digest a tag resolves to, an index's for a multi-arch image; image-rs
/// accepts such a signature for a platform manifest chosen from that index
/// (confidential-containers/guest-components:image-rs/src/signature/policy/cosign/mod.rs,
/// `manifest_list_digest`). Only through `evaluate_in_index`, naming that index.
#[test]
fn a_signature_over_the_index_digest_is_accepted_for_its_platform_manifest() {
    let f = fixture();
    let p = sigstore_policy(&f.pub_pem, Some(MATCH_REPO));
    let image = format!("{REPO}:v1");
    let index = format!("sha256:{}", "1d".repeat(32));
    let s = sign(&payload(&index, REPO), "k.pem", "index");
    let sigs = Signatures {
        simple: &[],
        cosign: std::slice::from_ref(&s),
    };
    let keys = Keys::local_files();
    let in_index = |i: Option<&str>| {
        p.evaluate_in_index(&image, &digest(), i, &sigs, &keys)
            .map(|v| v.verified[0].requirement)
            .map_err(|e| e.to_string())
    };
    assert_eq!(in_index(Some(&index)), Ok("sigstoreSigned"));
    // Not from an index, or from another one: the signature covers neither digest.
    let e = in_index(None).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "Signature for docker digest \"{index}\" does not match (manifest {})",
            digest()
        )),
        "{e}"
    );
    let other = format!("sha256:{}", "2e".repeat(32));
    let e = in_index(Some(&other)).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "Signature for docker digest \"{index}\" does not match (manifest {}, index {other})",
            digest()
        )),
        "{e}"
    );
    assert!(eval(&p, &image, &[s]).is_err());
}
