//! Signed reference values for process enclaves: the formats one crate defines for the
//! tool that computes and signs them (`shelter rv`) and the broker that checks and
//! stores them (verdictd's RVPS role).
//!
//! A **bundle** is a DSSE envelope ([`dsse`]) whose payload (type
//! [`IN_TOTO_PAYLOAD_TYPE`]) is an in-toto Statement v1 (`in-toto/attestation:
//! spec/v1/statement.md`):
//! - `subject`: the image, by its manifest digest (`{"sha256": hex}`);
//! - `predicateType` [`PREDICATE_TYPE`]; the [`Predicate`] says which image, which PAL
//!   (and version, and measurement algorithm), which enclave options were measured, and
//!   carries the reference values as Trustee RVPS `sample` JSON (`reference_values`,
//!   name → list of lowercase hex) and as a CoRIM with reference triples ([`corim`],
//!   base64: what Trustee's `corim` extractor reads) — either may be left out (`{}`,
//!   `""`), not both — plus `issued` / `expires` (RFC 3339, UTC).
//!
//! A broker stores [`Opened::values`]: the `sample` values, plus each CoRIM value under
//! Trustee's id and, for our own CoRIMs, under its `sample` name too
//! ([`corim::ReferenceValue::sample_name`]), so a bundle carrying only a CoRIM
//! provisions what a policy queries. Where both forms name a value they must agree.
//!
//! Brokers receive a bundle as Trustee's RVPS `Message`
//! (`confidential-containers/trustee:rvps/src/lib.rs`) with a type of our own:
//! `{"version": "0.1.0", "type": "dsse", "payload": base64(envelope JSON)}` — Trustee's
//! `sample` and `corim` types carry no signature, and Trustee does not honour expiry;
//! [`open`] does both before anything is stored.

pub mod corim;
pub mod dsse;
pub mod keys;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use keys::{SigningKey, TrustedKey};

/// The DSSE payload type of an in-toto statement (`spec/v1/envelope.md`).
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Our predicate: reference values of a process enclave computed from an OCI image.
pub const PREDICATE_TYPE: &str =
    "https://github.com/inclavare-containers/inclavare-containers-rs/reference-values/v1";
/// Trustee's RVPS message version.
pub const MESSAGE_VERSION: &str = "0.1.0";
/// The RVPS message type of a signed bundle (ours; Trustee has `sample`, `swid`, `corim`).
pub const MESSAGE_TYPE: &str = "dsse";
/// At most this many reference values in one bundle.
pub const MAX_VALUES: usize = 1024;
/// A reference value's name is at most this many bytes.
pub const MAX_NAME: usize = 256;

/// Errors; each displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum RvError {
    /// A PEM key file is not a usable key.
    #[error("key: {0}")]
    Key(String),
    /// The RVPS message around the envelope is malformed.
    #[error("reference-value message: {0}")]
    Message(String),
    /// The DSSE envelope is malformed.
    #[error("DSSE envelope: {0}")]
    Envelope(String),
    /// No signature verifies against a trusted key.
    #[error("DSSE signature: {0}")]
    Signature(String),
    /// The signed statement is not ours or malformed.
    #[error("in-toto statement: {0}")]
    Statement(String),
    /// The bundle's CoRIM cannot be read, or disagrees with its `sample` values.
    #[error("{0}")]
    Corim(String),
    /// The bundle's validity ended.
    #[error("the reference-value bundle expired at {expires} (now {now})")]
    Expired {
        /// RFC 3339.
        expires: String,
        /// RFC 3339.
        now: String,
    },
}

/// One subject of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// What the digest names (the image reference).
    pub name: String,
    /// DigestSet: lowercase algorithm → lowercase hex.
    pub digest: BTreeMap<String, String>,
}

/// The image the values were computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// As given to the tool (`docker://…`, `oci:DIR:TAG`, `oci-archive:FILE`).
    pub source: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// `rootfs.diff_ids`, in order.
    pub diff_ids: Vec<String>,
    /// The platform the manifest was picked for (`os/arch[/variant]`).
    pub platform: String,
}

