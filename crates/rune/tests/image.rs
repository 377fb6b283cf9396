//! Confidential images, end to end: a real registry on loopback, an image pushed by the
//! real skopeo, and `rune run` of an enclave container whose program is that image,
//! pulled and unpacked inside the enclave by `enclave-boot` (statically linked, signed
//! with sim-sign) into a memory-backed root the host's bundle never holds.

mod common;

use std::path::Path;
use std::process::Command;

use common::image::{marker_layout, run_ok, signed_boot};
use common::*;
use test_support::registry::{Auth, Registry};

const MARKER: &str = "confidential-marker-5b1e0c";

/// The marker image pushed by skopeo to `registry` as `test/app:v1`.
fn push_image(dir: &Path, registry: &Registry) -> String {
    let image = marker_layout(dir, MARKER);
    let reference = format!("{}/test/app:v1", registry.host());
    run_ok(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &format!("docker://{reference}"),
        ],
    );
    reference
}

/// An enclave bundle whose image is `reference`, running `args`.
fn image_bundle(boot: &Path, reference: &str, registry: &Registry, args: &[&str]) -> Bundle {
    common::image::image_bundle(boot, reference, &registry.host(), args, &[])
}

fn needs(test: &str) -> bool {
    root_or_skip(test)
        && tool_or_skip(test, "/usr/bin/skopeo")
        && tool_or_skip(test, "/usr/bin/docker-registry")
        && tool_or_skip(test, "/usr/bin/umoci")
}

#[test]
fn an_image_is_pulled_and_run_inside_the_enclave() {
    if !needs("an_image_is_pulled_and_run_inside_the_enclave") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    let reference = push_image(dir.path(), &registry);
    let (boot, _) = signed_boot(dir.path());
    let rune = Rune::new();

    // The image's own command (the boot program as the command means "no override").
    let b = image_bundle(&boot, &reference, &registry, &["/.rune/enclave-boot"]);
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{MARKER}\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("enclave-boot: manifest sha256:"),
        "{stderr}"
    );
    assert!(
        leftovers(rune.root.path(), &id).is_empty(),
        "{:?}",
        leftovers(rune.root.path(), &id)
    );

    // The container's args override the image's Cmd, as docker's do; the program sees
    // the image's files, not the bundle's rootfs.
    let b = image_bundle(
        &boot,
        &reference,
        &registry,
        &[
            "/bin/sh",
            "-c",
            "cat /etc/marker; test -e /etc/enclave.manifest.json || echo no-host-rootfs",
        ],
    );
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{MARKER}\nno-host-rootfs\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The plaintext is nowhere in the host's view of the bundle or the state root.
    for place in [b.path(), rune.root.path()] {
        let hit = Command::new("grep")
            .args(["-rl", MARKER])
            .arg(place)
            .output()
            .unwrap();
        assert!(
            hit.stdout.is_empty(),
            "marker found on the host: {}",
            String::from_utf8_lossy(&hit.stdout)
        );
    }
}

#[test]
fn a_missing_image_fails_in_one_line_and_leaves_nothing() {
    if !needs("a_missing_image_fails_in_one_line_and_leaves_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    let (boot, _) = signed_boot(dir.path());
    let rune = Rune::new();
    let reference = format!("{}/test/absent:v1", registry.host());
    let b = image_bundle(&boot, &reference, &registry, &["/.rune/enclave-boot"]);
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // docker's 125: the container could not be prepared.
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("enclave-boot:") && !l.contains("pulling"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    assert!(failures[0].contains("absent"), "{stderr}");
    assert!(leftovers(rune.root.path(), &id).is_empty());

    // A malformed reference is refused by create itself, before anything exists.
    let b = image_bundle(&boot, "Bad Reference", &registry, &["/.rune/enclave-boot"]);
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let lines = error_messages(&String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("enclave image: reference \"Bad Reference\""),
        "{lines:?}"
    );
    assert!(leftovers(rune.root.path(), &id).is_empty());
}
