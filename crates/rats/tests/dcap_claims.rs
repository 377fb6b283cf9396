//! The claims Intel's verification library reports beside the TCB status (TCB date,
//! collateral dates, CRL numbers, TCB evaluation number, the PCK certificate's
//! platform fields, the root key ID), on the real SGX and TDX fixtures. Every expected
//! value is read from the fixture files by another reader: the collateral JSON with
//! serde_json, CRLs and certificates with the `openssl` command, the quote's QE report
//! at the offsets of Intel's quote format; the root key ID is the value in Trustee's
//! own test (deps/verifier/src/intel_dcap/claims.rs `parse_supplemental_data` at
//! confidential-containers/trustee 78962cd416dcc8a32f9377e0066a28fe21420f69), which is
//! the production Intel root's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use rats::{verify, ClaimValue, Collateral, Input, Tee, Verified};
use serde_json::Value;

/// 2025-06-20T00:00:00Z: inside both DCAP collateral windows.
const IN_WINDOW: u64 = 1_750_377_600;

/// SHA-384 of the Intel SGX Root CA's public key, from Trustee's test (see above).
const INTEL_ROOT_KEY_ID: &str = "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5\
                                 dcf58eef31463613de1570d516200993";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command reads the expected values");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `key=value` lines of an openssl answer.
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .to_string()
}

/// openssl's ISO 8601 dates (`2025-06-19 10:23:18Z`) in RFC 3339.
fn iso(openssl_date: &str) -> String {
    openssl_date.replacen(' ', "T", 1)
}

fn pem_certs(text: &[u8]) -> Vec<Vec<u8>> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = vec![];
    let mut rest = text;
    while let Some(at) = rest
        .windows(27)
        .position(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        rest = &rest[at..];
        let end = rest.windows(END.len()).position(|w| w == END).unwrap() + END.len();
        out.push(rest[..end].to_vec());
        rest = &rest[end..];
    }
    out
}

