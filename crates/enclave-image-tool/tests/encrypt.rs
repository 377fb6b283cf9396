//! `enclave-image encrypt` against the real parts: a private docker-registry, an image
//! made with umoci, real skopeo reading the result, an independent decryption in Python
//! (`cryptography`) following images.md §1–§2, and the library's own decryption. The
//! expected digests are `sha256sum` / `gzip -dc | sha256sum` of the original layers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use test_support::{free_port, leftovers, skopeo, Auth, Registry};

const KID: &str = "kbs:///default/image-kek/app";
const PACKET: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";
const PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";

/// Opens the packet and the layer with Python's `cryptography` (AES-GCM, AES-CTR, HMAC)
/// as images.md §1.3–§1.4 and §2.1 describe them, checking the shapes on the way.
/// Prints kid, PLBCO digest, sha256 of the decrypted blob, sha256 of it gunzipped.
const PY_DECRYPT: &str = r#"
import sys, json, base64, hashlib, hmac, gzip
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
kek = bytes.fromhex(sys.argv[1])
p = json.loads(base64.b64decode(sys.argv[2], validate=True))
assert sorted(p) == ["iv", "kid", "wrap_type", "wrapped_data"], p
assert p["wrap_type"] == "A256GCM", p
iv = base64.b64decode(p["iv"], validate=True)
assert len(iv) == 12, len(iv)
opts = json.loads(AESGCM(kek).decrypt(iv, base64.b64decode(p["wrapped_data"]), None))
assert sorted(opts) == ["cipheroptions", "digest", "symkey"], sorted(opts)
assert sorted(opts["cipheroptions"]) == ["nonce"], opts["cipheroptions"]
key = base64.b64decode(opts["symkey"], validate=True)
nonce = base64.b64decode(opts["cipheroptions"]["nonce"], validate=True)
assert len(key) == 32 and len(nonce) == 16
pub = json.loads(base64.b64decode(sys.argv[3], validate=True))
assert sorted(pub) == ["cipher", "cipheroptions", "hmac"], pub
assert pub["cipher"] == "AES_256_CTR_HMAC_SHA256" and pub["cipheroptions"] == {}, pub
blob = open(sys.argv[4], "rb").read()
mac = hmac.new(key, blob, hashlib.sha256).digest()
assert hmac.compare_digest(mac, base64.b64decode(pub["hmac"], validate=True)), "HMAC"
d = Cipher(algorithms.AES(key), modes.CTR(nonce)).decryptor()
plain = d.update(blob) + d.finalize()
assert len(plain) == len(blob)
print(p["kid"])
print(opts["digest"])
print("sha256:" + hashlib.sha256(plain).hexdigest())
print("sha256:" + hashlib.sha256(gzip.decompress(plain)).hexdigest())
"#;

fn python_ok() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 with cryptography is not installed");
    }
    ok
}

fn python_decrypt(kek: &[u8], packet: &str, pubopts: &str, blob: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", PY_DECRYPT, &hex::encode(kek), packet, pubopts])
        .arg(blob)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn encrypted_registry_image_reads_with_skopeo_and_decrypts_to_the_original_layers() {
    if !have(&["skopeo", "umoci", "docker-registry", "gzip", "sha256sum"]) || !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, layers) = two_layer_image(d);
    push_plain(&src, &format!("{host}/test/app:v1"));
    let plain_manifest = raw_manifest(&format!("{host}/test/app:v1"));

    let kek_file = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_file.to_str().unwrap()],
    ));
    let kek = std::fs::read(&kek_file).unwrap();
    assert_eq!(kek.len(), 32);
    let out = ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek_file.to_str().unwrap(),
            "--insecure-registry",
            &host,
            &format!("{host}/test/app:v1"),
            &format!("{host}/test/app:enc"),
        ],
    ));
    // The digest printed is the one skopeo reads back.
    let enc_ref = format!("{host}/test/app:enc");
    let digest = skopeo_digest(&enc_ref);
    assert!(
        out.trim()
            .ends_with(&format!("@{digest}: 2 layers encrypted for {KID}")),
        "{out}"
    );

    // skopeo reads the manifest; media types and annotations as images.md §1.1–§1.2, §2.1.
    let m = raw_manifest(&enc_ref);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["config"], plain_manifest["config"], "config untouched");
    let enc_layers = m["layers"].as_array().unwrap();
    assert_eq!(enc_layers.len(), 2);
    for l in enc_layers {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        );
        let keys: Vec<&str> = l["annotations"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, [PACKET, PUBOPTS]);
    }

    // skopeo copies it (encrypted, unchanged: it has no key) into a layout.
    let out_layout = d.join("out");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{enc_ref}"),
        &format!("oci:{}:enc", out_layout.display()),
    ])
    .unwrap();

    // Python opens each packet and layer: the original blob and diff_id come back.
    for (l, orig) in enc_layers.iter().zip(&layers) {
        let d = l["digest"].as_str().unwrap();
        let blob = out_layout.join("blobs/sha256").join(&d["sha256:".len()..]);
        assert_eq!(sha256sum(&blob), d, "skopeo's copy is the registry's blob");
        assert_ne!(d, orig.digest);
        assert_eq!(
            std::fs::metadata(&blob).unwrap().len(),
            std::fs::metadata(&orig.path).unwrap().len(),
            "CTR adds no bytes"
        );
        let a = &l["annotations"];
        let got = python_decrypt(
            &kek,
            a[PACKET].as_str().unwrap(),
            a[PUBOPTS].as_str().unwrap(),
            &blob,
        );
        assert_eq!(
            got,
            [KID, &orig.digest, &orig.digest, &orig.diff_id].map(String::from)
        );
    }

    // The library (what the enclave runs) decrypts and unpacks it, diff_ids checked.
    let root = d.join("root");
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    library_unpack(&host, &enc_ref, &kek, &diff_ids, &root);
    let marker = std::fs::read_to_string(root.join("secret/marker.txt")).unwrap();
    assert!(marker.contains(MARKER));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "second layer\n"
    );

    // No staging directory (plaintext layers) is left behind.
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

