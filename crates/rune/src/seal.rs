//! Protection against CVE-2019-5736: a process in a container must never be able to
//! reach rune's host binary through `/proc/<pid>/exe` and overwrite it.
//!
//! Before entering a container, rune re-executes itself from a binary that cannot be
//! written. The fast way, where the kernel allows it (5.12+, CAP_SYS_ADMIN), is a
//! detached read-only bind mount of the binary (`open_tree` + `mount_setattr`): nothing
//! is copied and no namespace sees the mount, and writes through `/proc/<pid>/exe`
//! fail with EROFS. Otherwise rune copies itself into a sealed memfd, as runc and youki
//! do, which costs a copy of the whole binary on every call.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use rustix::mount::{open_tree, OpenTreeFlags};

const SEALS: SealFlag = SealFlag::from_bits_truncate(
    SealFlag::F_SEAL_SEAL.bits()
        | SealFlag::F_SEAL_SHRINK.bits()
        | SealFlag::F_SEAL_GROW.bits()
        | SealFlag::F_SEAL_WRITE.bits(),
);

/// True when this process's executable cannot be written: a sealed memfd, or a file on
/// a read-only mount (our detached clone, or a read-only installation).
fn is_protected(exe: &File) -> bool {
    if let Ok(bits) = fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        if SealFlag::from_bits_truncate(bits).contains(SEALS) {
            return true;
        }
    }
    statvfs("/proc/self/exe").is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// A detached, read-only bind mount of this executable.
fn read_only_clone() -> std::io::Result<OwnedFd> {
    let tree = open_tree(
        rustix::fs::CWD,
        "/proc/self/exe",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) reads `size` bytes from `attr`, a live #[repr(C)] value of
    // exactly that size, and `empty` is a NUL-terminated string; `tree` is an open fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// A sealed, anonymous in-memory copy of this executable.
fn sealed_copy(exe: &mut File) -> Result<OwnedFd> {
    let name = CString::new("rune").expect("static name");
    let fd = memfd_create(
        &name,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let mut copy = File::from(fd);
    std::io::copy(exe, &mut copy).context("copy /proc/self/exe")?;
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).context("seal the copy")?;
    Ok(copy.into())
}

/// Returns when this process runs from an unwritable executable; otherwise re-executes
/// itself from one (and so does not return).
pub fn ensure_sealed() -> Result<()> {
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    if is_protected(&exe) {
        return Ok(());
    }
    let target = match read_only_clone() {
        Ok(fd) => fd,
        Err(_) => sealed_copy(&mut exe)?,
    };

    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .context("argument with a NUL byte")?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .context("environment with a NUL byte")?;
    let err = nix::unistd::fexecve(target.as_fd().as_raw_fd(), &args, &env).unwrap_err();
    Err(err).context("re-exec from the protected copy")
}
