//! Shared by the tool's tests: the `enclave-image` binary run for real, a two-layer image
//! made with umoci (test-support's ImageBuilder, then one more layer), and the expected
//! layer digests computed by `sha256sum` and `gzip -dc | sha256sum`, never by our code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use enclave_image::ocicrypt::{decrypted_media_type, Keys, LayerAnnotations};
use enclave_image::registry::{ImageSource, Platform, Puller, RegistryConfig, RetryPolicy};
use enclave_image::unpack::{unpack_layer, UnpackOptions};

use test_support::{run, ImageBuilder};

/// The marker file's content: found after decryption, absent from every ciphertext.
pub const MARKER: &str = "confidential marker 7f3a9c";

/// Whether all `tools` are installed; prints one `skipped:` line if not.
pub fn have(tools: &[&str]) -> bool {
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

/// Runs `enclave-image args` with `TMPDIR=tmp` (so that leftovers can be looked for).
pub fn tool_in(tmp: &Path, args: &[&str]) -> Output {
    tool_stdin(tmp, args, None)
}

/// As [`tool_in`], with `stdin` fed to the command.
pub fn tool_stdin(tmp: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    std::fs::create_dir_all(tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave-image"))
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("ENCLAVE_IMAGE_CREDS")
        .env_remove("ENCLAVE_IMAGE_SRC_CREDS")
        .env_remove("ENCLAVE_IMAGE_DEST_CREDS")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // A tool that refuses the request may exit before reading all of it: EPIPE here
        // is its answer, which the caller checks, not a test failure.
        if let Err(e) = child.stdin.take().unwrap().write_all(input) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "stdin: {e}");
        }
    }
    child.wait_with_output().unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "enclave-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failure reported as one line `enclave-image: …` on stderr, nothing on
/// stdout; returns that line.
pub fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("enclave-image: "), "{stderr}");
    lines[0].to_string()
}

/// Files and directories under `dir`, recursively (for "nothing left behind").
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() {
                out.extend(tree(&p));
            }
        }
    }
    out.sort();
    out
}

/// A plain layer of the test image, as the real tools see it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `sha256:` + `sha256sum` of the blob (the compressed layer).
    pub digest: String,
    /// `sha256:` + `gzip -dc | sha256sum`: the layer's diff_id.
    pub diff_id: String,
    /// The blob file in the layout.
    pub path: PathBuf,
}

/// `sha256sum FILE` → `sha256:<hex>`.
pub fn sha256sum(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]).unwrap();
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

/// `gzip -dc FILE | sha256sum` → `sha256:<hex>`.
pub fn gunzip_sha256sum(path: &Path) -> String {
    let out = run(
        "sh",
        &["-c", &format!("gzip -dc '{}' | sha256sum", path.display())],
    )
    .unwrap();
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

/// Builds `<dir>/img` with tag `v1`: layer 1 from ImageBuilder (the marker file and
/// /bin/app), layer 2 adds /etc/motd with umoci. Returns `oci:<dir>/img:v1` and the
/// layers in order.
pub fn two_layer_image(dir: &Path) -> (String, Vec<Layer>) {
    let layout = dir.join("img");
    let text: String = (0..5_000).map(|i| format!("{i} {MARKER}\n")).collect();
    let src = ImageBuilder::new()
        .file("secret/marker.txt", text.as_bytes())
        .file("bin/app", b"#!/bin/sh\necho app\n")
        .build(&layout, "v1")
        .unwrap();
    let image = format!("{}:v1", layout.display());
    let bundle = dir.join("bundle2");
    let b = bundle.display().to_string();
    run("umoci", &["unpack", "--rootless", "--image", &image, &b]).unwrap();
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/motd"), "second layer\n").unwrap();
    run("umoci", &["repack", "--image", &image, &b]).unwrap();
    std::fs::remove_dir_all(&bundle).unwrap();
    let raw = test_support::skopeo(&["inspect", "--raw", &src]).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().unwrap();
            let path = layout.join("blobs/sha256").join(&d["sha256:".len()..]);
            Layer {
                digest: sha256sum(&path),
                diff_id: gunzip_sha256sum(&path),
                path,
            }
        })
        .collect::<Vec<_>>();
    assert_eq!(layers.len(), 2);
    (src, layers)
}

/// A release binary of workspace package `package`, built if missing.
pub fn release_bin(package: &str, name: &str) -> PathBuf {
    let root = test_support::workspace_root();
    let p = root.join("target/release").join(name);
    if !p.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p {package}");
    }
    p
}

/// `skopeo inspect --raw` of a registry image (plain HTTP).
pub fn raw_manifest(reference: &str) -> serde_json::Value {
    let raw = test_support::skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ])
    .unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// The manifest digest skopeo reports for a registry image.
pub fn skopeo_digest(reference: &str) -> String {
    let out = test_support::skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The library's registry configuration for a plain-HTTP loopback registry.
pub fn config(host: &str) -> RegistryConfig {
    RegistryConfig {
        insecure_http: vec![host.to_string()],
        platform: Platform::parse("linux/amd64").unwrap(),
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
        },
        ..RegistryConfig::default()
    }
}

/// Pulls `image` with the library, decrypts every layer with `kek` and unpacks it
/// into `root`, each checked against the expected diff_id.
pub fn library_unpack(host: &str, image: &str, kek: &[u8], diff_ids: &[String], root: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let puller = Puller::new(config(host)).unwrap();
        let img = puller
            .open(&image.parse::<ImageSource>().unwrap())
            .await
            .unwrap();
        assert_eq!(img.manifest.layers.len(), diff_ids.len());
        std::fs::create_dir_all(root).unwrap();
        let staging = tempfile::tempdir().unwrap();
        for (i, (layer, diff_id)) in img.manifest.layers.iter().zip(diff_ids).enumerate() {
            let ann = LayerAnnotations::from_pairs(layer.annotations.as_ref().unwrap());
            let mut keys = Keys::default();
            for kid in ann.kids() {
                keys.add_kek(&kid, kek).unwrap();
            }
            let path = staging.path().join(format!("l{i}"));
            img.fetch_blob_to_path(layer, &path).await.unwrap();
            let reader = ann
                .open(&layer.digest, std::fs::File::open(&path).unwrap(), &keys)
                .unwrap();
            let plain_type = decrypted_media_type(&layer.media_type).unwrap();
            unpack_layer(reader, plain_type, diff_id, root, &UnpackOptions::default()).unwrap();
        }
    });
}

/// Pushes `src` to the registry reference with real skopeo.
pub fn push_plain(src: &str, reference: &str) {
    test_support::skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        src,
        &format!("docker://{reference}"),
    ])
    .unwrap();
}
