//! Applying one layer's tar stream to a private, initially empty staging directory.
//!
//! Entries land in the staging tree (parents resolved inside it, files created
//! `O_EXCL|O_NOFOLLOW`, metadata set through fds or `AT_SYMLINK_NOFOLLOW`); what must act on
//! the lower layers — whiteouts, opaque markers, the attributes of directories that may
//! already exist below — is recorded and applied by [`super::publish`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{
    self, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use super::stream::Meter;
use super::walk::{self, Comp, MAX_DEPTH};
use super::{LayerStats, UnpackError, UnpackOptions};

/// Longest entry name or link target accepted, in bytes (Linux `PATH_MAX`).
const MAX_NAME: usize = 4096;

/// Attributes of a directory entry, applied once all entries are in (children bump mtimes).
#[derive(Clone, Debug)]
pub(super) struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a staged layer must still do to the root when it is published.
#[derive(Default, Debug)]
pub(super) struct Staged {
    /// Directories the layer names explicitly (physical staging path; `[]` is `./`), with
    /// their attributes. Staged directories not in here were created as parents.
    pub(super) dirs: BTreeMap<Vec<Comp>, Meta>,
    /// Paths (as named in the tar) to delete from the lower layers.
    pub(super) whiteouts: BTreeSet<Vec<Comp>>,
    /// Directories (as named in the tar) whose lower children are all hidden.
    pub(super) opaque: BTreeSet<Vec<Comp>>,
    pub(super) stats: LayerStats,
}

/// Display form of a name: lossy UTF-8 (the error line stays one line through `{:?}`).
pub(super) fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Display form of a component path.
pub(super) fn show_comps(comps: &[Comp]) -> String {
    let v: Vec<String> = comps.iter().map(|c| show(c)).collect();
    v.join("/")
}

/// §4.4 rule 1: strip leading `/`, drop `.` and empty components, refuse `..` and NUL.
pub(super) fn clean_name(raw: &[u8]) -> Result<Vec<Comp>, String> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    if raw.len() > MAX_NAME {
        return Err(format!("name longer than {MAX_NAME} bytes"));
    }
    let mut comps = Vec::new();
    for c in walk::split(raw) {
        if c == b".." {
            return Err("name contains `..`".into());
        }
        comps.push(c.to_vec());
    }
    if comps.len() > MAX_DEPTH {
        return Err(format!("name deeper than {MAX_DEPTH} components"));
    }
    Ok(comps)
}

/// Parses a PAX decimal time (`secs[.frac]`, possibly negative).
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nsec: i64 = digits.parse().ok()?;
    Some(if neg && nsec > 0 {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        }
    } else if neg {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        }
    })
}

