//! The software TEEs: `sim` (Inclavare's signed software enclave) and `sample`
//! (Confidential Containers' unsigned test TEE). Both prove nothing about hardware;
//! the default policy refuses them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Input, RatsError, Tee, Verified};

/// Verifies a `sim` report: layout, platform-key signature, report data, and with
/// `event_log` (TCG2 bytes) that the log replays into the report's registers.
///
/// Claims: `sim_mr_enclave`, `sim_mr_signer`, `sim_product_id`, `sim_svn`,
/// `sim_platform_key`, `sim_report_version`; for version 2 also `sim_config_id` and
/// `sim_rtmr0`..`sim_rtmr3` (hex) with `sim_rtmr0_count`..; with a log,
/// `sim_event_log`: each event's text `domain operation content`, in log order.
pub(crate) fn verify_sim(
    evidence: &[u8],
    input: &Input,
    event_log: Option<&[u8]>,
) -> Result<Verified, RatsError> {
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
        .bytes("sim_platform_key", &report.platform_key)
        .int("sim_report_version", report.version.into());
    if report.version >= 2 {
        v.bytes("sim_config_id", &report.config_id);
        for (i, (r, c)) in report.rtmr.iter().zip(report.rtmr_counts).enumerate() {
            v.bytes(&format!("sim_rtmr{i}"), r)
                .int(&format!("sim_rtmr{i}_count"), c.into());
        }
    }
    crate::check_report_data(tee, &v.report_data, input)?;
    if let Some(bytes) = event_log {
        use measurement::eventlog::EventLog;
        let bad = |reason: String| RatsError::EventLog { tee, reason };
        let log = EventLog::parse(bytes).map_err(|e| bad(e.to_string()))?;
        if report.version < 2 && !log.is_empty() {
            return Err(bad(
                "a version 1 report has no registers to replay the event log into".into(),
            ));
        }
        log.check_replay(&report.rtmr, &report.rtmr_counts)
            .map_err(|e| bad(e.to_string()))?;
        let texts = log
            .records()
            .iter()
            .map(|r| r.event().map(|e| e.text()).unwrap_or_default())
            .collect();
        v.list("sim_event_log", texts);
    }
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
