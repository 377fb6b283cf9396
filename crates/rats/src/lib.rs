//! Remote attestation for Inclavare Containers: "is this evidence genuine, fresh, and
//! from the software I expect?" for every TEE the project supports.
//!
//! - [`verify`] checks evidence of any supported type against collateral at a given
//!   time and returns the [`Verified`] claims, or a [`RatsError`] naming the failed
//!   check. It makes no network calls: collateral and time are inputs, so air-gapped
//!   and CI verification work.
//! - [`Policy::appraise`] then decides whether a relying party accepts those claims.
//!   The TCB status and advisories stay in the result whatever the policy says.
//! - [`Attester`]s produce evidence bound to 64 bytes of report data: configfs-tsm for
//!   TDX and SNP ([`tsm`]), aesmd and an enclave's REPORT for SGX ([`sgx`]), `sim`,
//!   `sample`.
//!
//! | [`Tee`] | evidence | collateral |
//! |---|---|---|
//! | `sgx_ecdsa` | DCAP quote v3 | `QuoteCollateralV3` JSON, or none (TCB `Unknown`) |
//! | `tdx_ecdsa` | DCAP quote v4/v5 | `QuoteCollateralV3` JSON, or none (TCB `Unknown`) |
//! | `sev_snp` | attestation report v2+ (1184 bytes) | VCEK/VLEK (DER/PEM) or a certificate table |
//! | `sim` | `liberpal-sim` report (544 bytes; version 1: 272) | none: signed by the host's platform key |
//! | `sample` | `{"svn","report_data"}` | none: nothing is signed |
//!
//! configfs-tsm's JSON envelope `{"provider","outblob","auxblob"}` ([`tsm::TsmReport`])
//! is recognised as the TDX or SNP evidence in its outblob, its auxblob serving as SNP
//! collateral when no other is given.
//!
//! `sim` and `sample` prove nothing about hardware; the default policy refuses them.

mod claims;
pub mod dcap;
pub mod dcap_cache;
mod dcap_claims;
mod dcap_offline;
mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
mod policy;
pub mod sgx;
pub mod snp;
mod software;
pub mod tdx;
pub mod tsm;
pub mod validity;

use serde::Serialize;

pub use claims::{ClaimValue, Verified};
pub use dcap_cache::CollateralCache;
pub use dcap_qvl::QuoteCollateralV3;
pub use error::RatsError;
pub use policy::{Policy, Verdict};
pub use software::SampleEvidence;

/// The kinds of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tee {
    SgxEcdsa,
    TdxEcdsa,
    SevSnp,
    Sim,
    Sample,
}

impl Tee {
    pub const ALL: [Tee; 5] = [
        Tee::SgxEcdsa,
        Tee::TdxEcdsa,
        Tee::SevSnp,
        Tee::Sim,
        Tee::Sample,
    ];

