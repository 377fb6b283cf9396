//! Confidential images end to end with keys from a real `verdictd`: encrypted (and
//! signed) images pushed to a real registry on loopback, run by `rune run` in a sim
//! enclave whose boot program (`enclave-boot`, signed with sim-sign) attests to verdictd,
//! gets the keys and the signature policy as KBS resources only after verdictd's policy
//! admitted its measurement, and pulls, verifies, decrypts and unpacks inside.
//!
//! The tenant's side (the plaintext image, keys, GPG homes) lives under `target/`, as
//! on another machine; the host's side (registry storage, verdictd, bundles, rune's
//! state, the lookaside store) lives in a temporary directory under /tmp. Each image
//! carries a random marker: after every run, it must be found nowhere in the bundle,
//! rune's state, /tmp or /var.
//!
//! Expected values come from the real peers and the specs: the marker the tenant wrote,
//! digests and media types read back from the registry, skopeo's own verdicts on the
//! same images and policy (containers/image), ocicrypt's error words (images.md §1.8),
//! docker's exit status 125 for a container that could not be prepared.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::image::*;
use common::*;
use serde_json::Value;
use test_support::registry::{Auth, Registry};
use test_support::{marker_found, random_marker, PlaintextTraces, Verdictd};

/// The KEK's resource, as the tenant names it in the packets.
const KID: &str = "kbs:///default/image-kek/app";
const KEK_RESOURCE: &str = "default/image-kek/app";
const JWE_KEY: &str = "kbs:///default/image-key/jwe";
const POLICY: &str = "kbs:///default/image-policy/containers";
const GPG_KEY: &str = "kbs:///default/image-policy/gpg";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn needs(test: &str, tools: &[&str]) -> bool {
    root_or_skip(test)
        && ["skopeo", "docker-registry", "umoci"]
            .iter()
            .chain(tools)
            .all(|t| tool_or_skip(test, &format!("/usr/bin/{t}")))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b
}

/// What one `rune run` gave.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// One test's world.
struct Bed {
    tenant: tempfile::TempDir,
    host: tempfile::TempDir,
    marker: String,
    /// The marker, a run of its plaintext layer blob and the layer's digests (compressed
    /// and diff_id): what must be nowhere on the host after a run.
    traces: PlaintextTraces,
    /// `<layout>:latest` of the tenant's plaintext image.
    image: String,
    registry: Registry,
    boot: PathBuf,
    /// The boot program's measurement: what verdictd is told to admit.
    mr: String,
    rune: Rune,
}

impl Bed {
    fn new() -> Bed {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let tenant = tempfile::Builder::new()
            .prefix("tenant")
            .tempdir_in(target)
            .unwrap();
        let host = tempfile::tempdir().unwrap();
        let marker = random_marker();
        let image = marker_layout(tenant.path(), &marker);
        let mut traces = PlaintextTraces::of_layout(
            Path::new(image.trim_end_matches(":latest")),
            "latest",
            &marker,
        )
        .unwrap();
        // The whole tenant side is the tenant's (its layout, keys and the trees it
        // extracts to compare): never a trace, even where a scan of /tmp passes it (a
        // clone of the repository under /tmp).
        traces.source = tenant.path().canonicalize().unwrap();
        let registry = Registry::start(&host.path().join("registry"), Auth::None).unwrap();
        let (boot, mr) = signed_boot(host.path());
        Bed {
            tenant,
            host,
            marker,
            traces,
            image,
            registry,
            boot,
            mr,
            rune: Rune::new(),
        }
    }

    fn tenant(&self, name: &str) -> PathBuf {
        self.tenant.path().join(name)
    }

    fn host(&self, name: &str) -> PathBuf {
        self.host.path().join(name)
    }

    /// The layout directory of the tenant's image.
    fn layout(&self) -> PathBuf {
        PathBuf::from(self.image.trim_end_matches(":latest"))
    }

    /// `skopeo copy [flags] oci:<image> docker://<registry>/test/app:<tag>`; returns the
    /// reference.
    fn push(&self, tag: &str, env: &[(&str, &Path)], flags: &[&str]) -> String {
        let reference = format!("{}/test/app:{tag}", self.registry.host());
        let (src, dest) = (
            format!("oci:{}", self.image),
            format!("docker://{reference}"),
        );
        let args = [
            &["copy", "-q", "--dest-tls-verify=false"][..],
            flags,
            &[&src, &dest],
        ]
        .concat();
        test_support::skopeo_env(env, &args).unwrap();
        reference
    }

