//! The measurement a `liberpal-sim` (or `liberpal-wasm`) enclave will report, computed
//! from an OCI image without running anything.
//!
//! What is measured is decided exactly as the PAL decides it at `pal_init` /
//! `pal_create_process` (`crates/pal-sim/src/lib.rs`), with the same `sim-tee` functions:
//! - the runtime args ([`sim_tee::RuntimeArgs`]) name the manifest (default
//!   [`sim_tee::DEFAULT_MANIFEST`]); with a manifest, the spec is the manifest's
//!   (entrypoint and fixed args), and the manifest must verify for the program, or the
//!   enclave would not start;
//! - without one (only with `debug`), the spec is [`sim_tee::EnclaveSpec::unsigned`] of
//!   the program `process.args[0]` names (the image's Entrypoint+Cmd unless overridden);
//! - `mr_enclave` = [`sim_tee::measure_program`]`(`[`sim_tee::program_digest`]`(file),
//!   spec)`: the same for both PALs (`crates/pal-wasm/src/lib.rs` measures the module
//!   file so); for `liberpal-wasm` the program must be a WebAssembly module (header
//!   `\0asm`, version 1), as the PAL refuses anything else.
//!
//! The image is unpacked with `enclave-image` (digest- and diff_id-checked, whiteouts
//! applied) into a private temporary root, and paths are resolved in it as the
//! container will see them (`openat2(RESOLVE_IN_ROOT)`: symlinks stay inside). Only file
//! contents and the spec enter the result: no timestamps, owners or archive order, so
//! the value is the same on every machine.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use enclave_image::registry::{ImageSource, Puller, RegistryConfig};
use enclave_image::unpack::{unpack_layer, UnpackOptions};
use reference_values::{EnclaveInfo, ImageInfo};
use serde::Deserialize;
use sim_tee::{Digest, EnclaveSpec, Manifest, RuntimeArgs};

/// The enclave runtime the image will run under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pal {
    /// `liberpal-sim.so`: the program is a Linux executable.
    #[default]
    Sim,
    /// `liberpal-wasm.so`: the program is a WASI preview 1 module.
    Wasm,
}

impl Pal {
    /// The PAL's library name, as provenance records it.
    pub fn name(self) -> &'static str {
        match self {
            Pal::Sim => "liberpal-sim",
            Pal::Wasm => "liberpal-wasm",
        }
    }
}

/// What the measurement depends on besides the image.
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// The PAL the enclave runs under.
    pub pal: Pal,
    /// `process.args[0]`; default: the image's Entrypoint, else its Cmd.
    pub entrypoint: Option<String>,
    /// `ENCLAVE_RUNTIME_ARGS` (`debug`, `manifest=PATH`; commas or spaces).
    pub runtime_args: String,
}

