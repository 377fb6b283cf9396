//! The software TEEs: `sim` (Inclavare's signed software enclave) and `sample`
//! (Confidential Containers' unsigned test TEE). Both prove nothing about hardware;
//! the default policy refuses them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Input, RatsError, Tee, Verified};

/// Verifies a `sim` report: layout, platform-key signature, report data.
pub(crate) fn verify_sim(evidence: &[u8], input: &Input) -> Result<Verified, RatsError> {
    let tee = Tee::Sim.name();
    let report = sim_tee::Report::parse(evidence).map_err(|e| RatsError::Malformed {
        tee,
        reason: e.to_string(),
    })?;
    report
        .verify_signature()
        .map_err(|e| RatsError::Signature {
            tee,
            reason: e.to_string(),
        })?;
    let mut v = Verified::new(Tee::Sim, report.debug, &report.report_data);
    v.bytes("sim_mr_enclave", &report.mr_enclave)
        .bytes("sim_mr_signer", &report.mr_signer)
        .int("sim_product_id", report.product_id.into())
        .int("sim_svn", report.svn.into())
        .bytes("sim_platform_key", &report.platform_key);
    crate::check_report_data(tee, &v.report_data, input)?;
    Ok(v.finish())
}

/// Confidential Containers' `sample` evidence: `{"svn": "1", "report_data": base64}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SampleEvidence {
    pub svn: String,
    pub report_data: String,
}

impl SampleEvidence {
    /// Sample evidence for `report_data`, as the CoCo sample attester produces it.
    pub fn new(report_data: &[u8]) -> Self {
        SampleEvidence {
            svn: "1".into(),
            report_data: base64::engine::general_purpose::STANDARD.encode(report_data),
        }
    }
}

/// Checks `sample` evidence: its shape and its report data. Nothing signs it.
pub(crate) fn verify_sample(evidence: &[u8], input: &Input) -> Result<Verified, RatsError> {
    let tee = Tee::Sample.name();
    let bad = |reason: String| RatsError::Malformed { tee, reason };
    let e: SampleEvidence =
        serde_json::from_slice(evidence).map_err(|e| bad(format!("not sample JSON: {e}")))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(&e.report_data)
        .map_err(|e| bad(format!("report_data is not base64: {e}")))?;
    if data.len() > 64 {
        return Err(bad(format!(
            "report_data has {} bytes, at most 64",
            data.len()
        )));
    }
    let svn: u64 = e
        .svn
        .parse()
        .map_err(|_| bad(format!("svn {:?} is not a number", e.svn)))?;
    let mut padded = [0u8; 64];
    padded[..data.len()].copy_from_slice(&data);
    let mut v = Verified::new(Tee::Sample, false, &padded);
    v.int("sample_svn", svn);
    crate::check_report_data(tee, &v.report_data, input)?;
    Ok(v.finish())
}