    /// The manifest the registry serves for `tag`: its bytes, parsed.
    fn manifest(&self, tag: &str) -> Value {
        let r = test_support::http::request(
            self.registry.addr(),
            "GET",
            &format!("/v2/test/app/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `rune run` of an enclave container whose image is `reference` (its own command),
    /// with `env`; checks that the container left nothing and that the marker is nowhere
    /// on the host.
    fn run(&self, reference: &str, env: &[String]) -> Outcome {
        self.run_args(reference, &["/.rune/enclave-boot"], env)
    }

    /// [`Bed::run`] with the container's `process.args` (overriding the image's command).
    fn run_args(&self, reference: &str, args: &[&str], env: &[String]) -> Outcome {
        let b = image_bundle(&self.boot, reference, &self.registry.host(), args, env);
        let id = unique_id("imgkbs");
        let out = output_via_files(
            Command::new(RUNE)
                .env("INCLAVARE_SIM_PLATFORM_DIR", self.host("sim-platform"))
                .arg("--root")
                .arg(self.rune.root.path())
                .args(["run", "--bundle", b.path().to_str().unwrap(), &id]),
        );
        assert_eq!(leftovers(self.rune.root.path(), &id), Vec::<String>::new());
        let found = self.traces.found(&[
            b.path(),
            self.rune.root.path(),
            Path::new("/tmp"),
            Path::new("/var"),
        ]);
        assert_eq!(
            found,
            Vec::<String>::new(),
            "the plaintext reached the host"
        );
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that the workload ran and printed the marker.
    fn assert_ran(&self, out: &Outcome) {
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(out.stdout, format!("{}\n", self.marker), "{}", out.stderr);
    }

    /// Stops everything and checks that nothing is left under either side.
    fn finish(self) {
        let (tenant, host) = (self.tenant, self.host);
        drop(self.registry);
        for dir in [tenant.path(), host.path()] {
            assert_eq!(test_support::leftovers(dir), Vec::<String>::new());
        }
    }
}

/// Asserts a refusal: docker's 125, the workload not started (no output, no hand-over),
/// exactly one error line, holding every string of `want`; returns that line.
fn refused(out: &Outcome, want: &[&str]) -> String {
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert_eq!(out.stdout, "", "the workload ran: {}", out.stderr);
    assert!(!out.stderr.contains(" ready in "), "{}", out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("enclave-boot: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    for w in want {
        assert!(errors[0].contains(w), "{w:?} not in {:?}", errors[0]);
    }
    errors[0].to_string()
}

fn kbs_env(kbs: &Verdictd) -> String {
    format!("ENCLAVE_KBS_URL={}", kbs.url())
}

/// Requests for blobs of `test/app` the registry logged.
fn blob_requests(registry: &Registry) -> Vec<String> {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("/v2/test/app/blobs/"))
        .map(str::to_string)
        .collect()
}

/// The tenant's CoCo-encrypted image (every layer, KEK `kek` named by [`KID`]) pushed as
/// `tag`; returns the reference and the manifest the registry serves.
fn push_kek_image(bed: &Bed, kek: &[u8], tag: &str) -> (String, Value) {
    test_support::encrypt_layout_with_kek(&bed.layout(), "latest", kek, KID).unwrap();
    let reference = bed.push(tag, &[], &[]);
    let manifest = bed.manifest(tag);
    // What the registry holds is ciphertext, each layer naming the KEK's resource.
    for l in manifest["layers"].as_array().unwrap() {
        assert!(
            l["mediaType"].as_str().unwrap().ends_with("+encrypted"),
            "{l}"
        );
        let packet = base64::engine::general_purpose::STANDARD
            .decode(
                l["annotations"]["org.opencontainers.image.enc.keys.provider.attestation-agent"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let packet: Value = serde_json::from_slice(&packet).unwrap();
        assert_eq!(packet["kid"], KID);
    }
    (reference, manifest)
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_kek_encrypted_image_runs_with_its_key_from_verdictd() {
    if !needs("a_kek_encrypted_image_runs_with_its_key_from_verdictd", &[]) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (reference, manifest) = push_kek_image(&bed, &kek, "kek");
    let kbs = Verdictd::start(&bed.host("verdictd"), &bed.mr, &[(KEK_RESOURCE, &kek)]).unwrap();

    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    bed.assert_ran(&out);
    assert!(out.stderr.contains("attesting to"), "{}", out.stderr);
    for digest in layer_digests(&manifest) {
        let line = format!("enclave-boot: layer {}: ", &digest[7..19]);
        let l = out.stderr.lines().find(|l| l.starts_with(&line));
        assert!(
            l.is_some_and(|l| l.contains("decrypted")),
            "{line}: {}",
            out.stderr
        );
    }
    // The scan's controls: a plaintext copy left on the host is found, and so are a copy
    // of the compressed layer blob (umoci's, from the tenant's layout) and a store entry
    // named by the layer's diff_id (the config umoci wrote).
    let leak = bed.host("leak");
    std::fs::write(&leak, format!("{}\n", bed.marker)).unwrap();
    assert_eq!(
        marker_found(&[Path::new("/tmp"), Path::new("/var")], &bed.marker),
        [leak.display().to_string()]
    );
    let scan = || bed.traces.found(&[Path::new("/tmp"), Path::new("/var")]);
    assert_eq!(scan(), [format!("plaintext in {}", leak.display())]);
    let [blob, diff_id] = &bed.traces.digests[..] else {
        panic!("{:?}", bed.traces.digests)
    };
    let gz = bed.layout().join("blobs/sha256").join(&blob[7..]);
    std::fs::copy(&gz, &leak).unwrap();
    assert!(
        !String::from_utf8_lossy(&std::fs::read(&leak).unwrap()).contains(&bed.marker),
        "the blob is compressed"
    );
    assert_eq!(scan(), [format!("plaintext in {}", leak.display())]);
    std::fs::remove_file(&leak).unwrap();
    let store = bed.host(&format!("store/{}", &diff_id[7..]));
    std::fs::create_dir_all(&store).unwrap();
    assert_eq!(
        scan(),
        [format!(
            "digest {} names {}",
            &diff_id[7..],
            store.display()
        )]
    );
    std::fs::remove_dir_all(bed.host("store")).unwrap();
    let log = kbs.log();
    assert!(
        log.contains("released") && log.contains(KEK_RESOURCE),
        "{log}"
    );
    drop(kbs);
    bed.finish();
}

#[test]
fn a_refused_enclave_gets_no_key_and_pulls_no_layer() {
    if !needs("a_refused_enclave_gets_no_key_and_pulls_no_layer", &[]) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (reference, manifest) = push_kek_image(&bed, &kek, "kek");
    // verdictd admits another program: the boot program's evidence is contraindicated,
    // and the `affirming` resource policy releases nothing to it.
    let other = hex::encode(random::<32>());
    let kbs = Verdictd::start(&bed.host("verdictd"), &other, &[(KEK_RESOURCE, &kek)]).unwrap();
    let before = blob_requests(&bed.registry);

    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    let line = refused(&out, &[KID, "401", "denies"]);
    assert!(
        line.starts_with("enclave-boot: error: KBS: layer key "),
        "{line}"
    );
    // The line and verdictd's log name the claim, the value found (the boot program's
    // measurement as sim-sign computed it) and the reference values it is not among.
    // Said once (verdictd's measurement gate and its rats policy both refuse it).
    let why = format!("{}, not among the reference values", bed.mr);
    assert!(
        line.contains(&why) && line.contains(&other) && line.matches("not among").count() == 1,
        "{line}"
    );
    assert!(
        kbs.events()
            .iter()
            .any(|e| e["fields"]["message"] == "attested"
                && e["fields"]["reasons"]
                    .as_str()
                    .is_some_and(|r| r.contains(&why))),
        "{}",
        kbs.log()
    );
    assert_eq!(
        blob_requests(&bed.registry),
        before,
        "a layer or config was pulled"
    );
    assert!(!kbs.log().contains("released"), "{}", kbs.log());
    drop(kbs);

    // The control: admitted, the same enclave gets the key and pulls every layer, and
    // the registry's log shows it.
    let kbs = Verdictd::start(&bed.host("admits"), &bed.mr, &[(KEK_RESOURCE, &kek)]).unwrap();
    bed.assert_ran(&bed.run(&reference, &[kbs_env(&kbs)]));
    let pulled = blob_requests(&bed.registry);
    for digest in layer_digests(&manifest) {
        assert!(
            pulled[before.len()..].iter().any(|l| l.contains(&digest)),
            "{digest} not in {pulled:?}"
        );
    }
    drop(kbs);
    bed.finish();
}

#[test]
fn a_wrong_or_missing_kek_is_named_with_the_layer_and_kid() {
    if !needs(
        "a_wrong_or_missing_kek_is_named_with_the_layer_and_kid",
        &[],
    ) {
        return;
    }
    let bed = Bed::new();
    let (reference, manifest) = push_kek_image(&bed, &random::<32>(), "kek");
    let first = &layer_digests(&manifest)[0];
    let before = blob_requests(&bed.registry);

    // verdictd holds another KEK under that resource: the packet's A256GCM tag fails.
    let wrong = random::<32>();
    let kbs = Verdictd::start(&bed.host("wrong"), &bed.mr, &[(KEK_RESOURCE, &wrong)]).unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    let line = refused(&out, &[]);
    assert_eq!(
        line,
        format!("enclave-boot: error: layer {first}: no suitable key unwrapper found or none of the private keys could be used for decryption: provider.attestation-agent[0] (kid {KID}, A256GCM): wrong KEK: A256GCM tag mismatch")
    );
    drop(kbs);

    // verdictd does not hold it at all.
    let kbs = Verdictd::start(&bed.host("none"), &bed.mr, &[]).unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    refused(&out, &["KBS: layer key ", KID, "not found"]);
    drop(kbs);

    // No KBS configured at all.
    let out = bed.run(&reference, &[]);
    refused(&out, &[KID, "ENCLAVE_KBS_URL"]);

    assert_eq!(blob_requests(&bed.registry), before, "a blob was pulled");
    bed.finish();
}

#[test]
fn a_flipped_ciphertext_byte_is_refused_before_its_files_are_visible() {
    if !needs(
        "a_flipped_ciphertext_byte_is_refused_before_its_files_are_visible",
        &[],
    ) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (reference, manifest) = push_kek_image(&bed, &kek, "kek");
    let kbs = Verdictd::start(&bed.host("verdictd"), &bed.mr, &[(KEK_RESOURCE, &kek)]).unwrap();
    let layers = layer_digests(&manifest);
    let (base, marker_layer) = (&layers[0], &layers[1]);

    // 1. The registry serves a flipped byte under the manifest's digest: the download's
    //    digest check refuses it, naming what the bytes hash to.
    let stored = bed.registry.blob_path(marker_layer);
    let genuine = std::fs::read(&stored).unwrap();
    let mut flipped = genuine.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&stored, &flipped).unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    let actual = test_support::sha256_digest(&flipped);
    let line = refused(
        &out,
        &[
            &format!("blob {marker_layer}: digest mismatch"),
            &format!("hashes to {actual}"),
        ],
    );
    // The layer below it was applied; nothing of the tampered one was.
    assert!(out.stderr.contains(&format!("layer {}: ", &base[7..19])));
    assert!(
        !out.stderr
            .contains(&format!("layer {}: ", &marker_layer[7..19])),
        "{line}"
    );
    std::fs::write(&stored, &genuine).unwrap();

    // 2. A registry that also rewrites the (unsigned) manifest to the tampered blob's
    //    digest: every digest holds, and the layer's HMAC (ocicrypt's encrypt-then-MAC
    //    over the ciphertext) refuses it — not the corrupt gzip it decrypts to.
    let tampered = bed.registry.put_blob("test/app", &flipped).unwrap();
    let mut m = manifest.clone();
    m["layers"][1]["digest"] = tampered.clone().into();
    bed.registry
        .put_manifest(
            "test/app",
            "tampered",
            OCI_MANIFEST,
            &serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
    let out = bed.run(
        &format!("{}/test/app:tampered", bed.registry.host()),
        &[kbs_env(&kbs)],
    );
    let line = refused(&out, &[]);
    assert_eq!(
        line,
        format!("enclave-boot: error: layer {tampered}: HMAC mismatch: the encrypted layer was altered or was not made with this key")
    );
    assert!(!out
        .stderr
        .contains(&format!("layer {}: ", &tampered[7..19])));

    // The genuine image still runs.
    bed.assert_ran(&bed.run(&reference, &[kbs_env(&kbs)]));
    drop(kbs);
    bed.finish();
}

/// An RSA key pair made by openssl in `dir`: `<name>.pem` (PKCS#8) and `<name>.pub`.
fn rsa_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub")),
    );
    run_ok(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    run_ok(
        "openssl",
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    (key, public)
}

#[test]
fn a_skopeo_jwe_image_runs_with_its_private_key_from_verdictd() {
    if !needs(
        "a_skopeo_jwe_image_runs_with_its_private_key_from_verdictd",
        &["openssl"],
    ) {
        return;
    }
    let bed = Bed::new();
    let (key, public) = rsa_pair(bed.tenant.path(), "jwe");
    let (other, _) = rsa_pair(bed.tenant.path(), "other");
    let reference = bed.push(
        "jwe",
        &[],
        &["--encryption-key", &format!("jwe:{}", public.display())],
    );
    let manifest = bed.manifest("jwe");
    let first = &layer_digests(&manifest)[0];
    let keys = format!("ENCLAVE_IMAGE_DECRYPTION_KEYS={JWE_KEY}");

    let pem = std::fs::read(&key).unwrap();
    let kbs = Verdictd::start(
        &bed.host("verdictd"),
        &bed.mr,
        &[("default/image-key/jwe", &pem)],
    )
    .unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs), keys.clone()]);
    bed.assert_ran(&out);
    assert!(
        kbs.log().contains("released") && kbs.log().contains("default/image-key/jwe"),
        "{}",
        kbs.log()
    );

    // Without the key: ocicrypt's words, the layer and the recipient skopeo wrote
    // (`{"alg":"RSA-OAEP","enc":"A256GCM"}`, images.md §1.6).
    let out = bed.run(&reference, &[kbs_env(&kbs)]);
    let line = refused(&out, &[]);
    assert_eq!(
        line,
        format!("enclave-boot: error: layer {first}: missing private key needed for decryption: jwe[0] recipient[0] (alg RSA-OAEP): no private key configured")
    );
    drop(kbs);

    // Another RSA key: refused, as skopeo refuses it.
    let wrong = std::fs::read(&other).unwrap();
    let kbs = Verdictd::start(
        &bed.host("wrong"),
        &bed.mr,
        &[("default/image-key/jwe", &wrong)],
    )
    .unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs), keys.clone()]);
    let line = refused(
        &out,
        &[
            &format!("layer {first}: "),
            "no suitable key unwrapper found or none of the private keys could be used for decryption",
            "RSA-OAEP",
        ],
    );
    let skopeo = test_support::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--decryption-key",
        other.to_str().unwrap(),
        &format!("docker://{reference}"),
        &format!("oci:{}:out", bed.tenant("skopeo-out").display()),
    ])
    .unwrap_err();
    // ocicrypt's own words (helpers.go decryptLayerKeyOptsData), as skopeo prints them.
    let words =
        "no suitable key unwrapper found or none of the private keys could be used for decryption";
    assert!(
        skopeo.contains(words) && line.contains(words),
        "skopeo: {skopeo} / ours: {line}"
    );

    // Not a key at all under that resource.
    drop(kbs);
    let kbs = Verdictd::start(
        &bed.host("garbage"),
        &bed.mr,
        &[("default/image-key/jwe", b"not a key")],
    )
    .unwrap();
    let out = bed.run(&reference, &[kbs_env(&kbs), keys]);
    refused(&out, &[&format!("decryption key {JWE_KEY}: private key: ")]);
    drop(kbs);
    bed.finish();
}

