//! Simple signing against real tools: a GPG key made by gpg, an image made by umoci and
//! signed by skopeo (`--sign-by`, dir: transport), and images.md §6.5's table of results
//! reproduced through `Policy::evaluate`. Expected texts are containers/image's (§6.5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use enclave_image::policy::{
    lookaside_location, read_file_lookaside, verify_message, Keyring, Keys, Policy, PolicyError,
    Signatures,
};
use sha2::Digest as _;

const SIGNED: &str = "127.0.0.1:5000/test/app:signed";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fpr: String,
    /// `gpg --export` (binary) of the signing key, and of an unrelated key.
    pubring: PathBuf,
    other_pubring: PathBuf,
    armored: Vec<u8>,
    digest: String,
    /// skopeo's signature claiming `SIGNED`.
    sig: Vec<u8>,
    /// The same manifest signed by skopeo with the other key.
    sig_other_key: Vec<u8>,
    /// gpg --sign of a payload with an unknown critical member.
    sig_extra_critical: Vec<u8>,
    /// gpg --sign of a valid payload, signature valid for one day.
    sig_expiring: Vec<u8>,
    /// skopeo signature by a key that expires after one day.
    sig_expiring_key: Vec<u8>,
    expiring_key_pubring: PathBuf,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make deps installs gpg, skopeo, umoci)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]);
    c
}

fn gen_key(home: &Path, uid: &str, expire: &str) -> String {
    run(gpg(home).args(["--quick-gen-key", uid, "rsa2048", "sign", expire]));
    let list =
        String::from_utf8(run(gpg(home).args(["--with-colons", "--list-keys", uid]))).unwrap();
    list.lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .unwrap()
}

fn export(home: &Path, fpr: &str, to: &Path) {
    std::fs::write(to, run(gpg(home).args(["--export", fpr]))).unwrap();
}

fn skopeo_sign(root: &Path, home: &Path, fpr: &str, out: &str) -> Vec<u8> {
    run(Command::new("skopeo")
        .current_dir(root)
        .env("GNUPGHOME", home)
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--sign-by",
            fpr,
            "--sign-identity",
            SIGNED,
            "oci:img:v1",
            &format!("dir:{out}"),
        ]));
    std::fs::read(root.join(out).join("signature-1")).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let home = root.join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let fpr = gen_key(&home, "Test <t@example.test>", "never");
        let other = gen_key(&home, "Other <o@example.test>", "never");
        let expiring = gen_key(&home, "Short <s@example.test>", "1d");
        let (pubring, other_pubring, expiring_key_pubring) =
            (root.join("pub.gpg"), root.join("other.gpg"), root.join("short.gpg"));
        export(&home, &fpr, &pubring);
        export(&home, &other, &other_pubring);
        export(&home, &expiring, &expiring_key_pubring);
        let armored = run(gpg(&home).args(["--armor", "--export", &fpr]));

        // images.md §6.2: a small image made by umoci.
        for args in [
            &["init", "--layout", "img"][..],
            &["new", "--image", "img:v1"],
            &["config", "--image", "img:v1", "--config.cmd", "/bin/sh", "--os", "linux", "--architecture", "amd64"],
        ] {
            run(Command::new("umoci").current_dir(&root).args(args));
        }
        let sig = skopeo_sign(&root, &home, &fpr, "out");
        let manifest = std::fs::read(root.join("out/manifest.json")).unwrap();
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        let sig_other_key = skopeo_sign(&root, &home, &other, "out-other");
        let sig_expiring_key = skopeo_sign(&root, &home, &expiring, "out-short");

        let sign_payload = |name: &str, json: String, extra: &[&str]| {
            let p = root.join(format!("{name}.json"));
            std::fs::write(&p, json).unwrap();
            let out = root.join(format!("{name}.sig"));
            run(gpg(&home).args(extra).args(["-u", &fpr, "--sign", "-o"]).arg(&out).arg(&p));
            std::fs::read(out).unwrap()
        };
        let sig_extra_critical = sign_payload(
            "extra",
            format!(
                r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{digest}"}},"identity":{{"docker-reference":"{SIGNED}"}},"extra":"x"}},"optional":{{}}}}"#
            ),
            &[],
        );
        let sig_expiring = sign_payload(
            "expiring",
            format!(
                r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{digest}"}},"identity":{{"docker-reference":"{SIGNED}"}}}},"optional":{{"creator":"gpg"}}}}"#
            ),
            &["--default-sig-expire", "1d"],
        );
        // Nothing more needs gpg: stop the agent it started in our GNUPGHOME.
        let _ = Command::new("gpgconf").env("GNUPGHOME", &home).args(["--kill", "all"]).status();
        Fixture {
            _dir: dir, root, fpr, pubring, other_pubring, armored, digest, sig, sig_other_key,
            sig_extra_critical, sig_expiring, sig_expiring_key, expiring_key_pubring,
        }
    })
}

