//! Confidential images through containerd: the container asks for an image that rune's
//! `enclave-boot` pulls inside the enclave (`ENCLAVE_IMAGE` in its environment or the
//! `enclave.image` annotation, read by rune as `rune_core::image` documents).
//!
//! containerd pulls and unpacks the container's own image on the host and never asks a
//! shim to pull, so that image is only a boot image (any image: rune covers its root
//! with an empty memory-backed one) and the confidential image travels by reference.
//! The shim passes the bundle's annotations and environment to rune untouched and only:
//!
//! - fills in `ENCLAVE_RUNTIME_PATH` (the configured `liberpal-sim.so`, beside which
//!   `make install` puts `enclave-boot`) for a `sim` enclave that does not name its PAL,
//!   and `ENCLAVE_TYPE=sim` under `RUNE_CARRIER=sim`; it signs nothing, since the
//!   enclave's program is the boot program with its installed signed manifest;
//! - removes the `enclave.*` annotations from a CRI **sandbox** (pause) container:
//!   containerd's CRI plugin copies the pod annotations that match the runtime's
//!   `pod_annotations` globs into the sandbox's spec as well as into every container's
//!   (containerd `internal/cri/server/podsandbox/sandbox_run_linux.go`), and the pause
//!   container must stay a plain one.

use serde_json::Value;

use crate::carrier::{env_value, set_env_default, CarrierError, Outcome};
use crate::config::Config;

/// The annotation containerd's CRI plugin sets to `sandbox` or `container`
/// (containerd `internal/cri/annotations/annotations.go`, `ContainerType`).
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The prefix of every annotation rune reads.
pub const ENCLAVE_ANNOTATION_PREFIX: &str = "enclave.";

/// A setting as rune reads it (`rune_core::enclave::setting`): the variable when its
/// value is longer than one character, else the annotation; empty means unset.
pub(crate) fn setting(spec: &Value, var: &str, annotation: &str) -> Option<String> {
    env_value(spec, var)
        .filter(|v| v.len() > 1)
        .or_else(|| spec["annotations"][annotation].as_str().map(str::to_string))
        .filter(|v| !v.is_empty())
}

/// The confidential image a container asks for, if any.
pub fn requested(spec: &Value) -> Option<String> {
    setting(spec, "ENCLAVE_IMAGE", "enclave.image")
}

/// Whether containerd's CRI plugin made this spec for a pod's sandbox container.
pub fn is_sandbox(spec: &Value) -> bool {
    spec["annotations"][CRI_CONTAINER_TYPE].as_str() == Some("sandbox")
}

/// Removes the `enclave.*` annotations; returns what it removed.
pub fn strip_enclave_annotations(spec: &mut Value) -> Vec<String> {
    let Some(map) = spec["annotations"].as_object_mut() else {
        return Vec::new();
    };
    let removed: Vec<String> = map
        .keys()
        .filter(|k| k.starts_with(ENCLAVE_ANNOTATION_PREFIX))
        .cloned()
        .collect();
    for k in &removed {
        map.remove(k);
    }
    removed
}

