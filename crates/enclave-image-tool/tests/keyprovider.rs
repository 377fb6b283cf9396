//! `enclave-image keyprovider` fed the JSON documents of ocicrypt's key-provider
//! protocol written from images.md §1.7 (Go's shapes: `[]byte` as std-base64 strings,
//! `nil` as `null`), with packets sealed and opened by Python's `cryptography` (§2.1),
//! and a layer key it unwraps from an `encrypt`ed image checked by `openssl enc` /
//! `openssl dgst` against the original layer's `sha256sum`.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

const KID: &str = "kbs:///default/image-kek/app";

const PY: &str = r#"
import sys, os, json, base64
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
op, kek = sys.argv[1], bytes.fromhex(sys.argv[2])
data = sys.stdin.buffer.read()
if op == "seal":
    iv = os.urandom(12)
    p = {"kid": sys.argv[3], "wrapped_data": base64.b64encode(AESGCM(kek).encrypt(iv, data, None)).decode(),
         "iv": base64.b64encode(iv).decode(), "wrap_type": "A256GCM"}
    sys.stdout.write(json.dumps(p))
else:
    p = json.loads(data)
    assert sorted(p) == ["iv", "kid", "wrap_type", "wrapped_data"], p
    assert p["wrap_type"] == "A256GCM" and len(base64.b64decode(p["iv"])) == 12, p
    sys.stdout.write(p["kid"] + "\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(AESGCM(kek).decrypt(base64.b64decode(p["iv"]), base64.b64decode(p["wrapped_data"]), None))
"#;

fn python(op: &str, kek: &[u8], kid: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", PY, op, &hex::encode(kek), kid])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ready() -> bool {
    have(&["python3"])
        && Command::new("python3")
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// A PLBCO as ocicrypt writes it (§1.3): 32-byte symkey, digest, 16-byte nonce.
fn plbco(key: &[u8; 32], nonce: &[u8; 16], digest: &str) -> Vec<u8> {
    format!(
        r#"{{"symkey":"{}","digest":"{digest}","cipheroptions":{{"nonce":"{}"}}}}"#,
        STANDARD.encode(key),
        STANDARD.encode(nonce)
    )
    .into_bytes()
}

/// §1.7's keywrap request, Go's shape.
fn wrap_request(params: &str, optsdata: &[u8]) -> String {
    format!(
        r#"{{"op":"keywrap","keywrapparams":{{"ec":{{"Parameters":{{"attestation-agent":["{}"]}},"DecryptConfig":{{"Parameters":{{}}}}}},"optsdata":"{}"}},"keyunwrapparams":{{"dc":null,"annotation":null}}}}"#,
        STANDARD.encode(params),
        STANDARD.encode(optsdata)
    )
}

/// §1.7's keyunwrap request, Go's shape; `params` None gives empty Parameters.
fn unwrap_request(params: Option<&str>, annotation_b64: &str) -> String {
    let p = params
        .map(|p| format!(r#""attestation-agent":["{}"]"#, STANDARD.encode(p)))
        .unwrap_or_default();
    format!(
        r#"{{"op":"keyunwrap","keywrapparams":{{"ec":null,"optsdata":null}},"keyunwrapparams":{{"dc":{{"Parameters":{{{p}}}}},"annotation":"{annotation_b64}"}}}}"#
    )
}

/// Runs the provider; returns the answer's single result field as bytes.
fn provider(tmp: &Path, extra: &[&str], request: &str, result: &str, field: &str) -> Vec<u8> {
    let mut args = vec!["keyprovider"];
    args.extend(extra);
    let out = tool_stdin(tmp, &args, Some(request.as_bytes()));
    let stdout = ok(&out);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), [result], "{stdout}");
    // Bytes come as a number array (serde Vec<u8>, which Go also accepts).
    v[result][field]
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn keywrap_and_keyunwrap_interoperate_with_an_independent_aes_gcm() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let kek_path = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_path.to_str().unwrap()],
    ));
    let kek = std::fs::read(&kek_path).unwrap();
    let opts = plbco(
        &[7u8; 32],
        &[9u8; 16],
        &format!("sha256:{}", "d8".repeat(32)),
    );
    let params = format!(
        "keyid={KID}::keypath={}::algorithm=A256GCM",
        kek_path.display()
    );

    // keywrap: the annotation bytes are the packet JSON, which Python opens.
    let packet = provider(
        &tmp,
        &[],
        &wrap_request(&params, &opts),
        "keywrapresults",
        "annotation",
    );
    let opened = python("open", &kek, KID, &packet);
    let (kid, plain) = opened.split_at(opened.iter().position(|&b| b == b'\n').unwrap() + 1);
    assert_eq!(kid, format!("{KID}\n").as_bytes());
    assert_eq!(
        plain,
        opts.as_slice(),
        "the PLBCO bytes are sealed as given"
    );

    // keyunwrap of a Python-made packet; ocicrypt hands the annotation as base64(packet).
    let sealed = python("seal", &kek, KID, &opts);
    let keypath = format!("keypath={}", kek_path.display());
    let got = provider(
        &tmp,
        &[],
        &unwrap_request(Some(&keypath), &STANDARD.encode(&sealed)),
        "keyunwrapresults",
        "optsdata",
    );
    assert_eq!(got, opts);
    // ... with the KEK given on the command line (ocicrypt.conf args) instead.
    let kek_arg = format!("{KID}={}", kek_path.display());
    let got = provider(
        &tmp,
        &["--kek", &kek_arg],
        &unwrap_request(None, &STANDARD.encode(&sealed)),
        "keyunwrapresults",
        "optsdata",
    );
    assert_eq!(got, opts);
    // ... and our own packet, round trip.
    let got = provider(
        &tmp,
        &["--kek", &kek_arg],
        &unwrap_request(None, &STANDARD.encode(&packet)),
        "keyunwrapresults",
        "optsdata",
    );
    assert_eq!(got, opts);

    // ocicrypt-rs may send number arrays; `Enabled` (no parameters) uses the --kek KEK.
    let arrays = format!(
        r#"{{"op":"keywrap","keywrapparams":{{"ec":{{"Parameters":{{"attestation-agent":["{}"]}}}},"optsdata":{}}}}}"#,
        STANDARD.encode("Enabled"),
        serde_json::to_string(&opts).unwrap()
    );
    let packet = provider(
        &tmp,
        &["--kek", &kek_arg],
        &arrays,
        "keywrapresults",
        "annotation",
    );
    let opened = python("open", &kek, KID, &packet);
    assert!(opened.ends_with(&opts));
}

