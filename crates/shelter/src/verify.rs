//! `shelter verify`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use rats::{Collateral, Input, Policy, Tee};

use crate::cli::Verify;

/// Exit code when the evidence verified but the policy refused it.
pub const REFUSED: i32 = 3;

pub fn run(v: &Verify) -> Result<i32> {
    let (evidence, aux) = open_evidence(read_evidence(&v.evidence)?)?;
    let tee = match &v.tee {
        Some(name) => Tee::from_name(name)?,
        None => Tee::detect(&evidence)?,
    };
    let fetcher = rats::fetch::Fetcher {
        cache_dir: v.collateral_cache.clone(),
        ..Default::default()
    };
    // A configfs-tsm report's auxblob (SNP's certificate table) is collateral too,
    // unless --collateral names other.
    let collateral_bytes = match (&v.collateral, aux) {
        (Some(path), _) => {
            Some(std::fs::read(path).with_context(|| format!("{}", path.display()))?)
        }
        (None, Some(aux)) if tee == Tee::SevSnp => Some(aux),
        _ => None,
    };
    let collateral = match collateral_bytes {
        Some(bytes) => {
            if v.kds.is_some() && tee != Tee::SevSnp {
                bail!(
                    "--kds serves SEV-SNP certificates; {} evidence takes none from it",
                    tee.name()
                );
            }
            let mut c = Collateral::parse(tee, &bytes)?;
            // A VLEK's chain (ASVK, ARK) is AMD's per product: fetch it when the
            // collateral did not bring it.
            if let (Some(url), Collateral::Snp(snp)) = (&v.kds, &mut c) {
                if rats::snp::signed_with_vlek(&evidence)
                    && (snp.ark.is_none() || snp.ask.is_none())
                {
                    let (asvk, ark) =
                        fetcher.amd_vlek_chain(url, &evidence, v.product.as_deref())?;
                    snp.ask = Some(asvk);
                    snp.ark = Some(ark);
                }
            }
            Some(c)
        }
        None => match (&v.pccs, &v.kds, tee) {
            (Some(url), _, Tee::SgxEcdsa | Tee::TdxEcdsa) => Some(Collateral::Dcap(Box::new(
                fetcher.dcap_collateral(url, &evidence)?,
            ))),
            (_, Some(url), Tee::SevSnp) => Some(Collateral::Snp(fetcher.amd_vcek(
                url,
                &evidence,
                v.product.as_deref(),
            )?)),
            (Some(_), _, _) => bail!(
                "--pccs serves DCAP collateral; {} evidence takes none from it",
                tee.name()
            ),
            (_, Some(_), _) => bail!(
                "--kds serves SEV-SNP VCEKs; {} evidence takes none from it",
                tee.name()
            ),
            (None, None, _) => None,
        },
    };
    let input = Input {
        report_data: v
            .report_data
            .as_deref()
            .map(parse_report_data)
            .transpose()?,
        collateral,
        now: time_or_now(v.at.as_deref())?,
    };
    let policy = policy_or_default(v.policy.as_deref())?;
    let verified = rats::verify(&evidence, Some(tee), &input)?;
    let verdict = policy.appraise(&verified);
    let mut out = std::io::stdout().lock();
    if v.json {
        let doc = serde_json::json!({
            "accepted": verdict.accepted,
            "reasons": verdict.reasons,
            "verified": verified,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            out,
            "verdict: {}",
            if verdict.accepted {
                "ACCEPTED"
            } else {
                "REFUSED"
            }
        )?;
        for r in &verdict.reasons {
            writeln!(out, "  - {r}")?;
        }
        let width = verified.claims.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in &verified.claims {
            let shown = match value {
                rats::ClaimValue::List(l) if l.is_empty() => "-".to_string(),
                other => other.canonical().join(", "),
            };
            writeln!(out, "{name:width$}  {shown}")?;
        }
    }
    Ok(if verdict.accepted { 0 } else { REFUSED })
}

/// The evidence inside configfs-tsm's JSON envelope (`{provider, outblob, auxblob}`)
/// and its auxblob; other evidence as it is.
fn open_evidence(bytes: Vec<u8>) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    Ok(match rats::tsm::TsmReport::from_json(&bytes)? {
        Some(report) => {
            let e = report.evidence()?;
            (e.bytes, e.collateral)
        }
        None => (bytes, None),
    })
}

/// Raw bytes, or hex text (as some tools store quotes and reports).
fn read_evidence(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("evidence {}", path.display()))?;
    let text = bytes.trim_ascii();
    if !text.is_empty() && text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit) {
        return Ok(hex::decode(text)?);
    }
    Ok(bytes)
}

fn parse_report_data(s: &str) -> Result<[u8; 64]> {
    let bytes = hex::decode(s).context("--report-data: not hex")?;
    if bytes.len() > 64 {
        bail!("--report-data: {} bytes, at most 64", bytes.len());
    }
    let mut data = [0u8; 64];
    data[..bytes.len()].copy_from_slice(&bytes);
    Ok(data)
}

/// `--at` as Unix seconds, or the current time.
pub(crate) fn time_or_now(at: Option<&str>) -> Result<u64> {
    match at {
        Some(at) => parse_time(at),
        None => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()),
    }
}

/// `--policy`'s file, or the default policy (hardware TEEs, TCB up to date).
pub(crate) fn policy_or_default(path: Option<&std::path::Path>) -> Result<Policy> {
    Ok(match path {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    })
}

pub(crate) fn parse_time(s: &str) -> Result<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("--at {s:?}: neither Unix seconds nor RFC 3339"))?;
    u64::try_from(t.timestamp()).context("--at: before 1970")
}
