//! Confidential images through containerd and the shim: `ctr run --runtime
//! io.containerd.rune.v2` of a small public boot image (busybox) whose enclave pulls
//! another image, named only by the `enclave.image` annotation (or `ENCLAVE_IMAGE`), from
//! a private `docker-registry` on loopback. rune's `enclave-boot` is installed beside a
//! copy of the PAL, as `make install` does, and signed with sim-sign; the shim's config
//! names that PAL. Afterwards the image's plaintext is nowhere in the private
//! containerd's directories: the host only ever held the boot image.
//!
//! The confidential case: an image the tenant encrypted and signed with our
//! `enclave-image` tool (KEK stored in a real HTTPS verdictd through its admin API,
//! cosign signature, `sigstoreSigned` policy held by verdictd), given by annotations
//! only; and the same image when verdictd's policy does not admit the enclave. Expected
//! values come from the tenant's marker, the registry's manifest and access log, and
//! verdictd's log (its appraisal status, what it released and when).

mod common;

use std::path::Path;

use common::*;
use test_support::registry::{Auth, Pushed, Registry};

/// The content of `/etc/marker` in the confidential image. Its Cmd prints it upper-cased,
/// so the marker itself never passes through containerd's or ctr's streams.
const MARKER: &str = "confidential-marker-shim-7d41a2";
/// busybox plus `/etc/marker`, Cmd `sh -c 'tr a-z A-Z < /etc/marker'`, pushed by
/// skopeo as `test/app:v1`. Returns it with the digests the boot image does not share
/// with it: the manifest, the config and the layer holding the marker. Its `/etc/hosts`
/// holds the marker too: `ctr run --net-host` bind-mounts the host's over it.
fn push_image(dir: &Path, registry: &Registry) -> (Pushed, Vec<String>) {
    let busybox = test_support::busybox_oci_tar().unwrap();
    let source = test_support::ImageBuilder::new()
        .base(&busybox)
        .file("etc/marker", format!("{MARKER}\n").as_bytes())
        .file("etc/hosts", format!("10.9.9.9 {MARKER}\n").as_bytes())
        .cmd(&["/bin/sh", "-c", "tr a-z A-Z < /etc/marker"])
        .build(&dir.join("layout"), "v1")
        .unwrap();
    let image = registry.push(&source, "test/app:v1").unwrap();
    let own = vec![
        image.manifest_digest.clone(),
        image.config_digest.clone(),
        image.layers.last().unwrap().clone(),
    ];
    (image, own)
}

/// `ctr run --rm --runtime rune-shim --net-host` (the registry is on the host's
/// loopback) with `extra` options, then `image id args`.
fn run_args<'a>(extra: &[&'a str], image: &'a str, id: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--rm", "--runtime", RUNTIME, "--net-host"];
    v.extend(extra);
    v.extend([image, id]);
    v.extend(args);
    v
}

/// `ctr run` arguments giving the confidential image `s` by annotations only
/// ([`confidential_annotations`]) to the boot image, in a sim enclave.
fn confidential_args(c: &Ctrd, s: &test_support::Confidential) -> Vec<String> {
    confidential_annotations(c, s)
        .into_iter()
        .flat_map(|(k, v)| ["--annotation".to_string(), format!("{k}={v}")])
        .chain(["--env".to_string(), "ENCLAVE_TYPE=sim".to_string()])
        .collect()
}

/// The `enclave-boot:` lines that report a failure (not progress).
fn boot_failures(stderr: &str) -> Vec<&str> {
    // Progress lines say what happens; a failure is `enclave-boot: error: …`.
    stderr
        .lines()
        .filter(|l| l.starts_with("enclave-boot: error:"))
        .collect()
}

