//! The claims of verified evidence in the layout Trustee's verifiers give them, so a
//! policy written for Trustee reads the same names, nesting and types here.
//!
//! Each function takes evidence `rats` has already verified and returns the TEE's
//! claims object (what lands under `annotated-evidence.<tee>`), the report data and
//! the init-data field as Trustee's `transform_claims` lifts them to the top level
//! (T = confidential-containers/trustee):
//!
//! | TEE | layout (T file) | `report_data` | `init_data` |
//! |---|---|---|---|
//! | `sample` | `svn` as sent, `launch_digest` `"abcde"`, `platform_version {major 1, minor 4}`, `debug` false (T:`deps/verifier/src/sample/mod.rs`) | the evidence's base64 string | standard base64 of the init-data digest, only when init-data was sent |
//! | `sgx` | `header {version, att_key_type, att_key_data_0, qe_svn, pce_svn, vendor_id, user_data}`, `body {cpu_svn … report_data}`, hex strings (T:`deps/verifier/src/sgx/claims.rs`) | hex of REPORTDATA | hex of CONFIGID |
//! | `tdx` | `quote {header, body[, type, size]}`, `td_attributes {debug, septve_disable, protection_keys, key_locker, perfmon}` (T:`deps/verifier/src/tdx/claims.rs`) | hex of REPORTDATA | hex of MRCONFIGID |
//! | `snp` | `policy_abi_*`, `reported_tcb_*` numbers; `policy_*` and `platform_*_enabled` booleans; `measurement`, `chip_id` hex (T:`deps/verifier/src/snp/mod.rs` `parse_tee_evidence`; numbers since T `fa25802c`, hex not base64 since T `d7831293`, `chip_id` since T `8b1e4060`) | hex of REPORT_DATA | hex of HOST_DATA |
//!
//! SGX and TDX also carry `tcb_status`, `advisory_ids` and `collateral_expiration_status`
//! (`"0"`: rats refuses expired collateral) as T:`deps/verifier/src/intel_dcap/claims.rs`
//! names them. The rats-rs style names (`sgx_mr_enclave`, `snp_measurement`, …) stay in
//! the same object as additional claims; where a name exists in both, Trustee's wins.

use serde_json::{json, Map, Value};

/// A TEE's claims in Trustee's layout, with what Trustee lifts out of them.
#[derive(Debug, Clone, PartialEq)]
pub struct TeeClaims {
    /// The object under `annotated-evidence.<tee>`.
    pub claims: Map<String, Value>,
    /// `annotated-evidence.report_data`.
    pub report_data: String,
    /// `annotated-evidence.init_data` for hardware TEEs (hex of the measured field);
    /// `None` for the software TEEs, whose `init_data` comes from the init-data sent.
    pub init_data: Option<String>,
}

fn hex_at(bytes: &[u8], at: usize, len: usize) -> Result<Value, String> {
    bytes
        .get(at..at + len)
        .map(|b| Value::String(hex::encode(b)))
        .ok_or_else(|| format!("evidence too short for a field at {at}+{len}"))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, String> {
    let b: [u8; 8] = bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("evidence too short for a field at {at}+8"))?;
    Ok(u64::from_le_bytes(b))
}

fn fields(
    bytes: &[u8],
    base: usize,
    layout: &[(&str, usize)],
) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    let mut at = base;
    for (name, len) in layout {
        if !name.is_empty() {
            map.insert((*name).into(), hex_at(bytes, at, *len)?);
        }
        at += len;
    }
    Ok(map)
}

/// The 384-byte SGX report body of a quote v3, at offset 48 (Intel's
/// `sgx_report_body_t`), under Trustee's names.
const SGX_BODY: &[(&str, usize)] = &[
    ("cpu_svn", 16),
    ("misc_select", 4),
    ("reserved1", 12),
    ("isv_ext_prod_id", 16),
    ("attributes.flags", 8),
    ("attributes.xfrm", 8),
    ("mr_enclave", 32),
    ("reserved2", 32),
    ("mr_signer", 32),
    ("reserved3", 32),
    ("config_id", 64),
    ("isv_prod_id", 2),
    ("isv_svn", 2),
    ("config_svn", 2),
    ("reserved4", 42),
    ("isv_family_id", 16),
    ("report_data", 64),
];

