//! The software TEE of Inclavare Containers in Rust (`sim`): one definition of its
//! formats, shared by the enclave runtime that produces them (`liberpal-sim.so`) and the
//! verifiers that check them.
//!
//! **`sim` proves nothing about hardware.** It gives the whole confidential-container
//! workflow (measurement, signing, reports, evidence) on any machine, so it can be
//! developed and tested anywhere; verifiers refuse it unless their policy allows it.
//!
//! - [`measure`]: `mr_enclave`, a SHA-384 over the enclave program's SHA-384 and its
//!   configuration.
//! - [`Manifest`]: the signed statement "this measurement, with this product id and svn,
//!   is released by this signer"; `mr_signer` is the SHA-384 of the signer's Ed25519
//!   public key.
//! - [`Report`]: what the enclave reports about itself, with 64 bytes of its own report
//!   data, signed by the host's [`PlatformKey`]. Its layout is fixed (see [`Report`]).
//! - [`evidence`]: how the program inside the enclave asks for a report, records an
//!   event in the runtime measurement registers, and reads the event log and init-data.
//! - [`rtmr::Measurements`]: the event log and the four SHA-384 registers it extends.
//! - [`wasm::kind`]: whether a program is a WebAssembly core module (`liberpal-wasm`).

pub mod evidence;
mod manifest;
mod platform;
mod report;
pub mod rtmr;
pub mod wasm;

pub use manifest::{
    measure, measure_program, program_digest, EnclaveSpec, Manifest, RuntimeArgs, SignerKey,
    DEFAULT_MANIFEST, MANIFEST_FORMAT, MEASUREMENT_VERSION,
};
/// The event log and init-data formats the runtime keeps and reports.
pub use measurement;
pub use platform::{PlatformKey, DEFAULT_PLATFORM_DIR, PLATFORM_DIR_ENV};
pub use report::{
    Report, CONFIG_ID_LEN, REPORT_MAGIC, REPORT_SIZE, REPORT_SIZE_V1, REPORT_VERSION, RTMR_COUNT,
    SIGNED_LEN,
};

/// A SHA-384 digest.
pub type Digest = [u8; 48];

/// Errors of the software TEE's formats. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("report: {0}")]
    Report(String),
    #[error("report: signature does not verify")]
    ReportSignature,
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("manifest: signature does not verify")]
    ManifestSignature,
    #[error(
        "the executable does not match the manifest: mr_enclave {actual} was signed as {signed}"
    )]
    MeasurementMismatch { actual: String, signed: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key: {0}")]
    Key(String),
}

impl SimError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| SimError::Io { context, source }
    }
}

/// 32 random bytes: the seed of a fresh Ed25519 key.
pub(crate) fn random_seed() -> Result<[u8; 32], SimError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| SimError::Key(e.to_string()))?;
    Ok(seed)
}

/// Reads a key file holding a 32-byte seed in hex.
pub(crate) fn read_seed(path: &std::path::Path) -> Result<[u8; 32], SimError> {
    let text =
        std::fs::read_to_string(path).map_err(SimError::io(format!("key {}", path.display())))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SimError::Key(format!("{}: not a 32-byte hex seed", path.display())))
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha384::digest(data).into()
}