/// An encrypted `tar+zstd` image end to end: image-rs cannot decrypt
/// `tar+zstd+encrypted` (images.md §1.1, §8.6); skopeo writes it (zstd by
/// `--dest-compress-format zstd`, then JWE), the registry serves it, and the enclave
/// runs it with its key from verdictd. What the workload sees is what GNU tar extracts
/// from the plaintext zstd layers (`zstd -dc | tar -x`, in order): the same regular
/// files with the same content (`sha256sum`), mode, owner, size and link count (`stat`),
/// and the same symlinks (`readlink`), each printed by the image's busybox inside and by
/// coreutils on the tenant's side.
#[test]
fn a_skopeo_zstd_encrypted_image_runs_with_its_key_from_verdictd() {
    if !needs(
        "a_skopeo_zstd_encrypted_image_runs_with_its_key_from_verdictd",
        &["openssl", "zstd", "tar"],
    ) {
        return;
    }
    let bed = Bed::new();
    let (key, public) = rsa_pair(bed.tenant.path(), "jwe");
    let zstd = bed.tenant("zstd");
    test_support::skopeo(&[
        "copy",
        "-q",
        "--dest-compress-format",
        "zstd",
        &format!("oci:{}", bed.image),
        &format!("oci:{}:latest", zstd.display()),
    ])
    .unwrap();
    let reference = format!("{}/test/app:zstd", bed.registry.host());
    test_support::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--encryption-key",
        &format!("jwe:{}", public.display()),
        &format!("oci:{}:latest", zstd.display()),
        &format!("docker://{reference}"),
    ])
    .unwrap();
    let manifest = bed.manifest("zstd");
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
            "{l}"
        );
    }

    // The tenant's expectation: the plaintext zstd layers extracted by GNU tar.
    let plain: Value = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(zstd.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0]["digest"].as_str().unwrap();
        serde_json::from_slice(
            &std::fs::read(zstd.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap(),
        )
        .unwrap()
    };
    let tree = bed.tenant("tree");
    std::fs::create_dir(&tree).unwrap();
    for l in plain["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let blob = zstd
            .join("blobs/sha256")
            .join(&l["digest"].as_str().unwrap()["sha256:".len()..]);
        run_ok(
            "sh",
            &[
                "-c",
                "zstd -dc \"$1\" | tar -x -C \"$2\"",
                "sh",
                blob.to_str().unwrap(),
                tree.to_str().unwrap(),
            ],
        );
    }
    // Every regular file and symlink (sorted); one name per inode for the hashes.
    let (mut files, mut links) = (Vec::new(), Vec::new());
    let mut inodes = std::collections::BTreeSet::new();
    let mut unique = Vec::new();
    let mut stack = vec![tree.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                files.push(p.strip_prefix(&tree).unwrap().display().to_string());
            } else if m.file_type().is_symlink() {
                links.push(p.strip_prefix(&tree).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    links.sort();
    for f in &files {
        use std::os::unix::fs::MetadataExt;
        if inodes.insert(std::fs::metadata(tree.join(f)).unwrap().ino()) {
            unique.push(f.clone());
        }
    }
    assert!(files.contains(&"etc/marker".to_string()), "{files:?}");
    // Run in the image's root inside, in the extracted tree on the tenant's side.
    let listing = "cd \"${ROOT:-/}\" && sha256sum $H && stat -c '%a %u %g %s %h %n' $F \
                   && for l in $L; do echo \"$l -> $(readlink \"$l\")\"; done";
    let script = format!("cat /etc/marker && {listing}");
    let (h, f, l) = (unique.join(" "), files.join(" "), links.join(" "));
    let expected = {
        let out = Command::new("sh")
            .args(["-c", listing])
            .env("ROOT", &tree)
            .env("H", &h)
            .env("F", &f)
            .env("L", &l)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}\n{}", bed.marker, String::from_utf8(out.stdout).unwrap())
    };

    let pem = std::fs::read(&key).unwrap();
    let kbs = Verdictd::start(
        &bed.host("verdictd"),
        &bed.mr,
        &[("default/image-key/jwe", &pem)],
    )
    .unwrap();
    let out = bed.run_args(
        &reference,
        &["/bin/sh", "-c", &script],
        &[
            kbs_env(&kbs),
            format!("ENCLAVE_IMAGE_DECRYPTION_KEYS={JWE_KEY}"),
            format!("H={h}"),
            format!("F={f}"),
            format!("L={l}"),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, expected, "{}", out.stderr);
    assert!(
        kbs.log().contains("released") && kbs.log().contains("default/image-key/jwe"),
        "{}",
        kbs.log()
    );
    drop(kbs);
    bed.finish();
}

#[test]
fn a_gpg_signed_image_runs_and_unsigned_or_forged_ones_are_refused() {
    if !needs(
        "a_gpg_signed_image_runs_and_unsigned_or_forged_ones_are_refused",
        &["gpg"],
    ) {
        return;
    }
    let bed = Bed::new();
    let gpg = test_support::Gpg::new(&bed.tenant("gnupg")).unwrap();
    let forger = test_support::Gpg::new(&bed.tenant("gnupg-forger")).unwrap();
    // Lookaside stores on the host, written through file:// by skopeo (registries.d) and
    // served to the enclave over loopback HTTP.
    let regd = |name: &str| {
        let store = bed.host(name);
        let dir = bed.tenant(&format!("registries.d-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("t.yaml"),
            format!("default-docker:\n  lookaside: file://{}\n", store.display()),
        )
        .unwrap();
        (dir.display().to_string(), store)
    };
    let (regd_good, store_good) = regd("sigstore");
    let (regd_forged, store_forged) = regd("sigstore-forged");

    // Encrypted for the KBS-held KEK and signed; then the same image signed by another
    // key into another store; then a second encryption of it (another manifest), unsigned.
    let kek = random::<32>();
    let index = std::fs::read(bed.layout().join("index.json")).unwrap();
    test_support::encrypt_layout_with_kek(&bed.layout(), "latest", &kek, KID).unwrap();
    let signed = bed.push(
        "signed",
        &[("GNUPGHOME", gpg.home())],
        &["--registries.d", &regd_good, "--sign-by", gpg.fingerprint()],
    );
    bed.push(
        "signed",
        &[("GNUPGHOME", forger.home())],
        &[
            "--registries.d",
            &regd_forged,
            "--sign-by",
            forger.fingerprint(),
        ],
    );
    std::fs::write(bed.layout().join("index.json"), index).unwrap();
    test_support::encrypt_layout_with_kek(&bed.layout(), "latest", &kek, KID).unwrap();
    let unsigned = bed.push("unsigned", &[], &[]);

    let scope = format!("{}/test/app", bed.registry.host());
    // Another scope's key is a local file, as policies written for hosts have them: it
    // does not apply to this image, so it is neither fetched nor an error (review16b F6).
    let policy = |key_path: &str| {
        serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {
                scope.clone(): [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key_path}
                ],
                "other.example/app": [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/other.gpg"}
                ]
            }}
        })
        .to_string()
    };
    let public = gpg.export_public().unwrap();
    let kbs = Verdictd::start(
        &bed.host("verdictd"),
        &bed.mr,
        &[
            (KEK_RESOURCE, &kek),
            (
                "default/image-policy/containers",
                policy(GPG_KEY).as_bytes(),
            ),
            ("default/image-policy/gpg", public.as_bytes()),
        ],
    )
    .unwrap();

    // skopeo's verdicts on the same images under the same policy (a local key file).
    let key_file = bed.tenant("trusted.asc");
    std::fs::write(&key_file, &public).unwrap();
    let policy_file = bed.tenant("policy.json");
    std::fs::write(&policy_file, policy(key_file.to_str().unwrap())).unwrap();
    let skopeo_verdict = |reference: &str, regd: &str| {
        let out = Command::new("skopeo")
            .args([
                "--policy",
                policy_file.to_str().unwrap(),
                "--registries.d",
                regd,
            ])
            .args([
                "copy",
                "-q",
                "--remove-signatures",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:x", bed.tenant("verify").display()))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let good = test_support::StaticFiles::serve(&store_good).unwrap();
    let forged = test_support::StaticFiles::serve(&store_forged).unwrap();
    let env = |lookaside: &str| {
        vec![
            kbs_env(&kbs),
            format!("ENCLAVE_IMAGE_POLICY={POLICY}"),
            format!("ENCLAVE_IMAGE_LOOKASIDE={lookaside}"),
        ]
    };

    assert!(skopeo_verdict(&signed, &regd_good).0);
    let out = bed.run(&signed, &env(&good.url()));
    bed.assert_ran(&out);
    assert!(
        out.stderr.contains(&format!(
            "signature verified: signedBy by {} for {signed}",
            gpg.fingerprint()
        )),
        "{}",
        out.stderr
    );

    let (ok, why) = skopeo_verdict(&unsigned, &regd_good);
    assert!(!ok && why.contains("A signature was required, but no signature exists"));
    let out = bed.run(&unsigned, &env(&good.url()));
    refused(
        &out,
        &[
            "A signature was required, but no signature exists",
            "signedBy",
        ],
    );

    let (ok, why) = skopeo_verdict(&signed, &regd_forged);
    assert!(!ok && why.contains("Invalid GPG signature"), "{why}");
    let out = bed.run(&signed, &env(&forged.url()));
    refused(&out, &["Invalid GPG signature", "signedBy"]);
    assert!(forged.requests() > 0, "the forged store was not consulted");

    // A policy that is not one: refused at load, naming the resource's words.
    drop(kbs);
    let kbs = Verdictd::start(
        &bed.host("bad-policy"),
        &bed.mr,
        &[
            (KEK_RESOURCE, &kek),
            (
                "default/image-policy/containers",
                br#"{"default":[{"type":"insecureAcceptAnything","foo":1}]}"#,
            ),
        ],
    )
    .unwrap();
    let out = bed.run(
        &signed,
        &[
            kbs_env(&kbs),
            format!("ENCLAVE_IMAGE_POLICY={POLICY}"),
            format!("ENCLAVE_IMAGE_LOOKASIDE={}", good.url()),
        ],
    );
    refused(
        &out,
        &[
            &format!("signature policy {POLICY}: "),
            "Unknown key \"foo\"",
        ],
    );
    drop(kbs);
    drop((good, forged, gpg, forger));
    bed.finish();
}

/// A verdictd configured by the tenant: its attestation policy admits the sim enclave
/// `mr_enclave` only; `resource_policy` is a builtin name or Rego text; `resources`
/// (`repo/type/tag`, bytes) on disk; with `https_admin`, TLS from a CA made by openssl
/// (`ca.pem`) and an admin API open to JWTs signed by `admin.key` (Ed25519, openssl).
/// Stopped by pid on drop.
struct Kbs {
    child: std::process::Child,
    url: String,
    dir: PathBuf,
}

impl Kbs {
    fn start(
        dir: &Path,
        mr_enclave: &str,
        resource_policy: &str,
        resources: &[(&str, &[u8])],
        https_admin: bool,
    ) -> Kbs {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir.join("resources")).unwrap();
        for (path, bytes) in resources {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("resources").join(path.replace('/', "\\x2F")))
                .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
                .unwrap();
        }
        std::fs::write(
            dir.join("attestation.toml"),
            format!(
                "allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr_enclave}\"]\n"
            ),
        )
        .unwrap();
        let mut config = String::new();
        if https_admin {
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(dir)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "openssl {args:?}: {out:?}");
            };
            // A CA (what the enclave and the tenant's tool trust) and the server's
            // certificate from it, for 127.0.0.1.
            let p256 = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            test_support::openssl_self_signed(dir, "ca.key", "ca.pem", "/CN=tenant KBS CA", &[])
                .unwrap();
            let csr = ["req", "-new", "-keyout", "key.pem", "-out", "server.csr"];
            openssl(&[&csr[..], &p256, &["-subj", "/CN=127.0.0.1"]].concat());
            std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ]);
            openssl(&["genpkey", "-algorithm", "ed25519", "-out", "admin.key"]);
            openssl(&["pkey", "-in", "admin.key", "-pubout", "-out", "admin.pub"]);
            config.push_str(
                "[tls]\ncertificate = \"server.pem\"\nprivate_key = \"key.pem\"\n\
                 [admin]\nmode = \"bearer_jwt\"\npublic_keys = [\"admin.pub\"]\nroles = [\"admin\"]\n",
            );
        } else {
            config.insert_str(0, "insecure_http = true\n");
        }
        // A Rego policy may pin the CA made above: `@CA_SHA256@` stands for its digest,
        // as `openssl dgst -sha256` gives it.
        let policy = if resource_policy.starts_with("package ") {
            let mut rego = resource_policy.to_string();
            if rego.contains("@CA_SHA256@") {
                let out = Command::new("openssl")
                    .args(["dgst", "-sha256", "-r", "ca.pem"])
                    .current_dir(dir)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8(out.stdout).unwrap();
                rego = rego.replace("@CA_SHA256@", text.split(' ').next().unwrap());
            }
            std::fs::write(dir.join("resource.rego"), rego).unwrap();
            "resource.rego"
        } else {
            resource_policy
        };
        config.insert_str(
            0,
            &format!(
                "listen = \"127.0.0.1:0\"\nresource_policy = \"{policy}\"\nattestation_policy = \"attestation.toml\"\n"
            ),
        );
        config.push_str("[storage]\ntype = \"localfs\"\ndir = \"resources\"\n");
        std::fs::write(dir.join("verdictd.toml"), config).unwrap();
        let (child, url) = start_announcing(
            Command::new(release_bin("verdictd", "verdictd"))
                .arg("--config")
                .arg(dir.join("verdictd.toml")),
            &dir.join("verdictd.log"),
        );
        Kbs {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("verdictd.log")).unwrap_or_default()
    }

    fn env(&self) -> Vec<String> {
        let mut env = vec![format!("ENCLAVE_KBS_URL={}", self.url)];
        if self.url.starts_with("https://") {
            env.push(format!(
                "ENCLAVE_KBS_CA={}",
                self.dir.join("ca.pem").display()
            ));
        }
        env
    }
}

