//! OCI distribution pull over `oci-client` (which does the bearer-token flow of
//! distribution's token spec), with bounded retries and our own digest/size checks.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::dns::{Name, Resolve, Resolving};

use super::blob::{sha256_digest, Checker};
use super::manifest::{
    check_content_type, content_media_type, parse_manifest, select_platform, ManifestKind,
    ACCEPTED_MANIFEST_TYPES,
};
use super::{Credentials, Error, ImageRef, RegistryConfig, Resolved};

/// The shared HTTP clients (cheap to clone).
#[derive(Clone)]
pub(crate) struct Remote {
    pub(crate) client: Arc<oci_client::Client>,
    /// For lookaside signature stores: no registry credentials ever go there.
    pub(crate) plain: reqwest::Client,
    pub(crate) auth: RegistryAuth,
}

/// One failed attempt: the error to report, and whether trying again may help.
pub(crate) struct Attempt {
    pub error: Error,
    pub retry: bool,
}

impl From<Error> for Attempt {
    fn from(error: Error) -> Self {
        Attempt {
            error,
            retry: false,
        }
    }
}

/// A resolver that resolves nothing ([`RegistryConfig::resolve_names`] `false`): every
/// host name fails in one line; IP addresses never reach a resolver.
struct NoNames;

impl Resolve for NoNames {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            Err(format!(
                "{name:?} is a host name, and this client reaches hosts by IP address only"
            )
            .into())
        })
    }
}

