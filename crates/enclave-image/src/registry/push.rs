//! Writing images, for the tenant's side (encrypting, signing, copying): blobs and
//! manifests pushed to a registry through `oci-client` (distribution-spec push: `POST`
//! an upload, `PATCH` chunks, `PUT ?digest=`; then the manifest `PUT`), or written into
//! an OCI image layout directory (image-spec `image-layout.md`).
//!
//! Nothing half-written is published:
//! - registry: blobs first, the manifest (what makes a tag appear) last; blobs left by a
//!   failed push are unreferenced, and registries collect those;
//! - layout: each blob is written to a temporary file, checked against its digest and
//!   renamed into place; `index.json` is replaced atomically by
//!   [`Destination::put_manifest`]. A [`Destination`] dropped before a manifest was put
//!   removes the blobs it added, and the layout directory itself if it created it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use reqwest::header::HeaderValue;
use sha2::{Digest as _, Sha256};

use super::blob::sha256_digest;
use super::manifest::{Index, OCI_INDEX};
use super::reference::check_digest;
use super::remote::{classify, retry, Remote};
use super::{Descriptor, Error, ImageRef, ImageSource, Puller, RegistryConfig};

/// Bytes of one `PATCH` (and of one read of a blob file).
const CHUNK: usize = 4 << 20;
/// The annotation naming a tag in a layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The tag given to a layout destination named without one (`oci:DIR`).
pub const DEFAULT_LAYOUT_TAG: &str = "latest";

