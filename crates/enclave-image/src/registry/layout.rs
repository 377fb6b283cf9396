//! OCI image layouts as a source (image-spec `image-layout.md`): a directory with
//! `oci-layout`, `index.json` and `blobs/<alg>/<hex>`, or a tar of one (skopeo's
//! `oci-archive:`), read in place without extracting.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::blob::{sha256_digest, Checker};
use super::manifest::{parse_manifest, select_platform, Index, ManifestKind};
use super::reference::check_digest;
use super::{Descriptor, Error, RegistryConfig, Resolved, MAX_METADATA_SIZE};

/// The annotation naming a tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

enum Store {
    Dir(PathBuf),
    /// Regular files of the tar: name (without `./`) → (offset of the data, size).
    Archive {
        path: PathBuf,
        entries: HashMap<String, (u64, u64)>,
    },
}

pub(crate) struct Layout {
    store: Store,
    shown: String,
}

impl Layout {
    pub fn open_dir(dir: &Path) -> Result<Self, Error> {
        let l = Layout {
            store: Store::Dir(dir.to_path_buf()),
            shown: dir.display().to_string(),
        };
        l.check_version()?;
        Ok(l)
    }

    pub fn open_archive(path: &Path) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let bad = |reason: String| Error::Layout {
            path: shown.clone(),
            reason,
        };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive
            .entries()
            .map_err(|e| bad(format!("not a tar: {e}")))?
        {
            let entry = entry.map_err(|e| bad(format!("bad tar entry: {e}")))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| bad(format!("bad tar entry name: {e}")))?;
            let name = name.to_string_lossy();
            let name = name.trim_start_matches("./").to_string();
            entries.insert(name, (entry.raw_file_position(), entry.size()));
        }
        let l = Layout {
            store: Store::Archive {
                path: path.to_path_buf(),
                entries,
            },
            shown,
        };
        l.check_version()?;
        Ok(l)
    }

    /// The directory or archive path, as errors show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Layout {
            path: self.shown.clone(),
            reason: reason.into(),
        }
    }

    fn check_version(&self) -> Result<(), Error> {
        let bytes = self.read_small("oci-layout")?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("oci-layout: {e}")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(ver) if ver.starts_with("1.") => Ok(()),
            other => Err(self.bad(format!(
                "oci-layout: unsupported imageLayoutVersion {other:?}"
            ))),
        }
    }

    /// Opens `name` inside the layout: a reader and its length.
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), Error> {
        match &self.store {
            Store::Dir(dir) => {
                let p = dir.join(name);
                let f = File::open(&p).map_err(|e| self.bad(format!("{name}: {e}")))?;
                let len = f
                    .metadata()
                    .map_err(|e| self.bad(format!("{name}: {e}")))?
                    .len();
                Ok((Box::new(f), len))
            }
            Store::Archive { path, entries } => {
                let &(off, len) = entries
                    .get(name)
                    .ok_or_else(|| self.bad(format!("{name}: not in the archive")))?;
                let mut f = File::open(path).map_err(|e| self.bad(e.to_string()))?;
                f.seek(SeekFrom::Start(off))
                    .map_err(|e| self.bad(e.to_string()))?;
                Ok((Box::new(f.take(len)), len))
            }
        }
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, Error> {
        let (r, len) = self.open(name)?;
        if len > MAX_METADATA_SIZE {
            return Err(self.bad(format!("{name}: {len} bytes exceeds {MAX_METADATA_SIZE}")));
        }
        let mut out = Vec::new();
        r.take(MAX_METADATA_SIZE)
            .read_to_end(&mut out)
            .map_err(|e| self.bad(format!("{name}: {e}")))?;
        Ok(out)
    }

    fn blob_name(&self, digest: &str) -> Result<String, Error> {
        check_digest(digest).map_err(|r| self.bad(r))?;
        Ok(format!("blobs/{}", digest.replacen(':', "/", 1)))
    }

    pub fn fetch_blob(
        &self,
        desc: &Descriptor,
        out: &mut (dyn Write + Send),
        limit: u64,
    ) -> Result<u64, Error> {
        let mut checker = Checker::new(&self.shown, desc, limit)?;
        let (mut r, len) = self.open(&self.blob_name(&desc.digest)?)?;
        checker.announced(Some(len))?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| self.bad(format!("blob {}: {e}", desc.digest)))?;
            if n == 0 {
                break;
            }
            checker.feed(&buf[..n], out)?;
        }
        checker.finish(out)
    }

    fn fetch_small(&self, desc: &Descriptor) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.fetch_blob(desc, &mut out, MAX_METADATA_SIZE)?;
        Ok(out)
    }

    /// The manifest tagged `tag` in `index.json` (or its only manifest), through an
    /// index to the configured platform.
    pub fn resolve(&self, tag: Option<&str>, cfg: &RegistryConfig) -> Result<Resolved, Error> {
        let index_json = self.read_small("index.json")?;
        let index: Index = serde_json::from_slice(&index_json)
            .map_err(|e| self.bad(format!("index.json: {e}")))?;
        let tagged: Vec<&Descriptor> = match tag {
            Some(t) => index
                .manifests
                .iter()
                .filter(|d| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n == t)
                })
                .collect(),
            None => index.manifests.iter().collect(),
        };
        let entry = match (tagged.as_slice(), tag) {
            ([one], _) => *one,
            ([], Some(t)) => {
                let names: Vec<&str> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME).map(String::as_str))
                    .collect();
                return Err(self.bad(format!(
                    "no manifest tagged {t:?} (tags: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            ([], None) => return Err(self.bad("index.json lists no manifest")),
            (_, _) => {
                return Err(self.bad(format!(
                    "{} manifests match{}: name a tag",
                    tagged.len(),
                    tag.map(|t| format!(" {t:?}")).unwrap_or_default()
                )))
            }
        };
        let bytes = self.fetch_small(entry)?;
        let what = format!("{} {}", self.shown, entry.digest);
        match parse_manifest(&what, Some(&entry.media_type), &bytes)? {
            ManifestKind::Image(manifest) => Ok(Resolved {
                manifest_digest: sha256_digest(&bytes),
                manifest_bytes: bytes,
                manifest: *manifest,
                index_digest: None,
            }),
            ManifestKind::Index(idx) => {
                let child = select_platform(&idx, &cfg.platform)?;
                let child_bytes = self.fetch_small(child)?;
                match parse_manifest(&what, Some(&child.media_type), &child_bytes)? {
                    ManifestKind::Image(manifest) => Ok(Resolved {
                        manifest_digest: sha256_digest(&child_bytes),
                        manifest_bytes: child_bytes,
                        manifest: *manifest,
                        index_digest: Some(entry.digest.clone()),
                    }),
                    ManifestKind::Index(_) => {
                        Err(self.bad(format!("{}: nested index refused", child.digest)))
                    }
                }
            }
        }
    }
}
