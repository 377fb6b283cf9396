//! `enclave-image`: encrypt, sign and copy images for enclaves that pull them
//! themselves, and serve ocicrypt's key-provider protocol. The work is in the library
//! (`enclave_image_tool`, over `enclave-image`); this file is the command line.

use std::io::{IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use enclave_image::ocicrypt::Kek;
use enclave_image::registry::{Credentials, ImageSource, Platform, Puller, RegistryConfig};
use enclave_image_tool::{copy, cosign, encrypt, files, kbs, keyprovider, simple};

#[derive(Parser)]
#[command(
    name = "enclave-image",
    version,
    about = "Encrypt and sign container images for enclaves that pull, verify and decrypt them inside the TEE"
)]
struct Cli {
    /// Progress on stderr (per layer: digest, size)
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// How registries are reached (images are `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`
/// for sources only, or `[docker://]REGISTRY/REPO[:TAG|@DIGEST]`).
#[derive(Args)]
struct RegistryArgs {
    /// Reach this registry (HOST[:PORT]) over plain HTTP; repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Also trust these CA certificates (PEM) for HTTPS registries
    #[arg(long, value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// Platform picked from an image index (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt every layer of SRC for a KBS-held key and write the image to DST
    Encrypt {
        /// The KEK's KBS resource, kbs:///REPO/TYPE/TAG: the packets' kid
        #[arg(long, value_name = "KID")]
        kek_id: String,
        /// The KEK: a file of 32 random bytes (see `keygen --kek`)
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "kbs",
            conflicts_with = "kbs"
        )]
        kek_file: Option<PathBuf>,
        /// Generate a fresh KEK and store it in this KBS (verdictd) as the resource KID
        /// (replacing what it held there) through its admin API
        #[arg(long, value_name = "URL", requires = "admin_key")]
        kbs: Option<String>,
        /// The KBS admin private key (Ed25519, P-256 or RSA, PEM)
        #[arg(long, value_name = "FILE")]
        admin_key: Option<PathBuf>,
        /// The admin token's role claim
        #[arg(long, default_value = "admin", value_name = "ROLE")]
        admin_role: String,
        /// CA certificate (PEM) of an https:// KBS
        #[arg(long, value_name = "FILE")]
        kbs_ca: Option<PathBuf>,
        /// Also keep the generated KEK in this new file (mode 0600)
        #[arg(long, value_name = "FILE", requires = "kbs")]
        save_kek: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// USER:PASS for the source registry
        #[arg(long, env = "ENCLAVE_IMAGE_SRC_CREDS", hide_env_values = true)]
        src_creds: Option<String>,
        /// USER:PASS for the destination registry
        #[arg(long, env = "ENCLAVE_IMAGE_DEST_CREDS", hide_env_values = true)]
        dest_creds: Option<String>,
        /// The plain image
        src: String,
        /// Where the encrypted image goes (a tag, not a digest)
        dst: String,
    },
    /// Sign an image: cosign key-based (stored in its repository) or simple signing
    /// with gpg (stored in a lookaside directory)
    Sign {
        /// Cosign: a P-256 private key, unencrypted PEM (see `keygen --cosign`)
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "sign_by",
            conflicts_with = "sign_by"
        )]
        cosign_key: Option<PathBuf>,
        /// Simple signing: the GnuPG home holding the key
        #[arg(long, value_name = "DIR", requires = "sign_by")]
        gpg_home: Option<PathBuf>,
        /// Simple signing: the key (fingerprint), as `skopeo --sign-by`
        #[arg(long, value_name = "KEY", requires_all = ["gpg_home", "lookaside"])]
        sign_by: Option<String>,
        /// Simple signing: the lookaside directory signatures are written to
        #[arg(long, value_name = "DIR", requires = "sign_by")]
        lookaside: Option<PathBuf>,
        /// Simple signing: a file holding the key's passphrase
        #[arg(long, value_name = "FILE", requires = "sign_by")]
        gpg_passphrase_file: Option<PathBuf>,
        /// The name the signature claims (docker-reference): by default the image's
        /// reference; required for an oci: image (REGISTRY/REPO[:TAG])
        #[arg(long, value_name = "REF")]
        identity: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// USER:PASS for the registry
        #[arg(long, env = "ENCLAVE_IMAGE_CREDS", hide_env_values = true)]
        creds: Option<String>,
        /// The image
        image: String,
    },
    /// Copy an image (and its cosign signatures) between layouts and registries
    Push {
        /// Leave the cosign signatures behind
        #[arg(long)]
        no_signatures: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        /// USER:PASS for the source registry
        #[arg(long, env = "ENCLAVE_IMAGE_SRC_CREDS", hide_env_values = true)]
        src_creds: Option<String>,
        /// USER:PASS for the destination registry
        #[arg(long, env = "ENCLAVE_IMAGE_DEST_CREDS", hide_env_values = true)]
        dest_creds: Option<String>,
        /// The image
        src: String,
        /// Where it goes
        dst: String,
    },
    /// Serve one request of ocicrypt's key-provider protocol (JSON on stdin, answer on
    /// stdout), for an ocicrypt.conf "cmd" provider
    Keyprovider {
        /// The provider's name in ocicrypt.conf (whose Parameters are read)
        #[arg(long, default_value = keyprovider::DEFAULT_PROVIDER)]
        provider: String,
        /// A KEK this provider may use: KID=FILE; repeatable
        #[arg(long = "kek", value_name = "KID=FILE")]
        keks: Vec<String>,
    },
    /// Make a key file: a KEK (32 random bytes) or a cosign key pair (FILE, FILE.pub)
    Keygen {
        /// Write a new KEK here (mode 0600)
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "cosign",
            conflicts_with = "cosign"
        )]
        kek: Option<PathBuf>,
        /// Write a new P-256 private key here (PKCS#8 PEM, mode 0600) and its public key
        /// to FILE.pub
        #[arg(long, value_name = "FILE")]
        cosign: Option<PathBuf>,
    },
}

