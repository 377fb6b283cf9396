//! `attestation-agent`: fetch a secret from a key broker after attesting, from inside
//! the enclave. The work is in the library.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use attestation_agent::{Agent, Options, TeeChoice};
use clap::{Parser, Subcommand, ValueEnum};
use sha2::Digest;

#[derive(Parser)]
#[command(
    name = "attestation-agent",
    version,
    about = "Attest to a key broker (KBS protocol 0.4.0) and fetch secrets only this enclave can read"
)]
struct Cli {
    /// The broker, http://HOST:PORT or https://HOST:PORT
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// CA certificate (PEM) of an https:// broker
    #[arg(long, global = true)]
    cert_file: Option<PathBuf>,
    /// Evidence to produce
    #[arg(long, global = true, value_enum, default_value_t = Tee::Auto)]
    tee: Tee,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Tee {
    Auto,
    Sim,
    Tdx,
    Snp,
    Sample,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a resource. By default only its SHA-256 and size are printed: the
    /// container's output reaches the host, which must not see the secret
    GetResource {
        /// kbs:///repo/type/tag (also kbs://HOST:PORT/repo/type/tag, whose host is
        /// ignored as the guest components ignore it: --url names the broker;
        /// kbs+PLUGIN:// and a ?query are passed on)
        uri: String,
        /// Write the secret to this file (mode 0600)
        #[arg(long, conflicts_with = "stdout")]
        out: Option<PathBuf>,
        /// Write the secret to standard output
        #[arg(long)]
        stdout: bool,
    },
    /// Attest and print the attestation token
    Token,
    /// Record an event in the enclave's runtime measurements (sim: the enclave runtime
    /// logs it and extends RTMR3); every later attestation carries it
    Extend {
        /// The event's domain, a URI without spaces (CoCo's: github.com/confidential-containers)
        #[arg(long)]
        domain: String,
        /// The operation, without spaces (e.g. PullImage)
        #[arg(long)]
        operation: String,
        /// The content: printable, one line
        #[arg(long)]
        content: String,
    },
    /// Print the enclave's event log, one `<CC MR> <domain> <operation> <content>` line
    /// per record
    EventLog,
}

fn main() {
    cli_exit::init();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    if let Err(e) = run() {
        cli_exit::exit_on_error("attestation-agent", &e);
    }
}

fn run() -> Result<()> {
    let cli = cli_exit::parse::<Cli>();
    let ca_pem = match &cli.cert_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("{}", p.display()))?),
        None => None,
    };
    let tee = match cli.tee {
        Tee::Auto => TeeChoice::Auto,
        Tee::Sim => TeeChoice::Sim,
        Tee::Tdx => TeeChoice::Tdx,
        Tee::Snp => TeeChoice::Snp,
        Tee::Sample => TeeChoice::Sample,
    };
    let mut agent = Agent::new(&cli.url, Options { tee, ca_pem })?;
    match &cli.command {
        Command::Extend {
            domain,
            operation,
            content,
        } => {
            let event = attestation_agent::eventlog::Event::new(domain, operation, content)?;
            if agent.tee() != "sim" {
                anyhow::bail!(
                    "extend: the {} TEE keeps no runtime measurements between processes (run in a sim enclave)",
                    agent.tee()
                );
            }
            agent.extend_runtime_measurement(&event)?;
            return Ok(());
        }
        Command::EventLog => {
            for r in agent.event_log()?.records() {
                match r.event() {
                    Ok(e) => println!("{} {}", r.index, e.text()),
                    Err(why) => println!("{} ({why})", r.index),
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        match cli.command {
            Command::Token => {
                println!("{}", agent.attest().await?);
            }
            Command::Extend { .. } | Command::EventLog => unreachable!("handled above"),
            Command::GetResource { uri, out, stdout } => {
                let secret = agent.get_resource(&uri).await?;
                if let Some(path) = out {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("{}", path.display()))?;
                    f.write_all(&secret)
                        .with_context(|| format!("{}", path.display()))?;
                } else if stdout {
                    std::io::stdout().write_all(&secret)?;
                }
                if !stdout {
                    println!(
                        "{uri}: sha256:{} ({} bytes, attested as {})",
                        hex::encode(sha2::Sha256::digest(&secret)),
                        secret.len(),
                        agent.tee()
                    );
                }
            }
        }
        Ok(())
    })
}
