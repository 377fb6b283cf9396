//! ocicrypt against the real tools: images made with umoci, encrypted by skopeo 1.9.3
//! (`--encryption-key jwe:…`), decrypted by our code; the expected digests are the
//! original layers' (and what `skopeo copy --decryption-key` restores). The CTR
//! counter and HMAC are checked against `openssl enc` / `openssl dgst`.
//! Each test skips with one line when a tool is missing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use enclave_image::ocicrypt::{
    decrypted_media_type, encrypt_layer, is_encrypted, kids_needed, wrap_packet, DecryptReader,
    Kek, Keys, LayerAnnotations, PrivateKey, PrivateOptions, PublicOptions,
    ANNOTATION_PROVIDER_ATTESTATION_AGENT, ANNOTATION_PUBOPTS,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn have(tools: &[&str]) -> bool {
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: {t} is not installed");
            return false;
        }
    }
    true
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A two-layer image `img:v1` made with umoci, and key pairs made with openssl.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Option<Bed> {
        if !have(&["skopeo", "umoci", "openssl"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(d, "umoci", &["init", "--layout", "img"]);
        run(d, "umoci", &["new", "--image", "img:v1"]);
        run(
            d,
            "umoci",
            &["unpack", "--rootless", "--image", "img:v1", "b"],
        );
        let text: String = (0..20_000).map(|i| format!("{i} confidential\n")).collect();
        std::fs::write(d.join("b/rootfs/hello.txt"), &text).unwrap();
        // --refresh-bundle: without it the next repack finds no change.
        run(
            d,
            "umoci",
            &["repack", "--refresh-bundle", "--image", "img:v1", "b"],
        );
        std::fs::create_dir(d.join("b/rootfs/etc")).unwrap();
        std::fs::write(d.join("b/rootfs/etc/motd"), "second layer\n").unwrap();
        run(d, "umoci", &["repack", "--image", "img:v1", "b"]);
        run(
            d,
            "umoci",
            &["config", "--image", "img:v1", "--config.cmd", "/bin/sh"],
        );
        run(d, "openssl", &["genrsa", "-out", "rsa.pem", "2048"]);
        run(
            d,
            "openssl",
            &["rsa", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"],
        );
        run(
            d,
            "openssl",
            &["rsa", "-in", "rsa.pem", "-traditional", "-out", "rsa1.pem"],
        );
        run(
            d,
            "openssl",
            &[
                "rsa", "-in", "rsa.pem", "-outform", "DER", "-out", "rsa.der",
            ],
        );
        run(d, "openssl", &["genrsa", "-out", "other.pem", "2048"]);
        for (name, curve) in [
            ("p256", "prime256v1"),
            ("p384", "secp384r1"),
            ("p521", "secp521r1"),
        ] {
            run(
                d,
                "openssl",
                &[
                    "ecparam",
                    "-name",
                    curve,
                    "-genkey",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
            run(
                d,
                "openssl",
                &[
                    "ec",
                    "-in",
                    &format!("{name}.pem"),
                    "-pubout",
                    "-out",
                    &format!("{name}.pub"),
                ],
            );
        }
        run(
            d,
            "openssl",
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "p256.pem",
                "-out",
                "p256-pk8.pem",
            ],
        );
        Some(Bed { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, name: &str) -> PrivateKey {
        PrivateKey::from_pem_or_der(&std::fs::read(self.path(name)).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn keys(&self, names: &[&str]) -> Keys {
        let mut keys = Keys::default();
        for n in names {
            keys.add_private_key(self.key(n));
        }
        keys
    }

    /// `skopeo copy` of img:v1 into layout `to`, with extra flags.
    fn skopeo(&self, from: &str, to: &str, flags: &[&str]) {
        let mut args = vec!["--insecure-policy", "copy"];
        args.extend_from_slice(flags);
        let (from, to) = (format!("oci:{from}"), format!("oci:{to}"));
        args.extend_from_slice(&[&from, &to]);
        run(self.dir.path(), "skopeo", &args);
    }

    /// The layer descriptors of `layout:v1`.
    fn layers(&self, layout: &str) -> Vec<Value> {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.path(layout).join("index.json")).unwrap())
                .unwrap();
        let manifest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let m: Value = serde_json::from_slice(&self.blob(layout, &manifest)).unwrap();
        m["layers"].as_array().unwrap().clone()
    }

    fn blob_path(&self, layout: &str, digest: &str) -> PathBuf {
        self.path(layout)
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
    }

    fn blob(&self, layout: &str, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(layout, digest)).unwrap()
    }
}

/// (layout name, public keys, private key sets)
type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a [&'a str]]);

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn annotations(desc: &Value) -> LayerAnnotations {
    let map = desc["annotations"].as_object().cloned().unwrap_or_default();
    LayerAnnotations::from_pairs(
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
    )
}

/// Decrypts every layer of `layout` with `keys`; returns the plaintext digests.
fn decrypt_all(bed: &Bed, layout: &str, keys: &Keys) -> Vec<String> {
    bed.layers(layout)
        .iter()
        .map(|desc| {
            let digest = desc["digest"].as_str().unwrap();
            let blob = std::fs::File::open(bed.blob_path(layout, digest)).unwrap();
            let mut r = annotations(desc)
                .open(digest, blob, keys)
                .unwrap_or_else(|e| panic!("{layout}: {e}"));
            let mut plain = Vec::new();
            r.read_to_end(&mut plain).unwrap();
            assert!(r.verified());
            digest_of(&plain)
        })
        .collect()
}

fn original_digests(bed: &Bed) -> Vec<String> {
    bed.layers("img")
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn skopeo_jwe_layers_decrypt_to_the_original_digests() {
    let Some(bed) = Bed::new() else { return };
    let originals = original_digests(&bed);
    assert_eq!(originals.len(), 2);
    let plain_types: Vec<String> = bed
        .layers("img")
        .iter()
        .map(|d| d["mediaType"].as_str().unwrap().to_string())
        .collect();
    // (name, public keys to encrypt to, private key sets that must each decrypt)
    let cases: &[Case] = &[
        (
            "rsa",
            &["rsa.pub"],
            &[
                &["rsa.pem"],
                &["rsa1.pem"],
                &["rsa.der"],
                &["p256.pem", "rsa.pem"],
            ],
        ),
        ("p256", &["p256.pub"], &[&["p256.pem"], &["p256-pk8.pem"]]),
        ("p384", &["p384.pub"], &[&["p384.pem"]]),
        ("p521", &["p521.pub"], &[&["p521.pem"]]),
        (
            "two",
            &["rsa.pub", "p256.pub"],
            &[&["rsa.pem"], &["p256.pem"]],
        ),
    ];
    for (name, pubs, privs) in cases {
        let layout = format!("enc-{name}");
        let mut flags = Vec::new();
        let enc_keys: Vec<String> = pubs.iter().map(|p| format!("jwe:{p}")).collect();
        for k in &enc_keys {
            flags.extend_from_slice(&["--encryption-key", k.as_str()]);
        }
        bed.skopeo("img:v1", &format!("{layout}:v1"), &flags);
        let layers = bed.layers(&layout);
        for (desc, plain_type) in layers.iter().zip(&plain_types) {
            let mt = desc["mediaType"].as_str().unwrap();
            assert!(is_encrypted(mt), "{mt}");
            assert_eq!(decrypted_media_type(mt), Some(plain_type.as_str()));
            // The shape we mean to test: flattened for one recipient, general for two.
            let jwe = desc["annotations"]["org.opencontainers.image.enc.keys.jwe"]
                .as_str()
                .unwrap();
            let jwe: Value = serde_json::from_slice(&STANDARD.decode(jwe).unwrap()).unwrap();
            assert_eq!(jwe.get("recipients").is_some(), pubs.len() > 1, "{jwe}");
        }
        for keyset in privs.iter() {
            let got = decrypt_all(&bed, &layout, &bed.keys(keyset));
            assert_eq!(got, originals, "{name} with {keyset:?}");
        }
    }
    // What skopeo restores with the second recipient's key is what we decrypted.
    // (PKCS#8: skopeo reads only the first PEM block, and `ecparam -genkey` writes
    // EC PARAMETERS first.)
    bed.skopeo(
        "enc-two:v1",
        "dec:v1",
        &["--decryption-key", "p256-pk8.pem"],
    );
    assert_eq!(original_digests(&bed), originals);
    let restored: Vec<String> = bed
        .layers("dec")
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(restored, originals);
}

#[test]
fn wrong_and_missing_keys_are_named() {
    let Some(bed) = Bed::new() else { return };
    bed.skopeo("img:v1", "enc:v1", &["--encryption-key", "jwe:rsa.pub"]);
    let desc = bed.layers("enc")[0].clone();
    let digest = desc["digest"].as_str().unwrap().to_string();
    let layer = annotations(&desc);
    let err = |keys: &Keys| layer.unwrap(&digest, keys).unwrap_err().to_string();

    let e = err(&Keys::default());
    assert!(e.starts_with(&format!("layer {digest}: missing private key needed for decryption: jwe[0] recipient[0] (alg RSA-OAEP): no private key configured")), "{e}");
    let e = err(&bed.keys(&["p256.pem"]));
    assert!(
        e.contains("missing private key needed for decryption")
            && e.contains("(alg RSA-OAEP): no RSA private key configured"),
        "{e}"
    );
    let e = err(&bed.keys(&["other.pem"]));
    assert!(
        e.contains(&format!(
            "layer {digest}: no suitable key unwrapper found or none of the private keys could be used for decryption"
        )),
        "{e}"
    );
    assert!(e.contains("wrong key: RSA-OAEP decryption failed"), "{e}");
    assert!(!e.contains('\n'));

    // An EC recipient names its curve; a P-384 key is not tried on it.
    bed.skopeo("img:v1", "enc-ec:v1", &["--encryption-key", "jwe:p256.pub"]);
    let desc = bed.layers("enc-ec")[0].clone();
    let e = annotations(&desc)
        .unwrap("L", &bed.keys(&["p384.pem"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(alg ECDH-ES+A256KW, epk P-256): no P-256 private key configured"),
        "{e}"
    );

    // Without pubopts: ocicrypt's words, and the layer.
    let mut map = desc["annotations"].as_object().unwrap().clone();
    map.remove(ANNOTATION_PUBOPTS);
    let layer = LayerAnnotations::from_pairs(
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
    );
    let e = layer
        .unwrap("sha256:x", &bed.keys(&["p256.pem"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("layer sha256:x: HMAC is not provided for decryption process"),
        "{e}"
    );

    // A plain layer is not mistaken for an encrypted one.
    let e = annotations(&bed.layers("img")[0])
        .unwrap("sha256:p", &Keys::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not encrypted"), "{e}");
}

/// §6.4: a skopeo JWE layer re-wrapped into CoCo's annotation packet.
#[test]
fn coco_packet_layers_need_the_right_kek() {
    let Some(bed) = Bed::new() else { return };
    let originals = original_digests(&bed);
    bed.skopeo("img:v1", "enc:v1", &["--encryption-key", "jwe:rsa.pub"]);
    let rsa = bed.keys(&["rsa.pem"]);
    let kek = [0x42u8; 32];
    let kid = "kbs:///default/key/test";
    let packet_layers: Vec<(String, LayerAnnotations)> = bed
        .layers("enc")
        .iter()
        .map(|desc| {
            let digest = desc["digest"].as_str().unwrap().to_string();
            let (private, _) = annotations(desc).unwrap(&digest, &rsa).unwrap();
            let value = wrap_packet(&Kek::new(&kek).unwrap(), kid, &private).unwrap();
            // The packet is v1 JSON with the four fields.
            let p: Value = serde_json::from_slice(&STANDARD.decode(&value).unwrap()).unwrap();
            assert_eq!(p["kid"], kid);
            assert_eq!(p["wrap_type"], "A256GCM");
            assert_eq!(
                STANDARD.decode(p["iv"].as_str().unwrap()).unwrap().len(),
                12
            );
            let pubopts = desc["annotations"][ANNOTATION_PUBOPTS].as_str().unwrap();
            let layer = LayerAnnotations::from_pairs([
                (ANNOTATION_PROVIDER_ATTESTATION_AGENT, value.as_str()),
                (ANNOTATION_PUBOPTS, pubopts),
            ]);
            (digest, layer)
        })
        .collect();
    assert_eq!(kids_needed(packet_layers.iter().map(|(_, l)| l)), [kid]);

    let decrypt = |keys: &Keys| -> Result<Vec<String>, String> {
        packet_layers
            .iter()
            .map(|(digest, layer)| {
                let blob = std::fs::File::open(bed.blob_path("enc", digest)).unwrap();
                let mut r = layer.open(digest, blob, keys).map_err(|e| e.to_string())?;
                let mut plain = Vec::new();
                r.read_to_end(&mut plain).map_err(|e| e.to_string())?;
                Ok(digest_of(&plain))
            })
            .collect()
    };
    let mut keys = Keys::default();
    // The KBS address in a kid is ignored: it names the same resource.
    keys.add_kek("kbs://127.0.0.1:8080/default/key/test", &kek)
        .unwrap();
    assert_eq!(decrypt(&keys).unwrap(), originals);

    let first = &packet_layers[0].0;
    let mut wrong = Keys::default();
    wrong.add_kek(kid, &[0x43u8; 32]).unwrap();
    let e = decrypt(&wrong).unwrap_err();
    assert_eq!(e, format!("layer {first}: no suitable key unwrapper found or none of the private keys could be used for decryption: provider.attestation-agent[0] (kid {kid}, A256GCM): wrong KEK: A256GCM tag mismatch"));
    let mut other = Keys::default();
    other.add_kek("kbs:///default/key/other", &kek).unwrap();
    let e = decrypt(&other).unwrap_err();
    assert_eq!(e, format!("layer {first}: missing private key needed for decryption: provider.attestation-agent[0] (kid {kid}, A256GCM): KEK for {kid} not provided"));
    assert!(Keys::default()
        .add_kek(kid, &[1u8; 16])
        .unwrap_err()
        .to_string()
        .contains("not a 32-byte KEK"));
}

#[test]
fn a_flipped_ciphertext_byte_fails_the_hmac_at_eof() {
    let Some(bed) = Bed::new() else { return };
    bed.skopeo("img:v1", "enc:v1", &["--encryption-key", "jwe:rsa.pub"]);
    let desc = bed.layers("enc")[0].clone();
    let digest = desc["digest"].as_str().unwrap();
    let mut blob = bed.blob("enc", digest);
    let mid = blob.len() / 2;
    blob[mid] ^= 0x01;
    let mut r = annotations(&desc)
        .open(digest, &blob[..], &bed.keys(&["rsa.pem"]))
        .unwrap();
    let mut plain = Vec::new();
    let err = r.read_to_end(&mut plain).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        format!("layer {digest}: HMAC mismatch: the encrypted layer was altered or was not made with this key")
    );
    // Everything was read before the verdict, which came at EOF.
    assert_eq!(plain.len(), blob.len());
    assert!(!r.verified());
}

fn openssl_ctr(dir: &Path, key: &[u8], iv: &[u8], input: &[u8], decrypt: bool) -> Vec<u8> {
    std::fs::write(dir.join("in"), input).unwrap();
    let (k, i) = (hex::encode(key), hex::encode(iv));
    let mut args = vec![
        "enc",
        "-aes-256-ctr",
        "-K",
        &k,
        "-iv",
        &i,
        "-in",
        "in",
        "-out",
        "out",
    ];
    if decrypt {
        args.push("-d");
    }
    run(dir, "openssl", &args);
    std::fs::read(dir.join("out")).unwrap()
}

fn openssl_hmac(dir: &Path, key: &[u8], input: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("mac-in"), input).unwrap();
    let macopt = format!("hexkey:{}", hex::encode(key));
    run(
        dir,
        "openssl",
        &[
            "dgst", "-sha256", "-mac", "HMAC", "-macopt", &macopt, "-binary", "mac-in",
        ],
    )
}

/// The nonce is one 128-bit big-endian counter: across the low 64 bits' wrap and the
/// whole block's, our stream equals OpenSSL's AES-256-CTR.
#[test]
fn ctr_counter_and_hmac_match_openssl() {
    if !have(&["openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key: Vec<u8> = (0u8..32).collect();
    let plain: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    for nonce in [
        "0011223344556677fffffffffffffffe",
        "00112233445566ffffffffffffffffff",
        "ffffffffffffffffffffffffffffffff",
    ] {
        let nonce = hex::decode(nonce).unwrap();
        let ct = openssl_ctr(dir.path(), &key, &nonce, &plain, false);
        let hmac = openssl_hmac(dir.path(), &key, &ct);
        let private = PrivateOptions::from_json(
            format!(
                r#"{{"symkey":"{}","digest":"sha256:x","cipheroptions":{{"nonce":"{}"}}}}"#,
                STANDARD.encode(&key),
                STANDARD.encode(&nonce)
            )
            .as_bytes(),
        )
        .unwrap();
        let public = PublicOptions::from_annotation(&STANDARD.encode(format!(
            r#"{{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"{}","cipheroptions":{{}}}}"#,
            STANDARD.encode(&hmac)
        )))
        .unwrap();
        let mut out = Vec::new();
        DecryptReader::new(&ct[..], &private, &public, "kat")
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain, "nonce {}", hex::encode(&nonce));
    }

    // Our encryption, decrypted and MACed by OpenSSL with the key and nonce we chose.
    let mut ct = Vec::new();
    let enc = encrypt_layer(&plain[..], &mut ct).unwrap();
    let json: Value = serde_json::from_slice(&enc.private.to_json()).unwrap();
    let key = STANDARD.decode(json["symkey"].as_str().unwrap()).unwrap();
    let nonce = STANDARD
        .decode(json["cipheroptions"]["nonce"].as_str().unwrap())
        .unwrap();
    assert_eq!(openssl_ctr(dir.path(), &key, &nonce, &ct, true), plain);
    assert_eq!(openssl_hmac(dir.path(), &key, &ct), enc.public.hmac());
    assert_eq!(enc.private.digest(), digest_of(&plain));
    assert_eq!(enc.digest, digest_of(&ct));
}

/// Seals (`seal`) or opens (`open`) an annotation packet with Python's `cryptography`,
/// an implementation independent of ours (the reference's §1.4 [TB] cross-check).
const PY_PACKET: &str = r#"
import base64, json, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
op, kek, kid, wrap = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
data = sys.stdin.buffer.read()
if op == "seal":
    if wrap == "A256GCM":
        iv = os.urandom(12); sealed = AESGCM(kek).encrypt(iv, data, None)
    else:
        iv = os.urandom(16); e = Cipher(algorithms.AES(kek), modes.CTR(iv)).encryptor()
        sealed = e.update(data) + e.finalize()
    p = {"kid": kid, "wrapped_data": base64.b64encode(sealed).decode(),
         "iv": base64.b64encode(iv).decode(), "wrap_type": wrap}
    sys.stdout.write(base64.b64encode(json.dumps(p).encode()).decode())
else:
    p = json.loads(base64.b64decode(data))
    assert p["kid"] == kid and p["wrap_type"] == "A256GCM", p
    plain = AESGCM(kek).decrypt(base64.b64decode(p["iv"]), base64.b64decode(p["wrapped_data"]), None)
    sys.stdout.buffer.write(plain)
"#;

fn python_packet(op: &str, kek: &[u8], kid: &str, wrap: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", PY_PACKET, op, &hex::encode(kek), kid, wrap])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 {op} failed");
    out.stdout
}

#[test]
fn packets_interoperate_with_an_independent_aes_implementation() {
    let Some(bed) = Bed::new() else { return };
    let python = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        eprintln!("skipped: python3 with cryptography is not installed");
        return;
    }
    let originals = original_digests(&bed);
    bed.skopeo("img:v1", "enc:v1", &["--encryption-key", "jwe:rsa.pub"]);
    let (kek, kid) = ([0x5au8; 32], "kbs:///tenant/image-kek/1");
    let mut keys = Keys::default();
    keys.add_kek(kid, &kek).unwrap();
    for (desc, original) in bed.layers("enc").iter().zip(&originals) {
        let digest = desc["digest"].as_str().unwrap();
        let (private, _) = annotations(desc)
            .unwrap(digest, &bed.keys(&["rsa.pem"]))
            .unwrap();
        let pubopts = desc["annotations"][ANNOTATION_PUBOPTS].as_str().unwrap();
        // Packets sealed by Python, opened by us, decrypt the layer.
        // A256CTR, which guest-components also opens, is refused: it is not
        // authenticated, and the packet comes from the host.
        for wrap in ["A256GCM", "A256CTR"] {
            let value = python_packet("seal", &kek, kid, wrap, &private.to_json());
            let value = String::from_utf8(value).unwrap();
            let layer = LayerAnnotations::from_pairs([
                (ANNOTATION_PROVIDER_ATTESTATION_AGENT, value.as_str()),
                (ANNOTATION_PUBOPTS, pubopts),
            ]);
            let blob = std::fs::File::open(bed.blob_path("enc", digest)).unwrap();
            let opened = layer.open(digest, blob, &keys);
            if wrap == "A256CTR" {
                let err = opened.err().expect("A256CTR refused").to_string();
                assert!(
                    err.contains("A256CTR") && err.contains("not authenticated"),
                    "{err}"
                );
                continue;
            }
            let mut plain = Vec::new();
            opened.unwrap().read_to_end(&mut plain).unwrap();
            assert_eq!(&digest_of(&plain), original, "{wrap}");
        }
        // Our packet, opened by Python, holds the same options JSON.
        let ours = wrap_packet(&Kek::new(&kek).unwrap(), kid, &private).unwrap();
        let opened = python_packet("open", &kek, kid, "A256GCM", ours.as_bytes());
        assert_eq!(opened, private.to_json().as_slice());
    }
}
