//! Why the resource policy decided as it did, for `verdictd policy test`: the value of
//! `data.policy.allow`, each definition of `allow` (its `default` and every rule) with
//! whether it held, the first condition of a rule body that did not, and the values of
//! the package's other rules.
//!
//! The decision itself is [`ResourcePolicy::allows_query`]'s, the server's; this only
//! explains it, with the same regorus engine and the same `input` and `data`:
//!
//! - each `allow` rule is evaluated on its own (regorus' `eval_rule_in_module`, which
//!   applies no `default`), so several rules that could decide are told apart;
//! - the failed condition of a one-body rule is found by evaluating longer and longer
//!   prefixes of its body as a probe rule added to the same package (a Rego body is a
//!   conjunction: the first prefix that fails ends with the condition that failed).
//!
//! The rules are read from regorus' syntax tree (`regorus::unstable`, which regorus
//! documents as subject to change; `Cargo.lock` pins the version this was written for).
//! regorus 0.14 reports no explanations of its own: its `explanations` types have no
//! producer yet, and coverage marks lines, not outcomes.

use std::collections::BTreeMap;

use regorus::unstable::{Rule, RuleBody, RuleHead};
use serde::Serialize;
use serde_json::Value;

use super::{compile, with_request, ResourcePolicy};
use crate::KbsError;

/// The package and rule Trustee's resource policies decide with (`data.policy.allow`).
const PACKAGE: &str = "policy";
const DECISION: &str = "allow";
/// The probe rule's name: a name no policy is expected to use.
const PROBE: &str = "verdictd_dry_run_probe__";

/// A condition of a rule body, where it is in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// 1-based line in the policy text.
    pub line: u32,
    /// The condition as written (`not evidence.sample`), on one line.
    pub text: String,
}

/// One definition of `allow` and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    /// Where it starts (1-based line) and its first line of text
    /// (`default allow = false`, `allow if {`).
    pub line: u32,
    pub text: String,
    /// A `default` definition: it applies when no rule gives a value.
    pub default: bool,
    /// The value it gave (a rule whose body held, or the default when it applied), as
    /// JSON; `None`: it gave none.
    pub value: Option<Value>,
    /// For a rule with one body that did not hold: its first condition that failed,
    /// when that can be told.
    pub failed: Option<Condition>,
}

/// The resource policy's decision, explained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// What the server decides ([`ResourcePolicy::allows_query`]): `allow` is `true`.
    pub allowed: bool,
    /// `data.policy.allow` as JSON; `None`: undefined (which denies).
    pub allow: Option<Value>,
    /// Every definition of `allow`, in the policy's order.
    pub definitions: Vec<Definition>,
    /// The package's other rules (not functions) by name: their values as JSON, `None`
    /// when undefined.
    pub rules: BTreeMap<String, Option<Value>>,
}

impl Explanation {
    /// The definitions that decided: the rules that gave `allow` its value, or the
    /// default that applied; empty when `allow` is undefined.
    pub fn deciding(&self) -> Vec<&Definition> {
        self.definitions
            .iter()
            .filter(|d| d.value.is_some())
            .collect()
    }
}

fn json_of(v: &regorus::Value) -> Option<Value> {
    if *v == regorus::Value::Undefined {
        return None;
    }
    serde_json::to_value(v).ok()
}

/// The text from byte `start` of `src` to the end of its line, trimmed.
fn rest_of_line(src: &str, start: u32) -> &str {
    let rest = src.get(start as usize..).unwrap_or("");
    rest.lines().next().unwrap_or("").trim()
}

