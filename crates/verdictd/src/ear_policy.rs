//! Attestation (EAR) policies: what turns verified claims into an AR4SI trust vector
//! and an `ear.status`.
//!
//! Two kinds are accepted, told apart by their text:
//!
//! - **Rego**, as Trustee's attestation service takes them
//!   (T:`attestation-service/src/ear_token/broker.rs`): `data.policy.trust_claims` maps
//!   AR4SI claim names (`executables`, `hardware`, `configuration`, `file-system`,
//!   `instance-identity`, `runtime-opaque`, `storage-opaque`, `sourced-data`) to
//!   integers; the optional `data.policy.extensions` is a list of `{name, key, value}`
//!   added to the appraisal. `input` is the annotated evidence (`{<tee>: claims,
//!   report_data, runtime_data_claims, init_data, init_data_claims}`), and the
//!   extension `query_reference_value(id)` returns a registered reference value (any
//!   JSON) or `null`. The built-in default, [`DEFAULT_CPU`], follows Trustee's
//!   `default_cpu` (with its `ear.trustee.identifiers` extension; the README lists where it differs).
//! - a **rats appraisal policy** in TOML or JSON (`rats::Policy`), verdictd's own.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

/// verdictd's default policy, following Trustee's `default_cpu` (the README lists where it differs).
pub const DEFAULT_CPU: &str = include_str!("../policies/default_cpu.rego");

/// The AR4SI trustworthiness claims, in the order an EAR lists them.
pub const TRUST_CLAIMS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// Registered reference values: name → any JSON value (Trustee's RVPS stores what the
/// `sample` provenance gives, e.g. `["1"]`, `1` or `true`).
pub type ReferenceValues = Arc<BTreeMap<String, Value>>;

/// A parsed attestation policy.
#[derive(Clone)]
pub enum AttestationPolicy {
    /// Compiled Rego; evaluated on a clone per attestation.
    Rego(Box<regorus::Engine>),
    /// A rats appraisal policy (TOML or JSON).
    Rats(Box<rats::Policy>),
}

/// Whether `text` is Rego: its first line that is neither blank nor a comment declares
/// a package.
pub fn is_rego(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("package ") || l == "package")
}