/// Where a blob's bytes are.
#[derive(Clone, Copy, Debug)]
pub enum BlobData<'a> {
    /// In memory (configs, signature payloads).
    Bytes(&'a [u8]),
    /// In a local file (layers), streamed.
    File(&'a Path),
}

/// An image destination: a registry repository or an OCI layout. Get one from
/// [`Puller::destination`].
pub struct Destination {
    inner: Inner,
    shown: String,
}

enum Inner {
    Remote {
        r: ImageRef,
        remote: Remote,
        // Boxed: the variants stay of similar size.
        config: Box<RegistryConfig>,
    },
    Layout(LayoutWriter),
}

impl Puller {
    /// A destination for `target`: `docker://REF` (its tag is where
    /// [`Destination::put_manifest`] puts the image; a digest-pinned reference is
    /// refused, as a written manifest gets a digest of its own) or `oci:DIR[:TAG]` (the
    /// directory is created if missing; tag [`DEFAULT_LAYOUT_TAG`] when none is given).
    ///
    /// Errors: [`Error::Config`] for `oci-archive:` or a digest reference,
    /// [`Error::Layout`] for a directory that is neither empty nor an OCI layout.
    pub fn destination(&self, target: &ImageSource) -> Result<Destination, Error> {
        let inner = match target {
            ImageSource::Registry(r) => {
                if r.digest().is_some() {
                    return Err(Error::Config(format!(
                        "destination {r}: name a tag, not a digest"
                    )));
                }
                Inner::Remote {
                    r: r.clone(),
                    remote: self.remote.clone(),
                    config: Box::new(self.config.clone()),
                }
            }
            ImageSource::OciLayout { dir, tag } => Inner::Layout(LayoutWriter::open(
                dir,
                tag.as_deref().unwrap_or(DEFAULT_LAYOUT_TAG),
            )?),
            ImageSource::OciArchive { path, .. } => {
                return Err(Error::Config(format!(
                    "destination oci-archive:{}: archives are read-only here; write oci:DIR",
                    path.display()
                )))
            }
        };
        Ok(Destination {
            inner,
            shown: target.to_string(),
        })
    }
}

impl Destination {
    /// The destination as given (`docker://…` or `oci:…`).
    pub fn name(&self) -> &str {
        &self.shown
    }

    /// The tag [`Destination::put_manifest`] uses when given none.
    pub fn tag(&self) -> &str {
        match &self.inner {
            Inner::Remote { r, .. } => r.tag().unwrap_or(DEFAULT_LAYOUT_TAG),
            Inner::Layout(l) => &l.tag,
        }
    }

    /// The registry reference, for registry destinations.
    pub fn reference(&self) -> Option<&ImageRef> {
        match &self.inner {
            Inner::Remote { r, .. } => Some(r),
            Inner::Layout(_) => None,
        }
    }

    /// Stores blob `desc` (its `digest` and `size` must describe `data`) unless the
    /// destination has it already.
    ///
    /// Errors: [`Error::Digest`] / [`Error::Size`] when `data` does not match `desc`
    /// (checked before a layout publishes it; a registry checks the digest itself),
    /// [`Error::Status`] / [`Error::Transport`] from the registry after the bounded
    /// retries, [`Error::Io`] for local files.
    pub async fn put_blob(&mut self, desc: &Descriptor, data: BlobData<'_>) -> Result<(), Error> {
        check_digest(&desc.digest).map_err(|reason| Error::Manifest {
            what: self.shown.clone(),
            reason,
        })?;
        match &mut self.inner {
            Inner::Layout(l) => l.put_blob(desc, data),
            Inner::Remote { r, remote, config } => {
                put_remote_blob(remote, r, config, desc, data).await
            }
        }
    }

    /// Stores a manifest (`bytes` exactly as given, content type `media_type`) under
    /// `tag`, or the destination's own tag when `None`; its blobs must be stored first.
    /// In a layout this replaces `index.json` atomically, the entry of the same tag
    /// replaced. Returns the manifest digest (`sha256:…`).
    pub async fn put_manifest(
        &mut self,
        bytes: &[u8],
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<String, Error> {
        let digest = sha256_digest(bytes);
        let tag = tag.unwrap_or(self.tag()).to_string();
        match &mut self.inner {
            Inner::Layout(l) => l.put_manifest(bytes, media_type, &digest, &tag)?,
            Inner::Remote { r, remote, config } => {
                let target = r.with_tag(&tag)?;
                let oci_ref = target.to_oci();
                let location = target.name();
                let what = format!("manifest {tag}");
                let content_type = HeaderValue::from_str(media_type).map_err(|_| {
                    Error::Config(format!(
                        "manifest media type {media_type:?} is not a header value"
                    ))
                })?;
                remote
                    .client
                    .store_auth_if_needed(oci_ref.resolve_registry(), &remote.auth)
                    .await;
                retry(config, &location, &what, || async {
                    remote
                        .client
                        .push_manifest_raw(&oci_ref, bytes.to_vec(), content_type.clone())
                        .await
                        .map_err(|e| classify(e, &location, &what, target.registry(), config))
                })
                .await?;
            }
        }
        Ok(digest)
    }
}

async fn put_remote_blob(
    remote: &Remote,
    r: &ImageRef,
    config: &RegistryConfig,
    desc: &Descriptor,
    data: BlobData<'_>,
) -> Result<(), Error> {
    let oci_ref = r.to_oci();
    let location = r.name();
    let what = format!("blob {}", desc.digest);
    let client = &remote.client;
    client
        .store_auth_if_needed(oci_ref.resolve_registry(), &remote.auth)
        .await;
    let exists = retry(config, &location, &what, || async {
        client
            .blob_exists(&oci_ref, &desc.digest)
            .await
            .map_err(|e| classify(e, &location, &what, r.registry(), config))
    })
    .await?;
    if exists {
        tracing::debug!(%location, digest = %desc.digest, "blob already there");
        return Ok(());
    }
    retry(config, &location, &what, || async {
        let stream = match data {
            BlobData::Bytes(b) => {
                if b.len() as u64 != desc.size {
                    return Err(Error::Size {
                        location: location.clone(),
                        digest: desc.digest.clone(),
                        reason: format!("{} bytes, the descriptor says {}", b.len(), desc.size),
                    }
                    .into());
                }
                let b = Bytes::copy_from_slice(b);
                futures_util::stream::iter([Ok::<_, OciDistributionError>(b)]).boxed_stream()
            }
            BlobData::File(path) => {
                let file = File::open(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                file_stream(file)
            }
        };
        client
            .push_blob_stream(&oci_ref, stream, &desc.digest, Some(desc.size))
            .await
            .map_err(|e| classify(e, &location, &what, r.registry(), config))
    })
    .await?;
    Ok(())
}

type BlobStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = oci_client::errors::Result<Bytes>> + Send>>;

trait BoxedStream {
    fn boxed_stream(self) -> BlobStream;
}

impl<S> BoxedStream for S
where
    S: futures_util::Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static,
{
    fn boxed_stream(self) -> BlobStream {
        Box::pin(self)
    }
}

/// A file read in [`CHUNK`]s; a read error ends the stream with that error.
fn file_stream(file: File) -> BlobStream {
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        // Local file reads are short and fast: done inline on the runtime's thread.
        while filled < CHUNK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(Bytes::from(buf)), Some(file)))
    })
    .boxed_stream()
}

/// Writes into an OCI layout; see the module docs for what a failure leaves.
struct LayoutWriter {
    dir: PathBuf,
    tag: String,
    /// The directory did not exist and is removed on failure.
    created: bool,
    /// The directory was empty and made a layout here: its layout files are removed on
    /// failure, the directory itself kept.
    initialized: bool,
    /// Blob files this writer added, removed on failure.
    added: Vec<PathBuf>,
    committed: bool,
}