impl Drop for Kbs {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// The digest `skopeo inspect` reports for `reference` (the manifest's).
fn skopeo_digest(reference: &str) -> String {
    let d = test_support::skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
    .unwrap();
    d.trim().to_string()
}

/// The tenant's resource policy: keys only to an affirmed enclave whose evidence
/// records Confidential Containers' `PullImage` of `digest` (the claim's shape is
/// trustee's `uefi_event_logs`, measurement.md §1.5).
fn pinning_policy(digest: &str) -> String {
    format!(
        r#"package policy
import rego.v1
default allow := false
allow if {{
    input.submods.cpu0["ear.status"] == "affirming"
    some e in input.submods.cpu0["ear.veraison.annotated-evidence"].sim.uefi_event_logs
    e.digest_matches_event
    e.details.data.domain == "github.com/confidential-containers"
    e.details.data.operation == "PullImage"
    e.details.data.content.digest == "{digest}"
}}
"#
    )
}

/// [`pinning_policy`], and the boot program must also apply the signature policy
/// resource `policy` (rune's `ImagePolicy` event): a host that leaves the policy out of
/// the configuration gets no key.
fn pinning_and_policy_policy(digest: &str, policy: &str) -> String {
    let pinned = pinning_policy(digest);
    let body = pinned.trim_end().trim_end_matches('}');
    format!(
        r#"{body}    some p in input.submods.cpu0["ear.veraison.annotated-evidence"].sim.uefi_event_logs
    p.digest_matches_event
    p.details.data.domain == "github.com/inclavare-containers/rune"
    p.details.data.operation == "ImagePolicy"
    p.details.data.content == "{policy}"
}}
"#
    )
}

