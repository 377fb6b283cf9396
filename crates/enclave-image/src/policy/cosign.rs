//! Cosign key-based signatures (sigstore/cosign:specs/SIGNATURE_SPEC.md, images.md §3.4):
//! ECDSA P-256 over SHA-256 of the exact payload blob, ASN.1 DER, std-base64 in the
//! layer annotation `dev.cosignproject.cosign/signature`.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::json::Json;
use super::MAX_SIGNATURE_BYTES;

/// Media type of a cosign signature layer.
pub const COSIGN_LAYER_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// One cosign signature: a signature-manifest layer's blob and its annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignSignature {
    /// The layer blob: the payload JSON exactly as fetched (digest-checked by the caller).
    pub payload: Vec<u8>,
    /// The `dev.cosignproject.cosign/signature` annotation: std-base64 of a DER ECDSA
    /// signature.
    pub signature: String,
}

/// A layer of a cosign signature manifest to fetch: blob digest and size, and the
/// signature annotation to pair with the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignLayer {
    /// `algo:hex` of the payload blob.
    pub digest: String,
    /// Declared blob size in bytes.
    pub size: u64,
    /// The `dev.cosignproject.cosign/signature` annotation.
    pub signature: String,
}

/// The tag under which cosign stores signatures for `manifest_digest` in the same
/// repository: `sha256:<hex>` → `sha256-<hex>.sig` (containers/image `sigstoreAttachmentTag`).
///
/// # Errors
/// When `manifest_digest` is not a valid `algo:hex` digest.
pub fn signature_tag(manifest_digest: &str) -> Result<String, String> {
    super::reference::check_digest(manifest_digest)?;
    Ok(format!("{}.sig", manifest_digest.replacen(':', "-", 1)))
}

/// Lists the signature layers of a cosign signature manifest (an OCI image manifest).
/// Layers of another media type, or without the signature annotation, are skipped, as
/// containers/image skips non-signature attachments.
///
/// # Errors
/// One line when the manifest is not a JSON object with a `layers` list of descriptors.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<CosignLayer>, String> {
    if manifest.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "cosign signature manifest is larger than {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    let bad = |m: String| format!("invalid cosign signature manifest: {m}");
    let root = Json::parse(manifest).map_err(bad)?;
    let top = root.any_object("the manifest").map_err(bad)?;
    let Some(Json::Arr(layers)) = top.get("layers") else {
        return Err(bad("no \"layers\" list".into()));
    };
    let mut out = Vec::new();
    for l in layers {
        let d = l.any_object("a layer").map_err(bad)?;
        if d.get("mediaType").and_then(|m| m.str("").ok()) != Some(COSIGN_LAYER_MEDIA_TYPE) {
            continue;
        }
        let Some(Json::Obj(_)) = d.get("annotations") else {
            continue;
        };
        let ann = d
            .req("annotations")
            .map_err(bad)?
            .any_object("annotations")
            .map_err(bad)?;
        let Some(sig) = ann.get(COSIGN_SIGNATURE_ANNOTATION) else {
            continue;
        };
        let digest = d.req("digest").and_then(|v| v.str("digest")).map_err(bad)?;
        super::reference::check_digest(digest).map_err(bad)?;
        let size = match d.req("size").map_err(bad)? {
            Json::Int(s) if *s >= 0 => *s as u64,
            _ => return Err(bad("layer size must be a non-negative integer".into())),
        };
        out.push(CosignLayer {
            digest: digest.to_string(),
            size,
            signature: sig
                .str(COSIGN_SIGNATURE_ANNOTATION)
                .map_err(bad)?
                .to_string(),
        });
    }
    Ok(out)
}

/// P-256 public keys from PEM (`-----BEGIN PUBLIC KEY-----`, SPKI, as
/// `openssl ec -pubout` and `cosign generate-key-pair` write them); one PEM block per
/// call.
///
/// # Errors
/// When the bytes are not a PEM P-256 public key.
pub fn parse_public_key(pem: &[u8]) -> Result<VerifyingKey, String> {
    let text =
        std::str::from_utf8(pem).map_err(|_| "cosign public key is not PEM text".to_string())?;
    VerifyingKey::from_public_key_pem(text.trim())
        .map_err(|e| format!("cosign public key is not a PEM P-256 public key: {e}"))
}

/// Verifies `sig` over its exact payload bytes with any of `keys`; returns the index of
/// the key that verified it.
///
/// # Errors
/// "cryptographic signature verification failed" when no key verifies it; a malformed
/// base64 or DER signature is named as such.
pub fn verify_signature(sig: &CosignSignature, keys: &[VerifyingKey]) -> Result<usize, String> {
    if sig.payload.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "cosign payload is larger than {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(sig.signature.trim())
        .map_err(|e| format!("cosign signature annotation is not base64: {e}"))?;
    let parsed = Signature::from_der(&der)
        .map_err(|e| format!("cosign signature is not a DER ECDSA signature: {e}"))?;
    // openssl and cosign may emit a high S; the verifier wants the low-S form.
    let parsed = parsed.normalize_s().unwrap_or(parsed);
    keys.iter()
        .position(|k| k.verify(&sig.payload, &parsed).is_ok())
        .ok_or_else(|| "cryptographic signature verification failed: no trusted key verifies the cosign signature".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_replaces_first_colon() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            signature_tag(&d).unwrap(),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        assert!(signature_tag("sha256:zz").is_err());
    }

    #[test]
    fn lists_signature_layers_only() {
        let d = format!("sha256:{}", "0".repeat(64));
        let m = format!(
            r#"{{"schemaVersion":2,"layers":[
              {{"mediaType":"{COSIGN_LAYER_MEDIA_TYPE}","digest":"{d}","size":5,"annotations":{{"{COSIGN_SIGNATURE_ANNOTATION}":"AAAA"}}}},
              {{"mediaType":"application/octet-stream","digest":"{d}","size":1}}]}}"#
        );
        let l = signature_layers(m.as_bytes()).unwrap();
        assert_eq!(
            l,
            [CosignLayer {
                digest: d,
                size: 5,
                signature: "AAAA".into()
            }]
        );
        assert!(signature_layers(b"[]").is_err());
    }
}
