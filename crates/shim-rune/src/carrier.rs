//! Carriers: what turns an ordinary container into an enclave container at `create`,
//! chosen by `RUNE_CARRIER` in the container's environment.
//!
//! - empty or unset: nothing; the container runs as with runc.
//! - `sim`: the container's program is signed into a `liberpal-sim` enclave manifest
//!   (`/enclave.manifest.json` in its root filesystem) with the configured key or by
//!   the signature server (`[signature] server_address`), and
//!   `ENCLAVE_TYPE=sim`, `ENCLAVE_RUNTIME_PATH` and `ENCLAVE_RUNTIME_ARGS` are added
//!   where the spec does not set them. Manifests are cached by the image's layers and
//!   the program, so a second container of the same image is not measured again. A
//!   program that is a WebAssembly module (`\0asm`) gets the wasm PAL
//!   (`[enclave_runtime.wasm]`, `liberpal-wasm.so`), which measures modules with the
//!   same function.
//! - `occlum`: Occlum's build and Intel's `sgx_sign`, run as tools (they must be
//!   installed; SGX hardware is needed to run the result). With a signature server,
//!   the enclave is re-signed with its RSA key (`sgx_sign gendata`/`catsig`).
//!
//! A container that asks for a confidential image (`ENCLAVE_IMAGE` / `enclave.image`)
//! is handled by [`crate::image`] instead, and a CRI sandbox container loses the
//! `enclave.*` annotations it got from the pod.
//!
//! With `signature_method = "client"` the image carries its own signed enclave and the
//! carrier signs nothing; it only fills in the `ENCLAVE_*` settings that are missing.
//!
//! The root filesystem is the image's, so it is untrusted: every path in it is opened
//! with `RESOLVE_IN_ROOT`, and a symlink can never lead the shim out of it.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};
use signature_server::Client;
use sim_tee::{EnclaveSpec, Manifest, SignerKey};

use crate::config::{Config, SignatureMethod};

pub const CARRIER_ENV: &str = "RUNE_CARRIER";
/// Where a `sim` enclave's manifest goes in the root filesystem (liberpal-sim's default).
pub const SIM_MANIFEST: &str = "/enclave.manifest.json";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("RUNE_CARRIER={0:?} is not a carrier (known: sim, occlum)")]
    Unknown(String),
    #[error("RUNE_CARRIER=graphene is not implemented")]
    Graphene,
    #[error("bundle config.json: {0}")]
    Spec(String),
    #[error("sim carrier: the program {program:?} is not in the image ({reason})")]
    Program { program: String, reason: String },
    #[error("sim carrier: signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("sim carrier: {0}")]
    Sim(String),
    #[error("occlum carrier: {0}")]
    Occlum(String),
    #[error("signature server {address}: {reason}")]
    SignatureServer { address: String, reason: String },
    #[error("confidential image: {0}")]
    Image(String),
    /// A host path the container names that the shim's configuration does not allow.
    #[error("{0}")]
    HostPath(String),
}

/// What a carrier did, for the shim's log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No carrier: the container is left as it is.
    None,
    /// A `sim` enclave: its measurement, and whether the manifest came from the cache.
    Sim {
        mr_enclave: String,
        cached: bool,
    },
    /// `signature_method = "client"`: settings filled in, nothing signed.
    ClientSigned,
    Occlum,
    /// A confidential image (`enclave.image`), pulled inside the enclave by rune's boot
    /// program; nothing signed (see [`crate::image`]).
    Image {
        reference: String,
    },
    /// An enclave container (`ENCLAVE_TYPE` or `enclave.type`) that named no PAL: the
    /// configured one for its type was filled in.
    RuntimePath {
        path: PathBuf,
    },
    /// A CRI sandbox container whose `enclave.*` annotations (the pod's) were removed.
    Sandbox {
        removed: Vec<String>,
    },
}

