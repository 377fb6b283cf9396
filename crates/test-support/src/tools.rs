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

/// A self-signed P-256 certificate made by openssl (`req -x509`, one day, no
/// passphrase): `key` and `cert` (PEM) in `dir`, with `subject` (`/CN=…`) and any
/// `extra` arguments (e.g. `-addext subjectAltName=IP:127.0.0.1`).
pub fn openssl_self_signed(
    dir: &Path,
    key: &str,
    cert: &str,
    subject: &str,
    extra: &[&str],
) -> Result<(), String> {
    let (key, cert) = (dir.join(key), dir.join(cert));
    let (key, cert) = (key.to_string_lossy(), cert.to_string_lossy());
    let args = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        subject,
        "-keyout",
        &key,
        "-out",
        &cert,
    ];
    run("openssl", &[&args[..], extra].concat()).map(drop)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Builds a small image with umoci (images.md §6.2) in an OCI layout: files added to an
/// empty rootfs in one layer, then the config's cmd, os and architecture set.
pub struct ImageBuilder {
    base: Option<PathBuf>,
    files: Vec<(String, Vec<u8>, u32)>,
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
            base: None,
            files: Vec::new(),
            architecture: "amd64".into(),
            cmd: vec!["/bin/sh".into()],
        }
    }

    /// Starts from the image tagged `latest` in the OCI layout tar `oci_tar` (e.g.
    /// [`busybox_oci_tar`]) instead of an empty rootfs; its files and config stay, the
    /// files added here go into one more layer. The layout given to
    /// [`build`](Self::build) must not exist yet.
    pub fn base(mut self, oci_tar: &Path) -> Self {
        self.base = Some(oci_tar.to_path_buf());
        self
    }

    /// Adds a regular file (mode 0644) at `path` (relative to the rootfs).
    pub fn file(mut self, path: &str, content: &[u8]) -> Self {
        self.files
            .push((path.trim_start_matches('/').into(), content.to_vec(), 0o644));
        self
    }

    /// Adds an executable regular file (mode 0755) at `path` (relative to the rootfs).
    pub fn executable(mut self, path: &str, content: &[u8]) -> Self {
        self.files
            .push((path.trim_start_matches('/').into(), content.to_vec(), 0o755));
        self
    }

    /// Adds the shared libraries `exe` (a host program) is linked with, at their host
    /// paths, as `ldd` lists them: what a dynamically linked program added with
    /// [`executable`](Self::executable) needs to run in the image.
    pub fn libraries_of(mut self, exe: &Path) -> Result<Self, String> {
        let ldd = run("ldd", &[&exe.display().to_string()])?;
        for lib in ldd
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        {
            let bytes = fs::read(lib).map_err(|e| format!("{lib}: {e}"))?;
            self = self.executable(lib, &bytes);
        }
        Ok(self)
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
        let source = match &self.base {
            Some(tar) => {
                if layout.exists() {
                    return Err(format!("{l}: exists; a based image needs a new layout"));
                }
                fs::create_dir_all(layout).map_err(|e| format!("{l}: {e}"))?;
                run("tar", &["-C", &l, "-xf", &tar.display().to_string()])?;
                format!("{l}:latest")
            }
            None => {
                if !layout.join("oci-layout").exists() {
                    run("umoci", &["init", "--layout", &l])?;
                }
                run("umoci", &["new", "--image", &image])?;
                image.clone()
            }
        };
        let bundle = layout.with_extension(format!("bundle-{tag}"));
        let b = bundle.display().to_string();
        let _ = fs::remove_dir_all(&bundle);
        run("umoci", &["unpack", "--rootless", "--image", &source, &b])?;
        for (path, content, mode) in &self.files {
            use std::os::unix::fs::PermissionsExt;
            let p = bundle.join("rootfs").join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            // Replaces what the base has there (a symlink is not followed).
            let _ = fs::remove_file(&p);
            fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("{}: {e}", p.display()))?;
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

/// `target/images/pause-oci.tar` (an OCI layout tar, tag `latest`): the busybox image of
/// [`busybox_oci_tar`] whose config runs `/bin/sleep infinity` (busybox is static), a
/// pod sandbox ("pause") image for containerd's CRI plugin without a registry. Built with
/// umoci (`config`, then `gc`) when missing or older than the busybox tar; renamed into
/// place, so concurrent tests never see half of it.
pub fn pause_oci_tar() -> io::Result<PathBuf> {
    let busybox = busybox_oci_tar()?;
    let out = busybox.with_file_name("pause-oci.tar");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified());
    if let (Ok(made), Ok(base)) = (modified(&out), modified(&busybox)) {
        if made >= base {
            return Ok(out);
        }
    }
    let dir = busybox.parent().unwrap_or(Path::new("."));
    let work = tempfile::Builder::new().prefix(".pause").tempdir_in(dir)?;
    let layout = work.path().join("layout");
    fs::create_dir(&layout)?;
    let l = layout.display().to_string();
    let image = format!("{l}:latest");
    let tar = work.path().join("pause-oci.tar");
    let t = tar.display().to_string();
    let steps: [(&str, Vec<&str>); 4] = [
        (
            "tar",
            vec!["-C", &l, "-xf", busybox.to_str().unwrap_or_default()],
        ),
        (
            "umoci",
            vec![
                "config",
                "--image",
                &image,
                "--config.cmd=/bin/sleep",
                "--config.cmd=infinity",
            ],
        ),
        ("umoci", vec!["gc", "--layout", &l]),
        ("tar", vec!["-C", &l, "-cf", &t, "."]),
    ];
    for (program, args) in steps {
        run(program, &args).map_err(io::Error::other)?;
    }
    fs::rename(&tar, &out)?;
    Ok(out)
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
        // gpgconf asks the agent to stop and returns; wait (a bounded while) until it
        // has, so a leftover check right after the drop does not find it exiting.
        let home = self.home.display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline && agent_running(&home) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Whether a process with `home` as one of its arguments (a gpg-agent's `--homedir`)
/// lives.
fn agent_running(home: &str) -> bool {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == home))
                .unwrap_or(false)
        })
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

/// Where an image's content is found under `dirs` (a daemon's root, say): files whose
/// bytes contain `marker` (GNU grep, not following symlinks, skipping devices, fifos and
/// sockets), and files or directories whose name holds the hex of one of `digests`
/// (content stores name blobs by digest). Empty means none of it is there.
pub fn image_traces(dirs: &[&Path], marker: &str, digests: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for dir in dirs {
        let out = Command::new("grep")
            .args(["-rlF", "--devices=skip", "-e", marker, "--"])
            .arg(dir)
            .output();
        match out {
            // 0: found, 1: not found, 2: an error (a file vanished): still report hits.
            Ok(o) => found.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| format!("marker in {l}")),
            ),
            Err(e) => found.push(format!("grep {}: {e}", dir.display())),
        }
        let hexes: Vec<&str> = digests
            .iter()
            .map(|d| d.split_once(':').map_or(*d, |(_, h)| h))
            .collect();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(h) = hexes.iter().find(|h| name.contains(**h)) {
                    found.push(format!("digest {h} names {}", e.path().display()));
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    found
}