fn parse_dec(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The PAX records we act on, checked strictly: the `tar` crate silently ignores a malformed
/// `size`/`uid`/`gid`, and a PAX size that disagrees with the header's is how parser
/// differentials smuggle files (RUSTSEC-2026-0068, RUSTSEC-2025-0110): both are refused.
#[derive(Default)]
struct Pax {
    mtime: Option<Timespec>,
    /// PAX `uid`/`gid` override the header's (POSIX pax, as Go's archive/tar and
    /// containerd read them): ids over 2097151 fit only there.
    uid: Option<u64>,
    gid: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_pax<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Pax, String> {
    let header_size = e
        .header()
        .entry_size()
        .map_err(|err| format!("header size: {err}"))?;
    let mut out = Pax::default();
    let Some(exts) = e
        .pax_extensions()
        .map_err(|err| format!("PAX header: {err}"))?
    else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|err| format!("PAX header: {err}"))?;
        let (key, val) = (ext.key_bytes(), ext.value_bytes());
        match key {
            b"size" => {
                let size = parse_dec(val).ok_or("PAX header: malformed size")?;
                if header_size != 0 && header_size != size {
                    return Err(format!(
                        "PAX size {size} disagrees with the header's size {header_size}"
                    ));
                }
            }
            b"uid" | b"gid" => {
                let id =
                    parse_dec(val).ok_or_else(|| format!("PAX header: malformed {}", show(key)))?;
                if key == b"uid" {
                    out.uid = Some(id);
                } else {
                    out.gid = Some(id);
                }
            }
            b"mtime" => {
                out.mtime = Some(parse_pax_time(val).ok_or("PAX header: malformed mtime")?);
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    out.xattrs.push((name.to_vec(), val.to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// Sets an xattr; a filesystem without xattr support (`EOPNOTSUPP`) is skipped, as is a
/// namespace we may not write (`EPERM`) when ownership is not being preserved (not root).
fn set_xattrs(
    fd: BorrowedFd<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    opts: &UnpackOptions,
) -> Result<(), String> {
    for (name, value) in xattrs {
        match fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::OPNOTSUPP) => {
                tracing::debug!(xattr = %show(name), "filesystem refuses xattrs; skipped");
            }
            Err(Errno::PERM) if !opts.preserve_ownership => {
                tracing::debug!(xattr = %show(name), "xattr not permitted; skipped");
            }
            Err(e) => return Err(format!("setting xattr {:?}: {e}", show(name))),
        }
    }
    Ok(())
}

/// Applies owner, mode, xattrs and mtime to an open directory or file (owner first: chown
/// clears set-id bits).
pub(super) fn apply_meta(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    opts: &UnpackOptions,
) -> Result<(), String> {
    if opts.preserve_ownership {
        fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| format!("chown {}:{}: {e}", meta.uid, meta.gid))?;
    }
    fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
        .map_err(|e| format!("chmod {:o}: {e}", meta.mode))?;
    set_xattrs(fd, &meta.xattrs, opts)?;
    let t = Timestamps {
        last_access: meta.mtime,
        last_modification: meta.mtime,
    };
    fs::futimens(fd, &t).map_err(|e| format!("setting mtime: {e}"))
}

/// Owner and mtime of a node that cannot be opened safely (symlink, device, fifo).
fn apply_meta_at(
    dir: &OwnedFd,
    name: &[u8],
    meta: &Meta,
    opts: &UnpackOptions,
) -> Result<(), String> {
    if opts.preserve_ownership {
        fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("chown {}:{}: {e}", meta.uid, meta.gid))?;
    }
    let t = Timestamps {
        last_access: meta.mtime,
        last_modification: meta.mtime,
    };
    fs::utimensat(dir, name, &t, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("setting mtime: {e}"))
}

struct Stager<'a> {
    staging: BorrowedFd<'a>,
    lower: BorrowedFd<'a>,
    opts: &'a UnpackOptions,
    out: Staged,
}

/// Reads the tar stream through `meter` into `staging` (an empty directory), then drains the
/// stream to EOF. `lower` (the root) is consulted only for hardlink targets of lower layers.
pub(super) fn stage<R: Read>(
    meter: &mut Meter<R>,
    staging: BorrowedFd<'_>,
    lower: BorrowedFd<'_>,
    opts: &UnpackOptions,
) -> Result<Staged, UnpackError> {
    let mut st = Stager {
        staging,
        lower,
        opts,
        out: Staged::default(),
    };
    let res = st
        .entries(meter)
        .and_then(|()| meter.drain().map_err(UnpackError::Stream));
    // The reader's own failure (HMAC, download, size limit) is the real cause: report it
    // rather than the tar parser's view of a truncated stream.
    match (res, meter.failure.take()) {
        (_, Some(super::stream::Failure::TooLarge(limit))) => {
            return Err(UnpackError::TooLarge { limit })
        }
        (_, Some(super::stream::Failure::Source(e))) => return Err(UnpackError::Stream(e)),
        (Err(e), None) => return Err(e),
        (Ok(()), None) => {}
    }
    st.out.stats.tar_bytes = meter.count();
    st.finish_dirs()?;
    Ok(st.out)
}

impl Stager<'_> {
    fn entries<R: Read>(&mut self, meter: &mut Meter<R>) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(meter);
        let mut entries = archive
            .entries()
            .map_err(|source| UnpackError::Tar { index: 0, source })?;
        let mut index = 0u64;
        loop {
            let mut entry = match entries.next() {
                None => return Ok(()),
                Some(Ok(e)) => e,
                Some(Err(source)) => return Err(UnpackError::Tar { index, source }),
            };
            index += 1;
            if index > self.opts.max_entries {
                return Err(UnpackError::TooManyEntries {
                    limit: self.opts.max_entries,
                });
            }
            let raw = entry.path_bytes().into_owned();
            self.entry(&mut entry, &raw)
                .map_err(|reason| UnpackError::Entry {
                    index,
                    name: show(&raw),
                    reason,
                })?;
            self.out.stats.entries += 1;
        }
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<(), String> {
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Ignored, as containerd does: nothing in it applies to one entry.
            return Ok(());
        }
        let comps = clean_name(raw)?;
        let pax = read_pax(e)?;
        let h = e.header();
        let meta = Meta {
            mode: h.mode().map_err(|err| format!("header mode: {err}"))? & 0o7777,
            uid: u32::try_from(match pax.uid {
                Some(id) => id,
                None => h.uid().map_err(|err| format!("header uid: {err}"))?,
            })
            .map_err(|_| "uid does not fit in 32 bits".to_string())?,
            gid: u32::try_from(match pax.gid {
                Some(id) => id,
                None => h.gid().map_err(|err| format!("header gid: {err}"))?,
            })
            .map_err(|_| "gid does not fit in 32 bits".to_string())?,
            mtime: match pax.mtime {
                Some(t) => t,
                None => Timespec {
                    tv_sec: i64::try_from(h.mtime().map_err(|err| format!("header mtime: {err}"))?)
                        .map_err(|_| "mtime out of range".to_string())?,
                    tv_nsec: 0,
                },
            },
            xattrs: pax.xattrs,
        };

        let Some((name, parent)) = comps.split_last() else {
            // `./`: the attributes of the layer root (image-rs, umoci); never a non-directory.
            if kind != EntryType::Directory {
                return Err("the layer root `.` must be a directory".into());
            }
            self.out.dirs.insert(Vec::new(), meta);
            return Ok(());
        };

        if let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(parent, name, target);
        }

        let (pfd, mut phys) = walk::resolve(self.staging, parent, Some(&mut Vec::new()))
            .map_err(|err| format!("parent directory: {err}"))?;
        phys.push(name.clone());
        if phys.len() > MAX_DEPTH {
            return Err(format!("path deeper than {MAX_DEPTH} components"));
        }
        let existing = match fs::statat(&pfd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(err) => return Err(format!("looking up the existing entry: {err}")),
        };
        let existing_type = existing
            .as_ref()
            .map(|s| FileType::from_raw_mode(s.st_mode));

        match kind {
            EntryType::Directory => {
                if existing_type != Some(FileType::Directory) {
                    self.remove(&pfd, name, existing_type, &phys)?;
                    fs::mkdirat(&pfd, name.as_slice(), Mode::from_raw_mode(0o700))
                        .map_err(|err| format!("creating directory: {err}"))?;
                }
                // Directory over directory merges attributes; the last entry wins.
                self.out.dirs.insert(phys, meta);
                self.out.stats.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                self.remove(&pfd, name, existing_type, &phys)?;
                let fd = fs::openat(
                    &pfd,
                    name.as_slice(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|err| format!("creating file: {err}"))?;
                let mut file = File::from(fd);
                let n =
                    io::copy(e, &mut file).map_err(|err| format!("writing file data: {err}"))?;
                apply_meta(file.as_fd(), &meta, self.opts)?;
                self.out.stats.files += 1;
                self.out.stats.file_bytes += n;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or("symlink without a target")?
                    .into_owned();
                if target.is_empty() || target.contains(&0) || target.len() >= MAX_NAME {
                    return Err("symlink target is empty, too long or contains NUL".into());
                }
                self.remove(&pfd, name, existing_type, &phys)?;
                // Stored verbatim and never followed while extracting (walk::resolve confines
                // any later traversal to the root).
                fs::symlinkat(target.as_slice(), &pfd, name.as_slice())
                    .map_err(|err| format!("creating symlink: {err}"))?;
                apply_meta_at(&pfd, name, &meta, self.opts)?;
                self.out.stats.symlinks += 1;
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or("hardlink without a target")?
                    .into_owned();
                let (tdir, tname, tstat) = self.hardlink_target(&target)?;
                if let Some(ex) = &existing {
                    if ex.st_ino == tstat.st_ino && ex.st_dev == tstat.st_dev {
                        return Ok(()); // already that file
                    }
                }
                self.remove(&pfd, name, existing_type, &phys)?;
                fs::linkat(
                    &tdir,
                    tname.as_slice(),
                    &pfd,
                    name.as_slice(),
                    AtFlags::empty(),
                )
                .map_err(|err| format!("creating hardlink to {:?}: {err}", show(&target)))?;
                self.out.stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.opts.allow_devices {
                    return Err(format!(
                        "{} refused (device nodes and fifos need UnpackOptions::allow_devices)",
                        if kind == EntryType::Fifo {
                            "fifo"
                        } else {
                            "device node"
                        }
                    ));
                }
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = e.header();
                        let major = h.device_major().ok().flatten().ok_or("bad device major")?;
                        let minor = h.device_minor().ok().flatten().ok_or("bad device minor")?;
                        let ft = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, fs::makedev(major, minor))
                    }
                };
                self.remove(&pfd, name, existing_type, &phys)?;
                fs::mknodat(&pfd, name.as_slice(), ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|err| format!("mknod: {err}"))?;
                apply_meta_at(&pfd, name, &meta, self.opts)?;
                // Not a symlink (just made, and the tree is private): chmodat cannot follow.
                fs::chmodat(
                    &pfd,
                    name.as_slice(),
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|err| format!("chmod: {err}"))?;
                self.out.stats.devices += 1;
            }
            other => {
                return Err(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                ))
            }
        }
        Ok(())
    }

    /// `.wh.<name>` deletes `<name>` from the lower layers; `.wh..wh..opq` hides all lower
    /// children of its directory. Neither is materialised (§4.2).
    fn whiteout(&mut self, parent: &[Comp], name: &[u8], target: &[u8]) -> Result<(), String> {
        if name == b".wh..wh..opq" {
            // The directory itself stays (made here if the layer does not name it).
            walk::resolve(self.staging, parent, Some(&mut Vec::new()))
                .map_err(|err| format!("opaque directory: {err}"))?;
            self.out.opaque.insert(parent.to_vec());
            self.out.stats.opaque_dirs += 1;
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            // Other `.wh..wh.` names are AUFS bookkeeping (e.g. `.wh..wh.plnk`), not files.
            tracing::debug!(name = %show(name), "AUFS metadata entry skipped");
            return Ok(());
        }
        if target.is_empty() || target == b"." {
            return Err("whiteout names nothing (bare `.wh.`)".into());
        }
        let mut path = parent.to_vec();
        path.push(target.to_vec());
        self.out.whiteouts.insert(path);
        self.out.stats.whiteouts += 1;
        Ok(())
    }

    /// Removes what the entry replaces: a directory with its contents (and the attributes
    /// recorded for it and below), anything else by unlinking (never writing through it).
    fn remove(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        existing: Option<FileType>,
        phys: &[Comp],
    ) -> Result<(), String> {
        match existing {
            None => Ok(()),
            Some(FileType::Directory) => {
                walk::remove_all_at(
                    dir,
                    name,
                    &walk::Keep::of(dir).map_err(|e| format!("replacing a directory: {e}"))?,
                )
                .map_err(|e| format!("replacing a directory: {e}"))?;
                self.out.dirs.retain(|k, _| !k.starts_with(phys));
                Ok(())
            }
            Some(_) => {
                fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| format!("replacing: {e}"))
            }
        }
    }

    /// A hardlink's target: relative to the layer root (as producers write it), inside the
    /// root, not a directory. Looked up in this layer first, then in the lower layers.
    /// Absolute targets and `..` are refused: no tar producer writes them for layers.
    fn hardlink_target(&self, target: &[u8]) -> Result<(OwnedFd, Comp, fs::Stat), String> {
        if target.starts_with(b"/") {
            return Err(format!("hardlink target {:?} is absolute", show(target)));
        }
        let comps =
            clean_name(target).map_err(|e| format!("hardlink target {:?}: {e}", show(target)))?;
        let Some((tname, tparent)) = comps.split_last() else {
            return Err("hardlink to the layer root".into());
        };
        for base in [self.staging, self.lower] {
            let dir = match walk::resolve(base, tparent, None) {
                Ok((fd, _)) => fd,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                Err(err) => return Err(format!("hardlink target {:?}: {err}", show(target))),
            };
            match fs::statat(&dir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    return Err(format!("hardlink target {:?} is a directory", show(target)));
                }
                Ok(st) => return Ok((dir, tname.clone(), st)),
                Err(Errno::NOENT) => continue,
                Err(err) => return Err(format!("hardlink target {:?}: {err}", show(target))),
            }
        }
        Err(format!(
            "hardlink target {:?} does not exist in the root",
            show(target)
        ))
    }

    /// Directory attributes last: entries created inside bump a directory's mtime, and a
    /// read-only mode set early would stop later entries.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for (phys, meta) in &self.out.dirs {
            let fd = match walk::reopen(self.staging, phys) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    return Err(UnpackError::Publish {
                        path: show_comps(phys),
                        reason: e.to_string(),
                    })
                }
            };
            apply_meta(fd.as_fd(), meta, self.opts).map_err(|reason| UnpackError::Publish {
                path: show_comps(phys),
                reason,
            })?;
        }
        Ok(())
    }
}
