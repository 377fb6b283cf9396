//! Signature policy: `containers-policy.json`, simple signing (GPG) and cosign key-based
//! signatures, evaluated against a manifest digest before any layer is downloaded.
//!
//! Pure verification over bytes, synchronous, no network: the registry module fetches
//! signatures (lookaside `signature-N` blobs, the `sha256-<hex>.sig` cosign manifest and
//! its layers); this module decides. Formats and messages follow containers/image
//! (`docs/containers-policy.json.5.md`, `docs/containers-signature.5.md`,
//! `signature/policy_*.go`) and cosign's `specs/SIGNATURE_SPEC.md`; see
//! `shared/reference/images.md` §3.
//!
//! ```no_run
//! use enclave_image::policy::{Keys, Policy, Signatures};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (policy_bytes, gpg_keyring, manifest_digest) = (b"{}".to_vec(), vec![], "sha256:…");
//! let policy = Policy::from_bytes(&policy_bytes)?; // e.g. a KBS resource
//! let mut keys = Keys::local_files();
//! for id in policy.key_paths() {
//!     if id.starts_with("kbs://") {
//!         keys.insert(&id, gpg_keyring.clone()); // fetched from the KBS by the caller
//!     }
//! }
//! let sigs = Signatures { simple: &[], cosign: &[] };
//! let verdict = policy.evaluate("registry.example/app:v1", manifest_digest, &sigs, &keys)?;
//! assert!(verdict.is_signed());
//! # Ok(()) }
//! ```

mod config;
mod cosign;
mod json;
mod lookaside;
mod payload;
mod reference;
mod simple;

use std::collections::HashMap;
use std::time::SystemTime;

pub use config::Policy;
use config::{IdentityMatch, KeySource, Requirement};
use cosign::{
    parse_public_key as parse_cosign_public_key, verify_signature as verify_cosign_signature,
};
pub use cosign::{
    signature_layers as cosign_signature_layers, signature_tag as cosign_signature_tag,
    CosignLayer, CosignSignature, COSIGN_LAYER_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION,
};
pub use lookaside::{lookaside_location, read_file_lookaside, MAX_LOOKASIDE_SIGNATURES};
pub use payload::{parse_payload, Payload, COSIGN_TYPE, SIMPLE_SIGNING_TYPE};
use reference::DockerRef;
pub use simple::{verify_message, Keyring, VerifiedMessage};

/// Largest signature, payload, key or signature manifest accepted, in bytes (4 MiB,
/// containers/image's `iolimits` for signatures and manifests).
pub const MAX_SIGNATURE_BYTES: usize = 4 << 20;

/// Why a policy could not be loaded or an image was not accepted. Each is one line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy document is malformed; the text is containers/image's where it has one
    /// (`Unknown key "foo"`, `List of verification policy requirements must not be empty`).
    #[error("invalid signature policy: {0}")]
    InvalidPolicy(String),
    /// The policy file could not be read.
    #[error("reading signature policy {path}: {reason}")]
    Read { path: String, reason: String },
    /// The image reference does not parse as a docker reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A requirement did not hold. `reason` starts with containers/image's words
    /// ("A signature was required, but no signature exists", "Signature for identity …
    /// is not accepted", "Invalid GPG signature…", "Running image … is rejected by policy.").
    #[error("{reason} (image {image}: {requirement} requirement {index} of scope {scope})")]
    Rejected {
        image: String,
        /// The requirement's `type`.
        requirement: &'static str,
        /// 1-based position in the scope's requirement list.
        index: usize,
        /// The scope the image matched, e.g. `docker:example.com/ns` or `default`.
        scope: String,
        reason: String,
    },
}

/// Signatures the caller fetched for one manifest digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signatures<'a> {
    /// Simple-signing blobs (lookaside `signature-1`, `signature-2`, … contents).
    pub simple: &'a [Vec<u8>],
    /// Cosign signatures from the `sha256-<hex>.sig` manifest's layers.
    pub cosign: &'a [CosignSignature],
}

/// Maps a requirement's `keyPath` to key bytes. Implement it to serve `kbs:///…` ids
/// from KBS resources; [`Keys`] is a ready one.
pub trait KeyResolver {
    /// The bytes of the key file or resource named `key_path`, or a one-line reason.
    fn resolve(&self, key_path: &str) -> Result<Vec<u8>, String>;
}

/// A [`KeyResolver`] over bytes the caller fetched (typically KBS resources, keyed by
/// their `kbs:///repo/type/tag` id) and, if allowed, local files.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    fetched: HashMap<String, Vec<u8>>,
    local_files: bool,
}

impl Keys {
    /// Fetched bytes only: a path not inserted is an error (inside an enclave, the host's
    /// files are not trusted).
    pub fn fetched_only() -> Keys {
        Keys::default()
    }

