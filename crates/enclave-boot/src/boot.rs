//! The pull: resolve the manifest, attest with its digest in the evidence, fetch policy
//! and keys, verify signatures, then per layer
//! download (digest-checked), decrypt (HMAC-checked), decompress, check the diff_id and
//! unpack into the root. Nothing reaches the root before its checks passed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use enclave_image::ocicrypt::{self, Keys as LayerKeys, LayerAnnotations};
use enclave_image::policy::{Keys as PolicyKeys, Policy, Signatures};
use enclave_image::registry::{self, Credentials, ImageSource, Puller, RegistryConfig};
use enclave_image::unpack::{self, UnpackOptions};
use oci_spec::image::ImageConfiguration;

use crate::handover::{self, Launch};

/// What rune passes (see `rune_core::image`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The image reference (or `oci:`/`oci-archive:` source, for tests and offline use).
    pub image: String,
    pub kbs: Option<String>,
    pub kbs_ca: Option<PathBuf>,
    /// `kbs:///…` of the containers-policy.json.
    pub policy: Option<String>,
    /// `kbs:///…` resources holding JWE recipients' private keys (PEM or DER).
    pub decryption_keys: Vec<String>,
    /// `kbs:///…` of the registry's credentials (a containers-auth.json).
    pub registry_auth: Option<String>,
    /// `kbs:///…` of PEM CA certificates for an HTTPS registry.
    pub registry_ca: Option<String>,
    pub insecure: Vec<String>,
    /// Base URL of a simple-signing lookaside store (`http(s)://…`).
    pub lookaside: Option<String>,
    /// The largest layer pulled, in bytes (the library's default, 4 GiB, when `None`).
    pub max_layer_size: Option<u64>,
    /// The root to unpack into (`/` in the container).
    pub root: PathBuf,
    /// The container's command (after `--`).
    pub args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("KBS: {0}")]
    Kbs(String),
    #[error("{0}")]
    Registry(#[from] enclave_image::registry::Error),
    #[error("signature policy: {0}")]
    Policy(#[from] enclave_image::policy::PolicyError),
    /// A key, policy or layer that failed its check (the text names it).
    #[error("{0}")]
    Check(String),
    #[error("image config {digest}: {reason}")]
    Config { digest: String, reason: String },
    #[error("{0}")]
    Handover(#[from] handover::HandoverError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Progress lines on the container's stderr, as `docker pull` users expect them.
pub struct Progress<W: Write> {
    out: W,
}

impl<W: Write> Progress<W> {
    pub fn new(out: W) -> Self {
        Progress { out }
    }
    /// One line in one write: stderr is unbuffered, and `writeln!` would write it in
    /// pieces that another writer of the same pipe (the PAL, rune) could split.
    pub fn line(&mut self, msg: impl std::fmt::Display) {
        let _ = self
            .out
            .write_all(format!("enclave-boot: {msg}\n").as_bytes());
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// `1 layer`, `2 layers`, `0 files`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Pulls the image into `opts.root` and returns what to run. On error the root may hold
/// fully verified layers only (each is published after its checks), and the staging
/// directory is removed.
pub async fn prepare<W: Write>(
    opts: &Options,
    progress: &mut Progress<W>,
) -> Result<(Launch, String), BootError> {
    let started = Instant::now();
    // Everything here is the host's configuration: check what would put a secret or the
    // plaintext where the host can read it, before any of either exists.
    let source: ImageSource = opts.image.parse()?;
    let ImageSource::Registry(reference) = &source else {
        // A layout or archive would be a host path, and the signature policy would judge
        // it as `docker.io/library/oci` (rune refuses it at create too).
        return Err(BootError::Check(format!(
            "image {}: only a registry reference is pulled inside an enclave (an OCI layout or archive is a host path)",
            opts.image
        )));
    };
    check_memory_backed(&opts.root)?;
    if opts.registry_auth.is_some() && registry::is_insecure(&opts.insecure, reference) {
        return Err(BootError::Check(format!(
            "registry credentials are never sent over plain HTTP: {} is an insecure registry",
            reference.registry()
        )));
    }
    let mut agent = match &opts.kbs {
        Some(url) => {
            let ca_pem = match &opts.kbs_ca {
                Some(p) => Some(std::fs::read(p).map_err(|source| BootError::Io {
                    what: format!("KBS CA {}", p.display()),
                    source,
                })?),
                None => None,
            };
            // Which broker, before the first attestation: the URL and CA are the host's,
            // and a broker of the host's could serve any policy under the tenant's names.
            let event = attestation_agent::eventlog::Event::kbs(url, ca_pem.as_deref())
                .map_err(|e| BootError::Check(format!("KBS {url}: {e}")))?;
            let mut agent = attestation_agent::Agent::new(
                url,
                attestation_agent::Options {
                    ca_pem,
                    ..Default::default()
                },
            )
            .map_err(|e| BootError::Kbs(e.to_string()))?;
            record(&mut agent, &event, progress)?;
            Some(agent)
        }
        None => None,
    };

    // The manifest first (it is not secret, and nothing of the image is used before the
    // checks below): its digest goes into the evidence as CoCo's `PullImage` event, so
    // the KBS's policy can release keys to an enclave pulling this image only.
    let (credentials, registry_ca) =
        registry_access(opts, &source, agent.as_mut(), progress).await?;
    let defaults = RegistryConfig::default();
    let puller = Puller::new(RegistryConfig {
        credentials,
        extra_ca_pem_bytes: registry_ca,
        insecure_http: opts.insecure.clone(),
        max_layer_size: opts.max_layer_size.unwrap_or(defaults.max_layer_size),
        // The user's words for --insecure-registry: rune's setting (rune_core::image).
        plain_http_hint: "to pull from {registry} over plain HTTP, add it to ENCLAVE_IMAGE_INSECURE (or the enclave.image.insecure annotation)".into(),
        ..defaults
    })?;
    progress.line(format_args!("pulling {source}"));
    let image = puller.open(&source).await?;
    let layers = &image.manifest.layers;
    let total: u64 = layers.iter().map(|l| l.size).sum();
    progress.line(format_args!(
        "manifest {} ({}, {:.1} MiB)",
        image.manifest_digest,
        count(layers.len() as u64, "layer"),
        mib(total)
    ));
    let name = match image.reference() {
        Some(r) => r.to_string(),
        None => opts.image.clone(),
    };

    // Then attest, before any key, policy or layer: a refused enclave gets no key and
    // pulls no layer. Then the resources named by configuration (policy, signature
    // keys, decryption keys); the layer KEKs follow.
    if let (Some(agent), Some(url)) = (agent.as_mut(), &opts.kbs) {
        use attestation_agent::eventlog::Event;
        // The image's digest, and which signature policy applies: the configuration is
        // the host's, so the tenant's KBS policy can hold the enclave to both.
        let events = [
            Event::pull_image(&name, &image.manifest_digest),
            Event::image_policy(opts.policy.as_deref()),
        ];
        for event in events {
            let event = event.map_err(|e| BootError::Check(format!("image {name}: {e}")))?;
            record(agent, &event, progress)?;
        }
        progress.line(format_args!(
            "attesting to {url} ({} evidence)",
            agent.tee()
        ));
        agent
            .attest()
            .await
            .map_err(|e| BootError::Kbs(format!("attestation to {url}: {e}")))?;
    }
    let policy = match &opts.policy {
        Some(uri) => {
            let agent = agent
                .as_mut()
                .ok_or_else(|| BootError::Kbs(format!("policy {uri} needs a KBS (--kbs)")))?;
            let policy = Policy::from_bytes(&fetch(agent, "signature policy", uri).await?)
                .map_err(|e| BootError::Check(format!("signature policy {uri}: {e}")))?;
            let mut keys = PolicyKeys::fetched_only();
            // The keys of the scope that applies only: other scopes' are not needed.
            for id in policy.key_paths_for(&name)? {
                keys.insert(&id, fetch(agent, "signature key", &id).await?.to_vec());
            }
            Some((policy, keys))
        }
        None => None,
    };
    let mut keys = LayerKeys::default();
    for uri in &opts.decryption_keys {
        let agent = agent
            .as_mut()
            .ok_or_else(|| BootError::Kbs(format!("decryption key {uri} needs a KBS (--kbs)")))?;
        let pem = fetch(agent, "decryption key", uri).await?;
        let key = ocicrypt::PrivateKey::from_pem_or_der(&pem)
            .map_err(|e| BootError::Check(format!("decryption key {uri}: {e}")))?;
        keys.add_private_key(key);
    }

    // Signatures, before any layer is downloaded.
    match &policy {
        Some((policy, keys)) => {
            // cosign signs the digest a tag resolves to: for an index, the index's. Its
            // signatures count too, as in image-rs (see `Policy::evaluate_in_index`).
            let mut fetched = image.cosign_signatures(&image.manifest_digest).await?;
            if let Some(index) = &image.index_digest {
                fetched.extend(image.cosign_signatures(index).await?);
            }
            let cosign: Vec<_> = fetched.iter().filter_map(|s| s.for_policy()).collect();
            let simple = match &opts.lookaside {
                Some(base) => {
                    image
                        .lookaside_signatures(base, &image.manifest_digest)
                        .await?
                }
                None => Vec::new(),
            };
            let verdict = policy.evaluate_in_index(
                &name,
                &image.manifest_digest,
                image.index_digest.as_deref(),
                &Signatures {
                    simple: &simple,
                    cosign: &cosign,
                },
                keys,
            )?;
            if verdict.is_signed() {
                for v in &verdict.verified {
                    progress.line(format_args!(
                        "signature verified: {} by {} for {}",
                        v.requirement, v.signer, v.docker_reference
                    ));
                }
            } else {
                progress.line(format_args!(
                    "policy scope {} accepts the image without a signature",
                    verdict.scope
                ));
            }
        }
        None => {
            progress.line("no signature policy (ENCLAVE_IMAGE_POLICY): signatures are not checked")
        }
    }

    // Layer keys: every KEK the packets name, fetched after attestation, then every
    // layer key unwrapped before any layer is downloaded (a wrong or missing key fails
    // here, naming the layer and the key ids found).
    let annotations: Vec<LayerAnnotations> = layers
        .iter()
        .map(|l| LayerAnnotations::from_pairs(l.annotations.clone().unwrap_or_default()))
        .collect();
    // Only encrypted layers' key ids: the manifest may still be the host's, and a key id
    // on a plain layer would only make the enclave fetch resources for nothing.
    let encrypted = layers
        .iter()
        .zip(&annotations)
        .filter(|(l, _)| ocicrypt::is_encrypted(&l.media_type))
        .map(|(_, a)| a);
    for kid in ocicrypt::kids_needed(encrypted) {
        let agent = agent.as_mut().ok_or_else(|| {
            BootError::Kbs(format!(
                "the image's layer keys are held by a KBS ({kid}), but none is configured (ENCLAVE_KBS_URL)"
            ))
        })?;
        let kek = fetch(agent, "layer key", &kid).await?;
        keys.add_kek(&kid, &kek)
            .map_err(|e| BootError::Check(e.to_string()))?;
    }
    let mut layer_keys = Vec::with_capacity(layers.len());
    for (layer, ann) in layers.iter().zip(&annotations) {
        layer_keys.push(if ocicrypt::is_encrypted(&layer.media_type) {
            let plain_type =
                ocicrypt::decrypted_media_type(&layer.media_type).ok_or_else(|| {
                    BootError::Check(format!(
                        "layer {}: media type {}",
                        layer.digest, layer.media_type
                    ))
                })?;
            let (private, public) = ann
                .unwrap(&layer.digest, &keys)
                .map_err(|e| BootError::Check(e.to_string()))?;
            Some((plain_type.to_string(), private, public))
        } else {
            None
        });
    }
    drop(keys);

    let config_bytes = image.config().await?;
    // An image for another machine is refused before any layer is fetched.
    image.check_platform(&config_bytes)?;
    let config =
        ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| BootError::Config {
            digest: image.manifest.config.digest.clone(),
            reason: e.to_string(),
        })?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(BootError::Config {
            digest: image.manifest.config.digest.clone(),
            reason: format!(
                "{} for {}",
                count(diff_ids.len() as u64, "diff_id"),
                count(layers.len() as u64, "layer")
            ),
        });
    }

    let staging = opts.root.join(".rune/staging");
    std::fs::create_dir_all(&staging).map_err(|source| BootError::Io {
        what: format!("staging {}", staging.display()),
        source,
    })?;
    let _cleanup = RemoveDir(staging.clone());
    let unpack_opts = UnpackOptions {
        staging_parent: Some(staging.clone()),
        ..UnpackOptions::default()
    };
    for ((layer, layer_key), diff_id) in layers.iter().zip(&layer_keys).zip(diff_ids) {
        let t = Instant::now();
        let blob = staging.join(short(&layer.digest));
        image.fetch_blob_to_path(layer, &blob).await?;
        let fetched = t.elapsed();
        let file = std::fs::File::open(&blob).map_err(|source| BootError::Io {
            what: format!("layer {}", layer.digest),
            source,
        })?;
        let encrypted = layer_key.is_some();
        let stats = match layer_key {
            Some((plain_type, private, public)) => {
                let reader = ocicrypt::DecryptReader::new(file, private, public, &layer.digest);
                unpack::unpack_layer(reader, plain_type, diff_id, &opts.root, &unpack_opts)
            }
            None => {
                unpack::unpack_layer(file, &layer.media_type, diff_id, &opts.root, &unpack_opts)
            }
        }
        .map_err(|e| {
            BootError::Check(match &e {
                // The decryption reader's own error (HMAC) names the layer already.
                unpack::UnpackError::Stream(io)
                    if io.get_ref().is_some_and(|i| i.is::<ocicrypt::Error>()) =>
                {
                    io.to_string()
                }
                _ => format!("layer {}: {e}", layer.digest),
            })
        })?;
        let _ = std::fs::remove_file(&blob);
        let secs = t.elapsed().as_secs_f64().max(1e-6);
        progress.line(format_args!(
            "layer {}: {:.1} MiB fetched in {:.2} s, {}{}, {:.1} MiB/s",
            short(&layer.digest),
            mib(layer.size),
            fetched.as_secs_f64(),
            if encrypted { "decrypted, " } else { "" },
            count(stats.files, "file"),
            mib(layer.size) / secs
        ));
    }
    drop(_cleanup);

    let container_env: Vec<(String, String)> = std::env::vars().collect();
    let launch = handover::plan(
        &opts.root,
        config.config().as_ref(),
        &opts.args,
        &container_env,
        nix::unistd::geteuid().is_root(),
    )?;
    progress.line(format_args!(
        "image {} ready in {:.2} s, peak memory {}: {:?}",
        image.manifest_digest,
        started.elapsed().as_secs_f64(),
        peak_rss().map_or("unknown".into(), |kib| format!(
            "{:.1} MiB",
            kib as f64 / 1024.0
        )),
        launch.argv
    ));
    Ok((launch, image.manifest_digest.clone()))
}

/// Extends the evidence with `event` and says so. As Confidential Containers' data hub,
/// a TEE that cannot carry events only reports it.
fn record<W: Write>(
    agent: &mut attestation_agent::Agent,
    event: &attestation_agent::eventlog::Event,
    progress: &mut Progress<W>,
) -> Result<(), BootError> {
    match agent.extend_runtime_measurement(event) {
        Ok(()) => progress.line(format_args!(
            "evidence records {} {} {}",
            event.domain, event.operation, event.content
        )),
        Err(e @ attestation_agent::AgentError::MeasurementNotSupported(_)) => {
            progress.line(format_args!(
                "{e}: {} is not in the evidence",
                event.operation
            ));
        }
        Err(e) => return Err(BootError::Kbs(e.to_string())),
    }
    Ok(())
}

/// The image's plaintext goes into `root` only when it is memory-backed (tmpfs or ramfs,
/// as rune mounts it): another runtime, or a changed command line, would have it written
/// to the host's disk.
fn check_memory_backed(root: &std::path::Path) -> Result<(), BootError> {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // linux/magic.h; nix names tmpfs's only.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let fs = statfs(root).map_err(|e| BootError::Io {
        what: format!("root {}", root.display()),
        source: e.into(),
    })?;
    let kind = fs.filesystem_type();
    if kind != TMPFS_MAGIC && kind != RAMFS_MAGIC {
        return Err(BootError::Check(format!(
            "root {}: not a memory-backed file system (magic {:#x}): the image's plaintext is only unpacked into tmpfs or ramfs",
            root.display(),
            kind.0
        )));
    }
    Ok(())
}

/// This process's peak resident set in KiB (`ru_maxrss` of getrusage(2), which needs no
/// /proc in the still-empty root). The unpacked root lives in the container's tmpfs and
/// is not part of it.
fn peak_rss() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let kib = getrusage(UsageWho::RUSAGE_SELF).ok()?.max_rss();
    u64::try_from(kib).ok()
}

