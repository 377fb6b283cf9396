//! Reading a CoRIM's reference triples the way Trustee's RVPS `corim` extractor does
//! (`confidential-containers/trustee:rvps/src/extractors/corim/mod.rs` on
//! `veraison/corim-rs`; CDDL `ietf-rats-wg/draft-ietf-rats-corim:cddl/{corim-map,
//! concise-mid-tag}.cddl`; measurement.md §3.3):
//!
//! 1. leading tags 500 / 502 are dropped (Trustee's `strip_outer_tags`);
//! 2. tag 501 is an unsigned corim-map; tag 18 a COSE_Sign1 whose payload is the
//!    tag-501 map. Its COSE signature is **not** checked (neither does Trustee): a
//!    CoRIM counts here only inside a DSSE bundle whose signature was checked, or
//!    through the admin API as an unsigned Trustee message;
//! 3. each tag 506 of corim-map key 1 is a CoMID (`bstr .cbor concise-mid-tag`); tags
//!    505 (CoSWID), 508 (CoTL) and others are skipped;
//! 4. of a CoMID's triples only key 0, the reference triples, is read:
//!    `[environment-map, [+ measurement-map]]`.
//!
//! Each measurement with digests gives the value named `vendor/model/mkey/name/serial/
//! digests` (the components present, mkey as text, `claim<N>` for a uint, hyphenated
//! lowercase for a uuid) = the list of its digests in lowercase hex (algorithms
//! dropped, as Trustee does); a tag-560 raw value gives `…/raw_bytes` = one hex string.
//! Ids that repeat keep the last value, as in Trustee's store.
//!
//! Everything read is type-checked, so a malformed CoRIM is refused with one line
//! naming the item (`tags[0] CoMID: reference-triples[0] measurements[1] mval
//! digests[0]: a sha-384 digest is 32 bytes, not 48`); fields nobody reads are only
//! required to be well-formed CBOR.

use ciborium::Value;
use serde_json::json;

/// Input bound: a CoRIM longer than this is refused before decoding.
pub const MAX_BYTES: usize = 1 << 20;
/// Nesting bound handed to the CBOR decoder (a CoMID nests about ten deep).
const MAX_DEPTH: usize = 32;
/// At most this many values from one CoRIM (as many as a bundle holds).
const MAX_VALUES: usize = crate::MAX_VALUES;
/// The class vendor of our own CoRIMs (`shelter rv bundle`): their values also get the
/// name of the claim they are compared with ([`ReferenceValue::sample_name`]).
pub const VENDOR: &str = "inclavare";

/// A CoRIM that cannot be read; one line.
#[derive(Debug, thiserror::Error)]
#[error("CoRIM: {0}")]
pub struct CorimError(String);

/// One reference value, as Trustee's extractor stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValue {
    /// Trustee's id, e.g. `inclavare/sim/mr_enclave/digests`.
    pub id: String,
    /// A list of lowercase hex digests, or one lowercase hex string for a raw value.
    pub value: serde_json::Value,
    /// For vendor [`VENDOR`], a text mkey, digests and neither name nor serial number:
    /// `<model>_<mkey>` (`sim_mr_enclave`), the name the same value has in the bundle's
    /// `sample` form — rats' claim name, which policies and the measurement gate query.
    pub sample_name: Option<String>,
}

type Result<T> = std::result::Result<T, CorimError>;

fn bad<T>(what: impl std::fmt::Display) -> Result<T> {
    Err(CorimError(what.to_string()))
}

/// One CBOR item that is all of `bytes`.
fn item(bytes: &[u8], what: &str) -> Result<Value> {
    let mut rest = bytes;
    use ciborium::de::Error;
    let v: Value =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH).or_else(|e| {
            let why = match e {
                Error::Io(_) => "it ends early".to_string(),
                Error::Syntax(at) => format!("a bad item at byte {at}"),
                Error::Semantic(Some(at), m) => format!("{m} at byte {at}"),
                Error::Semantic(None, m) => m,
                Error::RecursionLimitExceeded => format!("nested deeper than {MAX_DEPTH}"),
            };
            bad(format!("{what}: not CBOR: {why}"))
        })?;
    if !rest.is_empty() {
        return bad(format!("{what}: {} bytes after the item", rest.len()));
    }
    Ok(v)
}

