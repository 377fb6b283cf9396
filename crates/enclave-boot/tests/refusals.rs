//! The boot program's command line is the host's: settings that would put the image's
//! plaintext on the host's disk, read an image from a host path, or send the tenant's
//! registry credentials in clear text are refused in one line (exit 125) before any
//! KBS, registry or file is touched (review16b F2, F4, F5).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn boot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enclave-boot"))
        .args(args)
        .output()
        .unwrap()
}

/// The one stderr line of a refusal, after checking exit 125.
fn refusal(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());
    stderr.trim_end().to_string()
}

/// `stat -f`'s file-system type of `dir`: the peer's name and hex magic.
fn fs_type(dir: &Path) -> (String, String) {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T %t"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (name, magic) = text.trim().split_once(' ').unwrap();
    (name.to_string(), magic.to_string())
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// A loopback listener standing for the KBS and the registry: nothing may connect.
fn nobody_connects(l: &TcpListener) {
    l.set_nonblocking(true).unwrap();
    assert!(l.accept().is_err(), "something connected");
}

#[test]
fn a_root_on_disk_is_refused_before_anything_is_fetched() {
    // Under target/, on the build's disk (never tmpfs here; said if it is).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (name, magic) = fs_type(dir.path());
    if name == "tmpfs" || name == "ramfs" {
        eprintln!("skipped: {} is on {name}", dir.path().display());
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = l.local_addr().unwrap().to_string();
    let root = dir.path().to_str().unwrap();
    let out = boot(&[
        "--image",
        &format!("{host}/test/app:v1"),
        "--insecure-registry",
        &host,
        "--kbs",
        &format!("http://{host}"),
        "--root",
        root,
    ]);
    assert_eq!(
        refusal(&out),
        format!(
            "enclave-boot: error: root {root}: not a memory-backed file system (magic 0x{magic}): the image's plaintext is only unpacked into tmpfs or ramfs"
        )
    );
    assert!(is_empty(dir.path()));
    nobody_connects(&l);
}

#[test]
fn an_oci_layout_or_archive_is_not_a_source() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    assert_eq!(fs_type(dir.path()).0, "tmpfs");
    for image in ["oci:/srv/layout:v1", "oci-archive:/srv/image.tar"] {
        let out = boot(&["--image", image, "--root", dir.path().to_str().unwrap()]);
        assert_eq!(
            refusal(&out),
            format!("enclave-boot: error: image {image}: only a registry reference is pulled inside an enclave (an OCI layout or archive is a host path)")
        );
        assert!(is_empty(dir.path()));
    }
}

#[test]
fn registry_credentials_are_never_configured_with_plain_http() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = l.local_addr().unwrap().to_string();
    let out = boot(&[
        "--image",
        &format!("{host}/test/app:v1"),
        "--kbs",
        &format!("http://{host}"),
        "--registry-auth",
        "kbs:///default/registry/auth",
        "--insecure-registry",
        &host,
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        refusal(&out),
        format!("enclave-boot: error: registry credentials are never sent over plain HTTP: {host} is an insecure registry")
    );
    assert!(is_empty(dir.path()));
    nobody_connects(&l);
}
