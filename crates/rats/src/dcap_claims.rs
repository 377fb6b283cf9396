//! The claims Intel's quote verification library gives beside the TCB status (its
//! "supplemental data", `sgx_ql_qv_supplemental_t`, filled by
//! `qve_set_quote_supplemental_data` in intel/confidential-computing.tee.dcap
//! `ae/QvE/qve/qve.cpp`), from what dcap-qvl verified. Confidential Containers'
//! Trustee puts the same values in its `sgx`/`tdx` claims; verdictd renames them.
//!
//! | claim | type | value |
//! |---|---|---|
//! | `dcap_tcb_date` | text | the older of the matched TCB info level's and QE identity level's `tcbDate` |
//! | `dcap_tcb_eval_num` | int | the lower of TCB info's and QE identity's `tcbEvaluationDataNumber` |
//! | `dcap_tcb_info_eval_num`, `dcap_qe_identity_eval_num` | int | each document's |
//! | `dcap_tcb_info_issue_date`, `dcap_tcb_info_next_update` | text | TCB info's `issueDate`, `nextUpdate` |
//! | `dcap_qe_identity_issue_date`, `dcap_qe_identity_next_update` | text | QE identity's |
//! | `dcap_earliest_issue_date`, `dcap_latest_issue_date` | text | earliest and latest `issueDate` / `thisUpdate` / `notBefore` over TCB info, QE identity, both CRLs and every certificate of the chains |
//! | `dcap_earliest_expiration_date` | text | earliest `nextUpdate` / `notAfter` over the same |
//! | `dcap_pck_crl_num`, `dcap_root_ca_crl_num` | int | the CRLs' CRL Number extension (0 when absent) |
//! | `dcap_root_key_id` | bytes | SHA-384 of the root CA's public key (the 65-byte SEC1 point) |
//! | `dcap_ppid` | bytes | the PCK certificate's PPID (16 bytes) |
//! | `dcap_sgx_type` | int | the PCK certificate's SGX type: 0 Standard, 1 Scalable, 2 Scalable with Integrity |
//! | `dcap_platform_instance_id` | bytes | the PCK certificate's platform instance ID, as the certificate stores it (Platform CA certificates only) |
//! | `dcap_dynamic_platform`, `dcap_cached_keys`, `dcap_smt_enabled` | bool | the PCK certificate's configuration (Platform CA certificates only) |
//! | `dcap_fmspc` | bytes | the PCK certificate's FMSPC |
//! | `dcap_revocation_checked`, `dcap_qe_identity_checked` | bool | `true` (`false` without collateral) |
//! | `dcap_unknown_claims` | list | the claims of this table (and `advisory_ids`) that could not be established |
//!
//! Computed dates are RFC 3339 in UTC with whole seconds (`2024-03-13T00:00:00Z`), as
//! Trustee formats Intel's; the documents' own `issueDate`/`nextUpdate` are as the
//! signed documents write them (Intel's services write the same form). A quote
//! verified without collateral still has the PCK certificate's claims and the root key
//! ID (its chain is checked up to the pinned root); the others, listed in
//! [`NEED_COLLATERAL`], are absent and named in `dcap_unknown_claims`.

use std::collections::BTreeMap;

use dcap_qvl::{PckCertFlag, QuoteClaims, QuoteCollateralV3, TcbInfo};
use sha2::Digest as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{ClaimValue, RatsError, Tee, Verified};

/// The claims that need Intel's collateral, in the order `dcap_unknown_claims` lists
/// them when there is none.
pub const NEED_COLLATERAL: &[&str] = &[
    "advisory_ids",
    "dcap_tcb_date",
    "dcap_tcb_eval_num",
    "dcap_tcb_info_eval_num",
    "dcap_qe_identity_eval_num",
    "dcap_tcb_info_issue_date",
    "dcap_tcb_info_next_update",
    "dcap_qe_identity_issue_date",
    "dcap_qe_identity_next_update",
    "dcap_earliest_issue_date",
    "dcap_latest_issue_date",
    "dcap_earliest_expiration_date",
    "dcap_pck_crl_num",
    "dcap_root_ca_crl_num",
];

/// A Unix time in RFC 3339 (UTC, whole seconds), as Trustee formats Intel's dates.
pub(crate) fn rfc3339(secs: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    u64::try_from(OffsetDateTime::parse(s, &Rfc3339).ok()?.unix_timestamp()).ok()
}

/// The claims of a quote's PCK certificate (DER). Not a verification: callers check
/// the chain first.
pub(crate) fn pck_certificate_claims(
    leaf_der: &[u8],
) -> Result<BTreeMap<String, ClaimValue>, String> {
    let ext = dcap_qvl::intel::parse_pck_extension(leaf_der).map_err(|e| format!("{e:#}"))?;
    let sgx_type = u8::try_from(ext.sgx_type).map_err(|_| "SGX type out of range".to_string())?;
    let piid = match ext.platform_instance_id {
        Some(id) => Some(
            <[u8; 16]>::try_from(id.as_slice())
                .map_err(|_| "platform instance ID is not 16 bytes".to_string())?,
        ),
        None => None,
    };
    Ok(pck_claims(
        &ext.ppid,
        sgx_type,
        piid,
        [ext.dynamic_platform, ext.cached_keys, ext.smt_enabled].map(PckCertFlag::from),
        &ext.fmspc,
    ))
}

