//! The tenant's side of confidential images, behind the `enclave-image` command: what
//! skopeo on Debian 12 cannot do for an image the enclave pulls (its ocicrypt predates
//! key providers and its sigstore support is disabled).
//!
//! - [`encrypt`]: every layer encrypted with ocicrypt's `AES_256_CTR_HMAC_SHA256`, its key
//!   wrapped in Confidential Containers' annotation packet for a KEK that a KBS
//!   (verdictd) holds as a resource; [`kbs`] stores a fresh KEK through the admin API.
//! - [`cosign`]: cosign key-based signatures in the registry (`sha256-<hex>.sig`);
//!   [`simple`]: simple signing with gpg into a lookaside directory.
//! - [`copy`]: an image between OCI layouts and registries, with its cosign signatures.
//! - [`keyprovider`]: ocicrypt's key-provider protocol on stdin/stdout, so that a newer
//!   skopeo or containerd's imgcrypt writes and reads the same packets.
//!
//! The image formats and the registry client are `enclave-image`'s, the library the
//! enclave uses to pull, verify and decrypt: what this tool writes is read by the same
//! code. Formats: `shared/reference/images.md` §1–§3.

pub mod copy;
pub mod cosign;
pub mod encrypt;
pub mod files;
pub mod kbs;
pub mod keyprovider;
pub mod pem;
pub mod simple;
