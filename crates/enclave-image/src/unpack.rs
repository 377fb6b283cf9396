//! Applying image layers to a root directory safely (images reference §4).
//!
//! One layer goes through, synchronously:
//! blob `Read` (downloaded and digest-checked by [`crate::registry`]; decrypted and
//! HMAC-checked by [`crate::ocicrypt`]: any `Read` works, its error at EOF fails the layer) →
//! decompression by media type (gzip: `flate2`; zstd: the pure-Rust `ruzstd`) → sha256/sha512
//! of the uncompressed tar, compared with the config's `rootfs.diff_ids[i]` → the tar applied
//! to a private **staging** directory → drained to EOF (§1.5: the readers below check at EOF)
//! → only then **published** into the root. On any error the staging directory is removed
//! and the root is unchanged.
//!
//! # Staging and publishing (why this shape)
//! A layer is staged into an empty directory beside the root (same filesystem, so publishing
//! is `rename(2)`), not into a copy of the root. Whatever acts on the lower layers is recorded
//! instead of applied: whiteouts `.wh.<name>` (delete `<name>` below), opaque markers
//! `.wh..wh..opq` (hide all lower children of the directory), and the attributes of
//! directories the layer names. Publishing applies whiteouts and opaque markers first — so the
//! layer's own entries survive whatever their order in the tar — then moves the staged tree
//! in one entry at a time: a directory the layer names merges into a lower directory (its
//! attributes replace the lower ones), a directory made only as a parent follows the lower
//! path (inside the root), anything else replaces what the root has (a lower directory with
//! its contents). The staged tree is never followed (its symlinks move as symlinks).
//!
//! # Rules (§4.3–§4.4)
//! - Names: leading `/` stripped, `.` dropped; `..`, NUL, names over 4096 bytes or deeper
//!   than 256 components are refused.
//! - Parents are resolved one component at a time with `O_NOFOLLOW`; symlinks met on the way
//!   are followed but never out of the tree (`..` at the top stays at the top, absolute
//!   targets start at the top): `openat2(RESOLVE_IN_ROOT)` semantics, i.e. what the workload
//!   itself will see in its root. Missing parents are made 0755.
//! - Files are created `O_CREAT|O_EXCL|O_NOFOLLOW` after unlinking whatever was there;
//!   owner (when [`UnpackOptions::preserve_ownership`]), mode, xattrs and mtime are set
//!   through the file's fd; symlinks, devices and fifos with `AT_SYMLINK_NOFOLLOW` calls.
//! - Directory over directory merges attributes; anything else is replaced; duplicated
//!   entries: the last one wins.
//! - What is mounted in the root (another filesystem: `/proc`, a host volume) is the
//!   container's: entries at or below a mount point are skipped (a mount covers them, as
//!   over an image runc runs), whiteouts leave it alone, and a path that reaches one
//!   through a lower layer's symlink fails the layer (`EXDEV`): image files never land on
//!   a host volume.
//! - Symlink targets are stored verbatim. Hardlink targets are relative to the layer root,
//!   looked up in this layer then in the lower layers, must not be directories; absolute
//!   targets and `..` are refused (no layer producer writes them).
//! - Devices and fifos only with [`UnpackOptions::allow_devices`]; unknown typeflags (GNU
//!   sparse, volume labels, …) are refused; PAX global headers are ignored (as containerd).
//! - PAX: `path`, `linkpath`, `uid`, `gid`, `mtime`, `SCHILY.xattr.*` are used; a malformed
//!   record, or a `size` that disagrees with a non-zero header size, is refused (parser
//!   differentials, RUSTSEC-2026-0068). Xattrs the filesystem does not support
//!   (`EOPNOTSUPP`) are skipped; xattrs are not set on symlinks, devices and fifos.
//! - Directory attributes are applied after all entries (children bump mtimes). atime is set
//!   to mtime.
//!
//! The `tar` crate is used only to parse headers; nothing of its unpacking code runs.
//!
//! Known limits: a symlink target with `..` after a component this layer does not contain
//! is resolved against the layer's staging tree, not the merged one; publishing is not
//! atomic (a filesystem error while moving entries — not a property of the layer — can leave
//! part of a layer published); stage layers in order if they hardlink to lower layers.