fn kind(v: &Value) -> String {
    match v {
        Value::Integer(_) => "an integer".into(),
        Value::Bytes(_) => "a byte string".into(),
        Value::Float(_) => "a float".into(),
        Value::Text(_) => "a text string".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "null".into(),
        Value::Tag(t, _) => format!("tag {t}"),
        Value::Array(_) => "an array".into(),
        Value::Map(_) => "a map".into(),
        _ => "an unknown item".into(),
    }
}

/// A map whose integer keys are unique (other keys are extensions nobody reads).
fn map<'a>(v: &'a Value, what: &str) -> Result<&'a [(Value, Value)]> {
    let Value::Map(m) = v else {
        return bad(format!("{what} is {}, not a map", kind(v)));
    };
    let mut keys: Vec<i128> = m
        .iter()
        .filter_map(|(k, _)| k.as_integer().map(i128::from))
        .collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return bad(format!("{what}: key {} appears twice", w[0]));
    }
    Ok(m)
}

fn get(m: &[(Value, Value)], key: i128) -> Option<&Value> {
    m.iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(key))
        .map(|(_, v)| v)
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a [Value]> {
    match v {
        Value::Array(a) => Ok(a),
        _ => bad(format!("{what} is {}, not an array", kind(v))),
    }
}

fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    match v {
        Value::Text(t) => Ok(t),
        _ => bad(format!("{what} is {}, not a text string", kind(v))),
    }
}

/// A tag-37 uuid as hyphenated lowercase text.
fn uuid(v: &Value, what: &str) -> Result<String> {
    match v {
        Value::Tag(37, b) => match &**b {
            Value::Bytes(b) if b.len() == 16 => {
                let h = hex::encode(b);
                Ok(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            }
            other => bad(format!("{what}: uuid is {}, not 16 bytes", kind(other))),
        },
        _ => bad(format!("{what} is {}, not a uuid (tag 37)", kind(v))),
    }
}

/// A corim id / tag-id: `tstr / uuid-type` (16 bytes, untagged here, unlike an mkey).
fn id(v: &Value, what: &str) -> Result<()> {
    match v {
        Value::Text(_) => Ok(()),
        Value::Bytes(b) if b.len() == 16 => Ok(()),
        _ => bad(format!(
            "{what} is {}, not a text or a 16-byte uuid",
            kind(v)
        )),
    }
}

/// Reads `bytes`: a CoRIM, signed (COSE_Sign1, tag 18) or not (tag 501), possibly
/// behind tags 500/502. Its reference values in document order, at least one.
pub fn decode(bytes: &[u8]) -> Result<Vec<ReferenceValue>> {
    if bytes.len() > MAX_BYTES {
        return bad(format!(
            "{} bytes, over the {MAX_BYTES} allowed",
            bytes.len()
        ));
    }
    let top = item(bytes, "the document")?;
    let mut v = &top;
    while let Value::Tag(500 | 502, inner) = v {
        v = inner;
    }
    let signed;
    let corim_map = match v {
        Value::Tag(501, m) => &**m,
        Value::Tag(18, sign1) => {
            signed = cose_sign1_payload(sign1)?;
            match &signed {
                Value::Tag(501, m) => &**m,
                other => {
                    return bad(format!(
                        "COSE_Sign1 payload is {}, not an unsigned CoRIM (tag 501)",
                        kind(other)
                    ))
                }
            }
        }
        other => {
            return bad(format!(
                "the document is {}, not a CoRIM (tag 501, or COSE_Sign1 tag 18)",
                kind(other)
            ))
        }
    };
    let m = map(corim_map, "corim-map")?;
    let Some(corim_id) = get(m, 0) else {
        return bad("corim-map has no id (key 0)");
    };
    id(corim_id, "corim-map id")?;
    let Some(tags) = get(m, 1) else {
        return bad("corim-map has no tags (key 1)");
    };
    let tags = array(tags, "corim-map tags")?;
    if tags.is_empty() {
        return bad("corim-map tags is empty");
    }
    let mut out = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        match t {
            Value::Tag(506, b) => {
                let what = format!("tags[{i}] CoMID");
                let Value::Bytes(b) = &**b else {
                    return bad(format!("{what} is {}, not a byte string", kind(b)));
                };
                comid(&item(b, &what)?, &what, &mut out)?;
            }
            // CoSWID (505), CoTL (508) and extensions: not reference triples.
            Value::Tag(..) => {}
            other => return bad(format!("tags[{i}] is {}, not a tagged tag", kind(other))),
        }
    }
    if out.is_empty() {
        return bad("no reference triple with digests or a raw value");
    }
    Ok(out)
}

