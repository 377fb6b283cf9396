//! Fetching signatures for the policy module (which verifies them): cosign attachments
//! from the registry (images.md §3.4) and simple signatures from a lookaside store (§3.3).

use std::collections::BTreeMap;

use futures_util::StreamExt;

use super::reference::check_digest;
use super::remote::{chain, one_line, retry, Attempt, Remote};
use super::{Error, ImageRef, RegistryConfig, MAX_METADATA_SIZE};

/// Media type of a cosign signature layer (its blob is the signed payload).
pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the std-base64 signature over the payload bytes.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Lookaside signatures read at most (a store could otherwise list forever).
const MAX_LOOKASIDE_SIGNATURES: usize = 64;

/// At most this many layers of a cosign `.sig` manifest are read, as lookaside
/// signatures: each may be 4 MiB, and the registry is whoever the host names.
pub(crate) const MAX_COSIGN_SIGNATURES: usize = 64;

/// One layer of a cosign signature manifest, its payload digest-checked (not verified:
/// that is the policy module's job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignSignature {
    /// The layer's media type (normally [`COSIGN_SIMPLESIGNING`]).
    pub media_type: String,
    /// The exact payload bytes (verify these; never a re-serialization).
    pub payload: Vec<u8>,
    /// The layer's annotations ([`COSIGN_SIGNATURE_ANNOTATION`], certificate, bundle…).
    pub annotations: BTreeMap<String, String>,
}

impl CosignSignature {
    /// The payload and its signature annotation, as [`crate::policy`] verifies them;
    /// `None` for a layer without a signature annotation.
    pub fn for_policy(&self) -> Option<crate::policy::CosignSignature> {
        Some(crate::policy::CosignSignature {
            payload: self.payload.clone(),
            signature: self
                .annotations
                .get(crate::policy::COSIGN_SIGNATURE_ANNOTATION)?
                .clone(),
        })
    }
}

/// cosign's attachment tag for `digest`: `sha256:<hex>` → `sha256-<hex>.sig`.
pub(crate) fn cosign_tag(digest: &str) -> Result<String, Error> {
    check_digest(digest).map_err(|reason| Error::Reference {
        input: digest.to_string(),
        reason,
    })?;
    Ok(format!("{}.sig", digest.replacen(':', "-", 1)))
}

/// `signature-1`, `signature-2`, … under `<base>/<repository>@<alg>=<hex>/` until the
/// first missing one.
pub(crate) async fn lookaside(
    remote: &Remote,
    base: &str,
    r: &ImageRef,
    digest: &str,
    cfg: &RegistryConfig,
) -> Result<Vec<Vec<u8>>, Error> {
    check_digest(digest).map_err(|reason| Error::Reference {
        input: digest.to_string(),
        reason,
    })?;
    let dir = format!(
        "{}/{}@{}",
        base.trim_end_matches('/'),
        r.repository(),
        digest.replacen(':', "=", 1)
    );
    let mut out = Vec::new();
    for n in 1..=MAX_LOOKASIDE_SIGNATURES {
        let url = format!("{dir}/signature-{n}");
        let sig = if let Some(path) = url.strip_prefix("file://") {
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(lookaside_error(&url, e.to_string())),
                Ok(m) if m.len() > MAX_METADATA_SIZE => {
                    return Err(lookaside_error(
                        &url,
                        format!("{} bytes exceeds {MAX_METADATA_SIZE}", m.len()),
                    ))
                }
                Ok(_) => {
                    Some(std::fs::read(path).map_err(|e| lookaside_error(&url, e.to_string()))?)
                }
            }
        } else if url.starts_with("https://") || url.starts_with("http://") {
            fetch_http(remote, &url, cfg).await?
        } else {
            return Err(Error::Config(format!(
                "lookaside base {base:?}: want http://, https:// or file://"
            )));
        };
        match sig {
            Some(s) => out.push(s),
            None => break,
        }
    }
    Ok(out)
}

fn lookaside_error(url: &str, reason: String) -> Error {
    Error::Transport {
        location: url.to_string(),
        what: "lookaside signature".into(),
        reason,
    }
}

/// GETs one signature: `None` on 404, bounded body, retries as for registries.
async fn fetch_http(
    remote: &Remote,
    url: &str,
    cfg: &RegistryConfig,
) -> Result<Option<Vec<u8>>, Error> {
    retry(cfg, url, "lookaside signature", || async {
        let transport = |reason: String, retry: bool| Attempt {
            error: lookaside_error(url, reason),
            retry,
        };
        let resp = remote
            .plain
            .get(url)
            .send()
            .await
            .map_err(|e| transport(chain(&e), e.is_connect() || e.is_timeout()))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(Attempt {
                error: Error::Status {
                    location: url.to_string(),
                    what: "lookaside signature".into(),
                    status,
                    detail: String::new(),
                },
                retry: status >= 500 || status == 429,
            });
        }
        if resp.content_length().is_some_and(|n| n > MAX_METADATA_SIZE) {
            return Err(transport(
                format!("body exceeds {MAX_METADATA_SIZE} bytes"),
                false,
            ));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport(one_line(&chain(&e)), true))?;
            if body.len() + chunk.len() > MAX_METADATA_SIZE as usize {
                return Err(transport(
                    format!("body exceeds {MAX_METADATA_SIZE} bytes"),
                    false,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cosign_tag_follows_sigstore_attachment_naming() {
        // images.md §3.4: replace the first ':' with '-' and append ".sig".
        let d = format!("sha256:{}", "0f".repeat(32));
        assert_eq!(
            super::cosign_tag(&d).unwrap(),
            format!("sha256-{}.sig", "0f".repeat(32))
        );
        assert!(super::cosign_tag("sha256:xyz").is_err());
    }
}
