//! A JSON tree that keeps every object member in order, duplicates included, so the
//! policy and payload parsers can reject duplicated and unknown keys the way
//! containers/image's `ParanoidUnmarshalJSONObject` does (serde_json's `Value` would
//! silently keep the last duplicate).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One JSON value; objects are member lists in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Any number that is not an `i64`.
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

// Nesting depth is bounded by serde_json's recursion limit (128).
impl Json {
    /// Parses exactly one JSON document (trailing data is an error).
    pub fn parse(bytes: &[u8]) -> Result<Json, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Int(_) | Json::Float(_) => "number",
            Json::Str(_) => "string",
            Json::Arr(_) => "array",
            Json::Obj(_) => "object",
        }
    }

    /// Members of an object after the duplicate and unknown-key checks: each key at
    /// most once, each in `allowed`. Messages are containers/image's.
    pub fn object<'a>(&'a self, what: &str, allowed: &[&str]) -> Result<Obj<'a>, String> {
        let Json::Obj(members) = self else {
            return Err(format!(
                "JSON object expected for {what}, got {}",
                self.kind()
            ));
        };
        let mut seen = HashSet::new();
        for (k, _) in members {
            if !seen.insert(k.as_str()) {
                return Err(format!("Duplicate key {k:?}"));
            }
            if !allowed.contains(&k.as_str()) {
                return Err(format!("Unknown key {k:?}"));
            }
        }
        Ok(Obj(members))
    }

    /// Members of an object with only the duplicate check (for free-form maps).
    pub fn any_object<'a>(&'a self, what: &str) -> Result<Obj<'a>, String> {
        let Json::Obj(members) = self else {
            return Err(format!(
                "JSON object expected for {what}, got {}",
                self.kind()
            ));
        };
        let mut seen = HashSet::new();
        for (k, _) in members {
            if !seen.insert(k.as_str()) {
                return Err(format!("Duplicate key {k:?}"));
            }
        }
        Ok(Obj(members))
    }

    pub fn str(&self, what: &str) -> Result<&str, String> {
        match self {
            Json::Str(s) => Ok(s),
            other => Err(format!("{what} must be a string, got {}", other.kind())),
        }
    }
}

/// A checked object: lookups by key.
pub(crate) struct Obj<'a>(&'a [(String, Json)]);

impl<'a> Obj<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Json> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A mandatory member, with containers/image's message when absent.
    pub fn req(&self, key: &str) -> Result<&'a Json, String> {
        self.get(key)
            .ok_or_else(|| format!("Key {key:?} missing in a JSON object"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a (String, Json)> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            out.push((k, v));
        }
        Ok(Json::Obj(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicates_so_they_can_be_refused() {
        let j = Json::parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(j.object("x", &["a"]).err().unwrap(), r#"Duplicate key "a""#);
        let j = Json::parse(br#"{"a":1,"b":2}"#).unwrap();
        assert_eq!(j.object("x", &["a"]).err().unwrap(), r#"Unknown key "b""#);
        assert!(Json::parse(br#"{} {}"#).is_err());
    }
}