mod publish;
mod stage;
mod stream;
mod walk;

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Errors of the layer pipeline. Each is one line naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A tar entry was refused or could not be applied (1-based index, name as in the tar).
    #[error("layer entry {index} {name:?}: {reason}")]
    Entry {
        /// Position of the entry in the tar, from 1.
        index: u64,
        /// The entry's name as written in the tar (lossy UTF-8).
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The tar stream itself is malformed (bad checksum, truncated, …).
    #[error("malformed tar after entry {index}: {source}")]
    Tar {
        /// Entries read before the failure.
        index: u64,
        /// The parser's error.
        source: io::Error,
    },
    /// The reader below failed: decompression, or the caller's reader (HMAC, download).
    #[error("reading the layer stream: {0}")]
    Stream(io::Error),
    /// More uncompressed bytes than [`UnpackOptions::max_uncompressed_bytes`].
    #[error("layer has more than {limit} uncompressed bytes (the configured limit)")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// More entries than [`UnpackOptions::max_entries`].
    #[error("layer has more than {limit} tar entries (the configured limit)")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The uncompressed stream does not hash to the config's diff_id.
    #[error("layer diff_id mismatch: the image config says {expected}, the uncompressed layer is {actual}")]
    DiffIdMismatch {
        /// From `rootfs.diff_ids`.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// A diff_id that is not `sha256:<64 hex>` or `sha512:<128 hex>`.
    #[error("invalid diff_id {0:?} (expected sha256:<64 hex> or sha512:<128 hex>)")]
    BadDiffId(String),
    /// A media type that is not a (plain, gzip or zstd) tar layer.
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    /// The root directory cannot be opened.
    #[error("root directory {path:?}: {source}")]
    Root {
        /// As given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The staging directory cannot be created.
    #[error("creating a staging directory in {path:?}: {source}")]
    Staging {
        /// Its parent.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Moving a staged entry into the root failed (path relative to the root).
    #[error("publishing {path:?}: {reason}")]
    Publish {
        /// Path below the root or the staging directory.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// How a layer is applied.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Create device nodes and fifos (else an entry of that type fails the layer).
    /// Default false.
    pub allow_devices: bool,
    /// Set uid/gid from the tar (needs root or CAP_CHOWN). Default: true when running as
    /// root. When false, files belong to the caller and xattrs refused with `EPERM` are
    /// skipped.
    pub preserve_ownership: bool,
    /// Most uncompressed tar bytes per layer. Default 8 GiB.
    pub max_uncompressed_bytes: u64,
    /// Most tar entries per layer (extension headers not counted). Default 1 000 000.
    pub max_entries: u64,
    /// Where staging directories are made; must be on the root's filesystem. Default: the
    /// root's parent directory.
    pub staging_parent: Option<PathBuf>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            allow_devices: false,
            preserve_ownership: rustix::process::geteuid().is_root(),
            max_uncompressed_bytes: 8 << 30,
            max_entries: 1_000_000,
            staging_parent: None,
        }
    }
}

/// What one layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries applied (PAX/GNU extension headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Hardlinks.
    pub hardlinks: u64,
    /// Device nodes and fifos.
    pub devices: u64,
    /// `.wh.<name>` whiteouts.
    pub whiteouts: u64,
    /// `.wh..wh..opq` opaque markers.
    pub opaque_dirs: u64,
    /// Bytes of regular-file content.
    pub file_bytes: u64,
    /// Bytes of the uncompressed tar stream, read to its EOF.
    pub tar_bytes: u64,
}

/// Layer compression, from the descriptor's media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Maps an OCI (image-spec `media-types.md`, including the deprecated
    /// `nondistributable` types) or Docker v2s2 layer media type. Encrypted types
    /// (`+encrypted`) are refused: decrypt first, then pass the type without the suffix.
    pub fn from_media_type(media_type: &str) -> Result<Compression, UnpackError> {
        let base = media_type
            .strip_prefix("application/vnd.oci.image.layer.v1.")
            .or_else(|| {
                media_type.strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.")
            });
        match (base, media_type) {
            (Some("tar"), _) => Ok(Compression::None),
            (Some("tar+gzip"), _) => Ok(Compression::Gzip),
            (Some("tar+zstd"), _) => Ok(Compression::Zstd),
            (
                _,
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            ) => Ok(Compression::Gzip),
            _ => Err(UnpackError::MediaType(media_type.to_string())),
        }
    }
}

fn parse_diff_id(diff_id: &str) -> Result<stream::Algo, UnpackError> {
    let bad = || UnpackError::BadDiffId(diff_id.to_string());
    let (algo, hex) = diff_id.split_once(':').ok_or_else(bad)?;
    let (algo, len) = match algo {
        "sha256" => (stream::Algo::Sha256, 64),
        "sha512" => (stream::Algo::Sha512, 128),
        _ => return Err(bad()),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    Ok(algo)
}

/// A layer applied to its staging directory and not yet visible in the root. Dropping it
/// (or any error) removes the staging directory; [`StagedLayer::publish`] moves it in.
pub struct StagedLayer {
    dir: tempfile::TempDir,
    dir_fd: OwnedFd,
    root_fd: OwnedFd,
    staged: stage::Staged,
    opts: UnpackOptions,
}

impl std::fmt::Debug for StagedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedLayer")
            .field("dir", &self.dir.path())
            .field("stats", &self.staged.stats)
            .finish()
    }
}