#[test]
fn a_confidential_image_runs_through_the_shim_and_only_the_boot_image_reaches_the_host() {
    let test =
        "a_confidential_image_runs_through_the_shim_and_only_the_boot_image_reaches_the_host";
    if !needs(test) {
        return;
    }
    let c = Ctrd::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    let (image, own_digests) = push_image(dir.path(), &registry);
    let mr = install_boot(&c);
    import_boot_image(&c, dir.path(), "default");
    let want = format!("{}\n", MARKER.to_uppercase());

    // The annotation, no command: the boot image's Cmd asks for the image's own Cmd.
    let id = unique_id("ctrimg");
    let annotation = format!("enclave.image={}", image.reference);
    let insecure = format!("enclave.image.insecure={}", registry.host());
    let args = run_args(
        &[
            "--annotation",
            &annotation,
            "--annotation",
            &insecure,
            "--env",
            "ENCLAVE_TYPE=sim",
        ],
        BOOT_IMAGE,
        &id,
        &[],
    );
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 0, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, want, "{err}");
    // The manifest enclave-boot pulled is the one skopeo pushed.
    assert!(
        err.contains(&format!(
            "enclave-boot: manifest {} ",
            image.manifest_digest
        )),
        "{err}"
    );
    c.assert_clean(&id);

    // The variables instead, with a KBS URL, on the plain busybox image: the command
    // overrides the image's Cmd (docker's rule) and its exit code is the task's.
    let id = unique_id("ctrimg");
    let env_image = format!("ENCLAVE_IMAGE={}", image.reference);
    let env_insecure = format!("ENCLAVE_IMAGE_INSECURE={}", registry.host());
    // A real verdictd admitting the boot program: with a KBS, enclave-boot attests
    // before anything else, even for a plain image that needs no key.
    let verdictd = test_support::Verdictd::start(&dir.path().join("verdictd"), &mr, &[]).unwrap();
    let kbs = verdictd.url().to_string();
    let env_kbs = format!("ENCLAVE_KBS_URL={kbs}");
    let args = run_args(
        &[
            "--env",
            "ENCLAVE_TYPE=sim",
            "--env",
            &env_image,
            "--env",
            &env_insecure,
            "--env",
            &env_kbs,
        ],
        IMAGE,
        &id,
        &[
            "sh",
            "-c",
            "tr a-z A-Z < /etc/marker; test -e /bin/busybox && exit 3",
        ],
    );
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 3, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, want, "{err}");
    assert!(
        err.contains(&format!("enclave-boot: attesting to {kbs} (sim evidence)")),
        "{err}"
    );
    assert!(
        verdictd
            .find_event(&[("message", "attested"), ("status", "affirming")])
            .is_some(),
        "{}",
        verdictd.log()
    );
    drop(verdictd);
    c.assert_clean(&id);

    // containerd's content store and snapshots, its state, the shim's and rune's
    // directories: neither the marker nor the image's own blobs are anywhere.
    let digests: Vec<&str> = own_digests.iter().map(String::as_str).collect();
    let traces = test_support::image_traces(&[c.path()], MARKER, &digests);
    assert!(traces.is_empty(), "the image reached the host: {traces:?}");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!hosts.contains(MARKER), "{hosts}");

    // The same search finds the image once containerd itself pulls it.
    let (code, _, err) = c.ctr(&["images", "pull", "--plain-http", &image.reference]);
    assert_eq!(code, 0, "{err}");
    let traces = test_support::image_traces(&[c.path()], MARKER, &digests);
    assert!(
        traces.iter().any(|t| t.starts_with("marker in ")),
        "{traces:?}"
    );
    assert!(
        traces.iter().any(|t| t.starts_with("digest ")),
        "{traces:?}"
    );
}