fn text(v: &Verified, name: &str) -> String {
    match v.claims.get(name) {
        Some(ClaimValue::Text(t)) => t.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn int(v: &Verified, name: &str) -> u64 {
    match v.claims.get(name) {
        Some(ClaimValue::Int(i)) => *i,
        other => panic!("{name}: {other:?}"),
    }
}

/// The Intel SGX extension (OID 1.2.840.113741.1.13.1) of a PEM certificate, as
/// `openssl asn1parse` shows it: OID → the printed value of the element after it.
fn sgx_extension(pem: &[u8]) -> BTreeMap<String, String> {
    let outer = openssl(&["asn1parse"], pem);
    let mut lines = outer.lines();
    let offset = loop {
        let l = lines.next().expect("no SGX extension");
        if l.ends_with(":1.2.840.113741.1.13.1") {
            let value = lines.next().unwrap();
            break value.trim_start().split(':').next().unwrap().to_string();
        }
    };
    let inner = openssl(&["asn1parse", "-strparse", &offset], pem);
    let lines: Vec<&str> = inner.lines().collect();
    let mut out = BTreeMap::new();
    for pair in lines.windows(2) {
        if pair[0].contains(" OBJECT ") {
            let oid = pair[0].rsplit(':').next().unwrap().trim();
            let value = pair[1].rsplit(':').next().unwrap().trim();
            out.insert(oid.to_string(), value.to_string());
        }
    }
    out
}

struct Fixture {
    tee: Tee,
    quote: &'static str,
    collateral: &'static str,
    /// The TCB status dcap-qvl's own tests and testdata/README.md give.
    status: &'static str,
    /// Offset of the QE report in the quote: after the header (48), the body (SGX 384,
    /// TD 584), the signature data length (4), the quote signature and attestation key
    /// (64 + 64), and for a v4 quote the QE report certification data's type and size
    /// (2 + 4). Intel SGX ECDSA Quote Library API, "Quote Format".
    qe_report_at: usize,
    /// testdata/README.md's validity window (latest issue, earliest next update) over
    /// TCB info, QE identity and both CRLs.
    window: (&'static str, &'static str),
}

const FIXTURES: [Fixture; 2] = [
    Fixture {
        tee: Tee::SgxEcdsa,
        quote: "sgx_quote",
        collateral: "sgx_quote_collateral.json",
        status: "ConfigurationAndSWHardeningNeeded",
        qe_report_at: 48 + 384 + 4 + 128,
        window: ("2025-06-19T10:56:11Z", "2025-07-19T10:01:18Z"),
    },
    Fixture {
        tee: Tee::TdxEcdsa,
        quote: "tdx_quote",
        collateral: "tdx_quote_collateral.json",
        status: "UpToDate",
        qe_report_at: 48 + 584 + 4 + 128 + 6,
        window: ("2025-06-19T10:32:27Z", "2025-07-19T10:00:35Z"),
    },
];

fn verified(f: &Fixture, collateral: bool) -> Verified {
    let input = Input {
        report_data: None,
        collateral: collateral.then(|| Collateral::parse(f.tee, &data(f.collateral)).unwrap()),
        now: IN_WINDOW,
    };
    verify(&data(f.quote), Some(f.tee), &input).unwrap()
}

#[test]
fn collateral_claims_are_the_collaterals() {
    for f in &FIXTURES {
        let v = verified(f, true);
        assert_eq!(v.tcb_status.as_deref(), Some(f.status));
        let coll: Value = serde_json::from_slice(&data(f.collateral)).unwrap();
        let doc =
            |key: &str| -> Value { serde_json::from_str(coll[key].as_str().unwrap()).unwrap() };
        let (tcb_info, qe_identity) = (doc("tcb_info"), doc("qe_identity"));

        // Each document's own dates and evaluation numbers; Intel's tcb_eval_ref_num is
        // the lower of the two.
        assert_eq!(text(&v, "dcap_tcb_info_issue_date"), tcb_info["issueDate"]);
        assert_eq!(
            text(&v, "dcap_tcb_info_next_update"),
            tcb_info["nextUpdate"]
        );
        assert_eq!(
            text(&v, "dcap_qe_identity_issue_date"),
            qe_identity["issueDate"]
        );
        assert_eq!(
            text(&v, "dcap_qe_identity_next_update"),
            qe_identity["nextUpdate"]
        );
        let tcb_eval = tcb_info["tcbEvaluationDataNumber"].as_u64().unwrap();
        let qe_eval = qe_identity["tcbEvaluationDataNumber"].as_u64().unwrap();
        assert_eq!(int(&v, "dcap_tcb_info_eval_num"), tcb_eval);
        assert_eq!(int(&v, "dcap_qe_identity_eval_num"), qe_eval);
        assert_eq!(int(&v, "dcap_tcb_eval_num"), tcb_eval.min(qe_eval));
        assert_eq!(int(&v, "dcap_tcb_eval_num"), 17, "testdata/README.md");

        // The TCB date: the older of the matched TCB level's (the level with the
        // reported status) and the QE identity level's for the QE's ISVSVN (the first,
        // highest, level it meets).
        let quote = data(f.quote);
        let at = f.qe_report_at + 258; // ISVSVN in the SGX report body
        let qe_svn = u64::from(u16::from_le_bytes([quote[at], quote[at + 1]]));
        let levels = |d: &Value| d["tcbLevels"].as_array().unwrap().clone();
        let platform_levels: Vec<Value> = levels(&tcb_info)
            .into_iter()
            .filter(|l| l["tcbStatus"] == f.status)
            .collect();
        assert_eq!(platform_levels.len(), 1, "{}", f.quote);
        let qe_level = levels(&qe_identity)
            .into_iter()
            .find(|l| l["tcb"]["isvsvn"].as_u64().unwrap() <= qe_svn)
            .unwrap();
        let dates = [&platform_levels[0]["tcbDate"], &qe_level["tcbDate"]];
        let tcb_date = dates.iter().map(|d| d.as_str().unwrap()).min().unwrap();
        assert_eq!(text(&v, "dcap_tcb_date"), tcb_date, "{}", f.quote);

        // The CRLs' numbers and dates, and every certificate's validity.
        let mut issued = vec![
            tcb_info["issueDate"].as_str().unwrap().to_string(),
            qe_identity["issueDate"].as_str().unwrap().to_string(),
        ];
        let mut expires = vec![
            tcb_info["nextUpdate"].as_str().unwrap().to_string(),
            qe_identity["nextUpdate"].as_str().unwrap().to_string(),
        ];
        for (key, claim) in [
            ("pck_crl", "dcap_pck_crl_num"),
            ("root_ca_crl", "dcap_root_ca_crl_num"),
        ] {
            let der = hex::decode(coll[key].as_str().unwrap()).unwrap();
            let out = openssl(
                &[
                    "crl",
                    "-inform",
                    "DER",
                    "-noout",
                    "-crlnumber",
                    "-lastupdate",
                    "-nextupdate",
                    "-dateopt",
                    "iso_8601",
                ],
                &der,
            );
            let number = field(&out, "crlNumber");
            let number = u64::from_str_radix(number.trim_start_matches("0x"), 16).unwrap();
            assert_eq!(int(&v, claim), number, "{}: {key}", f.quote);
            issued.push(iso(&field(&out, "lastUpdate")));
            expires.push(iso(&field(&out, "nextUpdate")));
        }
        let mut certs = pem_certs(&quote);
        assert_eq!(certs.len(), 3, "the PCK chain in the quote");
        for key in [
            "pck_crl_issuer_chain",
            "tcb_info_issuer_chain",
            "qe_identity_issuer_chain",
        ] {
            certs.extend(pem_certs(coll[key].as_str().unwrap().as_bytes()));
        }
        for cert in &certs {
            let out = openssl(
                &[
                    "x509",
                    "-noout",
                    "-startdate",
                    "-enddate",
                    "-dateopt",
                    "iso_8601",
                ],
                cert,
            );
            issued.push(iso(&field(&out, "notBefore")));
            expires.push(iso(&field(&out, "notAfter")));
        }
        // RFC 3339 UTC strings of one shape sort as the times do.
        assert_eq!(
            text(&v, "dcap_earliest_issue_date"),
            *issued.iter().min().unwrap()
        );
        assert_eq!(
            text(&v, "dcap_latest_issue_date"),
            *issued.iter().max().unwrap()
        );
        assert_eq!(
            text(&v, "dcap_earliest_expiration_date"),
            *expires.iter().min().unwrap()
        );
        assert_eq!(text(&v, "dcap_latest_issue_date"), f.window.0);
        assert_eq!(text(&v, "dcap_earliest_expiration_date"), f.window.1);
        // The Intel root's notBefore.
        assert_eq!(text(&v, "dcap_earliest_issue_date"), "2018-05-21T10:45:10Z");

        assert_eq!(
            v.claims["dcap_root_key_id"],
            ClaimValue::Bytes(hex::decode(INTEL_ROOT_KEY_ID).unwrap())
        );
        assert_pck_claims(&v, &certs[0], f.quote);
        assert_eq!(v.claims["dcap_unknown_claims"], ClaimValue::List(vec![]));
        assert_eq!(v.claims["dcap_revocation_checked"], ClaimValue::Bool(true));
    }
}

/// The PCK certificate's SGX extension, read with `openssl asn1parse` (Intel SGX PCK
/// Certificate and CRL Profile: PPID .1, FMSPC .4, SGX type .5, platform instance ID
/// .6, configuration .7.1-3 under 1.2.840.113741.1.13.1).
fn assert_pck_claims(v: &Verified, pck_pem: &[u8], what: &str) {
    let ext = sgx_extension(pck_pem);
    let oid = |n: &str| format!("1.2.840.113741.1.13.1.{n}");
    let bytes = |n: &str| ClaimValue::Bytes(hex::decode(&ext[&oid(n)]).unwrap());
    assert_eq!(v.claims["dcap_ppid"], bytes("1"), "{what}");
    assert_eq!(v.claims["dcap_fmspc"], bytes("4"), "{what}");
    let sgx_type = u64::from_str_radix(&ext[&oid("5")], 16).unwrap();
    assert_eq!(
        v.claims["dcap_sgx_type"],
        ClaimValue::Int(sgx_type),
        "{what}"
    );
    match ext.get(&oid("6")) {
        Some(_) => assert_eq!(v.claims["dcap_platform_instance_id"], bytes("6")),
        None => assert!(!v.claims.contains_key("dcap_platform_instance_id")),
    }
    for (n, claim) in [
        ("7.1", "dcap_dynamic_platform"),
        ("7.2", "dcap_cached_keys"),
        ("7.3", "dcap_smt_enabled"),
    ] {
        // openssl prints BOOLEAN as 255 (true) or 0.
        let want = ext.get(&oid(n)).map(|b| ClaimValue::Bool(b != "0"));
        assert_eq!(v.claims.get(claim), want.as_ref(), "{what}: {claim}");
    }
}

#[test]
fn the_fixtures_cover_both_pck_cas() {
    // The SGX quote's PCK certificate is from the Processor CA (no platform instance
    // ID or configuration), the TDX quote's from the Platform CA (both).
    let sgx = verified(&FIXTURES[0], true);
    let tdx = verified(&FIXTURES[1], true);
    assert!(!sgx.claims.contains_key("dcap_platform_instance_id"));
    assert!(!sgx.claims.contains_key("dcap_smt_enabled"));
    assert!(tdx.claims.contains_key("dcap_platform_instance_id"));
    assert!(tdx.claims.contains_key("dcap_smt_enabled"));
}

/// Without collateral the PCK certificate's claims and the root key ID stay (the chain
/// to the pinned root is verified); everything from the collateral is absent, not
/// guessed, and `dcap_unknown_claims` names it.
#[test]
fn without_collateral_the_unknown_claims_are_named() {
    let need_collateral = [
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
    assert_eq!(rats::dcap::NEED_COLLATERAL, need_collateral);
    for f in &FIXTURES {
        let bare = verified(f, false);
        let full = verified(f, true);
        assert_eq!(bare.tcb_status.as_deref(), Some(rats::dcap::UNKNOWN));
        assert_eq!(
            bare.claims["dcap_unknown_claims"],
            ClaimValue::List(need_collateral.iter().map(|s| s.to_string()).collect())
        );
        for name in need_collateral {
            assert!(full.claims.contains_key(name), "{}: {name}", f.quote);
            assert!(!bare.claims.contains_key(name), "{}: {name}", f.quote);
        }
        for (name, value) in &full.claims {
            if need_collateral.contains(&name.as_str())
                || [
                    "tcb_status",
                    "dcap_unknown_claims",
                    "dcap_revocation_checked",
                    "dcap_qe_identity_checked",
                ]
                .contains(&name.as_str())
            {
                continue;
            }
            assert_eq!(bare.claims.get(name), Some(value), "{}: {name}", f.quote);
        }
        // The same PCK claims as openssl reads.
        assert_pck_claims(&bare, &pem_certs(&data(f.quote))[0], f.quote);
    }
}

#[test]
fn quote_pck_claims_reads_the_quotes_certificate() {
    for f in &FIXTURES {
        let claims = rats::dcap::quote_pck_claims(&data(f.quote)).unwrap();
        let v = verified(f, true);
        for (name, value) in &claims {
            assert_eq!(v.claims.get(name), Some(value), "{}: {name}", f.quote);
        }
        assert!(claims.contains_key("dcap_ppid"));
    }
    assert!(rats::dcap::quote_pck_claims(&[0; 100]).is_err());
}
