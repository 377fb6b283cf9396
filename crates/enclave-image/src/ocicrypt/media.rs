//! Layer media types: encrypted ↔ plain, and the compression of a layer
//! (containers/ocicrypt:spec/spec.go; opencontainers/image-spec:media-types.md;
//! Docker's image manifest v2 schema 2).

use super::Error;

const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// How a (decrypted) layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A bare tar stream.
    None,
    Gzip,
    Zstd,
}

/// The plain layer media types and their compression.
const LAYER_TYPES: &[(&str, Compression)] = &[
    ("application/vnd.oci.image.layer.v1.tar", Compression::None),
    (
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::Zstd,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        Compression::None,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        Compression::Zstd,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        Compression::Gzip,
    ),
];

/// Whether a layer media type is encrypted: it ends in `+encrypted`, which is how
/// containers/image decides (`isOciEncrypted`).
pub fn is_encrypted(media_type: &str) -> bool {
    media_type.ends_with(ENCRYPTED_SUFFIX)
}

/// The media type of the decrypted layer: the name without `+encrypted`; `None` when
/// `media_type` is not encrypted.
pub fn decrypted_media_type(media_type: &str) -> Option<&str> {
    media_type.strip_suffix(ENCRYPTED_SUFFIX)
}

/// The encrypted counterpart of a plain tar layer media type (`…+encrypted`).
///
/// Errors: [`Error::MediaType`] for a type that is already encrypted or is not one of
/// the OCI (distributable or not) or Docker tar layer types.
pub fn encrypted_media_type(media_type: &str) -> Result<String, Error> {
    if LAYER_TYPES.iter().any(|(t, _)| *t == media_type) {
        Ok(format!("{media_type}{ENCRYPTED_SUFFIX}"))
    } else {
        Err(Error::MediaType(media_type.to_string()))
    }
}

/// The compression of a layer, from its media type; an encrypted type is answered for
/// the blob once decrypted (ocicrypt encrypts the compressed blob).
///
/// Errors: [`Error::MediaType`] for anything but the OCI and Docker tar layer types
/// (a wasm layer, a config, an unknown type).
pub fn compression(media_type: &str) -> Result<Compression, Error> {
    let plain = decrypted_media_type(media_type).unwrap_or(media_type);
    LAYER_TYPES
        .iter()
        .find(|(t, _)| *t == plain)
        .map(|(_, c)| *c)
        .ok_or_else(|| Error::MediaType(media_type.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs of containers/ocicrypt:spec/spec.go and Docker's rootfs type.
    #[test]
    fn encrypted_and_plain_types_map_both_ways() {
        for (plain, enc, c) in [
            (
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar+encrypted",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
                Compression::Gzip,
            ),
        ] {
            assert!(is_encrypted(enc) && !is_encrypted(plain));
            assert_eq!(decrypted_media_type(enc), Some(plain));
            assert_eq!(decrypted_media_type(plain), None);
            assert_eq!(encrypted_media_type(plain).unwrap(), enc);
            assert_eq!(compression(plain).unwrap(), c);
            assert_eq!(compression(enc).unwrap(), c);
        }
        for bad in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
        ] {
            let err = encrypted_media_type(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert!(compression("application/vnd.wasm.content.layer.v1+wasm+encrypted").is_err());
    }
}
