//! Keys and signatures from a real peer, OpenSSL: its P-256 (PKCS#8 and SEC1) and
//! Ed25519 keys load, our signatures verify with `openssl`, and signatures `openssl`
//! makes over a DSSE PAE verify here (DER ECDSA as `openssl dgst -sign` writes it, raw
//! Ed25519 from `pkeyutl -rawin`).

use std::path::Path;
use std::process::Command;

use reference_values::dsse::pae;
use reference_values::{SigningKey, TrustedKey};

fn openssl(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn openssl_keys_and_signatures_interoperate() {
    if !openssl(&["version"]) {
        println!("skipped: openssl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let message = pae("application/vnd.in-toto+json", b"{\"_type\":\"x\"}");
    let pae_path = p(d, "pae.bin");
    std::fs::write(&pae_path, &message).unwrap();
    for (algo, sign_args) in [
        ("p256", vec!["dgst", "-sha256", "-sign"]),
        ("ed25519", vec!["pkeyutl", "-sign", "-rawin", "-inkey"]),
    ] {
        let key = p(d, &format!("{algo}.key"));
        let public = p(d, &format!("{algo}.pub"));
        let made = match algo {
            "p256" => openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ]),
            _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", &key]),
        };
        assert!(made, "{algo}: genpkey");
        assert!(openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]));
        let ours = SigningKey::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
        let theirs = TrustedKey::from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
        assert_eq!(ours.public(), theirs, "{algo}: the same public key");

        // openssl signs the PAE; we verify.
        let sig = p(d, &format!("{algo}.sig"));
        let mut args = sign_args.clone();
        args.extend([key.as_str(), "-out", sig.as_str()]);
        if algo == "p256" {
            args.push(&pae_path);
        } else {
            args.extend(["-in", pae_path.as_str()]);
        }
        assert!(openssl(&args), "{algo}: openssl sign {args:?}");
        let bytes = std::fs::read(&sig).unwrap();
        assert!(
            theirs.verifies(&message, &bytes),
            "{algo}: openssl's signature"
        );
        assert!(!theirs.verifies(b"other", &bytes));

        // We sign; openssl verifies.
        std::fs::write(&sig, ours.sign(&message)).unwrap();
        let verified = match algo {
            "p256" => openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                &public,
                "-signature",
                &sig,
                &pae_path,
            ]),
            _ => openssl(&[
                "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", &public, "-sigfile", &sig,
                "-in", &pae_path,
            ]),
        };
        assert!(verified, "{algo}: openssl verifies our signature");
    }
    // SEC1 ("EC PRIVATE KEY"), as `openssl ecparam -genkey` writes it.
    let sec1 = p(d, "sec1.key");
    assert!(openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &sec1
    ]));
    SigningKey::from_pem(&std::fs::read_to_string(&sec1).unwrap()).unwrap();
}
