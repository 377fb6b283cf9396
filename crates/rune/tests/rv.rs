//! Reproducible reference values: `shelter rv` computes, from an OCI image alone, the
//! mr_enclave a liberpal-sim enclave running it reports. The expected values here come
//! from really running the enclave through rune and reading its signed report (`rune
//! attest`), or from verdictd's verdict on its evidence — never from the same function.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use test_support::ImageBuilder;

/// `shelter rv ARGS`, asserting success; stdout.
fn shelter_rv(args: &[&str]) -> String {
    let out = Command::new(shelter_bin())
        .arg("rv")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shelter rv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

/// A bundle running `args` on the image `layout:tag` as umoci unpacks it (the real
/// peer's view of the image), as a sim enclave with `runtime_args`.
fn image_bundle(layout: &Path, tag: &str, args: &[&str], runtime_args: &str) -> Bundle {
    let (pal, _) = sim_artifacts();
    let mut b = Bundle::new(args).enclave(&pal, runtime_args);
    let unpacked = b.path().join("umoci");
    test_support::run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{tag}", layout.display()),
            unpacked.to_str().unwrap(),
        ],
    )
    .unwrap();
    b.spec["root"] = serde_json::json!({"path": unpacked.join("rootfs"), "readonly": true});
    b.save();
    b
}

