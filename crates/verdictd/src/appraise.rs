//! From evidence to an EAR appraisal: the evidence is verified by `rats` (bound to the
//! session's runtime data), its claims laid out as Trustee's verifiers lay them out
//! ([`crate::claims`]), and judged by the attestation policy ([`crate::ear_policy`]:
//! Rego as Trustee's, or a rats appraisal policy) with the registered reference values.
//! The token is issued either way: its `ear.status` says what the policy concluded,
//! and resource policies decide on it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kbs_protocol::Attestation;
use serde_json::{json, Value};

use crate::ear_policy::{self, AttestationPolicy, ReferenceValues};
use crate::KbsError;

/// The evidence kinds verdictd verifies, by their KBS `tee` name.
pub fn tee_of(name: &str) -> Result<rats::Tee, KbsError> {
    match name {
        "sample" => Ok(rats::Tee::Sample),
        kbs_protocol::TEE_SIM => Ok(rats::Tee::Sim),
        "sgx" => Ok(rats::Tee::SgxEcdsa),
        "tdx" => Ok(rats::Tee::TdxEcdsa),
        "snp" => Ok(rats::Tee::SevSnp),
        other => Err(KbsError::Attestation(format!(
            "TEE {other:?} is not supported (supported: sample, sim, sgx, tdx, snp)"
        ))),
    }
}

/// The KBS `tee` name of a TEE verdictd verifies (the key of its claims).
pub fn tee_name(tee: rats::Tee) -> &'static str {
    match tee {
        rats::Tee::Sample => "sample",
        rats::Tee::Sim => kbs_protocol::TEE_SIM,
        rats::Tee::SgxEcdsa => "sgx",
        rats::Tee::TdxEcdsa => "tdx",
        rats::Tee::SevSnp => "snp",
    }
}

/// The policy id Trustee's KBS appraises CPU evidence with (`default` + `_cpu`), and
/// the `ear.appraisal-policy-id` it reports.
pub const ACTIVE_POLICY: &str = "default_cpu";
const REPORTED_POLICY_ID: &str = "default";

/// The appraisal's key for why it is not affirming (one line each: the claim, the
/// value found, the reference values it is not among); empty when it is.
pub const REASONS: &str = "verdictd.reasons";

/// Verifies and appraises attestations: the attestation policies, the reference
/// values and the DCAP collateral.
pub struct Appraiser {
    /// Attestation policies by id; [`ACTIVE_POLICY`] is the one applied.
    policies: RwLock<BTreeMap<String, AttestationPolicy>>,
    reference_values: RwLock<ReferenceValues>,
    /// When values from signed bundles stop counting (Unix seconds), by name.
    expiry: RwLock<BTreeMap<String, i64>>,
    collateral: Option<rats::Collateral>,
    /// The measurement gate (`[rvps] require_reference_values`).
    require_reference_values: bool,
}

/// The measurement claim of the enclaves the gate covers: (rats' claim name, the
/// reference value id Trustee-style policies query, the claim's path for the reason).
fn measurement_claim(tee: rats::Tee) -> Option<(&'static str, &'static str, &'static str)> {
    match tee {
        rats::Tee::Sim => Some(("sim_mr_enclave", "sim_mr_enclave", "sim.sim_mr_enclave")),
        rats::Tee::SgxEcdsa => Some(("sgx_mr_enclave", "mr_enclave", "sgx.body.mr_enclave")),
        _ => None,
    }
}

/// The measurement gate: a `sim` or SGX enclave's `mr_enclave` must be among the
/// provisioned reference values (under the policy's id or rats' claim name) or a rats
/// policy's `[expected]` values. `None` when it is (or the TEE is not covered); else
/// the reason, naming the value found and the values expected.
fn gate_reason(
    tee: rats::Tee,
    verified: &rats::Verified,
    policy: &AttestationPolicy,
    reference_values: &ReferenceValues,
) -> Option<String> {
    let (claim, rv_id, path) = measurement_claim(tee)?;
    let found = verified
        .claims
        .get(claim)
        .map(|c| c.canonical().join(","))
        .unwrap_or_default();
    let mut accepted: Vec<String> = [rv_id, claim]
        .iter()
        .filter_map(|id| reference_values.get(*id))
        .flat_map(as_strings)
        .collect();
    if let AttestationPolicy::Rats(p) = policy {
        accepted.extend(p.expected.get(claim).into_iter().flatten().cloned());
    }
    accepted.dedup();
    if accepted.iter().any(|a| a.eq_ignore_ascii_case(&found)) {
        return None;
    }
    Some(if accepted.is_empty() {
        format!("no reference value {rv_id} is provisioned: claim {path} is {found}")
    } else {
        // explain()'s wording, so a policy that asked for the same id says it once.
        format!(
            "claim {path} is {found}, not among the reference values {rv_id} ({})",
            accepted.join(", ")
        )
    })
}