    /// Fetched bytes first, then local files for other paths.
    pub fn local_files() -> Keys {
        Keys {
            fetched: HashMap::new(),
            local_files: true,
        }
    }

    /// Serves `bytes` for `key_path` (e.g. `kbs:///default/keys/cosign`).
    pub fn insert(&mut self, key_path: &str, bytes: Vec<u8>) {
        self.fetched.insert(key_path.to_string(), bytes);
    }
}

impl KeyResolver for Keys {
    fn resolve(&self, key_path: &str) -> Result<Vec<u8>, String> {
        if let Some(b) = self.fetched.get(key_path) {
            return Ok(b.clone());
        }
        if key_path.starts_with("kbs://") {
            return Err(format!("key {key_path} was not fetched from the KBS"));
        }
        if !self.local_files {
            return Err(format!(
                "key {key_path} was not provided (local key files are not allowed)"
            ));
        }
        let b = std::fs::read(key_path).map_err(|e| format!("reading key {key_path}: {e}"))?;
        if b.len() > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "key {key_path} is larger than {MAX_SIGNATURE_BYTES} bytes"
            ));
        }
        Ok(b)
    }
}

/// An accepted image: the scope that applied and the signatures that were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `docker:<scope>`, `docker:""` or `default`.
    pub scope: String,
    /// One entry per signature requirement, in policy order. Empty when only
    /// `insecureAcceptAnything` applied, which never counts as a verified signature.
    pub verified: Vec<VerifiedSignature>,
}

impl Verdict {
    /// At least one signature requirement held.
    pub fn is_signed(&self) -> bool {
        !self.verified.is_empty()
    }
}

/// A signature that satisfied a requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// `signedBy` or `sigstoreSigned`.
    pub requirement: &'static str,
    /// GPG: the signing key's fingerprint (upper-case hex); cosign: `key #N` (1-based,
    /// in the requirement's key order).
    pub signer: String,
    /// The signed `docker-reference`.
    pub docker_reference: String,
}