fn policy(req: &str) -> Policy {
    let json = format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"127.0.0.1:5000/test/app":[{req}]}}}}}}"#
    );
    Policy::from_bytes(json.as_bytes()).unwrap()
}

fn signed_by(key: &Path, identity: Option<&str>) -> Policy {
    let id = identity
        .map(|i| format!(r#","signedIdentity":{{"type":"{i}"}}"#))
        .unwrap_or_default();
    policy(&format!(
        r#"{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"{id}}}"#,
        key.display()
    ))
}

fn eval(
    p: &Policy,
    image: &str,
    sigs: &[Vec<u8>],
) -> Result<enclave_image::policy::Verdict, String> {
    let f = fixture();
    p.evaluate(
        image,
        &f.digest,
        &Signatures {
            simple: sigs,
            cosign: &[],
        },
        &Keys::local_files(),
    )
    .map_err(|e| e.to_string())
}

// images.md §6.5, row 1: `:signed` accepted.
#[test]
fn skopeo_signature_is_accepted_for_its_identity() {
    let f = fixture();
    let v = eval(
        &signed_by(&f.pubring, None),
        SIGNED,
        std::slice::from_ref(&f.sig),
    )
    .unwrap();
    assert_eq!(v.scope, "docker:127.0.0.1:5000/test/app");
    assert_eq!(v.verified.len(), 1);
    assert_eq!(v.verified[0].signer, f.fpr);
    assert_eq!(v.verified[0].docker_reference, SIGNED);
}

// Row 2: `:v1` (same digest) refused by the default identity; row 3: matchRepository.
#[test]
fn other_tag_needs_match_repository() {
    let f = fixture();
    let e = eval(
        &signed_by(&f.pubring, None),
        "127.0.0.1:5000/test/app:v1",
        std::slice::from_ref(&f.sig),
    )
    .unwrap_err();
    assert!(
        e.starts_with("Signature for identity 127.0.0.1:5000/test/app:signed is not accepted"),
        "{e}"
    );
    assert!(
        e.contains("127.0.0.1:5000/test/app:v1") && e.contains("signedBy"),
        "{e}"
    );
    let p = signed_by(&f.pubring, Some("matchRepository"));
    assert!(eval(
        &p,
        "127.0.0.1:5000/test/app:v1",
        std::slice::from_ref(&f.sig)
    )
    .is_ok());
    let e = eval(
        &signed_by(&f.pubring, Some("matchExact")),
        "127.0.0.1:5000/test/app:v1",
        std::slice::from_ref(&f.sig),
    );
    assert!(e.is_err());
}

// Row 4: pulled by digest, default identity.
#[test]
fn digest_pull_is_accepted() {
    let f = fixture();
    let image = format!("127.0.0.1:5000/test/app@{}", f.digest);
    assert!(eval(
        &signed_by(&f.pubring, None),
        &image,
        std::slice::from_ref(&f.sig)
    )
    .is_ok());
    // matchExact refuses digest pulls of a tag-signed image (containers-policy.json(5)).
    assert!(eval(
        &signed_by(&f.pubring, Some("matchExact")),
        &image,
        std::slice::from_ref(&f.sig)
    )
    .is_err());
}

// Row 5: no signature.
#[test]
fn unsigned_image_is_refused() {
    let f = fixture();
    let e = eval(
        &signed_by(&f.pubring, None),
        "127.0.0.1:5000/test/app:enc",
        &[],
    )
    .unwrap_err();
    assert!(
        e.starts_with("A signature was required, but no signature exists"),
        "{e}"
    );
}

// Row 6: another key.
#[test]
fn signature_by_another_key_is_refused() {
    let f = fixture();
    let e = eval(
        &signed_by(&f.other_pubring, None),
        SIGNED,
        std::slice::from_ref(&f.sig),
    )
    .unwrap_err();
    assert!(e.starts_with("Invalid GPG signature"), "{e}");
    let e = eval(
        &signed_by(&f.pubring, None),
        SIGNED,
        std::slice::from_ref(&f.sig_other_key),
    )
    .unwrap_err();
    assert!(e.starts_with("Invalid GPG signature"), "{e}");
    // One good signature among bad ones is enough.
    let sigs = [f.sig_other_key.clone(), f.sig.clone()];
    assert!(eval(&signed_by(&f.pubring, None), SIGNED, &sigs).is_ok());
}

#[test]
fn tampered_signature_bytes_are_refused() {
    let f = fixture();
    let ring = Keyring::from_bytes(&std::fs::read(&f.pubring).unwrap()).unwrap();
    assert!(verify_message(&f.sig, &ring, SystemTime::now()).is_ok());
    // Flip a byte at several places: compressed framing, payload, signature MPI.
    for pos in [3, f.sig.len() / 2, f.sig.len() - 10] {
        let mut bad = f.sig.clone();
        bad[pos] ^= 0x01;
        let e = verify_message(&bad, &ring, SystemTime::now());
        assert!(e.is_err(), "flipped byte {pos} accepted");
        let e = eval(&signed_by(&f.pubring, None), SIGNED, &[bad]).unwrap_err();
        assert!(
            e.starts_with("Invalid GPG signature") || e.starts_with("Invalid signature payload"),
            "{e}"
        );
    }
}

#[test]
fn wrong_manifest_digest_is_refused() {
    let f = fixture();
    let p = signed_by(&f.pubring, None);
    let other = format!("sha256:{}", "0".repeat(64));
    let e = p
        .evaluate(
            SIGNED,
            &other,
            &Signatures {
                simple: std::slice::from_ref(&f.sig),
                cosign: &[],
            },
            &Keys::local_files(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("Signature for docker digest"), "{e}");
}

#[test]
fn unknown_critical_member_is_refused_after_verification() {
    let f = fixture();
    let ring = Keyring::from_bytes(&std::fs::read(&f.pubring).unwrap()).unwrap();
    // The gpg signature itself is good...
    assert!(verify_message(&f.sig_extra_critical, &ring, SystemTime::now()).is_ok());
    // ...but the payload is not acceptable.
    let e = eval(
        &signed_by(&f.pubring, None),
        SIGNED,
        std::slice::from_ref(&f.sig_extra_critical),
    )
    .unwrap_err();
    assert!(e.contains(r#"Unknown key "extra""#), "{e}");
}

#[test]
fn expired_signature_and_expired_key_are_refused() {
    let f = fixture();
    let later = SystemTime::now() + Duration::from_secs(3 * 24 * 3600);
    let keys = Keys::local_files();
    let sigs = [f.sig_expiring.clone()];
    let p = signed_by(&f.pubring, None);
    let s = Signatures {
        simple: &sigs,
        cosign: &[],
    };
    assert!(p.evaluate(SIGNED, &f.digest, &s, &keys).is_ok());
    let e = p
        .evaluate_at(SIGNED, &f.digest, &s, &keys, later)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("Invalid GPG signature") && e.contains("expired"),
        "{e}"
    );

    let sigs = [f.sig_expiring_key.clone()];
    let s = Signatures {
        simple: &sigs,
        cosign: &[],
    };
    let p = signed_by(&f.expiring_key_pubring, None);
    assert!(p.evaluate(SIGNED, &f.digest, &s, &keys).is_ok());
    let e = p
        .evaluate_at(SIGNED, &f.digest, &s, &keys, later)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn keys_from_key_data_and_kbs_resources() {
    let f = fixture();
    let s = Signatures {
        simple: std::slice::from_ref(&f.sig),
        cosign: &[],
    };
    // keyData: base64 of the armored export.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&f.armored);
    let p = policy(&format!(
        r#"{{"type":"signedBy","keyType":"GPGKeys","keyData":"{b64}"}}"#
    ));
    assert!(p
        .evaluate(SIGNED, &f.digest, &s, &Keys::fetched_only())
        .is_ok());
    // keyPath naming a KBS resource, served from fetched bytes.
    let p =
        policy(r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"kbs:///default/keys/gpg"}"#);
    assert_eq!(p.key_paths(), ["kbs:///default/keys/gpg"]);
    let e = p
        .evaluate(SIGNED, &f.digest, &s, &Keys::fetched_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("kbs:///default/keys/gpg was not fetched"), "{e}");
    let mut keys = Keys::fetched_only();
    keys.insert(
        "kbs:///default/keys/gpg",
        std::fs::read(&f.pubring).unwrap(),
    );
    assert!(p.evaluate(SIGNED, &f.digest, &s, &keys).is_ok());
    // A local path is not read when only fetched keys are allowed.
    let p = signed_by(&f.pubring, None);
    assert!(p
        .evaluate(SIGNED, &f.digest, &s, &Keys::fetched_only())
        .is_err());
}

#[test]
fn requirements_are_anded_and_accept_anything_is_not_a_signature() {
    let f = fixture();
    let any = policy(r#"{"type":"insecureAcceptAnything"}"#);
    let v = any
        .evaluate(
            SIGNED,
            &f.digest,
            &Signatures::default(),
            &Keys::fetched_only(),
        )
        .unwrap();
    assert!(!v.is_signed());
    let both = policy(&format!(
        r#"{{"type":"insecureAcceptAnything"}},{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}"#,
        f.pubring.display()
    ));
    let e = both
        .evaluate(
            SIGNED,
            &f.digest,
            &Signatures::default(),
            &Keys::local_files(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            PolicyError::Rejected {
                index: 2,
                requirement: "signedBy",
                ..
            }
        ),
        "{e}"
    );
    assert!(eval(&both, SIGNED, std::slice::from_ref(&f.sig))
        .unwrap()
        .is_signed());
    // Another repository falls to `default`: reject.
    let e = eval(
        &both,
        "127.0.0.1:5000/test/other:signed",
        std::slice::from_ref(&f.sig),
    )
    .unwrap_err();
    assert!(
        e.starts_with(
            "Running image docker://127.0.0.1:5000/test/other:signed is rejected by policy."
        ),
        "{e}"
    );
}

// images.md §3.3 [TB]: base file:///<dir> + 127.0.0.1:5000/test/app →
// <dir>/test/app@sha256=<hex>/signature-1.
#[test]
fn file_lookaside_store() {
    let f = fixture();
    let store = f.root.join("sigstore");
    let hexd = f.digest.strip_prefix("sha256:").unwrap();
    let d = store.join(format!("test/app@sha256={hexd}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("signature-1"), &f.sig).unwrap();
    std::fs::write(d.join("signature-2"), &f.sig_other_key).unwrap();
    std::fs::write(d.join("signature-4"), b"after a gap: never read").unwrap();
    let base = format!("file://{}", store.display());
    assert_eq!(
        lookaside_location(&base, SIGNED, &f.digest, 2).unwrap(),
        format!("{base}/test/app@sha256={hexd}/signature-2")
    );
    let sigs = read_file_lookaside(&base, SIGNED, &f.digest).unwrap();
    assert_eq!(sigs, [f.sig.clone(), f.sig_other_key.clone()]);
    assert!(eval(&signed_by(&f.pubring, None), SIGNED, &sigs).is_ok());
    let none = read_file_lookaside(&base, "127.0.0.1:5000/test/nothing:v1", &f.digest).unwrap();
    assert!(none.is_empty());
    assert!(read_file_lookaside("https://example.test/s", SIGNED, &f.digest).is_err());
}
