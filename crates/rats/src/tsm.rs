//! The Linux kernel's configfs-tsm report interface (`/sys/kernel/config/tsm/report`),
//! through which TDX and SEV-SNP guests get quotes and reports bound to their own
//! report data (Documentation/ABI/testing/configfs-tsm).
//!
//! One report: `mkdir` an entry, write the 64 bytes of report data to `inblob`, read
//! `generation`, `outblob` (the quote or report), `auxblob` (SNP's certificate table)
//! and `generation` again — a change means another writer raced us — then `rmdir`.
//! `provider` names the TEE (`tdx_guest`, `sev_guest`).
//!
//! The file system is reached through [`ConfigFs`], so the protocol can be exercised
//! against an emulation of the kernel's semantics where no TEE exists.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Attester, Evidence, RatsError, Tee};

/// Where the kernel mounts the report interface.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// The file operations the protocol needs.
pub trait ConfigFs {
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

impl<T: ConfigFs + ?Sized> ConfigFs for &T {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        (**self).mkdir(path)
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        (**self).rmdir(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        (**self).read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        (**self).write(path, data)
    }
}

/// The real file system.
pub struct Kernel;

impl ConfigFs for Kernel {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // configfs takes an attribute in one write.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(data)
    }
}

/// TDX or SNP evidence from configfs-tsm.
pub struct TsmAttester<F: ConfigFs = Kernel> {
    root: PathBuf,
    fs: F,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TsmAttester<Kernel> {
    /// The attester of this guest, when the kernel offers the interface at `root`.
    pub fn probe(root: &Path) -> Option<Self> {
        root.is_dir().then(|| TsmAttester {
            root: root.to_path_buf(),
            fs: Kernel,
        })
    }
}

impl<F: ConfigFs> TsmAttester<F> {
    /// An attester on another implementation of the file operations.
    pub fn with_fs(root: &Path, fs: F) -> Self {
        TsmAttester {
            root: root.to_path_buf(),
            fs,
        }
    }

    fn report(&self, entry: &Path, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let err = |what: &str, e: io::Error| RatsError::Attester {
            tee: "tsm",
            reason: format!("{}: {what}: {e}", entry.display()),
        };
        let read = |name: &str| self.fs.read(&entry.join(name)).map_err(|e| err(name, e));
        let provider = read("provider")?;
        let provider = String::from_utf8_lossy(&provider).trim().to_string();
        let tee = match provider.as_str() {
            "tdx_guest" => Tee::TdxEcdsa,
            "sev_guest" => Tee::SevSnp,
            other => {
                return Err(RatsError::Attester {
                    tee: "tsm",
                    reason: format!("unknown provider {other:?}"),
                })
            }
        };
        self.fs
            .write(&entry.join("inblob"), report_data)
            .map_err(|e| err("inblob", e))?;
        let generation = || -> Result<u64, RatsError> {
            let text = read("generation")?;
            String::from_utf8_lossy(&text)
                .trim()
                .parse()
                .map_err(|_| RatsError::Attester {
                    tee: "tsm",
                    reason: format!("{}: generation is not a number", entry.display()),
                })
        };
        let before = generation()?;
        let outblob = read("outblob")?;
        let auxblob = match self.fs.read(&entry.join("auxblob")) {
            Ok(b) if !b.is_empty() => Some(b),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            // The provider has no auxiliary data (TDX): the kernel answers ENODATA etc.
            Err(_) if tee == Tee::TdxEcdsa => None,
            Err(e) => return Err(err("auxblob", e)),
        };
        if generation()? != before {
            return Err(RatsError::Attester {
                tee: tee.name(),
                reason: "another writer changed the report request while it was read".into(),
            });
        }
        if outblob.is_empty() {
            return Err(RatsError::Attester {
                tee: tee.name(),
                reason: "the kernel returned an empty report".into(),
            });
        }
        Ok(Evidence {
            tee,
            bytes: outblob,
            collateral: auxblob,
        })
    }
}

impl<F: ConfigFs> Attester for TsmAttester<F> {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let name = format!(
            "rats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let entry = self.root.join(name);
        self.fs.mkdir(&entry).map_err(|e| RatsError::Attester {
            tee: "tsm",
            reason: format!("{}: {e}", entry.display()),
        })?;
        let result = self.report(&entry, report_data);
        // The entry is ours alone; it goes whatever happened.
        let _ = self.fs.rmdir(&entry);
        result
    }
}