/// Applies the container's carrier to the bundle (its `config.json` and root
/// filesystem). `image` identifies the image's content when known (its read-only
/// layers), for the manifest cache.
pub fn apply(config: &Config, bundle: &Path, image: Option<&str>) -> Result<Outcome, CarrierError> {
    let spec_path = bundle.join("config.json");
    let text = std::fs::read(&spec_path).map_err(|e| CarrierError::Spec(e.to_string()))?;
    let mut spec: Value =
        serde_json::from_slice(&text).map_err(|e| CarrierError::Spec(e.to_string()))?;
    let carrier = env_value(&spec, CARRIER_ENV).unwrap_or_default();
    if !crate::image::is_sandbox(&spec) {
        host_paths_allowed(config, &spec)?;
    }
    let outcome = if crate::image::is_sandbox(&spec) {
        let removed = crate::image::strip_enclave_annotations(&mut spec);
        if removed.is_empty() {
            return Ok(Outcome::None);
        }
        Outcome::Sandbox { removed }
    } else if let Some(reference) = crate::image::requested(&spec) {
        crate::image::prepare(config, &carrier, &mut spec, reference)?
    } else {
        match carrier.as_str() {
            "" => match runtime_path_default(config, &mut spec) {
                Some(outcome) => outcome,
                None => return Ok(Outcome::None),
            },
            "sim" => sim(config, bundle, image, &mut spec)?,
            "occlum" => occlum(config, bundle, &mut spec)?,
            "graphene" => return Err(CarrierError::Graphene),
            other => return Err(CarrierError::Unknown(other.to_string())),
        }
    };
    let bytes = serde_json::to_vec(&spec).map_err(|e| CarrierError::Spec(e.to_string()))?;
    write_atomic(&spec_path, &bytes, 0o644).map_err(|e| CarrierError::Spec(e.to_string()))?;
    Ok(outcome)
}

/// Every value a container gives `var` (its environment) or `annotation`: both are
/// checked, whichever rune would read.
fn values(spec: &Value, var: &str, annotation: &str) -> Vec<String> {
    let mut out: Vec<String> = env_list(spec)
        .iter()
        .filter_map(|e| e.strip_prefix(var)?.strip_prefix('=').map(str::to_string))
        .collect();
    out.extend(spec["annotations"][annotation].as_str().map(str::to_string));
    out.retain(|v| !v.is_empty());
    out
}

