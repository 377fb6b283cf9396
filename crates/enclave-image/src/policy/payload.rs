//! The signature payload JSON shared by simple signing and cosign
//! (containers/image:docs/containers-signature.5.md; sigstore/cosign:specs/SIGNATURE_SPEC.md):
//! `{"critical":{"type","image":{"docker-manifest-digest"},"identity":{"docker-reference"}},"optional":{…}}`.
//! Parsed strictly, only after the signature over these exact bytes verified.

use super::json::Json;

/// `critical.type` of a simple-signing payload.
pub const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";
/// `critical.type` of a cosign payload.
pub const COSIGN_TYPE: &str = "cosign container image signature";

/// The claims of a verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`, `algo:hex`.
    pub manifest_digest: String,
    /// `critical.identity.docker-reference` as signed (not normalized).
    pub docker_reference: String,
    /// `optional.creator`, when present.
    pub creator: Option<String>,
    /// `optional.timestamp`, seconds since the Unix epoch, when present.
    pub timestamp: Option<i64>,
}

/// Parses a payload whose `critical.type` must be `expected_type`. Unknown or duplicated
/// members anywhere in `critical` reject it; unknown `optional` members are allowed.
/// `optional` is mandatory for simple signing and may be absent or `null` for cosign.
///
/// # Errors
/// One line naming the offending member.
pub fn parse_payload(bytes: &[u8], expected_type: &str) -> Result<Payload, String> {
    let bad = |m: String| format!("Invalid signature payload: {m}");
    let root = Json::parse(bytes).map_err(bad)?;
    let top = root
        .object("the payload", &["critical", "optional"])
        .map_err(bad)?;
    let critical = top.req("critical").map_err(bad)?;
    let c = critical
        .object("critical", &["type", "image", "identity"])
        .map_err(bad)?;
    let ty = c
        .req("type")
        .and_then(|t| t.str("critical.type"))
        .map_err(bad)?;
    if ty != expected_type {
        return Err(format!(
            "Unrecognized signature type {ty:?} (expected {expected_type:?})"
        ));
    }
    let image = c
        .req("image")
        .map_err(bad)?
        .object("critical.image", &["docker-manifest-digest"])
        .map_err(bad)?;
    let manifest_digest = image
        .req("docker-manifest-digest")
        .and_then(|d| d.str("docker-manifest-digest"))
        .map_err(bad)?
        .to_string();
    super::reference::check_digest(&manifest_digest).map_err(bad)?;
    let identity = c
        .req("identity")
        .map_err(bad)?
        .object("critical.identity", &["docker-reference"])
        .map_err(bad)?;
    let docker_reference = identity
        .req("docker-reference")
        .and_then(|d| d.str("docker-reference"))
        .map_err(bad)?
        .to_string();

    let (mut creator, mut timestamp) = (None, None);
    match top.get("optional") {
        None if expected_type == SIMPLE_SIGNING_TYPE => {
            return Err(bad("Key \"optional\" missing in a JSON object".into()));
        }
        None | Some(Json::Null) if expected_type != SIMPLE_SIGNING_TYPE => {}
        Some(o) => {
            let o = o.any_object("optional").map_err(bad)?;
            if let Some(v) = o.get("creator") {
                creator = Some(v.str("optional.creator").map_err(bad)?.to_string());
            }
            if let Some(v) = o.get("timestamp") {
                match v {
                    Json::Int(t) => timestamp = Some(*t),
                    // Go decodes it as a float and accepts any integral value.
                    Json::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                        timestamp = Some(*f as i64)
                    }
                    other => {
                        return Err(bad(format!(
                            "optional.timestamp must be an integer, got {}",
                            other.kind()
                        )));
                    }
                }
            }
        }
        None => unreachable!("both None arms above cover every type"),
    }
    Ok(Payload {
        manifest_digest,
        docker_reference,
        creator,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn doc(critical_extra: &str, optional: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{D}"}},"identity":{{"docker-reference":"example.com/a:b"}}{critical_extra}}},"optional":{optional}}}"#
        )
        .into_bytes()
    }

    // Rules from containers-signature(5): unknown critical members reject, optional is free.
    #[test]
    fn strict_critical_free_optional() {
        let p = parse_payload(
            &doc(
                "",
                r#"{"creator":"atomic 5.23.1","timestamp":1483228800,"x":1}"#,
            ),
            SIMPLE_SIGNING_TYPE,
        )
        .unwrap();
        assert_eq!(p.manifest_digest, D);
        assert_eq!(p.timestamp, Some(1483228800));
        let e = parse_payload(&doc(r#","extra":1"#, "{}"), SIMPLE_SIGNING_TYPE).unwrap_err();
        assert!(e.contains(r#"Unknown key "extra""#), "{e}");
        let e = parse_payload(&doc("", "{}"), COSIGN_TYPE).unwrap_err();
        assert!(e.starts_with("Unrecognized signature type"), "{e}");
        assert!(parse_payload(&doc("", "null"), SIMPLE_SIGNING_TYPE).is_err());
        let cosign = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}"}},"optional":null}}"#
        );
        assert!(parse_payload(cosign.as_bytes(), COSIGN_TYPE).is_ok());
        // The spec example's capitalised key is not the real one.
        let typo = cosign.replace("docker-manifest-digest", "Docker-manifest-digest");
        assert!(parse_payload(typo.as_bytes(), COSIGN_TYPE).is_err());
    }
}
