//! `containerd-shim-rune-v2`, the containerd shim v2 for rune (`io.containerd.rune.v2`).
//!
//! containerd (and, through its CRI plugin, Kubernetes with `RuntimeClass` handler
//! `rune`) starts one shim per container or pod. The shim serves containerd's Task API
//! by running the `rune` binary once per operation, copies the processes' stdio to
//! containerd's fifos, and publishes the task events. At create, the container's
//! *carrier* (`RUNE_CARRIER`) may turn it into an enclave container.
//!
//! - [`config`] — `/etc/inclavare-containers/config.toml`.
//! - [`flags`] — the command line, as containerd's Go shims read it.
//! - [`carrier`] — `RUNE_CARRIER=sim|occlum`.
//! - [`image`] — confidential images (`enclave.image`), pulled inside the enclave.
//! - [`service`] — the Task API.
//! - [`rune`] — the `rune` command line.
//! - [`io`] — stdio between containerd's fifos and the processes.
//! - [`oom`] — OOM kills in a container's memory cgroup (`/tasks/oom`).

pub mod carrier;
pub mod config;
pub mod flags;
pub mod image;
pub mod io;
pub mod oom;
pub mod rune;
pub mod service;
pub mod shim;
pub mod stats;

pub use config::{Config, ConfigError, SignatureMethod};
