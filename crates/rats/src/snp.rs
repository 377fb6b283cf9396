//! AMD SEV-SNP attestation reports, verified against a VCEK (or VLEK) certificate and
//! AMD's built-in ARK/ASK for Milan, Genoa and Turin.
//!
//! A VLEK's chain goes through AMD's ASVK of its product, pinned here
//! ([`BUILTIN_ASVKS`]) like the ARKs, or supplied with an ARK that must be AMD's.
//!
//! Checks, in order: the report's shape; the certificate chain ARK → ASK → VCEK (with
//! `sev`), every certificate valid at the given time; the reported TCB against the
//! VCEK's TCB extensions (the `sev` crate does not do this) and the chip id against its
//! hwID; the report's ECDSA P-384 signature over its first 0x2A0 bytes *as received*.

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use x509_parser::prelude::*;

use crate::{Input, RatsError, Tee, Verified};

const TEE: &str = "sev_snp";
/// The report is signed over bytes 0x000..0x2A0; r and s follow, little-endian, 72 bytes
/// each.
const SIGNED_LEN: usize = 0x2A0;
pub const REPORT_LEN: usize = 0x4A0;

const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// SNP collateral: the versioned endorsement key's certificate (VCEK or VLEK, DER or
/// PEM), optionally with the ARK and ASK/ASVK from a certificate table or PEM bundle;
/// without them AMD's built-in ones for the key's product are used (for a VLEK the
/// pinned ASVK, [`BUILTIN_ASVKS`]; a host's certificate table carries the ASVK in the
/// ASK entry).
#[derive(Debug, Clone, Default)]
pub struct SnpCollateral {
    pub vek: Vec<u8>,
    /// A VLEK next to a VCEK in the same table: used for reports signed with the VLEK.
    pub vlek: Option<Vec<u8>>,
    pub ark: Option<Vec<u8>>,
    pub ask: Option<Vec<u8>>,
}

impl SnpCollateral {
    /// A certificate file (PEM or DER), or a certificate table as the kernel's
    /// configfs-tsm `auxblob` and the SNP extended report give it.
    ///
    /// A PEM file may hold several certificates (a VLEK or VCEK with its ASVK or ASK and
    /// the ARK, as AMD's KDS and `snpguest` write them): each is read and sorted by its
    /// subject's common name (`SEV-VCEK`, `SEV-VLEK`, `SEV-…` for the ASK/ASVK, `ARK-…`).
    pub fn parse(bytes: &[u8]) -> Result<SnpCollateral, RatsError> {
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            return parse_pem_bundle(bytes);
        }
        if bytes.first() == Some(&0x30) {
            return Ok(SnpCollateral {
                vek: bytes.to_vec(),
                ..Default::default()
            });
        }
        let table = parse_cert_table(bytes)?;
        let get = |guid: &str| {
            table
                .iter()
                .find(|(g, _)| g == guid)
                .map(|(_, d)| d.clone())
        };
        let vlek = get(GUID_VLEK);
        let vek = get(GUID_VCEK).or_else(|| vlek.clone()).ok_or_else(|| {
            collateral("the certificate table holds neither a VCEK nor a VLEK".into())
        })?;
        Ok(SnpCollateral {
            vek,
            vlek,
            ark: get(GUID_ARK),
            ask: get(GUID_ASK),
        })
    }
}

/// Every certificate of a PEM file, sorted into an [`SnpCollateral`] by common name.
fn parse_pem_bundle(bytes: &[u8]) -> Result<SnpCollateral, RatsError> {
    let mut out = SnpCollateral::default();
    let (mut vcek, mut vlek) = (None, None);
    for (i, pem) in x509_parser::pem::Pem::iter_from_buffer(bytes).enumerate() {
        let pem = pem.map_err(|e| collateral(format!("PEM certificate {}: {e}", i + 1)))?;
        if pem.label != "CERTIFICATE" {
            return Err(collateral(format!(
                "PEM block {} is a {}, not a CERTIFICATE",
                i + 1,
                pem.label
            )));
        }
        let (_, cert) = X509Certificate::from_der(&pem.contents)
            .map_err(|e| collateral(format!("PEM certificate {}: {e}", i + 1)))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("")
            .to_string();
        let slot = match cn.as_str() {
            "SEV-VCEK" => &mut vcek,
            "SEV-VLEK" => &mut vlek,
            c if c.starts_with("ARK-") => &mut out.ark,
            c if c.starts_with("SEV-") => &mut out.ask,
            other => {
                return Err(collateral(format!(
                    "PEM certificate {} ({other:?}) is none of AMD's SEV-SNP certificates",
                    i + 1
                )))
            }
        };
        if slot.is_some() {
            return Err(collateral(format!("two {cn} certificates in one PEM file")));
        }
        *slot = Some(pem.contents);
    }
    out.vek = vcek
        .or_else(|| vlek.clone())
        .ok_or_else(|| collateral("the PEM file holds neither a VCEK nor a VLEK".into()))?;
    out.vlek = vlek;
    Ok(out)
}