/// rune runs as root on the node and acts on host paths a container's settings name:
/// it `dlopen`s `ENCLAVE_RUNTIME_PATH`, bind-mounts `ENCLAVE_KBS_CA` and
/// `ENCLAVE_IMAGE_BOOT` into the container and reads `ENCLAVE_INIT_DATA_FILE`. Through
/// the shim those come from whoever wrote the pod (env or annotations), so only the
/// node's own files, as this shim's configuration names them, are let through.
fn host_paths_allowed(config: &Config, spec: &Value) -> Result<(), CarrierError> {
    let pals = [
        &config.enclave_runtime.sim.enclave_runtime_path,
        &config.enclave_runtime.wasm.enclave_runtime_path,
        &config.enclave_runtime.occlum.enclave_runtime_path,
    ];
    let refuse = |what: String| Err(CarrierError::HostPath(what));
    for v in values(spec, "ENCLAVE_RUNTIME_PATH", "enclave.runtime.path") {
        if !pals.iter().any(|p| p.as_os_str() == v.as_str()) {
            return refuse(format!(
                "ENCLAVE_RUNTIME_PATH {v}: not a PAL this node configures ({}): a container cannot load a host library of its choice",
                pals.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for v in values(spec, "ENCLAVE_IMAGE_BOOT", "enclave.image.boot") {
        if !pals
            .iter()
            .any(|p| p.with_file_name("enclave-boot").as_os_str() == v.as_str())
        {
            return refuse(format!(
                "ENCLAVE_IMAGE_BOOT {v}: only the enclave-boot installed beside a configured PAL can be named (leave it unset)"
            ));
        }
    }
    for v in values(spec, "ENCLAVE_KBS_CA", "enclave.kbs.ca") {
        if !config
            .enclave_image
            .kbs_ca
            .iter()
            .any(|p| p.as_os_str() == v.as_str())
        {
            return refuse(format!(
                "ENCLAVE_KBS_CA {v}: not a CA file this node allows ([enclave_image] kbs_ca in the shim's configuration)"
            ));
        }
    }
    if let Some(v) = values(spec, "ENCLAVE_INIT_DATA_FILE", "enclave.init.data.file").first() {
        return refuse(format!(
            "ENCLAVE_INIT_DATA_FILE {v}: a container cannot have a host file read; give the document itself (ENCLAVE_INIT_DATA, or the io.katacontainers.config.hypervisor.cc_init_data annotation)"
        ));
    }
    Ok(())
}

/// For an enclave container that names its type but no PAL (`ctr run --env
/// ENCLAVE_TYPE=sim`, a pod with `enclave.type` only), sets `ENCLAVE_RUNTIME_PATH` to
/// the PAL configured for the type (`[enclave_runtime.sim]`, `[enclave_runtime.occlum]`
/// for `intelSgx`), as the README says; None when there is nothing to fill in.
fn runtime_path_default(config: &Config, spec: &mut Value) -> Option<Outcome> {
    let typ = crate::image::setting(spec, "ENCLAVE_TYPE", "enclave.type")?;
    if crate::image::setting(spec, "ENCLAVE_RUNTIME_PATH", "enclave.runtime.path").is_some() {
        return None;
    }
    let path = match typ.as_str() {
        "sim" => config.enclave_runtime.sim.enclave_runtime_path.clone(),
        "intelSgx" => config.enclave_runtime.occlum.enclave_runtime_path.clone(),
        // rune names an unknown type in its own error.
        _ => return None,
    };
    set_env_default(spec, "ENCLAVE_RUNTIME_PATH", &path.display().to_string());
    Some(Outcome::RuntimePath { path })
}

fn env_list(spec: &Value) -> Vec<String> {
    spec["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn env_value(spec: &Value, key: &str) -> Option<String> {
    env_list(spec)
        .iter()
        .find_map(|e| e.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// Adds `KEY=value` unless the spec already sets `KEY`.
pub(crate) fn set_env_default(spec: &mut Value, key: &str, value: &str) {
    if env_value(spec, key).is_some() {
        return;
    }
    let entry = Value::String(format!("{key}={value}"));
    match spec["process"]["env"].as_array_mut() {
        Some(env) => env.push(entry),
        None => spec["process"]["env"] = Value::Array(vec![entry]),
    }
}

fn rootfs_of(bundle: &Path, spec: &Value) -> PathBuf {
    let root = spec["root"]["path"].as_str().unwrap_or("rootfs");
    bundle.join(root)
}

fn sim(
    config: &Config,
    bundle: &Path,
    image: Option<&str>,
    spec: &mut Value,
) -> Result<Outcome, CarrierError> {
    let sim = &config.enclave_runtime.sim;
    set_env_default(spec, "ENCLAVE_TYPE", "sim");
    let rootfs_path = rootfs_of(bundle, spec);
    let rootfs = std::fs::File::open(&rootfs_path)
        .map_err(|e| CarrierError::Sim(format!("root filesystem {}: {e}", rootfs_path.display())));
    let args0 = spec["process"]["args"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path_env = env_value(spec, "PATH").unwrap_or_else(|| DEFAULT_PATH.to_string());
    // Found first, to choose the PAL; its errors count only where a manifest is signed.
    let found = match &rootfs {
        Ok(root) => find_program(root.as_fd(), &args0, &path_env),
        Err(e) => Err(CarrierError::Sim(e.to_string())),
    };
    let pal = match &found {
        Ok((_, program)) if is_wasm(program) => &config.enclave_runtime.wasm.enclave_runtime_path,
        _ => &sim.enclave_runtime_path,
    };
    set_env_default(spec, "ENCLAVE_RUNTIME_PATH", &pal.display().to_string());
    if config.enclave_runtime.signature_method == SignatureMethod::Client {
        return Ok(Outcome::ClientSigned);
    }
    // Before any work: a server that cannot be reached fails the create at once.
    let signer = Signer::configured(config)?;
    let public = signer.public()?;
    let manifest_path = match env_value(spec, "ENCLAVE_RUNTIME_ARGS") {
        Some(args) => args
            .split_whitespace()
            .find_map(|a| a.strip_prefix("manifest="))
            .unwrap_or(SIM_MANIFEST)
            .to_string(),
        None => {
            set_env_default(
                spec,
                "ENCLAVE_RUNTIME_ARGS",
                &format!("manifest={SIM_MANIFEST}"),
            );
            SIM_MANIFEST.to_string()
        }
    };
    let rootfs = rootfs?;
    let (entrypoint, program) = found?;
    // The enclave runs the program by the path it was signed for.
    spec["process"]["args"][0] = Value::String(entrypoint.clone());
    let enclave = EnclaveSpec {
        entrypoint: entrypoint.clone(),
        args: vec![],
    };
    let stat = rustix::fs::fstat(&program).map_err(|e| CarrierError::Sim(e.to_string()))?;
    // The image's read-only layers, the program's place in them and the key name the
    // manifest; without the layers (a bundle built by hand) nothing is cached.
    let cache_key = image.map(|image| {
        let mut h = Sha256::new();
        for part in [
            image.as_bytes(),
            entrypoint.as_bytes(),
            &stat.st_size.to_le_bytes(),
            &stat.st_mtime.to_le_bytes(),
            &public,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        hex::encode(h.finalize())
    });
    let cached = cache_key
        .as_ref()
        .and_then(|k| std::fs::read(sim.cache_dir.join(format!("{k}.json"))).ok())
        .and_then(|b| Manifest::parse(&b).ok())
        .filter(|m| m.spec == enclave && m.mr_signer().ok() == Some(sim_tee::sha384(&public)));
    let (manifest, was_cached) = match cached {
        Some(m) => (m, true),
        None => {
            let digest = sim_tee::program_digest(std::fs::File::from(program))
                .map_err(|e| CarrierError::Sim(format!("read {entrypoint}: {e}")))?;
            let m = signer.sign(&digest, enclave, &public)?;
            if let Some(k) = &cache_key {
                let bytes = serde_json::to_vec_pretty(&m).expect("a manifest serializes");
                // A cache that cannot be written only costs time.
                if std::fs::create_dir_all(&sim.cache_dir).is_ok() {
                    let _ = write_atomic(&sim.cache_dir.join(format!("{k}.json")), &bytes, 0o644);
                }
            }
            (m, false)
        }
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    write_in_root(rootfs.as_fd(), &manifest_path, &bytes)?;
    Ok(Outcome::Sim {
        mr_enclave: manifest.mr_enclave.clone(),
        cached: was_cached,
    })
}

fn server_address(config: &Config) -> &str {
    config.signature.server_address.trim()
}

/// Who signs `sim` manifests: the configured key, or the signature server.
enum Signer {
    Local(SignerKey),
    Server { address: String, client: Client },
}

impl Signer {
    fn configured(config: &Config) -> Result<Signer, CarrierError> {
        let address = server_address(config);
        if address.is_empty() {
            return Ok(Signer::Local(load_key(
                &config.enclave_runtime.sim.signing_key,
            )?));
        }
        let client = Client::new(address).map_err(|e| server_error(address, e))?;
        Ok(Signer::Server {
            address: address.to_string(),
            client,
        })
    }

    /// The signer's public key: `mr_signer` is its digest.
    fn public(&self) -> Result<[u8; 32], CarrierError> {
        match self {
            Signer::Local(key) => Ok(key.public()),
            Signer::Server { address, client } => client
                .ed25519_public_blocking()
                .map_err(|e| server_error(address, e)),
        }
    }

    fn sign(
        &self,
        program: &sim_tee::Digest,
        enclave: EnclaveSpec,
        public: &[u8; 32],
    ) -> Result<Manifest, CarrierError> {
        match self {
            Signer::Local(key) => Ok(Manifest::sign_program(program, enclave, key, 0, 0, false)),
            Signer::Server { address, client } => {
                let unsigned = Manifest::unsigned(program, enclave, public, 0, 0, false);
                let sig = client
                    .sign_ed25519_blocking(&unsigned.signed_bytes(), public)
                    .map_err(|e| server_error(address, e))?;
                unsigned
                    .with_signature(&sig)
                    .map_err(|e| server_error(address, e))
            }
        }
    }
}

fn server_error(address: &str, e: impl std::fmt::Display) -> CarrierError {
    CarrierError::SignatureServer {
        address: address.to_string(),
        reason: e.to_string(),
    }
}

fn load_key(path: &Path) -> Result<SignerKey, CarrierError> {
    SignerKey::load(path).map_err(|e| CarrierError::Key {
        path: path.to_path_buf(),
        reason: match e {
            sim_tee::SimError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                "not found (make one with `sim-sign keygen --out PATH`)".into()
            }
            other => other.to_string(),
        },
    })
}

/// Opens `path` inside `root` as the container would see it.
fn open_in_root(
    root: impl AsFd,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        path,
        flags | OFlags::CLOEXEC,
        mode,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The program a container starts: its absolute path in the container and an open file.
fn find_program(
    root: impl AsFd,
    args0: &str,
    path_env: &str,
) -> Result<(String, OwnedFd), CarrierError> {
    let not_found = |reason: String| CarrierError::Program {
        program: args0.to_string(),
        reason,
    };
    if args0.is_empty() {
        return Err(not_found("the spec has no process.args".into()));
    }
    let candidates: Vec<String> = if args0.contains('/') {
        if !args0.starts_with('/') {
            return Err(not_found("a relative path; give it from /".into()));
        }
        vec![args0.to_string()]
    } else {
        path_env
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{args0}", d.trim_end_matches('/')))
            .collect()
    };
    let mut last = String::from("searched PATH");
    for c in candidates {
        match open_in_root(root.as_fd(), &c, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(|e| not_found(e.to_string()))?;
                let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
                if file_type == rustix::fs::FileType::RegularFile && st.st_mode & 0o111 != 0 {
                    return Ok((c, fd));
                }
                last = format!("{c} is not an executable file");
            }
            Err(e) => last = format!("{c}: {e}"),
        }
    }
    Err(not_found(last))
}

/// Whether `program` starts with WebAssembly's magic (`\0asm`, any version: the PAL
/// refuses what it cannot run, such as a component, in its own line).
fn is_wasm(program: &OwnedFd) -> bool {
    let mut magic = [0u8; 4];
    matches!(rustix::io::pread(program, &mut magic, 0), Ok(4)) && &magic == b"\0asm"
}

/// Writes a file in the root filesystem, never through a symlink out of it.
fn write_in_root(root: impl AsFd, path: &str, bytes: &[u8]) -> Result<(), CarrierError> {
    let fd = open_in_root(
        root,
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| CarrierError::Sim(format!("write {path} in the root filesystem: {e}")))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)
        .map_err(|e| CarrierError::Sim(format!("write {path} in the root filesystem: {e}")))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The Occlum carrier: Occlum's own tools build the enclave image from the container's
/// root filesystem, and `sgx_sign` signs it. Each tool must be installed.
fn occlum(config: &Config, bundle: &Path, spec: &mut Value) -> Result<Outcome, CarrierError> {
    let occ = &config.enclave_runtime.occlum;
    set_env_default(spec, "ENCLAVE_TYPE", "intelSgx");
    set_env_default(
        spec,
        "ENCLAVE_RUNTIME_PATH",
        &occ.enclave_runtime_path.display().to_string(),
    );
    set_env_default(spec, "ENCLAVE_RUNTIME_ARGS", "./");
    if config.enclave_runtime.signature_method == SignatureMethod::Client {
        return Ok(Outcome::ClientSigned);
    }
    let address = server_address(config);
    let server = if address.is_empty() {
        None
    } else {
        Some(Client::new(address).map_err(|e| server_error(address, e))?)
    };
    let occlum = which("occlum").ok_or_else(|| {
        CarrierError::Occlum(
            "`occlum` is not installed (install Occlum, or use signature_method = \"client\" \
             with an image that carries its signed enclave)"
                .into(),
        )
    })?;
    if !config.sgx_tool_sign.is_file() {
        return Err(CarrierError::Occlum(format!(
            "sgx_sign is not installed at {} (the Intel SGX SDK; key sgx_tool_sign)",
            config.sgx_tool_sign.display()
        )));
    }
    // Before the slow build: a server that cannot be reached fails the create at once.
    if let Some(client) = &server {
        client
            .pkcs1_public_blocking()
            .map_err(|e| server_error(address, e))?;
    }
    let work = bundle.join("occlum_instance");
    let rootfs = rootfs_of(bundle, spec);
    let run = |cmd: &mut std::process::Command, what: &str| -> Result<(), CarrierError> {
        let out = cmd
            .output()
            .map_err(|e| CarrierError::Occlum(format!("{what}: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(CarrierError::Occlum(format!(
                "{what}: {}",
                err.lines().last().unwrap_or("failed")
            )));
        }
        Ok(())
    };
    run(
        std::process::Command::new(&occlum).arg("new").arg(&work),
        "occlum new",
    )?;
    run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", rootfs.display()))
            .arg(work.join("image")),
        "copy the root filesystem into the Occlum image",
    )?;
    run(
        std::process::Command::new(&occlum)
            .arg("build")
            .current_dir(&work),
        "occlum build",
    )?;
    let Some(client) = server else {
        // Signed by `occlum build` with Occlum's own key.
        return Ok(Outcome::Occlum);
    };
    // Re-sign with the server's key: sgx_sign writes the signing material, the server
    // signs it, sgx_sign joins the signature to the enclave.
    let lib = work.join("build/lib");
    let enclave_xml = work.join("build/Enclave.xml");
    let material = work.join("enclave_sig.dat");
    run(
        std::process::Command::new(&config.sgx_tool_sign)
            .arg("gendata")
            .arg("-enclave")
            .arg(lib.join("libocclum-libos.so"))
            .arg("-config")
            .arg(&enclave_xml)
            .arg("-out")
            .arg(&material),
        "sgx_sign gendata",
    )?;
    let data = std::fs::read(&material)
        .map_err(|e| CarrierError::Occlum(format!("signing material: {e}")))?;
    let (sig, pem) = client
        .sign_pkcs1_blocking(&data)
        .map_err(|e| server_error(address, e))?;
    let (sig_path, key_path) = (work.join("signature.dat"), work.join("public_key.pem"));
    for (path, bytes) in [(&sig_path, &sig[..]), (&key_path, pem.as_bytes())] {
        write_atomic(path, bytes, 0o644).map_err(|e| CarrierError::Occlum(e.to_string()))?;
    }
    run(
        std::process::Command::new(&config.sgx_tool_sign)
            .arg("catsig")
            .arg("-enclave")
            .arg(lib.join("libocclum-libos.so"))
            .arg("-config")
            .arg(&enclave_xml)
            .arg("-out")
            .arg(lib.join("libocclum-libos.signed.so"))
            .arg("-key")
            .arg(&key_path)
            .arg("-sig")
            .arg(&sig_path)
            .arg("-unsigned")
            .arg(&material),
        "sgx_sign catsig",
    )?;
    Ok(Outcome::Occlum)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_defaults_never_overwrite() {
        let mut spec = json!({"process": {"env": ["ENCLAVE_TYPE=intelSgx", "A=1"]}});
        set_env_default(&mut spec, "ENCLAVE_TYPE", "sim");
        set_env_default(&mut spec, "B", "2");
        assert_eq!(env_list(&spec), vec!["ENCLAVE_TYPE=intelSgx", "A=1", "B=2"]);
        let mut bare = json!({"process": {}});
        set_env_default(&mut bare, "X", "y");
        assert_eq!(env_value(&bare, "X").as_deref(), Some("y"));
        assert_eq!(env_value(&bare, "XX"), None);
    }

    #[test]
    fn programs_are_found_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let prog = root.join("bin/prog");
        std::fs::write(&prog, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(root.join("bin/data"), b"x").unwrap();
        // An absolute symlink resolves inside the root, not on the host.
        std::os::unix::fs::symlink("/bin/prog", root.join("bin/link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("bin/escape")).unwrap();
        let fd = std::fs::File::open(&root).unwrap();
        let (path, _) = find_program(fd.as_fd(), "prog", "/usr/bin:/bin").unwrap();
        assert_eq!(path, "/bin/prog");
        assert_eq!(
            find_program(fd.as_fd(), "/bin/link", "").unwrap().0,
            "/bin/link"
        );
        let e = find_program(fd.as_fd(), "/bin/escape", "").unwrap_err();
        assert!(e.to_string().contains("not in the image"), "{e}");
        let e = find_program(fd.as_fd(), "data", "/bin").unwrap_err();
        assert!(e.to_string().contains("not an executable"), "{e}");
        let e = find_program(fd.as_fd(), "bin/prog", "/bin").unwrap_err();
        assert!(e.to_string().contains("relative"), "{e}");

        // Writing follows the same rule: the manifest lands inside the root.
        std::os::unix::fs::symlink("/outside.json", root.join("enclave.manifest.json")).unwrap();
        let e = write_in_root(fd.as_fd(), "/enclave.manifest.json", b"{}").unwrap_err();
        assert!(e.to_string().contains("enclave.manifest.json"), "{e}");
        assert!(!dir.path().join("outside.json").exists());
        write_in_root(fd.as_fd(), "/bin/manifest.json", b"{}").unwrap();
        assert_eq!(
            std::fs::read(root.join("bin/manifest.json")).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn unknown_carriers_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (value, want) in [
            ("tdx", "RUNE_CARRIER=\"tdx\" is not a carrier"),
            ("graphene", "graphene is not implemented"),
        ] {
            let spec = json!({"process": {"args": ["/bin/true"], "env": [format!("RUNE_CARRIER={value}")]}});
            std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
            let e = apply(&Config::default(), dir.path(), None).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        let spec = json!({"process": {"args": ["/bin/true"], "env": ["PATH=/bin"]}});
        std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        assert_eq!(
            apply(&Config::default(), dir.path(), None).unwrap(),
            Outcome::None
        );
    }

    /// `ctr run --env ENCLAVE_TYPE=sim`: the configured PAL is filled in; a PAL the
    /// container names, by variable or annotation, is kept.
    #[test]
    fn an_enclave_type_without_a_pal_gets_the_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let sim = config.enclave_runtime.sim.enclave_runtime_path.clone();
        let occlum = config.enclave_runtime.occlum.enclave_runtime_path.clone();
        let wasm = config
            .enclave_runtime
            .wasm
            .enclave_runtime_path
            .display()
            .to_string();
        let cases = [
            (json!({"env": ["ENCLAVE_TYPE=sim"]}), json!({}), Some(&sim)),
            (
                json!({"env": []}),
                json!({"enclave.type": "intelSgx"}),
                Some(&occlum),
            ),
            (
                json!({"env": ["ENCLAVE_TYPE=sim", format!("ENCLAVE_RUNTIME_PATH={wasm}")]}),
                json!({}),
                None,
            ),
            (
                json!({"env": ["ENCLAVE_TYPE=sim"]}),
                json!({"enclave.runtime.path": wasm}),
                None,
            ),
        ];
        for (process, annotations, filled) in cases {
            let mut spec = json!({"process": process, "annotations": annotations});
            spec["process"]["args"] = json!(["/bin/true"]);
            std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
            let outcome = apply(&config, dir.path(), None).unwrap();
            let written: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                    .unwrap();
            match filled {
                Some(path) => {
                    assert_eq!(outcome, Outcome::RuntimePath { path: path.clone() });
                    assert_eq!(
                        env_value(&written, "ENCLAVE_RUNTIME_PATH").as_deref(),
                        Some(path.to_str().unwrap())
                    );
                }
                None => {
                    assert_eq!(outcome, Outcome::None, "{spec}");
                    assert_eq!(written, spec);
                }
            }
        }
    }

    /// Host paths from a pod's author (env or annotations) that the node did not
    /// configure are refused in one line, and the bundle is left as it was (review18
    /// F1: `ENCLAVE_RUNTIME_PATH` is `dlopen`ed by root on the node).
    #[test]
    fn host_paths_a_container_names_must_be_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.enclave_image.kbs_ca = vec!["/etc/inclavare-containers/kbs-ca.pem".into()];
        let boot = config
            .enclave_runtime
            .sim
            .enclave_runtime_path
            .with_file_name("enclave-boot");
        let refused = [
            (json!(["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=/var/lib/kubelet/pods/u/x.so"]), json!({}), "ENCLAVE_RUNTIME_PATH /var/lib/kubelet/pods/u/x.so: not a PAL this node configures (/usr/local/lib/rune/liberpal-sim.so, /usr/local/lib/rune/liberpal-wasm.so, /opt/occlum/build/lib/libocclum-pal.so): a container cannot load a host library of its choice"),
            // The annotation is checked even where the variable is allowed.
            (json!(["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=/usr/local/lib/rune/liberpal-sim.so"]), json!({"enclave.runtime.path": "/tmp/x.so"}), "ENCLAVE_RUNTIME_PATH /tmp/x.so: not a PAL"),
            (json!(["ENCLAVE_TYPE=sim"]), json!({"enclave.image": "r/a:1", "enclave.image.boot": "/bin/sh"}), "ENCLAVE_IMAGE_BOOT /bin/sh: only the enclave-boot installed beside a configured PAL can be named (leave it unset)"),
            (json!(["ENCLAVE_TYPE=sim", "ENCLAVE_KBS_CA=/etc/shadow"]), json!({}), "ENCLAVE_KBS_CA /etc/shadow: not a CA file this node allows ([enclave_image] kbs_ca in the shim's configuration)"),
            (json!(["ENCLAVE_TYPE=sim"]), json!({"enclave.init.data.file": "/dev/zero"}), "ENCLAVE_INIT_DATA_FILE /dev/zero: a container cannot have a host file read; give the document itself (ENCLAVE_INIT_DATA, or the io.katacontainers.config.hypervisor.cc_init_data annotation)"),
        ];
        for (env, annotations, want) in refused {
            let spec =
                json!({"process": {"env": env, "args": ["/bin/true"]}, "annotations": annotations});
            let text = spec.to_string();
            std::fs::write(dir.path().join("config.json"), &text).unwrap();
            let err = apply(&config, dir.path(), None).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
            assert!(!err.contains('\n'), "{err}");
            assert_eq!(
                std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
                text
            );
        }
        // The node's own files pass.
        let spec = json!({"process": {"env": ["ENCLAVE_TYPE=sim", "ENCLAVE_KBS_CA=/etc/inclavare-containers/kbs-ca.pem", format!("ENCLAVE_IMAGE_BOOT={}", boot.display())], "args": ["/bin/true"]}});
        std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        apply(&config, dir.path(), None).unwrap();
    }
}