/// mr_enclave (hex) from the signed report of the running enclave `id`. A debug
/// enclave is measured as `create` makes its process: asked once, right after `run -d`.
fn reported_mr_enclave(rune: &Rune, id: &str) -> (String, sim_tee::Report) {
    let out = rune.cmd(&["attest", "--report-data", "52", id]);
    assert!(
        out.status.success(),
        "rune attest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex_report = String::from_utf8(out.stdout).unwrap();
    let bytes = hex::decode(hex_report.trim()).unwrap();
    let report = sim_tee::Report::parse(&bytes).unwrap();
    report.verify_signature().unwrap();
    (hex::encode(report.mr_enclave), report)
}

fn run_detached(rune: &Rune, platform: &Path, b: &Bundle, id: &str) {
    // Files, not pipes: the detached container keeps its stdio open.
    let out = rune.sim(
        platform,
        &["run", "-d", "--bundle", b.path().to_str().unwrap(), id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stop(rune: &Rune, id: &str) {
    rune.ok(&["delete", "--force", id]);
    assert_eq!(leftovers(rune.root.path(), id), Vec::<String>::new());
}

#[test]
fn the_computed_mr_enclave_is_what_the_running_enclave_reports() {
    if !root_or_skip("the_computed_mr_enclave_is_what_the_running_enclave_reports")
        || !tool_or_skip(
            "the_computed_mr_enclave_is_what_the_running_enclave_reports",
            "/usr/bin/umoci",
        )
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let busybox = test_support::busybox_oci_tar().unwrap();
    let rune = Rune::new();

    // 1. No manifest, runtime arg debug: the program is the image's Cmd[0], /bin/sleep,
    // a symlink to busybox that the PAL (and rv) follow inside the container's root.
    let debug_layout = work.path().join("debug");
    ImageBuilder::new()
        .base(&busybox)
        .file("etc/rv-test", b"one layer more\n")
        .cmd(&["/bin/sleep", "60"])
        .build(&debug_layout, "v1")
        .unwrap();
    let image = format!("oci:{}:v1", debug_layout.display());
    let computed = field(
        &shelter_rv(&["measure", "--image", &image, "--runtime-args", "debug"]),
        "mr_enclave",
    );
    let b = image_bundle(&debug_layout, "v1", &["/bin/sleep", "60"], "debug");
    let id = unique_id("rvdebug");
    run_detached(&rune, &platform, &b, &id);
    let (reported, report) = reported_mr_enclave(&rune, &id);
    stop(&rune, &id);
    assert!(report.debug);
    assert_eq!(computed, reported, "debug enclave");

    // The same image as an oci-archive gives the same value (no transport, path or
    // timestamp enters it).
    let archive = work.path().join("debug.tar");
    test_support::run(
        "tar",
        &[
            "-C",
            debug_layout.to_str().unwrap(),
            "-cf",
            archive.to_str().unwrap(),
            ".",
        ],
    )
    .unwrap();
    let again = field(
        &shelter_rv(&[
            "measure",
            "--image",
            &format!("oci-archive:{}:v1", archive.display()),
            "--runtime-args",
            "debug",
        ]),
        "mr_enclave",
    );
    assert_eq!(again, reported);

    // 2. A signed manifest in the image, fixed args: its spec is what is measured, and
    // mr_signer is the signer's.
    let signed_layout = work.path().join("signed");
    let manifest = work.path().join("enclave.manifest.json");
    let key = work.path().join("signer.key");
    let (_, sign) = sim_artifacts();
    test_support::run(
        sign.to_str().unwrap(),
        &["keygen", "--out", key.to_str().unwrap()],
    )
    .unwrap();
    test_support::run(
        sign.to_str().unwrap(),
        &[
            "sign",
            "--executable",
            images().join("rootfs/bin/busybox").to_str().unwrap(),
            "--entrypoint",
            "/bin/sleep",
            "--arg",
            "60",
            "--key",
            key.to_str().unwrap(),
            "--out",
            manifest.to_str().unwrap(),
        ],
    )
    .unwrap();
    ImageBuilder::new()
        .base(&busybox)
        .file("enclave.manifest.json", &std::fs::read(&manifest).unwrap())
        .cmd(&["/bin/sleep", "60"])
        .build(&signed_layout, "v1")
        .unwrap();
    let out = shelter_rv(&[
        "measure",
        "--image",
        &format!("oci:{}:v1", signed_layout.display()),
    ]);
    let b = image_bundle(&signed_layout, "v1", &["/bin/sleep", "60"], "");
    let id = unique_id("rvsigned");
    run_detached(&rune, &platform, &b, &id);
    let (reported, report) = reported_mr_enclave(&rune, &id);
    stop(&rune, &id);
    assert!(!report.debug);
    assert_eq!(field(&out, "mr_enclave"), reported, "signed enclave");
    assert_eq!(field(&out, "mr_signer"), hex::encode(report.mr_signer));
    assert_ne!(reported, computed, "the spec (args) is measured too");

    // An image whose program was changed after signing: the enclave would not start,
    // and rv says so instead of printing a value.
    let broken_layout = work.path().join("broken");
    ImageBuilder::new()
        .base(&busybox)
        .file("enclave.manifest.json", &std::fs::read(&manifest).unwrap())
        .executable("bin/busybox", b"#!/bin/sh\necho not busybox\n")
        .build(&broken_layout, "v1")
        .unwrap();
    let out = Command::new(shelter_bin())
        .args(["rv", "measure", "--image"])
        .arg(format!("oci:{}:v1", broken_layout.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("would not start") && err.contains("does not match"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `shelter rv measure --pal wasm` gives the mr_enclave liberpal-wasm reports for a
/// module in an image (as `rune attest` reads it from the running enclave, debug and
/// signed); a program that is not a module is refused in one line.
#[test]
fn the_computed_mr_enclave_of_a_wasm_module_is_what_liberpal_wasm_reports() {
    let test = "the_computed_mr_enclave_of_a_wasm_module_is_what_liberpal_wasm_reports";
    if !root_or_skip(test)
        || !tool_or_skip(test, "/usr/bin/umoci")
        || !tool_or_skip(test, common::wasm::WAT2WASM)
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let busybox = test_support::busybox_oci_tar().unwrap();
    let rune = Rune::new();
    let module = work.path().join("app.wasm");
    common::wasm::wat2wasm(common::wasm::SLEEP, &module);
    let module = std::fs::read(&module).unwrap();
    let wasm_bundle = |layout: &Path, runtime_args: &str| {
        let mut b = image_bundle(layout, "v1", &["/app.wasm"], runtime_args);
        let env = b.spec["process"]["env"].as_array_mut().unwrap();
        for e in env.iter_mut() {
            if e.as_str()
                .unwrap_or("")
                .starts_with("ENCLAVE_RUNTIME_PATH=")
            {
                *e = serde_json::json!(format!("ENCLAVE_RUNTIME_PATH={}", wasm_pal().display()));
            }
        }
        b.save();
        b
    };

    // Unsigned, with the runtime arg debug.
    let debug_layout = work.path().join("debug");
    ImageBuilder::new()
        .base(&busybox)
        .executable("app.wasm", &module)
        .cmd(&["/app.wasm"])
        .build(&debug_layout, "v1")
        .unwrap();
    let image = format!("oci:{}:v1", debug_layout.display());
    let out = shelter_rv(&[
        "measure",
        "--pal",
        "wasm",
        "--image",
        &image,
        "--runtime-args",
        "debug",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = wasm_bundle(&debug_layout, "debug");
    let id = unique_id("rvwasm");
    run_detached(&rune, &platform, &b, &id);
    let (reported, report) = reported_mr_enclave(&rune, &id);
    stop(&rune, &id);
    assert!(report.debug);
    assert_eq!(json["mr_enclave"], reported.as_str(), "{out}");
    assert_eq!(json["enclave"]["pal"], "liberpal-wasm", "{out}");

    // Signed with sim-sign: the manifest's spec and signer.
    let manifest = work.path().join("enclave.manifest.json");
    let exe = work.path().join("app-signed.wasm");
    std::fs::write(&exe, &module).unwrap();
    sim_sign(work.path(), &exe, "/app.wasm", &manifest);
    let signed_layout = work.path().join("signed");
    ImageBuilder::new()
        .base(&busybox)
        .executable("app.wasm", &module)
        .file("enclave.manifest.json", &std::fs::read(&manifest).unwrap())
        .cmd(&["/app.wasm"])
        .build(&signed_layout, "v1")
        .unwrap();
    let out = shelter_rv(&[
        "measure",
        "--pal",
        "wasm",
        "--image",
        &format!("oci:{}:v1", signed_layout.display()),
    ]);
    let b = wasm_bundle(&signed_layout, "");
    let id = unique_id("rvwasm");
    run_detached(&rune, &platform, &b, &id);
    let (reported, report) = reported_mr_enclave(&rune, &id);
    stop(&rune, &id);
    assert!(!report.debug);
    assert_eq!(field(&out, "mr_enclave"), reported, "signed module");
    assert_eq!(field(&out, "mr_signer"), hex::encode(report.mr_signer));

    // busybox's program under the wasm PAL: refused, as the PAL would refuse it.
    let out = Command::new(shelter_bin())
        .args(["rv", "measure", "--pal", "wasm", "--runtime-args", "debug"])
        .args(["--entrypoint", "/bin/sleep", "--image"])
        .arg(format!("oci-archive:{}:latest", busybox.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "enclave program /bin/sleep in the image: not a WebAssembly module: liberpal-wasm would refuse it"
        ),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The attestation agent (and its libraries) in an image built on busybox, with a
/// manifest signing it; `tweak` changes one byte of the program (then signed as it is).
fn agent_image(work: &Path, name: &str, tweak: bool) -> (PathBuf, String) {
    let agent = release_bin("attestation-agent", "attestation-agent");
    let mut bytes = std::fs::read(&agent).unwrap();
    if tweak {
        // One byte of the compiler's note in `.comment`: never loaded, still measured.
        let at = bytes
            .windows(14)
            .position(|w| w == b"rustc version ")
            .expect("the binary names its compiler");
        bytes[at] = b'R';
    }
    let program = work.join(format!("{name}-agent"));
    std::fs::write(&program, &bytes).unwrap();
    let manifest = work.join(format!("{name}.manifest.json"));
    sim_sign(work, &program, "/bin/attestation-agent", &manifest);
    let builder = ImageBuilder::new()
        .base(&test_support::busybox_oci_tar().unwrap())
        .executable("bin/attestation-agent", &bytes)
        .libraries_of(&agent)
        .unwrap()
        .file("enclave.manifest.json", &std::fs::read(&manifest).unwrap())
        .cmd(&["/bin/attestation-agent"]);
    let layout = work.join(name);
    builder.build(&layout, "v1").unwrap();
    let image = format!("oci:{}:v1", layout.display());
    (layout, image)
}

#[test]
fn a_provisioned_reference_value_admits_the_image_and_one_changed_byte_is_refused() {
    const TEST: &str =
        "a_provisioned_reference_value_admits_the_image_and_one_changed_byte_is_refused";
    if !root_or_skip(TEST) || !tool_or_skip(TEST, "/usr/bin/umoci") {
        return;
    }
    use sha2::Digest;
    const SECRET: &[u8] = b"released only to the image's enclave";
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let (good_layout, good_image) = agent_image(work.path(), "good", false);
    let (bad_layout, bad_image) = agent_image(work.path(), "bad", true);

    // The tenant: a signing key, and the signed reference values of the good image.
    let key = work.path().join("rv.key");
    let public = work.path().join("rv.pub");
    shelter_rv(&[
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--public-out",
        public.to_str().unwrap(),
    ]);
    let out_dir = work.path().join("rv");
    let out = shelter_rv(&[
        "bundle",
        "--image",
        &good_image,
        "--key",
        key.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let expected = field(&out, "mr_enclave");
    // What the bundle says, file by file: the sample values, the same digest in the
    // CoRIM (Trustee's id and the sample name), and the statement's subject: the
    // manifest digest the OCI layout's index.json names.
    let read_json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out_dir.join(name)).unwrap()).unwrap()
    };
    let sample = read_json("reference-values.json");
    assert_eq!(sample["sim_mr_enclave"], serde_json::json!([expected]));
    let corim = std::fs::read(out_dir.join("corim.cbor")).unwrap();
    let from_corim = reference_values::corim_values(
        &Default::default(),
        &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &corim),
    )
    .unwrap();
    assert_eq!(from_corim["sim_mr_enclave"], serde_json::json!([expected]));
    assert_eq!(
        from_corim["inclavare/sim/mr_enclave/digests"],
        serde_json::json!([expected])
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good_layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "v1")
        .unwrap_or_else(|| panic!("no v1 in {index}"))["digest"]
        .as_str()
        .unwrap();
    let statement = read_json("statement.json");
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        manifest
    );
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    let found = field(
        &shelter_rv(&["measure", "--image", &bad_image]),
        "mr_enclave",
    );
    assert_ne!(expected, found);

    // verdictd: a policy that allows sim but names no measurement; only the provisioned
    // reference value (require_reference_values, the default) can admit an enclave.
    let v = test_support::Verdictd::start_with(
        &work.path().join("verdictd"),
        &test_support::VerdictdOptions {
            admit: "",
            resources: &[("default/key/demo", SECRET)],
            rvps_trusted_key: Some(&public),
            admin_open: true,
            ..Default::default()
        },
    )
    .unwrap();
    let addr: std::net::SocketAddr = v.url().trim_start_matches("http://").parse().unwrap();
    let message = std::fs::read(out_dir.join("bundle-message.json")).unwrap();
    let r = test_support::http::request(addr, "POST", "/kbs/v0/reference-value", &[], &message)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let rune = Rune::new();
    let run = |layout: &Path| {
        let b = image_bundle(
            layout,
            "v1",
            &[
                "/bin/attestation-agent",
                "--url",
                v.url(),
                "get-resource",
                "kbs:///default/key/demo",
            ],
            "",
        );
        let mut b = b;
        // verdictd is on the host's loopback.
        b.spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
        b.save();
        let id = unique_id("rvkbs");
        let out = rune.sim(
            &platform,
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert!(leftovers(rune.root.path(), &id).is_empty());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&good_layout);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains(&format!("mr_enclave={expected} ")), "{err}");
    assert!(
        out.contains(&format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(SECRET))
        )),
        "{out}"
    );

    let (code, out, err) = run(&bad_layout);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains(&format!("mr_enclave={found} ")), "{err}");
    let reason = format!(
        "claim sim.sim_mr_enclave is {found}, not among the reference values sim_mr_enclave ({expected})"
    );
    assert!(err.contains("401") && err.contains(&reason), "{err}");
}

/// The third source, a registry: the image pushed by skopeo measures as its OCI
/// layout does, and the manifest digest `rv` pins is the one skopeo reads back from the
/// registry (the statement's subject).
#[test]
fn a_registry_image_measures_as_its_layout_and_pins_skopeos_digest() {
    const TEST: &str = "a_registry_image_measures_as_its_layout_and_pins_skopeos_digest";
    if !tool_or_skip(TEST, "/usr/bin/skopeo") || !tool_or_skip(TEST, "/usr/bin/docker-registry") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    ImageBuilder::new()
        .base(&test_support::busybox_oci_tar().unwrap())
        .file("etc/rv-test", b"from a registry\n")
        .cmd(&["/bin/sleep", "60"])
        .build(&layout, "v1")
        .unwrap();
    let args = ["--runtime-args", "debug", "--json"];
    let measure = |image: &str, extra: &[&str]| -> serde_json::Value {
        let out = shelter_rv(&[&["measure", "--image", image][..], &args, extra].concat());
        serde_json::from_str(&out).unwrap()
    };
    let from_layout = measure(&format!("oci:{}:v1", layout.display()), &[]);

    let registry =
        test_support::Registry::start(&work.path().join("registry"), test_support::Auth::None)
            .unwrap();
    let pushed = registry
        .push(&format!("oci:{}:v1", layout.display()), "rv/app:v1")
        .unwrap();
    let host = registry.host();
    let from_registry = measure(&pushed.reference, &["--insecure-registry", &host]);
    assert_eq!(from_registry["mr_enclave"], from_layout["mr_enclave"]);
    assert_eq!(
        from_registry["image"]["manifest_digest"],
        pushed.manifest_digest.as_str()
    );
    assert_eq!(
        from_registry["image"]["config_digest"],
        pushed.config_digest.as_str()
    );
}
