//! Enclave containers: which enclave runtime a container asks for, and whether the host
//! can give it.
//!
//! The configuration comes from `ENCLAVE_*` variables in `process.env`, falling back to
//! `enclave.*` annotations, exactly as Inclavare's rune reads it. Without a type the
//! container is a plain one and nothing here applies.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

use crate::error::{Result, RuneError};

/// Environment variables and the annotations they fall back to.
const TYPE: (&str, &str) = ("ENCLAVE_TYPE", "enclave.type");
const PATH: (&str, &str) = ("ENCLAVE_RUNTIME_PATH", "enclave.runtime.path");
const ARGS: (&str, &str) = ("ENCLAVE_RUNTIME_ARGS", "enclave.runtime.args");
const LOG_LEVEL: (&str, &str) = ("ENCLAVE_RUNTIME_LOGLEVEL", "enclave.runtime.loglevel");

/// The log levels a PAL accepts; anything else becomes `info`.
const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "error", "fatal", "panic", "off",
];

/// The kind of enclave a container runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnclaveType {
    /// Intel SGX hardware, through a PAL such as Occlum's.
    IntelSgx,
    /// The software enclave (`liberpal-sim.so`): no hardware, no hardware guarantees.
    Sim,
}

impl EnclaveType {
    /// The name used in `ENCLAVE_TYPE` and `enclave.type`.
    pub fn name(self) -> &'static str {
        match self {
            EnclaveType::IntelSgx => "intelSgx",
            EnclaveType::Sim => "sim",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "intelSgx" => Ok(EnclaveType::IntelSgx),
            "sim" => Ok(EnclaveType::Sim),
            other => Err(RuneError::Enclave(format!(
                "enclave type {other:?} is not supported (use intelSgx or sim)"
            ))),
        }
    }
}

/// The enclave a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveConfig {
    pub typ: EnclaveType,
    /// Host path of the PAL shared object.
    pub runtime_path: PathBuf,
    /// Runtime args, commas turned into spaces.
    pub args: String,
    pub log_level: String,
}

/// Reads the enclave configuration of `spec`: `None` for a plain container.
pub fn config_from_spec(spec: &Spec) -> Result<Option<EnclaveConfig>> {
    let env: &[String] = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().as_deref())
        .unwrap_or(&[]);
    let annotations = spec.annotations().as_ref();
    let get = |(var, annotation): (&str, &str)| -> Option<String> {
        // The env wins; as in the original, a value of one character or less counts as
        // unset and the annotation is used.
        let from_env = env
            .iter()
            .find_map(|kv| kv.strip_prefix(var).and_then(|r| r.strip_prefix('=')))
            .filter(|v| v.len() > 1);
        from_env
            .map(str::to_string)
            .or_else(|| annotations.and_then(|a| a.get(annotation)).cloned())
            .filter(|v| !v.is_empty())
    };
    let Some(typ) = get(TYPE) else {
        return Ok(None);
    };
    let typ = EnclaveType::parse(&typ)?;
    let runtime_path = get(PATH).map(PathBuf::from).ok_or_else(|| {
        RuneError::Enclave(format!(
            "{} enclave: the runtime path is not configured (set ENCLAVE_RUNTIME_PATH or the enclave.runtime.path annotation)",
            typ.name()
        ))
    })?;
    if !runtime_path.is_absolute() {
        return Err(RuneError::Enclave(format!(
            "enclave runtime path {} is not absolute",
            runtime_path.display()
        )));
    }
    let args = get(ARGS)
        .map(|a| a.split(',').collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let log_level = get(LOG_LEVEL)
        .filter(|l| LOG_LEVELS.contains(&l.as_str()))
        .unwrap_or_else(|| "info".to_string());
    Ok(Some(EnclaveConfig {
        typ,
        runtime_path,
        args,
        log_level,
    }))
}

/// True for the variables rune consumes and removes from the container's environment.
pub fn is_enclave_var(name: &str) -> bool {
    name.starts_with("ENCLAVE_")
}

/// What the host offers for SGX, read from the kernel's interfaces under `root` (`/` on
/// a real host; tests pass a directory laid out the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxHost {
    /// CPUID.(EAX=7,ECX=0):EBX[2], as the kernel reports it in `/proc/cpuinfo`.
    pub cpu_flag: bool,
    /// The enclave device node found, if any.
    pub device: Option<PathBuf>,
}