#[test]
fn a_layer_key_from_an_encrypted_image_decrypts_the_layer_with_openssl() {
    if !ready() || !have(&["skopeo", "umoci", "openssl", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let (src, layers) = two_layer_image(d);
    let kek_path = d.join("kek.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_path.to_str().unwrap()],
    ));
    let enc = format!("oci:{}/img:enc", d.display());
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kek-file",
            kek_path.to_str().unwrap(),
            &src,
            &enc,
        ],
    ));
    let m: Value =
        serde_json::from_str(&test_support::skopeo(&["inspect", "--raw", &enc]).unwrap()).unwrap();
    let kek_arg = format!("{KID}={}", kek_path.display());
    for (l, orig) in m["layers"].as_array().unwrap().iter().zip(&layers) {
        let ann = &l["annotations"];
        // What ocicrypt passes: the annotation's value as it is (base64 of the packet).
        let a = ann["org.opencontainers.image.enc.keys.provider.attestation-agent"]
            .as_str()
            .unwrap();
        let opts = provider(
            &tmp,
            &["--kek", &kek_arg],
            &unwrap_request(None, a),
            "keyunwrapresults",
            "optsdata",
        );
        let opts: Value = serde_json::from_slice(&opts).unwrap();
        assert_eq!(opts["digest"], orig.digest.as_str());
        let key = STANDARD.decode(opts["symkey"].as_str().unwrap()).unwrap();
        let nonce = STANDARD
            .decode(opts["cipheroptions"]["nonce"].as_str().unwrap())
            .unwrap();
        let blob = d
            .join("img/blobs/sha256")
            .join(&l["digest"].as_str().unwrap()[7..]);
        let plain = d.join("plain");
        let out = Command::new("openssl")
            .args([
                "enc",
                "-d",
                "-aes-256-ctr",
                "-K",
                &hex::encode(&key),
                "-iv",
                &hex::encode(&nonce),
                "-in",
            ])
            .arg(&blob)
            .arg("-out")
            .arg(&plain)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256sum(&plain), orig.digest);
        assert_eq!(gunzip_sha256sum(&plain), orig.diff_id);
        // The HMAC in pubopts is openssl's HMAC-SHA256 of the ciphertext.
        let pubopts: Value = serde_json::from_slice(
            &STANDARD
                .decode(
                    ann["org.opencontainers.image.enc.pubopts"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap(),
        )
        .unwrap();
        let out = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-mac",
                "HMAC",
                "-macopt",
                &format!("hexkey:{}", hex::encode(&key)),
                "-binary",
            ])
            .arg(&blob)
            .output()
            .unwrap();
        assert_eq!(
            out.stdout,
            STANDARD.decode(pubopts["hmac"].as_str().unwrap()).unwrap()
        );
        std::fs::remove_file(&plain).unwrap();
    }
}

