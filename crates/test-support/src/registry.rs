//! A private `docker-registry` (Debian's distribution 2.8) on loopback, per test.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::token::{TokenServer, ISSUER, SERVICE};

/// The registry binary (Debian package `docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How clients must authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anonymous pull and push.
    None,
    /// htpasswd (bcrypt) with one user.
    Basic {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// Bearer tokens from a [`TokenServer`] that requires these Basic credentials.
    Token {
        /// User name the token service accepts.
        user: String,
        /// Its password.
        pass: String,
    },
}

/// An image [`Registry::push`] put into the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:port/repo:tag`.
    pub reference: String,
    /// `sha256:…` of the manifest bytes the registry serves.
    pub manifest_digest: String,
    /// The config blob's digest.
    pub config_digest: String,
    /// The layer blobs' digests, base layer first.
    pub layers: Vec<String>,
}

/// A running registry, killed (by pid) and reaped on drop. Everything it writes is
/// under the directory given to [`Registry::start`].
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    auth: Auth,
    token: Option<TokenServer>,
    ca: Option<PathBuf>,
}

impl Registry {
    /// Writes a private config under `dir` (storage in `dir/registry-data`, log in
    /// `dir/registry.log`), starts `docker-registry serve` on `127.0.0.1:<free port>`
    /// and waits until `/v2/` answers. Retries with another port if the first is taken.
    pub fn start(dir: &Path, auth: Auth) -> io::Result<Registry> {
        Self::start_with(dir, auth, false)
    }