#[test]
fn a_missing_or_malformed_image_fails_the_task_in_one_line_and_leaves_nothing() {
    let test = "a_missing_or_malformed_image_fails_the_task_in_one_line_and_leaves_nothing";
    if !needs(test) {
        return;
    }
    let c = Ctrd::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    install_boot(&c);
    let insecure = format!("enclave.image.insecure={}", registry.host());

    // Not in the registry: the task starts, enclave-boot fails in one line, 125.
    let id = unique_id("ctrimg");
    let annotation = format!("enclave.image={}/test/absent:v1", registry.host());
    let args = run_args(
        &[
            "--annotation",
            &annotation,
            "--annotation",
            &insecure,
            "--env",
            "ENCLAVE_TYPE=sim",
        ],
        IMAGE,
        &id,
        &["/.rune/enclave-boot"],
    );
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 125, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, "");
    let failures = boot_failures(&err);
    assert_eq!(failures.len(), 1, "{err}");
    assert!(failures[0].contains("test/absent"), "{err}");
    c.ctr(&["container", "delete", &id]);
    c.assert_clean(&id);

    // Refused by rune's create through the shim, one line naming the mistake.
    let cases = [
        (
            vec![
                "--annotation",
                "enclave.image=Bad Reference",
                "--env",
                "ENCLAVE_TYPE=sim",
            ],
            "enclave image: reference \"Bad Reference\"",
        ),
        (
            vec![
                "--annotation",
                "enclave.image=127.0.0.1:1/test/app:v1",
                "--env",
                "ENCLAVE_TYPE=sim",
                "--env",
                "ENCLAVE_KBS_URL=ftp://kbs",
            ],
            "enclave image: KBS URL \"ftp://kbs\": must start with http:// or https://",
        ),
        (
            vec!["--annotation", "enclave.image=127.0.0.1:1/test/app:v1"],
            "ENCLAVE_IMAGE needs an enclave (set ENCLAVE_TYPE, e.g. sim)",
        ),
        (
            vec![
                "--annotation",
                "enclave.image=127.0.0.1:1/test/app:v1",
                "--env",
                "RUNE_CARRIER=occlum",
            ],
            "RUNE_CARRIER=occlum cannot take enclave.image",
        ),
    ];
    for (extra, want) in cases {
        let id = unique_id("ctrbad");
        let args = run_args(&extra, IMAGE, &id, &["/.rune/enclave-boot"]);
        let err = c.run_fails(&id, &args);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(want)).collect();
        assert_eq!(lines.len(), 1, "{want}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// containerd's CRI plugin copies the pod annotations its `pod_annotations` globs match
/// into the sandbox (pause) container's spec too; that container stays a plain one.
#[test]
fn a_cri_sandbox_container_stays_plain_under_the_pods_image_annotation() {
    if !root_or_skip("a_cri_sandbox_container_stays_plain_under_the_pods_image_annotation") {
        return;
    }
    let c = Ctrd::start();
    let id = unique_id("sandbox");
    let args = run_args(
        &[
            "--annotation",
            "io.kubernetes.cri.container-type=sandbox",
            "--annotation",
            "enclave.image=127.0.0.1:1/test/app:v1",
            "--annotation",
            "enclave.type=sim",
        ],
        IMAGE,
        &id,
        &["sh", "-c", "test -e /bin/busybox && echo plain; exit 4"],
    );
    let (code, out, err) = c.ctr(&args);
    assert_eq!((code, out.as_str()), (4, "plain\n"), "{err}\n{}", c.log());
    c.assert_clean(&id);
}

/// Asserts that containerd keeps nothing of container `id`: no task, no container, no
/// snapshot, and (`Ctrd::assert_clean`) no process, mount, cgroup or rune state.
fn assert_gone(c: &Ctrd, id: &str) {
    c.assert_clean(id);
    for what in [
        &["task", "ls"][..],
        &["containers", "ls"],
        &["snapshots", "ls"],
    ] {
        let (code, out, err) = c.ctr(what);
        assert_eq!(code, 0, "{what:?}: {err}");
        assert!(!out.contains(id), "{what:?}: {out}");
    }
}

#[test]
fn a_tool_made_confidential_image_runs_through_the_shim_with_its_key_from_verdictd() {
    let test = "a_tool_made_confidential_image_runs_through_the_shim_with_its_key_from_verdictd";
    if !needs(test) {
        return;
    }
    let c = Ctrd::start();
    let mr = install_boot(&c);
    let host = tempfile::tempdir().unwrap();
    import_boot_image(&c, host.path(), "default");
    let s = test_support::Confidential::start(host.path(), &mr).unwrap();

    let id = unique_id("ctrkbs");
    let extra = confidential_args(&c, &s);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (code, out, err) = c.ctr(&run_args(&extra, BOOT_IMAGE, &id, &[]));
    // The image's Cmd prints what the tenant wrote, upper-cased.
    assert_eq!(code, 0, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, format!("{}\n", s.marker.to_uppercase()), "{err}");
    let short = |d: &str| d[7..19].to_string();
    assert!(
        err.contains(&format!(
            "enclave-boot: manifest {} ",
            s.image.manifest_digest
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "enclave-boot: signature verified: sigstoreSigned by key #1 for {}/test/app",
            s.registry.host()
        )),
        "{err}"
    );
    for layer in &s.image.layers {
        let prefix = format!("enclave-boot: layer {}: ", short(layer));
        let line = err.lines().find(|l| l.starts_with(&prefix));
        assert!(
            line.is_some_and(|l| l.contains("decrypted")),
            "{prefix}: {err}"
        );
    }
    // verdictd affirmed the enclave before it released the policy and the KEK.
    let (attested, released) = s.attested_then_released();
    assert!(
        attested.is_some() && released.is_some() && attested < released,
        "{attested:?} {released:?}: {}",
        s.kbs.log()
    );
    assert_gone(&c, &id);

    // The plaintext is nowhere on the host; containerd holds no blob of the image.
    assert_eq!(plaintext_on_host(&c, &s.marker), Vec::<String>::new());
    let mut digests = vec![s.image.manifest_digest.as_str()];
    digests.extend(s.image.layers.iter().map(String::as_str));
    let traces = test_support::image_traces(&[c.path()], &s.marker, &digests);
    assert!(
        traces.is_empty(),
        "the image reached containerd: {traces:?}"
    );
    // The search's control: a copy in containerd's root is found.
    let leak = c.path().join("root/leak");
    std::fs::write(&leak, &s.marker).unwrap();
    assert_eq!(
        plaintext_on_host(&c, &s.marker),
        [leak.display().to_string()]
    );
    std::fs::remove_file(&leak).unwrap();

    assert_eq!(s.finish(host.path()), Vec::<String>::new());
}

#[test]
fn an_enclave_verdictd_refuses_gets_no_key_through_the_shim_and_pulls_nothing() {
    let test = "an_enclave_verdictd_refuses_gets_no_key_through_the_shim_and_pulls_nothing";
    if !needs(test) {
        return;
    }
    let c = Ctrd::start();
    install_boot(&c);
    let host = tempfile::tempdir().unwrap();
    import_boot_image(&c, host.path(), "default");
    // verdictd admits another program than the installed boot program.
    let other = "ab".repeat(32);
    let s = test_support::Confidential::start(host.path(), &other).unwrap();
    let blobs = s.blob_requests();

    let id = unique_id("ctrkbs");
    let extra = confidential_args(&c, &s);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (code, out, err) = c.ctr(&run_args(&extra, BOOT_IMAGE, &id, &[]));
    assert_eq!((code, out.as_str()), (125, ""), "{err}\n{}", c.log());
    // verdictd refused the enclave: no key, no layer.
    s.assert_refused_before_the_pull(&err, &blobs);
    c.ctr(&["container", "delete", &id]);
    assert_gone(&c, &id);
    assert_eq!(plaintext_on_host(&c, &s.marker), Vec::<String>::new());
    assert_eq!(s.finish(host.path()), Vec::<String>::new());
}