/// The enclave configuration that entered the measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveInfo {
    /// The TEE (`sim`).
    pub tee: String,
    /// The PAL (`liberpal-sim`).
    pub pal: String,
    /// Its version.
    pub pal_version: String,
    /// The measurement algorithm's name and version (the PAL's domain tag).
    pub measurement: String,
    /// The measured program's path in the container.
    pub entrypoint: String,
    /// Fixed arguments that were measured (empty: any).
    pub args: Vec<String>,
    /// The signed manifest's path in the image, when the enclave has one.
    pub manifest: Option<String>,
    /// Whether the enclave's reports say debug.
    pub debug: bool,
    /// `sha384:<hex>` of the program's bytes.
    pub program_digest: String,
}

/// The tool that produced the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// e.g. `shelter`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The predicate of [`PREDICATE_TYPE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    /// Which image.
    pub image: ImageInfo,
    /// Which PAL and options.
    pub enclave: EnclaveInfo,
    /// Trustee `sample` form: name → value (a list of lowercase hex here); may be empty
    /// when `corim` holds the values.
    #[serde(default)]
    pub reference_values: BTreeMap<String, Value>,
    /// Base64 of the CoRIM ([`corim::Corim::to_cbor`]) holding the same digests; may be
    /// empty when `reference_values` holds them.
    #[serde(default)]
    pub corim: String,
    /// RFC 3339 UTC.
    pub issued: String,
    /// RFC 3339 UTC; brokers refuse the bundle from then on, and forget its values.
    pub expires: String,
    /// Who made it.
    pub tool: Tool,
}

/// An in-toto Statement v1 with our predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// The image.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Predicate,
}

