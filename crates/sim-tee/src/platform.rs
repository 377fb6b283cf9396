//! The host's simulated platform key: what signs `sim` reports, standing in for the
//! keys a TEE's hardware holds. Created on first use in a root-owned directory (0700),
//! the key file readable by root only (0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};

use crate::{Report, SimError};

/// Where the platform key lives unless [`PLATFORM_DIR_ENV`] says otherwise.
pub const DEFAULT_PLATFORM_DIR: &str = "/var/lib/inclavare/sim";
/// Environment variable naming another directory (tests, rootless development).
pub const PLATFORM_DIR_ENV: &str = "INCLAVARE_SIM_PLATFORM_DIR";
const KEY_FILE: &str = "platform.key";

/// The platform's signing key.
pub struct PlatformKey(SigningKey);

impl PlatformKey {
    /// A fresh random key (not stored).
    pub fn generate() -> Result<Self, SimError> {
        Ok(PlatformKey(SigningKey::from_bytes(&crate::random_seed()?)))
    }

    /// The directory in force: `$INCLAVARE_SIM_PLATFORM_DIR` or the default.
    pub fn dir() -> PathBuf {
        std::env::var_os(PLATFORM_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PLATFORM_DIR))
    }

    /// Loads the key from `dir`, creating it (and the directory) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, SimError> {
        let path = dir.join(KEY_FILE);
        match crate::read_seed(&path) {
            Ok(seed) => Ok(PlatformKey(SigningKey::from_bytes(&seed))),
            Err(SimError::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(SimError::io(format!(
                        "platform key directory {}",
                        dir.display()
                    )))?;
                let key = PlatformKey::generate()?;
                match write_private_new(&path, hex::encode(key.0.to_bytes()).as_bytes()) {
                    Ok(()) => Ok(key),
                    // Another enclave created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(dir)
                    }
                    Err(e) => Err(SimError::io(format!("platform key {}", path.display()))(e)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The public key verifiers pin.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Fills in the platform key and signature of `report`.
    pub fn sign_report(&self, mut report: Report) -> Report {
        report.platform_key = self.public();
        report.signature = self.0.sign(&report.body()).to_bytes();
        report
    }
}

/// Creates `path` exclusively with mode 0600 and writes `data` through a temporary file,
/// so a reader never sees a partial key.
fn write_private_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = f.write_all(data).and_then(|_| f.sync_all()).and_then(|_| {
        // hard_link fails if `path` exists: first writer wins.
        fs::hard_link(&tmp, path)
    });
    let _ = fs::remove_file(&tmp);
    result
}

/// Writes a secret file with mode 0600, replacing what was there.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), SimError> {
    let ctx = || format!("write {}", path.display());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SimError::io(ctx())(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("sim");
        let a = PlatformKey::load_or_create(&pdir).unwrap();
        let b = PlatformKey::load_or_create(&pdir).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(
            fs::metadata(&pdir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(pdir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(&pdir).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
