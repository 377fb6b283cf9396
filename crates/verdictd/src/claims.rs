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
//! | `sim` | rats' `sim_*` claims only (Trustee has no `sim`) | hex of the report data | hex of the config id (report version 2) |
//! | `snp` | `policy_abi_*`, `reported_tcb_*` numbers; `policy_*` and `platform_*_enabled` booleans; `measurement`, `chip_id` hex (T:`deps/verifier/src/snp/mod.rs` `parse_tee_evidence`; numbers since T `fa25802c`, hex not base64 since T `d7831293`, `chip_id` since T `8b1e4060`) | hex of REPORT_DATA | hex of HOST_DATA |
//!
//! SGX and TDX also carry what Intel's verification library reports, as
//! T:`deps/verifier/src/intel_dcap/claims.rs` names it ([`dcap`]): `tcb_status`,
//! `advisory_ids`, `collateral_expiration_status` (`"0"`: rats refuses expired
//! collateral), `tcb_date`, `earliest_issue_date`, `latest_issue_date`,
//! `earliest_expiration_date` (RFC 3339 strings), `tcb_eval_num`, `pck_crl_num`,
//! `root_ca_crl_num` (numbers), `platform_provider_id` (the PPID), `root_key_id` (hex),
//! `sgx_type` (`"Standard"`, `"Scalable"`, …) with `is_dynamic_platform`,
//! `is_cached_keys`, `is_smt_enabled` for scalable platforms, and `platform_instance_id`
//! for Platform CA certificates. A quote verified without collateral lacks those that
//! need it (rats' `dcap_unknown_claims` names them). The rats-rs style names
//! (`sgx_mr_enclave`, `dcap_tcb_date`, `snp_measurement`, …) stay in the same object
//! as additional claims; where a name exists in both, Trustee's wins.

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