/// COSE_Sign1 (RFC 9052 §4.2) `[protected: bstr, unprotected: map, payload: bstr,
/// signature: bstr]`: the decoded payload. The signature is not checked (module docs).
fn cose_sign1_payload(v: &Value) -> Result<Value> {
    let a = array(v, "COSE_Sign1")?;
    let [protected, unprotected, payload, signature] = a else {
        return bad(format!("COSE_Sign1 has {} items, not 4", a.len()));
    };
    let Value::Bytes(protected) = protected else {
        return bad(format!(
            "COSE_Sign1 protected header is {}, not a byte string",
            kind(protected)
        ));
    };
    map(
        &item(protected, "COSE_Sign1 protected header")?,
        "COSE_Sign1 protected header",
    )?;
    map(unprotected, "COSE_Sign1 unprotected header")?;
    if !matches!(signature, Value::Bytes(_)) {
        return bad(format!(
            "COSE_Sign1 signature is {}, not a byte string",
            kind(signature)
        ));
    }
    match payload {
        Value::Bytes(p) => item(p, "COSE_Sign1 payload"),
        Value::Null => bad("COSE_Sign1 payload is detached (null)"),
        other => bad(format!(
            "COSE_Sign1 payload is {}, not a byte string",
            kind(other)
        )),
    }
}

/// A concise-mid-tag: its reference triples' values appended to `out`.
fn comid(v: &Value, what: &str, out: &mut Vec<ReferenceValue>) -> Result<()> {
    let m = map(v, what)?;
    let Some(identity) = get(m, 1) else {
        return bad(format!("{what} has no tag-identity (key 1)"));
    };
    let identity = map(identity, &format!("{what}: tag-identity"))?;
    let Some(tag_id) = get(identity, 0) else {
        return bad(format!("{what}: tag-identity has no tag-id (key 0)"));
    };
    id(tag_id, &format!("{what}: tag-id"))?;
    let Some(triples) = get(m, 4) else {
        return bad(format!("{what} has no triples (key 4)"));
    };
    let triples = map(triples, &format!("{what}: triples"))?;
    let Some(reference) = get(triples, 0) else {
        return Ok(());
    };
    for (i, triple) in array(reference, &format!("{what}: reference-triples"))?
        .iter()
        .enumerate()
    {
        let what = format!("{what}: reference-triples[{i}]");
        let t = array(triple, &what)?;
        let [env, measurements] = t else {
            return bad(format!(
                "{what} has {} items, not [environment, measurements]",
                t.len()
            ));
        };
        let env = map(env, &format!("{what} environment"))?;
        let mut base = Vec::new();
        let mut vendor = None;
        let mut model = None;
        if let Some(class) = get(env, 0) {
            let class = map(class, &format!("{what} class"))?;
            if let Some(v) = get(class, 1) {
                vendor = Some(text(v, &format!("{what} class vendor"))?);
                base.extend(vendor.map(str::to_string));
            }
            if let Some(v) = get(class, 2) {
                model = Some(text(v, &format!("{what} class model"))?);
                base.extend(model.map(str::to_string));
            }
        }
        let measurements = array(measurements, &format!("{what} measurements"))?;
        if measurements.is_empty() {
            return bad(format!("{what} has no measurements"));
        }
        for (j, mm) in measurements.iter().enumerate() {
            let what = format!("{what} measurements[{j}]");
            let mm = map(mm, &what)?;
            let mut path = base.clone();
            let mut text_mkey = None;
            match get(mm, 0) {
                None => {}
                Some(Value::Text(t)) => {
                    text_mkey = Some(t.as_str());
                    path.push(t.clone());
                }
                Some(Value::Integer(n)) if u64::try_from(*n).is_ok() => {
                    path.push(format!("claim{}", i128::from(*n)))
                }
                Some(k @ Value::Tag(37, _)) => path.push(uuid(k, &format!("{what} mkey"))?),
                // An OID mkey: Trustee adds no component for it.
                Some(Value::Tag(111, _)) => {}
                Some(other) => {
                    return bad(format!(
                        "{what} mkey is {}, not a text, uint, uuid or oid",
                        kind(other)
                    ))
                }
            }
            let Some(mval) = get(mm, 1) else {
                return bad(format!("{what} has no mval (key 1)"));
            };
            let what = format!("{what} mval");
            let mval = map(mval, &what)?;
            let plain = get(mval, 11).is_none() && get(mval, 8).is_none();
            for (key, field) in [(11, "name"), (8, "serial-number")] {
                if let Some(v) = get(mval, key) {
                    path.push(text(v, &format!("{what} {field}"))?.to_string());
                }
            }
            if let Some(d) = get(mval, 2) {
                let value = digests(d, &format!("{what} digests"))?;
                let sample_name = match (vendor, model, text_mkey) {
                    (Some(VENDOR), Some(model), Some(mkey)) if plain => {
                        Some(format!("{model}_{mkey}"))
                    }
                    _ => None,
                };
                push(out, &path, "digests", value, sample_name)?;
            }
            match get(mval, 4) {
                None => {}
                Some(Value::Tag(560, b)) => match &**b {
                    Value::Bytes(b) => push(out, &path, "raw_bytes", json!(hex::encode(b)), None)?,
                    other => {
                        return bad(format!(
                            "{what} raw-value is {}, not a byte string",
                            kind(other)
                        ))
                    }
                },
                // A masked raw value (tag 563): Trustee stores none.
                Some(Value::Tag(563, _)) => {}
                Some(other) => {
                    return bad(format!(
                        "{what} raw-value is {}, not tagged bytes (560)",
                        kind(other)
                    ))
                }
            }
        }
    }
    Ok(())
}

