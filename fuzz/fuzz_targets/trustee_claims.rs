//! What verdictd reads from a guest besides the RCAR messages: quote and report bytes
//! laid out as Trustee's claims (after rats verified them, but the layout code must not
//! trust the lengths), init-data TOML, reference-value messages and resource URIs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verdictd::claims::sgx(data);
    let _ = verdictd::claims::tdx(data);
    let mut verified = rats::Verified {
        tee: rats::Tee::SevSnp,
        tcb_status: None,
        advisory_ids: vec![],
        debug: false,
        report_data: vec![],
        claims: Default::default(),
    };
    for (i, name) in [
        "snp_policy",
        "snp_reported_tcb_bootloader",
        "snp_reported_tcb_tee",
        "snp_reported_tcb_snp",
        "snp_reported_tcb_microcode",
    ]
    .into_iter()
    .enumerate()
    {
        let v = data.get(i).copied().unwrap_or(0) as u64;
        verified
            .claims
            .insert(name.into(), rats::ClaimValue::Int(v << 8 | v));
    }
    let _ = verdictd::claims::snp(data, &verified);
    if let Ok(pck) = rats::dcap::quote_pck_claims(data) {
        verified.claims = pck;
        let _ = verdictd::claims::dcap(&verified);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verdictd::initdata::parse("toml", text);
        let _ = attestation_agent::ResourceUri::parse(text);
        if verdictd::ear_policy::is_rego(text) {
            let _ = verdictd::ear_policy::AttestationPolicy::parse(text);
        }
    }
    let _ = verdictd::admin_api::reference_values(data);
});
