//! wasm OCI artifacts pulled inside the enclave: liberpal-wasm's runtime arg `module=REF`.
//! The artifacts are made here in the layouts the CNCF TAG Runtime, oci-wasm and runwasi use (the CNCF "Wasm OCI
//! Artifact layout": config `application/vnd.wasm.config.v0+json`, one `application/wasm`
//! layer; runwasi's OCI image with `architecture: wasm` and its component layer type),
//! pushed byte for byte to a private registry (Debian's docker-registry) by
//! `enclave-image push`, and run by rune with a root file system that has no module.

mod common;

use std::path::Path;

use common::wasm::*;
use common::*;
use serde_json::{json, Value};
use sha2::Digest;

/// Writes "hello artifact\n" to stdout.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello artifact\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 15))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

const CNCF_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const WASM_LAYER: &str = "application/wasm";
const RUNWASI_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// An OCI image layout at `dir`, tag `v1`: one manifest with `config` (media type,
/// JSON) and `layers` (media type, bytes). Returns the manifest's digest.
fn layout(dir: &Path, config: (&str, Value), layers: &[(&str, &[u8])]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let config_bytes = serde_json::to_vec(&config.1).unwrap();
    let descriptors: Vec<Value> = layers
        .iter()
        .map(
            |(media, bytes)| json!({"mediaType": media, "digest": put(bytes), "size": bytes.len()}),
        )
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config.0, "digest": put(&config_bytes), "size": config_bytes.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})
        .to_string(),
    )
    .unwrap();
    digest
}

/// The CNCF artifact config for a module (the CNCF TAG Runtime layout).
fn cncf_config(module: &[u8]) -> (&'static str, Value) {
    (
        CNCF_CONFIG,
        json!({"architecture": "wasm", "os": "wasip1", "layerDigests": [sha256(module)]}),
    )
}

