//! `containers-policy.json` parsing, strict as containers/image's
//! (containers/image:signature/policy_config.go, images.md §3.1): unknown or duplicated
//! keys and empty requirement lists reject the whole file, `default` is mandatory.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::json::Json;
use super::reference::DockerRef;

/// A parsed policy: the default requirements and per-transport scopes.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) default: Vec<Requirement>,
    /// transport name → scope (`""` = the transport's default) → requirements.
    pub(crate) transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One policy requirement (containers-policy.json(5) "type").
#[derive(Debug, Clone)]
pub(crate) enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy {
        keys: KeySource,
        identity: IdentityMatch,
    },
    SigstoreSigned {
        keys: KeySource,
        identity: IdentityMatch,
    },
}

impl Requirement {
    pub fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy { .. } => "signedBy",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// Where a requirement's trusted keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// `keyPath`/`keyPaths`: local paths or `kbs:///…` resource ids.
    Paths(Vec<String>),
    /// `keyData`/`keyDatas`: the key bytes themselves (base64-decoded).
    Data(Vec<Vec<u8>>),
}

/// `signedIdentity` (containers-policy.json(5)); default `matchRepoDigestOrExact`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdentityMatch {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    ExactReference(DockerRef),
    ExactRepository(DockerRef),
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl Policy {
    /// Parses a policy document; the error text is containers/image's where it has one.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Policy, String> {
        let root = Json::parse(bytes)?;
        let top = root.object("the policy", &["default", "transports"])?;
        let default = match top.get("default") {
            Some(v) => requirements(v)?,
            None => return Err("Default policy is missing".into()),
        };
        let mut transports = BTreeMap::new();
        if let Some(t) = top.get("transports") {
            for (name, scopes_json) in t.any_object("transports")?.iter() {
                let mut scopes = BTreeMap::new();
                for (scope, reqs) in scopes_json.any_object("a transport's scopes")?.iter() {
                    if name == "docker" && !scope.is_empty() {
                        // containers/image reports an invalid scope as an unknown key.
                        validate_docker_scope(scope)
                            .map_err(|_| format!("Unknown key {scope:?}"))?;
                    }
                    scopes.insert(scope.clone(), requirements(reqs)?);
                }
                transports.insert(name.clone(), scopes);
            }
        }
        Ok(Policy {
            default,
            transports,
        })
    }
}

/// A docker scope: a fully expanded reference or namespace (never a short name), or a
/// `*.domain` wildcard (containers/image:docker/policyconfiguration/naming.go).
fn validate_docker_scope(scope: &str) -> Result<(), String> {
    if let Some(domain) = scope.strip_prefix("*.") {
        let ok = !domain.is_empty()
            && domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        return if ok {
            Ok(())
        } else {
            Err("invalid wildcard scope".into())
        };
    }
    // A bare host[:port] is a valid namespace scope.
    if !scope.contains('/') {
        let r = DockerRef::parse_normalized(&format!("{scope}/x"))?;
        return if r.domain == scope {
            Ok(())
        } else {
            Err("not a host".into())
        };
    }
    let r = DockerRef::parse_normalized(scope)?;
    if r.to_string() != scope {
        return Err(format!("scope {scope:?} is not fully expanded"));
    }
    if r.tag.is_some() && r.digest.is_some() {
        return Err("both tag and digest".into());
    }
    Ok(())
}

fn requirements(v: &Json) -> Result<Vec<Requirement>, String> {
    let Json::Arr(items) = v else {
        return Err(format!("a list of requirements expected, got {}", v.kind()));
    };
    if items.is_empty() {
        return Err("List of verification policy requirements must not be empty".into());
    }
    items.iter().map(requirement).collect()
}

