//! Builds the C skeleton test PALs (feature `test-pal`), so tests in any crate can run
//! an enclave runtime that was not written in Rust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The C source of the skeleton test PAL.
pub const SKELETON_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/skeleton/skeleton.c");

/// Compiles the skeleton PAL of `version` (1 to 3, or any number for negative tests)
/// into `out_dir`, once, and returns the `.so` path. Panics when the C compiler fails:
/// this is for tests.
pub fn build_skeleton(version: u32, out_dir: &Path) -> PathBuf {
    build_skeleton_claiming(version, version, out_dir)
}

/// Like [`build_skeleton`], for a PAL that implements `version` but reports `claims`
/// from `pal_get_version` (for tests of the loader's symbol checks).
pub fn build_skeleton_claiming(version: u32, claims: u32, out_dir: &Path) -> PathBuf {
    std::fs::create_dir_all(out_dir).expect("create the test PAL directory");
    let so = if claims == version {
        out_dir.join(format!("liberpal-skeleton-v{version}.so"))
    } else {
        out_dir.join(format!("liberpal-skeleton-v{version}-claims-v{claims}.so"))
    };
    let src = Path::new(SKELETON_SOURCE);
    let fresh = so
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .zip(src.metadata().and_then(|m| m.modified()).ok())
        .is_some_and(|(so, src)| so >= src);
    if fresh {
        return so;
    }
    // Compile to a temporary name and rename, so parallel tests never load half a file.
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let tmp = out_dir.join(format!(".skeleton-{}-{n}.so", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror"])
        .arg(format!("-DPAL_VERSION={version}"))
        .arg(format!("-DPAL_CLAIM_VERSION={claims}"))
        .arg("-o")
        .arg(&tmp)
        .arg(src)
        .status()
        .expect("run the C compiler");
    assert!(
        status.success(),
        "compiling the skeleton PAL v{version} failed"
    );
    std::fs::rename(&tmp, &so).expect("install the test PAL");
    so
}
