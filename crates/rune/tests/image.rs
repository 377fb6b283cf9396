//! Confidential images, end to end: a real registry on loopback, an image pushed by the
//! real skopeo, and `rune run` of an enclave container whose program is that image,
//! pulled and unpacked inside the enclave by `enclave-boot` (statically linked, signed
//! with sim-sign) into a memory-backed root the host's bundle never holds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::image::{marker_layout, run_ok, signed_boot};
use common::*;
use test_support::registry::{Auth, Registry};
use test_support::{busybox_oci_tar, ImageBuilder};

const MARKER: &str = "confidential-marker-5b1e0c";

/// The marker image pushed by skopeo to `registry` as `test/app:v1`.
fn push_image(dir: &Path, registry: &Registry) -> String {
    let reference = format!("{}/test/app:v1", registry.host());
    skopeo_push(&format!("oci:{}", marker_layout(dir, MARKER)), &reference);
    reference
}

/// `skopeo copy` of `source` (a transport:reference) to the plain-HTTP `reference`.
fn skopeo_push(source: &str, reference: &str) {
    run_ok(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            source,
            &format!("docker://{reference}"),
        ],
    );
}

/// An enclave bundle whose image is `reference`, running `args`.
fn image_bundle(boot: &Path, reference: &str, registry: &Registry, args: &[&str]) -> Bundle {
    common::image::image_bundle(boot, reference, &registry.host(), args, &[])
}

