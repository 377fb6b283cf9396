//! `shelter rv`: reproducible reference values for sim enclaves. `measure` prints the
//! mr_enclave (and mr_signer) an image's enclave will report; `bundle` writes them in
//! Trustee RVPS's `sample` and `corim` forms and as a signed DSSE bundle (in-toto
//! Statement v1 about the image) for verdictd; `keygen` makes a P-256 signing key.

mod measure;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, Subcommand};
use enclave_image::registry::{ImageSource, Platform, RegistryConfig};
use reference_values::corim::{Corim, Measurement, SHA384};
use reference_values::{Predicate, SigningKey, Statement, Tool};
use serde_json::{json, Value};

pub use measure::{measure, EnclaveConfig, Measured, Pal};

/// `shelter rv …`.
#[derive(Subcommand, Debug)]
pub enum RvCommand {
    /// Print the mr_enclave (and, with a signed manifest, mr_signer) the image's enclave
    /// will report under liberpal-sim (or liberpal-wasm), computed without running it
    Measure {
        #[command(flatten)]
        target: Target,
        /// Print everything measured as JSON
        #[arg(long)]
        json: bool,
    },
    /// Write the reference values in Trustee RVPS's sample and CoRIM forms and as a
    /// signed DSSE bundle (in-toto Statement v1 whose subject is the image) into --out
    Bundle {
        #[command(flatten)]
        target: Target,
        /// Signing key: PEM, ECDSA P-256 or Ed25519 (PKCS#8), or SEC1 P-256
        #[arg(long)]
        key: PathBuf,
        /// Directory to write the files into (created)
        #[arg(long)]
        out: PathBuf,
        /// Days the bundle stays valid; verdictd refuses it and forgets its values after
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
    },
    /// Generate an ECDSA P-256 signing key (PKCS#8 PEM, mode 0600) and its public key
    Keygen {
        /// The private key file
        #[arg(long)]
        out: PathBuf,
        /// The public key file (PEM SPKI), for verdictd's [rvps] trusted_keys
        #[arg(long)]
        public_out: PathBuf,
    },
}

/// The image and the enclave configuration.
#[derive(Args, Debug)]
pub struct Target {
    /// The image: REGISTRY/REPO[:TAG][@DIGEST] (or docker://…), oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG]
    #[arg(long)]
    pub image: String,
    /// The enclave's program as process.args[0] names it (default: the image's
    /// Entrypoint, else its Cmd); with a signed manifest it must be the manifest's
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// ENCLAVE_RUNTIME_ARGS as given to rune (debug, manifest=PATH)
    #[arg(long, default_value = "")]
    pub runtime_args: String,
    /// The PAL: sim (liberpal-sim, a Linux program) or wasm (liberpal-wasm, a WASI
    /// preview 1 module)
    #[arg(long, default_value = "sim", value_parser = ["sim", "wasm"])]
    pub pal: String,
    /// Platform to pick from an index (os/arch[/variant]); default: this machine's
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry reached over plain HTTP (host[:port]; repeatable)
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Extra trusted CA certificates (PEM) for registries
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

impl Target {
    async fn measure(&self) -> Result<Measured> {
        let source: ImageSource = self.image.parse()?;
        let mut registry = RegistryConfig {
            insecure_http: self.insecure.clone(),
            extra_ca_pem: self.ca.clone(),
            plain_http_hint:
                "to use {registry} over plain HTTP, pass --insecure-registry {registry}".into(),
            ..RegistryConfig::default()
        };
        if let Some(p) = &self.platform {
            registry.platform = Platform::parse(p)?;
        }
        let enclave = EnclaveConfig {
            pal: if self.pal == "wasm" {
                Pal::Wasm
            } else {
                Pal::Sim
            },
            entrypoint: self.entrypoint.clone(),
            runtime_args: self.runtime_args.clone(),
        };
        measure(&source, registry, &enclave).await
    }
}

/// The reference values in Trustee's `sample` form, named as the claims they are
/// compared with (`sim_mr_enclave`, `sim_mr_signer`: rats' claim names, also what
/// verdictd's policies query), each a one-element list of lowercase hex.
pub fn sample_values(m: &Measured) -> BTreeMap<String, Value> {
    let mut v = BTreeMap::from([(
        "sim_mr_enclave".to_string(),
        json!([hex::encode(m.mr_enclave)]),
    )]);
    if let Some((signer, _, _)) = &m.signer {
        v.insert("sim_mr_signer".into(), json!([hex::encode(signer)]));
    }
    v
}

/// The same digests as a CoRIM: vendor `inclavare`, model `sim`, mkeys `mr_enclave`
/// (and `mr_signer`), SHA-384. Trustee stores them as `inclavare/sim/mr_enclave/digests`.
pub fn corim(m: &Measured) -> Corim {
    let mut measurements = vec![Measurement {
        mkey: "mr_enclave".into(),
        digests: vec![(SHA384, m.mr_enclave.to_vec())],
    }];
    if let Some((signer, _, _)) = &m.signer {
        measurements.push(Measurement {
            mkey: "mr_signer".into(),
            digests: vec![(SHA384, signer.to_vec())],
        });
    }
    Corim {
        id: format!("inclavare-sim-rv-{}", m.image.manifest_digest),
        comid_id: m.image.manifest_digest.clone(),
        vendor: "inclavare".into(),
        model: "sim".into(),
        measurements,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).with_context(|| format!("write {}", p.display()))?;
    Ok(p)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))
}

