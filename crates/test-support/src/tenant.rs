//! The tenant's side of a confidential image made with the workspace's own tool,
//! `enclave-image` (crates/enclave-image-tool): keys made by openssl, a fresh KEK stored
//! in a real verdictd through its admin API by `enclave-image encrypt --kbs`, a cosign
//! signature by `enclave-image sign --cosign-key`, and the `sigstoreSigned`
//! containers-policy.json the enclave fetches as a KBS resource. What was published is
//! read back from the registry, not taken from the tool's output.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::boot::release_artifact;
use crate::registry::Registry;
use crate::tools::{run, sha256_digest};
use crate::verdictd::Verdictd;

/// The KEK's KBS resource, as the packets name it.
pub const KEK_ID: &str = "kbs:///default/image-kek/app";
/// The containers-policy.json's KBS resource (`ENCLAVE_IMAGE_POLICY`).
pub const POLICY_ID: &str = "kbs:///default/image-policy/containers";
/// The cosign public key's KBS resource (the policy's `keyPath`).
pub const COSIGN_KEY_ID: &str = "kbs:///default/image-policy/cosign";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The layer annotation holding Confidential Containers' key-provider packet.
const PACKET_ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";

/// The tenant's key files, made by openssl in a directory of theirs: an Ed25519 admin
/// key for verdictd's admin API and a P-256 cosign key (PKCS#8), each with its public
/// key in PEM.
pub struct TenantKeys {
    pub admin_key: PathBuf,
    pub admin_public: PathBuf,
    pub cosign_key: PathBuf,
    pub cosign_public: PathBuf,
}

impl TenantKeys {
    /// Makes the keys in `dir` (created).
    pub fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = |n: &str| dir.join(n);
        let s = |p: &Path| p.display().to_string();
        let keys = TenantKeys {
            admin_key: p("admin.key"),
            admin_public: p("admin.pub"),
            cosign_key: p("cosign.key"),
            cosign_public: p("cosign.pub"),
        };
        run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "ed25519",
                "-out",
                &s(&keys.admin_key),
            ],
        )?;
        run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &s(&keys.cosign_key),
            ],
        )?;
        for (key, public) in [
            (&keys.admin_key, &keys.admin_public),
            (&keys.cosign_key, &keys.cosign_public),
        ] {
            run(
                "openssl",
                &["pkey", "-in", &s(key), "-pubout", "-out", &s(public)],
            )?;
        }
        Ok(keys)
    }

    /// The KBS resources the enclave needs besides the KEK: the policy for `scope`
    /// ([`sigstore_policy`]) as [`POLICY_ID`] and the cosign public key as
    /// [`COSIGN_KEY_ID`] (`repo/type/tag` paths and bytes, for
    /// [`VerdictdOptions::resources`](crate::VerdictdOptions)).
    pub fn policy_resources(&self, scope: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let public = std::fs::read(&self.cosign_public)
            .map_err(|e| format!("{}: {e}", self.cosign_public.display()))?;
        Ok(vec![
            (
                resource_path(POLICY_ID),
                sigstore_policy(scope).into_bytes(),
            ),
            (resource_path(COSIGN_KEY_ID), public),
        ])
    }
}

/// `repo/type/tag` of a `kbs:///repo/type/tag` id.
pub fn resource_path(id: &str) -> String {
    id.trim_start_matches("kbs:///").to_string()
}

/// A containers-policy.json (images.md §4) that rejects everything but images in
/// `scope` (`REGISTRY/REPO`) with a cosign signature by the key at [`COSIGN_KEY_ID`] for
/// that repository (`sigstoreSigned`, `matchRepository`).
pub fn sigstore_policy(scope: &str) -> String {
    serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope: [{
            "type": "sigstoreSigned",
            "keyPath": COSIGN_KEY_ID,
            "signedIdentity": {"type": "matchRepository"}
        }]}}
    })
    .to_string()
}