impl Remote {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, Error> {
        // reqwest is built without a default provider: use ring, already in the tree.
        // Ignoring the result: another part of the program may have installed one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = Vec::new();
        let mut certs = Vec::new();
        let mut sources = Vec::new();
        if let Some(path) = &cfg.extra_ca_pem {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("CA certificates {}: {e}", path.display())))?;
            sources.push((path.display().to_string(), pem));
        }
        if let Some(pem) = &cfg.extra_ca_pem_bytes {
            sources.push(("given".to_string(), pem.clone()));
        }
        for (name, pem) in sources {
            let bad = |e: String| Error::Config(format!("CA certificates {name}: {e}"));
            let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(chain(&e)))?;
            if found.is_empty() {
                return Err(bad("no PEM certificate in the file".into()));
            }
            certs.extend(found);
            roots.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            });
        }
        // Trust Mozilla's roots compiled in, plus the configured CA: never the host's
        // certificate store, which inside an enclave is the untrusted host's (and in
        // an image's empty root does not exist).
        let mut trusted: Vec<Certificate> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate {
                encoding: CertificateEncoding::Der,
                data: c.as_ref().to_vec(),
            })
            .collect();
        trusted.extend(roots.iter().cloned());
        let protocol = if cfg.insecure_http.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(cfg.insecure_http.clone())
        };
        let client = oci_client::Client::try_from(ClientConfig {
            protocol,
            tls_certs_only: trusted,
            // We choose platforms ourselves (variants, and a useful error).
            platform_resolver: None,
            connect_timeout: Some(cfg.connect_timeout),
            read_timeout: Some(cfg.read_timeout),
            // Bounded while reading, not after: a registry may send without end.
            max_manifest_size: Some(cfg.max_metadata_size),
            dns_resolver: (!cfg.resolve_names).then(|| Arc::new(NoNames) as Arc<dyn Resolve>),
            ..ClientConfig::default()
        })
        .map_err(|e| Error::Config(format!("HTTP client: {}", chain(&e))))?;
        let mut plain = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout);
        let mut plain_roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| reqwest::Certificate::from_der(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("built-in roots: {}", chain(&e))))?;
        plain_roots.extend(certs);
        plain = plain.tls_certs_only(plain_roots);
        if !cfg.resolve_names {
            plain = plain.no_proxy().dns_resolver(Arc::new(NoNames));
        }
        let plain = plain
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", chain(&e))))?;
        let auth = match &cfg.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { user, password } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        Ok(Remote {
            client: Arc::new(client),
            plain,
            auth,
        })
    }

    /// Pulls the manifest of `r`, through an index to the configured platform.
    pub async fn resolve(&self, r: &ImageRef, cfg: &RegistryConfig) -> Result<Resolved, Error> {
        let what = match (r.tag(), r.digest()) {
            (_, Some(d)) => format!("manifest {d}"),
            (Some(t), None) => format!("manifest {t}"),
            (None, None) => "manifest".to_string(),
        };
        let (bytes, content_type) = self.manifest_bytes(r, &what, cfg).await?;
        let digest = sha256_digest(&bytes);
        // Error::Manifest says "manifest" itself.
        let top = format!(
            "{} {}",
            r.name(),
            what.strip_prefix("manifest ").unwrap_or(&what)
        );
        check_content_type(&top, content_type.as_deref(), &bytes)?;
        match parse_manifest(
            &top,
            content_type.as_deref().map(content_media_type),
            &bytes,
        )? {
            ManifestKind::Image(manifest) => Ok(Resolved {
                manifest_bytes: bytes,
                manifest_digest: digest,
                manifest: *manifest,
                index_digest: None,
            }),
            ManifestKind::Index(index) => {
                let entry = select_platform(&index, &cfg.platform)?;
                let child_what = format!("manifest {} (for {})", entry.digest, cfg.platform);
                let (child, child_type) = self
                    .manifest_bytes(&r.with_digest(&entry.digest)?, &child_what, cfg)
                    .await?;
                let child_name = format!("{} {}", r.name(), entry.digest);
                let bad = |reason: String| Error::Manifest {
                    what: child_name.clone(),
                    reason,
                };
                if child.len() as u64 != entry.size {
                    return Err(bad(format!(
                        "{} bytes, the index says {}",
                        child.len(),
                        entry.size
                    )));
                }
                check_content_type(&child_name, child_type.as_deref(), &child)?;
                // The index's descriptor (digest-checked) announces the child's kind.
                match parse_manifest(&child_name, Some(&entry.media_type), &child)? {
                    ManifestKind::Image(manifest) => Ok(Resolved {
                        manifest_digest: sha256_digest(&child),
                        manifest_bytes: child,
                        manifest: *manifest,
                        index_digest: Some(digest),
                    }),
                    ManifestKind::Index(_) => Err(bad("nested index refused".into())),
                }
            }
        }
    }

    /// The manifest's bytes, checked against a pinned digest and the size limit, and
    /// the answer's `Content-Type` (`None` when the registry sent none).
    async fn manifest_bytes(
        &self,
        r: &ImageRef,
        what: &str,
        cfg: &RegistryConfig,
    ) -> Result<(Vec<u8>, Option<String>), Error> {
        let oci_ref = r.to_oci();
        let location = r.name();
        let (bytes, _, content_type) = retry(cfg, &location, what, || async {
            self.client
                .pull_manifest_raw_with_content_type(&oci_ref, &self.auth, &ACCEPTED_MANIFEST_TYPES)
                .await
                .map_err(|e| classify(e, &location, what, r.registry(), cfg))
        })
        .await?;
        if bytes.len() as u64 > cfg.max_metadata_size {
            return Err(Error::Manifest {
                what: format!(
                    "{location} {}",
                    what.strip_prefix("manifest ").unwrap_or(what)
                ),
                reason: format!(
                    "{} bytes exceeds the limit of {} bytes",
                    bytes.len(),
                    cfg.max_metadata_size
                ),
            });
        }
        // oci-client checked a pinned digest already; check again with our hasher so
        // the guarantee does not rest on one library.
        if let Some(d) = r.digest().filter(|d| d.starts_with("sha256:")) {
            let actual = sha256_digest(&bytes);
            if actual != d {
                return Err(Error::Digest {
                    location,
                    digest: d.to_string(),
                    actual,
                });
            }
        }
        Ok((bytes.to_vec(), content_type))
    }

    /// Streams blob `desc` of `r`'s repository into `out` (see `Image::fetch_blob`).
    pub async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &super::Descriptor,
        out: &mut (dyn Write + Send),
        limit: u64,
        cfg: &RegistryConfig,
    ) -> Result<u64, Error> {
        let oci_ref = r.to_oci();
        let location = r.name();
        let what = format!("blob {}", desc.digest);
        let mut checker = Checker::new(&location, desc, limit)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Only the digest is passed: the descriptor's foreign `urls` are never used.
            let stream = match self
                .client
                .pull_blob_stream(&oci_ref, desc.digest.as_str())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    let a = classify(e, &location, &what, r.registry(), cfg);
                    if a.retry && attempt < cfg.retry.attempts.max(1) {
                        backoff(cfg, attempt, &location, &what, &a.error).await;
                        continue;
                    }
                    return Err(with_attempts(a, attempt));
                }
            };
            checker.announced(stream.content_length)?;
            let mut stream = stream.stream;
            let mut failure = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => checker.feed(&bytes, out)?,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => return checker.finish(out),
                Some(e) if checker.seen() == desc.size => {
                    // oci-client's own check fails at the end: report ours (it names
                    // the blob), or its complaint if ours passed.
                    checker.finish(out)?;
                    return Err(Error::Transport {
                        location: location.clone(),
                        what,
                        reason: chain(&e),
                    });
                }
                Some(e) if checker.seen() == 0 && attempt < cfg.retry.attempts.max(1) => {
                    let err = Error::Transport {
                        location: location.clone(),
                        what: what.clone(),
                        reason: chain(&e),
                    };
                    backoff(cfg, attempt, &location, &what, &err).await;
                }
                Some(e) => {
                    return Err(Error::Transport {
                        location: location.clone(),
                        what,
                        reason: format!(
                            "{} after {} of {} bytes",
                            chain(&e),
                            checker.seen(),
                            desc.size
                        ),
                    })
                }
            }
        }
    }
}

