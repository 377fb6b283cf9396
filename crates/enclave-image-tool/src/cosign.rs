//! Cosign key-based signatures (sigstore/cosign `specs/SIGNATURE_SPEC.md`, images.md
//! §3.4), made without cosign (Debian has none, and its skopeo cannot make them):
//!
//! - payload: `{"critical":{"identity":{"docker-reference":REPO},"image":
//!   {"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},
//!   "optional":null}` (cosign's field order; REPO is the repository, as cosign writes);
//! - signature: ECDSA P-256 over SHA-256 of those exact bytes, ASN.1 DER, std-base64;
//! - stored as the OCI manifest tagged `sha256-<hex>.sig` in the image's repository (or
//!   layout): one `application/vnd.dev.cosign.simplesigning.v1+json` layer per signature
//!   (blob = payload, annotation `dev.cosignproject.cosign/signature`), and cosign's
//!   config whose `rootfs.diff_ids` list the payload digests. Signatures already there
//!   are kept.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_image::registry::{
    BlobData, CosignSignature, Descriptor, ImageSource, Puller, COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING, OCI_MANIFEST,
};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::encrypt::OCI_CONFIG;

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The signing key file.
    #[error("cosign key: {0}")]
    Key(String),
    /// Reading the image or writing the signature.
    #[error(transparent)]
    Registry(#[from] enclave_image::registry::Error),
}

/// A P-256 signing key. `Debug` does not show it.
pub struct CosignKey(SigningKey);

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CosignKey(..)")
    }
}

impl CosignKey {
    /// Parses an unencrypted P-256 private key in PEM: PKCS#8 (`PRIVATE KEY`, as
    /// `openssl genpkey` and [`CosignKey::private_pem`] write) or SEC1 (`EC PRIVATE KEY`,
    /// as `openssl ecparam -genkey` writes, with or without its `EC PARAMETERS` block).
    ///
    /// Errors: [`CosignError::Key`], naming cosign's own encrypted format when given one.
    pub fn from_pem(pem: &[u8]) -> Result<CosignKey, CosignError> {
        let bad = |m: String| CosignError::Key(m);
        let (label, der) = crate::pem::private_key_der(pem).map_err(bad)?;
        let der = Zeroizing::new(der);
        let secret = match label.as_str() {
            "PRIVATE KEY" => {
                use p256::pkcs8::DecodePrivateKey as _;
                p256::SecretKey::from_pkcs8_der(&der).map_err(|e| bad(format!("PKCS#8: {e} (a P-256 key is needed)")))?
            }
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map_err(|e| bad(format!("SEC1: {e} (a P-256 key is needed)")))?,
            l if l.contains("ENCRYPTED") => {
                return Err(bad(format!(
                    "{l}: encrypted keys (cosign's own format included) are not supported; give an unencrypted P-256 PEM (enclave-image keygen --cosign, or openssl ecparam -genkey -name prime256v1)"
                )))
            }
            l => return Err(bad(format!("{l} is not a P-256 private key"))),
        };
        Ok(CosignKey(SigningKey::from(secret)))
    }

    /// A fresh random key (the OS's random bytes, redrawn in the rare case they are
    /// not a valid scalar).
    ///
    /// Errors: [`CosignError::Key`] when no random bytes can be had.
    pub fn generate() -> Result<CosignKey, CosignError> {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(bytes.as_mut())
                .map_err(|e| CosignError::Key(format!("random bytes: {e}")))?;
            if let Ok(secret) = p256::SecretKey::from_slice(bytes.as_ref()) {
                return Ok(CosignKey(SigningKey::from(secret)));
            }
        }
    }

    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn private_pem(&self) -> Zeroizing<String> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    /// The public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`): what a `sigstoreSigned`
    /// policy's `keyPath` names and `openssl dgst -verify` takes.
    pub fn public_pem(&self) -> String {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    /// Signs `payload` (its exact bytes): std-base64 of the DER ECDSA signature.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: Signature = self.0.sign(payload);
        STANDARD.encode(sig.to_der().as_bytes())
    }
}

