//! `push`: an image copied between OCI layouts and registries, byte for byte (the
//! manifest keeps its digest, so signatures stay valid), with its cosign signatures
//! (`sha256-<hex>.sig`) when the source has any. An index is resolved to one platform's
//! manifest, which is what is copied. Blobs go through a private staging directory,
//! each digest-checked on the way in; the manifest is written last.

use enclave_image::registry::{BlobData, ImageSource, Puller, OCI_MANIFEST};

use crate::cosign::{attach, CosignError};

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source or writing the destination.
    #[error(transparent)]
    Registry(#[from] enclave_image::registry::Error),
    /// Copying the signatures.
    #[error("signatures: {0}")]
    Signatures(#[from] CosignError),
    /// The staging directory.
    #[error("staging directory: {0}")]
    Staging(std::io::Error),
}

/// What [`copy_image`] did.
#[derive(Debug)]
pub struct Copied {
    /// The manifest digest (the same at both ends).
    pub digest: String,
    /// Blobs written (config and layers; those already there count too).
    pub blobs: usize,
    /// Cosign signatures copied.
    pub signatures: usize,
}

/// Copies `source` (read with `from`) to `target` (written with `to`).
pub async fn copy_image(
    from: &Puller,
    source: &ImageSource,
    to: &Puller,
    target: &ImageSource,
    with_signatures: bool,
) -> Result<Copied, CopyError> {
    let image = from.open(source).await?;
    let staging = tempfile::Builder::new()
        .prefix("enclave-image-")
        .tempdir()
        .map_err(CopyError::Staging)?;
    let config = image.config().await?;
    let mut dest = to.destination(target)?;
    dest.put_blob(&image.manifest.config, BlobData::Bytes(&config))
        .await?;
    for (i, layer) in image.manifest.layers.iter().enumerate() {
        tracing::info!(layer = i + 1, of = image.manifest.layers.len(), digest = %layer.digest, bytes = layer.size, "copying");
        let path = staging.path().join(format!("layer-{i}"));
        image.fetch_blob_to_path(layer, &path).await?;
        dest.put_blob(layer, BlobData::File(&path)).await?;
        let _ = std::fs::remove_file(&path);
    }
    let media_type = image
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    let digest = dest
        .put_manifest(&image.manifest_bytes, &media_type, None)
        .await?;
    let mut signatures = 0;
    if with_signatures {
        let sigs = image.cosign_signatures(&image.manifest_digest).await?;
        if !sigs.is_empty() {
            signatures = sigs.len();
            attach(to, target, &digest, &sigs).await?;
        }
    }
    Ok(Copied {
        digest,
        blobs: 1 + image.manifest.layers.len(),
        signatures,
    })
}
