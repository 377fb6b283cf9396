//! Publishing a staged layer into the root: whiteouts and opaque markers act on the lower
//! layers first (so the layer's own entries survive whatever their order in the tar), then
//! the staged tree is moved in by `renameat`, one level at a time.
//!
//! The staged tree is never followed: it is read with `AT_SYMLINK_NOFOLLOW`, and a staged
//! symlink is moved as a symlink. On the root side, a path is resolved with
//! [`walk::resolve`] (symlinks of the lower layers followed, but only inside the root), and
//! the final component is never followed: a staged entry replaces whatever the root has
//! there, except that a directory named by the layer merges into an existing directory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType};
use rustix::io::Errno;

use super::stage::{apply_meta, show_comps, Staged};
use super::walk::{self, Comp};
use super::{UnpackError, UnpackOptions};

/// Why a move into the root failed; EXDEV said in words: the path leads into a mount
/// point, whose filesystem (a host volume) image files must never reach.
fn why(e: Errno) -> String {
    if e == Errno::XDEV {
        "the path leads onto another filesystem (a mount point in the root); image files \
         never go there"
            .into()
    } else {
        e.to_string()
    }
}

fn err(path: &[Comp], what: &str, e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Publish {
        path: show_comps(path),
        reason: format!("{what}: {e}"),
    }
}

/// Moves a staged layer into `root`. See the module docs for the order.
pub(super) fn publish(
    staging: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    staged: &Staged,
    opts: &UnpackOptions,
) -> Result<(), UnpackError> {
    let keep = keep(staging, root).map_err(|e| err(&[], "root", e))?;
    for path in &staged.whiteouts {
        whiteout(root, path, &keep).map_err(|e| err(path, "whiteout", e))?;
    }
    for dir in &staged.opaque {
        opaque(root, dir, &keep).map_err(|e| err(dir, "opaque directory", e))?;
    }
    merge(
        staging,
        root,
        &mut Vec::new(),
        Vec::new(),
        staged,
        opts,
        &keep,
    )?;
    if let Some(meta) = staged.dirs.get(&Vec::new()) {
        apply_meta(root, meta, opts).map_err(|e| err(&[], "root attributes", e))?;
    }
    Ok(())
}

/// What removals in the root leave alone: mount points, and the staging directory with
/// its ancestors up to the root (a staging parent inside the root, as enclave-boot's
/// `/.rune/staging`, must survive a root-level opaque marker).
fn keep(staging: BorrowedFd<'_>, root: BorrowedFd<'_>) -> Result<walk::Keep, Errno> {
    let mut keep = walk::Keep::of(root)?;
    let top = fs::fstat(root)?;
    let mut dir = walk::open_dir(staging, b".")?;
    for _ in 0..walk::MAX_DEPTH {
        let st = fs::fstat(&dir)?;
        if (st.st_dev, st.st_ino) == (top.st_dev, top.st_ino) {
            return Ok(keep);
        }
        keep.protect.push((st.st_dev, st.st_ino));
        let parent = walk::open_dir(&dir, b"..")?;
        if fs::fstat(&parent)?.st_ino == st.st_ino {
            break; // the filesystem's root: staging is not inside the root
        }
        dir = parent;
    }
    // Staging is beside the root, not in it: nothing of it to protect in the root.
    keep.protect.clear();
    Ok(keep)
}