/// AMD's ASVKs (SEV-VLEK signing keys, `CN=SEV-VLEK-{Milan,Genoa,Turin}`), the
/// intermediates between AMD's ARKs and the VLEKs it issues to cloud providers, as
/// AMD's KDS serves them at `/vlek/v1/{product}/cert_chain`. `sev` builds in the ARKs
/// and ASKs but no ASVK, so they are pinned here: copied from
/// confidential-containers/trustee (commit 78962cd,
/// `deps/verifier/src/snp/{milan,genoa,turin}_ask_ark_asvk.pem`, Apache-2.0), and each
/// checked (tests) to be signed by `sev`'s built-in ARK of its product.
pub const BUILTIN_ASVKS: [(&str, &[u8]); 3] = [
    ("Milan", include_bytes!("asvk/milan.pem")),
    ("Genoa", include_bytes!("asvk/genoa.pem")),
    ("Turin", include_bytes!("asvk/turin.pem")),
];

/// The certificate table's GUIDs, as AMD publishes them (GHCB specification, 56421,
/// "SNP Extended Guest Request"; virtee/sev `CertType`). On the wire each is the 16
/// bytes of the RFC 4122 big-endian encoding, i.e. the string's hex digits in order:
/// the VCEK's entry starts `63 da 75 8d e6 64 …`.
pub const GUID_ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
/// The ASK's entry; a VLEK's table carries the ASVK under it.
pub const GUID_ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
pub const GUID_VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
pub const GUID_VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
/// AMD's certificate revocation list (not used by the verifier).
pub const GUID_CRL: &str = "92f81bc3-5811-4d3d-97ff-d19f88dc67ea";