    /// The stable name (`sgx_ecdsa`, `tdx_ecdsa`, `sev_snp`, `sim`, `sample`).
    pub fn name(self) -> &'static str {
        match self {
            Tee::SgxEcdsa => "sgx_ecdsa",
            Tee::TdxEcdsa => "tdx_ecdsa",
            Tee::SevSnp => "sev_snp",
            Tee::Sim => "sim",
            Tee::Sample => "sample",
        }
    }

    /// Parses a name given by [`Tee::name`] (also `sgx`, `tdx`, `snp`).
    pub fn from_name(s: &str) -> Result<Tee, RatsError> {
        Ok(match s {
            "sgx_ecdsa" | "sgx" => Tee::SgxEcdsa,
            "tdx_ecdsa" | "tdx" => Tee::TdxEcdsa,
            "sev_snp" | "snp" => Tee::SevSnp,
            "sim" => Tee::Sim,
            "sample" => Tee::Sample,
            other => {
                return Err(RatsError::UnknownType(format!(
                    "{other:?} (known: sgx_ecdsa, tdx_ecdsa, sev_snp, sim, sample)"
                )))
            }
        })
    }

    /// Recognises evidence by its own header.
    pub fn detect(evidence: &[u8]) -> Result<Tee, RatsError> {
        if evidence.starts_with(&sim_tee::REPORT_MAGIC) {
            return Ok(Tee::Sim);
        }
        if evidence.first() == Some(&b'{') {
            // configfs-tsm's JSON envelope names its TEE; other JSON is `sample`.
            if let Some(report) = tsm::TsmReport::from_json(evidence)? {
                return report.tee();
            }
            return Ok(Tee::Sample);
        }
        if evidence.len() >= 8 {
            let version = u16::from_le_bytes([evidence[0], evidence[1]]);
            let key_type = u16::from_le_bytes([evidence[2], evidence[3]]);
            let tee_type = u32::from_le_bytes([evidence[4], evidence[5], evidence[6], evidence[7]]);
            if (3..=5).contains(&version) && key_type == 2 {
                match tee_type {
                    0 => return Ok(Tee::SgxEcdsa),
                    0x81 => return Ok(Tee::TdxEcdsa),
                    _ => {}
                }
            }
            let snp_version =
                u32::from_le_bytes([evidence[0], evidence[1], evidence[2], evidence[3]]);
            if evidence.len() >= 0x4A0 && (2..=5).contains(&snp_version) {
                return Ok(Tee::SevSnp);
            }
        }
        Err(RatsError::UnknownType(format!(
            "{} bytes that are neither a DCAP quote, an SNP report, a sim report nor sample JSON",
            evidence.len()
        )))
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Collateral: what a verifier needs besides the evidence.
#[derive(Debug, Clone)]
pub enum Collateral {
    /// Intel DCAP collateral (TCB info, QE identity, CRLs, issuer chains).
    Dcap(Box<QuoteCollateralV3>),
    /// The VCEK/VLEK, and perhaps the ARK and ASK, of an SEV-SNP report.
    Snp(snp::SnpCollateral),
}

impl Collateral {
    /// Reads collateral for `tee` from its file bytes.
    pub fn parse(tee: Tee, bytes: &[u8]) -> Result<Collateral, RatsError> {
        match tee {
            Tee::SgxEcdsa | Tee::TdxEcdsa => {
                Ok(Collateral::Dcap(Box::new(dcap::parse_collateral(bytes)?)))
            }
            Tee::SevSnp => Ok(Collateral::Snp(snp::SnpCollateral::parse(bytes)?)),
            other => Err(RatsError::Collateral {
                tee: other.name(),
                reason: "this evidence type takes no collateral".into(),
            }),
        }
    }
}

/// What a verification is checked against.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The report data the evidence must be bound to (a nonce, a key hash), if any.
    pub report_data: Option<[u8; 64]>,
    pub collateral: Option<Collateral>,
    /// Seconds since the Unix epoch at which certificates and collateral must be valid.
    pub now: u64,
}

/// Verifies evidence of type `tee`, or of the type its header shows. DCAP quotes with
/// collateral go through the process-wide [`CollateralCache::global`]: the verdict and
/// claims are the same with or without it ([`dcap_cache`]).
pub fn verify(evidence: &[u8], tee: Option<Tee>, input: &Input) -> Result<Verified, RatsError> {
    verify_with_cache(evidence, tee, input, Some(CollateralCache::global()))
}

/// [`verify`] with another collateral cache, or none (every DCAP quote verified in full).
pub fn verify_with_cache(
    evidence: &[u8],
    tee: Option<Tee>,
    input: &Input,
    cache: Option<&CollateralCache>,
) -> Result<Verified, RatsError> {
    let tee = match tee {
        Some(t) => t,
        None => Tee::detect(evidence)?,
    };
    Builtin { tee, cache }.verify(evidence, input)
}

/// Verifies evidence as [`verify`] does, and that `event_log` (the TCG2 AAEL bytes,
/// `measurement::eventlog`) is the log its runtime measurement registers were extended
/// with: every record's digest matches its event, and the log replays to each register
/// with as many records as extends. The events become the claim `sim_event_log`. A log
/// that does not replay is refused naming its first bad record
/// ([`RatsError::EventLog`]). Only `sim` evidence carries registers this checks.
pub fn verify_with_event_log(
    evidence: &[u8],
    tee: Option<Tee>,
    input: &Input,
    event_log: &[u8],
) -> Result<Verified, RatsError> {
    let tee = match tee {
        Some(t) => t,
        None => Tee::detect(evidence)?,
    };
    match tee {
        Tee::Sim => software::verify_sim(evidence, input, Some(event_log)),
        other => Err(RatsError::EventLog {
            tee: other.name(),
            reason: "replaying an event log is supported for sim evidence only".into(),
        }),
    }
}

/// Checks evidence of one type.
pub trait Verifier {
    fn tee(&self) -> Tee;
    /// Verifies `evidence` against `input`; never panics on any bytes.
    fn verify(&self, evidence: &[u8], input: &Input) -> Result<Verified, RatsError>;
}

/// The verifier for `tee` (with the process-wide [`CollateralCache::global`]).
pub fn verifier(tee: Tee) -> Box<dyn Verifier> {
    Box::new(Builtin {
        tee,
        cache: Some(CollateralCache::global()),
    })
}

struct Builtin<'a> {
    tee: Tee,
    cache: Option<&'a CollateralCache>,
}

