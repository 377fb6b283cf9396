//! Path resolution confined to a directory, one component at a time.
//!
//! Every step opens the next component with `O_NOFOLLOW`; a symlink met on the way is read
//! and its target walked from the confining directory (absolute targets) or from the
//! symlink's own directory (relative ones), with `..` at the top staying at the top. That is
//! `openat2(RESOLVE_IN_ROOT)` semantics (the kernel's `chroot` view of the tree), done in
//! user space so that missing parents can be created on the way and so that it also works on
//! a LibOS without `openat2`. Only one directory fd is held at a time.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// One path component (never empty, `.` or `..` once resolved).
pub(super) type Comp = Vec<u8>;

/// Deepest physical path we build or walk (components). Bounds recursion and fd use
/// (removal holds one fd per level); real images stay far below it.
pub(super) const MAX_DEPTH: usize = 256;

/// Symlinks followed in one resolution, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: u32 = 40;

/// Opens a directory below `dirfd` without following a final symlink.
pub(super) fn open_dir(dirfd: impl AsFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Re-opens a physical path (symlink-free, as returned by [`resolve`]) below `root`.
pub(super) fn reopen(root: BorrowedFd<'_>, phys: &[Comp]) -> Result<OwnedFd, Errno> {
    let mut cur = open_dir(root, b".")?;
    for c in phys {
        cur = open_dir(&cur, c)?;
    }
    Ok(cur)
}

/// Splits a path (tar name or symlink target) into components, dropping empty ones and `.`.
pub(super) fn split(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Resolves `comps` below `root`, following symlinks (the last one too) but never out of
/// `root`. Missing components are created as 0755 directories when `created` is given (their
/// physical paths are appended to it), else the walk fails with `ENOENT`.
///
/// Returns the directory's fd and its physical (symlink-free) path below `root`. Errors:
/// `ENOTDIR` when a component is neither a directory nor a symlink, `ELOOP` after 40
/// symlinks, `ENAMETOOLONG` deeper than [`MAX_DEPTH`], `EXDEV` when a directory would be
/// created on another filesystem than `root`'s (in a mount point).
pub(super) fn resolve(
    root: BorrowedFd<'_>,
    comps: &[Comp],
    mut created: Option<&mut Vec<Vec<Comp>>>,
) -> Result<(OwnedFd, Vec<Comp>), Errno> {
    let mut pending: VecDeque<Comp> = comps.iter().cloned().collect();
    let mut cur = open_dir(root, b".")?;
    let mut phys: Vec<Comp> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            // `..` at the top stays at the top, as in a chroot.
            if phys.pop().is_some() {
                cur = reopen(root, &phys)?;
            }
            continue;
        }
        match fs::statat(&cur, c.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    cur = open_dir(&cur, &c)?;
                    phys.push(c);
                }
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = fs::readlinkat(&cur, c.as_slice(), Vec::new())?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        phys.clear();
                        cur = open_dir(root, b".")?;
                    }
                    let mut next: VecDeque<Comp> = split(target).map(<[u8]>::to_vec).collect();
                    next.extend(pending.drain(..));
                    pending = next;
                }
                _ => return Err(Errno::NOTDIR),
            },
            Err(Errno::NOENT) if created.is_some() => {
                // Never on another filesystem than the root's (a volume mounted in it,
                // reached through a symlink): what rename(2) says for the same move.
                if fs::fstat(&cur)?.st_dev != fs::fstat(root)?.st_dev {
                    return Err(Errno::XDEV);
                }
                fs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755))?;
                let fd = open_dir(&cur, &c)?;
                // mkdirat honours the umask; parents made for an entry are 0755 as in umoci.
                fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
                cur = fd;
                phys.push(c);
                if let Some(list) = created.as_deref_mut() {
                    list.push(phys.clone());
                }
            }
            Err(e) => return Err(e),
        }
        if phys.len() > MAX_DEPTH {
            return Err(Errno::NAMETOOLONG);
        }
    }
    Ok((cur, phys))
}

/// Names in a directory, without `.` and `..`.
pub(super) fn list(dir: &OwnedFd) -> Result<Vec<Comp>, Errno> {
    let mut d = fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let name = ent?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// What removals (whiteouts, opaque directories, replaced directories) leave alone:
/// whatever is on another filesystem than the root's (a mount point: the runtime's
/// `/proc` or `/dev`, a volume, a bind-mounted file — the container's, not the image's,
/// as with runtimes that mount over an unpacked image), and the directories in
/// `protect` (device and inode: the staging directory and its ancestors in the root).
#[derive(Debug, Clone, Default)]
pub(super) struct Keep {
    pub dev: u64,
    pub protect: Vec<(u64, u64)>,
}

impl Keep {
    /// Keeps what is not on `dir`'s filesystem.
    pub(super) fn of(dir: impl AsFd) -> Result<Keep, Errno> {
        Ok(Keep {
            dev: fs::fstat(dir)?.st_dev,
            protect: Vec::new(),
        })
    }

    /// Whether an entry with this `lstat` is kept.
    pub(super) fn keeps(&self, st: &fs::Stat) -> bool {
        st.st_dev != self.dev || self.protect.contains(&(st.st_dev, st.st_ino))
    }
}

/// Removes `name` below `dirfd` and, if it is a directory, everything in it, never following
/// a symlink (a symlink is removed, not its target). What `keep` keeps stays, and so do the
/// directories holding it.
pub(super) fn remove_all_at(dirfd: impl AsFd, name: &[u8], keep: &Keep) -> Result<(), Errno> {
    remove_all_depth(dirfd.as_fd(), name, 0, keep)
}

fn remove_all_depth(
    dirfd: BorrowedFd<'_>,
    name: &[u8],
    depth: usize,
    keep: &Keep,
) -> Result<(), Errno> {
    let st = match fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if keep.keeps(&st) {
        return Ok(());
    }
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return fs::unlinkat(dirfd, name, AtFlags::empty());
    }
    if depth > MAX_DEPTH {
        return Err(Errno::NAMETOOLONG);
    }
    let dir = open_dir(dirfd, name)?;
    clear_dir_depth(&dir, depth + 1, keep)?;
    drop(dir);
    match fs::unlinkat(dirfd, name, AtFlags::REMOVEDIR) {
        // It still holds something kept.
        Err(Errno::NOTEMPTY) | Err(Errno::BUSY) => Ok(()),
        other => other,
    }
}

/// Removes everything inside a directory (the directory itself stays), but what `keep`
/// keeps.
pub(super) fn clear_dir(dir: &OwnedFd, keep: &Keep) -> Result<(), Errno> {
    clear_dir_depth(dir, 0, keep)
}

fn clear_dir_depth(dir: &OwnedFd, depth: usize, keep: &Keep) -> Result<(), Errno> {
    for child in list(dir)? {
        remove_all_depth(dir.as_fd(), &child, depth, keep)?;
    }
    Ok(())
}