/// The claims Trustee adds to `sgx` and `tdx` from Intel's verification library
/// (T:`deps/verifier/src/intel_dcap/claims.rs` `prepare_custom_claims_map`) and the PCK
/// certificate (`platform_instance_id`, T:`deps/verifier/src/{sgx,tdx}/claims.rs`),
/// made from rats' `dcap_*` claims of a verified quote. A claim rats could not
/// establish (a quote verified without collateral: rats' `dcap_unknown_claims`) is
/// left out, never filled in. Trustee's `tcb_date_current`, `tcb_status_current` and
/// `advisory_ids_current` (only with DCAP 1.27's library) are not produced.
pub fn dcap(verified: &rats::Verified) -> Result<Map<String, Value>, String> {
    use rats::ClaimValue;
    let c = &verified.claims;
    let mut out = Map::new();
    if let Some(status) = &verified.tcb_status {
        out.insert("tcb_status".into(), json!(status));
    }
    if c.contains_key("advisory_ids") {
        out.insert("advisory_ids".into(), json!(verified.advisory_ids));
    }
    // Intel's expiration status is "0" when no collateral has expired at the check
    // time; rats refuses expired collateral, so it is "0" whenever the collateral's
    // expiration date is known.
    if c.contains_key("dcap_earliest_expiration_date") {
        out.insert("collateral_expiration_status".into(), json!("0"));
    }
    for (trustee, rats) in [
        ("earliest_issue_date", "dcap_earliest_issue_date"),
        ("latest_issue_date", "dcap_latest_issue_date"),
        ("earliest_expiration_date", "dcap_earliest_expiration_date"),
        ("tcb_date", "dcap_tcb_date"),
        ("pck_crl_num", "dcap_pck_crl_num"),
        ("root_ca_crl_num", "dcap_root_ca_crl_num"),
        ("tcb_eval_num", "dcap_tcb_eval_num"),
        ("platform_provider_id", "dcap_ppid"),
        ("root_key_id", "dcap_root_key_id"),
    ] {
        let value = match c.get(rats) {
            None => continue,
            Some(ClaimValue::Text(t)) => json!(t),
            Some(ClaimValue::Int(i)) => json!(i),
            Some(ClaimValue::Bytes(b)) => json!(hex::encode(b)),
            Some(other) => return Err(format!("rats' {rats} is {other:?}")),
        };
        out.insert(trustee.into(), value);
    }
    if let Some(ClaimValue::Int(sgx_type)) = c.get("dcap_sgx_type") {
        let name = match sgx_type {
            0 => "Standard".to_string(),
            1 => "Scalable".to_string(),
            2 => "Scalable with Integrity".to_string(),
            other => format!("Unknown ({other})"),
        };
        out.insert("sgx_type".into(), json!(name));
        // Trustee gives the flags of scalable platforms only, true when the PCK
        // certificate says so (Intel's PCK_FLAG_TRUE), false otherwise.
        if *sgx_type > 0 {
            for (trustee, rats) in [
                ("is_dynamic_platform", "dcap_dynamic_platform"),
                ("is_cached_keys", "dcap_cached_keys"),
                ("is_smt_enabled", "dcap_smt_enabled"),
            ] {
                let set = c.get(rats) == Some(&ClaimValue::Bool(true));
                out.insert(trustee.into(), json!(set));
            }
        }
    }
    // The certificate stores the ID little-endian; Trustee shows it big-endian
    // (T:`deps/verifier/src/intel_dcap/pck.rs` `parse_platform_info`).
    if let Some(ClaimValue::Bytes(id)) = c.get("dcap_platform_instance_id") {
        let mut id = id.clone();
        id.reverse();
        out.insert("platform_instance_id".into(), json!(hex::encode(id)));
    }
    Ok(out)
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
        // A version 2 report's config id holds the init-data digest (zero-padded), as
        // SGX's CONFIGID does; version 1 has none.
        rats::Tee::Sim => TeeClaims {
            claims: Map::new(),
            report_data: hex::encode(&verified.report_data),
            init_data: verified
                .claims
                .get("sim_config_id")
                .map(|c| c.canonical().concat()),
        },
    };
    if matches!(tee, rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa) {
        out.claims.extend(dcap(verified)?);
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

    fn verified_fixture(
        tee: rats::Tee,
        quote: &str,
        collateral: &str,
    ) -> (Vec<u8>, rats::Verified) {
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
        let (quote, v) = verified_fixture(
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
        // rats' names stay beside Trustee's.
        assert_eq!(c.claims["tdx_mr_td"], q["body"]["mr_td"]);
    }

    /// A file of `testdata/` (Trustee's vectors, see its README).
    fn trustee_vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Trustee's expected claims without the one verdictd does not produce.
    fn trustee_expected(name: &str) -> Value {
        let mut v: Value = serde_json::from_slice(&trustee_vector(name)).unwrap();
        v.as_object_mut().unwrap().remove("uefi_event_logs");
        v
    }

    /// What `of` gives Trustee's vectors, which cannot be verified (no collateral):
    /// the quote's layout and the PCK certificate's `platform_instance_id`.
    fn vector_claims(quote: &[u8], c: TeeClaims) -> Value {
        let pck = rats::Verified {
            tee: rats::Tee::SgxEcdsa,
            tcb_status: None,
            advisory_ids: vec![],
            debug: false,
            report_data: vec![],
            claims: rats::dcap::quote_pck_claims(quote).unwrap(),
        };
        let mut got = Value::Object(c.claims);
        got["report_data"] = json!(c.report_data);
        got["init_data"] = json!(c.init_data);
        got["platform_instance_id"] = dcap(&pck).unwrap()["platform_instance_id"].clone();
        got
    }

    #[test]
    fn tdx_claims_are_trustees_test_vector() {
        // T:deps/verifier/src/tdx/claims.rs parse_tdx_claims: tdx_quote_4.dat gives
        // parse_tdx_claims_expected.json.
        let quote = trustee_vector("tdx_quote_4.dat");
        let got = vector_claims(&quote, tdx(&quote).unwrap());
        assert_eq!(got, trustee_expected("parse_tdx_claims_expected.json"));
    }

    #[test]
    fn sgx_claims_are_trustees_test_vector() {
        // T:deps/verifier/src/sgx/claims.rs parse_sgx_claims on occlum_quote.dat.
        let quote = trustee_vector("occlum_quote.dat");
        let got = vector_claims(&quote, sgx(&quote).unwrap());
        assert_eq!(got, trustee_expected("parse_sgx_claims_expected.json"));
    }

    /// The claims T:deps/verifier/src/intel_dcap/claims.rs `prepare_custom_claims_map`
    /// (at 78962cd416dcc8a32f9377e0066a28fe21420f69) adds for a DCAP library before
    /// 1.27, and `platform_instance_id` (T:deps/verifier/src/{sgx,tdx}/claims.rs), on
    /// the real fixtures. Values read off the fixture files (see crates/rats/tests/
    /// dcap_claims.rs, which checks rats' claims against them): the dates from the
    /// collateral JSON, the CRLs (`openssl crl -noout -crlnumber -lastupdate
    /// -nextupdate`) and the certificates (`openssl x509 -startdate -enddate`); the
    /// PPID, SGX type, platform instance ID and configuration from the PCK certificate
    /// (`openssl asn1parse -strparse` of extension 1.2.840.113741.1.13.1); the root
    /// key ID is the value in Trustee's `parse_supplemental_data` test. Types as
    /// Trustee's: dates RFC 3339 strings, numbers JSON numbers, IDs lower-case hex.
    #[test]
    fn dcap_claims_are_trustees() {
        let root_key_id = "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5\
                           dcf58eef31463613de1570d516200993";
        let sgx = json!({
            "tcb_status": "ConfigurationAndSWHardeningNeeded",
            "advisory_ids": ["INTEL-SA-00289", "INTEL-SA-00615"],
            "collateral_expiration_status": "0",
            "earliest_issue_date": "2018-05-21T10:45:10Z",
            "latest_issue_date": "2025-06-19T10:56:11Z",
            "earliest_expiration_date": "2025-07-19T10:01:18Z",
            "tcb_date": "2024-03-13T00:00:00Z",
            "pck_crl_num": 1,
            "root_ca_crl_num": 1,
            "tcb_eval_num": 17,
            "platform_provider_id": "d04ec06d4e6d92dc90d0ad3cf5ee2ddf",
            "sgx_type": "Standard",
            "root_key_id": root_key_id,
        });
        let tdx = json!({
            "tcb_status": "UpToDate",
            "advisory_ids": [],
            "collateral_expiration_status": "0",
            "earliest_issue_date": "2018-05-21T10:45:10Z",
            "latest_issue_date": "2025-06-19T10:32:27Z",
            "earliest_expiration_date": "2025-07-19T10:00:35Z",
            "tcb_date": "2024-03-13T00:00:00Z",
            "pck_crl_num": 1,
            "root_ca_crl_num": 1,
            "tcb_eval_num": 17,
            "platform_provider_id": "811dca2a26b952e85bb6448b097ba4fd",
            "sgx_type": "Scalable",
            "is_dynamic_platform": true,
            "is_cached_keys": true,
            "is_smt_enabled": true,
            "root_key_id": root_key_id,
            // 07828474603e7019dc930775ffe8cdd2 in the certificate, shown big-endian.
            "platform_instance_id": "d2cde8ff750793dc19703e6074848207",
        });
        for (tee, quote, collateral, want) in [
            (
                rats::Tee::SgxEcdsa,
                "sgx_quote",
                "sgx_quote_collateral.json",
                sgx,
            ),
            (
                rats::Tee::TdxEcdsa,
                "tdx_quote",
                "tdx_quote_collateral.json",
                tdx,
            ),
        ] {
            let (bytes, v) = verified_fixture(tee, quote, collateral);
            assert_eq!(Value::Object(dcap(&v).unwrap()), want, "{quote}");
            let c = of(tee, &bytes, &Value::Null, &v).unwrap();
            for (name, value) in want.as_object().unwrap() {
                assert_eq!(c.claims.get(name), Some(value), "{quote}: {name}");
            }
        }
    }

    /// Without collateral nothing that needs it is made up: the claims from the PCK
    /// certificate and root stay, the others are absent and rats names them.
    #[test]
    fn dcap_claims_without_collateral_are_not_made_up() {
        for (tee, quote) in [
            (rats::Tee::SgxEcdsa, "sgx_quote"),
            (rats::Tee::TdxEcdsa, "tdx_quote"),
        ] {
            let bytes = fixture(quote);
            let input = rats::Input {
                report_data: None,
                collateral: None,
                now: 1_750_377_600,
            };
            let v = rats::verify(&bytes, Some(tee), &input).unwrap();
            let c = of(tee, &bytes, &Value::Null, &v).unwrap();
            for name in [
                "advisory_ids",
                "collateral_expiration_status",
                "earliest_issue_date",
                "latest_issue_date",
                "earliest_expiration_date",
                "tcb_date",
                "pck_crl_num",
                "root_ca_crl_num",
                "tcb_eval_num",
            ] {
                assert!(!c.claims.contains_key(name), "{quote}: {name}");
            }
            assert_eq!(c.claims["tcb_status"], rats::dcap::UNKNOWN);
            for name in ["platform_provider_id", "sgx_type", "root_key_id"] {
                assert!(c.claims[name].is_string(), "{quote}: {name}");
            }
            assert_eq!(
                c.claims["dcap_unknown_claims"],
                json!(rats::dcap::NEED_COLLATERAL)
            );
        }
    }

    #[test]
    fn sgx_claims_follow_trustees_layout() {
        let (quote, v) = verified_fixture(
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
