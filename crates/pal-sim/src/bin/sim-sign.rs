//! `sim-sign`: keys, measurements and signed manifests for `liberpal-sim` enclaves
//! (executables) and `liberpal-wasm` enclaves (WebAssembly core modules).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sim_tee::{EnclaveSpec, Manifest, SignerKey};

#[derive(Parser)]
#[command(
    name = "sim-sign",
    about = "Sign programs as liberpal-sim enclaves and WebAssembly modules as liberpal-wasm enclaves"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate an Ed25519 signing key (written with mode 0600)
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the mr_enclave of a program
    Measure(Target),
    /// Write a signed manifest for a program
    Sign {
        #[command(flatten)]
        target: Target,
        /// Signing key from `keygen`
        #[arg(long)]
        key: PathBuf,
        /// Where to write the manifest
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        product_id: u16,
        #[arg(long, default_value_t = 0)]
        svn: u16,
        /// Mark the enclave as a debug enclave
        #[arg(long)]
        debug: bool,
    },
}

#[derive(clap::Args)]
struct Target {
    /// The program's file on this machine (an executable or a WebAssembly module)
    #[arg(long)]
    executable: PathBuf,
    /// Its path inside the container (default: the same as --executable)
    #[arg(long)]
    entrypoint: Option<String>,
    /// A fixed argument (repeatable); the enclave then refuses any others
    #[arg(long = "arg")]
    args: Vec<String>,
}

impl Target {
    fn load(&self) -> Result<(Vec<u8>, EnclaveSpec)> {
        let exe = std::fs::read(&self.executable)
            .with_context(|| format!("read {}", self.executable.display()))?;
        check_wasm(&exe, &self.executable)?;
        let entrypoint = self
            .entrypoint
            .clone()
            .unwrap_or_else(|| self.executable.display().to_string());
        Ok((
            exe,
            EnclaveSpec {
                entrypoint,
                args: self.args.clone(),
            },
        ))
    }
}

/// A WebAssembly program is signed for `liberpal-wasm`, which runs WASI preview 1 core
/// modules only: a component or an unknown binary version is refused here rather than
/// by the enclave at create. Its measurement is the same function of its bytes and
/// spec as an executable's.
fn check_wasm(program: &[u8], path: &std::path::Path) -> Result<()> {
    use sim_tee::wasm::Kind;
    match sim_tee::wasm::kind(program) {
        Kind::Component => anyhow::bail!(
            "{}: a WebAssembly component: not supported (liberpal-wasm runs WASI preview 1 core modules)",
            path.display()
        ),
        Kind::UnknownVersion => anyhow::bail!(
            "{}: an unknown WebAssembly binary version",
            path.display()
        ),
        _ => Ok(()),
    }
}

fn main() {
    cli_exit::init();
    if let Err(e) = run() {
        cli_exit::exit_on_error("sim-sign", &e);
    }
}

fn run() -> Result<()> {
    match cli_exit::parse::<Cli>().command {
        Cmd::Keygen { out } => {
            let key = SignerKey::generate()?;
            key.save(&out)?;
            println!("mr_signer {}", hex::encode(sim_tee::sha384(&key.public())));
        }
        Cmd::Measure(t) => {
            let (exe, spec) = t.load()?;
            println!("{}", hex::encode(sim_tee::measure(&exe, &spec)));
        }
        Cmd::Sign {
            target,
            key,
            out,
            product_id,
            svn,
            debug,
        } => {
            let (exe, spec) = target.load()?;
            let key = SignerKey::load(&key)?;
            let m = Manifest::sign(&exe, spec, &key, product_id, svn, debug);
            std::fs::write(&out, serde_json::to_vec_pretty(&m)?)
                .with_context(|| format!("write {}", out.display()))?;
            println!("mr_enclave {}", m.mr_enclave);
            println!("mr_signer {}", hex::encode(m.mr_signer()?));
        }
    }
    Ok(())
}