/// `enclave-image push` of layout `dir` to `repo_tag` on `registry`.
fn push(registry: &test_support::Registry, dir: &Path, repo_tag: &str) -> String {
    let reference = format!("{}/{repo_tag}", registry.host());
    let out = std::process::Command::new(release_bin("enclave-image-tool", "enclave-image"))
        .args([
            "push",
            "--no-signatures",
            "--insecure-registry",
            &registry.host(),
        ])
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// A bundle with no module in its root, the PAL pulling `reference`; the host's network
/// (the registry is on its loopback).
fn artifact_bundle(registry: &test_support::Registry, reference: &str, extra: &str) -> Bundle {
    let mut b = Bundle::new(&["/app.wasm"]).private_rootfs().enclave(
        &wasm_pal(),
        &format!(
            "module={reference} insecure_registry={} {extra}",
            registry.host()
        ),
    );
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.save();
    assert!(!b.path().join("rootfs/app.wasm").exists());
    b
}

fn compile(dir: &Path, wat: &str) -> Vec<u8> {
    let p = dir.join("m.wasm");
    wat2wasm(wat, &p);
    std::fs::read(&p).unwrap()
}

/// A test's registry (private, in its work directory) and its module compiled from WAT.
/// Bound as `Work { work, module, registry }`, so the registry (bound last) stops
/// before its directory is removed.
struct Work {
    registry: test_support::Registry,
    module: Vec<u8>,
    work: tempfile::TempDir,
}

impl Work {
    fn new(wat: &str) -> Work {
        let work = tempfile::tempdir().unwrap();
        let registry =
            test_support::Registry::start(&work.path().join("registry"), test_support::Auth::None)
                .unwrap();
        Work {
            module: compile(work.path(), wat),
            registry,
            work,
        }
    }
}

fn ready_with_registry(test: &str) -> bool {
    ready(test) && tool_or_skip(test, "/usr/bin/docker-registry")
}

#[test]
fn a_wasm_artifact_is_pulled_in_the_enclave_and_runs() {
    const TEST: &str = "a_wasm_artifact_is_pulled_in_the_enclave_and_runs";
    if !ready_with_registry(TEST) {
        return;
    }
    let Work {
        work,
        module,
        registry,
    } = Work::new(HELLO);
    let rune = Rune::new();

    // The CNCF layout and runwasi's OCI image with architecture wasm.
    let cncf = work.path().join("cncf");
    let cncf_digest = layout(&cncf, cncf_config(&module), &[(WASM_LAYER, &module)]);
    let runwasi = work.path().join("runwasi");
    layout(
        &runwasi,
        (
            OCI_CONFIG,
            json!({"architecture": "wasm", "os": "wasip1", "rootfs": {"type": "layers", "diff_ids": [sha256(&module)]}}),
        ),
        &[(RUNWASI_LAYER, &module)],
    );
    for (name, dir) in [("cncf", &cncf), ("runwasi", &runwasi)] {
        let reference = push(&registry, dir, &format!("wasm/{name}:v1"));
        let b = artifact_bundle(&registry, &reference, "debug");
        let id = unique_id("wasm-artifact");
        let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert_eq!(stdout, "hello artifact\n", "{name}");
        // The measurement is the module's, as for a module read from the image.
        let mr_enclave = hex::encode(sim_tee::measure_program(
            &sim_tee::sha384(&module),
            &sim_tee::EnclaveSpec::unsigned("/app.wasm"),
        ));
        assert!(
            stderr.contains(&format!("mr_enclave={mr_enclave} ")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("module {reference} (sha256:")),
            "{name}: {stderr}"
        );
        if name == "cncf" {
            assert!(stderr.contains(&cncf_digest), "{stderr}");
        }
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }

    // Signed: the manifest pins the module; the artifact runs without debug. The same
    // tag pushed again with another module is refused at create, in one line.
    let signed_dir = work.path().join("signed");
    std::fs::create_dir_all(&signed_dir).unwrap();
    let program = signed_dir.join("app.wasm");
    std::fs::write(&program, &module).unwrap();
    let manifest = signed_dir.join("enclave.manifest.json");
    sim_sign(&signed_dir, &program, "/app.wasm", &manifest);
    let reference = push(&registry, &cncf, "wasm/signed:v1");
    let run_signed = |id: &str| {
        let b = artifact_bundle(&registry, &reference, "");
        std::fs::copy(&manifest, b.path().join("rootfs/enclave.manifest.json")).unwrap();
        let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), id]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let id = unique_id("wasm-artifact-signed");
    let (code, stdout, stderr) = run_signed(&id);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "hello artifact\n"),
        "{stderr}"
    );
    assert!(stderr.contains("debug=false"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    let other = compile(
        work.path(),
        &HELLO.replace("hello artifact", "hello replaced"),
    );
    let replaced = work.path().join("replaced");
    layout(&replaced, cncf_config(&other), &[(WASM_LAYER, &other)]);
    push(&registry, &replaced, "wasm/signed:v1");
    let id = unique_id("wasm-artifact-replaced");
    let (code, stdout, stderr) = run_signed(&id);
    assert_ne!(code, Some(0));
    assert_eq!(stdout, "");
    let lines = error_messages(&stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/app.wasm") && l.contains("does not match")),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn artifacts_that_cannot_be_run_are_refused_at_create_in_one_line() {
    const TEST: &str = "artifacts_that_cannot_be_run_are_refused_at_create_in_one_line";
    if !ready_with_registry(TEST) {
        return;
    }
    let Work {
        work,
        module,
        registry,
    } = Work::new(HELLO);
    let rune = Rune::new();
    let two = work.path().join("two");
    layout(
        &two,
        cncf_config(&module),
        &[(WASM_LAYER, &module), (WASM_LAYER, &module)],
    );
    let linux = work.path().join("linux");
    layout(
        &linux,
        (
            OCI_CONFIG,
            json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        ),
        &[("application/vnd.oci.image.layer.v1.tar", b"not a module")],
    );
    let component = work.path().join("component");
    let component_bytes = b"\0asm\x0d\0\x01\0".to_vec();
    layout(
        &component,
        cncf_config(&component_bytes),
        &[(WASM_LAYER, &component_bytes)],
    );
    let host = registry.host();
    let port = host.rsplit_once(':').unwrap().1.to_string();
    let cases = [
        (push(&registry, &two, "bad/two:v1"), "2 wasm layers"),
        (
            push(&registry, &linux, "bad/linux:v1"),
            "an image for linux/amd64, not a wasm artifact",
        ),
        (
            push(&registry, &component, "bad/component:v1"),
            "component model): not supported",
        ),
        (format!("{host}/bad/missing:v1"), "MANIFEST_UNKNOWN"),
        (
            format!("localhost:{port}/bad/two:v1"),
            "is not named by IP address",
        ),
    ];
    for (reference, needle) in cases {
        let b = artifact_bundle(&registry, &reference, "debug");
        let id = unique_id("wasm-artifact-bad");
        let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            rune.cmd(&["delete", "--force", &id]);
            panic!("{reference}: created");
        }
        // rune's one error line carries the PAL's refusal.
        let errors = error_messages(&stderr);
        assert_eq!(errors.len(), 1, "{reference}: {stderr}");
        assert!(
            errors[0].contains("pal_init() failed") && errors[0].contains(needle),
            "{reference}: {stderr}"
        );
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{reference}"
        );
    }
}