/// `rune run` of `b` fails before the workload with docker's 125 ("the container could
/// not be prepared") and exactly one `enclave-boot:` failure line naming `naming`, and
/// leaves nothing behind. Returns that line.
fn fails_preparing(rune: &Rune, b: &Bundle, naming: &str) -> String {
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    // The workload never started.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{stderr}");
    assert!(!stderr.contains(" ready in "), "{stderr}");
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("enclave-boot: error:"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    assert!(failures[0].contains(naming), "{stderr}");
    assert!(leftovers(rune.root.path(), &id).is_empty());
    failures[0].to_string()
}

/// What every test here starts with: a private registry, a signed boot program, and a
/// rune with its own state root, all under one temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    registry: Registry,
    boot: PathBuf,
    rune: Rune,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
        let (boot, _) = signed_boot(dir.path());
        Setup {
            dir,
            registry,
            boot,
            rune: Rune::new(),
        }
    }

    /// Pushes the marker image (see [`push_image`]) and returns its reference.
    fn push(&self) -> String {
        push_image(self.dir.path(), &self.registry)
    }

    fn bundle(&self, reference: &str, args: &[&str]) -> Bundle {
        image_bundle(&self.boot, reference, &self.registry, args)
    }

    /// `rune run` of `b` prints the image's marker, exits 0 and leaves nothing; returns
    /// its stderr.
    fn runs_the_marker(&self, b: &Bundle) -> String {
        let id = unique_id("img");
        let out = self
            .rune
            .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{MARKER}\n"),
            "{stderr}"
        );
        assert_eq!(leftovers(self.rune.root.path(), &id), Vec::<String>::new());
        stderr
    }
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
    let t = Setup::new();
    let reference = t.push();
    let rune = &t.rune;

    // The image's own command (the boot program as the command means "no override").
    let stderr = t.runs_the_marker(&t.bundle(&reference, &["/.rune/enclave-boot"]));
    assert!(
        stderr.contains("enclave-boot: manifest sha256:"),
        "{stderr}"
    );
    // The marker layer holds one regular file (/etc/marker): counted in the singular.
    assert!(stderr.contains(" 1 file, "), "{stderr}");
    assert!(!stderr.contains(" 1 files"), "{stderr}");

    // The container's args override the image's Cmd, as docker's do; the program sees
    // the image's files, not the bundle's rootfs.
    let b = t.bundle(
        &reference,
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
    let t = Setup::new();
    let rune = &t.rune;
    let reference = format!("{}/test/absent:v1", t.registry.host());
    let b = t.bundle(&reference, &["/.rune/enclave-boot"]);
    fails_preparing(rune, &b, "absent");

    // A malformed reference is refused by create itself, before anything exists.
    let b = t.bundle("Bad Reference", &["/.rune/enclave-boot"]);
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

/// A plain-HTTP registry the container did not name in `ENCLAVE_IMAGE_INSECURE`, as a
/// new user first tries it: the one failure line gives skopeo's words for it (read from
/// skopeo) and the setting that allows it.
#[test]
fn a_plain_http_registry_without_the_setting_names_the_setting() {
    if !needs("a_plain_http_registry_without_the_setting_names_the_setting") {
        return;
    }
    let t = Setup::new();
    let reference = t.push();
    let skopeo_says = t.registry.skopeo_https_refusal().unwrap();
    let b = common::image::image_bundle(&t.boot, &reference, "", &["/.rune/enclave-boot"], &[]);
    let line = fails_preparing(&t.rune, &b, &skopeo_says);
    let host = t.registry.host();
    assert!(line.contains(&format!("{host}/test/app: ")), "{line}");
    assert!(
        line.contains(&format!(
            "to pull from {host} over plain HTTP, add it to ENCLAVE_IMAGE_INSECURE"
        )),
        "{line}"
    );
    assert!(!line.contains("attempts"), "retried: {line}");
}

/// Registry names resolve inside the enclave through the container's own `/etc/hosts`
/// and `/etc/resolv.conf` (docker and CRI bind-mount them), never the host's: the boot
/// program is static, and glibc 2.34+ has its `files` and `dns` lookups built in. Without
/// a hosts entry the name does not resolve, and the one failure line names it.
#[test]
fn registry_names_resolve_through_the_containers_hosts_file() {
    if !needs("registry_names_resolve_through_the_containers_hosts_file") {
        return;
    }
    let t = Setup::new();
    let by_ip = t.push();
    let name = format!("registry.rune.test:{}", t.registry.addr().port());
    let reference = by_ip.replacen(&t.registry.host(), &name, 1);
    let hosts = t.dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.1 registry.rune.test\n",
    )
    .unwrap();

    let named = |with_hosts: bool| {
        let mut b = t.bundle(&reference, &["/.rune/enclave-boot"]);
        for v in b.spec["process"]["env"].as_array_mut().unwrap() {
            if v.as_str().unwrap().starts_with("ENCLAVE_IMAGE_INSECURE=") {
                *v = format!("ENCLAVE_IMAGE_INSECURE={name}").into();
            }
        }
        if with_hosts {
            b.spec["mounts"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "destination": "/etc/hosts", "type": "bind",
                    "source": hosts, "options": ["rbind", "ro"]
                }));
        }
        b.save();
        b
    };

    t.runs_the_marker(&named(true));
    fails_preparing(&t.rune, &named(false), "registry.rune.test");
}

