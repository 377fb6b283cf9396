//! `inclavared`: relays tenants' attestation requests to an enclave application.
//!
//! It accepts attested TLS from tenants (`shelter remoteattestation`), opens attested
//! TLS to the upstream enclave (`--xfer`) with the tenant's own nonce, and answers
//! `GETENCLAVEINFO` with the enclave's measurements, its message and its certificate.
//! The tenant re-checks that certificate, so inclavared itself needs no trust.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use rats_tls::eaa::{self, Reply, Request};
use rats_tls::net::{Address, Listener, Stream};
use rats_tls::tls::{Expect, Identity};
use rats_tls::{Appraisal, CertOptions, KeyAlgorithm};

/// How long one exchange may stall before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "inclavared",
    version,
    about = "Relay attested TLS between tenants and enclaves"
)]
struct Cli {
    /// Where tenants connect: tcp://HOST:PORT or unix:///PATH
    #[arg(short, long)]
    listen: Address,
    /// The upstream enclave application: tcp://HOST:PORT or unix:///PATH
    #[arg(short = 'x', long)]
    xfer: Address,
    /// Require tenants to attest too
    #[arg(short, long)]
    mutual: bool,
    /// Our own evidence: auto (sim inside a sim enclave, configfs-tsm in a TDX/SNP
    /// guest, sample elsewhere), sim or sample
    #[arg(long, value_enum, default_value_t = AttesterKind::Auto)]
    attester: AttesterKind,
    /// Appraisal policy (TOML or JSON) for the upstream enclave. Default: hardware TEEs
    /// with an up-to-date TCB only.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Appraisal policy for tenants with --mutual. Default: as --policy's default.
    #[arg(long, requires = "mutual")]
    tenant_policy: Option<PathBuf>,
    /// The key of our own certificates
    #[arg(long, value_enum, default_value_t = KeyKind::P256)]
    key: KeyKind,
    /// Carry our DCAP collateral in the certificates' endorsements extension
    /// (2.23.133.5.4.2), for verifiers without access to Intel's PCS
    #[arg(long)]
    endorsements: bool,
    #[command(flatten)]
    log: daemon_log::LogArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AttesterKind {
    Auto,
    Sim,
    Sample,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyKind {
    P256,
    P384,
    Rsa3072,
}

struct Relay {
    identity: Arc<Identity>,
    appraisal: Appraisal,
    tenant_appraisal: Appraisal,
    mutual: bool,
    xfer: Address,
    next_id: AtomicU64,
}

fn main() {
    cli_exit::init();
    if let Err(e) = run() {
        cli_exit::exit_on_error("inclavared", &e);
    }
}

fn run() -> Result<()> {
    let cli = cli_exit::parse::<Cli>();
    cli.log.init();
    let policy = match &cli.policy {
        Some(p) => rats::Policy::load(p)?,
        None => rats::Policy::default(),
    };
    let attester: Arc<dyn rats::Attester + Send + Sync> = match cli.attester {
        AttesterKind::Sample => Arc::new(rats::SampleAttester),
        AttesterKind::Sim => Arc::new(
            rats::SimAttester::inherited()
                .context("--attester sim: not inside a sim enclave (no INCLAVARE_SIM_FD)")?,
        ),
        AttesterKind::Auto => Arc::from(rats::auto_attester()),
    };
    let relay = Arc::new(Relay {
        identity: Arc::new(Identity::new(
            attester,
            CertOptions {
                key: match cli.key {
                    KeyKind::P256 => KeyAlgorithm::P256,
                    KeyKind::P384 => KeyAlgorithm::P384,
                    KeyKind::Rsa3072 => KeyAlgorithm::Rsa3072,
                },
                endorsements: cli.endorsements,
                ..CertOptions::default()
            },
        )),
        appraisal: Appraisal::new(policy),
        tenant_appraisal: Appraisal::new(match &cli.tenant_policy {
            Some(p) => rats::Policy::load(p)?,
            None => rats::Policy::default(),
        }),
        mutual: cli.mutual,
        xfer: cli.xfer,
        next_id: AtomicU64::new(1),
    });
    let listener =
        Arc::new(Listener::bind(&cli.listen).with_context(|| format!("listen on {}", cli.listen))?);
    println!("listening on {}", listener.local_addr()?);
    {
        let listener = listener.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: stopping");
                listener.remove();
                std::process::exit(0);
            }
        });
    }
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let relay = relay.clone();
        std::thread::spawn(move || {
            if let Err(e) = relay.serve(stream) {
                tracing::warn!("tenant: {e:#}");
            }
        });
    }
}

impl Relay {
    fn serve(&self, stream: Stream) -> Result<()> {
        stream.set_timeout(Some(IO_TIMEOUT))?;
        let expect = self
            .mutual
            .then(|| Expect::new(self.tenant_appraisal.clone()));
        let (tls, tenant) = rats_tls::accept(stream, self.identity.clone(), expect.as_ref())?;
        if let Some(t) = &tenant {
            tracing::info!("tenant attested as {}", t.verified.tee);
        }
        let mut reader = BufReader::new(tls);
        let mut line = String::new();
        reader
            .by_ref()
            .take(eaa::MAX_MESSAGE)
            .read_line(&mut line)
            .context("read the request")?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reply = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) if req.kind == eaa::GET_ENCLAVE_INFO => self
                .enclave_info(id, req.nonce.as_deref())
                .unwrap_or_else(|e| Reply::error(id, format!("{e:#}"))),
            Ok(req) => Reply::error(id, format!("unknown request type {:?}", req.kind)),
            Err(e) => Reply::error(id, format!("not a request: {e}")),
        };
        if reply.msgtype == eaa::ERROR {
            tracing::warn!("request {id}: {}", reply.message);
        } else {
            tracing::info!("request {id}: {} enclave {}", reply.tee, reply.mrenclave);
        }
        let mut tls = reader.into_inner();
        let mut out = serde_json::to_vec(&reply)?;
        out.push(b'\n');
        tls.write_all(&out)?;
        tls.conn.send_close_notify();
        tls.flush()?;
        Ok(())
    }

    fn enclave_info(&self, id: u64, nonce: Option<&str>) -> Result<Reply> {
        let nonce = nonce
            .map(hex::decode)
            .transpose()
            .context("the nonce is not hex")?;
        let stream = Stream::connect(&self.xfer)
            .with_context(|| format!("upstream {}: unreachable", self.xfer))?;
        stream.set_timeout(Some(IO_TIMEOUT))?;
        let expect = Expect {
            appraisal: self.appraisal.clone(),
            fresh: true,
            nonce,
        };
        let (mut tls, peer) = rats_tls::connect(stream, Some(self.identity.clone()), &expect)
            .with_context(|| format!("upstream {}", self.xfer))?;
        tls.write_all(b"{\"type\":\"GETENCLAVEINFO\"}\n")?;
        tls.flush()?;
        let mut message = Vec::new();
        match Read::by_ref(&mut tls)
            .take(eaa::MAX_MESSAGE)
            .read_to_end(&mut message)
        {
            Ok(_) => {}
            // An upstream that closes without close_notify has still said its piece.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e).context("read the upstream's answer"),
        }
        Ok(Reply::enclave_info(
            id,
            &peer,
            String::from_utf8_lossy(&message).into_owned(),
        ))
    }
}