/// Runs `target/release/enclave-image args` (built if missing) with `TMPDIR=tmp`
/// (created): the tenant's staging stays in the tenant's directory. Returns stdout, or
/// one line with the command and its stderr.
pub fn enclave_image(tmp: &Path, args: &[&str]) -> Result<String, String> {
    let tool =
        release_artifact("enclave-image-tool", "enclave-image").map_err(|e| e.to_string())?;
    std::fs::create_dir_all(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let out = Command::new(&tool)
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .map_err(|e| format!("{}: {e}", tool.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "enclave-image {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A confidential image as the registry serves it.
#[derive(Debug, Clone)]
pub struct ConfidentialImage {
    /// `REGISTRY/REPO:TAG`.
    pub reference: String,
    /// `sha256:` of the manifest bytes the registry serves.
    pub manifest_digest: String,
    /// The encrypted layers' digests, in order.
    pub layers: Vec<String>,
}

/// Encrypts the plain OCI layout image `plain` (`DIR:TAG`) for a fresh KEK that
/// `enclave-image encrypt --kbs` stores in `kbs` as [`KEK_ID`] (the admin API, HTTPS
/// with the broker's CA when it has one), pushes it to `registry` as `repo_tag`, and
/// signs it with `enclave-image sign --cosign-key`. Then checks what the peers hold:
/// every layer the registry serves is encrypted with a packet naming [`KEK_ID`], the
/// cosign signature is stored under cosign's tag `sha256-<hex>.sig`, and verdictd
/// logged storing 32 bytes as the KEK.
pub fn publish(
    keys: &TenantKeys,
    kbs: &Verdictd,
    registry: &Registry,
    plain: &str,
    repo_tag: &str,
    tmp: &Path,
) -> Result<ConfidentialImage, String> {
    let host = registry.host();
    let reference = format!("{host}/{repo_tag}");
    let source = format!("oci:{plain}");
    let admin = keys.admin_key.display().to_string();
    let mut args = vec![
        "encrypt",
        "--kek-id",
        KEK_ID,
        "--kbs",
        kbs.url(),
        "--admin-key",
        &admin,
        "--insecure-registry",
        &host,
    ];
    let ca = kbs.ca().map(|c| c.display().to_string());
    if let Some(ca) = &ca {
        args.extend(["--kbs-ca", ca]);
    }
    args.extend([source.as_str(), reference.as_str()]);
    enclave_image(tmp, &args)?;
    let cosign = keys.cosign_key.display().to_string();
    enclave_image(
        tmp,
        &[
            "sign",
            "--cosign-key",
            &cosign,
            "--insecure-registry",
            &host,
            &reference,
        ],
    )?;

    let (repo, tag) = repo_tag
        .rsplit_once(':')
        .ok_or_else(|| format!("{repo_tag}: expected REPO:TAG"))?;
    let get = |path: &str| -> Result<Vec<u8>, String> {
        let r = crate::http::request(
            registry.addr(),
            "GET",
            path,
            &[("Accept", OCI_MANIFEST)],
            b"",
        )
        .map_err(|e| format!("GET {path}: {e}"))?;
        if r.status != 200 {
            return Err(format!(
                "GET {path}: {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        Ok(r.body)
    };
    let bytes = get(&format!("/v2/{repo}/manifests/{tag}"))?;
    let manifest_digest = sha256_digest(&bytes);
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| format!("manifest: {e}"))?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let media_type = l["mediaType"].as_str().unwrap_or_default();
        let packet = l["annotations"][PACKET_ANNOTATION]
            .as_str()
            .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
        let kid = packet.as_ref().and_then(|p| p["kid"].as_str());
        if !media_type.ends_with("+encrypted") || kid != Some(KEK_ID) {
            return Err(format!("layer not encrypted for {KEK_ID}: {l}"));
        }
        layers.push(l["digest"].as_str().unwrap_or_default().to_string());
    }
    if layers.is_empty() {
        return Err(format!("no layers in {reference}: {manifest}"));
    }
    let signature_tag = manifest_digest.replacen(':', "-", 1) + ".sig";
    get(&format!("/v2/{repo}/manifests/{signature_tag}"))?;
    let kek = resource_path(KEK_ID);
    if kbs
        .find_event(&[("message", "stored"), ("resource", &kek), ("bytes", "32")])
        .is_none()
    {
        return Err(format!(
            "verdictd did not log storing the KEK: {}",
            kbs.log()
        ));
    }
    Ok(ConfidentialImage {
        reference,
        manifest_digest,
        layers,
    })
}

/// The Cmd of the image [`Confidential::start`] makes: it prints the marker upper-cased,
/// so that the marker itself never passes through a runtime's streams or logs.
pub const MARKER_CMD: [&str; 3] = ["/bin/sh", "-c", "tr a-z A-Z < /etc/marker"];

/// One confidential image's world, as a tenant and a host would have it: the tenant's
/// directory (under `target/`, outside `/tmp` and `/var` where the plaintext is looked
/// for), a private registry and a verdictd (HTTPS, admin API open to the tenant's key)
/// on the host's side, and the image published by [`publish`] as `test/app:enc`.
pub struct Confidential {
    /// The random marker in the image's `/etc/marker`.
    pub marker: String,
    pub image: ConfidentialImage,
    pub kbs: Verdictd,
    pub registry: Registry,
    pub keys: TenantKeys,
    tenant: tempfile::TempDir,
}

impl Confidential {
    /// Starts the registry in `host/registry` and verdictd in `host/verdictd` admitting
    /// the sim enclave `admit` and holding the [`sigstore_policy`] for the registry's
    /// `test/app` with the tenant's cosign key; makes the busybox image with a random
    /// marker ([`crate::marker_layout`], Cmd [`MARKER_CMD`]); then encrypts, pushes and
    /// signs it with `enclave-image` ([`publish`]).
    pub fn start(host: &Path, admit: &str) -> Result<Self, String> {
        let tenant = tempfile::Builder::new()
            .prefix("tenant")
            .tempdir_in(crate::workspace_root().join("target"))
            .map_err(|e| format!("tenant directory: {e}"))?;
        let marker = crate::random_marker();
        let plain = crate::marker_layout(tenant.path(), &marker, &MARKER_CMD)?;
        let keys = TenantKeys::new(&tenant.path().join("keys"))?;
        let registry = Registry::start(&host.join("registry"), crate::Auth::None)
            .map_err(|e| format!("registry: {e}"))?;
        let resources = keys.policy_resources(&format!("{}/test/app", registry.host()))?;
        let resources: Vec<(&str, &[u8])> = resources
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let kbs = Verdictd::start_with(
            &host.join("verdictd"),
            &crate::VerdictdOptions {
                admit,
                resources: &resources,
                admin_public_key: Some(&keys.admin_public),
                tls: true,
                ..Default::default()
            },
        )
        .map_err(|e| format!("verdictd: {e}"))?;
        let image = publish(
            &keys,
            &kbs,
            &registry,
            &plain,
            "test/app:enc",
            &tenant.path().join("tmp"),
        )?;
        Ok(Confidential {
            marker,
            image,
            kbs,
            registry,
            keys,
            tenant,
        })
    }

    /// The tenant's directory.
    pub fn tenant(&self) -> &Path {
        self.tenant.path()
    }

    /// The registry's log lines for blobs of `test/app` (layers and config).
    pub fn blob_requests(&self) -> Vec<String> {
        self.registry
            .log()
            .lines()
            .filter(|l| l.contains("/v2/test/app/blobs/"))
            .map(str::to_string)
            .collect()
    }

    /// Asserts that a run whose stderr is `stderr` was refused by verdictd before the
    /// pull: exactly one `enclave-boot: error:` line carrying verdictd's words for a
    /// denied policy resource, every attestation appraised as not affirming (verdictd's
    /// EAR status), no release, and no blob served since `blobs` (from
    /// [`Confidential::blob_requests`]); the manifest, not secret, may have been read.
    pub fn assert_refused_before_the_pull(&self, stderr: &str, blobs: &[String]) {
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("enclave-boot: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let policy = resource_path(POLICY_ID);
        assert!(
            errors[0].contains(&format!("the resource policy denies {policy}")),
            "{stderr}"
        );
        let statuses: Vec<String> = self
            .kbs
            .events()
            .iter()
            .filter(|e| e["fields"]["message"] == "attested")
            .map(|e| {
                e["fields"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert!(
            !statuses.is_empty() && statuses.iter().all(|s| s != "affirming"),
            "{}",
            self.kbs.log()
        );
        assert_eq!(self.kbs.find_event(&[("message", "released")]), None);
        assert_eq!(self.blob_requests(), blobs, "{}", self.registry.log());
    }

    /// Indexes in verdictd's events of the attestation that affirmed an enclave and of
    /// the first release of the KEK, if both happened.
    pub fn attested_then_released(&self) -> (Option<usize>, Option<usize>) {
        (
            self.kbs
                .find_event(&[("message", "attested"), ("status", "affirming")]),
            self.kbs.find_event(&[
                ("message", "released"),
                ("resource", &resource_path(KEK_ID)),
            ]),
        )
    }

    /// Stops the registry and verdictd and returns what is left under the tenant's
    /// directory and `host` ([`crate::leftovers`]); removes the tenant's directory.
    pub fn finish(self, host: &Path) -> Vec<String> {
        let Confidential {
            kbs,
            registry,
            tenant,
            ..
        } = self;
        drop((kbs, registry));
        let mut left = crate::leftovers(tenant.path());
        left.extend(crate::leftovers(host));
        left
    }
}