/// `rune exec` into a running image container runs in the image's root, inside the
/// enclave: the exec'd program sees the image's files.
#[test]
fn exec_runs_in_the_images_root() {
    if !needs("exec_runs_in_the_images_root") {
        return;
    }
    let t = Setup::new();
    let rune = &t.rune;
    let b = t.bundle(&t.push(), &["/bin/sleep", "60"]);
    let id = unique_id("img");
    let out = rune.cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pull finishes before the workload runs: wait for the image's files.
    let mut got = String::new();
    let ok = wait_until(std::time::Duration::from_secs(30), || {
        let out = rune.cmd(&["exec", &id, "/bin/cat", "/etc/marker"]);
        got = format!(
            "{} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    });
    assert!(ok, "{got}");
    assert!(got.starts_with(&format!("{MARKER}\n")), "{got}");
    rune.cmd(&["kill", &id, "KILL"]);
    wait_until(std::time::Duration::from_secs(10), || {
        rune.status(&id) == "stopped"
    });
    rune.cmd(&["delete", "--force", &id]);
    assert!(leftovers(rune.root.path(), &id).is_empty());
}

/// A host directory bind-mounted into the image's root (config.json `mounts`, as
/// `docker run -v` asks) is the container's, not the image's: the image's own
/// `/vol/from-image` (holding the marker) never reaches it — the mount covers the
/// image's directory, as it does over any image runc runs — and the workload sees the
/// volume's files. Afterwards the host directory holds what it held, and the marker is
/// nowhere in it.
#[test]
fn image_files_stay_off_a_bind_mounted_volume() {
    if !needs("image_files_stay_off_a_bind_mounted_volume") {
        return;
    }
    let t = Setup::new();
    let layout = t.dir.path().join("vol-layout");
    let source = ImageBuilder::new()
        .base(&busybox_oci_tar().unwrap())
        .file("etc/marker", format!("{MARKER}\n").as_bytes())
        .file("vol/from-image", format!("{MARKER}\n").as_bytes())
        .cmd(&["/bin/cat", "/etc/marker"])
        .build(&layout, "latest")
        .unwrap();
    let reference = format!("{}/test/vol:v1", t.registry.host());
    skopeo_push(&source, &reference);
    let volume = t.dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("precious"), "volume data\n").unwrap();
    let b = t
        .bundle(
            &reference,
            &[
                "/bin/sh",
                "-c",
                "cat /etc/marker; ls -A /vol; cat /vol/precious",
            ],
        )
        .bind(&volume, "/vol");
    let id = unique_id("img");
    let out = t
        .rune
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{MARKER}\nprecious\nvolume data\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    let names: Vec<_> = std::fs::read_dir(&volume)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["precious"]);
    assert_eq!(
        std::fs::read_to_string(volume.join("precious")).unwrap(),
        "volume data\n"
    );
    assert_eq!(
        test_support::marker_found(&[volume.as_path()], MARKER),
        Vec::<String>::new()
    );
    assert!(leftovers(t.rune.root.path(), &id).is_empty());
}

/// The root tmpfs is mounted `noswap` exactly where this kernel takes that option
/// (review16 G7: Linux 6.4+; Debian 12's 6.1 does not), as util-linux `mount -o noswap`
/// of a tmpfs on this host shows: the workload's `/proc/self/mounts` says so.
#[test]
fn the_root_is_noswap_where_the_kernel_takes_it() {
    if !needs("the_root_is_noswap_where_the_kernel_takes_it") {
        return;
    }
    let t = Setup::new();
    let probe = t.dir.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    let takes = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noswap", "tmpfs"])
        .arg(&probe)
        .output()
        .unwrap()
        .status
        .success();
    if takes {
        assert!(Command::new("umount")
            .arg(&probe)
            .status()
            .unwrap()
            .success());
    }
    let b = t.bundle(
        &t.push(),
        &[
            "/bin/awk",
            "$2 == \"/\" { print $1, $3, $4 }",
            "/proc/self/mounts",
        ],
    );
    let id = unique_id("img");
    let out = t
        .rune
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stdout.lines().last().unwrap_or("");
    assert!(root.starts_with("tmpfs tmpfs "), "{stdout}");
    let options: Vec<&str> = root.rsplit(' ').next().unwrap().split(',').collect();
    assert_eq!(options.contains(&"noswap"), takes, "{stdout}");
    assert!(leftovers(t.rune.root.path(), &id).is_empty());
}

/// The busybox image plus the attestation agent (and its libraries) at
/// `/bin/attestation-agent`, pushed by skopeo to `registry` as `test/agent:v1`.
fn push_agent_image(dir: &Path, registry: &Registry) -> String {
    let agent = release_bin("attestation-agent", "attestation-agent");
    let layout = dir.join("agent-layout");
    let source = ImageBuilder::new()
        .base(&busybox_oci_tar().unwrap())
        .executable("bin/attestation-agent", &std::fs::read(&agent).unwrap())
        .libraries_of(&agent)
        .unwrap()
        .build(&layout, "v1")
        .unwrap();
    let reference = format!("{}/test/agent:v1", registry.host());
    skopeo_push(&source, &reference);
    reference
}

/// The claims of an attestation token (its JWT payload).
fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// After the boot program hands over, the image's program keeps the enclave's evidence
/// socket: `attestation-agent extend`, `event-log` and attestation work, and its
/// evidence shows the handover. The log holds, in order: liberpal-sim's record of the
/// boot program's launch (CC MR 1: the host's command after `--`), the boot program's
/// `Kbs`, `PullImage` and `ImagePolicy`, its record of the workload's launch (CC MR 4, argv,
/// the image's `PATH` over the container's, `HOME` from the image's passwd, as docker
/// does), then the workload's own event; verdictd replays it into the signed registers
/// and affirms. A `rune exec`'d process is a launch too: the runtime records the boot
/// program started for it, and the boot program the process it becomes.
#[test]
fn the_workload_attests_after_the_handover_with_its_launch_recorded() {
    if !needs("the_workload_attests_after_the_handover_with_its_launch_recorded") {
        return;
    }
    let t = Setup::new();
    let rune = &t.rune;
    let reference = push_agent_image(t.dir.path(), &t.registry);
    let (_, boot_mr) = signed_boot(t.dir.path());
    let v = test_support::Verdictd::start(&t.dir.path().join("verdictd"), &boot_mr, &[]).unwrap();
    let script = format!(
        "attestation-agent extend --domain example.org --operation Loaded --content model && \
         attestation-agent event-log && attestation-agent --url {} token",
        v.url()
    );
    let args = ["/bin/sh", "-c", script.as_str()];
    let b = common::image::image_bundle(
        &t.boot,
        &reference,
        &t.registry.host(),
        &args,
        &[format!("ENCLAVE_KBS_URL={}", v.url())],
    );
    let id = unique_id("img");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}\n{}", v.log());
    assert!(leftovers(rune.root.path(), &id).is_empty());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    let boot = format!(
        r#"1 github.com/inclavare-containers/rune Launch {{"argv":["/.rune/enclave-boot","--image","{reference}","--kbs","{}","--insecure-registry","{}","--","/bin/sh","-c",{}],"cwd":"/","env":["#,
        v.url(),
        t.registry.host(),
        serde_json::Value::from(script.as_str())
    );
    assert!(lines[0].starts_with(&boot), "{}\n{boot}", lines[0]);
    assert_eq!(
        lines[1],
        format!(
            r#"4 github.com/inclavare-containers/rune Kbs {{"ca_sha256":null,"url":"{}"}}"#,
            v.url()
        )
    );
    assert!(
        lines[2]
            .starts_with("4 github.com/confidential-containers PullImage {\"digest\":\"sha256:"),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "4 github.com/inclavare-containers/rune ImagePolicy none"
    );
    let handover = format!(
        r#"4 github.com/inclavare-containers/rune Launch {{"argv":["/bin/sh","-c",{}],"cwd":"/","env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","TERM=xterm","HOME=/root"],"gid":0,"groups":[],"uid":0}}"#,
        serde_json::Value::from(script.as_str())
    );
    assert_eq!(lines[4], handover);
    // The boot program said so on its stderr, before the handover.
    assert!(
        stderr.contains(&format!(
            "enclave-boot: evidence records {}",
            &handover[2..]
        )),
        "{stderr}"
    );
    assert_eq!(lines[5], "4 example.org Loaded model");
    let claims = token_claims(lines[6]);
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "affirming", "{cpu0}");
    let sim = &cpu0["ear.veraison.annotated-evidence"]["sim"];
    assert_eq!(sim["sim_mr_enclave"], boot_mr.as_str());
    let events = sim["uefi_event_logs"].as_array().unwrap();
    assert_eq!(events.len(), 6, "{sim}");
    assert_eq!(
        events[4]["details"]["data"]["content"]["argv"],
        serde_json::json!(args)
    );
    assert!(events.iter().all(|e| e["digest_matches_event"] == true));
    assert_eq!(
        (
            sim["sim_rtmr0_count"].clone(),
            sim["sim_rtmr3_count"].clone()
        ),
        (1.into(), 5.into())
    );

    // `rune exec`: the runtime's record of the boot program it starts (CC MR 1), then
    // the boot program's of the process it becomes (CC MR 4), both before it runs.
    let b = common::image::image_bundle(
        &t.boot,
        &reference,
        &t.registry.host(),
        &["/bin/sleep", "60"],
        &[],
    );
    let id = unique_id("img");
    let out = rune.cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = String::new();
    let ok = wait_until(std::time::Duration::from_secs(30), || {
        let out = rune.cmd(&["exec", &id, "/bin/attestation-agent", "event-log"]);
        got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    });
    rune.cmd(&["delete", "--force", &id]);
    assert!(ok, "{got}");
    assert!(leftovers(rune.root.path(), &id).is_empty());
    let lines: Vec<&str> = got.lines().collect();
    let n = lines.len();
    assert!(n >= 4, "{got}");
    // The runtime's record of the exec (CC MR 1) comes before the boot program's record
    // of what it became (CC MR 4, the last line). Execs tried before the image was ready
    // leave their CC MR 1 records too, before or after the workload's own launch.
    let exec_at_mr1 = r#"1 github.com/inclavare-containers/rune Launch {"argv":["/.rune/enclave-boot","--exec","--","/bin/attestation-agent","event-log"],"cwd":"/","env":[],"#;
    assert!(
        lines[..n - 1].iter().any(|l| l.starts_with(exec_at_mr1)),
        "{got}"
    );
    assert!(
        lines[..n - 1].iter().any(|l| l.starts_with(
            r#"4 github.com/inclavare-containers/rune Launch {"argv":["/bin/sleep","60"]"#
        )),
        "{got}"
    );
    assert!(
        lines[n - 1].starts_with(
            r#"4 github.com/inclavare-containers/rune Launch {"argv":["/bin/attestation-agent","event-log"],"cwd":"/","env":["PATH="#
        ),
        "{got}"
    );
}

