//! The enclave signature server, and its client.
//!
//! A node that turns images into enclaves at `create` (the shim's carriers) should not
//! hold the enclave signing key: whoever holds it can make any program look like the
//! tenant's enclave. The signature server holds the keys instead and signs the bytes
//! the carrier sends it; the node only ever sees public keys and signatures.
//!
//! The HTTP API is Inclavare Containers' (`shim/runtime/signature`), under
//! [`API_PREFIX`], with one addition for the software TEE:
//!
//! | Request | Body | Reply |
//! |---|---|---|
//! | `GET  /api/v1/signature/public-key` | – | JSON string: the RSA public key (PEM) |
//! | `POST /api/v1/signature/pkcs1` | bytes to sign | [`SignaturePayload`]: RSASSA-PKCS1-v1_5 with SHA-256 (SGX `sgx_sign` signing material) |
//! | `GET  /api/v1/signature/ed25519/public-key` | – | JSON string: the Ed25519 public key (PEM) |
//! | `POST /api/v1/signature/ed25519` | bytes to sign | [`SignaturePayload`]: Ed25519 (`liberpal-sim` manifests) |
//!
//! The server signs what it is sent: it is a signing oracle for whoever can reach it,
//! as Inclavare's was. It therefore binds loopback unless told otherwise; expose it only
//! to the nodes that convert images. A client never trusts a reply blindly: every
//! signature is checked against the public key before it is used.

pub mod client;
mod keys;
pub mod server;
mod wire;

pub use client::{Client, ClientError};
pub use keys::{
    ed25519_from_pem, ed25519_pem, verify_ed25519, verify_pkcs1, KeyError, Keys, RSA_BITS,
    RSA_EXPONENT,
};
pub use wire::{SignaturePayload, Standard, API_PREFIX, DEFAULT_PORT, MAX_BODY};
