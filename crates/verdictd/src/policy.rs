//! The resource policy: Rego, evaluated with regorus, deciding `data.policy.allow`
//! with the token's claims as `input` and the request as `data`
//! (`{"plugin", "resource-path", "query"}`), exactly as Trustee evaluates it.

use std::sync::RwLock;

use serde_json::{json, Value};

use crate::KbsError;

mod explain;
pub use explain::{Condition, Definition, Explanation};

/// The policies verdictd ships, by name.
pub const BUILTIN: [(&str, &str); 4] = [
    ("default", include_str!("../policies/default.rego")),
    ("allow_all", include_str!("../policies/allow_all.rego")),
    ("deny_all", include_str!("../policies/deny_all.rego")),
    ("affirming", include_str!("../policies/affirming.rego")),
];

pub struct ResourcePolicy {
    current: RwLock<(String, regorus::Engine)>,
}

fn compile(rego: &str) -> Result<regorus::Engine, KbsError> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("policy.rego".into(), rego.into())
        .map_err(|e| {
            let e = e.to_string();
            KbsError::PolicyEngine(format!(
                "resource policy: {}",
                e.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })?;
    Ok(engine)
}

/// The Rego text of a builtin policy name, or of a file.
pub fn source(name_or_path: &str) -> anyhow::Result<String> {
    if let Some((_, rego)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        return Ok(rego.to_string());
    }
    std::fs::read_to_string(name_or_path).map_err(|e| {
        anyhow::anyhow!(
            "resource policy {name_or_path:?}: {e} (builtin: default, allow_all, deny_all, affirming)"
        )
    })
}

impl ResourcePolicy {
    pub fn new(rego: &str) -> Result<ResourcePolicy, KbsError> {
        Ok(ResourcePolicy {
            current: RwLock::new((rego.to_string(), compile(rego)?)),
        })
    }

    /// Replaces the policy; the old one stays when the new one does not compile.
    pub fn replace(&self, rego: &str) -> Result<(), KbsError> {
        let engine = compile(rego)?;
        *self.current.write().expect("policy lock") = (rego.to_string(), engine);
        Ok(())
    }

    pub fn text(&self) -> String {
        self.current.read().expect("policy lock").0.clone()
    }

    /// Whether `claims` may have the resource at `path` of `plugin`.
    pub fn allows(&self, claims: &Value, plugin: &str, path: &[&str]) -> Result<bool, KbsError> {
        self.allows_query(claims, plugin, path, &json!({}))
    }

    /// As [`ResourcePolicy::allows`], with the request's query parameters (an object
    /// of strings) as `data.query`, as Trustee passes them.
    pub fn allows_query(
        &self,
        claims: &Value,
        plugin: &str,
        path: &[&str],
        query: &Value,
    ) -> Result<bool, KbsError> {
        // Engines are cheap to clone once compiled; each evaluation gets its own.
        let engine = self.current.read().expect("policy lock").1.clone();
        let mut engine = with_request(engine, claims, plugin, path, query)?;
        match engine.eval_rule("data.policy.allow".into()) {
            Ok(v) => Ok(v == regorus::Value::from(true)),
            // An undefined rule denies.
            Err(_) => Ok(false),
        }
    }
}

/// `engine` with the token's claims as `input` and the request as `data`.
fn with_request(
    mut engine: regorus::Engine,
    claims: &Value,
    plugin: &str,
    path: &[&str],
    query: &Value,
) -> Result<regorus::Engine, KbsError> {
    let engine_err = |e: anyhow::Error| KbsError::PolicyEngine(format!("resource policy: {e}"));
    engine.set_input(regorus::Value::from_json_str(&claims.to_string()).map_err(engine_err)?);
    let data = json!({"plugin": plugin, "resource-path": path, "query": query});
    engine
        .add_data(regorus::Value::from_json_str(&data.to_string()).map_err(engine_err)?)
        .map_err(engine_err)?;
    Ok(engine)
}

/// A URL query (`a=1&b=x%20y`) as Trustee's actix `Query<HashMap<String, String>>`
/// reads it: form-urlencoded pairs, `+` as space, percent-escapes decoded; a later
/// duplicate wins.
pub fn query_object(raw: Option<&str>) -> Value {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let mut map = serde_json::Map::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tee: &str, status: &str) -> Value {
        json!({"submods": {"cpu0": {
            "ear.status": status,
            "ear.veraison.annotated-evidence": { tee: {"x": 1} }
        }}})
    }

    #[test]
    fn builtin_policies_decide() {
        let p = |n: &str| ResourcePolicy::new(&source(n).unwrap()).unwrap();
        let path = ["default", "key", "1"];
        assert!(!p("default")
            .allows(&claims("sample", "affirming"), "resource", &path)
            .unwrap());
        assert!(!p("default")
            .allows(&claims("sim", "affirming"), "resource", &path)
            .unwrap());
        assert!(p("default")
            .allows(&claims("tdx", "warning"), "resource", &path)
            .unwrap());
        assert!(!p("default")
            .allows(&claims("tdx", "affirming"), "other", &path)
            .unwrap());
        assert!(p("allow_all")
            .allows(&claims("sample", "none"), "resource", &path)
            .unwrap());
        assert!(!p("deny_all")
            .allows(&claims("tdx", "affirming"), "resource", &path)
            .unwrap());
        assert!(p("affirming")
            .allows(&claims("sim", "affirming"), "resource", &path)
            .unwrap());
        assert!(!p("affirming")
            .allows(&claims("sim", "contraindicated"), "resource", &path)
            .unwrap());
        assert!(!p("affirming")
            .allows(&json!({"submods": {}}), "resource", &path)
            .unwrap());
    }

    #[test]
    fn queries_decode_as_form_urlencoded() {
        assert_eq!(query_object(None), json!({}));
        assert_eq!(
            query_object(Some("version=1&name=a%20b+c&flag&bad=%zz&end=%4")),
            json!({"version": "1", "name": "a b c", "flag": "", "bad": "%zz", "end": "%4"})
        );
    }

    #[test]
    fn path_is_data_and_bad_policy_keeps_the_old_one() {
        let p = ResourcePolicy::new(
            "package policy\ndefault allow = false\nallow if { data[\"resource-path\"][0] == \"open\" }",
        )
        .unwrap();
        assert!(p
            .allows(&json!({}), "resource", &["open", "a", "b"])
            .unwrap());
        assert!(!p
            .allows(&json!({}), "resource", &["shut", "a", "b"])
            .unwrap());
        assert!(matches!(
            p.replace("package policy\nallow if {"),
            Err(KbsError::PolicyEngine(_))
        ));
        assert!(p.text().contains("open"));
    }
}
