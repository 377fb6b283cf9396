//! Protection against CVE-2019-5736: a process in the container must never be able to
//! reach rune's host binary through `/proc/<pid>/exe` and overwrite it. Before entering
//! a container, rune re-executes itself from a sealed, anonymous in-memory copy, as runc
//! and youki do.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

const SEALS: SealFlag = SealFlag::from_bits_truncate(
    SealFlag::F_SEAL_SEAL.bits()
        | SealFlag::F_SEAL_SHRINK.bits()
        | SealFlag::F_SEAL_GROW.bits()
        | SealFlag::F_SEAL_WRITE.bits(),
);

fn is_sealed(exe: &File) -> bool {
    match fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(SEALS),
        Err(_) => false,
    }
}

/// Returns when this process runs from a sealed copy; otherwise makes one and execs it
/// (and so does not return).
pub fn ensure_sealed() -> Result<()> {
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    if is_sealed(&exe) {
        return Ok(());
    }
    let name = CString::new("rune").expect("static name");
    let fd = memfd_create(
        &name,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let mut copy = File::from(fd);
    std::io::copy(&mut exe, &mut copy).context("copy /proc/self/exe")?;
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).context("seal the copy")?;

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
    let err = nix::unistd::fexecve(copy.as_raw_fd(), &args, &env).unwrap_err();
    Err(err).context("re-exec from the sealed copy")
}
