//! From evidence to an EAR appraisal: the evidence is verified by `rats` (bound to the
//! session's runtime data), then judged by the attestation policy (a rats appraisal
//! policy plus registered reference values). The token is issued either way: its
//! `ear.status` says what the policy concluded, and resource policies decide on it.

use std::collections::BTreeMap;
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kbs_protocol::{Attestation, TeePubKey};
use serde_json::{json, Value};

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

pub struct Appraiser {
    policy: RwLock<(String, rats::Policy)>,
    reference_values: RwLock<BTreeMap<String, Vec<String>>>,
    collateral: Option<rats::Collateral>,
}

/// AR4SI trustworthiness claims: 2 affirms; 32–95 warn; 96–127 contraindicate; 0 says
/// nothing.
fn tier(value: i64) -> &'static str {
    match value {
        i64::MIN..=1 => "none",
        2..=31 => "affirming",
        32..=95 => "warning",
        _ => "contraindicated",
    }
}

impl Appraiser {
    pub fn new(policy: rats::Policy, collateral: Option<rats::Collateral>) -> Appraiser {
        Appraiser {
            policy: RwLock::new(("default".into(), policy)),
            reference_values: RwLock::new(BTreeMap::new()),
            collateral,
        }
    }

    /// Replaces the attestation policy: a rats appraisal policy in TOML or JSON.
    pub fn set_policy(&self, id: &str, text: &str) -> Result<(), KbsError> {
        let parsed: Result<rats::Policy, String> = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.message().to_string())
        };
        let policy = parsed.map_err(|e| {
            KbsError::ParsePolicy(format!(
                "attestation policy {id:?}: {e} (verdictd takes rats appraisal policies in TOML or JSON, not Rego)"
            ))
        })?;
        *self.policy.write().expect("policy lock") = (id.to_string(), policy);
        Ok(())
    }

    /// Registers reference values: claim name → accepted values, added to the policy's
    /// expected values.
    pub fn add_reference_values(&self, values: BTreeMap<String, Vec<String>>) {
        let mut rv = self.reference_values.write().expect("reference values");
        for (name, mut v) in values {
            let entry = rv.entry(name).or_default();
            entry.append(&mut v);
            entry.sort();
            entry.dedup();
        }
    }

    pub fn reference_value(&self, name: &str) -> Option<Vec<String>> {
        self.reference_values
            .read()
            .expect("reference values")
            .get(name)
            .cloned()
    }

    /// Verifies the attestation of a `tee` session whose runtime data hashed to
    /// `digest`, and appraises it: the `cpu0` submodule of the EAR.
    pub fn appraise(
        &self,
        tee_name: &str,
        attestation: &Attestation,
        digest: &[u8],
        now: u64,
    ) -> Result<Value, KbsError> {
        let tee = tee_of(tee_name)?;
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
            rats::Tee::Sample => serde_json::to_vec(evidence).map_err(|e| bad(&e.to_string()))?,
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
            report_data: Some(
                kbs_protocol::binding::report_data_64(digest).map_err(|e| bad(&e.to_string()))?,
            ),
            collateral,
            now,
        };
        let verified = rats::verify(&bytes, Some(tee), &input)
            .map_err(|e| KbsError::Attestation(format!("{tee_name} evidence refused: {e}")))?;
        let init_data = match &attestation.init_data {
            Some(init) => Some(init_data(tee, init, &verified).map_err(|e| bad(&e))?),
            None => None,
        };

        let (policy_id, mut policy) = self.policy.read().expect("policy lock").clone();
        for (name, values) in self
            .reference_values
            .read()
            .expect("reference values")
            .iter()
        {
            policy
                .expected
                .entry(name.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
        let verdict = policy.appraise(&verified);

        // Each refusal reason lands in the claim it is about.
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
        let vector = json!({
            "instance-identity": 0,
            "configuration": configuration,
            "executables": executables,
            "file-system": 0,
            "hardware": hardware,
            "runtime-opaque": 0,
            "storage-opaque": 0,
            "sourced-data": 0,
        });
        let worst = [hardware, configuration, executables]
            .into_iter()
            .max()
            .unwrap_or(0);
        // Hardware is always rated, so `worst` is at least 2; a refusal no claim
        // explains still must not read as affirming.
        let status = if !verdict.accepted && worst < 32 {
            "contraindicated"
        } else {
            tier(worst)
        };

        let tee_pubkey: &TeePubKey = &attestation.runtime_data.tee_pubkey;
        let mut annotated = serde_json::Map::new();
        annotated.insert(
            tee_name.to_string(),
            serde_json::to_value(&verified.claims).map_err(|e| bad(&e.to_string()))?,
        );
        annotated.insert("report_data".into(), json!(hex::encode(digest)));
        annotated.insert(
            "runtime_data_claims".into(),
            json!({"nonce": attestation.runtime_data.nonce, "tee-pubkey": tee_pubkey}),
        );
        if let Some((digest, claims)) = init_data {
            annotated.insert("init_data".into(), json!(hex::encode(digest)));
            annotated.insert("init_data_claims".into(), claims);
        }
        Ok(json!({
            "ear.status": status,
            "ear.trustworthiness-vector": vector,
            "ear.appraisal-policy-id": policy_id,
            "ear.veraison.annotated-evidence": annotated,
            "verdictd.reasons": verdict.reasons,
        }))
    }
}