impl StagedLayer {
    fn open(
        root: &Path,
        opts: &UnpackOptions,
    ) -> Result<(tempfile::TempDir, OwnedFd, OwnedFd), UnpackError> {
        let root_err = |source: io::Error| UnpackError::Root {
            path: root.to_path_buf(),
            source,
        };
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| root_err(e.into()))?;
        let parent = match &opts.staging_parent {
            Some(p) => p.clone(),
            None => root
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        };
        let dir = tempfile::Builder::new()
            .prefix(".layer-staging-")
            .tempdir_in(&parent)
            .map_err(|source| UnpackError::Staging {
                path: parent.clone(),
                source,
            })?;
        let dir_fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::Staging {
            path: parent,
            source: e.into(),
        })?;
        Ok((dir, dir_fd, root_fd))
    }

    /// What the layer holds.
    pub fn stats(&self) -> &LayerStats {
        &self.staged.stats
    }

    /// Makes the layer visible in the root: whiteouts and opaque markers act on the lower
    /// layers, then the staged entries are moved in. Layers must be published in order.
    pub fn publish(self) -> Result<LayerStats, UnpackError> {
        publish::publish(
            self.dir_fd.as_fd(),
            self.root_fd.as_fd(),
            &self.staged,
            &self.opts,
        )?;
        let stats = self.staged.stats.clone();
        drop(self.dir);
        Ok(stats)
    }
}

/// Applies one layer's tar stream to a private staging directory beside `root` (see the
/// module docs), reading `tar` to its EOF. Nothing in `root` changes until
/// [`StagedLayer::publish`]. Errors: [`UnpackError::Entry`] naming the refused entry,
/// [`UnpackError::Tar`], [`UnpackError::Stream`] (the reader failed), the limits.
pub fn stage_layer(
    tar: impl Read,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<StagedLayer, UnpackError> {
    let (dir, dir_fd, root_fd) = StagedLayer::open(root, opts)?;
    let mut meter = stream::Meter::new(tar, None, opts.max_uncompressed_bytes);
    let staged = stage::stage(&mut meter, dir_fd.as_fd(), root_fd.as_fd(), opts)?;
    Ok(StagedLayer {
        dir,
        dir_fd,
        root_fd,
        staged,
        opts: opts.clone(),
    })
}

/// Applies one layer's uncompressed tar stream to `root`: [`stage_layer`] then
/// [`StagedLayer::publish`]. On error `root` is unchanged and nothing is left behind.
pub fn apply_layer(
    tar: impl Read,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<LayerStats, UnpackError> {
    stage_layer(tar, root, opts)?.publish()
}

/// The whole layer pipeline for one layer blob (already decrypted, if it was encrypted):
/// decompress by `media_type` ([`Compression::from_media_type`]), check the uncompressed
/// stream against `diff_id` (`sha256:…` or `sha512:…`, from the config's
/// `rootfs.diff_ids`), stage it, read `blob` to its EOF (so the caller's reader can fail the
/// layer there, e.g. on a bad HMAC), and publish into `root` only when all of that passed.
///
/// When both the tar and the reader below fail, the reader's error wins: a tampered
/// ciphertext is reported as such, not as the garbage it decrypts to.
pub fn unpack_layer<R: Read>(
    mut blob: R,
    media_type: &str,
    diff_id: &str,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<LayerStats, UnpackError> {
    let compression = Compression::from_media_type(media_type)?;
    let algo = parse_diff_id(diff_id)?;
    let (dir, dir_fd, root_fd) = StagedLayer::open(root, opts)?;
    let staged = (|| {
        let dec = stream::decoder(compression, &mut blob).map_err(UnpackError::Stream)?;
        let mut meter = stream::Meter::new(dec, Some(algo), opts.max_uncompressed_bytes);
        let staged = stage::stage(&mut meter, dir_fd.as_fd(), root_fd.as_fd(), opts)?;
        Ok((staged, meter.digest().unwrap_or_default()))
    })();
    let (staged, actual) = match staged {
        Err(e) => {
            // Give the reader below its chance to name the real cause (HMAC, digest): a
            // tampered ciphertext decrypts to garbage the decompressor or the tar parser
            // gives up on before the reader reaches its EOF check. A reader that already
            // failed fails again here with the same error.
            io::copy(&mut blob, &mut io::sink()).map_err(UnpackError::Stream)?;
            return Err(e);
        }
        Ok(v) => v,
    };
    // Bytes after the compressed stream still belong to the blob its checks cover.
    io::copy(&mut blob, &mut io::sink()).map_err(UnpackError::Stream)?;
    if actual != diff_id {
        return Err(UnpackError::DiffIdMismatch {
            expected: diff_id.to_string(),
            actual,
        });
    }
    StagedLayer {
        dir,
        dir_fd,
        root_fd,
        staged,
        opts: opts.clone(),
    }
    .publish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Gzip,
            ),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
        ] {
            assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
        }
        for mt in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/octet-stream",
            "",
        ] {
            assert!(Compression::from_media_type(mt).is_err(), "{mt}");
        }
    }

    #[test]
    fn diff_ids() {
        assert!(parse_diff_id(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_diff_id(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "A".repeat(64)),
            "sha256",
        ] {
            assert!(parse_diff_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        let c = |s: &str| stage::clean_name(s.as_bytes()).map(|v| stage::show_comps(&v));
        assert_eq!(c("/etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(c("./a/./b/").unwrap(), "a/b");
        assert_eq!(c("./").unwrap(), "");
        assert!(c("a/../b").is_err());
        assert!(c("..").is_err());
        assert!(stage::clean_name(b"a\\0b").is_ok());
        assert!(stage::clean_name(b"a\x00b").is_err());
    }
}
