//! `/etc/inclavare-containers/config.toml`, the shim's configuration.
//!
//! A missing file means the defaults. A malformed file stops the shim with one line
//! naming the key. Unknown keys are errors, so a typo is not silently ignored.
//!
//! ```toml
//! log_level = "info"
//! rune = "/usr/local/bin/rune"
//! rune_root = "/run/containerd/rune"   # rune's state; the namespace is added
//! [enclave_runtime]
//! signature_method = "server"          # or "client": the image is already signed
//! [enclave_runtime.sim]
//! enclave_runtime_path = "/usr/local/lib/rune/liberpal-sim.so"
//! signing_key = "/etc/inclavare-containers/sim-signer.key"
//! cache_dir = "/var/lib/inclavare-containers/sim-manifests"
//! [enclave_runtime.wasm]                 # RUNE_CARRIER=sim with a .wasm program
//! enclave_runtime_path = "/usr/local/lib/rune/liberpal-wasm.so"
//! [enclave_runtime.occlum]
//! enclave_runtime_path = "/opt/occlum/build/lib/libocclum-pal.so"
//! [signature]
//! server_address = ""                  # empty: sign locally; else the signature server
//! [enclave_image]
//! kbs_ca = ["/etc/inclavare-containers/kbs-ca.pem"]  # host files containers may name as ENCLAVE_KBS_CA
//! ```
//!
//! A container (a pod's author) may name host files only where this file lists them:
//! its `ENCLAVE_RUNTIME_PATH` must be a PAL configured here, its `ENCLAVE_KBS_CA` one of
//! `[enclave_image] kbs_ca`, its `ENCLAVE_IMAGE_BOOT` the `enclave-boot` beside a
//! configured PAL, and `ENCLAVE_INIT_DATA_FILE` is refused (see `carrier`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the shim looks unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/inclavare-containers/config.toml";

/// Names another configuration file (containerd passes its environment to shims).
pub const PATH_ENV: &str = "INCLAVARE_CONTAINERS_CONFIG";