/// The pull is in the enclave's evidence: CoCo's `PullImage` event at CC MR 4, whose
/// register (RTMR3 of the sim report, extended once from zero) is computed here from
/// measurement.md §1.3's record rule: digest = SHA-384 of `"LEAA"` (0x4141454C, little
/// endian) ‖ u32 LE length ‖ `"<domain> <operation> <content>"`, content the JCS object
/// `{"digest":…,"image":…}`; register = SHA-384(48 × 0 ‖ digest).
#[test]
fn the_pull_is_a_pull_image_event_in_the_report() {
    const TEST: &str = "the_pull_is_a_pull_image_event_in_the_report";
    if !ready_with_registry(TEST) {
        return;
    }
    let Work {
        work,
        module,
        registry,
    } = Work::new(SLEEP);
    let dir = work.path().join("sleep");
    let manifest_digest = layout(&dir, cncf_config(&module), &[(WASM_LAYER, &module)]);
    let reference = push(&registry, &dir, "wasm/sleep:v1");
    // Signed, so the enclave is measured at create (`run -d` returns before the first
    // process of a debug enclave is made).
    let program = work.path().join("app.wasm");
    std::fs::write(&program, &module).unwrap();
    let signed = work.path().join("enclave.manifest.json");
    sim_sign(work.path(), &program, "/app.wasm", &signed);
    let b = artifact_bundle(&registry, &reference, "");
    std::fs::copy(&signed, b.path().join("rootfs/enclave.manifest.json")).unwrap();
    let rune = Rune::new();
    let id = unique_id("wasm-artifact-event");
    let mut c = std::process::Command::new(RUNE);
    c.arg("--root").arg(rune.root.path()).args([
        "run",
        "-d",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let out = output_via_files(&mut c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report_file = work.path().join("report.bin");
    rune.ok(&[
        "attest",
        "--report-data",
        &"00".repeat(64),
        "--report-file",
        report_file.to_str().unwrap(),
        &id,
    ]);
    rune.cmd(&["kill", &id, "KILL"]);
    assert!(wait_until(std::time::Duration::from_secs(10), || rune
        .status(&id)
        == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    let report = sim_tee::Report::parse(&std::fs::read(&report_file).unwrap()).unwrap();
    report.verify_signature().unwrap();
    let text = format!(
        "github.com/confidential-containers PullImage {{\"digest\":\"{manifest_digest}\",\"image\":\"{reference}\"}}"
    );
    let mut tagged = 0x4141_454Cu32.to_le_bytes().to_vec();
    tagged.extend((text.len() as u32).to_le_bytes());
    tagged.extend(text.as_bytes());
    let digest = sha2::Sha384::digest(&tagged);
    let mut extend = vec![0u8; 48];
    extend.extend(digest);
    let rtmr3 = sha2::Sha384::digest(&extend);
    assert_eq!(hex::encode(report.rtmr[3]), hex::encode(rtmr3));
    assert_eq!(report.rtmr_counts[3], 1);
}

/// Nothing is looked up by name: a registry that redirects the module's blob to a host
/// name fails the pull in one line naming it, and proxies in rune's environment (whose
/// names would be looked up, and which would see a plain-HTTP pull) are not used.
#[test]
fn a_pull_never_looks_up_a_name() {
    const TEST: &str = "a_pull_never_looks_up_a_name";
    if !ready_with_registry(TEST) {
        return;
    }
    let Work {
        work,
        module,
        registry,
    } = Work::new(HELLO);
    let dir = work.path().join("hello");
    layout(&dir, cncf_config(&module), &[(WASM_LAYER, &module)]);
    push(&registry, &dir, "wasm/hello:v1");
    let rune = Rune::new();

    // The blob redirected to the same registry by the name `localhost`, which the
    // container's root resolves (an /etc/hosts and nsswitch.conf of its own): a pull
    // that looked names up would follow it and succeed.
    let port = registry.host().rsplit_once(':').unwrap().1.to_string();
    let proxy = test_support::FaultProxy::start(
        registry.host().parse().unwrap(),
        test_support::Fault {
            path_contains: "/blobs/".into(),
            times: None,
            status: 307,
            location: Some(format!(
                "http://localhost:{port}/v2/wasm/hello/blobs/{}",
                sha256(&module)
            )),
        },
    )
    .unwrap();
    let via = proxy.addr().to_string();
    let mut b = Bundle::new(&["/app.wasm"]).private_rootfs().enclave(
        &wasm_pal(),
        &format!("debug module={via}/wasm/hello:v1 insecure_registry={via}"),
    );
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.save();
    let etc = b.path().join("rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(etc.join("nsswitch.conf"), "hosts: files\n").unwrap();
    let id = unique_id("wasm-artifact-redirect");
    let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // The name was followed: fail, without leaving the container behind.
        rune.cmd(&["delete", "--force", &id]);
        panic!("the redirect to a name was followed: {stderr}");
    }
    let errors = error_messages(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("/blobs/") && errors[0].contains("dns error"),
        "{stderr}"
    );
    assert!(proxy.injected() > 0);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Proxies named in the environment are ignored: the pull still goes straight to the
    // registry and runs.
    let reference = format!("{}/wasm/hello:v1", registry.host());
    let b = artifact_bundle(&registry, &reference, "debug");
    let id = unique_id("wasm-artifact-proxyenv");
    let out = std::process::Command::new(RUNE)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .env("HTTP_PROXY", "http://proxy.invalid:3128")
        .env("http_proxy", "http://proxy.invalid:3128")
        .env("HTTPS_PROXY", "http://proxy.invalid:3128")
        .env("ALL_PROXY", "http://proxy.invalid:3128")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello artifact\n");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}
