use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Check, from outside the cloud, what is really running.
#[derive(Parser, Debug)]
#[command(name = "shelter", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify attestation evidence offline and appraise it with a policy; exits 0 only
    /// when the policy accepts it
    Verify(Verify),
}

#[derive(Args, Debug)]
pub struct Verify {
    /// The evidence: a DCAP quote, a sim report, sample JSON (raw bytes or hex text)
    #[arg(long)]
    pub evidence: PathBuf,
    /// Evidence type (sgx_ecdsa, tdx_ecdsa, sev_snp, sim, sample); default: from its header
    #[arg(long = "type")]
    pub tee: Option<String>,
    /// Collateral file (DCAP: QuoteCollateralV3 JSON)
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, as Unix seconds or RFC 3339; default: now
    #[arg(long)]
    pub at: Option<String>,
    /// Appraisal policy (TOML, or JSON by extension); default: UpToDate hardware only
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The 64 bytes of report data the evidence must carry, in hex (zero-padded)
    #[arg(long)]
    pub report_data: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}