/// `ENCLAVE_IMAGE_MAX_LAYER_SIZE`: a layer larger than the limit is refused before its
/// download, in one line naming the layer, its size and the limit; at its exact size it
/// runs. The sizes come from the manifest as skopeo reads it from the registry. A
/// malformed limit is refused by create itself, before anything exists.
#[test]
fn a_layer_over_the_configured_limit_is_refused() {
    if !needs("a_layer_over_the_configured_limit_is_refused") {
        return;
    }
    let t = Setup::new();
    let reference = t.push();
    let raw = run_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let largest = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    let (size, digest) = (
        largest["size"].as_u64().unwrap(),
        largest["digest"].as_str().unwrap(),
    );
    let with_limit = |limit: &str| {
        common::image::image_bundle(
            &t.boot,
            &reference,
            &t.registry.host(),
            &["/.rune/enclave-boot"],
            &[format!("ENCLAVE_IMAGE_MAX_LAYER_SIZE={limit}")],
        )
    };
    fails_preparing(
        &t.rune,
        &with_limit(&(size - 1).to_string()),
        &format!(
            "{digest}: {size} bytes exceeds the limit of {} bytes",
            size - 1
        ),
    );
    t.runs_the_marker(&with_limit(&size.to_string()));

    let b = with_limit("12q");
    let id = unique_id("img");
    let out = t
        .rune
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let lines = error_messages(&String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("max layer size \"12q\""), "{lines:?}");
    assert!(leftovers(t.rune.root.path(), &id).is_empty());
}