/// A body's conditions as written: (line, text). regorus' statement spans end before
/// a closing quote (`x == "a` for `x == "a"`), so each condition is taken to run up to
/// the next one's start, and the last to the body's closing brace (or to its line's
/// end when the body has no braces: `allow if x == "a"`).
fn conditions(body: &RuleBody) -> Vec<(u32, String)> {
    let query = &body.query.span;
    let src = query.source.contents();
    let stmts = &body.query.stmts;
    let braced = query.text().starts_with('{');
    stmts
        .iter()
        .enumerate()
        .map(|(i, stmt)| {
            let start = stmt.span.start as usize;
            let end = match stmts.get(i + 1) {
                Some(next) => next.span.start as usize,
                None if braced => src
                    .get(..query.end as usize)
                    .and_then(|s| s.rfind('}'))
                    .unwrap_or(stmt.span.end as usize),
                None => start + rest_of_line(src, stmt.span.start).len(),
            };
            let text = src.get(start..end.max(start)).unwrap_or(stmt.span.text());
            let text = text.trim().trim_end_matches(';').trim_end();
            (stmt.span.line, text.to_string())
        })
        .collect()
}

impl ResourcePolicy {
    /// Decides as [`ResourcePolicy::allows_query`] does and says why. Errors are the
    /// engine's (a policy that fails at evaluation), as one line.
    pub fn explain(
        &self,
        claims: &Value,
        plugin: &str,
        path: &[&str],
        query: &Value,
    ) -> Result<Explanation, KbsError> {
        let allowed = self.allows_query(claims, plugin, path, query)?;
        let (text, engine) = self.current.read().expect("policy lock").clone();
        let mut engine = with_request(engine, claims, plugin, path, query)?;
        let engine_err = |e: anyhow::Error| {
            KbsError::PolicyEngine(format!("resource policy: {}", one_line(&e.to_string())))
        };
        let allow = engine
            .eval_rule(format!("data.{PACKAGE}.{DECISION}"))
            .ok()
            .as_ref()
            .and_then(json_of);

        let modules = engine.get_modules().clone();
        let mut definitions = Vec::new();
        let mut defaults = Vec::new();
        let mut other_rules = Vec::new();
        for module in modules
            .iter()
            .filter(|m| m.package.refr.span().text() == PACKAGE)
        {
            for rule in &module.policy {
                let span = rule.span();
                let (name, is_default) = match rule.as_ref() {
                    Rule::Spec { head, .. } => match head {
                        RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => {
                            (refr.span().text().to_string(), false)
                        }
                        // Functions have no value of their own.
                        RuleHead::Func { .. } => continue,
                    },
                    Rule::Default { refr, args, .. } if args.is_empty() => {
                        (refr.span().text().to_string(), true)
                    }
                    Rule::Default { .. } => continue,
                };
                if name != DECISION {
                    if !other_rules.contains(&name) {
                        other_rules.push(name);
                    }
                    continue;
                }
                let mut d = Definition {
                    line: span.line,
                    text: rest_of_line(span.source.contents(), span.start).to_string(),
                    default: is_default,
                    value: None,
                    failed: None,
                };
                if is_default {
                    defaults.push(definitions.len());
                } else {
                    // This definition alone: its value, or undefined (no default applied).
                    let data = engine
                        .eval_rule_in_module(module, rule, false)
                        .map_err(engine_err)?;
                    d.value = json_of(&data[PACKAGE][DECISION]);
                    if d.value.is_none() {
                        if let Rule::Spec { bodies, .. } = rule.as_ref() {
                            if let [body] = bodies.as_slice() {
                                let stmts = conditions(body);
                                d.failed = first_failed(&text, &stmts, claims, plugin, path, query);
                            }
                        }
                    }
                }
                definitions.push(d);
            }
        }
        // A default applies when no rule gave a value; it then is `allow`'s value.
        if definitions.iter().all(|d| d.value.is_none()) {
            for i in defaults {
                definitions[i].value = allow.clone();
            }
        }
        let mut rules = BTreeMap::new();
        for name in other_rules {
            let value = engine
                .eval_rule(format!("data.{PACKAGE}.{name}"))
                .ok()
                .as_ref()
                .and_then(json_of);
            rules.insert(name, value);
        }
        Ok(Explanation {
            allowed,
            allow,
            definitions,
            rules,
        })
    }
}