fn main() {
    cli_exit::init();
    let cli = cli_exit::parse::<Cli>();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // Retries and progress only with -v: a failure is the one error line.
        .with_max_level(if cli.verbose {
            tracing::Level::INFO
        } else {
            tracing::Level::ERROR
        })
        .init();
    if let Err(e) = run(cli.command) {
        if cli_exit::is_closed_output(&e) {
            cli_exit::die_of_sigpipe();
        }
        cli_exit::exit_with_line(&format!("enclave-image: {}", one_line(&e)), 1);
    }
}

/// The error and its causes on one line, `a: b: c`, without a cause its parent's
/// message already quotes (library errors often do).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `1 layer`, `2 layers`, `0 layers`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn creds(value: Option<&str>) -> Result<Credentials> {
    Ok(match value {
        None => Credentials::Anonymous,
        Some(v) => match v.split_once(':') {
            Some((user, password)) if !user.is_empty() => Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            },
            _ => bail!("credentials must be USER:PASS"),
        },
    })
}

fn puller(r: &RegistryArgs, credentials: Credentials) -> Result<Puller> {
    let mut config = RegistryConfig {
        insecure_http: r.insecure.clone(),
        extra_ca_pem: r.registry_ca.clone(),
        credentials,
        plain_http_hint: "to use {registry} over plain HTTP, pass --insecure-registry {registry}"
            .into(),
        ..RegistryConfig::default()
    };
    if let Some(p) = &r.platform {
        config.platform = Platform::parse(p)?;
    }
    Ok(Puller::new(config)?)
}