/// The payload cosign signs for `digest` of an image in repository `repository`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("JSON serialises")
}

/// cosign's attachment tag for `digest`: `sha256:<hex>` → `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The same place as `image`, at another tag (a layout's tag, or the repository's).
pub fn with_tag(image: &ImageSource, tag: &str) -> Result<ImageSource, CosignError> {
    Ok(match image {
        ImageSource::Registry(r) => ImageSource::Registry(r.with_tag(tag)?),
        ImageSource::OciLayout { dir, .. } => ImageSource::OciLayout {
            dir: dir.clone(),
            tag: Some(tag.to_string()),
        },
        ImageSource::OciArchive { path, .. } => ImageSource::OciArchive {
            path: path.clone(),
            tag: Some(tag.to_string()),
        },
    })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Adds `new` signatures of `digest` to those `image`'s repository (or layout) holds
/// already under `sha256-<hex>.sig` (an identical payload and signature is kept once),
/// and writes the signature manifest back. Returns the signature manifest's tag and
/// digest.
///
/// Errors: [`CosignError::Registry`] reading the existing signatures or writing.
pub async fn attach(
    puller: &Puller,
    image: &ImageSource,
    digest: &str,
    new: &[CosignSignature],
) -> Result<(String, String), CosignError> {
    let tag = signature_tag(digest);
    let mut all: Vec<CosignSignature> = puller.open(image).await?.cosign_signatures(digest).await?;
    for s in new {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    let mut layers = Vec::with_capacity(all.len());
    for s in &all {
        layers.push(Descriptor {
            media_type: s.media_type.clone(),
            digest: sha256(&s.payload),
            size: s.payload.len() as u64,
            urls: None,
            annotations: Some(s.annotations.clone()),
            platform: None,
            artifact_type: None,
        });
    }
    // cosign's config for signature images (pkg/oci/static, mutate.go).
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        "config": {},
    }))
    .expect("JSON serialises");
    let config_desc = Descriptor {
        media_type: OCI_CONFIG.to_string(),
        digest: sha256(&config),
        size: config.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }))
    .expect("JSON serialises");
    let mut dest = puller.destination(&with_tag(image, &tag)?)?;
    dest.put_blob(&config_desc, BlobData::Bytes(&config))
        .await?;
    for (layer, s) in layers.iter().zip(&all) {
        dest.put_blob(layer, BlobData::Bytes(&s.payload)).await?;
    }
    let manifest_digest = dest
        .put_manifest(&manifest, OCI_MANIFEST, Some(&tag))
        .await?;
    Ok((tag, manifest_digest))
}

/// A new signature layer for `payload` signed with `key`.
pub fn signature(key: &CosignKey, payload: Vec<u8>) -> CosignSignature {
    let sig = key.sign(&payload);
    CosignSignature {
        media_type: COSIGN_SIMPLESIGNING.to_string(),
        payload,
        annotations: BTreeMap::from([(COSIGN_SIGNATURE_ANNOTATION.to_string(), sig)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn keys_round_trip_and_signatures_verify() {
        let k = CosignKey::generate().unwrap();
        let again = CosignKey::from_pem(k.private_pem().as_bytes()).unwrap();
        assert_eq!(k.public_pem(), again.public_pem());
        let p = payload(
            "127.0.0.1:5000/test/app",
            &format!("sha256:{}", "ab".repeat(32)),
        );
        assert!(p.starts_with(br#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/test/app"},"image":{"docker-manifest-digest":"sha256:abab"#));
        assert!(p.ends_with(br#""type":"cosign container image signature"},"optional":null}"#));
        let der = STANDARD.decode(k.sign(&p)).unwrap();
        let sig = Signature::from_der(&der).unwrap();
        k.0.verifying_key().verify(&p, &sig).unwrap();
        assert_eq!(
            signature_tag(&format!("sha256:{}", "0f".repeat(32))),
            format!("sha256-{}.sig", "0f".repeat(32))
        );
        let e = CosignKey::from_pem(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n").unwrap_err().to_string();
        assert!(e.contains("encrypted keys"), "{e}");
    }
}
