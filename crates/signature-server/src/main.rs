//! `signature-server`: holds enclave signing keys and signs for the nodes' carriers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use signature_server::Keys;

#[derive(Parser)]
#[command(
    name = "signature-server",
    version,
    about = "Sign enclaves for containerd-shim-rune-v2 carriers, keeping the keys off the nodes"
)]
struct Cli {
    /// Address to serve on. Anyone who reaches it can have bytes signed: keep it on
    /// loopback or a network only the nodes reach.
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// Ed25519 key for `sim` enclave manifests (`sim-sign keygen --out PATH`)
    #[arg(long)]
    sim_key: Option<PathBuf>,
    /// RSA-3072 key with exponent 3 for SGX enclaves, PEM (`openssl genrsa -3 3072`)
    #[arg(long)]
    rsa_key: Option<PathBuf>,
    #[command(flatten)]
    log: daemon_log::LogArgs,
}

fn main() {
    cli_exit::init();
    if let Err(e) = run() {
        cli_exit::exit_on_error("signature-server", &e);
    }
}

fn run() -> Result<()> {
    let cli = cli_exit::parse::<Cli>();
    cli.log.init();
    if cli.sim_key.is_none() && cli.rsa_key.is_none() {
        bail!("no key to sign with: give --sim-key, --rsa-key or both");
    }
    let keys = Keys::load(cli.sim_key.as_deref(), cli.rsa_key.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("listen on {}", cli.listen))?;
        let addr = listener.local_addr()?;
        // One line on stdout, so a script (or a test given port 0) learns the address.
        println!("listening on http://{addr}");
        if let Some(public) = keys.ed25519_public() {
            tracing::info!("sim mr_signer {}", hex_string(&sim_tee::sha384(&public)));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = signature_server::server::serve(listener, Arc::new(keys)) => r.context("serve")?,
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        Ok(())
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
