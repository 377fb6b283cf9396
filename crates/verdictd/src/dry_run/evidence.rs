//! The evidence file of `verdictd policy test`, in any of its forms, as the KBS
//! `Attestation` the server would receive, with its TEE and how it is bound.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kbs_protocol::{Attestation, CompositeEvidence, RuntimeData, TeePubKey};
use serde_json::{json, Value};

use super::{Args, Binding};
use crate::appraise;

/// DCAP collateral from a file, or from the one JSON file of a directory.
pub(super) fn dcap_collateral(tee: rats::Tee, path: &Path) -> Result<rats::Collateral> {
    let file = if path.is_dir() {
        let mut json: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| anyhow!("collateral {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        match json.len() {
            1 => json.remove(0),
            n => bail!(
                "collateral {}: a directory of DCAP collateral holds one QuoteCollateralV3 .json file, not {n}",
                path.display()
            ),
        }
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|e| anyhow!("collateral {}: {e}", file.display()))?;
    rats::Collateral::parse(tee, &bytes).map_err(|e| anyhow!("collateral {}: {e}", file.display()))
}

/// SEV-SNP certificates as certificate table entries (GUID, DER) for the evidence's
/// `cert_chain`: a file (DER, PEM bundle, certificate table) or a directory of them.
fn snp_certificates(path: &Path, report: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bytes = if path.is_dir() {
        // Every certificate file, as one PEM bundle (rats sorts them by subject).
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| anyhow!("collateral {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut bundle = Vec::new();
        for f in files {
            let b = std::fs::read(&f).map_err(|e| anyhow!("collateral {}: {e}", f.display()))?;
            if b.trim_ascii_start().starts_with(b"-----BEGIN") {
                bundle.extend_from_slice(&b);
                bundle.push(b'\n');
            } else if b.first() == Some(&0x30) {
                bundle.extend_from_slice(pem::encode(&pem::Pem::new("CERTIFICATE", b)).as_bytes());
            }
        }
        bundle
    } else {
        std::fs::read(path).map_err(|e| anyhow!("collateral {}: {e}", path.display()))?
    };
    let c = rats::snp::SnpCollateral::parse(&bytes)
        .map_err(|e| anyhow!("collateral {}: {e}", path.display()))?;
    let vlek = c
        .vlek
        .clone()
        .or_else(|| rats::snp::signed_with_vlek(report).then(|| c.vek.clone()));
    let mut table = Vec::new();
    match vlek {
        Some(vlek) => table.push((rats::snp::GUID_VLEK.to_string(), vlek)),
        None => table.push((rats::snp::GUID_VCEK.to_string(), c.vek)),
    }
    if let Some(ask) = c.ask {
        table.push((rats::snp::GUID_ASK.to_string(), ask));
    }
    if let Some(ark) = c.ark {
        table.push((rats::snp::GUID_ARK.to_string(), ark));
    }
    Ok(table)
}

/// Evidence read from a file: its TEE, its form (`attestation`, `primary evidence`,
/// `raw evidence`, `configfs-tsm report`), the Attestation the server would receive and
/// how it is bound.
pub(super) struct Loaded {
    pub tee: rats::Tee,
    pub form: &'static str,
    pub attestation: Attestation,
    pub binding: Binding,
}

/// The TEE `--tee` names: the KBS names (sample, sim, sgx, tdx, snp) or rats' names.
fn tee_named(name: &str) -> Result<rats::Tee> {
    appraise::tee_of(name)
        .map_err(|e| anyhow!("--tee: {e}"))
        .or_else(|e| rats::Tee::from_name(name).map_err(|_| e))
}

/// The TEE of primary evidence, by its shape (what the guest sends for each).
fn tee_of_primary(v: &Value) -> Result<rats::Tee> {
    if let Some(q) = v.get("quote").and_then(Value::as_str) {
        let bytes = STANDARD
            .decode(q)
            .map_err(|e| anyhow!("\"quote\" is not base64: {e}"))?;
        return match rats::Tee::detect(&bytes) {
            Ok(t @ (rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa)) => Ok(t),
            _ => bail!("\"quote\" holds no SGX or TDX quote"),
        };
    }
    if v.get("attestation_report").is_some() {
        return Ok(rats::Tee::SevSnp);
    }
    if v.get("report").is_some_and(Value::is_string) {
        return Ok(rats::Tee::Sim);
    }
    if v.get("svn").is_some() && v.get("report_data").is_some() {
        return Ok(rats::Tee::Sample);
    }
    bail!("not evidence of a TEE verdictd knows (sample {{svn, report_data}}, sim {{report}}, sgx/tdx {{quote}}, snp {{attestation_report}})")
}

/// The primary evidence the guest sends for raw evidence of `tee`.
fn primary_of(tee: rats::Tee, bytes: &[u8], certs: &[(String, Vec<u8>)]) -> Result<Value> {
    Ok(match tee {
        rats::Tee::Sim => json!({"report": STANDARD.encode(bytes)}),
        rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa => json!({"quote": STANDARD.encode(bytes)}),
        rats::Tee::SevSnp => kbs_protocol::snp::evidence(bytes, certs)?,
        rats::Tee::Sample => serde_json::from_slice(bytes)?,
    })
}

/// The P-256 base point: a stand-in `tee-pubkey` for evidence that has none (it is no
/// one's key; nothing is encrypted to it).
fn stand_in_key() -> TeePubKey {
    TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ECDH-ES+A256KW".into(),
        x: "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY".into(),
        y: "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU".into(),
    }
}