#[test]
fn layout_to_layout_in_the_same_layout_and_skopeo_pushes_the_result() {
    if !have(&["skopeo", "umoci", "docker-registry", "gzip", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let (src, layers) = two_layer_image(d);
    let kek_file = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_file.to_str().unwrap()],
    ));
    let enc = format!("oci:{}/img:enc", d.display());
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek_file.to_str().unwrap(),
            &src,
            &enc,
        ],
    ));
    // Both tags are in the layout; skopeo reads both.
    let index: Value =
        serde_json::from_slice(&std::fs::read(d.join("img/index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["v1", "enc"]);
    skopeo(&["inspect", &src]).unwrap();
    let m: Value = serde_json::from_str(&skopeo(&["inspect", "--raw", &enc]).unwrap()).unwrap();
    for l in m["layers"].as_array().unwrap() {
        let blob = d
            .join("img/blobs/sha256")
            .join(&l["digest"].as_str().unwrap()[7..]);
        assert_eq!(sha256sum(&blob), l["digest"].as_str().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&blob).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
    }
    // A second run to the same tag replaces the index entry (new keys, new digest).
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek_file.to_str().unwrap(),
            &src,
            &enc,
        ],
    ));
    let index: Value =
        serde_json::from_slice(&std::fs::read(d.join("img/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // Real skopeo pushes what we wrote; the library then decrypts it from the registry.
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    push_plain(&enc, &format!("{host}/test/app:fromlayout"));
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    library_unpack(
        &host,
        &format!("{host}/test/app:fromlayout"),
        &std::fs::read(&kek_file).unwrap(),
        &diff_ids,
        &d.join("root"),
    );
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

#[test]
fn bad_input_fails_in_one_line_and_writes_nothing() {
    if !have(&["skopeo", "umoci", "docker-registry"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    push_plain(&src, &format!("{host}/test/app:v1"));
    let kek_file = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_file.to_str().unwrap()],
    ));
    let kek = kek_file.to_str().unwrap();
    let short = d.join("short.bin");
    std::fs::write(&short, [1u8; 16]).unwrap();
    let new_layout = d.join("never");
    let never = format!("oci:{}:enc", new_layout.display());
    let down = format!("127.0.0.1:{}", free_port().unwrap());
    let dst_reg = format!("{host}/test/app:bad");

    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--kek-file".into(),
                kek.into(),
                "--insecure-registry".into(),
                host.clone(),
                format!("{host}/test/none:v1"),
                never.clone(),
            ],
            format!("{host}/test/none: manifest v1: HTTP 404"),
        ),
        (
            vec![
                "--kek-file".into(),
                short.display().to_string(),
                src.clone(),
                never.clone(),
            ],
            format!(
                "KEK file {}: 16 bytes, a KEK is 32 raw bytes",
                short.display()
            ),
        ),
        (
            vec![
                "--kek-file".into(),
                d.join("nokek").display().to_string(),
                src.clone(),
                never.clone(),
            ],
            format!("{}: No such file or directory", d.join("nokek").display()),
        ),
        (
            vec![
                "--kek-file".into(),
                kek.into(),
                "--insecure-registry".into(),
                down.clone(),
                format!("{down}/test/app:v1"),
                never.clone(),
            ],
            format!("{down}/test/app: manifest v1:"),
        ),
        (
            // The plain image is fine; the destination registry is down.
            vec![
                "--kek-file".into(),
                kek.into(),
                "--insecure-registry".into(),
                down.clone(),
                src.clone(),
                format!("{down}/test/app:enc"),
            ],
            format!("write docker://{down}/test/app:enc: {down}/test/app: blob sha256:"),
        ),
        (
            vec![
                "--kek-file".into(),
                kek.into(),
                src.clone(),
                format!("{host}/test/app@sha256:{}", "0".repeat(64)),
            ],
            "name a tag, not a digest".into(),
        ),
        (
            vec![
                "--kek-file".into(),
                kek.into(),
                format!("oci:{}/img:nosuchtag", d.display()),
                never.clone(),
            ],
            "no manifest tagged \"nosuchtag\" (tags: v1)".into(),
        ),
    ];
    for (args, want) in cases {
        let mut full: Vec<&str> = vec!["encrypt", "--kek-id", KID];
        full.extend(args.iter().map(String::as_str));
        let started = Instant::now();
        let line = one_line_error(&tool_in(&tmp, &full));
        assert!(line.contains(&want), "{args:?}: {line}\nwanted: {want}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            !new_layout.exists(),
            "{args:?} created {}",
            new_layout.display()
        );
    }
    // A kid that is not a KBS resource is refused before anything is read.
    let line = one_line_error(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            "/default/image-kek/x",
            "--kek-file",
            kek,
            &src,
            &never,
        ],
    ));
    assert!(
        line.contains("not a kbs:///<repo>/<type>/<tag> URI"),
        "{line}"
    );
    // --kek-file and --kbs are exclusive; one of them is needed (clap's usage errors).
    let out = tool_in(&tmp, &["encrypt", "--kek-id", KID, &src, &never]);
    assert_eq!(out.status.code(), Some(2));

    // An encrypted image is not encrypted twice; nothing is written.
    let enc_layout = format!("oci:{}/img:enc", d.display());
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek,
            &src,
            &enc_layout,
        ],
    ));
    let line = one_line_error(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek,
            &enc_layout,
            &never,
        ],
    ));
    assert!(
        line.contains(
            "is already encrypted (application/vnd.oci.image.layer.v1.tar+gzip+encrypted)"
        ),
        "{line}"
    );
    assert!(!new_layout.exists());

    // The failed registry destination got no tag.
    assert!(skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{dst_reg}")
    ])
    .is_err());
    // No staging directory, no process left.
    assert_eq!(tree(&tmp), Vec::<String>::new());
    assert_eq!(leftovers(&tmp), Vec::<String>::new());
    assert_eq!(
        std::fs::read(&kek_file).unwrap().len(),
        32,
        "the KEK file is untouched"
    );
}