fn image(s: &str) -> Result<ImageSource> {
    s.parse::<ImageSource>()
        .with_context(|| format!("image {s:?}"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| path.display().to_string())
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Encrypt {
            kek_id,
            kek_file,
            kbs,
            admin_key,
            admin_role,
            kbs_ca,
            save_kek,
            registry,
            src_creds,
            dest_creds,
            src,
            dst,
        } => {
            let (src, dst) = (image(&src)?, image(&dst)?);
            kbs::resource_path(&kek_id)?;
            let from = puller(&registry, creds(src_creds.as_deref())?)?;
            let to = puller(&registry, creds(dest_creds.as_deref())?)?;
            let admin = match (&kbs, &admin_key) {
                (Some(url), Some(key)) => Some((
                    url.clone(),
                    read(key)?,
                    kbs_ca.as_deref().map(read).transpose()?,
                )),
                _ => None,
            };
            if let Some((_, key, _)) = &admin {
                // A bad admin key is found before any work.
                kbs::admin_token(key, &admin_role)?;
            }
            if let Some(p) = &save_kek {
                files::check_new(p)?;
            }
            let kek_bytes = match &kek_file {
                Some(p) => files::read_kek(p)?,
                None => files::random_kek()?,
            };
            let kek = Kek::new(&kek_bytes)?;
            let rt = runtime()?;
            let prepared = rt
                .block_on(encrypt::prepare(&from, &src, &kek_id, &kek))
                .with_context(|| format!("encrypt {src}"))?;
            if let Some(p) = &save_kek {
                files::write_new(p, &kek_bytes, 0o600)?;
            }
            let published = (|| -> Result<String> {
                if let Some((url, key, ca)) = &admin {
                    let a = kbs::Admin {
                        url,
                        ca_pem: ca.as_deref(),
                        key_pem: key,
                        role: &admin_role,
                    };
                    rt.block_on(a.put_resource(&kek_id, &kek_bytes))
                        .with_context(|| format!("store the KEK as {kek_id}"))?;
                }
                rt.block_on(prepared.publish(&to, &dst))
                    .with_context(|| format!("write {dst}"))
            })();
            let digest = match published {
                Ok(d) => d,
                Err(e) => {
                    if let Some(p) = &save_kek {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(e);
                }
            };
            println!(
                "{dst}@{digest}: {} encrypted for {kek_id}",
                count(prepared.layer_digests.len(), "layer")
            );
        }
        Command::Sign {
            cosign_key,
            gpg_home,
            sign_by,
            lookaside,
            gpg_passphrase_file,
            identity,
            registry,
            creds: c,
            image: img,
        } => {
            let img = image(&img)?;
            let p = puller(&registry, creds(c.as_deref())?)?;
            let rt = runtime()?;
            let key = cosign_key
                .as_deref()
                .map(|k| {
                    cosign::CosignKey::from_pem(&read(k)?).with_context(|| k.display().to_string())
                })
                .transpose()?;
            let opened = rt
                .block_on(p.open(&img))
                .with_context(|| format!("{img}"))?;
            let digest = opened.manifest_digest.clone();
            let identity = match (identity, opened.reference()) {
                (Some(i), _) => i,
                (None, Some(r)) => r.to_string(),
                (None, None) => bail!("{img}: an oci: image needs --identity REGISTRY/REPO[:TAG], the name it will be pulled by"),
            };
            if let Some(key) = key {
                // cosign's docker-reference is the repository; like `cosign sign`, sign
                // the digest the reference resolves to (an index's, for a multi-arch
                // image; the enclave accepts either, as image-rs does).
                let repo = enclave_image::registry::ImageRef::parse(&identity)?.name();
                let digest = opened.index_digest.clone().unwrap_or(digest);
                let sig = cosign::signature(&key, cosign::payload(&repo, &digest));
                let (tag, _) = rt
                    .block_on(cosign::attach(&p, &img, &digest, &[sig]))
                    .with_context(|| format!("store the signature of {img}"))?;
                println!("{}", cosign::with_tag(&img, &tag)?);
            } else {
                let (home, by, dir) = (
                    gpg_home.context("--gpg-home")?,
                    sign_by.context("--sign-by")?,
                    lookaside.context("--lookaside")?,
                );
                let signer = simple::GpgSigner {
                    home: &home,
                    sign_by: &by,
                    passphrase_file: gpg_passphrase_file.as_deref(),
                };
                let path = simple::sign_to_lookaside(&signer, &dir, &identity, &digest)?;
                println!("{}", path.display());
            }
        }
        Command::Push {
            no_signatures,
            registry,
            src_creds,
            dest_creds,
            src,
            dst,
        } => {
            let (src, dst) = (image(&src)?, image(&dst)?);
            let from = puller(&registry, creds(src_creds.as_deref())?)?;
            let to = puller(&registry, creds(dest_creds.as_deref())?)?;
            let copied = runtime()?
                .block_on(copy::copy_image(&from, &src, &to, &dst, !no_signatures))
                .with_context(|| format!("copy {src} to {dst}"))?;
            println!(
                "{dst}@{}: {}, {}",
                copied.digest,
                count(copied.blobs, "blob"),
                count(copied.signatures, "cosign signature")
            );
        }
        Command::Keyprovider { provider, keks } => {
            let mut keys = keyprovider::ProviderKeys::default();
            for k in &keks {
                let (kid, file) = k
                    .split_once('=')
                    .filter(|(kid, f)| !kid.is_empty() && !f.is_empty())
                    .with_context(|| format!("--kek {k:?}: want KID=FILE"))?;
                keys.keks.push((kid.to_string(), file.into()));
            }
            let mut input = Vec::new();
            std::io::stdin()
                .take(keyprovider::MAX_REQUEST + 1)
                .read_to_end(&mut input)
                .context("reading the request")?;
            if input.len() as u64 > keyprovider::MAX_REQUEST {
                bail!("request larger than {} bytes", keyprovider::MAX_REQUEST);
            }
            let request = keyprovider::parse_request(&input, &provider)?;
            let answer = keyprovider::respond(request, &keys)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&answer)
                .and_then(|_| out.flush())
                .context("writing the answer")?;
        }
        Command::Keygen { kek, cosign } => {
            if let Some(p) = kek {
                files::write_new(&p, &files::random_kek()?, 0o600)?;
                println!("{}: KEK (32 bytes, mode 0600)", p.display());
            } else if let Some(p) = cosign {
                let public = PathBuf::from(format!("{}.pub", p.display()));
                files::check_new(&public)?;
                let key = cosign::CosignKey::generate()?;
                files::write_new(&p, key.private_pem().as_bytes(), 0o600)?;
                if let Err(e) = files::write_new(&public, key.public_pem().as_bytes(), 0o644) {
                    let _ = std::fs::remove_file(&p);
                    return Err(e.into());
                }
                println!("{}: P-256 private key (mode 0600)", p.display());
                println!("{}: its public key", public.display());
            }
        }
    }
    Ok(())
}
