//! Where resources live: in memory, one 0600 file per resource in a directory,
//! named as Trustee's LocalFs backend names them (`repo\x2Ftype\x2Ftag`), or in
//! PostgreSQL ([`crate::pg`], table `verdictd_resources`, keyed `repo/type/tag`).

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use crate::KbsError;

pub enum Storage {
    Memory(RwLock<HashMap<String, Zeroizing<Vec<u8>>>>),
    LocalFs(PathBuf),
    Postgres(Arc<crate::pg::Pg>),
}

/// A resource read ahead of the decision to release it ([`crate::AppState::read_ahead`]): with
/// postgres, its row as stored, still sealed; with the local stores, nothing yet (they
/// cost no round trip).
pub enum Prefetched {
    Row(Option<crate::pg::SealedResource>),
    Later,
}

/// Checks one resource path segment: `[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*`, as Trustee. This
/// is what keeps `..` and `/` out of file names.
pub fn valid_segment(s: &str) -> bool {
    let ok =
        |c: char, dot: bool| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dot && c == '.');
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if ok(c, false) => chars.all(|c| ok(c, true)),
        _ => false,
    }
}

/// Splits and checks `repo/type/tag`.
pub fn resource_path(path: &str) -> Result<[&str; 3], KbsError> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [r, t, g] if [r, t, g].iter().all(|s| valid_segment(s)) => Ok([r, t, g]),
        // Trustee's resource plugin refuses it so (PluginInternalError, 401).
        _ => Err(KbsError::PluginInternal(format!(
            "illegal ResourceDesc format: resource path {path:?}: expected repo/type/tag, each [a-zA-Z0-9_-][a-zA-Z0-9_.-]*"
        ))),
    }
}

impl Storage {
    pub fn memory() -> Storage {
        Storage::Memory(RwLock::new(HashMap::new()))
    }

    pub fn local_fs(dir: PathBuf) -> anyhow::Result<Storage> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("storage {}: {e}", dir.display()))?;
        Ok(Storage::LocalFs(dir))
    }

    fn file(dir: &std::path::Path, key: &[&str; 3]) -> PathBuf {
        dir.join(key.join("\\x2F"))
    }

    pub async fn get(&self, key: &[&str; 3]) -> Result<Option<Zeroizing<Vec<u8>>>, KbsError> {
        match self {
            Storage::Postgres(pg) => pg.resource(&key.join("/")).await,
            Storage::Memory(m) => Ok(m.read().expect("storage").get(&key.join("/")).cloned()),
            Storage::LocalFs(dir) => match std::fs::read(Self::file(dir, key)) {
                Ok(b) => Ok(Some(Zeroizing::new(b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(KbsError::PluginInternal(format!(
                    "reading {}: {e}",
                    key.join("/")
                ))),
            },
        }
    }

    /// The bytes of `key`, from what [`crate::AppState::read_ahead`] read.
    pub async fn get_prefetched(
        &self,
        key: &[&str; 3],
        prefetched: Prefetched,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KbsError> {
        match (self, prefetched) {
            (Storage::Postgres(pg), Prefetched::Row(Some(row))) => {
                pg.open_resource(row).await.map(Some)
            }
            (Storage::Postgres(_), Prefetched::Row(None)) => Ok(None),
            _ => self.get(key).await,
        }
    }

    pub async fn put(&self, key: &[&str; 3], value: &[u8]) -> Result<(), KbsError> {
        match self {
            Storage::Postgres(pg) => pg.put_resource(&key.join("/"), value).await,
            Storage::Memory(m) => {
                m.write()
                    .expect("storage")
                    .insert(key.join("/"), Zeroizing::new(value.to_vec()));
                Ok(())
            }
            Storage::LocalFs(dir) => {
                // Written aside and renamed, so a crash never leaves half a secret.
                crate::files::replace_private(&Self::file(dir, key), value).map_err(|e| {
                    KbsError::PluginInternal(format!("storing {}: {e}", key.join("/")))
                })
            }
        }
    }

    /// Removes a resource; whether it existed.
    pub async fn delete(&self, key: &[&str; 3]) -> Result<bool, KbsError> {
        match self {
            Storage::Postgres(pg) => pg.delete_resource(&key.join("/")).await,
            Storage::Memory(m) => Ok(m.write().expect("storage").remove(&key.join("/")).is_some()),
            Storage::LocalFs(dir) => match std::fs::remove_file(Self::file(dir, key)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(KbsError::PluginInternal(format!(
                    "deleting {}: {e}",
                    key.join("/")
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn segments() {
        for good in ["default", "key", "a.b", "_x", "-y", "1.2.3"] {
            assert!(valid_segment(good), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", "é", "a\\x2Fb"] {
            assert!(!valid_segment(bad), "{bad}");
        }
        assert!(resource_path("a/b/c").is_ok());
        for bad in ["a/b", "a/b/c/d", "a/../c", "/a/b", "a/b/", "a//b"] {
            assert!(resource_path(bad).is_err(), "{bad}");
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn both_backends() {
        let dir = tempfile::tempdir().unwrap();
        for s in [
            Storage::memory(),
            Storage::local_fs(dir.path().join("r")).unwrap(),
        ] {
            let k = ["default", "key", "1"];
            assert!(block_on(s.get(&k)).unwrap().is_none());
            block_on(s.put(&k, b"one")).unwrap();
            block_on(s.put(&k, b"two")).unwrap();
            assert_eq!(block_on(s.get(&k)).unwrap().unwrap().as_slice(), b"two");
            assert!(block_on(s.delete(&k)).unwrap());
            assert!(!block_on(s.delete(&k)).unwrap());
        }
        let s = Storage::local_fs(dir.path().join("r")).unwrap();
        block_on(s.put(&["a", "b", "c"], b"x")).unwrap();
        let f = dir.path().join("r").join("a\\x2Fb\\x2Fc");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path().join("r")).unwrap().count(), 1);
    }
}
