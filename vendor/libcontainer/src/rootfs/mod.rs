//! During kernel initialization, a minimal replica of the ramfs filesystem is
//! loaded, called rootfs.  Most systems mount another filesystem over it

#[allow(clippy::module_inception)]
pub(crate) mod rootfs;
pub use rootfs::{RootFS, ROOTFS_TMPFS_ANNOTATION};

pub mod device;
pub use device::Device;

pub(super) mod mount;
pub use mount::Mount;

pub(super) mod copyup;
pub(super) mod symlink;

pub mod utils;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed syscall")]
    Syscall(#[from] crate::syscall::SyscallError),
    #[error(transparent)]
    MissingSpec(#[from] crate::error::MissingSpecError),
    #[error("unknown rootfs propagation")]
    UnknownRootfsPropagation(String),
    #[error(transparent)]
    Symlink(#[from] symlink::SymlinkError),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    /// PATCH(inclavare): a cause said in words of our own (see `named_mount`).
    #[error("{0}")]
    Other(String),
    /// PATCH(inclavare): a spec mount that failed, named as runc names it.
    #[error("error mounting {source_path:?} to rootfs at {destination:?}")]
    NamedMount {
        source_path: String,
        destination: String,
        #[source]
        cause: Box<RootfsError>,
    },
}

impl RootfsError {
    /// Wraps the failure of `mount` in [`RootfsError::NamedMount`] unless its message
    /// already names the mount (the proc/sysfs rule does).
    pub(crate) fn named_mount(mount: &oci_spec::runtime::Mount, cause: RootfsError) -> Self {
        if cause.to_string().starts_with("error mounting ") {
            return cause;
        }
        // PATCH(inclavare): a path-resolution failure (libpathrs) says only its root
        // cause, as runc's "mount tmpfs:/etc/passwd (via /proc/self/fd/6): not a
        // directory", not pathrs's dump of file descriptors and openat flags.
        let cause = match root_cause_below_pathrs(&cause) {
            Some(root) => RootfsError::Other(format!(
                "mount {}:{}: {root}",
                mount.typ().as_deref().unwrap_or("bind"),
                mount.destination().display()
            )),
            None => cause,
        };
        RootfsError::NamedMount {
            source_path: mount
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_default(),
            destination: mount.destination().display().to_string(),
            cause: Box::new(cause),
        }
    }
}

/// PATCH(inclavare): the innermost cause of `err` when a libpathrs error is on the way
/// (as a value, or already made text: its `openat(…)` dump).
fn root_cause_below_pathrs(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut seen_pathrs = false;
    let mut current = err;
    loop {
        seen_pathrs |= current.downcast_ref::<pathrs::error::Error>().is_some()
            || current.to_string().contains("openat(") || current.to_string().contains("openat2(");
        match current.source() {
            Some(next) => current = next,
            None => break,
        }
    }
    let text = current.to_string();
    let dump = text.contains("openat(") || text.contains("openat2(") || text.contains("magiclink");
    if dump {
        // pathrs ends its dump with the errno's words: "…, 0o0): Not a directory (os
        // error 20)".
        let tail = text.rsplit("): ").next().unwrap_or(&text);
        return Some(tail.to_string());
    }
    seen_pathrs.then_some(text)
}

type Result<T> = std::result::Result<T, RootfsError>;
