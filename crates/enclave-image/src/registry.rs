//! Where images come from: references, OCI distribution pull (through `oci-client`), and
//! OCI image layouts (a directory, or an `oci-archive` tar of one) as a source with the
//! same API. Where they go, on the tenant's side: [`Destination`] (registry push or an
//! OCI layout). Every byte handed out is checked against a digest first (images.md §5).
//!
//! Flow, as the in-enclave program uses it:
//! ```no_run
//! # async fn f() -> Result<(), enclave_image::registry::Error> {
//! use enclave_image::registry::{ImageSource, Puller, RegistryConfig};
//! let puller = Puller::new(RegistryConfig::default())?;
//! let image = puller.open(&"127.0.0.1:5000/test/app:v1".parse()?).await?;
//! // image.manifest_digest is what signatures are checked against (policy module),
//! // before any layer is fetched:
//! let sigs = image.cosign_signatures(&image.manifest_digest).await?;
//! let config = image.config().await?;
//! for layer in &image.manifest.layers {
//!     image.fetch_blob_to_path(layer, "/run/staging/layer".as_ref()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are one line and name the registry and repository (or the layout path), the
//! object (manifest, blob digest) and the HTTP status or the check that failed.
//! Credentials never appear in errors or logs.

mod auth;
mod blob;
mod layout;
mod manifest;
mod push;
mod reference;
mod remote;
mod signatures;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use auth::credentials_from_auth_file;
pub use manifest::{
    check_content_type, content_media_type, parse_manifest, select_platform, Descriptor, Index,
    Manifest, ManifestKind, Platform, ACCEPTED_MANIFEST_TYPES, DOCKER_LIST, DOCKER_MANIFEST,
    OCI_INDEX, OCI_MANIFEST,
};
pub use push::{BlobData, Destination, DEFAULT_LAYOUT_TAG};
pub use reference::{ImageRef, DOCKER_HUB};
pub use signatures::{CosignSignature, COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIMPLESIGNING};

/// Manifest, config and signature size limit: 4 MiB as containers/image
/// (`internal/iolimits`; images.md §3.3 "Limits").
pub const MAX_METADATA_SIZE: u64 = 4 << 20;

