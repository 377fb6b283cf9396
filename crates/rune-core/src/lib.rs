//! `rune-core`: the runtime logic of `rune`, the Inclavare OCI runtime.
//!
//! The `rune` binary parses runc's command line and calls [`Runtime`]; this crate owns
//! everything between that and youki's `libcontainer`: checking bundles before anything
//! is created ([`spec`]), the workload seam ([`executor`]), runc-shaped state
//! ([`state`]), atomic pid files ([`pidfile`]), resource updates ([`resources`]) and the
//! default spec and features documents ([`templates`]).
//!
//! All operations must run in a single-threaded process, because libcontainer clones
//! the calling process.

pub mod agent;
pub mod captured;
pub mod console;
pub mod enclave;
pub mod error;
pub mod events;
pub mod exec_flags;
pub mod executor;
pub mod image;
pub mod pidfile;
pub mod resources;
pub mod runtime;
pub mod signal;
pub mod spec;
pub mod state;
pub mod templates;
pub mod title;

pub use error::{Result, RuneError};
pub use libcontainer::oci_spec;
pub use runtime::{CreateOptions, EnclaveExec, Exec, ExecOptions, Runtime, DEFAULT_ROOT};
pub use state::ContainerState;