/// Prepares an image container for rune (see the module's documentation). `carrier` is
/// the container's `RUNE_CARRIER`. rune itself checks the reference and the other
/// settings at `create`, so a mistake is still one line naming it.
pub fn prepare(
    config: &Config,
    carrier: &str,
    spec: &mut Value,
    reference: String,
) -> Result<Outcome, CarrierError> {
    match carrier {
        "" => {}
        "sim" => set_env_default(spec, "ENCLAVE_TYPE", "sim"),
        "occlum" => {
            return Err(CarrierError::Image(
                "RUNE_CARRIER=occlum cannot take enclave.image: confidential images run in sim enclaves (use RUNE_CARRIER=sim or ENCLAVE_TYPE=sim)".into(),
            ))
        }
        "graphene" => return Err(CarrierError::Graphene),
        other => return Err(CarrierError::Unknown(other.to_string())),
    }
    let sim = setting(spec, "ENCLAVE_TYPE", "enclave.type").as_deref() == Some("sim");
    if sim && setting(spec, "ENCLAVE_RUNTIME_PATH", "enclave.runtime.path").is_none() {
        let pal = config.enclave_runtime.sim.enclave_runtime_path.display();
        set_env_default(spec, "ENCLAVE_RUNTIME_PATH", &pal.to_string());
    }
    Ok(Outcome::Image { reference })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(spec: &Value) -> Vec<&str> {
        spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_image_comes_from_the_variable_else_the_annotation() {
        let a = json!({"annotations": {"enclave.image": "r/a:1"}, "process": {"env": []}});
        assert_eq!(requested(&a).as_deref(), Some("r/a:1"));
        // rune's rule: a one-character value counts as unset.
        let b = json!({"annotations": {"enclave.image": "r/a:1"},
                       "process": {"env": ["ENCLAVE_IMAGE=x"]}});
        assert_eq!(requested(&b).as_deref(), Some("r/a:1"));
        let c = json!({"annotations": {"enclave.image": "r/a:1"},
                       "process": {"env": ["ENCLAVE_IMAGE=r/b:2"]}});
        assert_eq!(requested(&c).as_deref(), Some("r/b:2"));
        assert_eq!(requested(&json!({"process": {"env": []}})), None);
    }

    #[test]
    fn a_sim_image_container_gets_the_configured_pal_only_when_it_names_none() {
        let config = Config::default();
        let pal = config.enclave_runtime.sim.enclave_runtime_path.display();
        let mut s = json!({"process": {"env": ["ENCLAVE_TYPE=sim"]}});
        prepare(&config, "", &mut s, "r/a:1".into()).unwrap();
        assert_eq!(
            env(&s),
            [
                "ENCLAVE_TYPE=sim".to_string(),
                format!("ENCLAVE_RUNTIME_PATH={pal}")
            ]
        );
        let mut s = json!({"annotations": {"enclave.type": "sim", "enclave.runtime.path": "/p.so"},
                           "process": {"env": []}});
        prepare(&config, "", &mut s, "r/a:1".into()).unwrap();
        assert!(env(&s).is_empty(), "{s}");
        let mut s = json!({"process": {"env": ["RUNE_CARRIER=sim"]}});
        prepare(&config, "sim", &mut s, "r/a:1".into()).unwrap();
        assert_eq!(
            env(&s),
            [
                "RUNE_CARRIER=sim".to_string(),
                "ENCLAVE_TYPE=sim".into(),
                format!("ENCLAVE_RUNTIME_PATH={pal}")
            ]
        );
        // No enclave type: left for rune to refuse in one line.
        let mut s = json!({"process": {"env": []}});
        prepare(&config, "", &mut s, "r/a:1".into()).unwrap();
        assert!(env(&s).is_empty());
        let e = prepare(&config, "occlum", &mut s, "r/a:1".into()).unwrap_err();
        assert!(e.to_string().contains("sim enclaves"), "{e}");
    }

    #[test]
    fn a_sandbox_loses_its_enclave_annotations_only() {
        let mut s = json!({"annotations": {
            CRI_CONTAINER_TYPE: "sandbox", "enclave.image": "r/a:1", "enclave.type": "sim",
            "io.kubernetes.cri.sandbox-id": "x"}});
        assert!(is_sandbox(&s));
        let mut removed = strip_enclave_annotations(&mut s);
        removed.sort();
        assert_eq!(removed, ["enclave.image", "enclave.type"]);
        assert_eq!(
            s["annotations"],
            json!({CRI_CONTAINER_TYPE: "sandbox", "io.kubernetes.cri.sandbox-id": "x"})
        );
        assert!(!is_sandbox(
            &json!({"annotations": {CRI_CONTAINER_TYPE: "container"}})
        ));
    }
}