/// Errors of this module; each displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference string does not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    Reference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Bad configuration (CA file, platform, source string).
    #[error("registry configuration: {0}")]
    Config(String),
    /// The registry answered with an error status.
    #[error("{location}: {what}: HTTP {status}{detail}")]
    Status {
        /// `registry/repository`.
        location: String,
        /// e.g. `manifest v1`, `blob sha256:…`.
        what: String,
        /// HTTP status code.
        status: u16,
        /// `: <registry error code and message>`, or empty.
        detail: String,
    },
    /// Connection or protocol failure (after the bounded retries, if retryable).
    #[error("{location}: {what}: {reason}")]
    Transport {
        /// `registry/repository` or lookaside URL.
        location: String,
        /// What was being fetched.
        what: String,
        /// The failure, with the attempt count when retried.
        reason: String,
    },
    /// A manifest or index that does not parse or is inconsistent.
    #[error("manifest {what}: {reason}")]
    Manifest {
        /// The manifest (reference or digest).
        what: String,
        /// The problem.
        reason: String,
    },
    /// The index has no manifest for the wanted platform.
    #[error("no manifest for {platform} in the index (found: {found})")]
    NoPlatform {
        /// The wanted `os/arch[/variant]`.
        platform: String,
        /// The platforms the index lists.
        found: String,
    },
    /// The image's config declares another platform than the wanted one (a single
    /// manifest for another machine, or an index entry whose config disagrees with it).
    #[error("{location}: the image's platform ({found}, config {digest}) does not match the wanted platform ({wanted})")]
    WrongPlatform {
        /// Source.
        location: String,
        /// The config blob's digest.
        digest: String,
        /// `os/arch[/variant]` from the config.
        found: String,
        /// The configured platform.
        wanted: String,
    },
    /// Content does not hash to its descriptor's digest.
    #[error("{location}: blob {digest}: digest mismatch (content hashes to {actual})")]
    Digest {
        /// Source.
        location: String,
        /// The expected digest.
        digest: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Content length differs from the descriptor's `size`.
    #[error("{location}: blob {digest}: {reason}")]
    Size {
        /// Source.
        location: String,
        /// The blob's digest.
        digest: String,
        /// e.g. `got more than the descriptor's 123 bytes`.
        reason: String,
    },
    /// A blob over the configured limit (refused before downloading it).
    #[error("{location}: blob {digest}: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Source.
        location: String,
        /// The blob's digest.
        digest: String,
        /// Announced size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// An OCI layout or archive that is malformed.
    #[error("OCI layout {path}: {reason}")]
    Layout {
        /// The directory or archive.
        path: String,
        /// The problem.
        reason: String,
    },
    /// Local I/O (writing a blob to its destination).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Registry credentials. `Debug` never shows secrets.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials; bearer tokens are still requested anonymously when challenged.
    #[default]
    Anonymous,
    /// HTTP Basic, or sent to the token realm in the bearer flow (distribution's token spec).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A ready bearer token (sent as is).
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Retries for connection errors, 5xx and 429 answers (never 401/403/404 or digest errors).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts, at least 1.
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP. Empty by default: HTTPS only.
    pub insecure_http: Vec<String>,
    /// Extra trusted CA certificates (PEM, one or more), added to the system roots.
    pub extra_ca_pem: Option<PathBuf>,
    /// Extra trusted CA certificates as PEM bytes (e.g. a KBS resource: inside an
    /// enclave, never a host file), added as `extra_ca_pem`'s are.
    pub extra_ca_pem_bytes: Option<Vec<u8>>,
    /// Credentials for every registry this puller talks to.
    pub credentials: Credentials,
    /// Platform picked from indexes (default: the running machine's).
    pub platform: Platform,
    /// Limit for manifests and config blobs (default 4 MiB).
    pub max_metadata_size: u64,
    /// Limit for one layer blob (default 4 GiB).
    pub max_layer_size: u64,
    /// Bounded retries.
    pub retry: RetryPolicy,
    /// TCP connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Timeout between two reads of a response (default 60 s).
    pub read_timeout: Duration,
    /// What the error tells a user whose registry answers HTTPS in plain HTTP: how to
    /// allow it in the program's own terms (a flag, a setting), `{registry}` standing for
    /// its `host[:port]`. The error also quotes skopeo's (Go's) wording, "server gave
    /// HTTP response to HTTPS client".
    pub plain_http_hint: String,
    /// Whether host names are resolved (the system's resolver, and proxies from the
    /// environment). `false`: only hosts given as IP addresses are reached — the
    /// registry, a token realm, a redirect — and no environment proxy is used, so
    /// glibc's NSS is never asked (inside an enclave whose root is the host's image, it
    /// would load that image's `libnss_*.so`). Default `true`.
    pub resolve_names: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_http: Vec::new(),
            extra_ca_pem: None,
            extra_ca_pem_bytes: None,
            credentials: Credentials::Anonymous,
            platform: Platform::current(),
            max_metadata_size: MAX_METADATA_SIZE,
            max_layer_size: 4 << 30,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            plain_http_hint: "to use {registry} over plain HTTP, add it to `insecure_http`".into(),
            resolve_names: true,
        }
    }
}

/// Where an image is: a registry reference or an OCI layout.
///
/// String forms (as skopeo's transports): `docker://REF` or a bare `REF`;
/// `oci:DIR[:TAG]`; `oci-archive:FILE[:TAG]`. Without a tag, a layout must hold exactly
/// one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// A registry reference.
    Registry(ImageRef),
    /// An OCI image layout directory.
    OciLayout {
        /// The directory holding `oci-layout`, `index.json` and `blobs/`.
        dir: PathBuf,
        /// `org.opencontainers.image.ref.name` to select, if any.
        tag: Option<String>,
    },
    /// A tar of an OCI image layout (skopeo's `oci-archive:`), read in place.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name` to select, if any.
        tag: Option<String>,
    },
}

impl FromStr for ImageSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        fn split(p: &str) -> (PathBuf, Option<String>) {
            match p.rsplit_once(':') {
                Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => {
                    (path.into(), Some(tag.to_string()))
                }
                _ => (p.into(), None),
            }
        }
        if let Some(p) = s.strip_prefix("oci:") {
            let (dir, tag) = split(p);
            Ok(ImageSource::OciLayout { dir, tag })
        } else if let Some(p) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split(p);
            Ok(ImageSource::OciArchive { path, tag })
        } else {
            Ok(ImageSource::Registry(ImageRef::parse(
                s.strip_prefix("docker://").unwrap_or(s),
            )?))
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => write!(f, "docker://{r}"),
            ImageSource::OciLayout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            ImageSource::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
        }
    }
}

/// Whether `insecure` (`insecure_http`'s `host[:port]` entries) has `r`'s registry, so
/// that it would be reached over plain HTTP (Docker Hub under either of its names).
pub fn is_insecure(insecure: &[String], r: &ImageRef) -> bool {
    let registry = r.registry();
    insecure
        .iter()
        .any(|h| h == registry || (registry == DOCKER_HUB && h == "index.docker.io"))
}