#[test]
fn the_key_is_released_only_to_an_enclave_pulling_the_pinned_digest() {
    if !needs(
        "the_key_is_released_only_to_an_enclave_pulling_the_pinned_digest",
        &[],
    ) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (reference, _) = push_kek_image(&bed, &kek, "kek");
    let digest = skopeo_digest(&reference);
    assert!(digest.starts_with("sha256:"), "{digest}");

    let kbs = Kbs::start(
        &bed.host("pins-it"),
        &bed.mr,
        &pinning_policy(&digest),
        &[(KEK_RESOURCE, &kek)],
        false,
    );
    let out = bed.run(&reference, &kbs.env());
    bed.assert_ran(&out);
    // The event as the boot program put it into the evidence: CoCo's domain and
    // operation, the JCS content with the registry's digest.
    let recorded = out
        .stderr
        .lines()
        .find(|l| {
            l.starts_with("enclave-boot: evidence records github.com/confidential-containers ")
        })
        .unwrap_or_else(|| panic!("no event line: {}", out.stderr));
    assert!(
        recorded.starts_with(&format!(
            "enclave-boot: evidence records github.com/confidential-containers PullImage {{\"digest\":\"{digest}\",\"image\":\""
        )),
        "{recorded}"
    );
    // And which signature policy applies: none here, as the configuration said.
    assert!(
        out.stderr.lines().any(|l| l
            == "enclave-boot: evidence records github.com/inclavare-containers/rune ImagePolicy none"),
        "{}",
        out.stderr
    );
    assert!(kbs.log().contains("released"), "{}", kbs.log());
    drop(kbs);

    // A tenant policy that also requires the image's signature policy: the host left
    // ENCLAVE_IMAGE_POLICY out, so the enclave gets no key and pulls no layer.
    let before = blob_requests(&bed.registry);
    let kbs = Kbs::start(
        &bed.host("needs-policy"),
        &bed.mr,
        &pinning_and_policy_policy(&digest, "kbs:///default/policy/image"),
        &[(KEK_RESOURCE, &kek)],
        false,
    );
    let out = bed.run(&reference, &kbs.env());
    let line = refused(&out, &[KID, "denies"]);
    assert!(
        line.starts_with("enclave-boot: error: KBS: layer key "),
        "{line}"
    );
    assert_eq!(
        blob_requests(&bed.registry),
        before,
        "a layer or config was pulled"
    );
    assert!(!kbs.log().contains("released"), "{}", kbs.log());
    drop(kbs);

    // A policy pinning another image's digest: the same enclave, admitted, gets no key;
    // one line, no layer pulled, nothing left.
    let before = blob_requests(&bed.registry);
    let other = format!("sha256:{}", hex::encode(random::<32>()));
    let kbs = Kbs::start(
        &bed.host("pins-other"),
        &bed.mr,
        &pinning_policy(&other),
        &[(KEK_RESOURCE, &kek)],
        false,
    );
    let out = bed.run(&reference, &kbs.env());
    let line = refused(&out, &[KID, "denies"]);
    assert!(
        line.starts_with("enclave-boot: error: KBS: layer key "),
        "{line}"
    );
    assert!(out.stderr.contains(&digest), "{}", out.stderr);
    assert_eq!(
        blob_requests(&bed.registry),
        before,
        "a layer or config was pulled"
    );
    assert!(!kbs.log().contains("released"), "{}", kbs.log());
    drop(kbs);
    bed.finish();
}

