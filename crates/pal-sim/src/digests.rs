//! Program digests, kept between enclaves the way the kernel's IMA keeps file
//! measurements: a program whose identity (device, inode, size, mtime, ctime) has not
//! changed since it was last hashed is not hashed again.
//!
//! Hashing dominates the cost of starting a `sim` enclave (SHA-384 of a 2 MB busybox is
//! about 6 ms on a 2-core EPYC), so the cache is what keeps a `sim` enclave within a few
//! milliseconds of a plain container. Any write to the file changes its ctime, which
//! userspace cannot set back, so a changed program is always hashed again.
//!
//! The cache lives in `<platform dir>/digests` (root-only, like the platform key). It
//! is opened by `pal_get_version` in the host's mount namespace and used by descriptor
//! from inside the container. Whoever can write there can also read the platform key:
//! the cache adds no trust that `sim` did not already place in the host. When the
//! directory cannot be used (a rootless container, say) programs are simply hashed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use sim_tee::Digest;

/// Entries are named by device and inode; at most this many are kept.
const MAX_ENTRIES: usize = 256;

/// How long a file must have been unchanged before its digest is kept.
const SETTLE_SECS: i64 = 2;

static DIR: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Opens (creating) the cache directory under `platform_dir`. Call once, in the host's
/// mount namespace; failures leave the cache off.
pub(crate) fn open(platform_dir: &Path) {
    DIR.get_or_init(|| {
        let dir = platform_dir.join("digests");
        let _ = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            });
        nix::fcntl::open(
            &dir,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()
        // SAFETY: a fresh descriptor from open(2) that nothing else owns.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    });
}

/// What identifies a file's content without reading it.
#[derive(PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// A file changed within the last seconds could change again within the same
    /// timestamp tick and keep its stamp (git's "racy" index entries): its digest is not
    /// kept until it has been still for a while.
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.ctime.0.max(self.mtime.0) + SETTLE_SECS < now
    }

    fn line(&self, digest: &Digest) -> String {
        format!(
            "{} {}.{} {}.{} {}\n",
            self.size,
            self.mtime.0,
            self.mtime.1,
            self.ctime.0,
            self.ctime.1,
            hex::encode(digest)
        )
    }
}

/// SHA-384 of the program at `path`, from the cache when the file is unchanged.
pub(crate) fn program_digest(path: &str) -> std::io::Result<Digest> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let dir = DIR.get().and_then(|d| d.as_ref());
    let name = format!("{:x}-{:x}", meta.dev(), meta.ino());
    let stamp = Stamp::of(&meta);
    if let Some(d) = dir.and_then(|dir| lookup(dir, &name, &stamp)) {
        return Ok(d);
    }
    let digest = sim_tee::program_digest(&file)?;
    // The file may have changed while it was read: keep only a digest of a still file.
    if let (Some(dir), Ok(after)) = (dir, file.metadata()) {
        if Stamp::of(&after) == stamp && stamp.settled() {
            store(dir, &name, &stamp.line(&digest));
        }
    }
    Ok(digest)
}

fn lookup(dir: &OwnedFd, name: &str, stamp: &Stamp) -> Option<Digest> {
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: a fresh descriptor from openat(2) that nothing else owns.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(512)
        .read_to_string(&mut text)
        .ok()?;
    let (_, hex_digest) = text.trim_end().rsplit_once(' ')?;
    let digest: Digest = hex::decode(hex_digest).ok()?.try_into().ok()?;
    (text == stamp.line(&digest)).then_some(digest)
}

/// Writes an entry through a temporary file and rename, so readers see whole entries.
fn store(dir: &OwnedFd, name: &str, line: &str) {
    let tmp = format!(".{name}.{}", std::process::id());
    let Ok(fd) = openat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) else {
        return;
    };
    // SAFETY: a fresh descriptor from openat(2) that nothing else owns.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let ok = f.write_all(line.as_bytes()).is_ok()
        && renameat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            Some(dir.as_raw_fd()),
            name,
        )
        .is_ok();
    if !ok {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    prune(dir);
}

/// Keeps the cache bounded: past [`MAX_ENTRIES`] it starts over. Misses cost a hash
/// anyway, so an occasional empty cache costs little.
fn prune(dir: &OwnedFd) {
    let Ok(mut listing) = nix::dir::Dir::openat(
        Some(dir.as_fd().as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let names: Vec<String> = listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    if names.len() <= MAX_ENTRIES {
        return;
    }
    for n in names {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            n.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_line_round_trips_and_any_change_misses() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let dir: OwnedFd = File::open(&cache).unwrap().into();
        let prog = tmp.path().join("prog");
        std::fs::write(&prog, b"one").unwrap();
        let meta = std::fs::metadata(&prog).unwrap();
        let stamp = Stamp::of(&meta);
        let digest = sim_tee::sha384(b"one");
        store(&dir, "e", &stamp.line(&digest));
        assert_eq!(lookup(&dir, "e", &stamp), Some(digest));

        std::fs::write(&prog, b"two").unwrap();
        let changed = Stamp::of(&std::fs::metadata(&prog).unwrap());
        assert!(changed != stamp, "a write changes the stamp");
        assert_eq!(lookup(&dir, "e", &changed), None);
        assert_eq!(lookup(&dir, "missing", &stamp), None);
        assert!(!changed.settled(), "a file written just now is not kept");
    }
}
