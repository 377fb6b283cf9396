//! ocicrypt layers: media types, the `AES_256_CTR_HMAC_SHA256` layer cipher, and the
//! layer key wrapped in a layer descriptor's annotations (containers/ocicrypt, with
//! Confidential Containers' annotation packet for keys held by a KBS).
//!
//! How a pulled layer is opened (synchronously; the async KBS fetch happens first):
//!
//! ```no_run
//! # fn f(layer_annotations: &std::collections::BTreeMap<String, String>,
//! #      blob: std::fs::File, kek: &[u8]) -> Result<(), enclave_image::ocicrypt::Error> {
//! use enclave_image::ocicrypt::{Keys, LayerAnnotations, kids_needed};
//! let layer = LayerAnnotations::from_pairs(layer_annotations);
//! let mut keys = Keys::default();
//! for kid in kids_needed([&layer]) {
//!     // the caller fetches each KEK from the KBS (`Agent::get_resource(&kid)`)
//!     keys.add_kek(&kid, kek)?;
//! }
//! let mut plain = layer.open("sha256:…", blob, &keys)?;
//! std::io::copy(&mut plain, &mut std::io::sink())?; // HMAC checked at EOF
//! # Ok(()) }
//! ```
//!
//! Sources: containers/ocicrypt (`spec/spec.go`, `blockcipher/`, `keywrap/jwe/`,
//! `encryption.go`), confidential-containers/guest-components (CDH's annotation packet)
//! as summarised in the project's `reference/images.md` §1–§2.

mod cipher;
mod jwe;
mod keys;
mod media;
mod options;
mod packet;

pub use cipher::{encrypt_layer, DecryptReader, EncryptedLayer};
pub use jwe::PrivateKey;
pub use keys::{kids_needed, Kek, Keys, LayerAnnotations};
pub use media::{
    compression, decrypted_media_type, encrypted_media_type, is_encrypted, Compression,
};
pub use options::{PrivateOptions, PublicOptions, CIPHER_AES_256_CTR_HMAC_SHA256};
pub use packet::{seal_packet, wrap_packet};

/// Annotation prefix of every ocicrypt annotation; containers/image drops all of them
/// from a layer it decrypts.
pub const ANNOTATION_PREFIX: &str = "org.opencontainers.image.enc";
/// JWE recipients: comma-separated std-base64 JWE JSON serialisations (§1.6).
pub const ANNOTATION_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
/// Prefix of key-provider wraps, followed by the provider's name (§1.7).
pub const ANNOTATION_PROVIDER_PREFIX: &str = "org.opencontainers.image.enc.keys.provider.";
/// Where Confidential Containers puts its annotation packet (§2.1).
pub const ANNOTATION_PROVIDER_ATTESTATION_AGENT: &str =
    "org.opencontainers.image.enc.keys.provider.attestation-agent";
/// The public options: std-base64 JSON of [`PublicOptions`] (§1.3).
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";

/// What can go wrong with an encrypted layer. Every message is one line and names the
/// layer (by digest) when one is involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A media type that is not an OCI or Docker layer type this crate knows.
    #[error("media type {0:?} is not a known layer media type")]
    MediaType(String),
    /// A private or public options document that does not parse or has wrong sizes.
    #[error("layer options: {0}")]
    Options(String),
    /// The `pubopts` annotation is missing (ocicrypt's own words, then why).
    #[error("layer {layer}: HMAC is not provided for decryption process (no {ANNOTATION_PUBOPTS} annotation)")]
    NoHmac { layer: String },
    /// The layer descriptor carries no key wrap at all.
    #[error("layer {layer}: not encrypted (no {ANNOTATION_PREFIX}.keys.* annotation)")]
    NotEncrypted { layer: String },
    /// No wrap could be opened. `tried` lists each wrap found (kind, recipients'
    /// `alg`/`kid`, packet `kid`) and why it failed. `missing` is ocicrypt's
    /// distinction: no key was even given for any of them. Both texts are ocicrypt's
    /// (`helpers.go` `decryptLayerKeyOptsData`), which skopeo prints.
    #[error("layer {layer}: {}: {}", if *.missing { "missing private key needed for decryption" } else { "no suitable key unwrapper found or none of the private keys could be used for decryption" }, .tried.join("; "))]
    NoKey {
        layer: String,
        missing: bool,
        tried: Vec<String>,
    },
    /// The HMAC over the ciphertext did not match `pubopts.hmac` (checked at EOF).
    #[error("layer {layer}: HMAC mismatch: the encrypted layer was altered or was not made with this key")]
    Hmac { layer: String },
    /// A private key (PEM or DER) that is not RSA or EC P-256/P-384/P-521 in PKCS#1,
    /// SEC1 or unencrypted PKCS#8.
    #[error("private key: {0}")]
    PrivateKey(String),
    /// A key id that is not `kbs://[HOST]/repo/type/tag`, or a KEK that is not 32 bytes.
    #[error("key id: {0}")]
    Kek(String),
    /// Wrapping a key or encrypting a layer failed.
    #[error("encrypt: {0}")]
    Encrypt(String),
    /// Reading the plain layer or writing the ciphertext failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
