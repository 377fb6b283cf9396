//! PATCH(inclavare): `tmpcopyup`, the runc extension podman uses for `--read-only` and
//! `--tmpfs`: a tmpfs mounted over a directory of the image starts with a copy of that
//! directory (runc: libcontainer/rootfs_linux.go, `EXT_COPYUP`, `fileutils.CopyDirectory`).
//! Without it the option reached the kernel as tmpfs data and the mount failed EINVAL.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// The option, which is not passed to the kernel.
pub const TMPCOPYUP: &str = "tmpcopyup";

/// Copies the tree of `from` (the image's directory) into the root of the new, still
/// detached tmpfs `to`: files, directories, symlinks and device nodes with their modes
/// and owners. When the image had the directory (`existed`), the tmpfs root takes its
/// mode and owner; a directory made for the mount leaves the tmpfs its own (1777, or
/// the `mode=` option), as runc's `os.Chmod(dest, stat.Mode())` only after a successful
/// `os.Stat` (libcontainer/rootfs_linux.go, the tmpfs case).
pub fn copy_up(from: BorrowedFd<'_>, to: BorrowedFd<'_>, existed: bool) -> io::Result<()> {
    let from = Path::new("/proc/self/fd").join(from.as_raw_fd().to_string());
    let to = Path::new("/proc/self/fd").join(to.as_raw_fd().to_string());
    copy_dir(&from, &to)?;
    if !existed {
        return Ok(());
    }
    let m = fs::metadata(&from)?;
    std::os::unix::fs::chown(&to, Some(m.uid()), Some(m.gid()))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(m.mode() & 0o7777))
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let m = fs::symlink_metadata(&src)?;
        let kind = m.file_type();
        if kind.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(&dst)?;
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
            nix::sys::stat::mknod(
                &dst,
                nix::sys::stat::SFlag::from_bits_truncate(m.mode() & libc::S_IFMT),
                nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o7777),
                m.rdev(),
            )?;
        } else {
            continue; // sockets are not copied
        }
        std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        if !kind.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
    }
    Ok(())
}
