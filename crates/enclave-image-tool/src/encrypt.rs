//! `encrypt`: every layer of an image encrypted with ocicrypt's
//! `AES_256_CTR_HMAC_SHA256` (a fresh key and nonce per layer, as `skopeo copy
//! --encryption-key` does), each layer key wrapped in Confidential Containers' annotation
//! packet for a KEK held by a KBS (images.md §1–§2):
//!
//! - media type `<plain type>+encrypted` (Docker layer types become their OCI names
//!   first, as containers/image converts a Docker manifest it encrypts to OCI);
//! - `org.opencontainers.image.enc.keys.provider.attestation-agent` = std-base64 of the
//!   v1 packet `{"kid","wrapped_data","iv","wrap_type":"A256GCM"}`;
//! - `org.opencontainers.image.enc.pubopts` = std-base64 of
//!   `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":…,"cipheroptions":{}}`.
//!
//! The config blob is copied unchanged (its `rootfs.diff_ids` still name the plain
//! layers, which is what the decrypting side checks). Two phases, so that nothing is
//! published unless everything worked: [`prepare`] pulls and encrypts into a private
//! staging directory; [`Prepared::publish`] writes blobs, then the manifest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use enclave_image::ocicrypt::{
    encrypt_layer, encrypted_media_type, is_encrypted, wrap_packet, Kek, ANNOTATION_PREFIX,
    ANNOTATION_PROVIDER_ATTESTATION_AGENT, ANNOTATION_PUBOPTS,
};
use enclave_image::registry::{
    BlobData, Descriptor, ImageSource, Manifest, Puller, DOCKER_MANIFEST, OCI_MANIFEST,
};

/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// Pulling the source or writing the destination.
    #[error(transparent)]
    Registry(#[from] enclave_image::registry::Error),
    /// Encrypting or wrapping a layer key.
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        /// 0-based layer index.
        index: usize,
        /// The plain layer's digest.
        digest: String,
        /// The cause.
        source: enclave_image::ocicrypt::Error,
    },
    /// A layer that is already encrypted.
    #[error("layer {index} ({digest}) is already encrypted ({media_type})")]
    AlreadyEncrypted {
        /// 0-based layer index.
        index: usize,
        /// Its digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest of a kind that cannot be encrypted.
    #[error("{0}")]
    Manifest(String),
    /// The staging directory.
    #[error("staging directory: {0}")]
    Staging(std::io::Error),
}

/// What [`prepare`] made, ready to publish.
pub struct Prepared {
    // Keeps the staging directory (ciphertext only) alive; removed on drop.
    _staging: tempfile::TempDir,
    config: (Descriptor, Vec<u8>),
    layers: Vec<(Descriptor, PathBuf)>,
    manifest: Vec<u8>,
    /// (plain digest, encrypted digest) per layer.
    pub layer_digests: Vec<(String, String)>,
    /// The source's manifest digest.
    pub source_digest: String,
}

/// Maps a Docker schema 2 media type to its OCI name (identity for others).
fn oci_name(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        DOCKER_CONFIG => OCI_CONFIG,
        DOCKER_MANIFEST => OCI_MANIFEST,
        other => other,
    }
}

/// Pulls `source` (an index is resolved to the puller's platform), encrypts each layer
/// into a private staging directory, and builds the encrypted OCI manifest. Nothing is
/// written anywhere else.
///
/// Errors: [`EncryptError::Registry`] (source missing, unreachable, digest mismatch…),
/// [`EncryptError::AlreadyEncrypted`], [`EncryptError::Layer`] (a media type that is not
/// a tar layer, a `kid` that is not `kbs:///repo/type/tag`).
pub async fn prepare(
    puller: &Puller,
    source: &ImageSource,
    kid: &str,
    kek: &Kek,
) -> Result<Prepared, EncryptError> {
    let image = puller.open(source).await?;
    let staging = tempfile::Builder::new()
        .prefix("enclave-image-")
        .tempdir()
        .map_err(EncryptError::Staging)?;
    let config_bytes = image.config().await?;
    let mut manifest: Manifest = image.manifest.clone();
    match manifest.media_type.as_deref() {
        None | Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => {}
        Some(other) => {
            return Err(EncryptError::Manifest(format!(
                "manifest media type {other:?} cannot be encrypted"
            )))
        }
    }
    manifest.media_type = Some(OCI_MANIFEST.to_string());
    manifest.config.media_type = oci_name(&manifest.config.media_type).to_string();

    let count = manifest.layers.len();
    let mut layers = Vec::with_capacity(count);
    let mut layer_digests = Vec::with_capacity(count);
    for (index, layer) in image.manifest.layers.iter().enumerate() {
        if is_encrypted(&layer.media_type) {
            return Err(EncryptError::AlreadyEncrypted {
                index,
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        }
        let layer_err = |source| EncryptError::Layer {
            index,
            digest: layer.digest.clone(),
            source,
        };
        let media_type = encrypted_media_type(oci_name(&layer.media_type)).map_err(layer_err)?;
        tracing::info!(
            layer = index + 1,
            of = count,
            digest = %layer.digest,
            bytes = layer.size,
            "encrypting"
        );
        // Plain blob: fetched (digest-checked, mode 0600) then encrypted and removed.
        let plain = staging.path().join(format!("plain-{index}"));
        image.fetch_blob_to_path(layer, &plain).await?;
        let out_path = staging.path().join(format!("layer-{index}"));
        let enc = (|| {
            let input = BufReader::new(File::open(&plain)?);
            let out = BufWriter::new(File::create(&out_path)?);
            encrypt_layer(input, out)
        })()
        .map_err(layer_err)?;
        let _ = std::fs::remove_file(&plain);
        // The packet's kid is checked here (kbs:///repo/type/tag).
        let packet = wrap_packet(kek, kid, &enc.private).map_err(layer_err)?;
        let mut annotations: BTreeMap<String, String> = layer
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !k.starts_with(ANNOTATION_PREFIX))
            .collect();
        annotations.insert(ANNOTATION_PROVIDER_ATTESTATION_AGENT.to_string(), packet);
        annotations.insert(ANNOTATION_PUBOPTS.to_string(), enc.public.to_annotation());
        let desc = Descriptor {
            media_type,
            digest: enc.digest.clone(),
            size: enc.size,
            urls: None,
            annotations: Some(annotations),
            platform: None,
            artifact_type: None,
        };
        layer_digests.push((layer.digest.clone(), enc.digest));
        layers.push((desc, out_path));
    }
    manifest.layers = layers.iter().map(|(d, _)| d.clone()).collect();
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    Ok(Prepared {
        _staging: staging,
        config: (manifest.config.clone(), config_bytes),
        layers,
        manifest: manifest_bytes,
        layer_digests,
        source_digest: image.manifest_digest.clone(),
    })
}

impl Prepared {
    /// The encrypted manifest's bytes.
    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    /// Writes the config and layer blobs, then the manifest, to `target`; returns the
    /// manifest digest. A failure leaves no tag (registry) and no new file (layout).
    pub async fn publish(
        &self,
        puller: &Puller,
        target: &ImageSource,
    ) -> Result<String, EncryptError> {
        let mut dest = puller.destination(target)?;
        dest.put_blob(&self.config.0, BlobData::Bytes(&self.config.1))
            .await?;
        for (desc, path) in &self.layers {
            dest.put_blob(desc, BlobData::File(path)).await?;
        }
        Ok(dest
            .put_manifest(&self.manifest, OCI_MANIFEST, None)
            .await?)
    }
}
