//! Lookaside stores for simple signatures (containers/image:docs/signature-protocols.md,
//! images.md §3.3): `<base>/<repo path>@<algo>=<hex>/signature-<N>`, N from 1 up to the
//! first missing one; the repository path has no registry host.

use std::io::Read as _;

use super::reference::{check_digest, DockerRef};
use super::MAX_SIGNATURE_BYTES;

/// Most signatures read for one image; a store with more is refused rather than read
/// without end.
pub const MAX_LOOKASIDE_SIGNATURES: u32 = 64;

/// The location of signature number `index` (1-based) of `manifest_digest` for the
/// image reference `image`, under the lookaside base URL (or `file://` directory) `base`.
///
/// ```
/// # use enclave_image::policy::lookaside_location;
/// let d = format!("sha256:{}", "d4".repeat(32));
/// let u = lookaside_location("file:///srv/sigstore/", "127.0.0.1:5000/test/app:signed", &d, 1).unwrap();
/// assert_eq!(u, format!("file:///srv/sigstore/test/app@sha256={}/signature-1", "d4".repeat(32)));
/// ```
///
/// # Errors
/// A bad reference or digest, or `index` 0.
pub fn lookaside_location(
    base: &str,
    image: &str,
    manifest_digest: &str,
    index: u32,
) -> Result<String, String> {
    if index == 0 {
        return Err("lookaside signature numbers start at 1".into());
    }
    let r = DockerRef::parse_image(image)
        .map_err(|e| format!("invalid image reference {image:?}: {e}"))?;
    check_digest(manifest_digest)?;
    Ok(format!(
        "{}/{}@{}/signature-{index}",
        base.trim_end_matches('/'),
        r.path,
        manifest_digest.replacen(':', "=", 1)
    ))
}

/// Reads every signature of `manifest_digest` from a `file://` lookaside store, in
/// order, stopping at the first missing `signature-N`. An empty list means "no
/// signature" (the policy decides what that means).
///
/// # Errors
/// A base that is not `file://`, an unreadable or oversized signature file, or more than
/// [`MAX_LOOKASIDE_SIGNATURES`] signatures.
pub fn read_file_lookaside(
    base: &str,
    image: &str,
    manifest_digest: &str,
) -> Result<Vec<Vec<u8>>, String> {
    if !base.starts_with("file://") {
        return Err(format!(
            "lookaside {base:?} is not a file:// URL (the registry module fetches http(s) stores)"
        ));
    }
    let mut out = Vec::new();
    for n in 1..=MAX_LOOKASIDE_SIGNATURES + 1 {
        let url = lookaside_location(base, image, manifest_digest, n)?;
        let path = &url["file://".len()..];
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(format!("reading signature {path}: {e}")),
        };
        if n > MAX_LOOKASIDE_SIGNATURES {
            return Err(format!("more than {MAX_LOOKASIDE_SIGNATURES} signatures in the lookaside store for {image}"));
        }
        let mut buf = Vec::new();
        file.take(MAX_SIGNATURE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading signature {path}: {e}"))?;
        if buf.len() > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "signature {path} is larger than {MAX_SIGNATURE_BYTES} bytes"
            ));
        }
        out.push(buf);
    }
    Ok(out)
}