/// `skopeo inspect --raw` of `reference` from the plain-HTTP registry.
fn skopeo_raw(reference: &str) -> Result<String, String> {
    test_support::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// The registry's log lines for blobs of `test/app`.
fn blob_requests(registry: &Registry) -> Vec<String> {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("/v2/test/app/blobs/"))
        .map(str::to_string)
        .collect()
}

/// A registry that serves other bytes for a manifest pinned by digest
/// (`app@sha256:…`): here another valid image's manifest, written over the stored one.
/// skopeo refuses it too; the enclave refuses it before any blob, in one line naming
/// the pinned digest and what the bytes hash to. The control: restored, it runs.
#[test]
fn a_manifest_that_differs_from_the_pinned_digest_is_refused() {
    if !needs("a_manifest_that_differs_from_the_pinned_digest_is_refused") {
        return;
    }
    let t = Setup::new();
    let tagged = t.push();
    let genuine = skopeo_raw(&tagged).unwrap();
    let pinned = test_support::sha256_digest(genuine.as_bytes());
    let evil = ImageBuilder::new()
        .base(&busybox_oci_tar().unwrap())
        .file("etc/marker", b"not the tenant's\n")
        .cmd(&["/bin/cat", "/etc/marker"])
        .build(&t.dir.path().join("evil"), "latest")
        .unwrap();
    let evil_ref = format!("{}/test/app:evil", t.registry.host());
    skopeo_push(&evil, &evil_ref);
    let swapped = skopeo_raw(&evil_ref).unwrap();
    let actual = test_support::sha256_digest(swapped.as_bytes());
    let stored = t.registry.blob_path(&pinned);
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), genuine);
    std::fs::write(&stored, &swapped).unwrap();

    let by_digest = format!("{}/test/app@{pinned}", t.registry.host());
    // skopeo's `inspect --raw` hands out the bytes unchecked; parsing them checks them.
    let skopeo_says = test_support::skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{by_digest}"),
    ])
    .unwrap_err();
    assert!(
        skopeo_says.contains("does not match") && skopeo_says.contains(&pinned),
        "{skopeo_says}"
    );
    let before = blob_requests(&t.registry);
    let line = fails_preparing(
        &t.rune,
        &t.bundle(&by_digest, &["/.rune/enclave-boot"]),
        &format!("manifest {pinned}: "),
    );
    assert!(
        line.contains(&format!("Expected {pinned}, got {actual}")),
        "{line}"
    );
    assert_eq!(blob_requests(&t.registry), before, "a blob was pulled");

    std::fs::write(&stored, &genuine).unwrap();
    t.runs_the_marker(&t.bundle(&by_digest, &["/.rune/enclave-boot"]));
}