impl SgxHost {
    pub fn probe(root: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
        let cpu_flag = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "sgx"));
        let device = ["dev/sgx_enclave", "dev/sgx/enclave"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.exists());
        SgxHost { cpu_flag, device }
    }
}

/// Checks that the host can run `typ`, saying what was found when it cannot.
pub fn check_host(typ: EnclaveType, root: &Path) -> Result<()> {
    match typ {
        EnclaveType::Sim => Ok(()),
        EnclaveType::IntelSgx => {
            let host = SgxHost::probe(root);
            if host.cpu_flag && host.device.is_some() {
                return Ok(());
            }
            Err(RuneError::Enclave(format!(
                "enclave type intelSgx needs SGX hardware, but this host has {} and {} \
                 (use ENCLAVE_TYPE=sim for the software enclave)",
                if host.cpu_flag {
                    "the CPU's sgx flag"
                } else {
                    "no sgx flag in /proc/cpuinfo"
                },
                match &host.device {
                    Some(d) => format!("{}", d.display()),
                    None => "neither /dev/sgx_enclave nor /dev/sgx/enclave".to_string(),
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(env: &[&str], annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        let a: HashMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec.set_annotations(Some(a));
        spec
    }

    #[test]
    fn no_type_is_a_plain_container() {
        assert_eq!(config_from_spec(&spec(&["PATH=/bin"], &[])).unwrap(), None);
    }

    #[test]
    fn env_wins_over_annotations_and_args_lose_their_commas() {
        let s = spec(
            &[
                "ENCLAVE_TYPE=sim",
                "ENCLAVE_RUNTIME_ARGS=debug,wait_timeout,5",
            ],
            &[
                ("enclave.type", "intelSgx"),
                ("enclave.runtime.path", "/usr/lib/liberpal-sim.so"),
                ("enclave.runtime.args", "ignored"),
                ("enclave.runtime.loglevel", "debug"),
            ],
        );
        let c = config_from_spec(&s).unwrap().unwrap();
        assert_eq!(c.typ, EnclaveType::Sim);
        assert_eq!(c.runtime_path, PathBuf::from("/usr/lib/liberpal-sim.so"));
        assert_eq!(c.args, "debug wait_timeout 5");
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn one_character_env_values_fall_back_and_bad_levels_become_info() {
        let s = spec(
            &[
                "ENCLAVE_TYPE=x",
                "ENCLAVE_RUNTIME_PATH=/p.so",
                "ENCLAVE_RUNTIME_LOGLEVEL=loud",
            ],
            &[("enclave.type", "sim")],
        );
        let c = config_from_spec(&s).unwrap().unwrap();
        assert_eq!((c.typ, c.log_level.as_str()), (EnclaveType::Sim, "info"));
    }

    #[test]
    fn unknown_type_and_missing_path_are_errors() {
        let err = config_from_spec(&spec(&["ENCLAVE_TYPE=tdx"], &[])).unwrap_err();
        assert!(
            err.to_string().contains("\"tdx\" is not supported"),
            "{err}"
        );
        let err = config_from_spec(&spec(&["ENCLAVE_TYPE=sim"], &[])).unwrap_err();
        assert!(
            err.to_string().contains("runtime path is not configured"),
            "{err}"
        );
    }

    #[test]
    fn sgx_host_probe_reads_cpuinfo_and_device_nodes() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        std::fs::create_dir_all(root.path().join("dev/sgx")).unwrap();
        std::fs::write(root.path().join("proc/cpuinfo"), "flags\t: fpu vme\n").unwrap();
        let err = check_host(EnclaveType::IntelSgx, root.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no sgx flag") && err.contains("neither /dev/sgx_enclave"),
            "{err}"
        );
        std::fs::write(
            root.path().join("proc/cpuinfo"),
            "flags\t: fpu sgx sgx_lc\n",
        )
        .unwrap();
        std::fs::write(root.path().join("dev/sgx/enclave"), "").unwrap();
        check_host(EnclaveType::IntelSgx, root.path()).unwrap();
        check_host(EnclaveType::Sim, Path::new("/nonexistent")).unwrap();
    }
}