#[test]
fn bad_requests_and_wrong_keys_fail_in_one_line() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let kek_path = d.join("kek.bin");
    let wrong_path = d.join("wrong.bin");
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", kek_path.to_str().unwrap()],
    ));
    ok(&tool_in(
        &tmp,
        &["keygen", "--kek", wrong_path.to_str().unwrap()],
    ));
    std::fs::write(d.join("short.bin"), [0u8; 31]).unwrap();
    let kek = std::fs::read(&kek_path).unwrap();
    let opts = plbco(&[1u8; 32], &[2u8; 16], "sha256:00");
    let sealed = STANDARD.encode(python("seal", &kek, KID, &opts));
    let wrong = format!("keypath={}", wrong_path.display());
    let other_kid = format!("kbs:///default/image-kek/other={}", kek_path.display());
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (
            vec![],
            unwrap_request(Some(&wrong), &sealed),
            "wrong KEK: A256GCM tag mismatch",
        ),
        (
            vec!["--kek", &other_kid],
            unwrap_request(None, &sealed),
            "no KEK for kbs:///default/image-kek/app",
        ),
        (
            vec![],
            wrap_request(&format!("keypath={}", kek_path.display()), &opts),
            "keyid=kbs:///<repo>/<type>/<tag> is required",
        ),
        (
            vec![],
            wrap_request(
                &format!("keyid=/default/x::keypath={}", kek_path.display()),
                &opts,
            ),
            "is not a kbs:///<repo>/<type>/<tag> resource URI",
        ),
        (
            vec![],
            wrap_request(
                &format!("keyid={KID}::keypath={}", d.join("short.bin").display()),
                &opts,
            ),
            "31 bytes, a KEK is 32 raw bytes",
        ),
        (
            vec![],
            wrap_request(
                &format!(
                    "keyid={KID}::keypath={}::algorithm=A128GCM",
                    kek_path.display()
                ),
                &opts,
            ),
            "algorithm \"A128GCM\" (only A256GCM)",
        ),
        (
            vec![],
            r#"{"op":"rotate","keywrapparams":{"ec":null,"optsdata":null}}"#.into(),
            "op \"rotate\" (keywrap or keyunwrap)",
        ),
        (vec![], "{\"op\":".into(), "not JSON of ocicrypt's protocol"),
        (
            vec![],
            unwrap_request(Some(&wrong), &STANDARD.encode("not a packet")),
            "not an annotation packet with a kid",
        ),
        (
            vec!["--kek", "nokid"],
            unwrap_request(None, &sealed),
            "--kek \"nokid\": want KID=FILE",
        ),
    ];
    for (extra, request, want) in cases {
        let mut args = vec!["keyprovider"];
        args.extend(extra.iter().copied());
        let line = one_line_error(&tool_stdin(&tmp, &args, Some(request.as_bytes())));
        assert!(line.contains(want), "{request}: {line}\nwanted: {want}");
    }
    assert_eq!(tree(&tmp), Vec::<String>::new());
}
