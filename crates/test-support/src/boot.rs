//! The workspace's own programs that confidential-image tests install: release
//! binaries, the static boot program (`enclave-boot`) signed with `sim-sign` as a sim
//! enclave, laid out beside a copy of the PAL as `make install` does.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::tools::workspace_root;

/// `target/release/<file>` of workspace package `package`, built (`cargo build
/// --release -p package`) if missing.
pub fn release_artifact(package: &str, file: &str) -> io::Result<PathBuf> {
    let root = workspace_root();
    let path = root.join("target/release").join(file);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package])
            .current_dir(&root)
            .status()?;
        if !status.success() || !path.exists() {
            return Err(io::Error::other(format!(
                "cargo build --release -p {package}: {status}, {} missing",
                path.display()
            )));
        }
    }
    Ok(path)
}

/// The statically linked boot program `make build` makes (`target/release/enclave-boot`,
/// linked statically by the workspace's rustc wrapper, `scripts/rustc-workspace-wrapper.sh`).
pub fn boot_program() -> io::Result<PathBuf> {
    let p = workspace_root().join("target/release/enclave-boot");
    if !p.exists() {
        return Err(io::Error::other(format!(
            "{} is missing: `make build` makes it",
            p.display()
        )));
    }
    Ok(p)
}

/// Signs `executable` as the sim enclave program `entrypoint` with the sim-sign key
/// `key` (made with `sim-sign keygen` if it does not exist), writing the signed manifest
/// to `out`; returns its `mr_enclave` (hex, as sim-sign prints it).
pub fn sim_sign(key: &Path, executable: &Path, entrypoint: &str, out: &Path) -> io::Result<String> {
    let sign = release_artifact("pal-sim", "sim-sign")?;
    let fail = |what: &str, o: &std::process::Output| {
        io::Error::other(format!(
            "sim-sign {what}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    };
    if !key.exists() {
        let o = Command::new(&sign)
            .args(["keygen", "--out"])
            .arg(key)
            .stdout(Stdio::null())
            .output()?;
        if !o.status.success() {
            return Err(fail("keygen", &o));
        }
    }
    let o = Command::new(&sign)
        .args(["sign", "--entrypoint", entrypoint, "--executable"])
        .arg(executable)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .output()?;
    if !o.status.success() {
        return Err(fail("sign", &o));
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("mr_enclave ").map(str::to_string))
        .ok_or_else(|| fail("sign printed no mr_enclave", &o))
}

/// Copies the boot program to `dir/enclave-boot` and signs it for
/// `/.rune/enclave-boot` (where rune mounts it) with `key`, the manifest in
/// `dir/enclave-boot.manifest.json`; returns the program's path and its `mr_enclave`
/// (what a KBS is told to admit).
pub fn signed_boot(dir: &Path, key: &Path) -> io::Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir)?;
    let boot = dir.join("enclave-boot");
    std::fs::copy(boot_program()?, &boot)?;
    let mr = sim_sign(
        key,
        &boot,
        "/.rune/enclave-boot",
        &dir.join("enclave-boot.manifest.json"),
    )?;
    Ok((boot, mr))
}

/// `make install`'s layout in `lib`: a copy of the sim PAL (`liberpal-sim.so`) with the
/// signed boot program beside it ([`signed_boot`]), where rune looks for it. Returns the
/// PAL's path and the boot program's `mr_enclave`.
pub fn install_boot(lib: &Path, key: &Path) -> io::Result<(PathBuf, String)> {
    std::fs::create_dir_all(lib)?;
    let pal = lib.join("liberpal-sim.so");
    std::fs::copy(release_artifact("pal-sim", "liberpal_sim.so")?, &pal)?;
    let (_, mr) = signed_boot(lib, key)?;
    Ok((pal, mr))
}