impl AttestationPolicy {
    /// Parses Rego, or a rats policy in JSON (starting with `{`) or TOML. The error is
    /// one line naming what was tried.
    pub fn parse(text: &str) -> Result<AttestationPolicy, String> {
        if is_rego(text) {
            let mut engine = regorus::Engine::new();
            engine
                .add_policy("attestation.rego".into(), text.into())
                .map_err(|e| format!("Rego: {}", one_line(&e.to_string())))?;
            return Ok(AttestationPolicy::Rego(Box::new(engine)));
        }
        let parsed: Result<rats::Policy, String> = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.message().to_string())
        };
        parsed
            .map(|p| AttestationPolicy::Rats(Box::new(p)))
            .map_err(|e| {
                format!("{e} (an attestation policy is Rego, or a rats appraisal policy in TOML or JSON)")
            })
    }

    /// The built-in default ([`DEFAULT_CPU`]).
    pub fn default_cpu() -> AttestationPolicy {
        AttestationPolicy::parse(DEFAULT_CPU).expect("the built-in policy compiles")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The outcome of a Rego policy: the trust vector (all eight claims, 0 where the
/// policy said nothing), the extensions, and the reference values it asked for
/// (`query_reference_value` ids, in order, once each).
#[derive(Debug, Clone, PartialEq)]
pub struct RegoAppraisal {
    pub vector: BTreeMap<String, i64>,
    pub extensions: Vec<(String, Value)>,
    pub queried: Vec<String>,
}

/// Evaluates a Rego attestation policy on `input` (the annotated evidence).
pub fn evaluate(
    engine: &regorus::Engine,
    input: &Value,
    reference_values: &ReferenceValues,
) -> Result<RegoAppraisal, String> {
    let mut engine = engine.clone();
    let rvs = reference_values.clone();
    let queried = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let asked = queried.clone();
    engine
        .add_extension(
            "query_reference_value".into(),
            1,
            Box::new(move |params: Vec<regorus::Value>| {
                let id = params
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("query_reference_value takes one id"))?
                    .as_string()
                    .map_err(|_| anyhow::anyhow!("query_reference_value: the id is a string"))?
                    .to_string();
                let mut asked = asked.lock().expect("queried ids");
                if !asked.contains(&id) {
                    asked.push(id.clone());
                }
                match rvs.get(&id) {
                    Some(v) => regorus::Value::from_json_str(&v.to_string()),
                    None => Ok(regorus::Value::Null),
                }
            }),
        )
        .map_err(|e| e.to_string())?;
    engine.set_input(regorus::Value::from_json_str(&input.to_string()).map_err(|e| e.to_string())?);
    let claims = match engine.eval_rule("data.policy.trust_claims".into()) {
        Ok(v) => serde_json::from_str(&v.to_json_str().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
        // No such rule: undefined, as Trustee reads it.
        Err(e) if e.to_string().contains("not a valid rule path") => Value::Null,
        Err(e) => {
            return Err(format!(
                "data.policy.trust_claims: {}",
                one_line(&e.to_string())
            ))
        }
    };
    let mut vector: BTreeMap<String, i64> =
        TRUST_CLAIMS.iter().map(|c| (c.to_string(), 0)).collect();
    // Anything but an object (undefined): Trustee sets every claim to 0, then refuses
    // the empty vector.
    if let Value::Object(map) = claims {
        for (name, v) in map {
            let Some(slot) = vector.get_mut(&name) else {
                return Err(format!("trust_claims: {name:?} is not an AR4SI claim"));
            };
            *slot = v
                .as_i64()
                .filter(|i| (-128..=127).contains(i))
                .ok_or_else(|| {
                    format!("trust_claims: {name} is {v}, not an integer in -128..127")
                })?;
        }
    }
    if vector.values().all(|v| *v == 0) {
        return Err("the policy set no trust claim (data.policy.trust_claims)".into());
    }
    let mut extensions = vec![];
    if let Ok(ext) = engine.eval_rule("data.policy.extensions".into()) {
        if let Ok(Value::Array(list)) =
            serde_json::from_str::<Value>(&ext.to_json_str().unwrap_or_default())
        {
            for item in list {
                if let (Some(name), Some(value)) = (item["name"].as_str(), item.get("value")) {
                    extensions.push((name.to_string(), value.clone()));
                }
            }
        }
    }
    let queried = queried.lock().expect("queried ids").clone();
    Ok(RegoAppraisal {
        vector,
        extensions,
        queried,
    })
}

/// Why a Rego policy did not affirm, in words a user can act on (Trustee's token only
/// gives the trust vector): each reference value the policy asked for that is not
/// registered, and each claim of `tee`'s evidence named like a reference value it asked
/// for (`sgx.body.mr_enclave` and `mr_enclave`, `sample.svn` and `svn`) whose value is
/// not among them; then the trust claims that are not affirming, with their values.
pub fn explain(
    a: &RegoAppraisal,
    tee: &str,
    annotated: &Value,
    reference_values: &ReferenceValues,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for id in &a.queried {
        let Some(rv) = reference_values.get(id) else {
            reasons.push(format!("no reference value {id} is registered"));
            continue;
        };
        let accepted: Vec<&Value> = match rv {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        let mut found = Vec::new();
        claims_named(&annotated[tee], id, tee, &mut found);
        for (path, value) in found {
            if !accepted.contains(&value) {
                reasons.push(format!(
                    "claim {path} is {}, not among the reference values {id} ({})",
                    shown(value),
                    accepted
                        .iter()
                        .map(|v| shown(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    let weak: Vec<String> = a
        .vector
        .iter()
        .filter(|(_, v)| tier(**v) > 1)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if !weak.is_empty() {
        reasons.push(format!("trust vector: {}", weak.join(", ")));
    }
    reasons
}

/// The claims under `v` whose key is `name`, with their dotted paths from `prefix`.
fn claims_named<'a>(v: &'a Value, name: &str, prefix: &str, out: &mut Vec<(String, &'a Value)>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = format!("{prefix}.{k}");
            if k == name && !child.is_object() {
                out.push((path, child));
            } else {
                claims_named(child, name, &path, out);
            }
        }
    }
}

/// A claim or reference value as a user reads it: strings bare, the rest as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The AR4SI tier of one claim value: −1…1 none; 2…31 (and −2…−32) affirming; 32…95
/// (−33…−96) warning; 96…127 (−97…−128) contraindicated.
pub fn tier(value: i64) -> u8 {
    let magnitude = value.unsigned_abs();
    let bands = if value < 0 { [1, 32, 96] } else { [1, 31, 95] };
    match magnitude {
        m if m <= bands[0] => 0,
        m if m <= bands[1] => 1,
        m if m <= bands[2] => 2,
        _ => 3,
    }
}

/// `ear.status`: the worst tier of the vector.
pub fn status(vector: &BTreeMap<String, i64>) -> &'static str {
    match vector.values().map(|v| tier(*v)).max().unwrap_or(0) {
        0 => "none",
        1 => "affirming",
        2 => "warning",
        _ => "contraindicated",
    }
}

/// The vector as the EAR's `ear.trustworthiness-vector` object.
pub fn vector_json(vector: &BTreeMap<String, i64>) -> Value {
    Value::Object(
        vector
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect::<Map<String, Value>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rvs(v: Value) -> ReferenceValues {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn sample_input() -> Value {
        // The annotated evidence of a sample attestation, in Trustee's layout.
        json!({"sample": {"svn": "1", "launch_digest": "abcde",
                          "platform_version": {"major": 1, "minor": 4}, "debug": false},
               "report_data": "AAAA", "runtime_data_claims": {}})
    }

    #[test]
    fn default_policy_decides_as_trustees_default_cpu() {
        let AttestationPolicy::Rego(engine) = AttestationPolicy::default_cpu() else {
            panic!("the default is Rego")
        };
        // No reference values: executables 33, hardware 97, configuration 2 for
        // sample (debug false) — contraindicated (T issues 602, 863).
        let a = evaluate(&engine, &sample_input(), &rvs(json!({}))).unwrap();
        assert_eq!(a.vector["executables"], 33);
        assert_eq!(a.vector["hardware"], 97);
        assert_eq!(a.vector["configuration"], 2);
        assert_eq!(status(&a.vector), "contraindicated");
        // The reference values Trustee's default_cpu asks for, as kbs-client registers
        // them (lists by default; --as-integer --as-single-value for the versions).
        let good = rvs(json!({"launch_digest": ["abcde"], "svn": ["1"],
                              "major_version": 1, "minimum_minor_version": 4}));
        let a = evaluate(&engine, &sample_input(), &good).unwrap();
        assert_eq!(
            (
                a.vector["executables"],
                a.vector["hardware"],
                a.vector["configuration"]
            ),
            (3, 2, 2)
        );
        assert_eq!(status(&a.vector), "affirming");
        // One value off (a newer minimum minor version): hardware back to 97.
        let newer = rvs(json!({"launch_digest": ["abcde"], "svn": ["1"],
                               "major_version": 1, "minimum_minor_version": 5}));
        let a = evaluate(&engine, &sample_input(), &newer).unwrap();
        assert_eq!(a.vector["hardware"], 97);
    }

    #[test]
    fn default_policy_names_the_workload_as_trustees_extensions() {
        let AttestationPolicy::Rego(engine) = AttestationPolicy::default_cpu() else {
            panic!("the default is Rego")
        };
        // T:attestation-service/src/ear_token/ear_default_policy_cpu.rego `extensions`:
        // images from OCI.Annotations["io.kubernetes.cri.image-name"], UIDs from
        // OCI.Process.User.UID of agent_policy_claims.containers, empty lists left out.
        let mut input = sample_input();
        input["init_data_claims"] = json!({"agent_policy_claims": {"containers": [
            {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "pause:3.9"},
                     "Process": {"User": {"UID": 65535}}}},
            {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "nginx:1"},
                     "Process": {"User": {"UID": 0}}}}
        ]}});
        let a = evaluate(&engine, &input, &rvs(json!({}))).unwrap();
        assert_eq!(
            a.extensions,
            vec![(
                "ear.trustee.identifiers".to_string(),
                json!({"validated": {"container_images": ["pause:3.9", "nginx:1"],
                                     "container_uids": [65535, 0]}})
            )]
        );
        // No agent policy: the identifiers are empty.
        let a = evaluate(&engine, &sample_input(), &rvs(json!({}))).unwrap();
        assert_eq!(
            a.extensions,
            vec![(
                "ear.trustee.identifiers".to_string(),
                json!({"validated": {}})
            )]
        );
    }

    #[test]
    fn rego_errors_are_one_line_and_bad_vectors_refused() {
        let err = match AttestationPolicy::parse("package policy\ntrust_claims := {") {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert!(!err.contains('\n') && err.starts_with("Rego"), "{err}");
        for (rego, want) in [
            (
                "package policy\ntrust_claims := {\"bogus\": 2}",
                "not an AR4SI claim",
            ),
            (
                "package policy\ntrust_claims := {\"hardware\": 300}",
                "not an integer",
            ),
            ("package policy\nother := 1", "no trust claim"),
        ] {
            let Ok(AttestationPolicy::Rego(e)) = AttestationPolicy::parse(rego) else {
                panic!("{rego}")
            };
            let err = evaluate(&e, &json!({}), &rvs(json!({}))).unwrap_err();
            assert!(err.contains(want), "{rego}: {err}");
        }
        assert!(matches!(
            AttestationPolicy::parse("allow_debug = true\n"),
            Ok(AttestationPolicy::Rats(_))
        ));
        assert!(AttestationPolicy::parse("not a policy ===").is_err());
    }

    #[test]
    fn tiers_follow_ar4si() {
        for (v, t) in [
            (0, 0),
            (1, 0),
            (-1, 0),
            (2, 1),
            (31, 1),
            (-2, 1),
            (-32, 1),
            (32, 2),
            (95, 2),
            (-33, 2),
            (-96, 2),
            (96, 3),
            (127, 3),
            (-97, 3),
            (-128, 3),
        ] {
            assert_eq!(tier(v), t, "{v}");
        }
    }
}
