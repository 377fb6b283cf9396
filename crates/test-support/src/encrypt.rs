//! The tenant's side of a confidential image, for tests: the layers of an OCI layout
//! encrypted in place with a key-encryption key held by a KBS, as coco_keyprovider
//! does (images.md §2.3, §6.4): each layer gets a fresh AES-256-CTR-HMAC-SHA256 key
//! (containers/ocicrypt's layer cipher), its private options are sealed into a v1
//! annotation packet whose `kid` names the KBS resource, and the manifest and
//! `index.json` are rewritten. skopeo then pushes the layout unchanged (it copies
//! encrypted layers as they are when it has no decryption key).

use std::fs;
use std::path::{Path, PathBuf};

use enclave_image::ocicrypt::{
    encrypt_layer, encrypted_media_type, wrap_packet, Kek, ANNOTATION_PROVIDER_ATTESTATION_AGENT,
    ANNOTATION_PUBOPTS,
};
use serde_json::Value;

use crate::tools::sha256_digest;

/// What [`encrypt_layout_with_kek`] changed, for tests that tamper with it.
#[derive(Debug, Clone)]
pub struct EncryptedImage {
    /// The new manifest's digest.
    pub manifest_digest: String,
    /// The encrypted layer blobs' digests, in manifest order.
    pub layers: Vec<String>,
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest}: only sha256 is handled"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

fn read_json(p: &Path) -> Result<Value, String> {
    let bytes = fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes `bytes` as a blob of `layout` and returns its digest.
fn write_blob(layout: &Path, bytes: &[u8]) -> Result<String, String> {
    let digest = sha256_digest(bytes);
    let p = blob_path(layout, &digest)?;
    fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(digest)
}

/// Encrypts every layer of image `tag` (its `org.opencontainers.image.ref.name`) in the
/// OCI layout `layout` for the KEK `kek` (32 bytes) that a KBS serves as `kid`
/// (`kbs:///repo/type/tag`). Media types get `+encrypted`; each layer descriptor gets
/// the `…keys.provider.attestation-agent` packet and the `…enc.pubopts` annotations.
/// The plain blobs stay in the layout (unreferenced by the new manifest).
pub fn encrypt_layout_with_kek(
    layout: &Path,
    tag: &str,
    kek: &[u8],
    kid: &str,
) -> Result<EncryptedImage, String> {
    let kek = Kek::new(kek).map_err(|e| e.to_string())?;
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path)?;
    let entry = index["manifests"]
        .as_array_mut()
        .and_then(|m| {
            m.iter_mut().find(|d| {
                d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
        })
        .ok_or_else(|| format!("{}: no manifest tagged {tag}", index_path.display()))?;
    let old = entry["digest"].as_str().unwrap_or_default().to_string();
    let mut manifest = read_json(&blob_path(layout, &old)?)?;
    let mut layers = Vec::new();
    for desc in manifest["layers"]
        .as_array_mut()
        .ok_or("manifest without layers")?
    {
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let media_type = desc["mediaType"].as_str().unwrap_or_default().to_string();
        let plain = fs::File::open(blob_path(layout, &digest)?)
            .map_err(|e| format!("layer {digest}: {e}"))?;
        let mut sealed = Vec::new();
        let enc = encrypt_layer(plain, &mut sealed).map_err(|e| e.to_string())?;
        let written = write_blob(layout, &sealed)?;
        assert_eq!(
            written, enc.digest,
            "encrypt_layer's digest of the ciphertext"
        );
        let packet = wrap_packet(&kek, kid, &enc.private).map_err(|e| e.to_string())?;
        desc["mediaType"] = encrypted_media_type(&media_type)
            .map_err(|e| e.to_string())?
            .into();
        desc["digest"] = enc.digest.clone().into();
        desc["size"] = enc.size.into();
        let annotations = desc
            .as_object_mut()
            .ok_or("layer descriptor is not an object")?
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        annotations[ANNOTATION_PROVIDER_ATTESTATION_AGENT] = packet.into();
        annotations[ANNOTATION_PUBOPTS] = enc.public.to_annotation().into();
        layers.push(enc.digest);
    }
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = write_blob(layout, &bytes)?;
    entry["digest"] = manifest_digest.clone().into();
    entry["size"] = bytes.len().into();
    fs::write(
        &index_path,
        serde_json::to_vec(&index).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", index_path.display()))?;
    Ok(EncryptedImage {
        manifest_digest,
        layers,
    })
}
