//! Wrappers around the real tools tests drive: skopeo, umoci, the busybox image script.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `skopeo --insecure-policy <args>` (no host policy.json is consulted or needed)
/// and returns its stdout; an error carries the command line and skopeo's stderr.
pub fn skopeo(args: &[&str]) -> Result<String, String> {
    run("skopeo", &[&["--insecure-policy"], args].concat())
}

/// Runs `program args` and returns stdout, or one line naming the command and stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Builds a small image with umoci (images.md §6.2) in an OCI layout: files added to an
/// empty rootfs in one layer, then the config's cmd, os and architecture set.
pub struct ImageBuilder {
    files: Vec<(String, Vec<u8>)>,
    architecture: String,
    cmd: Vec<String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// linux/amd64, cmd `/bin/sh`, no files.
    pub fn new() -> Self {
        ImageBuilder {
            files: Vec::new(),
            architecture: "amd64".into(),
            cmd: vec!["/bin/sh".into()],
        }
    }

    /// Adds a regular file (mode 0644) at `path` (relative to the rootfs).
    pub fn file(mut self, path: &str, content: &[u8]) -> Self {
        self.files
            .push((path.trim_start_matches('/').into(), content.to_vec()));
        self
    }

    /// Sets the config's architecture (GOARCH name, e.g. `arm64`).
    pub fn architecture(mut self, arch: &str) -> Self {
        self.architecture = arch.into();
        self
    }

    /// Sets the config's cmd.
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Creates (or adds to) the layout `layout` with image `tag`; returns
    /// `oci:<layout>:<tag>` for skopeo. The unpacked bundle is removed afterwards.
    pub fn build(&self, layout: &Path, tag: &str) -> Result<String, String> {
        let l = layout.display().to_string();
        let image = format!("{l}:{tag}");
        if !layout.join("oci-layout").exists() {
            run("umoci", &["init", "--layout", &l])?;
        }
        run("umoci", &["new", "--image", &image])?;
        let bundle = layout.with_extension(format!("bundle-{tag}"));
        let b = bundle.display().to_string();
        let _ = fs::remove_dir_all(&bundle);
        run("umoci", &["unpack", "--rootless", "--image", &image, &b])?;
        for (path, content) in &self.files {
            let p = bundle.join("rootfs").join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let repacked = run("umoci", &["repack", "--image", &image, &b]);
        let _ = fs::remove_dir_all(&bundle);
        repacked?;
        let mut args = vec![
            "config",
            "--image",
            &image,
            "--os",
            "linux",
            "--architecture",
            &self.architecture,
        ];
        let cmds: Vec<String> = self
            .cmd
            .iter()
            .map(|c| format!("--config.cmd={c}"))
            .collect();
        args.extend(cmds.iter().map(String::as_str));
        run("umoci", &args)?;
        Ok(format!("oci:{image}"))
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/images/busybox-oci.tar` (an OCI layout tar, tag `latest`), built by
/// `scripts/busybox-image.sh` if missing (needs busybox-static and umoci).
pub fn busybox_oci_tar() -> io::Result<PathBuf> {
    let root = workspace_root();
    let out = root.join("target/images");
    let tar = out.join("busybox-oci.tar");
    if !tar.exists() {
        let status = Command::new(root.join("scripts/busybox-image.sh"))
            .arg(&out)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "scripts/busybox-image.sh: {status}"
            )));
        }
    }
    Ok(tar)
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // Reading our own status avoids an FFI call for geteuid.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Returns early from a test, printing one line, when not root.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// What is left under `dir`: processes (other than ours) whose command line, cwd or
/// executable mention it, and mount points under it. Empty means clean.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                continue;
            }
            let p = e.path();
            let cmdline = fs::read(p.join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            let cwd = fs::read_link(p.join("cwd")).unwrap_or_default();
            let exe = fs::read_link(p.join("exe")).unwrap_or_default();
            if cmdline.contains(&d) || cwd.starts_with(dir) || exe.starts_with(dir) {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
    }
    if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mounts.lines() {
            if let Some(mp) = line.split_whitespace().nth(4) {
                if Path::new(mp).starts_with(dir) {
                    found.push(format!("mount {mp}"));
                }
            }
        }
    }
    found
}

/// A private GnuPG home with one passphrase-less RSA signing key (images.md §6.5); the
/// gpg-agent it starts is stopped (`gpgconf --kill all`) on drop.
pub struct Gpg {
    home: PathBuf,
    fingerprint: String,
}

impl Gpg {
    /// Creates `dir` (mode 0700) and a key for `Test <t@example.test>`.
    pub fn new(dir: &Path) -> Result<Gpg, String> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
        // Built first without a fingerprint so a failed key generation still stops the agent.
        let mut gpg = Gpg {
            home: dir.to_path_buf(),
            fingerprint: String::new(),
        };
        gpg.run(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test <t@example.test>",
            "rsa2048",
            "sign",
            "never",
        ])?;
        let listing = gpg.run(&["--batch", "--with-colons", "--list-secret-keys"])?;
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .ok_or("gpg: no fingerprint in --list-secret-keys")?
            .to_string();
        gpg.fingerprint = fingerprint;
        Ok(gpg)
    }

    /// Runs `gpg args` with this home.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(args)
            .output()
            .map_err(|e| format!("gpg: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "gpg {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The GNUPGHOME directory (pass it to skopeo's environment).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The key's fingerprint, for `skopeo --sign-by`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The public key, armored (for a `signedBy` policy's `keyPath`).
    pub fn export_public(&self) -> Result<String, String> {
        self.run(&["--batch", "--armor", "--export", &self.fingerprint])
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "all"])
            .status();
    }
}

/// `skopeo --insecure-policy <args>` with extra environment (e.g. `GNUPGHOME`).
pub fn skopeo_env(env: &[(&str, &Path)], args: &[&str]) -> Result<String, String> {
    let out = Command::new("skopeo")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .map_err(|e| format!("skopeo: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "skopeo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