/// The lower-case string form of a table entry's 16 GUID bytes (RFC 4122 byte order,
/// as `uuid_parse`/`Uuid::as_bytes` write them).
pub fn guid_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses an SNP certificate table (GHCB specification 56421, SNP Extended Guest
/// Request; the kernel's configfs-tsm `auxblob`): 24-byte entries of a 16-byte GUID in
/// RFC 4122 byte order, a little-endian u32 offset from the table's start and a
/// little-endian u32 length, ended by an all-zero entry. Returns (GUID string, data)
/// pairs in table order; an entry outside the buffer or a missing terminator is a
/// [`RatsError::Collateral`].
pub fn parse_cert_table(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, RatsError> {
    const ENTRY: usize = 24;
    let mut out = Vec::new();
    for i in 0.. {
        let at = i * ENTRY;
        let Some(e) = bytes.get(at..at + ENTRY) else {
            return Err(collateral(
                "certificate table: no terminating zero entry".into(),
            ));
        };
        if e.iter().all(|&b| b == 0) {
            break;
        }
        let guid = guid_string(e[..16].try_into().expect("16 bytes"));
        let offset = u32::from_le_bytes(e[16..20].try_into().expect("4 bytes")) as usize;
        let len = u32::from_le_bytes(e[20..24].try_into().expect("4 bytes")) as usize;
        let data = offset
            .checked_add(len)
            .and_then(|end| bytes.get(offset..end))
            .ok_or_else(|| {
                collateral(format!(
                    "certificate table: entry {guid} ({offset}+{len}) is outside the table"
                ))
            })?;
        out.push((guid, data.to_vec()));
    }
    Ok(out)
}

fn collateral(reason: String) -> RatsError {
    RatsError::Collateral { tee: TEE, reason }
}

fn malformed(reason: String) -> RatsError {
    RatsError::Malformed { tee: TEE, reason }
}

/// What the VCEK certifies about the platform.
#[derive(Debug, PartialEq, Eq)]
struct VekExtensions {
    product: Option<String>,
    bootloader: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    microcode: Option<u8>,
    fmc: Option<u8>,
    hwid: Option<Vec<u8>>,
    /// A VLEK names the cloud provider it was issued to.
    csp_id: Option<String>,
}

/// Reads AMD's extensions from a VCEK/VLEK, accepting both encodings seen in the
/// field: TCB values as DER INTEGERs, hwID as raw bytes or as a DER OCTET STRING.
fn vek_extensions(cert: &X509Certificate) -> Result<VekExtensions, RatsError> {
    let mut x = VekExtensions {
        product: None,
        bootloader: None,
        tee: None,
        snp: None,
        microcode: None,
        fmc: None,
        hwid: None,
        csp_id: None,
    };
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        let v = ext.value;
        let int = || -> Result<u8, RatsError> {
            // INTEGER: 02 len content (big-endian, possibly with a leading zero).
            match v {
                [0x02, n, rest @ ..] if *n as usize == rest.len() && !rest.is_empty() => {
                    let value = rest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                    u8::try_from(value)
                        .map_err(|_| collateral(format!("VCEK extension {oid}: {value} > 255")))
                }
                _ => Err(collateral(format!(
                    "VCEK extension {oid} is not an INTEGER"
                ))),
            }
        };
        match oid.as_str() {
            OID_PRODUCT_NAME => {
                // IA5String (0x16) or raw text.
                let text = match v {
                    [0x16, n, rest @ ..] if *n as usize == rest.len() => rest,
                    other => other,
                };
                x.product = Some(String::from_utf8_lossy(text).into_owned());
            }
            OID_BOOTLOADER => x.bootloader = Some(int()?),
            OID_TEE => x.tee = Some(int()?),
            OID_SNP => x.snp = Some(int()?),
            OID_MICROCODE => x.microcode = Some(int()?),
            OID_FMC => x.fmc = Some(int()?),
            OID_HWID => {
                x.hwid = Some(match v {
                    [0x04, 0x40, rest @ ..] if rest.len() == 64 => rest.to_vec(),
                    other => other.to_vec(),
                })
            }
            OID_CSP_ID => {
                let text = match v {
                    [0x16 | 0x0c, n, rest @ ..] if *n as usize == rest.len() => rest,
                    other => other,
                };
                x.csp_id = Some(String::from_utf8_lossy(text).into_owned());
            }
            _ => {}
        }
    }
    Ok(x)
}

/// The ARK/ASK pairs to try for a VCEK: from the collateral, else the built-in ones of
/// its product (all of them when the product is unknown).
fn ca_chains(
    c: &SnpCollateral,
    product: Option<&str>,
    vlek: bool,
) -> Result<Vec<ca::Chain>, RatsError> {
    if let (Some(ark), Some(ask)) = (&c.ark, &c.ask) {
        let cert = |b: &[u8]| cert_from_bytes(b).map_err(|e| collateral(format!("ARK/ASK: {e}")));
        // A supplied ARK must be one of AMD's: pin it to the built-in roots.
        let supplied = cert(ark)?;
        let known = [
            builtin::milan::ark(),
            builtin::genoa::ark(),
            builtin::turin::ark(),
        ];
        if !known.iter().flatten().any(|k| k == &supplied) {
            return Err(RatsError::CertificateChain {
                tee: TEE,
                reason: "the supplied ARK is not one of AMD's".into(),
            });
        }
        return Ok(vec![ca::Chain {
            ark: supplied,
            ask: cert(ask)?,
        }]);
    }
    let p = product.unwrap_or("").to_ascii_lowercase();
    let mut out = Vec::new();
    if vlek {
        // A VLEK's chain: the product's ARK and its pinned ASVK.
        for ((name, asvk), ark) in BUILTIN_ASVKS.iter().zip([
            builtin::milan::ark(),
            builtin::genoa::ark(),
            builtin::turin::ark(),
        ]) {
            if p.is_empty() || p.starts_with(&name.to_ascii_lowercase()) {
                if let (Ok(ark), Ok(ask)) = (ark, Certificate::from_pem(asvk)) {
                    out.push(ca::Chain { ark, ask });
                }
            }
        }
        return Ok(out);
    }
    for (name, ark, ask) in [
        ("milan", builtin::milan::ark(), builtin::milan::ask()),
        ("genoa", builtin::genoa::ark(), builtin::genoa::ask()),
        ("turin", builtin::turin::ark(), builtin::turin::ask()),
    ] {
        if p.is_empty() || p.starts_with(name) {
            if let (Ok(ark), Ok(ask)) = (ark, ask) {
                out.push(ca::Chain { ark, ask });
            }
        }
    }
    Ok(out)
}

/// A certificate in PEM or DER.
fn cert_from_bytes(b: &[u8]) -> std::io::Result<Certificate> {
    if b.starts_with(b"-----BEGIN") {
        Certificate::from_pem(b)
    } else {
        Certificate::from_der(b)
    }
}

fn check_validity(what: &str, der: &[u8], now: u64) -> Result<(), RatsError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| collateral(format!("{what}: not a certificate: {e}")))?;
    if let Some(w) = crate::validity::certificate(&format!("the {what}"), &cert, now as i64) {
        return Err(RatsError::CollateralExpired {
            tee: TEE,
            reason: w.reason(now as i64, true),
        });
    }
    Ok(())
}

