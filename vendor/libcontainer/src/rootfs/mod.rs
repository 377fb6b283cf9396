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

type Result<T> = std::result::Result<T, RootfsError>;