impl Verifier for Builtin<'_> {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn verify(&self, evidence: &[u8], input: &Input) -> Result<Verified, RatsError> {
        if evidence.first() == Some(&b'{') {
            if let Some(report) = tsm::TsmReport::from_json(evidence)? {
                return self.verify_tsm_report(&report, input);
            }
        }
        match self.tee {
            Tee::SgxEcdsa | Tee::TdxEcdsa => {
                if Tee::detect(evidence).ok() != Some(self.tee) {
                    return Err(RatsError::Malformed {
                        tee: self.tee.name(),
                        reason: "not a DCAP quote of this TEE type".into(),
                    });
                }
                match &input.collateral {
                    Some(Collateral::Dcap(c)) => {
                        dcap::verify(self.tee, evidence, c, input, self.cache)
                    }
                    // What the quote carries is checked; the TCB status is `Unknown`.
                    None => dcap_offline::verify(self.tee, evidence, input),
                    Some(Collateral::Snp(_)) => Err(RatsError::Collateral {
                        tee: self.tee.name(),
                        reason: "SEV-SNP certificates are no DCAP collateral".into(),
                    }),
                }
            }
            Tee::Sim => software::verify_sim(evidence, input, None),
            Tee::Sample => software::verify_sample(evidence, input),
            Tee::SevSnp => {
                let Some(Collateral::Snp(c)) = &input.collateral else {
                    return Err(RatsError::Collateral {
                        tee: self.tee.name(),
                        reason: "the VCEK or VLEK certificate (or a certificate table) is required"
                            .into(),
                    });
                };
                snp::verify(evidence, c, input)
            }
        }
    }
}

impl Builtin<'_> {
    /// configfs-tsm's JSON envelope: its outblob is the evidence, its auxblob (SNP's
    /// certificate table) the collateral unless other collateral is given.
    fn verify_tsm_report(
        &self,
        report: &tsm::TsmReport,
        input: &Input,
    ) -> Result<Verified, RatsError> {
        let e = report.evidence()?;
        if e.tee != self.tee {
            return Err(RatsError::Malformed {
                tee: self.tee.name(),
                reason: format!(
                    "a configfs-tsm report from {} ({} evidence)",
                    report.provider,
                    e.tee.name()
                ),
            });
        }
        let mut inner = input.clone();
        if let (None, Some(aux), Tee::SevSnp) = (&inner.collateral, &e.collateral, e.tee) {
            inner.collateral = Some(Collateral::parse(e.tee, aux)?);
        }
        self.verify(&e.bytes, &inner)
    }
}

/// Evidence an attester produced, with the collateral it came with (SNP's certificate
/// table from configfs-tsm's `auxblob`), ready for [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub tee: Tee,
    pub bytes: Vec<u8>,
    pub collateral: Option<Vec<u8>>,
}

/// Produces evidence bound to 64 bytes of report data.
pub trait Attester {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError>;
}

/// Confidential Containers' `sample` attester: works anywhere, proves nothing.
pub struct SampleAttester;

impl Attester for SampleAttester {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        Ok(Evidence {
            tee: Tee::Sample,
            bytes: serde_json::to_vec(&SampleEvidence::new(report_data)).expect("serialises"),
            collateral: None,
        })
    }
}

/// The `sim` attester: asks `liberpal-sim` through the evidence socket the enclave
/// inherited (see [`sim_tee::evidence`]).
pub struct SimAttester {
    fd: std::os::fd::RawFd,
}

impl SimAttester {
    /// The attester of a program running in a `sim` enclave, if this is one.
    pub fn inherited() -> Option<SimAttester> {
        sim_tee::evidence::inherited_fd().map(|fd| SimAttester { fd })
    }

    /// The evidence socket, for the runtime-measurement requests of
    /// [`sim_tee::evidence`].
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

impl Attester for SimAttester {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let report = sim_tee::evidence::request_report(self.fd, report_data).map_err(|e| {
            RatsError::Attester {
                tee: "sim",
                reason: e.to_string(),
            }
        })?;
        Ok(Evidence {
            tee: Tee::Sim,
            bytes: report.to_bytes().to_vec(),
            collateral: None,
        })
    }
}

/// The attester for the TEE this process runs in: `sim` inside a `sim` enclave, the
/// kernel's configfs-tsm report interface in a TDX or SNP guest, `sample` elsewhere.
pub fn auto_attester() -> Box<dyn Attester + Send + Sync> {
    if let Some(a) = SimAttester::inherited() {
        return Box::new(a);
    }
    if let Some(a) = tsm::TsmAttester::probe(std::path::Path::new(tsm::TSM_REPORT_DIR)) {
        return Box::new(a);
    }
    Box::new(SampleAttester)
}

pub(crate) fn check_report_data(
    tee: &'static str,
    found: &[u8],
    input: &Input,
) -> Result<(), RatsError> {
    match &input.report_data {
        Some(expected) if expected[..] != *found => Err(RatsError::ReportDataMismatch {
            tee,
            expected: hex::encode(expected),
            found: hex::encode(found),
        }),
        _ => Ok(()),
    }
}