/// The KBS the boot program attests to is the host's configuration (URL and CA file),
/// so it is recorded before the first attestation as rune's `Kbs` event; a tenant's
/// policy pinning the CA's digest refuses an enclave given another CA file, even one
/// that still verifies the tenant's broker (review16b F1: a host's own broker behind
/// the tenant's name would be refused the same way).
#[test]
fn the_kbs_and_its_ca_are_in_the_evidence() {
    if !needs("the_kbs_and_its_ca_are_in_the_evidence", &[]) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (reference, _) = push_kek_image(&bed, &kek, "kbs");
    let digest = skopeo_digest(&reference);
    let pinned = pinning_policy(&digest);
    let body = pinned.trim_end().trim_end_matches('}');
    let policy = format!(
        r#"{body}    some k in input.submods.cpu0["ear.veraison.annotated-evidence"].sim.uefi_event_logs
    k.digest_matches_event
    k.details.data.domain == "github.com/inclavare-containers/rune"
    k.details.data.operation == "Kbs"
    k.details.data.content.ca_sha256 == "@CA_SHA256@"
}}
"#
    );
    let kbs = Kbs::start(
        &bed.host("kbs"),
        &bed.mr,
        &policy,
        &[(KEK_RESOURCE, &kek)],
        true,
    );
    let ca = kbs.dir.join("ca.pem");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .arg(&ca)
        .output()
        .unwrap();
    let ca_sha256 = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let out = bed.run(&reference, &kbs.env());
    bed.assert_ran(&out);
    // Recorded first, before the image's events, in RFC 8785 form.
    let first = out
        .stderr
        .lines()
        .find(|l| l.starts_with("enclave-boot: evidence records "))
        .unwrap_or_else(|| panic!("no event line: {}", out.stderr));
    assert_eq!(
        first,
        format!(
            r#"enclave-boot: evidence records github.com/inclavare-containers/rune Kbs {{"ca_sha256":"{ca_sha256}","url":"{}"}}"#,
            kbs.url
        )
    );
    assert!(kbs.log().contains("released"), "{}", kbs.log());

    // The host's CA file with one more CA in it: TLS to the tenant's broker still
    // verifies, but the evidence shows another file, and the key is not released.
    let other = bed.host("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    test_support::openssl_self_signed(&other, "k.pem", "ca.pem", "/CN=host CA", &[]).unwrap();
    let bundle = other.join("bundle.pem");
    let mut pem = std::fs::read(&ca).unwrap();
    pem.extend(std::fs::read(other.join("ca.pem")).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let before = blob_requests(&bed.registry);
    let env = vec![
        format!("ENCLAVE_KBS_URL={}", kbs.url),
        format!("ENCLAVE_KBS_CA={}", bundle.display()),
    ];
    let out = bed.run(&reference, &env);
    let line = refused(&out, &[KID, "denies"]);
    assert!(
        line.starts_with("enclave-boot: error: KBS: layer key "),
        "{line}"
    );
    assert!(!out.stderr.contains(&ca_sha256), "{}", out.stderr);
    assert_eq!(blob_requests(&bed.registry), before, "a layer was pulled");
    drop(kbs);
    bed.finish();
}

#[test]
fn an_image_made_by_enclave_image_runs_and_another_cosign_key_is_refused() {
    if !needs(
        "an_image_made_by_enclave_image_runs_and_another_cosign_key_is_refused",
        &["openssl"],
    ) {
        return;
    }
    let bed = Bed::new();
    let tool = release_bin("enclave-image-tool", "enclave-image");
    let tenant = |args: &[&str]| {
        let out = Command::new(&tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "enclave-image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let host = bed.registry.host();
    let scope = format!("{host}/test/app");
    let path = |p: PathBuf| p.display().to_string();
    let (cosign_key, other_key) = (
        path(bed.tenant("cosign.key")),
        path(bed.tenant("other.key")),
    );
    tenant(&["keygen", "--cosign", &cosign_key]);
    tenant(&["keygen", "--cosign", &other_key]);
    let cosign_pub = std::fs::read(format!("{cosign_key}.pub")).unwrap();
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope.clone(): [{
            "type": "sigstoreSigned",
            "keyPath": "kbs:///default/image-policy/cosign",
            "signedIdentity": {"type": "matchRepository"}
        }]}}
    })
    .to_string();
    // HTTPS with the tenant's CA; no KEK yet: `encrypt` stores a fresh one through
    // the admin API.
    let kbs = Kbs::start(
        &bed.host("verdictd"),
        &bed.mr,
        "affirming",
        &[
            ("default/image-policy/containers", policy.as_bytes()),
            ("default/image-policy/cosign", &cosign_pub),
        ],
        true,
    );
    let ca = path(kbs.dir.join("ca.pem"));
    let admin = path(kbs.dir.join("admin.key"));
    let kek_file = path(bed.tenant("kek.bin"));
    let layout = format!("oci:{}", bed.image);
    let signed = format!("{scope}:enc");
    tenant(&[
        "encrypt",
        "--kek-id",
        KID,
        "--kbs",
        &kbs.url,
        "--kbs-ca",
        &ca,
        "--admin-key",
        &admin,
        "--save-kek",
        &kek_file,
        "--insecure-registry",
        &host,
        &layout,
        &signed,
    ]);
    tenant(&[
        "sign",
        "--cosign-key",
        &cosign_key,
        "--insecure-registry",
        &host,
        &signed,
    ]);
    // The same plaintext encrypted again (another digest) for the same KEK, signed by
    // another key only.
    let forged = format!("{scope}:forged");
    tenant(&[
        "encrypt",
        "--kek-id",
        KID,
        "--kek-file",
        &kek_file,
        "--insecure-registry",
        &host,
        &layout,
        &forged,
    ]);
    tenant(&[
        "sign",
        "--cosign-key",
        &other_key,
        "--insecure-registry",
        &host,
        &forged,
    ]);
    // verdictd holds the KEK the tool generated (the tool's own copy is the control).
    let stored = std::fs::read(
        kbs.dir
            .join("resources")
            .join(KEK_RESOURCE.replace('/', "\\x2F")),
    );
    assert_eq!(stored.unwrap(), std::fs::read(&kek_file).unwrap());

    let mut env = kbs.env();
    env.push(format!("ENCLAVE_IMAGE_POLICY={POLICY}"));
    let out = bed.run(&signed, &env);
    bed.assert_ran(&out);
    assert!(
        out.stderr.contains(&format!(
            "signature verified: sigstoreSigned by key #1 for {scope}"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("decrypted"), "{}", out.stderr);

    let forged_layers = layer_digests(&bed.manifest("forged"));
    let before = bed.registry.log().len();
    let out = bed.run(&forged, &env);
    refused(
        &out,
        &[
            "cryptographic signature verification failed",
            "sigstoreSigned",
            &forged,
        ],
    );
    let log = bed.registry.log()[before..].to_string();
    for l in forged_layers {
        assert!(!log.contains(&format!("/blobs/{l}")), "{l} was pulled");
    }
    drop(kbs);
    bed.finish();
}

/// The registry's raw answer for `repo` manifest `reference` (tag or digest), with every
/// manifest type accepted: status and bytes.
fn raw_manifest(registry: &Registry, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let r = test_support::http::request(
        registry.addr(),
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )],
        b"",
    )
    .unwrap();
    (r.status, r.body)
}

