//! `shelter remoteattestation` and `shelter mrverify`.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rats::Policy;
use rats_tls::eaa::{self, Reply, Request};
use rats_tls::net::{Address, Stream};
use rats_tls::tls::{Expect, Identity};
use rats_tls::{Appraisal, CertOptions, PeerInfo};

use crate::cli::{MrVerify, Remote};
use crate::verify::REFUSED;

/// Enclave evidence can take a while on hardware (quote generation).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the enclave behind inclavared for its info and checks its certificate against
/// our nonce and `policy`. The verdict is in the returned [`PeerInfo`].
fn fetch(r: &Remote, policy: Policy) -> Result<(Reply, PeerInfo)> {
    let addr: Address = r.addr.parse().map_err(anyhow::Error::msg)?;
    let stream = Stream::connect(&addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_timeout(Some(IO_TIMEOUT))?;
    let relay_policy = match &r.relay_policy {
        Some(p) => Policy::load(p)?,
        None => Policy {
            allow_software_tees: true,
            allow_debug: true,
            ..Policy::default()
        },
    };
    let identity = r.mutual.then(|| {
        Arc::new(Identity::new(
            Arc::from(rats::auto_attester()),
            CertOptions::default(),
        ))
    });
    let (tls, _relay) =
        rats_tls::connect(stream, identity, &Expect::new(Appraisal::new(relay_policy)))
            .with_context(|| format!("attested TLS to inclavared at {addr}"))?;
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce)?;
    let mut reader = BufReader::new(tls);
    let mut req = serde_json::to_vec(&Request {
        kind: eaa::GET_ENCLAVE_INFO.into(),
        nonce: Some(hex::encode(nonce)),
    })?;
    req.push(b'\n');
    reader.get_mut().write_all(&req)?;
    reader.get_mut().flush()?;
    let mut line = String::new();
    reader
        .by_ref()
        .take(eaa::MAX_MESSAGE)
        .read_line(&mut line)
        .context("read inclavared's reply")?;
    let reply: Reply = serde_json::from_str(line.trim()).context("inclavared's reply")?;
    if reply.msgtype == eaa::ERROR {
        bail!("inclavared: {}", reply.message);
    }
    if reply.msgtype != eaa::ENCLAVE_INFO {
        bail!("inclavared: unexpected reply {:?}", reply.msgtype);
    }
    let der = reply.certificate_der().map_err(anyhow::Error::msg)?;
    let info = rats_tls::inspect(&der, &Appraisal::new(policy), Some(&nonce))
        .context("the enclave's certificate")?;
    // The relay's summary must say what the certificate proves.
    let (mrenclave, mrsigner) = eaa::measurements(&info.verified);
    if (mrenclave.as_str(), mrsigner.as_str())
        != (reply.mrenclave.as_str(), reply.mrsigner.as_str())
    {
        bail!(
            "inclavared reports mrenclave {} but the enclave's certificate proves {mrenclave}",
            reply.mrenclave
        );
    }
    Ok((reply, info))
}

pub fn run(r: &Remote) -> Result<i32> {
    let policy = match &r.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    let (reply, info) = fetch(r, policy)?;
    let v = &info.verdict;
    let mut out = std::io::stdout().lock();
    if r.json {
        let doc = serde_json::json!({
            "accepted": v.accepted,
            "reasons": v.reasons,
            "tee": reply.tee,
            "mrenclave": reply.mrenclave,
            "mrsigner": reply.mrsigner,
            "message": reply.message,
            "verified": info.verified,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            out,
            "verdict: {}",
            if v.accepted { "ACCEPTED" } else { "REFUSED" }
        )?;
        for reason in &v.reasons {
            writeln!(out, "  - {reason}")?;
        }
        writeln!(out, "tee        {}", reply.tee)?;
        writeln!(out, "mrenclave  {}", reply.mrenclave)?;
        writeln!(out, "mrsigner   {}", reply.mrsigner)?;
        writeln!(out, "message    {}", reply.message)?;
    }
    Ok(if v.accepted { 0 } else { REFUSED })
}

pub fn mrverify(m: &MrVerify) -> Result<i32> {
    let file = std::fs::File::open(&m.executable)
        .with_context(|| format!("{}", m.executable.display()))?;
    let digest = sim_tee::program_digest(file)?;
    let spec = sim_tee::EnclaveSpec {
        entrypoint: m
            .entrypoint
            .clone()
            .unwrap_or_else(|| m.executable.display().to_string()),
        args: m.args.clone(),
    };
    let expected = hex::encode(sim_tee::measure_program(&digest, &spec));
    let reported = match (&m.mrenclave, &m.addr) {
        (Some(hexed), _) => hexed.trim().to_lowercase(),
        (None, Some(addr)) => {
            let remote = Remote {
                addr: addr.clone(),
                policy: None,
                relay_policy: m.relay_policy.clone(),
                mutual: m.mutual,
                json: false,
            };
            let (reply, info) = fetch(&remote, Policy::default())?;
            if info.verified.tee != rats::Tee::Sim {
                bail!("the enclave is {}, not a sim enclave", reply.tee);
            }
            reply.mrenclave
        }
        (None, None) => bail!("give --mrenclave or --addr"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "computed  {expected}")?;
    writeln!(out, "reported  {reported}")?;
    let same = expected == reported;
    writeln!(out, "{}", if same { "MATCH" } else { "MISMATCH" })?;
    Ok(if same { 0 } else { REFUSED })
}