impl LayoutWriter {
    fn open(dir: &Path, tag: &str) -> Result<LayoutWriter, Error> {
        let bad = |reason: String| Error::Layout {
            path: dir.display().to_string(),
            reason,
        };
        if tag.is_empty() || tag.contains('/') {
            return Err(bad(format!("invalid tag {tag:?}")));
        }
        let (created, initialized) = match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
                (true, true)
            }
            Err(e) => return Err(bad(e.to_string())),
            Ok(mut entries) => {
                if dir.join("oci-layout").exists() {
                    (false, false)
                } else if entries.next().is_none() {
                    (false, true)
                } else {
                    return Err(bad(
                        "not an OCI layout (no oci-layout file) and not empty".into()
                    ));
                }
            }
        };
        let w = LayoutWriter {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            created,
            initialized,
            added: Vec::new(),
            committed: false,
        };
        if initialized {
            fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| bad(e.to_string()))?;
            w.write_atomic("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(w)
    }

    fn io_error(&self, path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Writes `name` (relative to the layout) through a temporary file and a rename.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(&self.dir))
            .map_err(|e| self.io_error(&path, e))?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| self.io_error(&path, e))?;
        set_mode(tmp.path(), 0o644).map_err(|e| self.io_error(&path, e))?;
        tmp.persist(&path)
            .map_err(|e| self.io_error(&path, e.error))?;
        Ok(())
    }

    fn put_blob(&mut self, desc: &Descriptor, data: BlobData<'_>) -> Result<(), Error> {
        let Some(hex) = desc.digest.strip_prefix("sha256:") else {
            return Err(Error::Layout {
                path: self.dir.display().to_string(),
                reason: format!("blob {}: only sha256 blobs are written", desc.digest),
            });
        };
        let dir = self.dir.join("blobs/sha256");
        let path = dir.join(hex);
        if fs::metadata(&path).is_ok_and(|m| m.len() == desc.size) {
            return Ok(());
        }
        fs::create_dir_all(&dir).map_err(|e| self.io_error(&dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| self.io_error(&dir, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut copy = |r: &mut dyn Read, tmp: &mut File| -> io::Result<()> {
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hasher.update(&buf[..n]);
                size += n as u64;
                tmp.write_all(&buf[..n])?;
            }
        };
        let copied = match data {
            BlobData::Bytes(b) => copy(&mut &b[..], tmp.as_file_mut()),
            BlobData::File(p) => {
                let mut f = File::open(p).map_err(|e| self.io_error(p, e))?;
                copy(&mut f, tmp.as_file_mut())
            }
        };
        copied
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| self.io_error(&path, e))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        let shown = self.dir.display().to_string();
        if size != desc.size {
            return Err(Error::Size {
                location: shown,
                digest: desc.digest.clone(),
                reason: format!("{size} bytes, the descriptor says {}", desc.size),
            });
        }
        if actual != desc.digest {
            return Err(Error::Digest {
                location: shown,
                digest: desc.digest.clone(),
                actual,
            });
        }
        set_mode(tmp.path(), 0o644).map_err(|e| self.io_error(&path, e))?;
        tmp.persist(&path)
            .map_err(|e| self.io_error(&path, e.error))?;
        self.added.push(path);
        Ok(())
    }

    fn put_manifest(
        &mut self,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
        tag: &str,
    ) -> Result<(), Error> {
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
            urls: None,
            annotations: Some(BTreeMap::from([(REF_NAME.to_string(), tag.to_string())])),
            platform: None,
            artifact_type: None,
        };
        self.put_blob(&desc, BlobData::Bytes(bytes))?;
        let index_path = self.dir.join("index.json");
        let mut index = match fs::read(&index_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_string()),
                manifests: Vec::new(),
                annotations: None,
            },
            Err(e) => return Err(self.io_error(&index_path, e)),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Layout {
                path: self.dir.display().to_string(),
                reason: format!("index.json: {e}"),
            })?,
        };
        index.manifests.retain(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_none_or(|t| t != tag)
        });
        index.manifests.push(desc);
        let json = serde_json::to_vec(&index).expect("an index serialises");
        self.write_atomic("index.json", &json)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.created {
            let _ = fs::remove_dir_all(&self.dir);
        } else if self.initialized {
            let _ = fs::remove_dir_all(self.dir.join("blobs"));
            let _ = fs::remove_file(self.dir.join("oci-layout"));
        } else {
            for p in &self.added {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
