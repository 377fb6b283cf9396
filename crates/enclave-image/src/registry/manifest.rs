//! Image manifests and indexes (OCI image-spec `manifest.md`, `image-index.md`; Docker
//! schema 2 has the same shape), parsed from untrusted bytes, and platform selection.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::reference::check_digest;
use super::Error;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest type we accept, for the `Accept` header (images.md §5: registry 2.8.2
/// answers 404 for an OCI manifest not named there).
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] =
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor (OCI image-spec `descriptor.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` (or `sha512:`) of the referenced bytes.
    pub digest: String,
    /// Size of the referenced bytes.
    pub size: u64,
    /// Foreign locations. Never contacted by this module (CVE-2020-15157: they could
    /// receive registry credentials; and the enclave talks to its registry only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations (ocicrypt's `org.opencontainers.image.enc.*` live here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type (OCI 1.1), kept for completeness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// An image manifest: config and layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// `OCI_MANIFEST` or `DOCKER_MANIFEST` (may be absent in OCI manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index / manifest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// `OCI_INDEX` or `DOCKER_LIST` (may be absent in OCI indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, usually one per platform.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Index annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A platform (OCI image-index `platform`): `os`, `architecture` and optional `variant`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOOS value, e.g. `linux`.
    pub os: String,
    /// GOARCH value, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8` for arm64, `v7` for arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version` (Windows), ignored in selection.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The running machine's platform in Go's names (what image indexes use).
    pub fn current() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            os_version: None,
        }
    }

    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Config(format!(
                "invalid platform {s:?} (want os/arch[/variant])"
            )));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        })
    }

    /// The platform an image config declares (OCI image-spec `config.md`: `os` and
    /// `architecture` are required, `variant` optional). `what` names the config in the
    /// error ([`Error::Manifest`]) when they are missing or the JSON does not parse.
    pub fn from_config(what: &str, config: &[u8]) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            os: String,
            #[serde(default)]
            architecture: String,
            variant: Option<String>,
        }
        let bad = |reason: String| Error::Manifest {
            what: what.to_string(),
            reason,
        };
        let p: Probe = serde_json::from_slice(config).map_err(|e| bad(e.to_string()))?;
        if p.os.is_empty() || p.architecture.is_empty() {
            return Err(bad("no os or architecture (both are required)".into()));
        }
        Ok(Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant.filter(|v| !v.is_empty()),
            os_version: None,
        })
    }

    /// Whether an index entry's platform serves `self`: same os and architecture, and
    /// the same variant when both name one (arm64 entries often omit `v8`).
    pub(crate) fn accepts(&self, entry: &Platform) -> bool {
        self.os == entry.os
            && self.architecture == entry.architecture
            && match (&self.variant, &entry.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a manifest endpoint returned, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest.
    Image(Box<Manifest>),
    /// An index of manifests.
    Index(Index),
}

/// Parses manifest bytes (`media_type` from `Content-Type` or the referring descriptor,
/// if known). The body's `mediaType`, when present, must agree with it.
///
/// Errors: [`Error::Manifest`] naming `what` (e.g. the digest) and the JSON problem.
pub fn parse_manifest(
    what: &str,
    media_type: Option<&str>,
    bytes: &[u8],
) -> Result<ManifestKind, Error> {
    let bad = |reason: String| Error::Manifest {
        what: what.to_string(),
        reason,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion {:?} is not 2 (schema 1 manifests are not supported)",
            probe.schema_version
        )));
    }
    let header = media_type.filter(|t| ACCEPTED_MANIFEST_TYPES.contains(t));
    if let (Some(h), Some(b)) = (header, probe.media_type.as_deref()) {
        if h != b {
            return Err(bad(format!(
                "mediaType {b:?} differs from the announced {h:?}"
            )));
        }
    }
    let kind = probe.media_type.as_deref().or(header);
    let is_index = match kind {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(bad(format!("unsupported manifest media type {other:?}"))),
        None => probe.manifests.is_some() && probe.config.is_none(),
    };
    let check = |d: &Descriptor| check_digest(&d.digest).map_err(bad);
    if is_index {
        let index: Index = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        index.manifests.iter().try_for_each(check)?;
        Ok(ManifestKind::Index(index))
    } else {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        check(&m.config)?;
        m.layers.iter().try_for_each(check)?;
        Ok(ManifestKind::Image(Box::new(m)))
    }
}