/// A plain-HTTP registry named without `--insecure-registry`, as a new user first tries
/// it, pulled from and pushed to: one line with skopeo's own words for it (read from
/// skopeo, not from us) and the flag to use, at once (a plain answer is not retried),
/// and nothing written.
#[test]
fn a_plain_http_registry_without_the_flag_names_the_flag() {
    if !have(&["skopeo", "umoci", "docker-registry"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    push_plain(&src, &format!("{host}/test/app:v1"));
    let skopeo_says = reg.skopeo_https_refusal().unwrap();
    assert!(!skopeo_says.is_empty());
    let kek_file = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_file.to_str().unwrap()],
    ));
    let kek = kek_file.to_str().unwrap();
    let never = d.join("never");
    let never_ref = format!("oci:{}:v1", never.display());
    let flag = format!("--insecure-registry {host}");
    let cases: Vec<Vec<String>> = vec![
        // Pulled from.
        vec![
            "push".into(),
            format!("{host}/test/app:v1"),
            never_ref.clone(),
        ],
        // Pushed to (after the layers were encrypted from a layout).
        vec![
            "encrypt".into(),
            "--kek-id".into(),
            KID.into(),
            "--kek-file".into(),
            kek.into(),
            src.clone(),
            format!("{host}/test/app:enc"),
        ],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = one_line_error(&tool_in(&tmp, &args));
        assert!(line.contains(&format!("{host}/test/app: ")), "{line}");
        assert!(line.contains(&skopeo_says), "{line}\nskopeo: {skopeo_says}");
        assert!(line.ends_with(&flag), "{line}");
        assert!(!line.contains("attempts"), "retried: {line}");
        assert!(!never.exists());
    }
    assert_eq!(
        raw_manifest(&format!("{host}/test/app:v1"))["layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/test/app:enc")
    ])
    .is_err());
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

/// Counts in the output read as English: one layer is "1 layer".
#[test]
fn a_one_layer_image_is_one_layer() {
    if !have(&["skopeo", "umoci"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let src = test_support::ImageBuilder::new()
        .file("etc/one", b"one\n")
        .build(&d.join("one"), "v1")
        .unwrap();
    let raw = skopeo(&["inspect", "--raw", &src]).unwrap();
    let layers: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(layers["layers"].as_array().unwrap().len(), 1);
    let kek_file = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_file.to_str().unwrap()],
    ));
    let out = ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek_file.to_str().unwrap(),
            &src,
            &format!("oci:{}:enc", d.join("one").display()),
        ],
    ));
    assert!(
        out.trim_end()
            .ends_with(&format!(": 1 layer encrypted for {KID}")),
        "{out}"
    );
}