/// Checks init-data (the TOML document of Confidential Containers' initdata spec:
/// `version`, `algorithm`, `[data]`) against the field the TEE measured it into:
/// TDX `MRCONFIGID` (48 bytes), SEV-SNP `HOST_DATA` (32 bytes), the digest
/// zero-padded to the field. Software TEEs have no such field: their init-data is
/// reported, not bound (as Trustee does for `sample`). Returns the digest and the
/// `[data]` table as claims.
fn init_data(
    tee: rats::Tee,
    init: &kbs_protocol::InitData,
    verified: &rats::Verified,
) -> Result<(Vec<u8>, Value), String> {
    use sha2::Digest;
    if init.format != "toml" {
        return Err(format!(
            "init-data format {:?} is not supported (toml is)",
            init.format
        ));
    }
    let doc: toml::Table =
        toml::from_str(&init.body).map_err(|e| format!("init-data: {}", e.message()))?;
    let algorithm = doc
        .get("algorithm")
        .and_then(toml::Value::as_str)
        .unwrap_or("sha384");
    let body = init.body.as_bytes();
    let digest = match algorithm {
        "sha256" => sha2::Sha256::digest(body).to_vec(),
        "sha384" => sha2::Sha384::digest(body).to_vec(),
        "sha512" => sha2::Sha512::digest(body).to_vec(),
        other => return Err(format!("init-data algorithm {other:?} is not supported")),
    };
    let data = doc.get("data").cloned();
    let claims = serde_json::to_value(data.unwrap_or(toml::Value::Table(Default::default())))
        .map_err(|e| format!("init-data: {e}"))?;
    let field = match tee {
        rats::Tee::TdxEcdsa => Some(("tdx_mr_config_id", 48)),
        rats::Tee::SevSnp => Some(("snp_host_data", 32)),
        rats::Tee::SgxEcdsa => {
            return Err("init-data binding is not supported for sgx evidence".into())
        }
        rats::Tee::Sim | rats::Tee::Sample => None,
    };
    if let Some((claim, len)) = field {
        if digest.len() > len {
            return Err(format!(
                "init-data digest ({algorithm}) is longer than {claim}'s {len} bytes"
            ));
        }
        let mut expected = digest.clone();
        expected.resize(len, 0);
        let found = verified
            .claims
            .get(claim)
            .map(|v| v.canonical())
            .unwrap_or_default();
        if found != [hex::encode(&expected)] {
            return Err(format!(
                "init-data is not the one measured: {claim} is {}, the init-data's {algorithm} is {}",
                found.first().map(String::as_str).unwrap_or("absent"),
                hex::encode(&expected)
            ));
        }
    }
    Ok((digest, claims))
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
        let appraiser = Appraiser::new(rats::Policy::default(), None);
        let vcek = (
            "63da758d-e664-4564-adc5-f4b93be8accd".to_string(),
            fixture("test-vcek.der"),
        );
        let report = fixture("test-report.bin");
        let digest = [7u8; 48];
        let good = kbs_protocol::snp::evidence(&report, std::slice::from_ref(&vcek)).unwrap();
        let err = appraiser
            .appraise("snp", &attestation(good.clone()), &digest, AT)
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
            .appraise("snp", &attestation(forged), &digest, AT)
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
            .appraise("snp", &attestation(from_agent), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("report data"), "{err}");

        // No VCEK: said so (verdictd fetches nothing).
        let bare = kbs_protocol::snp::evidence(&report, &[]).unwrap();
        let err = appraiser
            .appraise("snp", &attestation(bare), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no VCEK"), "{err}");
        // Not SNP evidence at all.
        let err = appraiser
            .appraise("snp", &attestation(json!({"quote": "AA=="})), &digest, AT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SNP evidence"), "{err}");
    }

    /// The TDX fixture's claims, as if that TD had been launched with `mr_config_id`.
    fn tdx_claims(mr_config_id: Option<&[u8]>) -> rats::Verified {
        let input = rats::Input {
            report_data: None,
            collateral: Some(
                rats::Collateral::parse(rats::Tee::TdxEcdsa, &fixture("tdx_quote_collateral.json"))
                    .unwrap(),
            ),
            // 2025-06-20, inside the collateral's window.
            now: 1_750_377_600,
        };
        let mut v = rats::verify(&fixture("tdx_quote"), None, &input).unwrap();
        if let Some(id) = mr_config_id {
            v.claims.insert(
                "tdx_mr_config_id".into(),
                rats::ClaimValue::Bytes(id.to_vec()),
            );
        }
        v
    }

    #[test]
    fn init_data_is_bound_to_the_field_the_tee_measured() {
        use sha2::Digest;
        let body = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";
        let init = kbs_protocol::InitData {
            format: "toml".into(),
            body: body.into(),
        };
        let digest = sha2::Sha256::digest(body.as_bytes()).to_vec();
        let mut padded = digest.clone();
        padded.resize(48, 0);

        // Measured: accepted, with the digest and the [data] table as claims.
        let (d, claims) =
            init_data(rats::Tee::TdxEcdsa, &init, &tdx_claims(Some(&padded))).unwrap();
        assert_eq!(d, digest);
        assert_eq!(claims["policy.rego"], "package agent_policy");
        // The real TD was launched without it: refused, both values named.
        let err = init_data(rats::Tee::TdxEcdsa, &init, &tdx_claims(None)).unwrap_err();
        assert!(
            err.contains("tdx_mr_config_id") && err.contains(&hex::encode(&padded)),
            "{err}"
        );
        // Software TEEs have nowhere to measure it: reported, not bound.
        let sample = rats::verify(
            &serde_json::to_vec(&rats::SampleEvidence::new(&[1; 48])).unwrap(),
            Some(rats::Tee::Sample),
            &rats::Input::default(),
        )
        .unwrap();
        assert!(init_data(rats::Tee::Sample, &init, &sample).is_ok());
        // What cannot be checked is refused.
        for (format, body, want) in [
            ("json", body, "format"),
            ("toml", "algorithm = \"md5\"", "md5"),
            ("toml", "algorithm = \"sha512\"", "longer"),
            ("toml", "not toml ===", "init-data"),
        ] {
            let init = kbs_protocol::InitData {
                format: format.into(),
                body: body.into(),
            };
            let err = init_data(rats::Tee::TdxEcdsa, &init, &tdx_claims(None)).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = init_data(rats::Tee::SgxEcdsa, &init, &sample).unwrap_err();
        assert!(err.contains("sgx"), "{err}");
    }
}
