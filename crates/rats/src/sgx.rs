//! The `sgx_ecdsa` attester: the enclave's REPORT, targeted at the DCAP quoting
//! enclave and quoted by aesmd (see the [`aesm`] crate for the protocol and the checks
//! on what the untrusted host returns).

pub use aesm::{Aesm, AesmError, AESM_SOCKET, REPORT_SIZE, TARGET_INFO_SIZE};

use crate::{Attester, Evidence, RatsError, Tee};

const TEE: &str = "sgx_ecdsa";

/// Makes the enclave's REPORT for a TARGETINFO, bound to 64 bytes of report data: the
/// seam where an enclave runtime plugs in (`EREPORT` inside the enclave, or a PAL).
pub trait ReportSource {
    fn report(
        &self,
        target_info: &[u8; TARGET_INFO_SIZE],
        report_data: &[u8; 64],
    ) -> Result<[u8; REPORT_SIZE], String>;
}

impl<F> ReportSource for F
where
    F: Fn(&[u8; TARGET_INFO_SIZE], &[u8; 64]) -> Result<[u8; REPORT_SIZE], String>,
{
    fn report(
        &self,
        target_info: &[u8; TARGET_INFO_SIZE],
        report_data: &[u8; 64],
    ) -> Result<[u8; REPORT_SIZE], String> {
        self(target_info, report_data)
    }
}

/// Evidence from an SGX enclave: a DCAP quote of its REPORT.
pub struct SgxAttester<R> {
    aesm: Aesm,
    source: R,
}

impl<R: ReportSource> SgxAttester<R> {
    pub fn new(aesm: Aesm, source: R) -> Self {
        SgxAttester { aesm, source }
    }
}

fn attester(reason: String) -> RatsError {
    RatsError::Attester { tee: TEE, reason }
}

impl<R: ReportSource> Attester for SgxAttester<R> {
    fn attest(&self, data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let quote = self
            .aesm
            .quote_with(|ti| {
                let report = self.source.report(ti, data)?;
                // The REPORT must say what we asked it to; aesmd then must quote it.
                if aesm::report_data(&report) != Some(&data[..]) {
                    return Err("the enclave's REPORT is bound to other report data".into());
                }
                Ok(report)
            })
            .map_err(|e| attester(e.to_string()))?
            .map_err(|e: String| attester(format!("the enclave's report: {e}")))?;
        Ok(Evidence {
            tee: Tee::SgxEcdsa,
            bytes: quote,
            collateral: None,
        })
    }
}
