//! A confidential image on the Kubernetes path: the pod's annotations alone (passed by
//! the CRI plugin's `pod_annotations`) ask for an enclave and name an image that the
//! tenant encrypted and cosign-signed with our `enclave-image` tool (test-support's
//! `Confidential`: a private registry, an HTTPS verdictd holding the KEK and the
//! policy). The container's own image is the boot image, imported into the CRI's
//! namespace; its enclave pulls, checks and decrypts the image and runs its Cmd.
//! Expected values come from the tenant's marker (printed upper-cased by the image's
//! Cmd), the registry's manifest digest, verdictd's log and the CRI log format.

use std::path::Path;
use std::time::Duration;

use k8s_cri::v1 as cri;
use test_support::{PlaintextTraces, CRI_NAMESPACE};

use crate::common::*;
use crate::node::*;

#[test]
fn a_pod_annotation_runs_a_confidential_image() {
    let test = "a_pod_annotation_runs_a_confidential_image";
    if !needs(test) {
        return;
    }
    let (c, client) = start_cri();
    let mr = install_boot(&c);
    let host = tempfile::tempdir().unwrap();
    import_boot_image(&c, host.path(), CRI_NAMESPACE);
    let seen = wait_until(Duration::from_secs(10), || client.image_present(BOOT_IMAGE));
    assert!(seen, "the CRI plugin does not see {BOOT_IMAGE}");
    let s = test_support::Confidential::start(host.path(), &mr).unwrap();
    // The plaintext as the tenant built it, before encryption: its marker, a run of its
    // layer blob, the layer's digests.
    let traces =
        PlaintextTraces::of_layout(&s.tenant().join("layout"), "latest", &s.marker).unwrap();

    // Everything on the pod, as a Kubernetes user writes it in the pod's metadata.
    let mut config = pod_config(&c, "confidential");
    config
        .annotations
        .insert("enclave.type".into(), "sim".into());
    config.annotations.extend(confidential_annotations(&c, &s));
    let pod = client.must_run_pod_sandbox(&config, "rune");

    // The CRI plugin gave the sandbox (pause) container the pod's annotations (its spec
    // as containerd made it), and the shim kept them off the spec rune read (the
    // bundle's): a plain `sleep infinity` in the pause image's root.
    let (_, info) = client.pod_sandbox_status(&pod);
    let given = &info["runtimeSpec"]["annotations"];
    assert_eq!(given["enclave.image"], s.image.reference, "{info}");
    let sandbox = bundle_spec(&c, &pod);
    let applied: Vec<&String> = sandbox["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("enclave."))
        .collect();
    assert!(applied.is_empty(), "{applied:?}");
    // The shim's log says which it kept off.
    let log = c.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{pod}: sandbox container: the pod's")));
    assert!(
        line.is_some_and(|l| l.contains("enclave.image") && l.contains("enclave.type")),
        "{log}"
    );
    let pause = info["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pause}/cmdline")).unwrap();
    assert_eq!(cmdline, b"/bin/sleep\0infinity\0");
    let root = format!("/proc/{pause}/root");
    assert!(Path::new(&root).join("bin/busybox").exists());
    assert!(!Path::new(&root).join(".rune").exists());

    // The container: the boot image and no command (its Cmd runs the image's own).
    let mut app = container_config("app", &[]);
    app.image.as_mut().unwrap().image = BOOT_IMAGE.into();
    let ctr = start(&client, &pod, &config, &app);
    let ended = wait_until(Duration::from_secs(60), || {
        client.container_status(&ctr).0.state == cri::ContainerState::ContainerExited as i32
    });
    let log_file = Path::new(&config.log_directory).join("app/0.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(ended, "the container did not end: {}\n{}", log(), c.log());
    let (st, info) = client.container_status(&ctr);
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (0, "Completed"),
        "{}",
        log()
    );
    // The pod's annotations reached the container's spec (the one containerd made; the
    // task and its bundle are gone once it has ended), and the shim took it as a
    // confidential image.
    let annotations = &info["runtimeSpec"]["annotations"];
    assert_eq!(annotations["enclave.image"], s.image.reference, "{info}");
    let taken = format!(
        "{ctr}: confidential image {}, pulled inside the enclave",
        s.image.reference
    );
    assert!(c.log().contains(&taken), "{}", c.log());

    // The CRI log: the image's Cmd printed the marker upper-cased on stdout; the boot
    // program said what it pulled, checked and decrypted on stderr, and nothing failed.
    let lines = log_lines(&log_file, 1);
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(stream, _)| stream == "stdout")
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(stdout, [s.marker.to_uppercase()], "{lines:?}");
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|(stream, _)| stream == "stderr")
        .map(|(_, l)| l.as_str())
        .collect();
    let has = |prefix: &str| stderr.iter().any(|l| l.starts_with(prefix));
    assert!(
        has(&format!(
            "enclave-boot: manifest {} ",
            s.image.manifest_digest
        )),
        "{stderr:#?}"
    );
    assert!(
        has(&format!(
            "enclave-boot: signature verified: sigstoreSigned by key #1 for {}/test/app",
            s.registry.host()
        )),
        "{stderr:#?}"
    );
    for layer in &s.image.layers {
        let prefix = format!("enclave-boot: layer {}: ", &layer[7..19]);
        let line = stderr.iter().find(|l| l.starts_with(&prefix));
        assert!(
            line.is_some_and(|l| l.contains("decrypted")),
            "{prefix}: {stderr:#?}"
        );
    }
    assert!(!has("enclave-boot: error:"), "{stderr:#?}");

    // verdictd affirmed the enclave, then released the KEK.
    let (attested, released) = s.attested_then_released();
    assert!(
        attested.is_some() && released.is_some() && attested < released,
        "{attested:?} {released:?}: {}",
        s.kbs.log()
    );

    // No plaintext on the host: not in containerd's root or state (content store,
    // snapshots, bundles, rune's state, the CRI log), nor anywhere under /tmp and /var;
    // containerd holds no blob of the encrypted image either.
    let places = [Path::new("/tmp"), Path::new("/var")];
    assert_eq!(plaintext_on_host(&c, &s.marker), Vec::<String>::new());
    assert_eq!(traces.found(&places), Vec::<String>::new());
    let mut digests = vec![s.image.manifest_digest.as_str()];
    digests.extend(s.image.layers.iter().map(String::as_str));
    let found = test_support::image_traces(&[c.path()], &s.marker, &digests);
    assert!(found.is_empty(), "the image reached containerd: {found:?}");
    // The search's control: a copy in containerd's root is found.
    let leak = c.path().join("root/leak");
    std::fs::write(&leak, &s.marker).unwrap();
    assert_eq!(
        plaintext_on_host(&c, &s.marker),
        [leak.display().to_string()]
    );
    assert_eq!(
        traces.found(&places),
        [format!("plaintext in {}", leak.display())]
    );
    std::fs::remove_file(&leak).unwrap();

    client.must_remove_container(&ctr);
    remove_pod(&c, &client, &pod, &config);
    assert_eq!(s.finish(host.path()), Vec::<String>::new());
}