/// A single-manifest image whose config says another architecture (arm64, as umoci
/// wrote it and skopeo reads it back) is refused in one line naming the platform found
/// and the one wanted, before any layer is fetched.
#[test]
fn an_image_for_another_platform_is_refused_naming_both() {
    if !needs("an_image_for_another_platform_is_refused_naming_both") {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipping an_image_for_another_platform_is_refused_naming_both: not x86_64");
        return;
    }
    let t = Setup::new();
    let arm = ImageBuilder::new()
        .base(&busybox_oci_tar().unwrap())
        .file("etc/marker", format!("{MARKER}\n").as_bytes())
        .cmd(&["/bin/cat", "/etc/marker"])
        .architecture("arm64")
        .build(&t.dir.path().join("arm"), "latest")
        .unwrap();
    let reference = format!("{}/test/app:arm64", t.registry.host());
    skopeo_push(&arm, &reference);
    let inspect: serde_json::Value = serde_json::from_str(
        &test_support::skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .unwrap(),
    )
    .unwrap();
    let found = format!(
        "{}/{}",
        inspect["Os"].as_str().unwrap(),
        inspect["Architecture"].as_str().unwrap()
    );
    assert_eq!(found, "linux/arm64");
    let raw: serde_json::Value = serde_json::from_str(&skopeo_raw(&reference).unwrap()).unwrap();
    let config = raw["config"]["digest"].as_str().unwrap();
    let before = t.registry.log().len();
    fails_preparing(
        &t.rune,
        &t.bundle(&reference, &["/.rune/enclave-boot"]),
        &format!(
            "{}/test/app: the image's platform ({found}, config {config}) does not match the wanted platform (linux/amd64)",
            t.registry.host()
        ),
    );
    let log = t.registry.log()[before..].to_string();
    assert!(log.contains(&format!("/blobs/{config}")), "{log}");
    for l in raw["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert!(!log.contains(&format!("/blobs/{d}")), "{d} was pulled");
    }
}