/// Whether a report says it is signed with a VLEK (KEY_INFO.SIGNING_KEY = 1).
pub fn signed_with_vlek(report: &[u8]) -> bool {
    report
        .get(0x48..0x4c)
        .map(|b| (u32::from_le_bytes(b.try_into().expect("4 bytes")) >> 2) & 7 == 1)
        .unwrap_or(false)
}

pub(crate) fn verify(
    report: &[u8],
    c: &SnpCollateral,
    input: &Input,
) -> Result<Verified, RatsError> {
    if report.len() < REPORT_LEN {
        return Err(malformed(format!(
            "{} bytes, a report has {REPORT_LEN}",
            report.len()
        )));
    }
    let report = &report[..REPORT_LEN];
    let version = u32::from_le_bytes(report[..4].try_into().expect("4 bytes"));
    if !(2..=5).contains(&version) {
        return Err(malformed(format!("report version {version}")));
    }
    let sig_algo = u32::from_le_bytes(report[0x34..0x38].try_into().expect("4 bytes"));
    if sig_algo != 1 {
        return Err(malformed(format!(
            "signature algorithm {sig_algo} (only 1, ECDSA P-384 with SHA-384, exists)"
        )));
    }
    let parsed = AttestationReport::from_bytes(report).map_err(|e| malformed(e.to_string()))?;

    // Which key signed it: the VCEK (0), a VLEK (1), or none (7: no signature at all).
    let signing_key = parsed.key_info.signing_key();
    let (key_name, vek_bytes) = match signing_key {
        0 => ("VCEK", &c.vek),
        1 => ("VLEK", c.vlek.as_ref().unwrap_or(&c.vek)),
        7 => {
            return Err(RatsError::Signature {
                tee: TEE,
                reason: "the report is not signed (SIGNING_KEY is none)".into(),
            })
        }
        k => return Err(malformed(format!("SIGNING_KEY {k} is reserved"))),
    };
    if parsed.key_info.mask_chip_key() {
        return Err(RatsError::Signature {
            tee: TEE,
            reason: "the report is not signed (MASK_CHIP_KEY is set)".into(),
        });
    }

    // The certificate chain.
    let vek = cert_from_bytes(vek_bytes).map_err(|e| collateral(format!("{key_name}: {e}")))?;
    let vek_der = vek
        .to_der()
        .map_err(|e| collateral(format!("{key_name}: {e}")))?;
    let (_, x509) = X509Certificate::from_der(&vek_der)
        .map_err(|e| collateral(format!("{key_name}: not a certificate: {e}")))?;
    let ext = vek_extensions(&x509)?;
    // A VCEK certifies a chip (hwID); a VLEK a cloud provider (CSP id).
    let given = if ext.csp_id.is_some() && ext.hwid.is_none() {
        "VLEK"
    } else {
        "VCEK"
    };
    if given != key_name {
        return Err(collateral(format!(
            "the report is signed with its {key_name}, but the certificate given is a {given}"
        )));
    }
    let cas = ca_chains(c, ext.product.as_deref(), signing_key == 1)?;
    let chain = cas
        .into_iter()
        .map(|ca| Chain {
            ca,
            vek: vek.clone(),
        })
        .find(|chain| chain.verify().is_ok())
        .ok_or_else(|| RatsError::CertificateChain {
            tee: TEE,
            reason: format!(
                "the {key_name} ({}) is not signed by AMD's {} and ARK",
                ext.product.as_deref().unwrap_or("unknown product"),
                if key_name == "VLEK" { "ASVK" } else { "ASK" }
            ),
        })?;
    for (what, cert) in [
        ("ARK", &chain.ca.ark),
        (
            if key_name == "VLEK" { "ASVK" } else { "ASK" },
            &chain.ca.ask,
        ),
        (key_name, &chain.vek),
    ] {
        let der = cert
            .to_der()
            .map_err(|e| collateral(format!("{what}: {e}")))?;
        check_validity(what, &der, input.now)?;
    }

    // The TCB the report claims must be the one the VCEK was issued for.
    let t = parsed.reported_tcb;
    let mismatches: Vec<String> = [
        ("bootloader", Some(t.bootloader), ext.bootloader),
        ("tee", Some(t.tee), ext.tee),
        ("snp", Some(t.snp), ext.snp),
        ("microcode", Some(t.microcode), ext.microcode),
        ("fmc", t.fmc, ext.fmc),
    ]
    .iter()
    .filter(|(_, reported, certified)| certified.is_some() && reported != certified)
    .map(|(n, r, c)| format!("{n} {} ≠ {}", r.unwrap_or(0), c.unwrap_or(0)))
    .collect();
    if !mismatches.is_empty() {
        return Err(RatsError::Tcb {
            tee: TEE,
            reason: format!(
                "the reported TCB is not the {key_name}'s: {}",
                mismatches.join(", ")
            ),
        });
    }
    if let Some(hwid) = &ext.hwid {
        // A guest policy with MASK_CHIP_ID set gets a zero chip id: nothing to compare.
        if hwid[..] != parsed.chip_id[..] && parsed.chip_id.iter().any(|&b| b != 0) {
            return Err(RatsError::Tcb {
                tee: TEE,
                reason: "the report's chip id is not the VCEK's hwID".into(),
            });
        }
    }

    // The report's signature over the bytes as received.
    verify_signature(report, x509.public_key().subject_public_key.data.as_ref())?;

    let cur = parsed.current_tcb;
    let mut v = Verified::new(
        Tee::SevSnp,
        parsed.policy.debug_allowed(),
        &parsed.report_data,
    );
    let stale = tcb_differences(&t, &cur);
    v.tcb_status = Some(
        if stale.is_empty() {
            UP_TO_DATE
        } else {
            OUT_OF_DATE
        }
        .into(),
    );
    v.bytes("snp_measurement", &parsed.measurement)
        .bytes("snp_host_data", &parsed.host_data)
        .bytes("snp_family_id", &parsed.family_id)
        .bytes("snp_image_id", &parsed.image_id)
        .bytes("snp_id_key_digest", &parsed.id_key_digest)
        .bytes("snp_author_key_digest", &parsed.author_key_digest)
        .bytes("snp_chip_id", &parsed.chip_id)
        .int("snp_version", version.into())
        .int("snp_guest_svn", parsed.guest_svn.into())
        .int("snp_policy", parsed.policy.0)
        .int("snp_vmpl", parsed.vmpl.into())
        .int("snp_reported_tcb_bootloader", t.bootloader.into())
        .int("snp_reported_tcb_tee", t.tee.into())
        .int("snp_reported_tcb_snp", t.snp.into())
        .int("snp_reported_tcb_microcode", t.microcode.into())
        .int("snp_current_tcb_bootloader", cur.bootloader.into())
        .int("snp_current_tcb_tee", cur.tee.into())
        .int("snp_current_tcb_snp", cur.snp.into())
        .int("snp_current_tcb_microcode", cur.microcode.into());
    if let Some(fmc) = t.fmc {
        v.int("snp_reported_tcb_fmc", fmc.into());
    }
    if !stale.is_empty() {
        v.text("snp_tcb_out_of_date", &stale.join(", "));
    }
    crate::check_report_data(TEE, &v.report_data, input)?;
    Ok(v.finish())
}