/// The rats policy's verdict as a trust vector: each refusal reason lands in the
/// claim it is about.
fn rats_vector(
    tee: rats::Tee,
    policy: &rats::Policy,
    verified: &rats::Verified,
    reference_values: &ReferenceValues,
) -> (BTreeMap<String, i64>, Vec<String>, bool) {
    let mut policy = policy.clone();
    // A rats policy compares claims by claim name. Slash-joined ids (Trustee's CoRIM
    // ids `vendor/model/mkey/digests`, `rvps:///…` URIs) name no claim: they are for
    // Rego's `query_reference_value`, and would otherwise read as missing claims.
    for (name, value) in reference_values.iter().filter(|(n, _)| !n.contains('/')) {
        policy
            .expected
            .entry(name.clone())
            .or_default()
            .extend(as_strings(value));
    }
    let verdict = policy.appraise(verified);
    let hardware = if tee.is_software() && !policy.allow_software_tees {
        97
    } else if verified
        .tcb_status
        .as_ref()
        .is_some_and(|s| !policy.accepted_tcb_statuses.contains(s))
        || verified
            .advisory_ids
            .iter()
            .any(|a| !policy.allowed_advisory_ids.contains(a))
    {
        32
    } else {
        2
    };
    let configuration = if verified.debug && !policy.allow_debug {
        96
    } else {
        2
    };
    let expected_failed = verdict.reasons.iter().any(|r| r.starts_with("claim "));
    let executables = match (policy.expected.is_empty(), expected_failed) {
        (true, _) => 0,
        (false, false) => 2,
        (false, true) => 33,
    };
    let mut vector: BTreeMap<String, i64> = ear_policy::TRUST_CLAIMS
        .iter()
        .map(|c| (c.to_string(), 0))
        .collect();
    vector.insert("hardware".into(), hardware);
    vector.insert("configuration".into(), configuration);
    vector.insert("executables".into(), executables);
    (vector, verdict.reasons, verdict.accepted)
}

/// A reference value as the strings a rats policy compares claims with: a string as
/// is, numbers in decimal, booleans as `true`/`false`, each item of a list.
fn as_strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(as_strings).collect(),
        Value::Null => vec![],
        other => vec![other.to_string()],
    }
}

impl Appraiser {
    /// `policy` is applied as [`ACTIVE_POLICY`]; `collateral` is the DCAP collateral
    /// for SGX and TDX quotes.
    pub fn new(policy: AttestationPolicy, collateral: Option<rats::Collateral>) -> Appraiser {
        Appraiser {
            policies: RwLock::new(BTreeMap::from([(ACTIVE_POLICY.to_string(), policy)])),
            reference_values: RwLock::new(Arc::new(BTreeMap::new())),
            expiry: RwLock::new(BTreeMap::new()),
            collateral,
            require_reference_values: true,
        }
    }

    /// Turns the measurement gate on (the default) or off: when on, a `sim` or SGX
    /// enclave whose `mr_enclave` is not a provisioned reference value is
    /// contraindicated (executables 96), whatever the attestation policy said.
    pub fn require_reference_values(&mut self, on: bool) {
        self.require_reference_values = on;
    }

    /// Registers reference values from a verified signed bundle: as
    /// [`Appraiser::set_reference_values`], and each stops counting at `expires`
    /// (Unix seconds).
    pub fn set_signed_reference_values(&self, values: BTreeMap<String, Value>, expires: i64) {
        let mut expiry = self.expiry.write().expect("expiry");
        for name in values.keys() {
            expiry.insert(name.clone(), expires);
        }
        self.store(values);
    }

