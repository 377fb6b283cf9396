//! Errors of the runtime library.
//!
//! Every variant renders as one line that names the object or field at fault, because
//! containerd and docker show the last line of the runtime's error to the user.

use std::path::PathBuf;

/// Result alias for `rune-core`.
pub type Result<T, E = RuneError> = std::result::Result<T, E>;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuneError {
    /// The container id is not acceptable as a directory name.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// A container with this id already exists under the state root.
    #[error("container {0} already exists")]
    Exists(String),

    /// No container with this id exists under the state root.
    #[error("container {0} does not exist")]
    NotFound(String),

    /// The bundle has no readable `config.json`.
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `config.json` is not valid JSON, or does not match the runtime spec.
    /// `field` is the JSON path of the offending value (empty for the document).
    #[error("config.json: {}{message}", field_prefix(field))]
    Config { field: String, message: String },

    /// The operation is not allowed in the container's current state.
    #[error("container {id} is {status}: {what}")]
    State {
        id: String,
        status: String,
        what: &'static str,
    },

    /// The container's process is gone, so it cannot receive signals.
    /// containerd's shim matches the words "container not running".
    #[error("container not running")]
    NotRunning,

    /// A signal name or number is not known.
    #[error("unknown signal {0:?}")]
    Signal(String),

    /// A resource value given on the command line or in a file is malformed.
    #[error("{flag}: {message}")]
    InvalidArgument { flag: String, message: String },

    /// An error from youki's libcontainer: what was being done, then its causes without
    /// libcontainer's wrapper phrases (see [`libcontainer_message`]).
    #[error("{context}: {message}")]
    Libcontainer {
        context: String,
        message: String,
        /// The error as libcontainer gave it.
        source_debug: String,
    },

    /// The enclave configuration or the host does not allow the enclave asked for.
    #[error("{0}")]
    Enclave(String),

    /// The enclave runtime (PAL) could not be loaded.
    #[error(transparent)]
    Pal(#[from] pal::PalError),

    /// An error from the cgroup manager.
    #[error("cgroup: {0}")]
    Cgroup(String),

    /// Any other I/O failure, with what was being done.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() || field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl RuneError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuneError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuneError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn lc(
        context: impl Into<String>,
    ) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Self {
        let context = context.into();
        move |source| RuneError::Libcontainer {
            context,
            message: libcontainer_message(&source),
            source_debug: format!("{source:?}"),
        }
    }
}

/// Phrases libcontainer wraps every failure of a container's processes in, which say
/// nothing about the cause: "failed to create container: exec process failed with error
/// error in executing process : exec: \"/x\": permission denied" reads as the last part.
const WRAPPERS: &[&str] = &[
    "failed to create container: ",
    "exec process failed with error ",
    "error in executing process : ",
    "io error: ",
];

/// One line: an error and its sources ("a: b: c"), each said once, without
/// libcontainer's [`WRAPPERS`].
pub fn libcontainer_message(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !line.contains(&part) {
            line.push_str(": ");
            line.push_str(&part);
        }
        source = s.source();
    }
    for w in WRAPPERS {
        line = line.replace(w, "");
    }
    line
}
