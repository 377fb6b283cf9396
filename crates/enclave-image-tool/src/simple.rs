//! Simple signing (containers/image `docs/containers-signature.5.md`, images.md §3.2–§3.3),
//! as `skopeo copy --sign-by` does it: the payload
//! `{"critical":{"identity":{"docker-reference":REF},"image":{"docker-manifest-digest":
//! DIGEST},"type":"atomic container signature"},"optional":{"creator","timestamp"}}`
//! signed by the real `gpg` (an OpenPGP signed message: compressed, one-pass signature,
//! literal data, signature — what gpgme makes for skopeo), checked with the library's
//! verifier against the key gpg exports, and written to a lookaside directory as
//! `<dir>/<repository path>@sha256=<hex>/signature-<N>` (N the first free number).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use enclave_image::policy::{
    lookaside_location, parse_payload, verify_message, Keyring, SIMPLE_SIGNING_TYPE,
};

use crate::files::{write_new, FileError};

/// Most signatures one lookaside directory takes (the library reads at most 64).
const MAX_SIGNATURES: u32 = 64;

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum SimpleError {
    /// gpg could not be run or failed.
    #[error("gpg {args}: {reason}")]
    Gpg {
        /// The arguments, without secrets.
        args: String,
        /// gpg's stderr (last line) or the exec error.
        reason: String,
    },
    /// What gpg made does not verify as a simple signature for this image.
    #[error("the signature gpg made does not verify: {0}")]
    SelfCheck(String),
    /// The image reference or digest.
    #[error("{0}")]
    Reference(String),
    /// Writing the signature.
    #[error(transparent)]
    File(#[from] FileError),
    /// The lookaside directory holds too many signatures already.
    #[error("{0}: {MAX_SIGNATURES} signatures already")]
    Full(String),
}

/// Who signs: a GnuPG home and a key (fingerprint, key id or user id).
pub struct GpgSigner<'a> {
    /// `GNUPGHOME`.
    pub home: &'a Path,
    /// `--local-user`.
    pub sign_by: &'a str,
    /// A file holding the key's passphrase (pinentry loopback), if it has one.
    pub passphrase_file: Option<&'a Path>,
}

impl GpgSigner<'_> {
    fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, SimpleError> {
        use std::io::Write as _;
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home)
            .args(["--batch", "--no-tty", "--quiet"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = args.join(" ");
        let err = |reason: String| SimpleError::Gpg {
            args: shown.clone(),
            reason,
        };
        let mut child = cmd.spawn().map_err(|e| err(e.to_string()))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped");
            // A write error shows up as gpg's failure below.
            let _ = pipe.write_all(input);
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            return Err(err(format!("{}: {last}", out.status)));
        }
        Ok(out.stdout)
    }

    /// Signs `payload`: `gpg --sign --local-user KEY` (a signed message, not detached).
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SimpleError> {
        let mut args = vec!["--local-user", self.sign_by];
        let pass;
        if let Some(p) = self.passphrase_file {
            pass = p.display().to_string();
            args.extend(["--pinentry-mode", "loopback", "--passphrase-file", &pass]);
        }
        args.extend(["--output", "-", "--sign"]);
        self.gpg(&args, Some(payload))
    }

    /// The signer's public key as `gpg --export` writes it.
    pub fn export(&self) -> Result<Vec<u8>, SimpleError> {
        self.gpg(&["--export", self.sign_by], None)
    }
}

/// The payload for `digest` of the image known as `identity` (containers/image's
/// `newUntrustedSignature`; `creator` names this tool).
pub fn payload(identity: &str, digest: &str, timestamp: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": {
            "creator": concat!("enclave-image ", env!("CARGO_PKG_VERSION")),
            "timestamp": timestamp,
        },
    }))
    .expect("JSON serialises")
}

/// Signs `digest` for `identity` with `signer`, checks the result with the library's
/// verifier (the key gpg exports must verify it, and the payload must say what was
/// asked), and stores it in the lookaside directory `dir`. Returns the file written.
///
/// Errors: [`SimpleError::Gpg`] (no such key, bad passphrase, no gpg),
/// [`SimpleError::SelfCheck`], [`SimpleError::Reference`], [`SimpleError::File`],
/// [`SimpleError::Full`].
pub fn sign_to_lookaside(
    signer: &GpgSigner<'_>,
    dir: &Path,
    identity: &str,
    digest: &str,
) -> Result<PathBuf, SimpleError> {
    let base = format!("file://{}", dir.display());
    // Checked before gpg runs: a bad identity must not cost a signature.
    lookaside_location(&base, identity, digest, 1).map_err(SimpleError::Reference)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let payload = payload(identity, digest, now);
    let blob = signer.sign(&payload)?;

    let keyring = Keyring::from_bytes(&signer.export()?).map_err(SimpleError::SelfCheck)?;
    let verified =
        verify_message(&blob, &keyring, SystemTime::now()).map_err(SimpleError::SelfCheck)?;
    if verified.payload != payload {
        return Err(SimpleError::SelfCheck(
            "the signed data differs from the payload".into(),
        ));
    }
    let claims =
        parse_payload(&verified.payload, SIMPLE_SIGNING_TYPE).map_err(SimpleError::SelfCheck)?;
    if claims.manifest_digest != digest || claims.docker_reference != identity {
        return Err(SimpleError::SelfCheck(
            "the payload names another image".into(),
        ));
    }

    for n in 1..=MAX_SIGNATURES {
        let url = lookaside_location(&base, identity, digest, n).map_err(SimpleError::Reference)?;
        let path = PathBuf::from(&url["file://".len()..]);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| FileError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        match write_new(&path, &blob, 0o644) {
            Ok(()) => return Ok(path),
            Err(FileError::Exists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SimpleError::Full(dir.display().to_string()))
}