/// The media type a `Content-Type` header names: its parameters (`; charset=…`) and the
/// blanks around it dropped, as the distribution spec asks clients to ignore them.
pub fn content_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Checks a manifest a registry answered against the answer's `Content-Type` (`None`
/// when there was none), as the distribution spec's "Pulling manifests" asks (images.md
/// §5): "If the manifest has a `mediaType` field, clients SHOULD reject unless the
/// `mediaType` field's value matches the type specified by the `Content-Type` header"
/// (header parameters ignored; media types compare case-insensitively, RFC 6838 §4.2).
/// So a registry cannot serve one kind of manifest as another, and a missing header
/// matches nothing. A body without `mediaType` passes: the header then announces its
/// kind ([`parse_manifest`] with [`content_media_type`]). A body that is not JSON
/// passes too; [`parse_manifest`] names its fault.
///
/// Errors: [`Error::Manifest`] naming `what`, the body's type and the header.
pub fn check_content_type(
    what: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let Ok(Probe {
        media_type: Some(body),
    }) = serde_json::from_slice::<Probe>(bytes)
    else {
        return Ok(());
    };
    let reason = match content_type {
        Some(h) if content_media_type(h).eq_ignore_ascii_case(&body) => return Ok(()),
        Some(h) => format!(
            "mediaType {body:?} differs from the registry's Content-Type {:?}",
            truncated(h)
        ),
        None => format!("mediaType {body:?} but the registry sent no Content-Type"),
    };
    Err(Error::Manifest {
        what: what.to_string(),
        reason,
    })
}

/// At most 100 characters of what a server sent, so the error stays one short line.
fn truncated(s: &str) -> String {
    if s.chars().count() > 100 {
        s.chars().take(100).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

/// Chooses the index entry for `want`: the first image-manifest entry whose platform
/// accepts it (an exact variant match wins over an entry without variant).
///
/// Errors: [`Error::NoPlatform`] listing the platforms found.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, Error> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
        .filter(|d| d.platform.as_ref().is_some_and(|p| want.accepts(p)))
        .collect();
    let exact = candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == want.variant.as_ref());
    if let Some(d) = exact.or(candidates.first()) {
        return Ok(d);
    }
    let found: Vec<String> = index
        .manifests
        .iter()
        .map(|d| match &d.platform {
            Some(p) => p.to_string(),
            None => format!("{} without platform", d.digest),
        })
        .collect();
    Err(Error::NoPlatform {
        platform: want.to_string(),
        found: if found.is_empty() {
            "nothing".into()
        } else {
            found.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, d: char) -> String {
        let p = Platform::parse(p).unwrap();
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{}}}"#,
            d.to_string().repeat(64),
            serde_json::to_string(&p).unwrap()
        )
    }

    #[test]
    fn selects_platform_and_names_what_was_found() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{},{}]}}"#,
            entry("linux/arm/v6", 'a'),
            entry("linux/arm64", 'b'),
            entry("linux/arm/v7", 'c')
        );
        let ManifestKind::Index(ix) = parse_manifest("t", None, json.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let pick = |p| select_platform(&ix, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert!(pick("linux/arm/v7").unwrap().starts_with("sha256:c"));
        assert!(pick("linux/arm64/v8").unwrap().starts_with("sha256:b"));
        let e = pick("linux/amd64").unwrap_err().to_string();
        assert_eq!(
            e,
            "no manifest for linux/amd64 in the index (found: linux/arm/v6, linux/arm64, linux/arm/v7)"
        );
    }

    #[test]
    fn content_type_must_name_the_body_media_type() {
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#);
        let ok = |h: Option<&str>, b: &str| check_content_type("m", h, b.as_bytes());
        // distribution-spec: parameters ignored; RFC 6838: case-insensitive.
        for h in [
            OCI_MANIFEST,
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
            " Application/VND.oci.image.manifest.v1+JSON ",
        ] {
            assert!(ok(Some(h), &m).is_ok(), "{h}");
        }
        let e = ok(Some(OCI_INDEX), &m).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("manifest m: mediaType \"{OCI_MANIFEST}\" differs from the registry's Content-Type \"{OCI_INDEX}\"")
        );
        assert!(ok(Some(DOCKER_MANIFEST), &m).is_err());
        assert!(ok(Some("application/json"), &m).is_err());
        let e = ok(None, &m).unwrap_err().to_string();
        assert!(e.ends_with("but the registry sent no Content-Type"), "{e}");
        let long = "x".repeat(5000);
        let e = ok(Some(&long), &m).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
        // Without mediaType in the body the header only announces the kind.
        assert!(ok(None, r#"{"schemaVersion":2}"#).is_ok());
        assert!(ok(Some("text/plain"), r#"{"schemaVersion":2}"#).is_ok());
        assert!(ok(None, "not json").is_ok());
        assert_eq!(content_media_type("a/b ; q=1"), "a/b");
    }

    #[test]
    fn refuses_inconsistent_or_bad_manifests() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"sha256:{}","size":2}},"layers":[]}}"#,
            "0".repeat(64)
        );
        assert!(matches!(
            parse_manifest("m", Some(OCI_MANIFEST), m.as_bytes()).unwrap(),
            ManifestKind::Image(_)
        ));
        let e = parse_manifest("m", Some(OCI_INDEX), m.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("differs from the announced"), "{e}");
        let e = parse_manifest("m", None, br#"{"schemaVersion":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schemaVersion"), "{e}");
        let bad = m.replace(&"0".repeat(64), "zz");
        assert!(parse_manifest("m", None, bad.as_bytes()).is_err());
        let neg = m.replace("\"size\":2", "\"size\":-2");
        assert!(parse_manifest("m", None, neg.as_bytes()).is_err());
    }
}