/// A multi-arch image: an index (linux/amd64: the tenant's encrypted image; linux/arm64:
/// another) signed with cosign's semantics by `enclave-image sign`, i.e. over the digest
/// the tag resolves to, the index's. The enclave accepts that signature for the amd64
/// manifest it picks, as image-rs does (falling back to the index digest); the amd64
/// manifest pulled by its own tag, outside the index, has no signature and is refused.
/// Digests and the signed payload are read back from the registry.
#[test]
fn a_cosign_signature_over_the_index_digest_is_accepted() {
    if !needs(
        "a_cosign_signature_over_the_index_digest_is_accepted",
        &["openssl"],
    ) {
        return;
    }
    let bed = Bed::new();
    let kek = random::<32>();
    let (amd_ref, _) = push_kek_image(&bed, &kek, "amd");
    let arm = test_support::ImageBuilder::new()
        .file("arch", b"arm64")
        .architecture("arm64")
        .build(&bed.tenant("arm"), "arm")
        .unwrap();
    let host = bed.registry.host();
    test_support::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &arm,
        &format!("docker://{host}/test/app:arm"),
    ])
    .unwrap();
    let entry = |tag: &str, arch: &str| {
        let (status, m) = raw_manifest(&bed.registry, "test/app", tag);
        assert_eq!(status, 200);
        serde_json::json!({"mediaType": OCI_MANIFEST, "size": m.len(),
            "digest": test_support::sha256_digest(&m),
            "platform": {"os": "linux", "architecture": arch}})
    };
    let (amd, arm) = (entry("amd", "amd64"), entry("arm", "arm64"));
    let index = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [amd, arm]});
    let index_digest = bed
        .registry
        .put_manifest(
            "test/app",
            "multi",
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    let multi = format!("{host}/test/app:multi");

    let tool = release_bin("enclave-image-tool", "enclave-image");
    let key = bed.tenant("cosign.key");
    let tenant = |args: &[&str]| {
        let out = Command::new(&tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "enclave-image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tenant(&["keygen", "--cosign", key.to_str().unwrap()]);
    tenant(&[
        "sign",
        "--cosign-key",
        key.to_str().unwrap(),
        "--insecure-registry",
        &host,
        &multi,
    ]);
    // What the registry holds: a signature under the index digest's tag, whose payload
    // names the index digest; none under the amd64 manifest's.
    let sig_tag = |d: &str| d.replacen(':', "-", 1) + ".sig";
    let amd_digest = amd["digest"].as_str().unwrap();
    assert_eq!(
        raw_manifest(&bed.registry, "test/app", &sig_tag(amd_digest)).0,
        404
    );
    let (status, sig) = raw_manifest(&bed.registry, "test/app", &sig_tag(&index_digest));
    assert_eq!(status, 200);
    let sig: Value = serde_json::from_slice(&sig).unwrap();
    let layer = sig["layers"][0]["digest"].as_str().unwrap();
    let payload = test_support::http::request(
        bed.registry.addr(),
        "GET",
        &format!("/v2/test/app/blobs/{layer}"),
        &[],
        b"",
    )
    .unwrap()
    .body;
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        index_digest.as_str()
    );

    let scope = format!("{host}/test/app");
    let policy = test_support::tenant::sigstore_policy(&scope);
    let public = std::fs::read(format!("{}.pub", key.display())).unwrap();
    let kbs = Verdictd::start(
        &bed.host("verdictd"),
        &bed.mr,
        &[
            (KEK_RESOURCE, &kek),
            ("default/image-policy/containers", policy.as_bytes()),
            ("default/image-policy/cosign", &public),
        ],
    )
    .unwrap();
    let env = [kbs_env(&kbs), format!("ENCLAVE_IMAGE_POLICY={POLICY}")];
    let out = bed.run(&multi, &env);
    bed.assert_ran(&out);
    assert!(
        out.stderr
            .contains(&format!("enclave-boot: manifest {amd_digest} ")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "signature verified: sigstoreSigned by key #1 for {scope}"
        )),
        "{}",
        out.stderr
    );

    // The same manifest by its own tag is not in that index: nothing signs it.
    let out = bed.run(&amd_ref, &env);
    refused(
        &out,
        &[
            "A signature was required, but no signature exists",
            "sigstoreSigned",
        ],
    );
    drop(kbs);
    bed.finish();
}

