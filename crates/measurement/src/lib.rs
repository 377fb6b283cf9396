//! Runtime measurements of Confidential Containers, shared by the enclave runtime that
//! makes them (`liberpal-sim`), the attestation agent that sends them, and the verifiers
//! that check them (`rats`, verdictd):
//!
//! - [`eventlog`]: the AAEL event log in its TCG2 form, its bounds, and its replay into
//!   four SHA-384 runtime measurement registers (RTMR0..3).
//! - [`initdata`]: the init-data document (CoCo's TOML: `version`, `algorithm`,
//!   `[data]`), its digest and the 64-byte config id it is bound to.

pub mod eventlog;
pub mod initdata;
