//! A module pulled as a wasm OCI artifact, inside the enclave (runtime arg `module=REF`).
//!
//! containerd before 1.6.25 / 1.7.7 (Debian 12 ships 1.6.20), docker 20.10 and podman
//! 4.3 cannot pull an image whose layer is not a tar, so a wasm artifact never reaches a
//! shim on those hosts. The PAL pulls it itself, as a confidential image is pulled: from
//! inside the enclave, with the manifest and the layer checked against their digests,
//! the module and its compiled code kept in the enclave runtime's memory (never written
//! to a host directory: the compiled-code cache is not used for it).
//! The host-side image is then only what the container starts from.
//!
//! Accepted (the CNCF TAG Runtime "Wasm OCI Artifact layout", oci-wasm 0.6, runwasi's oci-tar-builder): a manifest whose config is the CNCF / `oci-wasm`
//! `application/vnd.wasm.config.v0+json` (or the legacy `…v1+json`), or an OCI or
//! Docker image config whose `architecture` is `wasm`; exactly one layer of a wasm media type
//! (`application/wasm`, runwasi's `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`,
//! the legacy `application/vnd.wasm.content.layer.v1+wasm`), at most
//! [`MAX_MODULE_BYTES`]. An index is resolved to its `wasip1`/`wasm` entry. Only core
//! modules then run (a component is refused as any component is).
//!
//! The registry is named by IP address, and nothing else is looked up by name either (a
//! token realm, a redirect, a proxy from the environment: the client's resolver refuses
//! every name): glibc's NSS would resolve it in the container's root, with the image's
//! libraries loaded into the enclave runtime (as for `kbs_get_resource`).
//! `insecure_registry=HOST:PORT` (repeatable) allows plain HTTP. Over HTTPS the registry's
//! certificate must chain to a public root (Mozilla's, compiled in) and name its IP
//! address; no credentials are sent (an anonymous pull).

use enclave_image::registry::{ImageRef, ImageSource, Platform, Puller, RegistryConfig};
use nix::errno::Errno;

use crate::module::{Refusal, MAX_MODULE_BYTES};

/// Config media types of wasm artifacts.
const WASM_CONFIGS: [&str; 2] = [
    "application/vnd.wasm.config.v0+json",
    "application/vnd.wasm.config.v1+json",
];
/// Image config media types (runwasi's non-artifact images: wasm when their
/// `architecture` is `wasm`, runwasi's executor).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Layer media types that carry a module.
const WASM_LAYERS: [&str; 3] = [
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// A pulled module.
pub struct Artifact {
    /// The reference as given.
    pub reference: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// The module's bytes (the layer, digest-checked).
    pub bytes: Vec<u8>,
}

/// The runtime args this module reads: `module=` and every `insecure_registry=`.
pub fn args(args: &str) -> (Option<String>, Vec<String>) {
    let words = || args.split(|c: char| c.is_whitespace() || c == ',');
    (
        words().find_map(|w| w.strip_prefix("module=").map(str::to_string)),
        words()
            .filter_map(|w| w.strip_prefix("insecure_registry=").map(str::to_string))
            .collect(),
    )
}

/// Pulls the module `reference` names. Errors are one line, `EINVAL` for a reference or
/// artifact that cannot be one, `EIO` for the registry's.
pub fn pull(reference: &str, insecure: &[String]) -> Result<Artifact, Refusal> {
    let bad = |m: String| Refusal::new(Errno::EINVAL, format!("module={reference}: {m}"));
    let r = ImageRef::parse(reference).map_err(|e| bad(e.to_string()))?;
    let registry = r.registry();
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(format!(
            "the registry {registry:?} is not named by IP address (a name would be resolved with the image's NSS configuration and libraries)"
        )));
    }
    let config = RegistryConfig {
        insecure_http: insecure.to_vec(),
        platform: Platform {
            os: "wasip1".into(),
            architecture: "wasm".into(),
            variant: None,
            os_version: None,
        },
        max_layer_size: MAX_MODULE_BYTES,
        plain_http_hint: "add the runtime arg insecure_registry={registry}".into(),
        // Nor a token realm, a redirect or a proxy that names a host: no name lookup at
        // all (see the module's docs).
        resolve_names: false,
        // `create` waits for this: a registry that does not answer fails it in seconds.
        connect_timeout: std::time::Duration::from_secs(5),
        retry: enclave_image::registry::RetryPolicy {
            attempts: 2,
            ..Default::default()
        },
        ..RegistryConfig::default()
    };
    let io = |e: enclave_image::registry::Error| {
        Refusal::new(Errno::EIO, format!("module={reference}: {e}"))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Refusal::new(Errno::EIO, format!("module={reference}: runtime: {e}")))?;
    runtime.block_on(async {
        let puller = Puller::new(config).map_err(io)?;
        let image = puller
            .open(&ImageSource::Registry(r.clone()))
            .await
            .map_err(io)?;
        let config_type = image.manifest.config.media_type.as_str();
        if !WASM_CONFIGS.contains(&config_type) {
            if !IMAGE_CONFIGS.contains(&config_type) {
                return Err(bad(format!(
                    "config media type {config_type}: not a wasm artifact"
                )));
            }
            let config: serde_json::Value = serde_json::from_slice(&image.config().await.map_err(io)?)
                .map_err(|e| bad(format!("image config: {e}")))?;
            if config["architecture"] != "wasm" {
                return Err(bad(format!(
                    "an image for {}/{}, not a wasm artifact (a module in an ordinary image is run from its file)",
                    config["os"].as_str().unwrap_or("?"),
                    config["architecture"].as_str().unwrap_or("?")
                )));
            }
        }
        let layers: Vec<_> = image
            .manifest
            .layers
            .iter()
            .filter(|l| WASM_LAYERS.contains(&l.media_type.as_str()))
            .collect();
        let [layer] = layers[..] else {
            return Err(bad(format!(
                "{} wasm layers ({}): exactly one module is run",
                layers.len(),
                WASM_LAYERS.join(", ")
            )));
        };
        if layer.size > MAX_MODULE_BYTES {
            return Err(Refusal::new(
                Errno::EFBIG,
                format!(
                    "module={reference}: the module is over the size limit of {MAX_MODULE_BYTES} bytes"
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(layer.size as usize);
        // Checked against the layer's digest and size as it arrives.
        image.fetch_blob(layer, &mut bytes).await.map_err(io)?;
        Ok(Artifact {
            reference: reference.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            bytes,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_take_the_reference_and_every_insecure_registry() {
        let (m, i) = args("debug module=127.0.0.1:5000/a/b:v1,insecure_registry=127.0.0.1:5000 insecure_registry=[::1]:5000");
        assert_eq!(m.as_deref(), Some("127.0.0.1:5000/a/b:v1"));
        assert_eq!(i, ["127.0.0.1:5000", "[::1]:5000"]);
        assert_eq!(args("debug"), (None, vec![]));
    }

    #[test]
    fn a_registry_named_by_host_name_is_refused_before_any_lookup() {
        for r in ["localhost:5000/a:v1", "registry.example/a:v1", "busybox"] {
            let e = pull(r, &[]).err().unwrap();
            assert_eq!(e.errno, Errno::EINVAL, "{r}");
            assert!(
                e.to_string().contains("is not named by IP address"),
                "{r}: {e}"
            );
        }
    }
}
