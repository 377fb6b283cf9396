//! Intel DCAP quotes (SGX v3, TDX v4/v5), verified with `dcap-qvl` against the pinned
//! production Intel SGX Root CA. The time is an input; nothing here touches the network.

use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;

use crate::dcap_cache::{key_of, CollateralCache, Entry};
use crate::{Input, RatsError, Tee, Verified};

pub use crate::dcap_claims::NEED_COLLATERAL;
pub use crate::dcap_offline::UNKNOWN;

/// The production Intel SGX Root CA (DER). SHA-256
/// `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`.
pub const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// Verifies a DCAP quote of type `tee` with `collateral` at `input.now`, from `cache`
/// when it holds this quote's platform and collateral ([`crate::dcap_cache`]), else in
/// full (and then kept in `cache`).
pub(crate) fn verify(
    tee: Tee,
    quote: &[u8],
    collateral: &QuoteCollateralV3,
    input: &Input,
    cache: Option<&CollateralCache>,
) -> Result<Verified, RatsError> {
    let name = tee.name();
    check_td_attributes(tee, quote)?;
    let cached = cache.and_then(|cache| {
        let parsed = dcap_qvl::quote::Quote::parse(quote).ok()?;
        let key = key_of(tee, quote, &parsed, collateral, INTEL_SGX_ROOT_CA)?;
        Some((cache, parsed, key))
    });
    if let Some((cache, parsed, key)) = &cached {
        if let Some(entry) = cache.get(key, input.now) {
            match entry.verify(tee, quote, parsed) {
                Some(v) => {
                    cache.hit();
                    crate::check_report_data(name, &v.report_data, input)?;
                    return Ok(v.finish());
                }
                // Whatever failed, the full verification says what, as it always has.
                None => cache.rejected(),
            }
        }
    }
    check_collateral_matches(tee, quote, collateral)?;
    // Debug enclaves and service-TD bindings are policy decisions here, not
    // verification failures: they are reported either way.
    // dcap-qvl's policy decides nothing here (`claims_only`): the TCB status and
    // advisories are this crate's `Policy`'s to decide, and all are reported.
    let claims = QuoteVerifier::new(INTEL_SGX_ROOT_CA.to_vec())
        .allow_debug(true)
        .allow_service_td(true)
        .verify_with_policy(
            quote,
            collateral,
            input.now,
            &dcap_qvl::QuotePolicy::claims_only(input.now),
        )
        .map_err(|e| {
            let msg = format!("{e:#}");
            match classify(name, &msg) {
                RatsError::CollateralExpired { tee, .. } => RatsError::CollateralExpired {
                    tee,
                    reason: explain_expiry(quote, collateral, &msg, input.now),
                },
                other => other,
            }
        })?;
    let mut v = body_claims(tee, &claims.report)?;
    v.tcb_status = Some(claims.tcb.status.to_string());
    v.advisory_ids = claims.tcb.advisory_ids.clone();
    // The collateral's claims, kept apart for the cache: they are the same for every
    // quote with this key.
    let mut from_collateral = Verified::new(tee, false, &[]);
    crate::dcap_claims::add_verified(tee, &mut from_collateral, &claims, collateral)?;
    v.claims.extend(
        from_collateral
            .claims
            .iter()
            .map(|(k, c)| (k.clone(), c.clone())),
    );
    crate::check_report_data(name, &v.report_data, input)?;
    if let Some((cache, parsed, key)) = cached {
        let window = (claims.latest_issue_date, claims.earliest_expiration_date);
        if let Some(entry) = Entry::new(
            &parsed,
            window,
            claims.tcb.status.to_string(),
            claims.tcb.advisory_ids,
            from_collateral.claims,
        ) {
            cache.insert(key, entry);
        }
    }
    Ok(v.finish())
}

