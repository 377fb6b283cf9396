//! SEV-SNP evidence as Confidential Containers' guest sends it for `tee: "snp"`:
//! `{"attestation_report": <the report as the sev crate serialises it>,
//! "cert_chain": [{"cert_type": "VCEK", "data": [..]}, ..] | null}`.
//!
//! The report travels as a structure, not as bytes, so the verifier encodes it back to
//! the firmware's layout (with the same `sev` crate) before checking the signature;
//! a report that does not survive that round trip fails verification, as it does in
//! Trustee.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};
use sev::parser::{Decoder, Encoder};

use crate::ProtocolError;

#[derive(Serialize, Deserialize)]
struct SnpEvidence {
    attestation_report: AttestationReport,
    cert_chain: Option<Vec<CertTableEntry>>,
}

/// A certificate of the chain, by its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// `VCEK`, `VLEK`, `ASK`, `ARK`, `CRL` or the GUID of another entry.
    pub kind: String,
    pub der: Vec<u8>,
}

fn kind_of(t: &CertType) -> String {
    match t {
        CertType::ARK => "ARK".into(),
        CertType::ASK => "ASK".into(),
        CertType::VCEK => "VCEK".into(),
        CertType::VLEK => "VLEK".into(),
        CertType::CRL => "CRL".into(),
        other => format!("{other:?}"),
    }
}

/// The evidence for a raw report and the certificate table entries (GUID, bytes) that
/// came with it, such as configfs-tsm's `auxblob`.
pub fn evidence(report: &[u8], table: &[(String, Vec<u8>)]) -> Result<Value, ProtocolError> {
    let bad = |e: std::io::Error| ProtocolError::Malformed(format!("SNP report: {e}"));
    let attestation_report = AttestationReport::decode(&mut &report[..], ()).map_err(bad)?;
    let cert_chain: Vec<CertTableEntry> = table
        .iter()
        .filter_map(|(guid, data)| {
            // sev knows the firmware ABI's GUIDs; entries of other GUIDs are left out.
            let uuid = uuid::Uuid::parse_str(guid).ok()?;
            match CertType::try_from(&uuid).ok()? {
                CertType::Empty | CertType::OTHER(_) => None,
                cert_type => Some(CertTableEntry {
                    cert_type,
                    data: data.clone(),
                }),
            }
        })
        .collect();
    serde_json::to_value(SnpEvidence {
        attestation_report,
        cert_chain: (!cert_chain.is_empty()).then_some(cert_chain),
    })
    .map_err(|e| ProtocolError::Malformed(format!("SNP evidence: {e}")))
}

/// The raw report (the firmware's layout) and the certificates of `snp` evidence.
pub fn parse(evidence: &Value) -> Result<(Vec<u8>, Vec<Cert>), ProtocolError> {
    let e = SnpEvidence::deserialize(evidence)
        .map_err(|e| ProtocolError::Malformed(format!("SNP evidence: {e}")))?;
    let mut report = Vec::with_capacity(1184);
    e.attestation_report
        .encode(&mut report, ())
        .map_err(|e| ProtocolError::Malformed(format!("SNP report: {e}")))?;
    let certs = e
        .cert_chain
        .unwrap_or_default()
        .into_iter()
        .map(|c| Cert {
            kind: kind_of(&c.cert_type),
            der: c.data,
        })
        .collect();
    Ok((report, certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../rats/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_real_report_survives_the_json_form_byte_for_byte() {
        let report = fixture("test-report.bin");
        let vcek = fixture("test-vcek.der");
        let table = vec![
            (
                "63da758d-e664-4564-adc5-f4b93be8accd".to_string(),
                vcek.clone(),
            ),
            ("00000000-1111-2222-3333-444444444444".to_string(), vec![1]),
        ];
        let v = evidence(&report, &table).unwrap();
        assert!(v["attestation_report"]["measurement"].is_array());
        assert_eq!(v["cert_chain"][0]["cert_type"], "VCEK");
        let (back, certs) = parse(&v).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            certs,
            vec![Cert {
                kind: "VCEK".into(),
                der: vcek
            }]
        );
        // The Milan report too (another firmware generation).
        let milan = fixture("report_milan.hex");
        let milan = hex::decode(String::from_utf8(milan).unwrap().trim()).unwrap();
        let (back, _) = parse(&evidence(&milan, &[]).unwrap()).unwrap();
        assert_eq!(back, milan);
        // Without certificates: null.
        let v = evidence(&report, &[]).unwrap();
        assert!(v["cert_chain"].is_null());
        assert!(parse(&v).unwrap().1.is_empty());
    }

    #[test]
    fn malformed_snp_evidence_is_refused() {
        assert!(evidence(&[0u8; 10], &[]).is_err());
        assert!(parse(&serde_json::json!({"attestation_report": 1})).is_err());
        assert!(parse(&serde_json::json!({"quote": "AA=="})).is_err());
    }
}