/// The parent of `path` in the root, or `None` when it does not exist there or is kept
/// (a mount point, whose content is not the image's).
fn parent_in_root(
    root: BorrowedFd<'_>,
    parent: &[Comp],
    keep: &walk::Keep,
) -> Result<Option<OwnedFd>, Errno> {
    match walk::resolve(root, parent, None) {
        Ok((fd, _)) if keep.keeps(&fs::fstat(&fd)?) => Ok(None),
        Ok((fd, _)) => Ok(Some(fd)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

fn whiteout(root: BorrowedFd<'_>, path: &[Comp], keep: &walk::Keep) -> Result<(), Errno> {
    let Some((name, parent)) = path.split_last() else {
        return Ok(());
    };
    match parent_in_root(root, parent, keep)? {
        Some(dir) => walk::remove_all_at(&dir, name, keep),
        None => Ok(()),
    }
}

fn opaque(root: BorrowedFd<'_>, path: &[Comp], keep: &walk::Keep) -> Result<(), Errno> {
    let Some((name, parent)) = path.split_last() else {
        return walk::clear_dir(&walk::open_dir(root, b".")?, keep);
    };
    let Some(dir) = parent_in_root(root, parent, keep)? else {
        return Ok(());
    };
    match fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if keep.keeps(&st) => Ok(()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            walk::clear_dir(&walk::open_dir(&dir, name)?, keep)
        }
        // A lower non-directory there is replaced by the layer's directory.
        Ok(_) => fs::unlinkat(&dir, name.as_slice(), AtFlags::empty()),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves the children of staged directory `sphys` into root directory `rphys` (physical).
/// Holds no fds across the recursion, so depth does not bound on the fd limit.
fn merge(
    staging: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    sphys: &mut Vec<Comp>,
    rphys: Vec<Comp>,
    staged: &Staged,
    opts: &UnpackOptions,
    keep: &walk::Keep,
) -> Result<(), UnpackError> {
    let names = walk::reopen(staging, sphys)
        .and_then(|d| walk::list(&d))
        .map_err(|e| err(sphys, "reading staged directory", e))?;
    let root_dev = fs::fstat(root).map_err(|e| err(&[], "root", e))?.st_dev;
    for name in names {
        let sdir = walk::reopen(staging, sphys).map_err(|e| err(sphys, "staged directory", e))?;
        let rdir = walk::reopen(root, &rphys).map_err(|e| err(&rphys, "root directory", e))?;
        sphys.push(name.clone());
        let st = fs::statat(&sdir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| err(sphys, "staged entry", e))?;
        let lower = match fs::statat(&rdir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(lst) if lst.st_dev != root_dev => {
                // Something the runtime mounted in the root (/proc, /dev, /sys, a bind-
                // mounted /etc/hosts, a volume): the container's, not the image's. Leave
                // it, and what the layer has at or below it, alone, as container
                // runtimes do when they mount over an image's directories.
                tracing::debug!(path = %show_comps(sphys), "mount point kept");
                sphys.pop();
                continue;
            }
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(err(sphys, "looking up the root", e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir
            && staged.dirs.contains_key(sphys.as_slice())
            && lower == Some(FileType::Directory)
        {
            // Named directory over a lower directory: merge, then its attributes (mtime last).
            let mut rchild = rphys.clone();
            rchild.push(name.clone());
            drop((sdir, rdir));
            merge(staging, root, sphys, rchild.clone(), staged, opts, keep)?;
            let meta = &staged.dirs[sphys.as_slice()];
            let fd = walk::reopen(root, &rchild).map_err(|e| err(sphys, "directory", e))?;
            apply_meta(fd.as_fd(), meta, opts)
                .map_err(|e| err(sphys, "directory attributes", e))?;
        } else if is_dir && !staged.dirs.contains_key(sphys.as_slice()) {
            // Made as a parent of other entries: the lower path is followed (inside the
            // root), as it would be when extracting straight into the root.
            let mut want = rphys.clone();
            want.push(name.clone());
            drop((sdir, rdir));
            let (fd, rchild) = walk::resolve(root, &want, Some(&mut Vec::new()))
                .map_err(|e| err(sphys, "parent directory in the root", why(e)))?;
            // A lower symlink may lead into a mount point (a volume): refused whether or
            // not the volume has the path, rather than writing there.
            let st = fs::fstat(&fd).map_err(|e| err(sphys, "parent directory in the root", e))?;
            if st.st_dev != root_dev {
                return Err(err(sphys, "parent directory in the root", why(Errno::XDEV)));
            }
            drop(fd);
            merge(staging, root, sphys, rchild, staged, opts, keep)?;
        } else {
            match lower {
                Some(FileType::Directory) => walk::remove_all_at(&rdir, &name, keep)
                    .map_err(|e| err(sphys, "replacing a directory", e))?,
                // rename(2) cannot put a directory over a non-directory.
                Some(_) if is_dir => fs::unlinkat(&rdir, name.as_slice(), AtFlags::empty())
                    .map_err(|e| err(sphys, "replacing", e))?,
                _ => {}
            }
            fs::renameat(&sdir, name.as_slice(), &rdir, name.as_slice())
                .map_err(|e| err(sphys, "moving into the root", why(e)))?;
        }
        sphys.pop();
    }
    Ok(())
}
