//! Confidential-image helpers: enclave bundles whose program comes from an image, and
//! rune's uses of test-support's shared ones (the signed boot program, the marker image,
//! the real `verdictd`, the scan that proves a plaintext never reached the host).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// Copies the boot program into `dir/boot` and signs it for `/.rune/enclave-boot` with
/// `dir/signer.key`; returns its path and its mr_enclave (what verdictd admits).
pub fn signed_boot(dir: &Path) -> (PathBuf, String) {
    test_support::signed_boot(&dir.join("boot"), &dir.join("signer.key")).unwrap()
}

/// An enclave bundle (host network: the registry is on the host's loopback) whose image
/// is `reference` from the plain-HTTP registry `insecure`, running `args`, with `env`
/// (`NAME=value`) added.
pub fn image_bundle(
    boot: &Path,
    reference: &str,
    insecure: &str,
    args: &[&str],
    env: &[String],
) -> Bundle {
    let (pal, _) = sim_artifacts();
    let mut b = Bundle::new(args).enclave(&pal, "");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.spec["root"]["readonly"] = serde_json::json!(false);
    let e = b.spec["process"]["env"].as_array_mut().unwrap();
    e.push(format!("ENCLAVE_IMAGE={reference}").into());
    e.push(format!("ENCLAVE_IMAGE_INSECURE={insecure}").into());
    e.push(format!("ENCLAVE_IMAGE_BOOT={}", boot.display()).into());
    e.extend(env.iter().map(|v| serde_json::Value::from(v.as_str())));
    b.save();
    b
}

/// Runs `program args`, asserting success.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The busybox image plus a layer holding `marker` in `/etc/marker`, with cmd
/// `cat /etc/marker`, as an OCI layout `dir/layout` tagged `latest`; returns
/// `<layout>:latest` (umoci's and skopeo's `oci:` syntax without the prefix).
pub fn marker_layout(dir: &Path, marker: &str) -> String {
    test_support::marker_layout(dir, marker, &["/bin/cat", "/etc/marker"]).unwrap()
}