fn pck_claims(
    ppid: &[u8],
    sgx_type: u8,
    platform_instance_id: Option<[u8; 16]>,
    flags: [PckCertFlag; 3],
    fmspc: &[u8],
) -> BTreeMap<String, ClaimValue> {
    let mut c = BTreeMap::new();
    c.insert("dcap_ppid".into(), ClaimValue::Bytes(ppid.to_vec()));
    c.insert("dcap_sgx_type".into(), ClaimValue::Int(sgx_type.into()));
    c.insert("dcap_fmspc".into(), ClaimValue::Bytes(fmspc.to_vec()));
    if let Some(id) = platform_instance_id {
        c.insert(
            "dcap_platform_instance_id".into(),
            ClaimValue::Bytes(id.to_vec()),
        );
    }
    for (name, flag) in [
        "dcap_dynamic_platform",
        "dcap_cached_keys",
        "dcap_smt_enabled",
    ]
    .into_iter()
    .zip(flags)
    {
        match flag {
            PckCertFlag::True => c.insert(name.into(), ClaimValue::Bool(true)),
            PckCertFlag::False => c.insert(name.into(), ClaimValue::Bool(false)),
            PckCertFlag::Undefined => None,
        };
    }
    c
}

/// SHA-384 of a certificate's public key as Intel's QvE computes `root_key_id` (the
/// bit string's contents: for P-256 the 65-byte uncompressed point).
pub(crate) fn root_key_id(root_der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(root_der)
        .map_err(|e| format!("root CA: {e}"))?;
    Ok(sha2::Sha384::digest(cert.public_key().subject_public_key.data.as_ref()).to_vec())
}

/// Adds the claims of a quote verified with collateral.
pub(crate) fn add_verified(
    tee: Tee,
    v: &mut Verified,
    c: &QuoteClaims,
    collateral: &QuoteCollateralV3,
) -> Result<(), RatsError> {
    let err = |reason: String| RatsError::Collateral {
        tee: tee.name(),
        reason,
    };
    let tcb_info: TcbInfo = serde_json::from_str(&collateral.tcb_info)
        .map_err(|e| err(format!("TCB info after verification: {e}")))?;
    let date = |what: &str, secs: u64| {
        rfc3339(secs).ok_or_else(|| err(format!("{what} {secs} is not a date")))
    };

    // Intel's TCB date is the older of the TCB info level's and the QE identity level's
    // (qve.cpp: `tcb_level_date_tag`; Trustee's docs: "Earliest date between tcbInfo
    // and qeIdentity"). The TCB info level is the first with the matched level's
    // components, dated by itself: dcap-qvl dates a TDX level by the TDX module
    // identity's level when that is older, which Intel's QvE does not.
    let matched = &c.platform.tcb_level;
    let level_date = tcb_info
        .tcb_levels
        .iter()
        .find(|l| l.tcb == matched.tcb)
        .map_or(matched.tcb_date.as_str(), |l| l.tcb_date.as_str());
    let parse = |what: &str, s: &str| {
        parse_rfc3339(s).ok_or_else(|| err(format!("{what} {s:?} is not an RFC 3339 date")))
    };
    let tcb_date = parse("TCB level tcbDate", level_date)?.min(parse(
        "QE identity level tcbDate",
        &c.qe.tcb_level.tcb_date,
    )?);

    v.text("dcap_tcb_date", &date("TCB date", tcb_date)?)
        .int("dcap_tcb_eval_num", c.tcb.eval_data_number.into())
        .int(
            "dcap_tcb_info_eval_num",
            tcb_info.tcb_evaluation_data_number.into(),
        )
        .int(
            "dcap_qe_identity_eval_num",
            c.qe.tcb_eval_data_number.into(),
        )
        .text("dcap_tcb_info_issue_date", &tcb_info.issue_date)
        .text("dcap_tcb_info_next_update", &tcb_info.next_update)
        .text(
            "dcap_earliest_issue_date",
            &date("earliest issue date", c.earliest_issue_date)?,
        )
        .text(
            "dcap_latest_issue_date",
            &date("latest issue date", c.latest_issue_date)?,
        )
        .text(
            "dcap_earliest_expiration_date",
            &date("earliest expiration date", c.earliest_expiration_date)?,
        )
        .int("dcap_pck_crl_num", c.platform.pck_crl_num.into())
        .int("dcap_root_ca_crl_num", c.platform.root_ca_crl_num.into())
        .bytes("dcap_root_key_id", &c.platform.root_key_id)
        .bool("dcap_revocation_checked", true)
        .bool("dcap_qe_identity_checked", true);
    // dcap-qvl keeps the QE identity's own dates only inside its date window; read
    // them from the document it verified.
    let qe: dcap_qvl::QeIdentity = serde_json::from_str(&collateral.qe_identity)
        .map_err(|e| err(format!("QE identity after verification: {e}")))?;
    v.text("dcap_qe_identity_issue_date", &qe.issue_date)
        .text("dcap_qe_identity_next_update", &qe.next_update);
    let pck = &c.platform.pck;
    v.claims.extend(pck_claims(
        &pck.ppid,
        pck.sgx_type,
        pck.platform_instance_id,
        [pck.dynamic_platform, pck.cached_keys, pck.smt_enabled],
        &pck.fmspc,
    ));
    v.claims
        .insert("dcap_unknown_claims".into(), ClaimValue::List(vec![]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_formatted_as_trustee_formats_intels() {
        // Trustee's parse_supplemental_data test (deps/verifier/src/intel_dcap/claims.rs
        // at 78962cd416dcc8a32f9377e0066a28fe21420f69): these Unix times give these
        // strings through its format_rfc3339.
        for (secs, want) in [
            (1526899510, "2018-05-21T10:45:10Z"),
            (1756048752, "2025-08-24T15:19:12Z"),
            (1758639725, "2025-09-23T15:02:05Z"),
            (1710288000, "2024-03-13T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs).as_deref(), Some(want));
            assert_eq!(parse_rfc3339(want), Some(secs));
        }
        assert_eq!(rfc3339(u64::MAX), None);
        assert_eq!(parse_rfc3339("2024-03-13"), None);
    }
}