/// The identity the enclave's reports will carry.
#[derive(Debug, Clone)]
pub struct Measured {
    pub image: ImageInfo,
    pub enclave: EnclaveInfo,
    pub mr_enclave: Digest,
    /// With a manifest: SHA-384 of its signer's key, its product id and svn.
    pub signer: Option<(Digest, u16, u16)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImageConfig {
    config: ExecConfig,
    rootfs: RootFs,
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExecConfig {
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Checks that `file` is what liberpal-wasm runs: a core WebAssembly module (magic
/// `\0asm`, version 1; `crates/pal-wasm/src/module.rs` refuses the rest).
fn wasm_module(mut file: std::fs::File, path: &str) -> Result<()> {
    let mut header = Vec::with_capacity(8);
    file.by_ref().take(8).read_to_end(&mut header)?;
    match sim_tee::wasm::kind(&header) {
        sim_tee::wasm::Kind::CoreModule => Ok(()),
        sim_tee::wasm::Kind::Component => bail!(
            "enclave program {path} in the image: a WebAssembly component (component model): liberpal-wasm runs WASI preview 1 modules only"
        ),
        _ => bail!(
            "enclave program {path} in the image: not a WebAssembly module: liberpal-wasm would refuse it"
        ),
    }
}

/// Opens `path` (absolute, or relative to `cwd`) in `root` as the container sees it.
fn open_in_root(root: &OwnedFd, cwd: &str, path: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd.trim_end_matches('/'))
    };
    let fd = rustix::fs::openat2(
        root,
        full.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Unpacks every layer of `image` into `root`, in order.
async fn unpack(
    image: &enclave_image::registry::Image,
    diff_ids: &[String],
    root: &Path,
    tmp: &Path,
) -> Result<()> {
    if diff_ids.len() != image.manifest.layers.len() {
        bail!(
            "the image config lists {} diff_ids for {} layers",
            diff_ids.len(),
            image.manifest.layers.len()
        );
    }
    let opts = UnpackOptions {
        // Owners and device nodes do not enter the measurement.
        preserve_ownership: false,
        allow_devices: false,
        staging_parent: Some(tmp.to_path_buf()),
        ..UnpackOptions::default()
    };
    for (i, (layer, diff_id)) in image.manifest.layers.iter().zip(diff_ids).enumerate() {
        if layer.media_type.contains("+encrypted") {
            bail!(
                "layer {} is encrypted: a confidential image is pulled inside the enclave, whose program is the boot program (measure that instead)",
                layer.digest
            );
        }
        let blob = tmp.join(format!("layer-{i}"));
        image.fetch_blob_to_path(layer, &blob).await?;
        let file = std::fs::File::open(&blob).with_context(|| blob.display().to_string())?;
        unpack_layer(file, &layer.media_type, diff_id, root, &opts)
            .with_context(|| format!("layer {}", layer.digest))?;
        let _ = std::fs::remove_file(&blob);
    }
    Ok(())
}

/// Computes what a `liberpal-sim` enclave running `source` with `enclave` reports.
pub async fn measure(
    source: &ImageSource,
    registry: RegistryConfig,
    enclave: &EnclaveConfig,
) -> Result<Measured> {
    let puller = Puller::new(registry)?;
    let image = puller.open(source).await?;
    let config_bytes = image.config().await?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).context("the image config is not OCI JSON")?;
    let tmp = tempfile::Builder::new().prefix("shelter-rv-").tempdir()?;
    let root = tmp.path().join("rootfs");
    std::fs::create_dir(&root)?;
    unpack(&image, &config.rootfs.diff_ids, &root, tmp.path()).await?;
    let root_fd: OwnedFd = std::fs::File::open(&root)?.into();
    let cwd = config
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());

    let args = RuntimeArgs::parse(&enclave.runtime_args);
    let manifest_path = args.manifest_path().to_string();
    let manifest = match open_in_root(&root_fd, "/", &manifest_path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.by_ref().take(1 << 20).read_to_end(&mut bytes)?;
            Some(Manifest::parse(&bytes).with_context(|| format!("{manifest_path} in the image"))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.manifest.is_none() => None,
        Err(e) => bail!("manifest {manifest_path} in the image: {e}"),
    };
    let image_program = config
        .config
        .entrypoint
        .iter()
        .chain(config.config.cmd.iter())
        .flatten()
        .next()
        .cloned();
    let (spec, debug) = match &manifest {
        Some(m) => {
            if let Some(e) = &enclave.entrypoint {
                if *e != m.spec.entrypoint {
                    bail!(
                        "the image's manifest is for {}, not {e}: the enclave would refuse to run {e}",
                        m.spec.entrypoint
                    );
                }
            }
            (m.spec.clone(), m.debug || args.debug)
        }
        None if args.debug => {
            let program = enclave.entrypoint.clone().or(image_program).context(
                "no program: the image has no Entrypoint or Cmd; give --entrypoint",
            )?;
            (EnclaveSpec::unsigned(&program), true)
        }
        None => bail!(
            "no signed manifest at {manifest_path} in the image: {} runs an unsigned enclave only with the runtime arg debug (--runtime-args debug)",
            enclave.pal.name()
        ),
    };
    let open = || {
        open_in_root(&root_fd, &cwd, &spec.entrypoint)
            .with_context(|| format!("enclave program {} in the image", spec.entrypoint))
    };
    let file = open()?;
    if enclave.pal == Pal::Wasm {
        wasm_module(open()?, &spec.entrypoint)?;
    }
    let program = sim_tee::program_digest(file)?;
    let mr_enclave = sim_tee::measure_program(&program, &spec);
    let signer = match &manifest {
        Some(m) => {
            m.verify_program(&program).with_context(|| {
                format!("the image's manifest {manifest_path}: the enclave would not start")
            })?;
            Some((m.mr_signer()?, m.product_id, m.svn))
        }
        None => None,
    };
    Ok(Measured {
        image: ImageInfo {
            source: source.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            config_digest: image.manifest.config.digest.clone(),
            diff_ids: config.rootfs.diff_ids.clone(),
            platform: match &config.variant {
                Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
                None => format!("{}/{}", config.os, config.architecture),
            },
        },
        enclave: EnclaveInfo {
            tee: "sim".into(),
            pal: enclave.pal.name().into(),
            // pal-sim and shelter are versioned together (the workspace version).
            pal_version: env!("CARGO_PKG_VERSION").into(),
            measurement: sim_tee::MEASUREMENT_VERSION.into(),
            entrypoint: spec.entrypoint.clone(),
            args: spec.args.clone(),
            manifest: manifest.as_ref().map(|_| manifest_path.clone()),
            debug,
            program_digest: format!("sha384:{}", hex::encode(program)),
        },
        mr_enclave,
        signer,
    })
}