pub(super) fn load_evidence(args: &Args) -> Result<Loaded> {
    let path = &args.evidence;
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("evidence {name}: {e}"))?;
    let forced = args.tee.as_deref().map(tee_named).transpose()?;
    let text = bytes.trim_ascii();
    let unbound = |primary: Value, form| Loaded {
        tee: rats::Tee::Sample,
        form,
        attestation: Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: String::new(),
                tee_pubkey: stand_in_key(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: primary,
                additional_evidence: String::new(),
            },
        },
        binding: Binding::Unbound,
    };
    let snp_certs = |report: &[u8]| -> Result<Vec<(String, Vec<u8>)>> {
        match &args.collateral {
            Some(c) => snp_certificates(c, report),
            None => Ok(vec![]),
        }
    };
    let mut loaded = if text.first() == Some(&b'{') {
        let v: Value =
            serde_json::from_slice(text).map_err(|e| anyhow!("evidence {name}: not JSON: {e}"))?;
        if v.get("tee-evidence").is_some() {
            let attestation: Attestation = serde_json::from_value(v)
                .map_err(|e| anyhow!("evidence {name}: not a KBS Attestation: {e}"))?;
            let tee = match forced {
                Some(t) => t,
                None => tee_of_primary(&attestation.tee_evidence.primary_evidence)
                    .map_err(|e| anyhow!("evidence {name}: {e}"))?,
            };
            // As the server binds it: SHA-384, its challenges' hash.
            let digest = kbs_protocol::binding::digest(
                kbs_protocol::HashAlgorithm::Sha384,
                &attestation.runtime_data.nonce,
                &attestation.runtime_data.tee_pubkey,
                &attestation.tee_evidence.additional_evidence,
            )
            .map_err(|e| anyhow!("evidence {name}: {e}"))?;
            Loaded {
                tee,
                form: "attestation",
                attestation,
                binding: Binding::RuntimeData(digest),
            }
        } else if let Some(report) =
            rats::tsm::TsmReport::from_json(text).map_err(|e| anyhow!("evidence {name}: {e}"))?
        {
            let e = report
                .evidence()
                .map_err(|e| anyhow!("evidence {name}: {e}"))?;
            let tee = forced.unwrap_or(e.tee);
            let certs = match (&args.collateral, &e.collateral, tee) {
                (None, Some(aux), rats::Tee::SevSnp) => rats::snp::parse_cert_table(aux)
                    .map_err(|e| anyhow!("evidence {name}: auxblob: {e}"))?,
                _ => snp_certs(&e.bytes)?,
            };
            let primary =
                primary_of(tee, &e.bytes, &certs).map_err(|e| anyhow!("evidence {name}: {e}"))?;
            Loaded {
                tee,
                ..unbound(primary, "configfs-tsm report")
            }
        } else {
            let tee = match forced {
                Some(t) => t,
                None => tee_of_primary(&v).map_err(|e| anyhow!("evidence {name}: {e}"))?,
            };
            Loaded {
                tee,
                ..unbound(v, "primary evidence")
            }
        }
    } else {
        // Raw bytes, or hex text (as some tools store quotes and reports).
        let raw =
            if !text.is_empty() && text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit) {
                hex::decode(text).map_err(|e| anyhow!("evidence {name}: {e}"))?
            } else {
                bytes.clone()
            };
        let tee = match forced {
            Some(t) => t,
            None => rats::Tee::detect(&raw).map_err(|e| anyhow!("evidence {name}: {e}"))?,
        };
        let certs = if tee == rats::Tee::SevSnp {
            if args.collateral.is_none() {
                bail!("evidence {name}: a raw SEV-SNP report needs --collateral (its VCEK or VLEK): the guest sends it as cert_chain");
            }
            snp_certs(&raw)?
        } else {
            vec![]
        };
        let primary = primary_of(tee, &raw, &certs).map_err(|e| anyhow!("evidence {name}: {e}"))?;
        Loaded {
            tee,
            ..unbound(primary, "raw evidence")
        }
    };
    // SNP JSON evidence with --collateral: the certificates replace its cert_chain.
    if let (rats::Tee::SevSnp, Some(_), "attestation" | "primary evidence") =
        (loaded.tee, &args.collateral, loaded.form)
    {
        let primary = &mut loaded.attestation.tee_evidence.primary_evidence;
        let (report, _) =
            kbs_protocol::snp::parse(primary).map_err(|e| anyhow!("evidence {name}: {e}"))?;
        *primary = primary_of(rats::Tee::SevSnp, &report, &snp_certs(&report)?)
            .map_err(|e| anyhow!("evidence {name}: {e}"))?;
    }
    Ok(loaded)
}
