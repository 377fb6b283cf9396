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

/// A configfs-tsm report in JSON, as tools dump one entry of the interface and as
/// [`TsmReport::to_json`] writes [`Evidence`] from [`TsmAttester`]:
/// `{"provider": "tdx_guest" | "sev_guest", "outblob": …, "auxblob": … | null}`.
///
/// The blobs are read as standard base64 (the form written), hex, or an array of
/// bytes; member names are matched case-insensitively (Go's `OutBlob` too). `outblob`
/// is the TDX quote or SNP report, `auxblob` SNP's certificate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    pub provider: String,
    pub outblob: Vec<u8>,
    pub auxblob: Option<Vec<u8>>,
}

fn envelope_error(reason: String) -> RatsError {
    RatsError::Malformed {
        tee: "tsm",
        reason: format!("configfs-tsm report JSON: {reason}"),
    }
}

fn blob(name: &str, v: &serde_json::Value) -> Result<Option<Vec<u8>>, RatsError> {
    use base64::Engine as _;
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return hex::decode(s)
                    .map(Some)
                    .map_err(|e| envelope_error(format!("{name}: {e}")));
            }
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
                .map(Some)
                .map_err(|_| envelope_error(format!("{name} is neither base64 nor hex")))
        }
        serde_json::Value::Array(a) => a
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(Some)
            .ok_or_else(|| envelope_error(format!("{name} is an array of non-bytes"))),
        _ => Err(envelope_error(format!(
            "{name} is neither a string nor an array"
        ))),
    }
}

impl TsmReport {
    /// The envelope in `bytes`: `Ok(None)` when they are not a JSON object with an
    /// `outblob` member (other evidence), an error when they are one but malformed.
    pub fn from_json(bytes: &[u8]) -> Result<Option<TsmReport>, RatsError> {
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Ok(None);
        }
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) else {
            return Ok(None);
        };
        let get = |name: &str| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let Some(out) = get("outblob") else {
            return Ok(None);
        };
        let provider = match get("provider") {
            Some(serde_json::Value::String(p)) => p.trim().to_string(),
            _ => return Err(envelope_error("no \"provider\" string".into())),
        };
        let outblob =
            blob("outblob", out)?.ok_or_else(|| envelope_error("outblob is empty".into()))?;
        let auxblob = match get("auxblob") {
            Some(v) => blob("auxblob", v)?,
            None => None,
        };
        Ok(Some(TsmReport {
            provider,
            outblob,
            auxblob,
        }))
    }

    /// The TEE of the provider: `tdx_guest` is TDX, `sev_guest` SEV-SNP.
    pub fn tee(&self) -> Result<Tee, RatsError> {
        match self.provider.as_str() {
            "tdx_guest" => Ok(Tee::TdxEcdsa),
            "sev_guest" => Ok(Tee::SevSnp),
            other => Err(RatsError::UnknownType(format!(
                "configfs-tsm provider {other:?} (known: tdx_guest, sev_guest)"
            ))),
        }
    }

    /// The evidence it carries, checked to be of the provider's type.
    pub fn evidence(&self) -> Result<Evidence, RatsError> {
        let tee = self.tee()?;
        if self.outblob.first() == Some(&b'{') {
            return Err(envelope_error(
                "the outblob is JSON, not a quote or report".into(),
            ));
        }
        let found = Tee::detect(&self.outblob)?;
        if found != tee {
            return Err(envelope_error(format!(
                "provider {} but the outblob is {} evidence",
                self.provider,
                found.name()
            )));
        }
        Ok(Evidence {
            tee,
            bytes: self.outblob.clone(),
            collateral: self.auxblob.clone(),
        })
    }

    /// The envelope of TDX or SNP evidence (`None` for other TEEs), blobs in base64.
    pub fn from_evidence(e: &Evidence) -> Option<TsmReport> {
        let provider = match e.tee {
            Tee::TdxEcdsa => "tdx_guest",
            Tee::SevSnp => "sev_guest",
            _ => return None,
        };
        Some(TsmReport {
            provider: provider.into(),
            outblob: e.bytes.clone(),
            auxblob: e.collateral.clone(),
        })
    }

    /// `{"provider", "outblob", "auxblob"}` with the blobs in standard base64.
    pub fn to_json(&self) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        serde_json::json!({
            "provider": self.provider,
            "outblob": b64(&self.outblob),
            "auxblob": self.auxblob.as_deref().map(b64),
        })
        .to_string()
    }
}