/// The registry's credentials and CA certificates, when configured: KBS resources,
/// fetched after a first attestation (the manifest, whose digest the later evidence
/// carries, cannot be read without them), never host files. That attestation's evidence
/// carries no image event yet: a KBS policy releasing them cannot depend on the image.
async fn registry_access<W: Write>(
    opts: &Options,
    source: &ImageSource,
    agent: Option<&mut attestation_agent::Agent>,
    progress: &mut Progress<W>,
) -> Result<(Credentials, Option<Vec<u8>>), BootError> {
    if opts.registry_auth.is_none() && opts.registry_ca.is_none() {
        return Ok((Credentials::Anonymous, None));
    }
    let agent = agent.ok_or_else(|| {
        BootError::Kbs(
            "the registry's credentials and CA are KBS resources, but no KBS is configured (ENCLAVE_KBS_URL)"
                .into(),
        )
    })?;
    let url = opts.kbs.as_deref().unwrap_or_default();
    progress.line(format_args!(
        "attesting to {url} ({} evidence) for the registry's credentials",
        agent.tee()
    ));
    agent
        .attest()
        .await
        .map_err(|e| BootError::Kbs(format!("attestation to {url}: {e}")))?;
    let mut ca = None;
    if let Some(uri) = &opts.registry_ca {
        ca = Some(fetch(agent, "registry CA", uri).await?.to_vec());
        progress.line(format_args!("registry CA certificates from {uri}"));
    }
    let mut credentials = Credentials::Anonymous;
    if let (Some(uri), ImageSource::Registry(r)) = (&opts.registry_auth, source) {
        let file = fetch(agent, "registry credentials", uri).await?;
        credentials = registry::credentials_from_auth_file(uri, &file, r)?;
        let found = match credentials {
            Credentials::Anonymous => "none",
            _ => "found",
        };
        progress.line(format_args!(
            "registry credentials from {uri}: {found} for {}",
            r.name()
        ));
    }
    Ok((credentials, ca))
}

/// One KBS resource; the error names what it is for and its id.
async fn fetch(
    agent: &mut attestation_agent::Agent,
    what: &str,
    uri: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BootError> {
    agent
        .get_resource(uri)
        .await
        .map_err(|e| BootError::Kbs(format!("{what} {uri}: {e}")))
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