/// `tcb_status` of a verified SNP report: the reported TCB is the one its VCEK/VLEK
/// certifies (a mismatch is an error, not a status) and the firmware runs that TCB
/// (`CURRENT_TCB` = `REPORTED_TCB`).
///
/// This says nothing of AMD's newest TCB, which needs no collateral here: a policy that
/// wants a minimum compares the `snp_reported_tcb_*` claims.
pub const UP_TO_DATE: &str = "UpToDate";
/// `tcb_status` of a verified SNP report whose `CURRENT_TCB` differs from its
/// `REPORTED_TCB`: the hypervisor reports, and the key attests, a TCB other than the
/// one running (usually older, during a firmware roll-out). The claim
/// `snp_tcb_out_of_date` names the components, `current ≠ reported`.
pub const OUT_OF_DATE: &str = "OutOfDate";

/// The components where the running TCB differs from the reported one.
fn tcb_differences(
    reported: &sev::firmware::host::TcbVersion,
    current: &sev::firmware::host::TcbVersion,
) -> Vec<String> {
    [
        (
            "bootloader",
            Some(reported.bootloader),
            Some(current.bootloader),
        ),
        ("tee", Some(reported.tee), Some(current.tee)),
        ("snp", Some(reported.snp), Some(current.snp)),
        (
            "microcode",
            Some(reported.microcode),
            Some(current.microcode),
        ),
        ("fmc", reported.fmc, current.fmc),
    ]
    .iter()
    .filter(|(_, r, c)| r != c)
    .map(|(n, r, c)| {
        format!(
            "{n} current {} ≠ reported {}",
            c.map_or("-".into(), |c| c.to_string()),
            r.map_or("-".into(), |r| r.to_string())
        )
    })
    .collect()
}