impl Statement {
    /// A statement about the image whose manifest digest is `sha256:<hex>`.
    pub fn new(subject_name: &str, predicate: Predicate) -> Result<Statement, RvError> {
        let hex = predicate
            .image
            .manifest_digest
            .strip_prefix("sha256:")
            .filter(|h| is_hex(h, 64))
            .ok_or_else(|| {
                RvError::Statement(format!(
                    "manifest digest {:?} is not sha256:<64 hex>",
                    predicate.image.manifest_digest
                ))
            })?;
        Ok(Statement {
            kind: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: subject_name.to_string(),
                digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate,
        })
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An RFC 3339 UTC timestamp with seconds (`2026-08-21T10:00:00Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Trustee's RVPS message `{"version": "0.1.0", "type": kind, "payload": base64(payload)}`.
pub fn message(kind: &str, payload: &[u8]) -> Value {
    serde_json::json!({"version": MESSAGE_VERSION, "type": kind, "payload": STANDARD.encode(payload)})
}

/// Signs `statement` into a DSSE envelope with `key`.
pub fn seal(statement: &Statement, key: &SigningKey) -> dsse::Envelope {
    let body = serde_json::to_vec(statement).expect("a statement serialises");
    dsse::Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &body, key)
}

/// A bundle whose signature and validity were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The signed statement.
    pub statement: Statement,
    /// What to store: the `sample` values and the CoRIM's ([`corim_values`]).
    pub values: BTreeMap<String, Value>,
    /// When its values stop counting.
    pub expires: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Message {
    version: String,
    #[serde(rename = "type")]
    kind: String,
    payload: String,
}

/// Checks an RVPS message of type [`MESSAGE_TYPE`] (`body`): the envelope's signature
/// against `trusted` (any one key), its payload type, the statement's types and
/// subject, the values' shape, then that `now` is before `expires`. Nothing is returned
/// unless every check passed, so a caller stores only verified, current values.
pub fn open(body: &[u8], trusted: &[TrustedKey], now: DateTime<Utc>) -> Result<Opened, RvError> {
    let m: Message = serde_json::from_slice(body)
        .map_err(|e| RvError::Message(format!("not JSON {{version, type, payload}}: {e}")))?;
    if m.version != MESSAGE_VERSION {
        return Err(RvError::Message(format!(
            "Version unmatched! Need {MESSAGE_VERSION}, given {}.",
            m.version
        )));
    }
    if m.kind != MESSAGE_TYPE {
        return Err(RvError::Message(format!(
            "type {:?} is not a signed bundle ({MESSAGE_TYPE:?})",
            m.kind
        )));
    }
    let envelope = dsse::decode_b64(&m.payload)
        .ok_or_else(|| RvError::Message("payload is not base64".into()))?;
    open_envelope(&envelope, trusted, now)
}

/// [`open`] for the DSSE envelope's JSON itself.
pub fn open_envelope(
    envelope: &[u8],
    trusted: &[TrustedKey],
    now: DateTime<Utc>,
) -> Result<Opened, RvError> {
    let envelope: dsse::Envelope = serde_json::from_slice(envelope)
        .map_err(|e| RvError::Envelope(format!("not a DSSE envelope: {e}")))?;
    // DSSE's order: the signature, then the type, then the body is parsed.
    let body = envelope.verify(trusted)?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(RvError::Envelope(format!(
            "payloadType {:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}",
            envelope.payload_type
        )));
    }
    let bad = |s: String| RvError::Statement(s);
    let statement: Statement = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    if statement.kind != STATEMENT_TYPE {
        return Err(bad(format!(
            "_type {:?}, expected {STATEMENT_TYPE:?}",
            statement.kind
        )));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(bad(format!(
            "predicateType {:?}, expected {PREDICATE_TYPE:?}",
            statement.predicate_type
        )));
    }
    let p = &statement.predicate;
    let subject_ok = statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|h| is_hex(h, 64) && p.image.manifest_digest == format!("sha256:{h}"))
    });
    if !subject_ok {
        return Err(bad(format!(
            "no subject has the image's manifest digest {}",
            p.image.manifest_digest
        )));
    }
    let values = corim_values(&p.reference_values, &p.corim)?;
    if values.is_empty() || values.len() > MAX_VALUES {
        return Err(bad(format!(
            "{} reference values (1 to {MAX_VALUES})",
            values.len()
        )));
    }
    if let Some(name) = values.keys().find(|n| n.is_empty() || n.len() > MAX_NAME) {
        return Err(bad(format!(
            "reference value name {:?} is empty or over {MAX_NAME} bytes",
            name.chars().take(40).collect::<String>()
        )));
    }
    let time = |field: &str, s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| bad(format!("{field} {s:?} is not RFC 3339: {e}")))
    };
    let issued = time("issued", &p.issued)?;
    let expires = time("expires", &p.expires)?;
    if expires <= issued {
        return Err(bad(format!(
            "expires {} is not after issued {}",
            p.expires, p.issued
        )));
    }
    if now >= expires {
        return Err(RvError::Expired {
            expires: timestamp(expires),
            now: timestamp(now),
        });
    }
    Ok(Opened {
        statement,
        values,
        expires,
    })
}

/// The values a bundle provisions: `sample` plus those of `corim` (base64, may be
/// empty), each under Trustee's id and its `sample` name if it has one. A CoRIM value
/// whose `sample` name the `sample` form also gives must be the same digests (any
/// order, any case): one signed document does not say two things.
pub fn corim_values(
    sample: &BTreeMap<String, Value>,
    corim: &str,
) -> Result<BTreeMap<String, Value>, RvError> {
    let mut values = sample.clone();
    if corim.is_empty() {
        return Ok(values);
    }
    let bytes = STANDARD
        .decode(corim)
        .map_err(|_| RvError::Corim("CoRIM: not standard base64".into()))?;
    let digests = |v: &Value| -> Option<Vec<String>> {
        let mut l: Vec<String> = v
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_ascii_lowercase))
            .collect::<Option<_>>()?;
        l.sort();
        Some(l)
    };
    for rv in corim::decode(&bytes).map_err(|e| RvError::Corim(e.to_string()))? {
        if let Some(name) = &rv.sample_name {
            if let Some(given) = sample.get(name) {
                if digests(given).is_none() || digests(given) != digests(&rv.value) {
                    return Err(RvError::Corim(format!(
                        "CoRIM: {} is {}, the sample value {name} is {given}",
                        rv.id, rv.value
                    )));
                }
            }
            values.insert(name.clone(), rv.value.clone());
        }
        values.insert(rv.id, rv.value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