    /// As [`Registry::start`], serving HTTPS with a certificate for `127.0.0.1` from a
    /// fresh private CA ([`Registry::ca`]) when `tls`. Pushing goes through
    /// [`Registry::push`] or skopeo with `--dest-tls-verify=false`; the raw helpers
    /// ([`Registry::put_blob`], [`Registry::put_manifest`]) speak plain HTTP only.
    pub fn start_with(dir: &Path, auth: Auth, tls: bool) -> io::Result<Registry> {
        fs::create_dir_all(dir)?;
        let (ca, tls_yaml) = if tls {
            let ca = dir.join("ca.pem");
            crate::verdictd::write_tls(dir, &ca)?;
            let yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            );
            (Some(ca), yaml)
        } else {
            (None, String::new())
        };
        let token = match &auth {
            Auth::Token { user, pass } => Some(TokenServer::start(user, pass)?),
            _ => None,
        };
        let auth_yaml = match (&auth, &token) {
            (Auth::Basic { user, pass }, _) => {
                let hash = bcrypt::hash(pass, 5).map_err(io::Error::other)?;
                let htpasswd = dir.join("htpasswd");
                fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    htpasswd.display()
                )
            }
            (Auth::Token { .. }, Some(t)) => {
                let bundle = dir.join("token-root.pem");
                fs::write(&bundle, t.cert_pem())?;
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    t.realm(),
                    bundle.display()
                )
            }
            _ => String::new(),
        };
        let data = dir.join("registry-data");
        fs::create_dir_all(&data)?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = http::free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = dir.join("registry.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
                    data.display()
                ),
            )?;
            let log = fs::File::create(dir.join("registry.log"))?;
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = child.try_wait()? {
                    last_err = Some(io::Error::other(format!(
                        "docker-registry exited ({status}): {}",
                        fs::read_to_string(dir.join("registry.log"))
                            .unwrap_or_default()
                            .trim()
                    )));
                    break;
                }
                // An HTTPS registry answers plain HTTP too (with a 400): it is up.
                if http::request(addr, "GET", "/v2/", &[], b"").is_ok() {
                    return Ok(Registry {
                        child,
                        addr,
                        dir: dir.to_path_buf(),
                        auth,
                        token,
                        ca,
                    });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other(
                        "docker-registry did not answer /v2/ within 15 s",
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("docker-registry did not start")))
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:port`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The private CA's certificate (PEM) of an HTTPS registry.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The token service, for [`Auth::Token`].
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// `user:pass` for skopeo's `--creds`/`--dest-creds`, if the registry needs any.
    pub fn creds(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, pass } | Auth::Token { user, pass } => {
                Some(format!("{user}:{pass}"))
            }
        }
    }

    /// Where the registry stores blob `digest` (`sha256:<hex>`) on disk, to corrupt it.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("registry-data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `source` (a skopeo source such as `oci:DIR:TAG`) as `repo_tag` with skopeo
    /// over plain HTTP, then reads back the manifest the registry serves. Anonymous
    /// registries only.
    pub fn push(&self, source: &str, repo_tag: &str) -> Result<Pushed, String> {
        let reference = format!("{}/{repo_tag}", self.host());
        let dest = format!("docker://{reference}");
        crate::skopeo(&["copy", "-q", "--dest-tls-verify=false", source, &dest])?;
        let raw = crate::skopeo(&["inspect", "--raw", "--tls-verify=false", &dest])?;
        let manifest: serde_json::Value =
            serde_json::from_str(&raw).map_err(|e| format!("{reference}: manifest: {e}"))?;
        let digest = |v: &serde_json::Value| v["digest"].as_str().map(str::to_string);
        Ok(Pushed {
            manifest_digest: crate::sha256_digest(raw.as_bytes()),
            config_digest: digest(&manifest["config"])
                .ok_or_else(|| format!("{reference}: the manifest has no config"))?,
            layers: manifest["layers"]
                .as_array()
                .map(|a| a.iter().filter_map(digest).collect())
                .unwrap_or_default(),
            reference,
        })
    }

    /// What skopeo (containers/image over Go's net/http) says when told to reach this
    /// plain-HTTP registry over HTTPS, as a new user would without
    /// `--tls-verify=false`: the cause after the URL, e.g. `server gave HTTP response
    /// to HTTPS client`. An error if skopeo does not fail that way.
    pub fn skopeo_https_refusal(&self) -> Result<String, String> {
        let reference = format!("docker://{}/test/any:v1", self.host());
        let err = match crate::skopeo(&["inspect", "--raw", &reference]) {
            Ok(_) => return Err(format!("skopeo reached {reference} over HTTPS")),
            Err(e) => e,
        };
        // `… Get \"https://HOST/v2/\": http: <cause>"` (logrus quotes the message).
        err.rsplit_once("/v2/")
            .and_then(|(_, rest)| rest.trim_start_matches(['\\', '"']).strip_prefix(": "))
            .map(|cause| {
                let cause = cause.trim().trim_end_matches('"');
                cause.strip_prefix("http: ").unwrap_or(cause).to_string()
            })
            .ok_or_else(|| format!("skopeo's error names no /v2/ request: {err}"))
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Uploads a blob as distribution 2.8 wants it (POST, then PUT with the digest;
    /// images.md §6.1), anonymous registries only. Returns the digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> io::Result<String> {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let r = http::request(
            self.addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )?;
        let loc = r
            .header("location")
            .ok_or_else(|| io::Error::other(format!("upload POST: HTTP {}", r.status)))?;
        let path = loc.split_once(&self.host()).map_or(loc, |(_, p)| p);
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = http::request(
            self.addr,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )?;
        if r.status != 201 {
            return Err(io::Error::other(format!(
                "blob PUT: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )));
        }
        Ok(digest)
    }

    /// PUTs a manifest or index under `reference` (a tag or digest), anonymous registries
    /// only. Returns the registry's `Docker-Content-Digest`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> io::Result<String> {
        let r = http::request(
            self.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        )?;
        if r.status != 201 {
            return Err(io::Error::other(format!(
                "manifest PUT: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )));
        }
        r.header("docker-content-digest")
            .map(str::to_string)
            .ok_or_else(|| io::Error::other("manifest PUT: no Docker-Content-Digest"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Stop by pid (our own child), then reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