/// The first of `stmts` (a rule body's conditions: line, text) that fails: the body's
/// prefixes are added, one length at a time, to the policy as a probe rule of the same
/// package, so they see the same imports, rules, `input` and `data`. `None` when a
/// probe does not compile (a condition that needs the rule's head) or all hold.
fn first_failed(
    policy: &str,
    stmts: &[(u32, String)],
    claims: &Value,
    plugin: &str,
    path: &[&str],
    query: &Value,
) -> Option<Condition> {
    for k in 1..=stmts.len() {
        let body: Vec<&str> = stmts[..k].iter().map(|(_, t)| t.as_str()).collect();
        let probe = format!("{policy}\n{PROBE} if {{\n{}\n}}\n", body.join("\n"));
        let engine = compile(&probe).ok()?;
        let mut engine = with_request(engine, claims, plugin, path, query).ok()?;
        let held = engine
            .eval_rule(format!("data.{PACKAGE}.{PROBE}"))
            .ok()
            .is_some_and(|v| v == regorus::Value::from(true));
        if !held {
            let (line, text) = &stmts[k - 1];
            return Some(Condition {
                line: *line,
                text: one_line(text),
            });
        }
    }
    None
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(tee: &str, status: &str) -> Value {
        json!({"submods": {"cpu0": {
            "ear.status": status,
            "ear.veraison.annotated-evidence": { tee: {"x": 1} }
        }}})
    }

    fn explain(rego: &str, claims: &Value, path: &[&str]) -> Explanation {
        ResourcePolicy::new(rego)
            .unwrap()
            .explain(claims, "resource", path, &json!({}))
            .unwrap()
    }

    #[test]
    fn the_default_policy_names_the_condition_a_software_tee_fails() {
        let rego = super::super::source("default").unwrap();
        let e = explain(&rego, &claims("sample", "affirming"), &["a", "b", "c"]);
        assert!(!e.allowed);
        assert_eq!(e.allow, Some(json!(false)));
        assert_eq!(e.definitions.len(), 2);
        let default = &e.definitions[0];
        assert!(default.default && default.text == "default allow = false");
        assert_eq!(default.value, Some(json!(false)));
        let rule = &e.definitions[1];
        assert_eq!((rule.default, rule.value.clone()), (false, None));
        let failed = rule.failed.clone().unwrap();
        assert_eq!(failed.text, "not evidence.sample");
        assert_eq!(
            rego.lines().nth(failed.line as usize - 1).unwrap().trim(),
            "not evidence.sample"
        );
        assert_eq!(e.deciding(), vec![default]);
        // The helper rule's value is listed.
        assert!(e.rules["evidence"].as_ref().unwrap()["sample"].is_object());

        // Hardware evidence: the rule held and decided.
        let e = explain(&rego, &claims("tdx", "warning"), &["a", "b", "c"]);
        assert!(e.allowed);
        assert_eq!(e.deciding().len(), 1);
        assert!(!e.deciding()[0].default && e.deciding()[0].value == Some(json!(true)));
        assert_eq!(e.definitions[0].value, None);
    }

    #[test]
    fn several_rules_are_told_apart_and_undefined_denies() {
        let rego = "package policy\nimport rego.v1\n\nallow if {\n  input.a == 1\n  input.b == 2\n}\n\nallow if data.plugin == \"resource\"\n\nis_one if input.a == 1\n";
        let e = explain(rego, &json!({"a": 1, "b": 3}), &["x"]);
        assert!(e.allowed);
        assert_eq!(e.definitions.len(), 2);
        assert_eq!(e.definitions[0].value, None);
        assert_eq!(
            e.definitions[0].failed,
            Some(Condition {
                line: 6,
                text: "input.b == 2".into()
            })
        );
        assert_eq!(e.definitions[1].value, Some(json!(true)));
        assert_eq!(e.rules["is_one"], Some(json!(true)));

        // No default and no rule held: undefined, denied, nothing decided.
        let rego = "package policy\nimport rego.v1\nallow if input.a == 2\n";
        let e = explain(rego, &json!({"a": 1}), &["x"]);
        assert!(!e.allowed && e.allow.is_none() && e.deciding().is_empty());
        assert_eq!(e.definitions[0].failed.as_ref().unwrap().line, 3);
    }
}
