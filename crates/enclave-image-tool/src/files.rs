//! Local files the tool reads and writes: key-encryption keys (32 raw bytes, the KBS
//! resource's content as coco_keyprovider's `keypath` files), and new files published
//! atomically without overwriting anything (keys 0600, signatures 0644).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Length of a key-encryption key (AES-256, CoCo's `A256GCM` wrap).
pub const KEK_LEN: usize = 32;

/// Errors of this module, one line each, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The file exists; nothing is overwritten.
    #[error("{0}: already exists (not overwritten)")]
    Exists(String),
    /// A KEK file that is not 32 bytes.
    #[error("KEK file {path}: {len} bytes, a KEK is {KEK_LEN} raw bytes")]
    KekLength {
        /// The file.
        path: String,
        /// Its length.
        len: u64,
    },
    /// No random bytes.
    #[error("random bytes: {0}")]
    Random(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a KEK file: exactly 32 raw bytes.
///
/// Errors: [`FileError::Io`], [`FileError::KekLength`].
pub fn read_kek(path: &Path) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if len != KEK_LEN as u64 {
        return Err(FileError::KekLength {
            path: path.display().to_string(),
            len,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(KEK_LEN));
    f.take(KEK_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(io_err(path))?;
    if out.len() != KEK_LEN {
        return Err(FileError::KekLength {
            path: path.display().to_string(),
            len: out.len() as u64,
        });
    }
    Ok(out)
}

/// 32 fresh random bytes.
pub fn random_kek() -> Result<Zeroizing<Vec<u8>>, FileError> {
    let mut k = Zeroizing::new(vec![0u8; KEK_LEN]);
    getrandom::getrandom(&mut k).map_err(|e| FileError::Random(e.to_string()))?;
    Ok(k)
}

/// Refuses early (before any work) a path [`write_new`] would refuse.
pub fn check_new(path: &Path) -> Result<(), FileError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(FileError::Exists(path.display().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_of(path);
            match fs::metadata(&parent) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(FileError::Io {
                    path: parent.display().to_string(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                }),
                Err(e) => Err(FileError::Io {
                    path: parent.display().to_string(),
                    source: e,
                }),
            }
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a new file with `mode`, all or nothing: the bytes go to a temporary file in
/// the same directory (created 0600), which is then hard-linked to `path` — that fails
/// if `path` exists, so nothing is ever overwritten — and removed.
///
/// Errors: [`FileError::Exists`], [`FileError::Io`].
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent_of(path);
    // tempfile creates with 0600, so a key is never readable by others, even briefly.
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .and_then(|_| fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)))
        .map_err(io_err(path))?;
    match fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(FileError::Exists(path.display().to_string()))
        }
        Err(e) => Err(io_err(path)(e)),
    }
    // `tmp` is removed on drop.
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_are_private_and_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kek.bin");
        check_new(&p).unwrap();
        write_new(&p, &[7u8; 32], 0o600).unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(read_kek(&p).unwrap().as_slice(), &[7u8; 32]);
        let e = write_new(&p, b"other", 0o600).unwrap_err().to_string();
        assert!(e.ends_with("already exists (not overwritten)"), "{e}");
        assert!(check_new(&p).is_err());
        assert_eq!(fs::read(&p).unwrap(), [7u8; 32]);
        // Only the one file: the temporary one is gone.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(check_new(&d.path().join("no/such/dir/f")).is_err());

        let short = d.path().join("short");
        fs::write(&short, [1u8; 16]).unwrap();
        let e = read_kek(&short).unwrap_err().to_string();
        assert!(e.ends_with("16 bytes, a KEK is 32 raw bytes"), "{e}");
    }
}