/// Opens image sources with one configuration; cheap to share.
pub struct Puller {
    remote: remote::Remote,
    config: RegistryConfig,
}

impl Puller {
    /// Builds the HTTP client (rustls with the ring provider; system roots plus
    /// `extra_ca_pem`). Errors: [`Error::Config`] for an unreadable or invalid CA file.
    pub fn new(config: RegistryConfig) -> Result<Self, Error> {
        Ok(Puller {
            remote: remote::Remote::new(&config)?,
            config,
        })
    }

    /// Resolves `source` to one image manifest: by tag or digest, through an index to
    /// the configured platform. The manifest bytes are checked against the digest the
    /// reference pins, and against the index entry's digest.
    pub async fn open(&self, source: &ImageSource) -> Result<Image, Error> {
        let (backend, resolved) = match source {
            ImageSource::Registry(r) => {
                let resolved = self.remote.resolve(r, &self.config).await?;
                (Backend::Remote(r.clone()), resolved)
            }
            ImageSource::OciLayout { dir, tag } => {
                let l = layout::Layout::open_dir(dir)?;
                let resolved = l.resolve(tag.as_deref(), &self.config)?;
                (Backend::Layout(l), resolved)
            }
            ImageSource::OciArchive { path, tag } => {
                let l = layout::Layout::open_archive(path)?;
                let resolved = l.resolve(tag.as_deref(), &self.config)?;
                (Backend::Layout(l), resolved)
            }
        };
        Ok(Image {
            manifest_bytes: resolved.manifest_bytes,
            manifest_digest: resolved.manifest_digest,
            manifest: resolved.manifest,
            index_digest: resolved.index_digest,
            backend,
            remote: self.remote.clone(),
            config: self.config.clone(),
        })
    }
}

/// A manifest resolved from a source, before any layer is fetched.
pub(crate) struct Resolved {
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub index_digest: Option<String>,
}

enum Backend {
    Remote(ImageRef),
    Layout(layout::Layout),
}

/// One resolved image: its manifest, and access to its blobs and signatures.
pub struct Image {
    /// The manifest's exact bytes (what signatures cover, through its digest).
    pub manifest_bytes: Vec<u8>,
    /// `sha256:<hex>` of `manifest_bytes`.
    pub manifest_digest: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The digest of the index the manifest was chosen from, if any.
    pub index_digest: Option<String>,
    backend: Backend,
    remote: remote::Remote,
    config: RegistryConfig,
}

impl Image {
    /// The registry reference (`None` for layouts).
    pub fn reference(&self) -> Option<&ImageRef> {
        match &self.backend {
            Backend::Remote(r) => Some(r),
            Backend::Layout(_) => None,
        }
    }

    /// The config blob's bytes, digest- and size-checked, at most `max_metadata_size`.
    pub async fn config(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let desc = self.manifest.config.clone();
        self.fetch(&desc, &mut out, self.config.max_metadata_size)
            .await?;
        Ok(out)
    }

    /// Checks that `config` (the bytes [`Image::config`] returned) declares a platform
    /// the configured one accepts: same os and architecture, and the same variant when
    /// both name one (as index entries are chosen). A runtime must not start an image
    /// for another machine; containers/image only logs "Image operating system
    /// mismatch" (`copy/single.go`) and docker warns, but an enclave's program that
    /// cannot run is better refused before any layer is fetched. Returns the platform
    /// found.
    ///
    /// Errors: [`Error::WrongPlatform`] naming both platforms, or [`Error::Manifest`]
    /// for a config without `os`/`architecture`.
    pub fn check_platform(&self, config: &[u8]) -> Result<Platform, Error> {
        let digest = &self.manifest.config.digest;
        let found = Platform::from_config(&format!("config {digest}"), config)?;
        if self.config.platform.accepts(&found) {
            return Ok(found);
        }
        Err(Error::WrongPlatform {
            location: match &self.backend {
                Backend::Remote(r) => r.name(),
                Backend::Layout(l) => l.shown().to_string(),
            },
            digest: digest.clone(),
            found: found.to_string(),
            wanted: self.config.platform.to_string(),
        })
    }