fn push(
    out: &mut Vec<ReferenceValue>,
    path: &[String],
    suffix: &str,
    value: serde_json::Value,
    sample_name: Option<String>,
) -> Result<()> {
    if out.len() == MAX_VALUES {
        return bad(format!("more than {MAX_VALUES} reference values"));
    }
    let mut id = path.join("/");
    if !id.is_empty() {
        id.push('/');
    }
    id.push_str(suffix);
    if id.len() > crate::MAX_NAME {
        return bad(format!(
            "the id {:?}… is over {} bytes",
            id.chars().take(40).collect::<String>(),
            crate::MAX_NAME
        ));
    }
    out.push(ReferenceValue {
        id,
        value,
        sample_name,
    });
    Ok(())
}

/// `digests = [+ [alg: int / text, val: bytes]]` → lowercase hex list. A digest of a
/// known algorithm (IANA Named Information ids sha-256 = 1, sha-384 = 7, sha-512 = 8)
/// must have its length.
fn digests(v: &Value, what: &str) -> Result<serde_json::Value> {
    let list = array(v, what)?;
    if list.is_empty() {
        return bad(format!("{what} is empty"));
    }
    let mut hexes = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let what = format!("{what}[{i}]");
        let pair = array(d, &what)?;
        let [alg, val] = pair else {
            return bad(format!("{what} has {} items, not [alg, value]", pair.len()));
        };
        let Value::Bytes(val) = val else {
            return bad(format!("{what} value is {}, not a byte string", kind(val)));
        };
        let want = match alg {
            Value::Integer(n) => match i128::from(*n) {
                1 => Some(("sha-256", 32)),
                7 => Some(("sha-384", 48)),
                8 => Some(("sha-512", 64)),
                _ => None,
            },
            Value::Text(_) => None,
            other => {
                return bad(format!(
                    "{what} algorithm is {}, not an integer or text",
                    kind(other)
                ))
            }
        };
        if let Some((name, len)) = want.filter(|(_, len)| val.len() != *len) {
            return bad(format!(
                "{what}: a {name} digest is {len} bytes, not {}",
                val.len()
            ));
        }
        if val.is_empty() || val.len() > 64 {
            return bad(format!("{what}: a digest of {} bytes", val.len()));
        }
        hexes.push(json!(hex::encode(val)));
    }
    Ok(serde_json::Value::Array(hexes))
}
