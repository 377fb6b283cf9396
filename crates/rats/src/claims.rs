//! Verified claims, under names compatible with rats-rs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Tee;

/// One claim's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ClaimValue {
    /// Raw bytes as they appear in the evidence (little-endian fields stay so); shown in hex.
    #[serde(serialize_with = "as_hex")]
    Bytes(Vec<u8>),
    Text(String),
    Int(u64),
    Bool(bool),
    List(Vec<String>),
}

fn as_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl ClaimValue {
    /// The form a policy's expected values are compared with: lower-case hex for bytes,
    /// decimal for numbers, `true`/`false`, the text itself; a list matches by any item.
    pub fn canonical(&self) -> Vec<String> {
        match self {
            ClaimValue::Bytes(b) => vec![hex::encode(b)],
            ClaimValue::Text(t) => vec![t.clone()],
            ClaimValue::Int(i) => vec![i.to_string()],
            ClaimValue::Bool(b) => vec![b.to_string()],
            ClaimValue::List(l) => l.clone(),
        }
    }
}

/// What verification established about the evidence. The TCB status and advisories
/// are always here, whatever a policy later decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub tee: Tee,
    /// `UpToDate`, `SWHardeningNeeded`, `OutOfDate`, … for DCAP (Intel's TCB info);
    /// for SNP `UpToDate` when the firmware runs the TCB its VCEK certifies and
    /// `OutOfDate` when its current TCB differs ([`crate::snp::UP_TO_DATE`]);
    /// `Unknown` for a DCAP quote checked without collateral
    /// ([`crate::dcap::UNKNOWN`]); `None` for the software TEEs, which have no TCB.
    pub tcb_status: Option<String>,
    /// Intel's advisories for the TCB level (DCAP). Empty, and no `advisory_ids`
    /// claim, when they are unknown (a DCAP quote verified without collateral).
    pub advisory_ids: Vec<String>,
    /// A debug enclave or guest: its memory is readable by the host.
    pub debug: bool,
    /// The 64 bytes of report data the evidence is bound to.
    #[serde(serialize_with = "as_hex")]
    pub report_data: Vec<u8>,
    /// Every claim by name, including `tee`, `tcb_status`, `advisory_ids`, `debug` and
    /// `report_data`.
    pub claims: BTreeMap<String, ClaimValue>,
}

impl Verified {
    pub(crate) fn new(tee: Tee, debug: bool, report_data: &[u8]) -> Self {
        Verified {
            tee,
            tcb_status: None,
            advisory_ids: vec![],
            debug,
            report_data: report_data.to_vec(),
            claims: BTreeMap::new(),
        }
    }

    pub(crate) fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.claims
            .insert(name.to_string(), ClaimValue::Bytes(value.to_vec()));
        self
    }

    pub(crate) fn text(&mut self, name: &str, value: &str) -> &mut Self {
        self.claims
            .insert(name.to_string(), ClaimValue::Text(value.to_string()));
        self
    }

    pub(crate) fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.claims
            .insert(name.to_string(), ClaimValue::Bool(value));
        self
    }

    pub(crate) fn list(&mut self, name: &str, value: Vec<String>) -> &mut Self {
        self.claims
            .insert(name.to_string(), ClaimValue::List(value));
        self
    }

    pub(crate) fn int(&mut self, name: &str, value: u64) -> &mut Self {
        self.claims.insert(name.to_string(), ClaimValue::Int(value));
        self
    }

    /// Adds the common claims from the fields; call last.
    pub(crate) fn finish(mut self) -> Self {
        let c = &mut self.claims;
        c.insert("tee".into(), ClaimValue::Text(self.tee.name().into()));
        if let Some(s) = &self.tcb_status {
            c.insert("tcb_status".into(), ClaimValue::Text(s.clone()));
        }
        c.insert(
            "advisory_ids".into(),
            ClaimValue::List(self.advisory_ids.clone()),
        );
        c.insert("debug".into(), ClaimValue::Bool(self.debug));
        c.insert(
            "report_data".into(),
            ClaimValue::Bytes(self.report_data.clone()),
        );
        self
    }
}