/// The file to read: `$INCLAVARE_CONTAINERS_CONFIG`, else [`DEFAULT_PATH`].
pub fn default_path() -> PathBuf {
    std::env::var_os(PATH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// The shim's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log_level: LogLevel,
    /// The `rune` binary the shim drives.
    pub rune: PathBuf,
    /// rune's state directory; the shim adds the containerd namespace.
    pub rune_root: PathBuf,
    pub enclave_runtime: EnclaveRuntime,
    pub signature: Signature,
    /// Confidential images: the host files containers may name.
    pub enclave_image: EnclaveImage,
    /// Path of Intel's `sgx_sign` (Occlum carrier).
    pub sgx_tool_sign: PathBuf,
    /// Accepted for compatibility with Inclavare's file; unused.
    pub containerd: Option<toml::Table>,
    /// Accepted for compatibility with Inclavare's file; unused.
    pub epm: Option<toml::Table>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnclaveRuntime {
    pub signature_method: SignatureMethod,
    pub sim: SimRuntime,
    /// The PAL of `sim` enclaves whose program is a WebAssembly module.
    pub wasm: WasmRuntime,
    pub occlum: OcclumRuntime,
    /// Inclavare's file has an empty placeholder table for it.
    pub graphene: Option<toml::Table>,
}

/// Who signs enclaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMethod {
    /// The shim signs at create (locally, or through the signature server).
    #[default]
    Server,
    /// The image already carries a signed enclave; the shim signs nothing.
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimRuntime {
    pub enclave_runtime_path: PathBuf,
    /// The Ed25519 key (`sim-sign keygen`) that signs `sim` enclaves at create.
    pub signing_key: PathBuf,
    /// Signed manifests kept by image, so an image's program is measured once.
    pub cache_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmRuntime {
    /// `liberpal-wasm.so`: signed, cached and measured as `sim` enclaves are.
    pub enclave_runtime_path: PathBuf,
}

impl Default for WasmRuntime {
    fn default() -> Self {
        WasmRuntime {
            enclave_runtime_path: PathBuf::from("/usr/local/lib/rune/liberpal-wasm.so"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcclumRuntime {
    pub enclave_runtime_path: PathBuf,
    pub enclave_libos_path: PathBuf,
}

/// `[enclave_image]`: host files a container may name for its confidential image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EnclaveImage {
    /// PEM CA files a container may name as `ENCLAVE_KBS_CA` / `enclave.kbs.ca` (rune
    /// bind-mounts the named host file into the container); none by default.
    pub kbs_ca: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Signature {
    /// The signing server; empty means local signing.
    pub server_address: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::Info,
            rune: PathBuf::from("/usr/local/bin/rune"),
            rune_root: PathBuf::from("/run/containerd/rune"),
            enclave_runtime: EnclaveRuntime::default(),
            signature: Signature::default(),
            enclave_image: EnclaveImage::default(),
            sgx_tool_sign: PathBuf::from("/opt/intel/sgxsdk/bin/x64/sgx_sign"),
            containerd: None,
            epm: None,
        }
    }
}

impl Default for EnclaveRuntime {
    fn default() -> Self {
        EnclaveRuntime {
            signature_method: SignatureMethod::Server,
            sim: SimRuntime::default(),
            wasm: WasmRuntime::default(),
            occlum: OcclumRuntime::default(),
            graphene: None,
        }
    }
}

impl Default for SimRuntime {
    fn default() -> Self {
        SimRuntime {
            enclave_runtime_path: PathBuf::from("/usr/local/lib/rune/liberpal-sim.so"),
            signing_key: PathBuf::from("/etc/inclavare-containers/sim-signer.key"),
            cache_dir: PathBuf::from("/var/lib/inclavare-containers/sim-manifests"),
        }
    }
}

impl Default for OcclumRuntime {
    fn default() -> Self {
        OcclumRuntime {
            enclave_runtime_path: PathBuf::from("/opt/occlum/build/lib/libocclum-pal.so"),
            enclave_libos_path: PathBuf::from("/opt/occlum/build/lib/libocclum-libos.so"),
        }
    }
}

/// Why the configuration could not be used. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message is multi-line (it quotes the source); keep the line number
            // and the message.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = e.message().lines().collect::<Vec<_>>().join("; ");
            ConfigError::Invalid {
                path: path.to_path_buf(),
                message: match line {
                    Some(l) => format!("line {l}: {message}"),
                    None => message,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("config.toml"), text)
    }

    #[test]
    fn a_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("none.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.enclave_runtime.signature_method, SignatureMethod::Server);
    }

    #[test]
    fn inclavares_shipped_file_is_read() {
        let c = parse(
            r#"
log_level = "debug"
sgx_tool_sign = "/opt/intel/sgxsdk/bin/x64/sgx_sign"

[containerd]
    socket = "/run/containerd/containerd.sock"
[epm]
    socket = "/var/run/epm/epm.sock"
[signature]
    server_address = "http://127.0.0.1:9080"
[enclave_runtime]
    signature_method = "client"
    [enclave_runtime.occlum]
        enclave_runtime_path = "/opt/occlum/build/lib/libocclum-pal.so"
        enclave_libos_path = "/opt/occlum/build/lib/libocclum-libos.so"
    [enclave_runtime.graphene]
"#,
        )
        .unwrap();
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.enclave_runtime.signature_method, SignatureMethod::Client);
        assert_eq!(c.signature.server_address, "http://127.0.0.1:9080");
        assert_eq!(c.enclave_runtime.sim, SimRuntime::default());
    }

    #[test]
    fn malformed_files_name_the_key_in_one_line() {
        for (text, needle) in [
            ("log_level = \"loud\"\n", "loud"),
            ("[enclave_runtime]\nsignature_method = \"both\"\n", "both"),
            (
                "[enclave_runtime.sim]\nenclave_runtime_pth = \"/x\"\n",
                "enclave_runtime_pth",
            ),
            ("rune = 5\n", "line 1"),
            ("log_level = \n", "line 1"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(e.starts_with("config.toml: "), "{e}");
        }
    }
}