    /// The values that count at `now` (Unix seconds): expired ones are left out.
    fn current(&self, now: i64) -> ReferenceValues {
        let all = self
            .reference_values
            .read()
            .expect("reference values")
            .clone();
        let expiry = self.expiry.read().expect("expiry");
        if !expiry.values().any(|e| *e <= now) {
            return all;
        }
        Arc::new(
            all.iter()
                .filter(|(name, _)| expiry.get(*name).is_none_or(|e| *e > now))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Stores an attestation policy under `id` (Rego, or a rats policy in TOML or
    /// JSON). `default_cpu` (kbs-client's default id) is the one applied; `default` is
    /// taken as `default_cpu`.
    pub fn set_policy(&self, id: &str, text: &str) -> Result<(), KbsError> {
        let policy = AttestationPolicy::parse(text)
            .map_err(|e| KbsError::Attestation(format!("set attestation policy {id:?}: {e}")))?;
        let id = if id == "default" { ACTIVE_POLICY } else { id };
        self.policies
            .write()
            .expect("policy lock")
            .insert(id.to_string(), policy);
        Ok(())
    }

    /// Registers reference values (name → any JSON value); a name registered again is
    /// replaced, as Trustee's RVPS replaces it.
    pub fn set_reference_values(&self, values: BTreeMap<String, Value>) {
        let mut expiry = self.expiry.write().expect("expiry");
        for name in values.keys() {
            expiry.remove(name);
        }
        self.store(values);
    }

    fn store(&self, values: BTreeMap<String, Value>) {
        let mut rv = self.reference_values.write().expect("reference values");
        let mut next = (**rv).clone();
        next.extend(values);
        *rv = Arc::new(next);
    }

    /// Replaces every reference value at once (name → value and, for a signed
    /// bundle's, when it stops counting in Unix seconds): how a replica takes over
    /// what the database holds.
    pub fn replace_reference_values(&self, values: BTreeMap<String, (Value, Option<i64>)>) {
        let mut rv = self.reference_values.write().expect("reference values");
        let mut expiry = self.expiry.write().expect("expiry");
        *expiry = values
            .iter()
            .filter_map(|(name, (_, e))| e.map(|e| (name.clone(), e)))
            .collect();
        *rv = Arc::new(values.into_iter().map(|(k, (v, _))| (k, v)).collect());
    }

    /// Removes a reference value; whether it existed.
    pub fn delete_reference_value(&self, name: &str) -> bool {
        let mut rv = self.reference_values.write().expect("reference values");
        let mut next = (**rv).clone();
        let existed = next.remove(name).is_some();
        *rv = Arc::new(next);
        self.expiry.write().expect("expiry").remove(name);
        existed
    }

    /// A registered reference value, unless it expired.
    pub fn reference_value(&self, name: &str) -> Option<Value> {
        self.current(chrono::Utc::now().timestamp())
            .get(name)
            .cloned()
    }

    /// Verifies the attestation of a `tee` session whose runtime data hashed to
    /// `digest`, and appraises it: the `cpu0` submodule of the EAR.
    pub fn appraise(
        &self,
        tee: rats::Tee,
        attestation: &Attestation,
        digest: &[u8],
        now: u64,
    ) -> Result<Value, KbsError> {
        self.appraise_with(tee, attestation, Some(digest), now)
    }

    /// [`Appraiser::appraise`] without the session binding: the evidence's report data
    /// is taken as it is (no nonce was issued for it). For `verdictd policy test` on
    /// evidence recorded outside an exchange (a quote, a report); never for a session.
    pub fn appraise_unbound(
        &self,
        tee: rats::Tee,
        attestation: &Attestation,
        now: u64,
    ) -> Result<Value, KbsError> {
        self.appraise_with(tee, attestation, None, now)
    }

    fn appraise_with(
        &self,
        tee: rats::Tee,
        attestation: &Attestation,
        digest: Option<&[u8]>,
        now: u64,
    ) -> Result<Value, KbsError> {
        let tee_name = tee_name(tee);
        let evidence = &attestation.tee_evidence.primary_evidence;
        let bad = |what: &str| KbsError::Attestation(format!("{tee_name} evidence: {what}"));
        let b64_field = |field: &str| -> Result<Vec<u8>, KbsError> {
            let s = evidence
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("no {field:?} string")))?;
            STANDARD
                .decode(s)
                .map_err(|e| bad(&format!("{field} is not base64: {e}")))
        };
        let mut collateral = self.collateral.clone();
        let bytes = match tee {
            rats::Tee::Sample => {
                // Trustee's sample verifier compares the decoded report_data with the
                // digest exactly, without padding.
                if let Some(digest) = digest {
                    if b64_field("report_data")? != digest {
                        return Err(KbsError::Attestation(
                            "sample evidence refused: REPORT_DATA is different from that in Sample Quote (report data)".into(),
                        ));
                    }
                }
                serde_json::to_vec(evidence).map_err(|e| bad(&e.to_string()))?
            }
            rats::Tee::Sim => b64_field("report")?,
            rats::Tee::SevSnp => {
                // The VCEK (or VLEK) comes with the evidence; it is checked up to AMD's
                // root built into rats, so the guest cannot pass off another chip's.
                let (report, certs) =
                    kbs_protocol::snp::parse(evidence).map_err(|e| bad(&e.to_string()))?;
                let find = |kinds: &[&str]| {
                    certs
                        .iter()
                        .find(|c| kinds.contains(&c.kind.as_str()))
                        .map(|c| c.der.clone())
                };
                let vek = find(&["VCEK", "VLEK"]).ok_or_else(|| {
                    bad("no VCEK or VLEK in cert_chain (verdictd does not fetch from AMD's KDS)")
                })?;
                collateral = Some(rats::Collateral::Snp(rats::snp::SnpCollateral {
                    vek,
                    vlek: find(&["VLEK"]),
                    ask: find(&["ASK", "ASVK"]),
                    ark: find(&["ARK"]),
                }));
                report
            }
            _ => b64_field("quote")?,
        };
        let input = rats::Input {
            report_data: digest
                .map(kbs_protocol::binding::report_data_64)
                .transpose()
                .map_err(|e| bad(&e.to_string()))?,
            collateral,
            now,
        };
        let eventlog = kbs_protocol::eventlog::EventLog::from_additional_evidence(
            &attestation.tee_evidence.additional_evidence,
        )
        .map_err(|e| KbsError::Attestation(e.to_string()))?;
        // The report data covers the log (it is in the runtime data hashed into it), so
        // once the evidence verifies, the log is the enclave's; each record's text must
        // also be what its digest says, since policies read the text. A sim report also
        // signs the registers the log extended: the log (empty when none was sent) must
        // replay into them, so no event the enclave recorded can be left out.
        let refused =
            |e: rats::RatsError| KbsError::Attestation(format!("{tee_name} evidence refused: {e}"));
        let verified = match tee {
            rats::Tee::Sim => {
                rats::verify_with_event_log(&bytes, Some(tee), &input, &eventlog.to_bytes())
                    .map_err(refused)?
            }
            _ => rats::verify(&bytes, Some(tee), &input).map_err(refused)?,
        };
        eventlog
            .check_digests()
            .map_err(|e| KbsError::Attestation(format!("{tee_name} evidence refused: {e}")))?;
        let mut claims =
            crate::claims::of(tee, &bytes, evidence, &verified).map_err(|e| bad(&e))?;
        if !eventlog.is_empty() {
            // Where trustee puts a TDX guest's AAEL: `<tee>.uefi_event_logs`.
            claims
                .claims
                .insert("uefi_event_logs".into(), eventlog.claims());
        }
        let annotated = annotate(tee, attestation, claims).map_err(|e| bad(&e))?;

        let policy = self
            .policies
            .read()
            .expect("policy lock")
            .get(ACTIVE_POLICY)
            .cloned()
            .unwrap_or_else(AttestationPolicy::default_cpu);
        let reference_values = self.current(now as i64);
        let mut submod = serde_json::Map::new();
        let (mut vector, mut status, mut reasons) = match &policy {
            AttestationPolicy::Rego(engine) => {
                let a = ear_policy::evaluate(engine, &annotated, &reference_values)
                    .map_err(|e| KbsError::Attestation(format!("attestation policy: {e}")))?;
                let status = ear_policy::status(&a.vector);
                let reasons = match status {
                    "affirming" => vec![],
                    _ => ear_policy::explain(&a, tee_name, &annotated, &reference_values),
                };
                for (name, value) in a.extensions {
                    submod.insert(name, value);
                }
                (a.vector, status, reasons)
            }
            AttestationPolicy::Rats(p) => {
                let (vector, reasons, accepted) = rats_vector(tee, p, &verified, &reference_values);
                // A refusal no claim explains still must not read as affirming.
                let status = match ear_policy::status(&vector) {
                    "affirming" | "none" if !accepted => "contraindicated",
                    s => s,
                };
                (vector, status, reasons)
            }
        };
        if self.require_reference_values {
            if let Some(reason) = gate_reason(tee, &verified, &policy, &reference_values) {
                let executables = vector.entry("executables".into()).or_insert(0);
                if ear_policy::tier(*executables) < 3 {
                    // AR4SI executables 96: contraindicated runtime.
                    *executables = 96;
                }
                status = "contraindicated";
                // The rats policy's own line about the same claim ("claim sim_mr_enclave
                // is X, not among the reference values (Y)") says it again, less fully.
                if let Some((claim, _, _)) = measurement_claim(tee) {
                    let same = format!("claim {claim} is ");
                    reasons.retain(|r| !r.starts_with(&same));
                }
                if !reasons.contains(&reason) {
                    reasons.insert(0, reason);
                }
            }
        }
        submod.insert("ear.status".into(), json!(status));
        submod.insert(REASONS.into(), json!(reasons));
        submod.insert(
            "ear.trustworthiness-vector".into(),
            ear_policy::vector_json(&vector),
        );
        submod.insert("ear.appraisal-policy-id".into(), json!(REPORTED_POLICY_ID));
        submod.insert("ear.veraison.annotated-evidence".into(), annotated);
        Ok(Value::Object(submod))
    }
}

/// The annotated evidence in Trustee's shape (T:`attestation-service/src/ear_token/
/// broker.rs` `transform_claims`): `{<tee>: claims, report_data, runtime_data_claims:
/// {nonce, tee-pubkey, additional-evidence}, init_data, init_data_claims}`, with the
/// init-data checked against the field the TEE measured it into.
fn annotate(
    tee: rats::Tee,
    attestation: &Attestation,
    claims: crate::claims::TeeClaims,
) -> Result<Value, String> {
    let init = match &attestation.init_data {
        Some(i) => Some(crate::initdata::parse(&i.format, &i.body)?),
        None => None,
    };
    let mut out = serde_json::Map::new();
    // (init_data, init_data_claims), as Trustee's verifiers and transform_claims give
    // them: the measured field (hex) for hardware TEEs, whether init-data was sent or
    // not; the sent init-data's digest (standard base64) for the software ones.
    let init_pair = match (&claims.init_data, &init) {
        (Some(field), init) => {
            if let Some(init) = init {
                let width = field.len() / 2;
                let expected = hex::encode(crate::initdata::fit(&init.digest, width));
                if *field != expected {
                    return Err(format!(
                        "init-data is not the one measured: the {} field is {field}, the init-data's digest {expected}",
                        tee_name(tee)
                    ));
                }
            }
            Some((
                field.clone(),
                init.as_ref()
                    .map(|i| i.claims.clone())
                    .unwrap_or(Value::Null),
            ))
        }
        (None, Some(init)) => Some((STANDARD.encode(&init.digest), init.claims.clone())),
        (None, None) => None,
    };
    out.insert(tee_name(tee).into(), Value::Object(claims.claims));
    if let Some((digest, init_claims)) = init_pair {
        out.insert("init_data".into(), json!(digest));
        out.insert("init_data_claims".into(), init_claims);
    }
    out.insert("report_data".into(), json!(claims.report_data));
    out.insert(
        "runtime_data_claims".into(),
        kbs_protocol::binding::runtime_data(
            &attestation.runtime_data.nonce,
            &attestation.runtime_data.tee_pubkey,
            &attestation.tee_evidence.additional_evidence,
        ),
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_protocol::{CompositeEvidence, RuntimeData};

    /// 2025-01-01, when the SNP fixture's VCEK is valid.
    const AT: u64 = 1_735_689_600;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../rats/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// configfs-tsm's `auxblob`: the VCEK's GUID in RFC 4122 byte order (as AMD's
    /// tools and virtee/sev write it), offset, length; a zero entry; the certificates.
    fn cert_table(vcek: &[u8]) -> Vec<u8> {
        let guid = hex::decode("63da758de6644564adc5f4b93be8accd").unwrap();
        let mut t = guid;
        t.extend_from_slice(&48u32.to_le_bytes());
        t.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
        t.extend_from_slice(&[0; 24]);
        t.extend_from_slice(vcek);
        t
    }

    fn attestation(primary_evidence: Value) -> Attestation {
        Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: "bm9uY2U".into(),
                tee_pubkey: kbs_protocol::jwe::TeeKeyPair::generate().public_key(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence: String::new(),
            },
        }
    }

    /// A real SNP report in the guest's JSON form, its VCEK in `cert_chain`: verified
    /// up to the binding, which a recorded report cannot satisfy for a new session.
    #[test]
    fn snp_evidence_in_the_guests_form_is_verified_with_its_vcek() {
        let appraiser = Appraiser::new(AttestationPolicy::default_cpu(), None);
        let vcek = (
            "63da758d-e664-4564-adc5-f4b93be8accd".to_string(),
            fixture("test-vcek.der"),
        );
        let report = fixture("test-report.bin");
        let digest = [7u8; 48];
        let good = kbs_protocol::snp::evidence(&report, std::slice::from_ref(&vcek)).unwrap();
        let err = appraiser
            .appraise(rats::Tee::SevSnp, &attestation(good.clone()), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("report data"), "{err}");

        // A changed measurement breaks the signature before the binding is looked at.
        let mut forged = good.clone();
        let m = forged["attestation_report"]["measurement"][0]
            .as_u64()
            .unwrap();
        forged["attestation_report"]["measurement"][0] = json!(m ^ 1);
        let err = appraiser
            .appraise(rats::Tee::SevSnp, &attestation(forged), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("report data"), "{err}");
        assert!(err.contains("snp evidence refused"), "{err}");

        // As the attestation agent makes it in an SNP guest, from configfs-tsm's report
        // and its `auxblob` certificate table.
        let e = rats::Evidence {
            tee: rats::Tee::SevSnp,
            bytes: report.clone(),
            collateral: Some(cert_table(&vcek.1)),
        };
        let from_agent = attestation_agent::primary_evidence(&e).unwrap();
        assert_eq!(from_agent, good);
        let err = appraiser
            .appraise(rats::Tee::SevSnp, &attestation(from_agent), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("report data"), "{err}");

        // No VCEK: said so (verdictd fetches nothing).
        let bare = kbs_protocol::snp::evidence(&report, &[]).unwrap();
        let err = appraiser
            .appraise(rats::Tee::SevSnp, &attestation(bare), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no VCEK"), "{err}");
        // Not SNP evidence at all.
        let err = appraiser
            .appraise(
                rats::Tee::SevSnp,
                &attestation(json!({"quote": "AA=="})),
                &digest,
                AT,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("SNP evidence"), "{err}");
    }

    fn init(body: &str) -> kbs_protocol::InitData {
        kbs_protocol::InitData {
            format: "toml".into(),
            body: body.into(),
        }
    }

    const INIT: &str =
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"x = 1\"\n";

    #[test]
    fn init_data_is_bound_to_the_field_the_tee_measured() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(INIT.as_bytes()).to_vec();
        let mut with_init = attestation(json!({}));
        with_init.init_data = Some(init(INIT));
        // A TDX-like field (48 bytes) holding the digest, zero-padded: accepted, and
        // the claims are the parsed document (T:attestation-service/src/lib.rs).
        let field = |bytes: &[u8]| crate::claims::TeeClaims {
            claims: Default::default(),
            report_data: "00".into(),
            init_data: Some(hex::encode(bytes)),
        };
        let a = annotate(
            rats::Tee::TdxEcdsa,
            &with_init,
            field(&crate::initdata::fit(&digest, 48)),
        )
        .unwrap();
        assert_eq!(a["init_data_claims"], json!({"aa.toml": {"x": 1}}));
        assert_eq!(
            a["init_data"],
            hex::encode(crate::initdata::fit(&digest, 48))
        );
        // Launched without it (a zero field): refused, both values named.
        let err = annotate(rats::Tee::TdxEcdsa, &with_init, field(&[0; 48])).unwrap_err();
        assert!(
            err.contains(&"0".repeat(96)) && err.contains(&hex::encode(&digest)),
            "{err}"
        );
        // No init-data sent: the hardware field is still reported, claims null (as
        // Trustee's transform_claims does).
        let a = annotate(
            rats::Tee::TdxEcdsa,
            &attestation(json!({})),
            field(&[0; 48]),
        )
        .unwrap();
        assert_eq!(a["init_data"], json!("0".repeat(96)));
        assert_eq!(a["init_data_claims"], Value::Null);
        // sample: the digest in standard base64 (T:deps/verifier/src/sample/mod.rs),
        // only when init-data is sent.
        let sample = crate::claims::sample(&json!({"svn": "1", "report_data": "AA=="}));
        let a = annotate(rats::Tee::Sample, &with_init, sample.clone()).unwrap();
        assert_eq!(a["init_data"], STANDARD.encode(&digest));
        assert_eq!(a["sample"]["svn"], "1");
        assert_eq!(a["report_data"], "AA==");
        let plain = attestation(json!({}));
        let a = annotate(rats::Tee::Sample, &plain, sample).unwrap();
        assert!(a.get("init_data").is_none() && a.get("init_data_claims").is_none());
        // runtime_data_claims: what the digest was taken over.
        assert_eq!(
            a["runtime_data_claims"],
            kbs_protocol::binding::runtime_data("bm9uY2U", &plain.runtime_data.tee_pubkey, "")
        );
        // Init-data that is not Trustee's initdata TOML is refused.
        let mut bad = attestation(json!({}));
        bad.init_data = Some(init("algorithm = \"sha256\""));
        assert!(annotate(rats::Tee::Sample, &bad, crate::claims::sample(&json!({}))).is_err());
    }

    /// SGX with KSS: init-data is bound by the REPORT body's 64-byte CONFIGID (quote v3
    /// offset 48 + 192), as Occlum sets it with `enable_kss`. Trustee's own SGX quote
    /// (occlum_quote.dat, CONFIGID zero: Trustee's parse_sgx_claims vector) refuses a
    /// document, naming both values; the same quote with the document's SHA-256
    /// zero-padded to 64 bytes at that offset binds it.
    #[test]
    fn sgx_init_data_is_bound_by_the_kss_config_id() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(INIT.as_bytes()).to_vec();
        let mut with_init = attestation(json!({}));
        with_init.init_data = Some(init(INIT));
        let quote = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/occlum_quote.dat"
        ))
        .unwrap();
        let claims = crate::claims::sgx(&quote).unwrap();
        assert_eq!(claims.init_data.as_deref(), Some("0".repeat(128).as_str()));
        let err = annotate(rats::Tee::SgxEcdsa, &with_init, claims).unwrap_err();
        assert!(
            err.contains(&"0".repeat(128)) && err.contains(&hex::encode(&digest)),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");

        let mut kss = quote.clone();
        kss[240..304].copy_from_slice(&crate::initdata::fit(&digest, 64));
        let claims = crate::claims::sgx(&kss).unwrap();
        let a = annotate(rats::Tee::SgxEcdsa, &with_init, claims).unwrap();
        let mut expected = hex::encode(&digest);
        expected.push_str(&"0".repeat(64));
        assert_eq!(a["init_data"], json!(expected));
        assert_eq!(a["init_data_claims"], json!({"aa.toml": {"x": 1}}));
        // The patched bytes are the CONFIGID and nothing else: the enclave's identity
        // and report data are the quote's.
        let body = &a["sgx"]["body"];
        assert_eq!(body["config_id"], json!(expected));
        assert_eq!(
            body["mr_enclave"],
            crate::claims::sgx(&quote).unwrap().claims["body"]["mr_enclave"]
        );
    }
}
