//! Appraisal policy: which verified evidence a relying party accepts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{RatsError, Tee, Verified};

/// An appraisal policy, loadable from TOML or JSON. The default accepts only
/// hardware TEEs whose TCB is `UpToDate`, no advisories, no debug enclaves.
///
/// TCB statuses: DCAP's from Intel's TCB info (`UpToDate`, `SWHardeningNeeded`,
/// `ConfigurationNeeded`, `ConfigurationAndSWHardeningNeeded`, `OutOfDate`,
/// `OutOfDateConfigurationNeeded`, `Revoked`), `Unknown` for a DCAP quote verified
/// without collateral, and SNP's `UpToDate`/`OutOfDate` (see [`crate::snp::UP_TO_DATE`]).
/// Only listed statuses are accepted, so `Unknown` must be listed explicitly.
///
/// ```toml
/// accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
/// allowed_advisory_ids = ["INTEL-SA-00615"]
/// allow_debug = false
/// allow_service_td = false
/// allow_software_tees = false
/// [expected]
/// sgx_mr_signer = ["83d719e7…"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// TCB statuses accepted (default: `UpToDate` only).
    pub accepted_tcb_statuses: Vec<String>,
    /// Advisories that may apply to an accepted platform (default: none).
    pub allowed_advisory_ids: Vec<String>,
    /// Accept debug enclaves and guests (default: no).
    pub allow_debug: bool,
    /// Accept a TD bound to a service TD (TDX 1.5: SERVTD_EXT, or a non-zero
    /// `mr_servicetd`), whose state the service TD (e.g. a migration TD) can reach
    /// (default: no).
    pub allow_service_td: bool,
    /// Accept `sim` and `sample` evidence, which prove nothing about hardware
    /// (default: no).
    pub allow_software_tees: bool,
    /// Claim name → accepted values (any of). Bytes are compared as lower-case hex.
    pub expected: BTreeMap<String, Vec<String>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accepted_tcb_statuses: vec!["UpToDate".into()],
            allowed_advisory_ids: vec![],
            allow_debug: false,
            allow_service_td: false,
            allow_software_tees: false,
            expected: BTreeMap::new(),
        }
    }
}

/// A policy's decision, with every reason for a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub accepted: bool,
    pub reasons: Vec<String>,
}

impl Policy {
    /// Reads a policy file: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Policy, RatsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RatsError::Policy(format!("{}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| RatsError::Policy(format!("{}: {e}", path.display())))
        } else {
            toml::from_str(&text)
                .map_err(|e| RatsError::Policy(format!("{}: {}", path.display(), e.message())))
        }
    }

    /// Decides on `verified`. Every failed rule is a reason.
    pub fn appraise(&self, v: &Verified) -> Verdict {
        let mut reasons = Vec::new();
        if v.tee.is_software() && !self.allow_software_tees {
            reasons.push(format!(
                "{} evidence proves nothing about hardware; the policy does not allow software TEEs",
                v.tee.name()
            ));
        }
        match &v.tcb_status {
            Some(status) if !self.accepted_tcb_statuses.iter().any(|s| s == status) => {
                reasons.push(format!(
                    "TCB status {status} is not accepted (accepted: {})",
                    self.accepted_tcb_statuses.join(", ")
                ));
            }
            Some(_) => {}
            // Hardware evidence always has one; its absence is never acceptance.
            None if !v.tee.is_software() => {
                reasons.push("the evidence has no TCB status".into());
            }
            None => {}
        }
        let unexpected: Vec<&str> = v
            .advisory_ids
            .iter()
            .filter(|a| !self.allowed_advisory_ids.contains(a))
            .map(String::as_str)
            .collect();
        if !unexpected.is_empty() {
            reasons.push(format!("advisories not allowed: {}", unexpected.join(", ")));
        }
        let bound = v
            .claims
            .get("tdx_service_td_bound")
            .is_some_and(|c| *c == crate::ClaimValue::Bool(true));
        if bound && !self.allow_service_td {
            reasons.push(
                "the TD is bound to a service TD (SERVTD_EXT or mr_servicetd); the policy \
                 does not allow service TDs"
                    .into(),
            );
        }
        if v.debug && !self.allow_debug {
            reasons.push("a debug enclave or guest is not allowed".into());
        }
        for (name, accepted) in &self.expected {
            match v.claims.get(name) {
                None => reasons.push(format!("claim {name} is missing")),
                Some(value) => {
                    let have = value.canonical();
                    let ok = have
                        .iter()
                        .any(|h| accepted.iter().any(|a| a.eq_ignore_ascii_case(h)));
                    if !ok {
                        reasons.push(format!(
                            // RFC 9334's term for the values a claim is compared with.
                            "claim {name} is {}, not among the reference values ({})",
                            have.join(","),
                            accepted.join(", ")
                        ));
                    }
                }
            }
        }
        Verdict {
            accepted: reasons.is_empty(),
            reasons,
        }
    }
}

impl Tee {
    /// `sim` and `sample`: no hardware behind them.
    pub fn is_software(self) -> bool {
        matches!(self, Tee::Sim | Tee::Sample)
    }
}