    /// Streams a blob into `out`, hashing it; refuses a blob over `max_layer_size` before
    /// downloading, and stops as soon as more than `desc.size` bytes arrive. On error,
    /// `out` may hold a prefix of unverified bytes: prefer [`Image::fetch_blob_to_path`].
    /// Returns the byte count.
    pub async fn fetch_blob(
        &self,
        desc: &Descriptor,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, Error> {
        self.fetch(desc, out, self.config.max_layer_size).await
    }

    /// As [`Image::fetch_blob`] into a new file at `path` (mode 0600); the file is
    /// removed on any error, so it exists only when its content is verified.
    pub async fn fetch_blob_to_path(&self, desc: &Descriptor, path: &Path) -> Result<u64, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = blob::create_private(path).map_err(io)?;
        let mut w = std::io::BufWriter::new(file);
        let result = self.fetch(desc, &mut w, self.config.max_layer_size).await;
        let result = result.and_then(|n| {
            let f = w.into_inner().map_err(|e| io(e.into_error()))?;
            f.sync_all().map_err(io)?;
            Ok(n)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    async fn fetch(
        &self,
        desc: &Descriptor,
        out: &mut (dyn Write + Send),
        limit: u64,
    ) -> Result<u64, Error> {
        match &self.backend {
            Backend::Remote(r) => {
                self.remote
                    .fetch_blob(r, desc, out, limit, &self.config)
                    .await
            }
            Backend::Layout(l) => l.fetch_blob(desc, out, limit),
        }
    }

    /// Cosign signatures of `digest` (normally `manifest_digest`, or `index_digest`):
    /// the manifest at tag `sha256-<hex>.sig` and each signature layer's payload
    /// (digest-checked, at most 4 MiB each, at most 64 of them) with its annotations. An
    /// absent tag gives an empty list; so does a layout source that has no such tag in
    /// its index. More than 64 layers is [`Error::Manifest`], before any is fetched.
    pub async fn cosign_signatures(&self, digest: &str) -> Result<Vec<CosignSignature>, Error> {
        let tag = signatures::cosign_tag(digest)?;
        let sig_image = match &self.backend {
            Backend::Remote(r) => {
                let sig_ref = r.with_tag(&tag)?;
                match self.remote.resolve(&sig_ref, &self.config).await {
                    Ok(res) => res,
                    Err(Error::Status { status: 404, .. }) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
            Backend::Layout(l) => match l.resolve(Some(&tag), &self.config) {
                Ok(res) => res,
                Err(Error::Layout { reason, .. }) if reason.starts_with("no manifest tagged") => {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(e),
            },
        };
        let layers = &sig_image.manifest.layers;
        if layers.len() > signatures::MAX_COSIGN_SIGNATURES {
            return Err(Error::Manifest {
                what: tag,
                reason: format!(
                    "{} signature layers, more than the {} read",
                    layers.len(),
                    signatures::MAX_COSIGN_SIGNATURES
                ),
            });
        }
        let mut out = Vec::new();
        for layer in layers {
            let mut payload = Vec::new();
            self.fetch(layer, &mut payload, MAX_METADATA_SIZE).await?;
            out.push(CosignSignature {
                media_type: layer.media_type.clone(),
                payload,
                annotations: layer.annotations.clone().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Simple signatures of `digest` from a lookaside store (images.md §3.3):
    /// `<base>/<repository>@sha256=<hex>/signature-N` for N = 1, 2, … until the first
    /// 404 (or missing file for `file://` bases). `base` is `http://`, `https://` or
    /// `file://`; each signature is at most 4 MiB; at most 64 are read.
    /// Only registry sources have a repository path: a layout gives [`Error::Config`].
    pub async fn lookaside_signatures(
        &self,
        base: &str,
        digest: &str,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let Backend::Remote(r) = &self.backend else {
            return Err(Error::Config(
                "lookaside signatures need a registry reference".into(),
            ));
        };
        signatures::lookaside(&self.remote, base, r, digest, &self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // skopeo's transport syntax: `oci:PATH[:TAG]`, `oci-archive:PATH[:TAG]`, `docker://REF`.
    #[test]
    fn source_strings_follow_skopeo_transports() {
        let s: ImageSource = "oci:/tmp/l:v1".parse().unwrap();
        assert_eq!(
            s,
            ImageSource::OciLayout {
                dir: "/tmp/l".into(),
                tag: Some("v1".into())
            }
        );
        let s: ImageSource = "oci-archive:/tmp/a.tar".parse().unwrap();
        assert_eq!(
            s,
            ImageSource::OciArchive {
                path: "/tmp/a.tar".into(),
                tag: None
            }
        );
        let s: ImageSource = "docker://busybox".parse().unwrap();
        assert_eq!(s.to_string(), "docker://docker.io/library/busybox:latest");
        assert_eq!("busybox".parse::<ImageSource>().unwrap(), s);
        assert!("docker://Bad".parse::<ImageSource>().is_err());
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let c = Credentials::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("tok3n".into())).contains("tok3n"));
    }
}