fn requirement(v: &Json) -> Result<Requirement, String> {
    // Look at "type" first so the unknown-key check can use that type's field list.
    let ty = match v {
        Json::Obj(m) => match m.iter().find(|(k, _)| k == "type") {
            Some((_, t)) => t.str("type")?.to_string(),
            None => String::new(),
        },
        other => {
            return Err(format!(
                "JSON object expected for a requirement, got {}",
                other.kind()
            ))
        }
    };
    match ty.as_str() {
        "insecureAcceptAnything" => {
            v.object("insecureAcceptAnything", &["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            v.object("reject", &["type"])?;
            Ok(Requirement::Reject)
        }
        "signedBy" => signed_by(v),
        "sigstoreSigned" => sigstore_signed(v),
        "signedBaseLayer" => {
            Err("policy requirement type \"signedBaseLayer\" is not supported".into())
        }
        other => Err(format!("Unknown policy requirement type {other:?}")),
    }
}

fn signed_by(v: &Json) -> Result<Requirement, String> {
    let o = v.object(
        "signedBy",
        &[
            "type",
            "keyType",
            "keyPath",
            "keyPaths",
            "keyData",
            "signedIdentity",
        ],
    )?;
    let key_type = o.req("keyType")?.str("keyType")?;
    match key_type {
        "GPGKeys" | "signedByGPGKeys" => {}
        "X509Certificates" | "signedByX509CAs" => {
            return Err(format!(
                "keyType {key_type:?} is not supported (only GPGKeys)"
            ));
        }
        other => return Err(format!("Unrecognized keyType value {other:?}")),
    }
    let keys = match (o.get("keyPath"), o.get("keyPaths"), o.get("keyData")) {
        (Some(p), None, None) => KeySource::Paths(vec![non_empty_str(p, "keyPath")?]),
        (None, Some(ps), None) => KeySource::Paths(str_list(ps, "keyPaths")?),
        (None, None, Some(d)) => KeySource::Data(vec![b64(d, "keyData")?]),
        (None, None, None) => {
            return Err("Exactly one of keyPath, keyPaths and keyData must be specified, none of them present".into());
        }
        _ => {
            return Err("Exactly one of keyPath, keyPaths and keyData must be specified, more than one present".into());
        }
    };
    let identity = match o.get("signedIdentity") {
        Some(i) => identity(i)?,
        None => IdentityMatch::MatchRepoDigestOrExact,
    };
    Ok(Requirement::SignedBy { keys, identity })
}

fn sigstore_signed(v: &Json) -> Result<Requirement, String> {
    let o = v.object(
        "sigstoreSigned",
        &[
            "type",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
            "fulcio",
            "pki",
            "rekorPublicKeyPath",
            "rekorPublicKeyPaths",
            "rekorPublicKeyData",
            "rekorPublicKeyDatas",
            "signedIdentity",
        ],
    )?;
    let sources: Vec<&str> = [
        "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki",
    ]
    .into_iter()
    .filter(|k| o.get(k).is_some())
    .collect();
    if sources.len() != 1 {
        return Err(format!(
            "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be specified, {} present",
            sources.len()
        ));
    }
    let rekor = [
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    ]
    .into_iter()
    .filter(|k| o.get(k).is_some())
    .count();
    if rekor > 1 {
        return Err("at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas can be used".into());
    }
    // Parsed so the file is checked whole, then refused: accepting them silently would
    // skip a check the policy's author asked for.
    match sources[0] {
        "fulcio" | "pki" => {
            return Err(format!(
                "sigstoreSigned with {} is not supported (key-based only)",
                sources[0]
            ));
        }
        _ if rekor > 0 => {
            return Err(
                "sigstoreSigned with a rekor public key is not supported (key-based only)".into(),
            );
        }
        _ => {}
    }
    let keys = match sources[0] {
        "keyPath" => KeySource::Paths(vec![non_empty_str(o.req("keyPath")?, "keyPath")?]),
        "keyPaths" => KeySource::Paths(str_list(o.req("keyPaths")?, "keyPaths")?),
        "keyData" => KeySource::Data(vec![b64(o.req("keyData")?, "keyData")?]),
        _ => {
            let Json::Arr(items) = o.req("keyDatas")? else {
                return Err("keyDatas must be a list of strings".into());
            };
            if items.is_empty() {
                return Err("keyDatas must not be empty".into());
            }
            KeySource::Data(
                items
                    .iter()
                    .map(|d| b64(d, "keyDatas"))
                    .collect::<Result<_, _>>()?,
            )
        }
    };
    let identity = match o.get("signedIdentity") {
        Some(i) => identity(i)?,
        None => IdentityMatch::MatchRepoDigestOrExact,
    };
    Ok(Requirement::SigstoreSigned { keys, identity })
}

fn identity(v: &Json) -> Result<IdentityMatch, String> {
    let ty = match v {
        Json::Obj(m) => m
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, t)| t.str("type"))
            .transpose()?,
        other => {
            return Err(format!(
                "JSON object expected for signedIdentity, got {}",
                other.kind()
            ))
        }
    };
    let ty = ty.unwrap_or_default();
    match ty {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
            v.object(ty, &["type"])?;
            Ok(match ty {
                "matchExact" => IdentityMatch::MatchExact,
                "matchRepoDigestOrExact" => IdentityMatch::MatchRepoDigestOrExact,
                _ => IdentityMatch::MatchRepository,
            })
        }
        "exactReference" => {
            let o = v.object(ty, &["type", "dockerReference"])?;
            let s = o.req("dockerReference")?.str("dockerReference")?;
            let r = DockerRef::parse_normalized(s)
                .map_err(|e| format!("Invalid format of dockerReference {s:?}: {e}"))?;
            if r.is_name_only() {
                return Err(format!(
                    "dockerReference {s:?} contains neither a tag nor digest"
                ));
            }
            Ok(IdentityMatch::ExactReference(r))
        }
        "exactRepository" => {
            let o = v.object(ty, &["type", "dockerRepository"])?;
            let s = o.req("dockerRepository")?.str("dockerRepository")?;
            let r = DockerRef::parse_normalized(s)
                .map_err(|e| format!("Invalid format of dockerRepository {s:?}: {e}"))?;
            Ok(IdentityMatch::ExactRepository(r))
        }
        "remapIdentity" => {
            let o = v.object(ty, &["type", "prefix", "signedPrefix"])?;
            let prefix = o.req("prefix")?.str("prefix")?.to_string();
            let signed_prefix = o.req("signedPrefix")?.str("signedPrefix")?.to_string();
            for p in [&prefix, &signed_prefix] {
                validate_remap_prefix(p)?;
            }
            Ok(IdentityMatch::RemapIdentity {
                prefix,
                signed_prefix,
            })
        }
        other => Err(format!("Unknown policy reference match type {other:?}")),
    }
}

/// A remap prefix is a `host[:port]` or a `host[:port]/path` name with an explicit host.
fn validate_remap_prefix(p: &str) -> Result<(), String> {
    let ok = if p.contains('/') {
        DockerRef::parse_normalized(p).is_ok_and(|r| {
            r.is_name_only() && p.starts_with(&format!("{}/", r.domain)) && !p.ends_with('/')
        })
    } else {
        validate_docker_scope(p).is_ok() && !p.starts_with("*.")
    };
    if ok {
        Ok(())
    } else {
        Err(format!("prefix {p:?} is not valid"))
    }
}

fn non_empty_str(v: &Json, what: &str) -> Result<String, String> {
    let s = v.str(what)?;
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    Ok(s.to_string())
}

fn str_list(v: &Json, what: &str) -> Result<Vec<String>, String> {
    let Json::Arr(items) = v else {
        return Err(format!(
            "{what} must be a list of strings, got {}",
            v.kind()
        ));
    };
    if items.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    items.iter().map(|i| non_empty_str(i, what)).collect()
}

/// Go's `[]byte` JSON encoding: standard base64 with padding.
fn b64(v: &Json, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(v.str(what)?)
        .map_err(|e| format!("{what} is not valid base64: {e}"))
}