/// A private registry: HTTPS with a certificate from the tenant's private CA, and
/// bearer tokens from a token service that wants the tenant's password. The enclave gets
/// both from verdictd after attestation, never from the host: the credentials file
/// `skopeo login --authfile` wrote (the real peer's containers-auth.json) and the CA.
/// The controls: without the credentials the registry answers 401, and without the CA
/// the certificate is not trusted (Mozilla's roots only, never the host's store).
#[test]
fn a_private_registry_is_pulled_with_credentials_and_ca_from_verdictd() {
    if !needs(
        "a_private_registry_is_pulled_with_credentials_and_ca_from_verdictd",
        &[],
    ) {
        return;
    }
    let bed = Bed::new();
    let (user, pass) = ("carol", "pr1vate-pw");
    let private = Registry::start_with(
        &bed.host("private"),
        Auth::Token {
            user: user.into(),
            pass: pass.into(),
        },
        true,
    )
    .unwrap();
    let host = private.host();
    let kek = random::<32>();
    test_support::encrypt_layout_with_kek(&bed.layout(), "latest", &kek, KID).unwrap();
    let reference = format!("{host}/test/app:private");
    let creds = format!("{user}:{pass}");
    test_support::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}", bed.image),
        &format!("docker://{reference}"),
    ])
    .unwrap();
    let authfile = bed.tenant("auth.json");
    test_support::skopeo(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "--username",
        user,
        "--password",
        pass,
        &host,
    ])
    .unwrap();
    let auth = std::fs::read(&authfile).unwrap();
    let ca = std::fs::read(private.ca().unwrap()).unwrap();
    let kbs = Verdictd::start(
        &bed.host("verdictd"),
        &bed.mr,
        &[
            (KEK_RESOURCE, &kek),
            ("default/registry/auth", &auth),
            ("default/registry/ca", &ca),
        ],
    )
    .unwrap();
    let auth_env = "ENCLAVE_IMAGE_REGISTRY_AUTH=kbs:///default/registry/auth".to_string();
    let ca_env = "ENCLAVE_IMAGE_REGISTRY_CA=kbs:///default/registry/ca".to_string();
    let issued = private.token_server().unwrap().issued();

    let out = bed.run(
        &reference,
        &[kbs_env(&kbs), auth_env.clone(), ca_env.clone()],
    );
    bed.assert_ran(&out);
    assert!(
        out.stderr.contains(&format!(
            "registry credentials from kbs:///default/registry/auth: found for {host}/test/app"
        )),
        "{}",
        out.stderr
    );
    assert!(private.token_server().unwrap().issued() > issued);
    for resource in ["default/registry/auth", "default/registry/ca"] {
        assert!(
            kbs.find_event(&[("message", "released"), ("resource", resource)])
                .is_some(),
            "{}",
            kbs.log()
        );
    }

    let out = bed.run(&reference, &[kbs_env(&kbs), ca_env]);
    let line = refused(
        &out,
        &[&format!("{host}/test/app: manifest private: HTTP 401")],
    );
    assert!(!line.contains(pass), "{line}");
    let out = bed.run(&reference, &[kbs_env(&kbs), auth_env]);
    refused(
        &out,
        &[
            &format!("{host}/test/app: manifest private: "),
            "UnknownIssuer",
        ],
    );
    drop((kbs, private));
    bed.finish();
}