/// The claims of the PCK certificate a quote carries (certification data type 5;
/// `dcap_ppid`, `dcap_sgx_type`, `dcap_platform_instance_id`, … as
/// [`crate::Verified`] has them for a verified quote), read **without verifying**
/// the certificate: for laying out quotes [`crate::verify`] has already checked.
pub fn quote_pck_claims(
    quote: &[u8],
) -> Result<std::collections::BTreeMap<String, crate::ClaimValue>, RatsError> {
    let malformed = |reason: String| RatsError::Malformed {
        tee: "dcap",
        reason,
    };
    let parsed = dcap_qvl::quote::Quote::parse(quote).map_err(|e| malformed(format!("{e:#}")))?;
    let chain = dcap_qvl::intel::extract_cert_chain(&parsed)
        .map_err(|e| malformed(format!("PCK certificate chain: {e:#}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| malformed("empty PCK certificate chain".into()))?;
    crate::dcap_claims::pck_certificate_claims(leaf)
        .map_err(|e| malformed(format!("PCK certificate: {e}")))
}

/// The claims of a quote's body (SGX enclave report or TD report), by rats-rs's names.
pub(crate) fn body_claims(tee: Tee, report: &Report) -> Result<Verified, RatsError> {
    let name = tee.name();
    Ok(match (report, tee) {
        (Report::SgxEnclave(r), Tee::SgxEcdsa) => {
            // SGX ATTRIBUTES.DEBUG is bit 1 of the first byte.
            let mut v = Verified::new(tee, r.attributes[0] & 0x02 != 0, &r.report_data);
            v.bytes("sgx_cpu_svn", &r.cpu_svn)
                .bytes("sgx_attributes", &r.attributes)
                .bytes("sgx_mr_enclave", &r.mr_enclave)
                .bytes("sgx_mr_signer", &r.mr_signer)
                .int("sgx_isv_prod_id", r.isv_prod_id.into())
                .int("sgx_isv_svn", r.isv_svn.into())
                .int("sgx_misc_select", r.misc_select.into());
            v
        }
        (r, Tee::TdxEcdsa) if r.as_td10().is_some() => {
            let td = r.as_td10().expect("checked");
            let class = crate::tdx::TdClass::of(r).expect("a TD report");
            let mut v = Verified::new(tee, class.debug, &td.report_data);
            class.add_claims(&mut v);
            v.bytes("tdx_tee_tcb_svn", &td.tee_tcb_svn)
                .bytes("tdx_mr_seam", &td.mr_seam)
                .bytes("tdx_mrsigner_seam", &td.mr_signer_seam)
                .bytes("tdx_seam_attributes", &td.seam_attributes)
                .bytes("tdx_td_attributes", &td.td_attributes)
                .bytes("tdx_xfam", &td.xfam)
                .bytes("tdx_mr_td", &td.mr_td)
                .bytes("tdx_mr_config_id", &td.mr_config_id)
                .bytes("tdx_mr_owner", &td.mr_owner)
                .bytes("tdx_mr_owner_config", &td.mr_owner_config)
                .bytes("tdx_rt_mr0", &td.rt_mr0)
                .bytes("tdx_rt_mr1", &td.rt_mr1)
                .bytes("tdx_rt_mr2", &td.rt_mr2)
                .bytes("tdx_rt_mr3", &td.rt_mr3);
            if let Some(r15) = r.as_td15() {
                v.bytes("tdx_tee_tcb_svn2", &r15.tee_tcb_svn2)
                    .bytes("tdx_mr_servicetd", &r15.mr_service_td);
            }
            if let Some(ex) = r.as_td15_ex() {
                td15ex_claims(&mut v, ex);
            }
            v
        }
        _ => {
            return Err(RatsError::Malformed {
                tee: name,
                reason: "the quote's body does not match its TEE type".into(),
            })
        }
    })
}

/// The fields a TD report 1.5ex (quote v5 body type 4, `sgx_report2_body_v1_5_ex_t` in
/// Intel's `sgx_quote_5.h`) adds after `mr_servicetd`, at these body offsets:
///
/// | claim | offset | bytes | field |
/// |---|---|---|---|
/// | `tdx_vmid` (int) | 648 | 1 | `vmid`: 0 for an unpartitioned TD or the L1 VMM, 1–3 for TD VMs 1–3 |
/// | `tdx_td_id` | 649 | 32 | `td_id`: regenerated on TD relaunch, kept across TD-preserving update and migration; zero when the host does not enable it |
/// | `tdx_dev_info` | 681 | 48 | `devinfo`: hash of the device information CBOR |
/// | `tdx_init_servtd_hash` | 729 | 48 | `init_server_td_hash` |
/// | `tdx_init_servtd_attributes` | 777 | 8 | `init_server_td_attr` |
/// | `tdx_init_cpu_svn` | 785 | 16 | `init_cpu_svn`: the CPUSVN at TD creation |
/// | `tdx_init_tee_tcb_svn` | 801 | 16 | `init_tee_tcb_svn`: the TEE_TCB_SVN at TD creation |
/// | `tdx_init_tee_fmspc` | 817 | 12 | `init_tee_fmspc`: the platform `init_tee_tcb_svn` was captured on |
/// | `tdx_cur_servtd_hash` | 829 | 48 | `curr_server_td_hash`: service TDs bound now |
/// | `tdx_cur_servtd_attributes` | 877 | 8 | `curr_server_td_attr` |
///
/// They are signed with the rest of the body, and reported as read; Intel's QVL appraises
/// none of them (the TCB is the TD 1.5 report's).
fn td15ex_claims(v: &mut Verified, ex: &dcap_qvl::quote::TDReport15Ex) {
    v.int("tdx_vmid", ex.vmid.into())
        .bytes("tdx_td_id", &ex.td_id)
        .bytes("tdx_dev_info", &ex.dev_info)
        .bytes("tdx_init_servtd_hash", &ex.init_service_td_hash)
        .bytes("tdx_init_servtd_attributes", &ex.init_service_td_attributes)
        .bytes("tdx_init_cpu_svn", &ex.init_cpu_svn)
        .bytes("tdx_init_tee_tcb_svn", &ex.init_tee_tcb_svn)
        .bytes("tdx_init_tee_fmspc", &ex.init_tee_fmspc)
        .bytes("tdx_cur_servtd_hash", &ex.cur_service_td_hash)
        .bytes("tdx_cur_servtd_attributes", &ex.cur_service_td_attributes);
}

/// Refuses a TD whose attributes no policy can accept, naming each error
/// ([`crate::tdx::TdClass::refusals`]); quotes that do not parse are left to the
/// verifier.
pub(crate) fn check_td_attributes(tee: Tee, quote: &[u8]) -> Result<(), RatsError> {
    if tee != Tee::TdxEcdsa {
        return Ok(());
    }
    let Ok(parsed) = dcap_qvl::quote::Quote::parse(quote) else {
        return Ok(());
    };
    let Some(class) = crate::tdx::TdClass::of(&parsed.report) else {
        return Ok(());
    };
    let refusals = class.refusals();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(RatsError::TdAttributes {
            tee: tee.name(),
            reason: refusals.join("; "),
        })
    }
}

/// Refuses collateral fetched for another platform before the chain checks, which
/// would otherwise report it as an unknown revocation status: the TCB info's `id`
/// (`SGX`/`TDX`) against the quote's TEE, its `fmspc` against the PCK certificate's
/// FMSPC (OID 1.2.840.113741.1.13.1.4), and the PCK CRL's issuer (`Intel SGX PCK
/// Processor CA` or `… Platform CA`) against the PCK certificate's. Quotes whose PCK
/// chain cannot be read are left to the verifier, which says why.
fn check_collateral_matches(
    tee: Tee,
    quote: &[u8],
    collateral: &QuoteCollateralV3,
) -> Result<(), RatsError> {
    let Ok(parsed) = dcap_qvl::quote::Quote::parse(quote) else {
        return Ok(());
    };
    let mut mismatches = Vec::new();
    if let Ok(info) = serde_json::from_str::<serde_json::Value>(&collateral.tcb_info) {
        if let (Some(c), Ok(q)) = (
            info.get("fmspc").and_then(|v| v.as_str()),
            dcap_qvl::intel::quote_fmspc(&parsed),
        ) {
            let q = hex::encode_upper(q);
            if !c.eq_ignore_ascii_case(&q) {
                mismatches.push(format!(
                    "collateral is for FMSPC {}, quote is FMSPC {q}",
                    c.to_ascii_uppercase()
                ));
            }
        }
        let want = if tee == Tee::TdxEcdsa { "TDX" } else { "SGX" };
        // TCB info v2 has no id: it is SGX's.
        let id = info.get("id").and_then(|v| v.as_str()).unwrap_or("SGX");
        if id != want {
            mismatches.push(format!("collateral is {id} TCB info, quote is {want}"));
        }
    }
    use x509_parser::prelude::FromDer as _;
    let crl_ca =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&collateral.pck_crl)
            .ok()
            .and_then(|(_, crl)| {
                let cn = crl
                    .issuer()
                    .iter_common_name()
                    .next()?
                    .as_str()
                    .ok()?
                    .to_string();
                let lower = cn.to_ascii_lowercase();
                let ca = if lower.contains("processor") {
                    "processor"
                } else if lower.contains("platform") {
                    "platform"
                } else {
                    return None;
                };
                Some((cn, ca))
            });
    if let (Some((cn, crl_ca)), Ok(quote_ca)) = (crl_ca, dcap_qvl::intel::quote_ca(&parsed)) {
        if crl_ca != quote_ca.as_id_str() {
            mismatches.push(format!(
                "collateral's PCK CRL is from the {cn}, quote's PCK certificate from the {} CA",
                quote_ca.as_id_str()
            ));
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(RatsError::Collateral {
            tee: tee.name(),
            reason: mismatches.join("; "),
        })
    }
}

/// dcap-qvl's expiry error `msg` as a reader wants it: the collateral item (or PCK
/// certificate) outside its window, its date and the verification time, in RFC 3339.
fn explain_expiry(quote: &[u8], collateral: &QuoteCollateralV3, msg: &str, now: u64) -> String {
    let pck_chain = dcap_qvl::quote::Quote::parse(quote)
        .ok()
        .and_then(|q| dcap_qvl::intel::extract_cert_chain(&q).ok())
        .unwrap_or_default();
    let now = now as i64;
    let found = crate::validity::dcap_collateral(collateral, &pck_chain, now);
    crate::validity::explain_dcap(msg, &found, now)
}

/// Sorts dcap-qvl's error text into the check that failed.
fn classify(tee: &'static str, msg: &str) -> RatsError {
    let m = msg.to_ascii_lowercase();
    let reason = msg.to_string();
    if m.contains("td attributes")
        || m.contains("sept_ve_disable")
        || m.contains("td migration")
        || m.contains("servtd_ext")
        || m.contains("mr service td")
    {
        RatsError::TdAttributes { tee, reason }
    } else if m.contains("expired") || m.contains("in the future") || m.contains("not yet valid") {
        RatsError::CollateralExpired { tee, reason }
    } else if m.contains("certificate chain") || m.contains("revoked") && m.contains("cert") {
        RatsError::CertificateChain { tee, reason }
    } else if m.contains("signature") || m.contains("hash mismatch") {
        RatsError::Signature { tee, reason }
    } else if m.contains("decode quote")
        || m.contains("quote version")
        || m.contains("qe vendor")
        || m.contains("must have version")
        || m.contains("attestation key type")
        || m.contains("unsupported tee type")
        || m.contains("certificate format")
        || m.contains("too short in quote")
        || m.contains("not enough data")
    {
        RatsError::Malformed { tee, reason }
    } else if m.contains("tcb status") || m.contains("no matching tcb level") {
        RatsError::Tcb { tee, reason }
    } else {
        RatsError::Collateral { tee, reason }
    }
}

/// Parses collateral in dcap-qvl's `QuoteCollateralV3` JSON shape.
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, RatsError> {
    serde_json::from_slice(json).map_err(|e| RatsError::Collateral {
        tee: "dcap",
        reason: format!("not QuoteCollateralV3 JSON: {e}"),
    })
}

/// Splits a signed Intel document as PCS serves it (`{"tcbInfo":…,"signature":"hex"}`,
/// `{"enclaveIdentity":…}`) into the body, byte for byte as signed, and the signature.
pub fn split_signed_document(doc: &[u8], body: &str) -> Result<(String, Vec<u8>), String> {
    #[derive(serde::Deserialize)]
    struct Signed<'a> {
        #[serde(borrow, rename = "tcbInfo")]
        tcb_info: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, rename = "enclaveIdentity")]
        enclave_identity: Option<&'a serde_json::value::RawValue>,
        signature: String,
    }
    let s: Signed<'_> = serde_json::from_slice(doc).map_err(|e| format!("{body}: {e}"))?;
    let raw = match body {
        "tcbInfo" => s.tcb_info,
        _ => s.enclave_identity,
    }
    .ok_or_else(|| format!("{body}: no \"{body}\" member"))?;
    let signature =
        hex::decode(&s.signature).map_err(|_| format!("{body}: signature is not hex"))?;
    Ok((raw.get().to_string(), signature))
}

/// The signed document [`split_signed_document`] reads: the signature covers `raw`
/// byte for byte, so it is spliced in, not re-serialised.
pub fn signed_document(body: &str, raw: &str, signature: &[u8]) -> String {
    format!(
        "{{\"{body}\":{raw},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
}

const CRL_BEGIN: &str = "-----BEGIN X509 CRL-----";
const CRL_END: &str = "-----END X509 CRL-----";

/// A CRL as Intel's services and libraries give it: DER, PEM, or hex of the DER.
pub fn crl_der(b: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    if b.first() == Some(&0x30) {
        return Ok(b.to_vec());
    }
    let s = std::str::from_utf8(b).map_err(|_| "neither DER, PEM nor hex".to_string())?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if let Some(body) = s.strip_prefix(CRL_BEGIN) {
        let body = body
            .trim_end()
            .strip_suffix(CRL_END)
            .ok_or("PEM without its END line")?;
        let b64: String = body.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "PEM body is not base64".to_string());
    }
    hex::decode(s).map_err(|_| "neither DER, PEM nor hex".to_string())
}

/// A CRL in PEM.
pub fn crl_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    s.push_str(CRL_BEGIN);
    s.push('\n');
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(CRL_END);
    s.push('\n');
    s
}