/// ECDSA P-384 over SHA-384 of bytes 0..0x2A0; r and s are 72-byte little-endian.
fn verify_signature(report: &[u8], sec1_key: &[u8]) -> Result<(), RatsError> {
    use p384::ecdsa::signature::Verifier;
    let sig = &report[SIGNED_LEN..SIGNED_LEN + 144];
    let be = |le: &[u8]| -> Option<[u8; 48]> {
        // The top 24 bytes of each 72-byte field must be zero for P-384.
        if le[48..].iter().any(|&b| b != 0) {
            return None;
        }
        let mut out = [0u8; 48];
        for (i, b) in le[..48].iter().enumerate() {
            out[47 - i] = *b;
        }
        Some(out)
    };
    let bad = |reason: &str| RatsError::Signature {
        tee: TEE,
        reason: reason.into(),
    };
    let (Some(r), Some(s)) = (be(&sig[..72]), be(&sig[72..144])) else {
        return Err(bad("r or s does not fit P-384"));
    };
    let sig = p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| bad("r or s out of range"))?;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1_key)
        .map_err(|_| collateral("the VCEK's key is not P-384".into()))?;
    key.verify(&report[..SIGNED_LEN], &sig)
        .map_err(|_| bad("the VCEK does not sign this report"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext_of(name: &str) -> VekExtensions {
        let der = std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        vek_extensions(&cert).unwrap()
    }

    #[test]
    fn vcek_extensions_decode_in_both_encodings() {
        let legacy = ext_of("test-vcek-invalid-legacy.der");
        assert_eq!(legacy.microcode, Some(169), "2-byte INTEGER");
        assert_eq!(legacy.snp, Some(10));
        assert_eq!(legacy.hwid, Some((0u8..64).collect::<Vec<_>>()), "raw hwID");
        let new = ext_of("test-vcek-invalid-new.der");
        assert_eq!(
            (new.bootloader, new.snp, new.microcode),
            (Some(0), Some(0), Some(30))
        );
        assert_eq!(
            new.hwid,
            Some((0u8..64).collect::<Vec<_>>()),
            "OCTET STRING hwID"
        );
        let real = ext_of("test-vcek.der");
        assert_eq!(
            (real.bootloader, real.tee, real.snp, real.microcode),
            (Some(3), Some(0), Some(8), Some(115))
        );
        assert_eq!(real.product.as_deref(), Some("Milan-B0"));
    }
}