/// Runs `shelter rv …`; the exit code.
pub fn run(cmd: &RvCommand) -> Result<i32> {
    match cmd {
        RvCommand::Measure { target, json } => {
            let m = runtime()?.block_on(target.measure())?;
            if *json {
                let out = json!({
                    "image": m.image,
                    "enclave": m.enclave,
                    "mr_enclave": hex::encode(m.mr_enclave),
                    "mr_signer": m.signer.map(|s| hex::encode(s.0)),
                    "product_id": m.signer.map(|s| s.1),
                    "svn": m.signer.map(|s| s.2),
                    "reference_values": sample_values(&m),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("mr_enclave {}", hex::encode(m.mr_enclave));
                if let Some((signer, _, _)) = m.signer {
                    println!("mr_signer {}", hex::encode(signer));
                }
            }
        }
        RvCommand::Bundle {
            target,
            key,
            out,
            valid_days,
        } => {
            let pem =
                std::fs::read_to_string(key).with_context(|| format!("read {}", key.display()))?;
            let key = SigningKey::from_pem(&pem).with_context(|| key.display().to_string())?;
            let m = runtime()?.block_on(target.measure())?;
            std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
            let values = sample_values(&m);
            let sample = serde_json::to_vec_pretty(&values)?;
            let corim = corim(&m).to_cbor();
            let issued = chrono::Utc::now();
            let expires = issued + chrono::Duration::days(i64::from(*valid_days));
            let predicate = Predicate {
                image: m.image.clone(),
                enclave: m.enclave.clone(),
                reference_values: values,
                corim: STANDARD.encode(&corim),
                issued: reference_values::timestamp(issued),
                expires: reference_values::timestamp(expires),
                tool: Tool {
                    name: "shelter".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
            };
            let statement = Statement::new(&target.image, predicate)?;
            let envelope = serde_json::to_vec_pretty(&reference_values::seal(&statement, &key))?;
            let files = [
                write(out, "reference-values.json", &sample)?,
                write(
                    out,
                    "sample-message.json",
                    reference_values::message("sample", &sample)
                        .to_string()
                        .as_bytes(),
                )?,
                write(out, "corim.cbor", &corim)?,
                write(
                    out,
                    "corim-message.json",
                    reference_values::message("corim", &corim)
                        .to_string()
                        .as_bytes(),
                )?,
                write(
                    out,
                    "statement.json",
                    &serde_json::to_vec_pretty(&statement)?,
                )?,
                write(out, "bundle.dsse.json", &envelope)?,
                write(
                    out,
                    "bundle-message.json",
                    reference_values::message(reference_values::MESSAGE_TYPE, &envelope)
                        .to_string()
                        .as_bytes(),
                )?,
            ];
            println!("mr_enclave {}", hex::encode(m.mr_enclave));
            if let Some((signer, _, _)) = m.signer {
                println!("mr_signer {}", hex::encode(signer));
            }
            println!("expires {}", reference_values::timestamp(expires));
            for f in files {
                println!("wrote {}", f.display());
            }
        }
        RvCommand::Keygen { out, public_out } => {
            let key = SigningKey::generate_p256()?;
            write_private(out, key.to_pem()?.as_bytes())?;
            std::fs::write(public_out, key.public().to_pem())
                .with_context(|| format!("write {}", public_out.display()))?;
            println!("keyid {}", key.public().keyid());
        }
    }
    Ok(0)
}