/// Runs `f` up to `cfg.retry.attempts` times while it fails with a retryable error.
pub(crate) async fn retry<T, F, Fut>(
    cfg: &RegistryConfig,
    location: &str,
    what: &str,
    mut f: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(a) if a.retry && attempt < cfg.retry.attempts.max(1) => {
                backoff(cfg, attempt, location, what, &a.error).await;
            }
            Err(a) => return Err(with_attempts(a, attempt)),
        }
    }
}

async fn backoff(cfg: &RegistryConfig, attempt: u32, location: &str, what: &str, error: &Error) {
    let wait = cfg
        .retry
        .initial_backoff
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(cfg.retry.max_backoff);
    tracing::warn!(%location, %what, attempt, ?wait, %error, "retrying");
    tokio::time::sleep(wait).await;
}

fn with_attempts(a: Attempt, attempts: u32) -> Error {
    match a.error {
        Error::Transport {
            location,
            what,
            reason,
        } if a.retry && attempts > 1 => Error::Transport {
            location,
            what,
            reason: format!("{reason} (after {attempts} attempts)"),
        },
        Error::Status {
            location,
            what,
            status,
            detail,
        } if a.retry && attempts > 1 => Error::Status {
            location,
            what,
            status,
            detail: format!("{detail} (after {attempts} attempts)"),
        },
        e => e,
    }
}

/// Maps an oci-client error to ours: status codes kept, retryable ones marked. A plain
/// HTTP answer to an HTTPS request to `registry` says so, with `cfg.plain_http_hint`,
/// and is not retried.
pub(crate) fn classify(
    e: OciDistributionError,
    location: &str,
    what: &str,
    registry: &str,
    cfg: &RegistryConfig,
) -> Attempt {
    let status = |status: u16, detail: String, retry: bool| Attempt {
        error: Error::Status {
            location: location.to_string(),
            what: what.to_string(),
            status,
            detail,
        },
        retry,
    };
    let transport = |reason: String, retry: bool| Attempt {
        error: Error::Transport {
            location: location.to_string(),
            what: what.to_string(),
            reason,
        },
        retry,
    };
    match e {
        OciDistributionError::UnauthorizedError { .. } => status(
            401,
            ": unauthorized (no or wrong credentials, or the token service refused them)".into(),
            false,
        ),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    let code = serde_json::to_value(&e.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{code} {}", one_line(&e.message))
                })
                .collect();
            // The envelope drops the status: the spec fixes it per error code.
            let code = codes.first().map(String::as_str).unwrap_or("");
            let http = match code.split(' ').next().unwrap_or("") {
                "UNAUTHORIZED" => 401,
                "DENIED" => 403,
                "UNSUPPORTED" => 405,
                "TOOMANYREQUESTS" => 429,
                "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" => 404,
                _ => 400,
            };
            status(http, format!(": {}", codes.join("; ")), http == 429)
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let detail = one_line(&message);
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            status(code, detail, code >= 500 || code == 429)
        }
        OciDistributionError::RequestError(re) if plain_http_answer(&re) => transport(
            format!(
                "server gave HTTP response to HTTPS client: {}",
                cfg.plain_http_hint.replace("{registry}", registry)
            ),
            false,
        ),
        OciDistributionError::RequestError(re) => {
            let retry = re.is_connect() || re.is_timeout() || re.is_request() || re.is_body();
            transport(chain(&re), retry)
        }
        OciDistributionError::ManifestTooLarge { limit } => Attempt {
            error: Error::Manifest {
                what: format!(
                    "{location} {}",
                    what.strip_prefix("manifest ").unwrap_or(what)
                ),
                reason: format!("more than {limit} bytes exceeds the limit of {limit} bytes"),
            },
            retry: false,
        },
        OciDistributionError::DigestError(d) => {
            transport(format!("digest check failed: {d}"), false)
        }
        OciDistributionError::AuthenticationFailure(reason) => status(
            401,
            format!(": token request refused: {}", one_line(&reason)),
            false,
        ),
        other => transport(chain(&other), false),
    }
}

/// Whether a TLS handshake failed because the server answered in plain HTTP: rustls
/// reads the answer's `HTTP/1.1 400` as a record of an invalid content type (Go's
/// crypto/tls checks for `HTTP/` there, and net/http reports "server gave HTTP
/// response to HTTPS client"). rustls's error reaches us inside `io::Error`s (from
/// tokio-rustls, then reqwest's connector), whose `source()` skips it: look inside.
fn plain_http_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let mut inner = err;
        while let Some(i) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = i;
        }
        if matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error and its sources on one line (`a: b: c`), without repeats.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    one_line(&parts.join(": "))
}

/// Collapses whitespace and truncates what a server sent, so errors stay one short line.
pub(crate) fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 {
        s.chars().take(200).collect::<String>() + "…"
    } else {
        s
    }
}
