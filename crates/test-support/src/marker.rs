//! A marker the tenant puts into an image, and the search proving that its plaintext
//! never reached the host's disk.

use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use crate::tools::{busybox_oci_tar, ImageBuilder};

/// A fresh random marker, `confidential-<24 hex>`, so that no file (a test's source or
/// binary, another run) holds it by chance.
pub fn random_marker() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    format!("confidential-{}", hex::encode(b))
}

/// The busybox image plus one layer holding `marker` (and a newline) in `/etc/marker`,
/// with Cmd `cmd`, as the OCI layout `dir/layout` tagged `latest` (built with umoci, see
/// [`ImageBuilder`]); returns `<layout>:latest` (skopeo's `oci:` syntax without the
/// prefix).
pub fn marker_layout(dir: &Path, marker: &str, cmd: &[&str]) -> Result<String, String> {
    let layout = dir.join("layout");
    let busybox = busybox_oci_tar().map_err(|e| format!("busybox image: {e}"))?;
    let image = ImageBuilder::new()
        .base(&busybox)
        .file("etc/marker", format!("{marker}\n").as_bytes())
        .cmd(cmd)
        .build(&layout, "latest")?;
    Ok(image.trim_start_matches("oci:").to_string())
}

/// Files under `places` that hold `marker` (GNU `grep -rlF`: symlinks not followed,
/// devices, fifos and sockets skipped). Empty means the plaintext is nowhere there.
pub fn marker_found(places: &[&Path], marker: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-rlF", "--devices=skip", "--", marker])
        .args(places)
        .output()
        .expect("run grep");
    // Status 2 (a file vanished while searching) still lists the hits found.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
