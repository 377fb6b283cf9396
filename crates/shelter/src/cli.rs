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
    /// Read an RA-TLS certificate file (PEM or DER) from any stack: its evidence type,
    /// claims and key hash, whether the evidence binds the certificate's key, and the
    /// evidence verified (with --collateral, or the certificate's endorsements, or
    /// offline as far as possible); exits 0 only when bound, verified and accepted
    #[command(name = "verify-cert")]
    VerifyCert(VerifyCert),
    /// Ask an enclave, through inclavared, what it is; check its attested certificate
    /// against a fresh nonce and the policy; exits 0 only when the policy accepts
    #[command(name = "remoteattestation")]
    RemoteAttestation(Remote),
    /// Recompute the sim measurement of an executable and compare it with what the
    /// enclave reports (or with --mrenclave); exits 0 only when they are equal
    #[command(name = "mrverify")]
    MrVerify(MrVerify),
    /// Reference values: compute from an OCI image the measurement its sim enclave will
    /// report, and publish it signed, in the forms Trustee's RVPS and verdictd take
    Rv {
        #[command(subcommand)]
        command: crate::rv::RvCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// inclavared's address: tcp://HOST:PORT or unix:///PATH
    #[arg(long, default_value = "unix:///run/enclave-tls/tls.sock")]
    pub addr: String,
    /// Appraisal policy for the enclave (TOML, or JSON by extension); default: UpToDate
    /// hardware only
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Policy for inclavared's own certificate. Default: any verifiable evidence,
    /// software included, because nothing rests on the relay: the enclave's own
    /// certificate, bound to our nonce, is checked end to end.
    #[arg(long)]
    pub relay_policy: Option<PathBuf>,
    /// Attest ourselves to inclavared too
    #[arg(long)]
    pub mutual: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MrVerify {
    /// The program the enclave should be
    #[arg(long)]
    pub executable: PathBuf,
    /// Its path inside the container (default: --executable)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// A fixed argument the enclave was signed with (repeatable)
    #[arg(long = "arg")]
    pub args: Vec<String>,
    /// Compare with this mr_enclave (hex)
    #[arg(long, required_unless_present = "addr", conflicts_with = "addr")]
    pub mrenclave: Option<String>,
    /// Or ask the enclave through inclavared at this address (its evidence is checked,
    /// its measurement compared; the policy is not applied)
    #[arg(long)]
    pub addr: Option<String>,
    /// Policy for inclavared's own certificate (see remoteattestation)
    #[arg(long)]
    pub relay_policy: Option<PathBuf>,
    /// Attest ourselves to inclavared too
    #[arg(long)]
    pub mutual: bool,
}

#[derive(Args, Debug)]
pub struct Verify {
    /// The evidence: a DCAP quote, an SEV-SNP report, a sim report, sample JSON (raw
    /// bytes or hex text), or configfs-tsm's JSON report {provider, outblob, auxblob}
    /// (its auxblob is the SNP collateral unless --collateral is given)
    #[arg(long)]
    pub evidence: PathBuf,
    /// Evidence type (sgx_ecdsa, tdx_ecdsa, sev_snp, sim, sample); default: from its header
    #[arg(long = "type")]
    pub tee: Option<String>,
    /// Collateral file (DCAP: QuoteCollateralV3 JSON)
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Fetch DCAP collateral from this PCS or PCCS (e.g. https://api.trustedservices.intel.com)
    /// when no --collateral is given
    #[arg(long, conflicts_with = "collateral")]
    pub pccs: Option<String>,
    /// Fetch the VCEK of an SEV-SNP report from AMD's KDS at this URL (e.g.
    /// https://kdsintf.amd.com) when no --collateral is given; for a VLEK-signed report,
    /// whose VLEK comes with --collateral, fetch its ASVK and ARK
    #[arg(long, conflicts_with = "pccs")]
    pub kds: Option<String>,
    /// The report's product (Milan, Genoa, Turin), for --kds with version 2 reports
    #[arg(long, requires = "kds")]
    pub product: Option<String>,
    /// Keep fetched collateral here (0600 files), and fall back to it when offline
    #[arg(long)]
    pub collateral_cache: Option<PathBuf>,
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

#[derive(Args, Debug)]
pub struct VerifyCert {
    /// The certificate: DER, or PEM (the first certificate)
    #[arg(long)]
    pub cert: PathBuf,
    /// Collateral for its evidence (DCAP: QuoteCollateralV3 JSON; SNP: the VCEK or a
    /// certificate table); default: the certificate's endorsements extension
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, as Unix seconds or RFC 3339; default: now
    #[arg(long)]
    pub at: Option<String>,
    /// Appraisal policy (TOML, or JSON by extension); default: UpToDate hardware only
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}
