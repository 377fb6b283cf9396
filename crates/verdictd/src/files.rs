//! Private files written whole: a secret or key is never seen half-written, and never
//! readable by anyone but its owner (mode 0600 from creation).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` as a new file `tmp` (mode 0600, `O_EXCL`) and syncs it; removes it
/// again if that fails.
fn write_new_private(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// The temporary name beside `path` this process writes through.
fn aside(path: &Path) -> std::path::PathBuf {
    path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ))
}

/// Creates `path` holding `bytes` (mode 0600) unless something is there already: written
/// aside, then linked into place — link(2) fails when the name exists, so of processes
/// racing (replicas starting on one volume) the first wins. `Ok(true)` when this call
/// created it, `Ok(false)` when it existed.
pub(crate) fn create_private_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = aside(path);
    write_new_private(&tmp, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` (mode 0600): written aside, then renamed over it, so a
/// crash leaves the old content or the new, never half of it.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = aside(path);
    write_new_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_the_first_creator_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        assert!(create_private_once(&p, b"first").unwrap());
        assert!(!create_private_once(&p, b"second").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        replace_private(&p, b"third").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing left aside.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