impl Policy {
    /// Parses a policy document (a file's bytes or a KBS resource).
    ///
    /// # Errors
    /// [`PolicyError::InvalidPolicy`] with containers/image's message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_SIGNATURE_BYTES {
            return Err(PolicyError::InvalidPolicy(format!(
                "larger than {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
        Policy::parse(bytes).map_err(PolicyError::InvalidPolicy)
    }

    /// Reads and parses a policy file.
    ///
    /// # Errors
    /// [`PolicyError::Read`] or [`PolicyError::InvalidPolicy`].
    pub fn from_file(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Policy::from_bytes(&bytes)
    }

    /// Every `keyPath`/`keyPaths` entry of every requirement, deduplicated, so the caller
    /// can fetch the `kbs:///…` ones before [`Policy::evaluate`].
    pub fn key_paths(&self) -> Vec<String> {
        let all = self
            .default
            .iter()
            .chain(self.transports.values().flat_map(|s| s.values().flatten()));
        paths_of(all)
    }

    /// The `keyPath`/`keyPaths` entries of the scope that applies to `image` only (see
    /// [`Policy::scope_for`]), deduplicated: what [`Policy::evaluate`] of `image` reads.
    /// Other scopes' keys are not needed, and may be local files of another machine.
    ///
    /// # Errors
    /// [`PolicyError::InvalidReference`].
    pub fn key_paths_for(&self, image: &str) -> Result<Vec<String>, PolicyError> {
        let r = parse_image(image)?;
        Ok(paths_of(self.lookup(&r).1.iter()))
    }

    /// The scope that applies to a `docker` transport image: the most specific of the
    /// full reference, repository, parent namespaces, `*.domain` wildcards, then the
    /// transport's `""`, then `default` (never merged).
    ///
    /// # Errors
    /// [`PolicyError::InvalidReference`].
    pub fn scope_for(&self, image: &str) -> Result<String, PolicyError> {
        let r = parse_image(image)?;
        Ok(self.lookup(&r).0)
    }

    fn lookup(&self, r: &DockerRef) -> (String, &[Requirement]) {
        if let Some(scopes) = self.transports.get("docker") {
            for s in r.scopes() {
                if let Some(reqs) = scopes.get(&s) {
                    return (format!("docker:{s}"), reqs);
                }
            }
            if let Some(reqs) = scopes.get("") {
                return ("docker:\"\"".into(), reqs);
            }
        }
        ("default".into(), &self.default)
    }

    /// Decides whether the `docker` transport image `image` (as pulled: tag or digest)
    /// whose manifest has digest `manifest_digest` may run, given the signatures fetched
    /// for that digest. Every requirement of the applicable scope must hold (AND); a
    /// signature requirement holds when at least one signature passes the cryptographic
    /// check, the manifest digest and the `signedIdentity`.
    ///
    /// The caller must have checked that the manifest bytes hash to `manifest_digest`.
    ///
    /// # Errors
    /// [`PolicyError::Rejected`] naming the image, scope and requirement, or
    /// [`PolicyError::InvalidReference`].
    pub fn evaluate(
        &self,
        image: &str,
        manifest_digest: &str,
        sigs: &Signatures<'_>,
        keys: &dyn KeyResolver,
    ) -> Result<Verdict, PolicyError> {
        self.evaluate_at(image, manifest_digest, sigs, keys, SystemTime::now())
    }

    /// [`Policy::evaluate`] for a manifest chosen from an image index whose digest is
    /// `index_digest` (`None`: not from an index). A `sigstoreSigned` requirement also
    /// accepts a cosign signature over the index digest, as image-rs does (cosign signs
    /// the digest a tag resolves to, the index's; confidential-containers/
    /// guest-components:image-rs/src/signature/policy/cosign/mod.rs falls back to
    /// `manifest_list_digest`). `signedBy` stays with the platform manifest's digest, as
    /// in image-rs (`policy/simple/mod.rs`) and containers/image, which checks the
    /// instance it copies (`copy/single.go`). `sigs.cosign` holds the signatures of both
    /// digests.
    ///
    /// # Errors
    /// As [`Policy::evaluate`].
    pub fn evaluate_in_index(
        &self,
        image: &str,
        manifest_digest: &str,
        index_digest: Option<&str>,
        sigs: &Signatures<'_>,
        keys: &dyn KeyResolver,
    ) -> Result<Verdict, PolicyError> {
        self.evaluate_digests(
            image,
            manifest_digest,
            index_digest,
            sigs,
            keys,
            SystemTime::now(),
        )
    }

    /// [`Policy::evaluate`] at a given time (for signature and key expiry).
    ///
    /// # Errors
    /// As [`Policy::evaluate`].
    pub fn evaluate_at(
        &self,
        image: &str,
        manifest_digest: &str,
        sigs: &Signatures<'_>,
        keys: &dyn KeyResolver,
        now: SystemTime,
    ) -> Result<Verdict, PolicyError> {
        self.evaluate_digests(image, manifest_digest, None, sigs, keys, now)
    }

    fn evaluate_digests(
        &self,
        image: &str,
        manifest_digest: &str,
        index_digest: Option<&str>,
        sigs: &Signatures<'_>,
        keys: &dyn KeyResolver,
        now: SystemTime,
    ) -> Result<Verdict, PolicyError> {
        let r = parse_image(image)?;
        let platform_only = [manifest_digest];
        let cosign_digests: Vec<&str> = std::iter::once(manifest_digest)
            .chain(index_digest)
            .collect();
        let (scope, reqs) = self.lookup(&r);
        let mut verified = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            let reject = |reason: String| PolicyError::Rejected {
                image: r.to_string(),
                requirement: req.type_name(),
                index: i + 1,
                scope: scope.clone(),
                reason,
            };
            match req {
                Requirement::InsecureAcceptAnything => {}
                Requirement::Reject => {
                    return Err(reject(format!(
                        "Running image docker://{r} is rejected by policy."
                    )));
                }
                Requirement::SignedBy {
                    keys: src,
                    identity,
                } => {
                    let ring = load_keyring(src, keys).map_err(reject)?;
                    let attempts = sigs.simple.iter().map(|blob| {
                        let m = verify_message(blob, &ring, now)?;
                        let p = parse_payload(&m.payload, SIMPLE_SIGNING_TYPE)?;
                        check_claims(&p, &platform_only, identity, &r)?;
                        Ok(VerifiedSignature {
                            requirement: "signedBy",
                            signer: m.signer,
                            docker_reference: p.docker_reference,
                        })
                    });
                    verified.push(first_accepted(attempts).map_err(reject)?);
                }
                Requirement::SigstoreSigned {
                    keys: src,
                    identity,
                } => {
                    let pks = load_cosign_keys(src, keys).map_err(reject)?;
                    let attempts = sigs.cosign.iter().map(|s| {
                        let k = verify_cosign_signature(s, &pks)?;
                        let p = parse_payload(&s.payload, COSIGN_TYPE)?;
                        check_claims(&p, &cosign_digests, identity, &r)?;
                        Ok(VerifiedSignature {
                            requirement: "sigstoreSigned",
                            signer: format!("key #{}", k + 1),
                            docker_reference: p.docker_reference,
                        })
                    });
                    verified.push(first_accepted(attempts).map_err(reject)?);
                }
            }
        }
        tracing::debug!(image = %r, %scope, signatures = verified.len(), "signature policy accepted the image");
        Ok(Verdict { scope, verified })
    }
}

fn parse_image(image: &str) -> Result<DockerRef, PolicyError> {
    DockerRef::parse_image(image).map_err(|reason| PolicyError::InvalidReference {
        reference: image.to_string(),
        reason,
    })
}

/// containers/image's summary: no signature, the one rejection, or all of them.
fn first_accepted(
    attempts: impl Iterator<Item = Result<VerifiedSignature, String>>,
) -> Result<VerifiedSignature, String> {
    let mut rejections = Vec::new();
    for a in attempts {
        match a {
            Ok(v) => return Ok(v),
            Err(e) => rejections.push(e),
        }
    }
    Err(match rejections.len() {
        0 => "A signature was required, but no signature exists".to_string(),
        1 => rejections.remove(0),
        _ => format!(
            "None of the signatures were accepted, reasons: {}",
            rejections.join("; ")
        ),
    })
}

/// The payload's digest (one of `digests`: the manifest's, then the index's) and
/// identity against the pulled image.
fn check_claims(
    p: &Payload,
    digests: &[&str],
    identity: &IdentityMatch,
    image: &DockerRef,
) -> Result<(), String> {
    if !digests.contains(&p.manifest_digest.as_str()) {
        let mut pulled = format!("manifest {}", digests[0]);
        if let Some(index) = digests.get(1) {
            pulled.push_str(&format!(", index {index}"));
        }
        return Err(format!(
            "Signature for docker digest {:?} does not match ({pulled})",
            p.manifest_digest
        ));
    }
    if !identity_accepts(identity, image, &p.docker_reference) {
        return Err(format!(
            "Signature for identity {} is not accepted",
            p.docker_reference
        ));
    }
    Ok(())
}

/// The deduplicated `keyPath`/`keyPaths` entries of `reqs`, in order.
fn paths_of<'a>(reqs: impl Iterator<Item = &'a Requirement>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in reqs {
        if let Requirement::SignedBy {
            keys: KeySource::Paths(p),
            ..
        }
        | Requirement::SigstoreSigned {
            keys: KeySource::Paths(p),
            ..
        } = r
        {
            for p in p {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
    }
    out
}

/// containers/image:signature/policy_reference_match.go semantics.
fn identity_accepts(identity: &IdentityMatch, image: &DockerRef, signed: &str) -> bool {
    let Ok(sig) = DockerRef::parse_normalized(signed) else {
        return false;
    };
    let exact = |a: &DockerRef, b: &DockerRef| {
        !a.is_name_only() && !b.is_name_only() && a.to_string() == b.to_string()
    };
    let repo_digest_or_exact = |img: &DockerRef| {
        // A signature naming a repository alone matches no image under this rule
        // (`prmMatchRepoDigestOrExact` refuses `IsNameOnly` first): only
        // `matchRepository`/`exactRepository` accept it.
        if sig.is_name_only() {
            false
        } else if img.digest.is_some() && img.tag.is_none() {
            sig.name() == img.name()
        } else {
            exact(img, &sig)
        }
    };
    match identity {
        IdentityMatch::MatchExact => exact(image, &sig),
        IdentityMatch::MatchRepoDigestOrExact => repo_digest_or_exact(image),
        IdentityMatch::MatchRepository => sig.name() == image.name(),
        IdentityMatch::ExactReference(r) => exact(r, &sig),
        IdentityMatch::ExactRepository(r) => sig.name() == r.name(),
        IdentityMatch::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let s = image.to_string();
            // The prefix must end at a component boundary.
            let remapped = match s.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.starts_with(['/', ':', '@']) => {
                    DockerRef::parse_normalized(&format!("{signed_prefix}{rest}")).ok()
                }
                _ => Some(image.clone()),
            };
            remapped.is_some_and(|img| repo_digest_or_exact(&img))
        }
    }
}

fn key_bytes(src: &KeySource, keys: &dyn KeyResolver) -> Result<Vec<Vec<u8>>, String> {
    match src {
        KeySource::Data(d) => Ok(d.clone()),
        KeySource::Paths(ps) => ps.iter().map(|p| keys.resolve(p)).collect(),
    }
}

fn load_keyring(src: &KeySource, keys: &dyn KeyResolver) -> Result<Keyring, String> {
    let mut ring = Keyring::default();
    for b in key_bytes(src, keys)? {
        ring.extend(Keyring::from_bytes(&b)?);
    }
    Ok(ring)
}

fn load_cosign_keys(
    src: &KeySource,
    keys: &dyn KeyResolver,
) -> Result<Vec<p256::ecdsa::VerifyingKey>, String> {
    key_bytes(src, keys)?
        .iter()
        .map(|b| parse_cosign_public_key(b))
        .collect()
}
