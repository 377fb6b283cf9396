//! Confidential-image helpers: the signed boot program, enclave bundles whose program
//! comes from an image, a marker image built with umoci, a real `verdictd` holding keys
//! for one measurement, and the scan that proves a plaintext never reached the host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::*;

/// The statically linked boot program `make build` makes.
pub fn boot_program() -> PathBuf {
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(host)
        .join("release/enclave-boot");
    assert!(
        p.exists(),
        "{} is missing: `make build` makes it",
        p.display()
    );
    p
}

/// Copies the boot program into `dir/boot` and signs it for `/.rune/enclave-boot` with
/// `dir/signer.key`; returns its path and its mr_enclave (what verdictd admits).
pub fn signed_boot(dir: &Path) -> (PathBuf, String) {
    let boot = dir.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::copy(boot_program(), boot.join("enclave-boot")).unwrap();
    let mr = sim_sign(
        dir,
        &boot.join("enclave-boot"),
        "/.rune/enclave-boot",
        &boot.join("enclave-boot.manifest.json"),
    );
    (boot.join("enclave-boot"), mr)
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
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let l = layout.display().to_string();
    run_ok(
        "tar",
        &[
            "-C",
            &l,
            "-xf",
            &images().join("busybox-oci.tar").display().to_string(),
        ],
    );
    let bundle = dir.join("umoci-bundle").display().to_string();
    let image = format!("{l}:latest");
    run_ok(
        "umoci",
        &["unpack", "--rootless", "--image", &image, &bundle],
    );
    std::fs::write(
        Path::new(&bundle).join("rootfs/etc/marker"),
        format!("{marker}\n"),
    )
    .unwrap();
    run_ok("umoci", &["repack", "--image", &image, &bundle]);
    run_ok(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.cmd=/bin/cat",
            "--config.cmd=/etc/marker",
        ],
    );
    std::fs::remove_dir_all(&bundle).unwrap();
    image
}

/// A random marker, so that no file (this test's source or binary, another run) holds it
/// by chance.
pub fn random_marker() -> String {
    let mut b = [0u8; 12];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    format!("confidential-{}", hex::encode(b))
}

/// Files under `places` that hold `marker` (`grep -rlF`, not following symlinks; special
/// files skipped).
pub fn marker_found(places: &[&Path], marker: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-rlF", "--devices=skip", "--", marker])
        .args(places)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A real `verdictd` on loopback (plain HTTP) whose attestation policy admits the sim
/// enclave `mr_enclave` only, whose resource policy releases resources to affirmed
/// enclaves only (`affirming`), holding `resources` (`repo/type/tag`, bytes) on disk.
/// Stopped by pid (SIGTERM, then reaped) on drop.
pub struct Verdictd {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub url: String,
    log: PathBuf,
}

impl Verdictd {
    pub fn start(dir: &Path, mr_enclave: &str, resources: &[(&str, &[u8])]) -> Verdictd {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let store = dir.join("resources");
        std::fs::create_dir(&store).unwrap();
        for (path, bytes) in resources {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(store.join(path.replace('/', "\\x2F")))
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
        std::fs::write(
            dir.join("verdictd.toml"),
            "listen = \"127.0.0.1:0\"\ninsecure_http = true\nresource_policy = \"affirming\"\nattestation_policy = \"attestation.toml\"\n[storage]\ntype = \"localfs\"\ndir = \"resources\"\n",
        )
        .unwrap();
        let log = dir.join("verdictd.log");
        let (child, addr) = start_announcing(
            Command::new(release_bin("verdictd", "verdictd"))
                .arg("--config")
                .arg(dir.join("verdictd.toml")),
            &log,
        );
        Verdictd {
            child,
            url: addr,
            log,
        }
    }

    /// verdictd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Verdictd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
