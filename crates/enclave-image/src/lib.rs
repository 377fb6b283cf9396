//! Container images for enclaves: pulled, signature-checked, decrypted and unpacked
//! inside the TEE, so that the plaintext never exists on the (untrusted) host.
//!
//! The formats follow `docs/images.md`-style references: OCI image-spec and
//! distribution-spec, containers/ocicrypt (layer encryption), Confidential Containers'
//! annotation packet (layer keys wrapped by a KEK held in a KBS), containers-policy.json
//! with simple signing and cosign key-based signatures.
//!
//! Modules (one concern each):
//! - [`ocicrypt`]: encrypted layer media types, the `AES_256_CTR_HMAC_SHA256` layer
//!   cipher, JWE and key-provider (annotation packet) key unwrapping and wrapping.
//! - [`unpack`]: the layer pipeline after decryption (gzip/zstd, diff_id check) and
//!   applying a layer's tar to a root safely: staged privately, published only once every
//!   check passed (whiteouts, opaque dirs, links confined to the root).
//! - [`policy`]: containers-policy.json, simple signing (GPG) and cosign key-based
//!   signatures, verified over bytes the caller fetched, before any layer is pulled.
//! - [`registry`]: references, OCI distribution pull and OCI-layout sources.

pub mod ocicrypt;
pub mod policy;
pub mod registry;
pub mod unpack;