/// The TD report body of a quote v4 (at 48) or v5 (at 54): TDX 1.0 fields, then TDX
/// 1.5's two more.
const TDX_BODY: &[(&str, usize)] = &[
    ("tcb_svn", 16),
    ("mr_seam", 48),
    ("mrsigner_seam", 48),
    ("seam_attributes", 8),
    ("td_attributes", 8),
    ("xfam", 8),
    ("mr_td", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
    ("rtmr_0", 48),
    ("rtmr_1", 48),
    ("rtmr_2", 48),
    ("rtmr_3", 48),
    ("report_data", 64),
];
const TDX15_EXTRA: &[(&str, usize)] = &[("tee_tcb_svn2", 16), ("mr_servicetd", 48)];
const TDX10_BODY_LEN: usize = 584;

/// `sgx` claims from a verified ECDSA quote v3.
pub fn sgx(quote: &[u8]) -> Result<TeeClaims, String> {
    let mut header = Map::new();
    for (name, at, len) in [
        ("version", 0, 2),
        ("att_key_type", 2, 2),
        ("att_key_data_0", 4, 4),
        ("qe_svn", 8, 2),
        ("pce_svn", 10, 2),
        ("vendor_id", 12, 16),
        ("user_data", 28, 20),
    ] {
        header.insert(name.into(), hex_at(quote, at, len)?);
    }
    let body = fields(quote, 48, SGX_BODY)?;
    let report_data = body["report_data"].as_str().unwrap_or_default().to_string();
    let init_data = body["config_id"].as_str().map(String::from);
    let mut claims = Map::new();
    claims.insert("header".into(), Value::Object(header));
    claims.insert("body".into(), Value::Object(body));
    Ok(TeeClaims {
        claims,
        report_data,
        init_data,
    })
}

/// `tdx` claims from a verified quote v4 or v5.
pub fn tdx(quote: &[u8]) -> Result<TeeClaims, String> {
    let version = u16::from_le_bytes([
        *quote.first().ok_or("empty quote")?,
        *quote.get(1).ok_or("empty quote")?,
    ]);
    let mut header = Map::new();
    for (name, at, len) in [
        ("version", 0, 2),
        ("att_key_type", 2, 2),
        ("tee_type", 4, 4),
        ("reserved", 8, 4),
        ("vendor_id", 12, 16),
        ("user_data", 28, 20),
    ] {
        header.insert(name.into(), hex_at(quote, at, len)?);
    }
    let mut quote_map = Map::new();
    let body = match version {
        4 => fields(quote, 48, TDX_BODY)?,
        5 => {
            let body_type = u16::from_le_bytes([
                quote.get(48).copied().unwrap_or(0),
                quote.get(49).copied().unwrap_or(0),
            ]);
            quote_map.insert("type".into(), hex_at(quote, 48, 2)?);
            quote_map.insert("size".into(), hex_at(quote, 50, 4)?);
            let mut body = fields(quote, 54, TDX_BODY)?;
            match body_type {
                2 => {}
                3 => body.extend(fields(quote, 54 + TDX10_BODY_LEN, TDX15_EXTRA)?),
                other => return Err(format!("quote v5 body type {other} is not a TD report")),
            }
            body
        }
        other => return Err(format!("quote version {other} is not TDX (4 or 5)")),
    };
    let td_attributes = body["td_attributes"].as_str().unwrap_or_default();
    let mut attr = [0u8; 8];
    hex::decode_to_slice(td_attributes, &mut attr).map_err(|e| e.to_string())?;
    let attr = u64::from_le_bytes(attr);
    let flags: Map<String, Value> = [
        ("debug", 0),
        ("septve_disable", 28),
        ("protection_keys", 30),
        ("key_locker", 31),
        ("perfmon", 63),
    ]
    .into_iter()
    .map(|(name, bit)| (name.to_string(), Value::Bool(attr & (1 << bit) != 0)))
    .collect();
    let report_data = body["report_data"].as_str().unwrap_or_default().to_string();
    let init_data = body["mr_config_id"].as_str().map(String::from);
    quote_map.insert("header".into(), Value::Object(header));
    quote_map.insert("body".into(), Value::Object(body));
    let mut claims = Map::new();
    claims.insert("quote".into(), Value::Object(quote_map));
    claims.insert("td_attributes".into(), Value::Object(flags));
    Ok(TeeClaims {
        claims,
        report_data,
        init_data,
    })
}

/// `snp` claims from a verified attestation report and rats' claims of it (the
/// reported TCB, whose byte layout differs by processor generation, is rats').
pub fn snp(report: &[u8], verified: &rats::Verified) -> Result<TeeClaims, String> {
    let int = |name: &str| match verified.claims.get(name) {
        Some(rats::ClaimValue::Int(i)) => Ok(*i),
        _ => Err(format!("rats gave no {name}")),
    };
    let policy = int("snp_policy")?;
    // SEV-SNP ABI: GUEST_POLICY at 0x08 (ABI minor 7:0, major 15:8, SMT 16, MIGRATE_MA
    // 18, DEBUG 19, SINGLE_SOCKET 20); PLATFORM_INFO at 0x40 (SMT_EN 0, TSME_EN 1).
    let plat_info = u64_at(report, 0x40)?;
    let bit = |v: u64, b: u32| v & (1 << b) != 0;
    let claims = json!({
        "policy_abi_major": (policy >> 8) & 0xff,
        "policy_abi_minor": policy & 0xff,
        "policy_smt_allowed": bit(policy, 16),
        "policy_migrate_ma": bit(policy, 18),
        "policy_debug_allowed": bit(policy, 19),
        "policy_single_socket": bit(policy, 20),
        "reported_tcb_bootloader": int("snp_reported_tcb_bootloader")?,
        "reported_tcb_tee": int("snp_reported_tcb_tee")?,
        "reported_tcb_snp": int("snp_reported_tcb_snp")?,
        "reported_tcb_microcode": int("snp_reported_tcb_microcode")?,
        "platform_tsme_enabled": bit(plat_info, 1),
        "platform_smt_enabled": bit(plat_info, 0),
        "measurement": hex_at(report, 0x90, 48)?,
        "chip_id": hex_at(report, 0x1a0, 64)?,
    });
    let Value::Object(claims) = claims else {
        unreachable!("json! object")
    };
    Ok(TeeClaims {
        claims,
        report_data: hex::encode(report.get(0x50..0x90).ok_or("report too short")?),
        init_data: Some(hex::encode(
            report.get(0xc0..0xe0).ok_or("report too short")?,
        )),
    })
}

/// `sample` claims, as Trustee's sample verifier emits them for this evidence.
pub fn sample(evidence: &Value) -> TeeClaims {
    let mut claims = Map::new();
    claims.insert(
        "svn".into(),
        evidence.get("svn").cloned().unwrap_or(Value::Null),
    );
    claims.insert("launch_digest".into(), json!("abcde"));
    claims.insert("platform_version".into(), json!({"major": 1, "minor": 4}));
    claims.insert("debug".into(), json!(false));
    TeeClaims {
        claims,
        report_data: evidence
            .get("report_data")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        init_data: None,
    }
}

/// The claims of any TEE verdictd verifies: Trustee's layout where Trustee has one,
/// rats' claims added under their own names (and alone for `sim`, which Trustee does
/// not know).
pub fn of(
    tee: rats::Tee,
    evidence_bytes: &[u8],
    primary_evidence: &Value,
    verified: &rats::Verified,
) -> Result<TeeClaims, String> {
    let mut out = match tee {
        rats::Tee::Sample => sample(primary_evidence),
        rats::Tee::SgxEcdsa => sgx(evidence_bytes)?,
        rats::Tee::TdxEcdsa => tdx(evidence_bytes)?,
        rats::Tee::SevSnp => snp(evidence_bytes, verified)?,
        rats::Tee::Sim => TeeClaims {
            claims: Map::new(),
            report_data: hex::encode(&verified.report_data),
            init_data: None,
        },
    };
    if matches!(tee, rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa) {
        if let Some(status) = &verified.tcb_status {
            out.claims.insert("tcb_status".into(), json!(status));
        }
        out.claims
            .insert("advisory_ids".into(), json!(verified.advisory_ids));
        out.claims
            .insert("collateral_expiration_status".into(), json!("0"));
    }
    let rats_claims = serde_json::to_value(&verified.claims).map_err(|e| e.to_string())?;
    if let Value::Object(rats_claims) = rats_claims {
        for (name, value) in rats_claims {
            if name != "report_data" {
                out.claims.entry(name).or_insert(value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_claims_are_trustees() {
        // T:deps/verifier/src/sample/mod.rs parse_tee_evidence: svn and report_data as
        // sent, the fixed launch_digest, platform_version and debug.
        let c = sample(&json!({"svn": "1", "report_data": "cmQ="}));
        assert_eq!(
            Value::Object(c.claims),
            json!({"svn": "1", "launch_digest": "abcde",
                   "platform_version": {"major": 1, "minor": 4}, "debug": false})
        );
        assert_eq!(c.report_data, "cmQ=");
        assert_eq!(c.init_data, None);
    }

    #[test]
    fn short_evidence_is_an_error_not_a_panic() {
        for len in [0, 1, 47, 48, 100, 431, 600] {
            let q = vec![3u8; len];
            let _ = sgx(&q);
            let _ = tdx(&q);
        }
        assert!(sgx(&[0; 100]).is_err());
        let mut q = vec![0u8; 700];
        q[0] = 9;
        assert!(tdx(&q).unwrap_err().contains("version 9"));
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../rats/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn dcap(tee: rats::Tee, quote: &str, collateral: &str) -> (Vec<u8>, rats::Verified) {
        let bytes = fixture(quote);
        let input = rats::Input {
            report_data: None,
            collateral: Some(rats::Collateral::parse(tee, &fixture(collateral)).unwrap()),
            // 2025-06-20, inside the collateral's window.
            now: 1_750_377_600,
        };
        let v = rats::verify(&bytes, Some(tee), &input).unwrap();
        (bytes, v)
    }

    /// Intel's quote header values that Trustee's default_cpu policy checks
    /// (T:attestation-service/src/ear_token/ear_default_policy_cpu.rego).
    const INTEL_VENDOR_ID: &str = "939a7233f79c4ca9940a0db3957f0607";

    #[test]
    fn tdx_claims_follow_trustees_layout() {
        let (quote, v) = dcap(
            rats::Tee::TdxEcdsa,
            "tdx_quote",
            "tdx_quote_collateral.json",
        );
        let c = of(rats::Tee::TdxEcdsa, &quote, &Value::Null, &v).unwrap();
        let q = &c.claims["quote"];
        assert_eq!(q["header"]["version"], "0400");
        assert_eq!(q["header"]["tee_type"], "81000000");
        assert_eq!(q["header"]["vendor_id"], INTEL_VENDOR_ID);
        // The values themselves are checked against Trustee's vector
        // (tdx_claims_are_trustees_test_vector); here what `of` adds.
        assert_eq!(c.claims["td_attributes"]["debug"], json!(v.debug));
        assert_eq!(c.init_data.as_deref(), q["body"]["mr_config_id"].as_str());
        assert_eq!(c.report_data, hex::encode(&v.report_data));
        assert_eq!(c.claims["tcb_status"], json!(v.tcb_status));
        assert_eq!(c.claims["collateral_expiration_status"], "0");
        assert!(c.claims["advisory_ids"].is_array());
        // rats' names stay beside Trustee's.
        assert_eq!(c.claims["tdx_mr_td"], q["body"]["mr_td"]);
    }

    /// A file of `testdata/` (Trustee's vectors, see its README).
    fn trustee_vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Trustee's expected claims without the ones verdictd does not produce.
    fn trustee_expected(name: &str) -> Value {
        let mut v: Value = serde_json::from_slice(&trustee_vector(name)).unwrap();
        let map = v.as_object_mut().unwrap();
        map.remove("platform_instance_id");
        map.remove("uefi_event_logs");
        v
    }

    #[test]
    fn tdx_claims_are_trustees_test_vector() {
        // T:deps/verifier/src/tdx/claims.rs parse_tdx_claims: tdx_quote_4.dat gives
        // parse_tdx_claims_expected.json.
        let c = tdx(&trustee_vector("tdx_quote_4.dat")).unwrap();
        let mut got = Value::Object(c.claims);
        got["report_data"] = json!(c.report_data);
        got["init_data"] = json!(c.init_data);
        assert_eq!(got, trustee_expected("parse_tdx_claims_expected.json"));
    }

    #[test]
    fn sgx_claims_are_trustees_test_vector() {
        // T:deps/verifier/src/sgx/claims.rs parse_sgx_claims on occlum_quote.dat.
        let c = sgx(&trustee_vector("occlum_quote.dat")).unwrap();
        let mut got = Value::Object(c.claims);
        got["report_data"] = json!(c.report_data);
        got["init_data"] = json!(c.init_data);
        assert_eq!(got, trustee_expected("parse_sgx_claims_expected.json"));
    }

    #[test]
    fn sgx_claims_follow_trustees_layout() {
        let (quote, v) = dcap(
            rats::Tee::SgxEcdsa,
            "sgx_quote",
            "sgx_quote_collateral.json",
        );
        let c = of(rats::Tee::SgxEcdsa, &quote, &Value::Null, &v).unwrap();
        assert_eq!(c.claims["header"]["version"], "0300");
        assert_eq!(c.claims["header"]["att_key_data_0"], "00000000");
        assert_eq!(c.claims["header"]["vendor_id"], INTEL_VENDOR_ID);
        let body = &c.claims["body"];
        assert_eq!(body["report_data"], json!(hex::encode(&v.report_data)));
        assert_eq!(c.init_data.as_deref(), body["config_id"].as_str());
        assert_eq!(c.init_data.as_ref().unwrap().len(), 128);
    }

    #[test]
    fn snp_claims_are_trustees_for_its_test_report() {
        // Trustee's own SNP test report (T:deps/verifier/test_data/snp/test-report.bin,
        // a byte copy in crates/rats/testdata) and the layout of T:deps/verifier/src/snp/
        // mod.rs `parse_tee_evidence` at 78962cd416dcc8a32f9377e0066a28fe21420f69: policy
        // fields as numbers and booleans (the sev crate's u8/bool getters), reported TCB
        // as numbers, platform flags as booleans, `measurement` and `chip_id` as lower
        // hex ("use hex encoding instead of base64", T commit d7831293; numbers and
        // booleans since T commit fa25802c). `report_data` and `init_data` (hex of
        // REPORT_DATA and HOST_DATA) are lifted out by T:attestation-service/src/
        // ear_token/broker.rs `transform_claims`. Values read off the report per the
        // SEV-SNP ABI: policy 0x3001f, PLATFORM_INFO 0x1, reported TCB 03 00 .. 08 73.
        let report = fixture("test-report.bin");
        let input = rats::Input {
            report_data: None,
            collateral: Some(rats::Collateral::Snp(rats::snp::SnpCollateral {
                vek: fixture("test-vcek.der"),
                vlek: None,
                ask: None,
                ark: None,
            })),
            now: 1_735_689_600,
        };
        let v = rats::verify(&report, Some(rats::Tee::SevSnp), &input).unwrap();
        let c = of(rats::Tee::SevSnp, &report, &Value::Null, &v).unwrap();
        let trustee = json!({
            "policy_abi_major": 0,
            "policy_abi_minor": 31,
            "policy_smt_allowed": true,
            "policy_migrate_ma": false,
            "policy_debug_allowed": false,
            "policy_single_socket": false,
            "reported_tcb_bootloader": 3,
            "reported_tcb_tee": 0,
            "reported_tcb_snp": 8,
            "reported_tcb_microcode": 115,
            "platform_tsme_enabled": false,
            "platform_smt_enabled": true,
            "measurement": "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f6\
                            3fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
            "chip_id": "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f\
                        8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e",
        });
        let trustee = trustee.as_object().unwrap();
        // Every claim of Trustee's, with its value and JSON type.
        for (name, want) in trustee {
            assert_eq!(c.claims.get(name), Some(want), "{name}");
        }
        // Anything else is one of rats' claims, added beside Trustee's names.
        let rats_claims = serde_json::to_value(&v.claims).unwrap();
        for name in c.claims.keys().filter(|n| !trustee.contains_key(*n)) {
            assert!(rats_claims.get(name).is_some(), "unexpected claim {name}");
        }
        assert_eq!(c.claims["snp_measurement"], trustee["measurement"]);
        assert_eq!(
            c.report_data,
            "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2\
             0000000000000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(c.init_data.as_deref(), Some(&*"00".repeat(32)));
    }
}
