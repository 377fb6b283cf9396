//! Why evidence was not verified. Each error is one line and says which check failed.

/// A verification failure, by the check that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RatsError {
    /// The evidence is not well-formed (truncated, wrong version, wrong type, garbage).
    #[error("malformed {tee} evidence: {reason}")]
    Malformed { tee: &'static str, reason: String },
    /// The evidence's type could not be recognised, or was not the one asked for.
    #[error("unknown evidence type: {0}")]
    UnknownType(String),
    /// A signature over the evidence (or part of it) does not verify.
    #[error("{tee} evidence: bad signature: {reason}")]
    Signature { tee: &'static str, reason: String },
    /// A certificate chain does not lead to the pinned root, or a certificate was revoked.
    #[error("{tee} evidence: certificate chain: {reason}")]
    CertificateChain { tee: &'static str, reason: String },
    /// Collateral (TCB info, identities, CRLs, certificates) is outside its validity
    /// window at the verification time. The reason starts "collateral expired:" or
    /// "collateral not yet valid:" and names the item, its date and the verification
    /// time in RFC 3339 ([`crate::validity`]).
    #[error("{tee} evidence: {reason}")]
    CollateralExpired { tee: &'static str, reason: String },
    /// Collateral is missing, malformed, or does not belong to this evidence.
    #[error("{tee} evidence: collateral: {reason}")]
    Collateral { tee: &'static str, reason: String },
    /// Collateral could not be fetched (feature `fetch`): the service's URL and why.
    #[error("fetching collateral: {0}")]
    Fetch(String),
    /// The platform's TCB is revoked or matches no TCB level.
    #[error("{tee} evidence: TCB: {reason}")]
    Tcb { tee: &'static str, reason: String },
    /// A TD's attributes make it untrustworthy whatever the policy (SEPT_VE_DISABLE
    /// clear, MIGRATABLE, reserved bits; see [`crate::tdx::TdClass::refusals`]).
    #[error("{tee} evidence: TD attributes: {reason}")]
    TdAttributes { tee: &'static str, reason: String },
    /// The evidence is genuine but bound to other report data (not fresh, or not ours).
    #[error("{tee} evidence is bound to other report data (expected {expected}, found {found})")]
    ReportDataMismatch {
        tee: &'static str,
        expected: String,
        found: String,
    },
    /// The runtime event log given with the evidence is malformed, or does not replay
    /// into the registers the evidence signs (the first bad record is named).
    #[error("{tee} evidence: {reason}")]
    EventLog { tee: &'static str, reason: String },
    /// Evidence could not be produced.
    #[error("{tee} attester: {reason}")]
    Attester { tee: &'static str, reason: String },
    /// A policy could not be read.
    #[error("policy: {0}")]
    Policy(String),
}
