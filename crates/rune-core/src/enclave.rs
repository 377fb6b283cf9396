//! Enclave containers: which enclave runtime a container asks for, and whether the host
//! can give it.
//!
//! The configuration comes from `ENCLAVE_*` variables in `process.env`, falling back to
//! `enclave.*` annotations, exactly as Inclavare's rune reads it. Without a type the
//! container is a plain one and nothing here applies.
//!
//! **Init-data** (Confidential Containers' TOML document: `version`, `algorithm`,
//! `[data]`; see `measurement::initdata`) is given as the document itself in
//! `ENCLAVE_INIT_DATA` / the `enclave.init.data` annotation, or as a host path in
//! `ENCLAVE_INIT_DATA_FILE` / `enclave.init.data.file` (read at `create`). It is checked
//! at `create` (one line: not TOML, unknown algorithm, …) and passed to `liberpal-sim`
//! as the runtime arg `init_data=<base64>`, which binds its digest into the report's
//! config id. Only `sim` enclaves take it: the PAL API has no config-id argument, so an
//! SGX enclave gets its KSS `CONFIGID` from the enclave runtime's own launcher (Occlum:
//! `occlum run --config-id`).

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, Mount,
    MountBuilder, Spec,
};

use crate::error::{Result, RuneError};

/// Environment variables and the annotations they fall back to.
const TYPE: (&str, &str) = ("ENCLAVE_TYPE", "enclave.type");
const PATH: (&str, &str) = ("ENCLAVE_RUNTIME_PATH", "enclave.runtime.path");
const ARGS: (&str, &str) = ("ENCLAVE_RUNTIME_ARGS", "enclave.runtime.args");
const LOG_LEVEL: (&str, &str) = ("ENCLAVE_RUNTIME_LOGLEVEL", "enclave.runtime.loglevel");
const INIT_DATA: (&str, &str) = ("ENCLAVE_INIT_DATA", "enclave.init.data");
const INIT_DATA_FILE: (&str, &str) = ("ENCLAVE_INIT_DATA_FILE", "enclave.init.data.file");
/// The enclave's settings read here (the image's are in `crate::image`).
pub(crate) const SETTINGS: [(&str, &str); 6] =
    [TYPE, PATH, ARGS, LOG_LEVEL, INIT_DATA, INIT_DATA_FILE];

/// The log levels a PAL accepts; anything else becomes `info`.
const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "error", "fatal", "panic", "off",
];

/// The tasks an enclave container's init needs besides its program's: its main thread,
/// the agent serving `rune exec` and `rune attest`, the signal forwarder and the PAL's
/// evidence channel (`liberpal-sim`). Tasks are what `pids.max` counts (threads too).
pub const ENCLAVE_RUNTIME_TASKS: i64 = 4;

/// Refuses a `linux.resources.pids.limit` that leaves an enclave container's program no
/// task (see [`ENCLAVE_RUNTIME_TASKS`]): the init would fail after `start`, half set up.
/// Zero or negative means no limit (runtime-spec config-linux.md "pids").
pub fn check_pids_limit(spec: &Spec) -> Result<()> {
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.pids().as_ref())
        .map(|p| p.limit());
    match limit {
        Some(limit) if limit > 0 && limit <= ENCLAVE_RUNTIME_TASKS => Err(RuneError::config(
            "linux.resources.pids.limit",
            format!(
                "{limit} leaves an enclave container's program no task: its enclave runtime takes {ENCLAVE_RUNTIME_TASKS}, so the limit must be at least {}",
                ENCLAVE_RUNTIME_TASKS + 1
            ),
        )),
        _ => Ok(()),
    }
}

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
    /// The init-data document, checked (`measurement::initdata`).
    pub init_data: Option<String>,
}

impl EnclaveConfig {
    /// The runtime args `pal_init` gets: the configured ones, and the init-data as
    /// `init_data=<standard base64>` when there is one.
    pub fn pal_args(&self) -> String {
        use base64::Engine as _;
        match &self.init_data {
            None => self.args.clone(),
            Some(doc) => {
                let arg = format!(
                    "init_data={}",
                    base64::engine::general_purpose::STANDARD.encode(doc)
                );
                if self.args.is_empty() {
                    arg
                } else {
                    format!("{} {arg}", self.args)
                }
            }
        }
    }
}

/// The init-data of `spec`, read and checked: the document from `ENCLAVE_INIT_DATA`
/// (or its annotation), or the host file `ENCLAVE_INIT_DATA_FILE` names.
///
/// Confidential Containers' pod annotation [`COCO_INIT_DATA`] (base64 of the gzipped
/// document, as kata and CoCo's guest-components take it) is read when neither is set.
fn init_data(spec: &Spec, typ: EnclaveType) -> Result<Option<String>> {
    let err = |m: String| Err(RuneError::Enclave(m));
    let coco = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(COCO_INIT_DATA))
        .filter(|v| !v.is_empty());
    let doc = match (setting(spec, INIT_DATA), setting(spec, INIT_DATA_FILE)) {
        (None, None) => match coco {
            None => return Ok(None),
            Some(packed) => unpack_coco_init_data(packed)?,
        },
        (Some(_), _) | (_, Some(_)) if coco.is_some() => {
            return err(format!(
            "init-data: set ENCLAVE_INIT_DATA(_FILE) or the {COCO_INIT_DATA} annotation, not both"
        ))
        }
        (Some(_), Some(_)) => {
            return err(
                "init-data: set ENCLAVE_INIT_DATA or ENCLAVE_INIT_DATA_FILE, not both".into(),
            )
        }
        (Some(doc), None) => doc,
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return err(format!("init-data file {} is not absolute", path.display()));
            }
            // A regular file, read up to the bound (`/dev/zero` would never end).
            let file_err =
                |e: String| RuneError::Enclave(format!("init-data file {}: {e}", path.display()));
            let f = std::fs::File::open(&path).map_err(|e| file_err(e.to_string()))?;
            if !f.metadata().map_err(|e| file_err(e.to_string()))?.is_file() {
                return Err(file_err("not a regular file".into()));
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_INIT_DATA + 1), &mut bytes)
                .map_err(|e| file_err(e.to_string()))?;
            if bytes.len() as u64 > MAX_INIT_DATA {
                return Err(file_err(format!("larger than {MAX_INIT_DATA} bytes")));
            }
            String::from_utf8(bytes).map_err(|_| {
                RuneError::Enclave(format!("init-data file {}: not UTF-8", path.display()))
            })?
        }
    };
    if typ != EnclaveType::Sim {
        return err(format!(
            "init-data: an {} enclave cannot bind it (rune binds init-data only for sim; for SGX launch with the enclave runtime's KSS config id, e.g. occlum run --config-id)",
            typ.name()
        ));
    }
    measurement::initdata::InitData::parse(&doc).map_err(|e| RuneError::Enclave(e.to_string()))?;
    Ok(Some(doc))
}

/// Confidential Containers' init-data annotation: base64 (standard) of the gzipped TOML
/// document (CoCo's "initdata" design; kata's `cc_init_data`).
pub const COCO_INIT_DATA: &str = "io.katacontainers.config.hypervisor.cc_init_data";

/// The largest init-data document taken from the annotation once unzipped (CoCo's
/// agent takes documents well below this; the bound stops a zip bomb).
const MAX_INIT_DATA: u64 = 256 * 1024;

/// The document in a [`COCO_INIT_DATA`] value: base64, then gzip, then UTF-8 text.
fn unpack_coco_init_data(packed: &str) -> Result<String> {
    use base64::Engine as _;
    use std::io::Read;
    let bad = |why: String| RuneError::Enclave(format!("init-data ({COCO_INIT_DATA}): {why}"));
    let gz = base64::engine::general_purpose::STANDARD
        .decode(packed.trim())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let mut doc = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_INIT_DATA + 1)
        .read_to_end(&mut doc)
        .map_err(|e| bad(format!("not gzip: {e}")))?;
    if doc.len() as u64 > MAX_INIT_DATA {
        return Err(bad(format!("larger than {MAX_INIT_DATA} bytes unzipped")));
    }
    String::from_utf8(doc).map_err(|_| bad("not UTF-8".into()))
}

/// Reads the enclave configuration of `spec`: `None` for a plain container.
pub fn config_from_spec(spec: &Spec) -> Result<Option<EnclaveConfig>> {
    let get = |pair| setting(spec, pair);
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
    let init_data = init_data(spec, typ)?;
    Ok(Some(EnclaveConfig {
        typ,
        runtime_path,
        args,
        log_level,
        init_data,
    }))
}

/// The value of an `ENCLAVE_*` variable of `process.env`, else of its annotation.
/// As in the original, an environment value of one character or less counts as unset
/// and the annotation is used; an empty result is `None`.
pub(crate) fn setting(spec: &Spec, (var, annotation): (&str, &str)) -> Option<String> {
    let env: &[String] = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().as_deref())
        .unwrap_or(&[]);
    env.iter()
        .find_map(|kv| kv.strip_prefix(var).and_then(|r| r.strip_prefix('=')))
        .filter(|v| v.len() > 1)
        .map(str::to_string)
        .or_else(|| {
            spec.annotations()
                .as_ref()
                .and_then(|a| a.get(annotation))
                .cloned()
        })
        .filter(|v| !v.is_empty())
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

/// Environment variable naming the directory under which rune reads the host's
/// hardware interfaces (`proc/cpuinfo`, `dev/sgx*`, `var/run/aesmd`). Default `/`; tests
/// point it at a directory laid out like a host with SGX.
pub const HOST_ROOT_ENV: &str = "RUNE_HOST_ROOT";

/// `$RUNE_HOST_ROOT` or `/`.
pub fn host_root() -> PathBuf {
    std::env::var_os(HOST_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
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

/// SGX device nodes a container may need, as the kernel (in-tree `/dev/sgx_*`, udev's
/// `/dev/sgx/*` links) and the out-of-tree drivers (`isgx`, `gsgx`) name them.
const SGX_DEVICES: &[&str] = &[
    "/dev/sgx_enclave",
    "/dev/sgx/enclave",
    "/dev/sgx_provision",
    "/dev/sgx/provision",
    "/dev/isgx",
    "/dev/gsgx",
];
/// The misc character devices' major number, which every SGX device node has.
const MISC_MAJOR: u64 = 10;
/// Host services an SGX enclave talks to: the architectural enclave service (quotes,
/// launch tokens) and the enclave pool manager. Each with the destinations that count
/// as "already mounted".
const SGX_SERVICES: &[(&str, &[&str])] = &[
    ("/var/run/aesmd", &["/var/run/aesmd", "/run/aesmd"]),
    ("/var/run/epm", &["/var/run/epm", "/run/epm"]),
];

/// What an `intelSgx` container gets from the host, found under `root` (`/` on a real
/// host; tests pass a directory laid out the same way).
#[derive(Debug, Default, PartialEq)]
pub struct SgxInjection {
    /// Device nodes (char, major 10) not already in the spec, with their container path.
    pub devices: Vec<LinuxDevice>,
    /// `rbind` mounts of the host's aesmd and epm directories.
    pub mounts: Vec<Mount>,
}

impl SgxInjection {
    /// Finds what the host offers and the spec lacks. A `/dev/sgx/*` symlink keeps its
    /// path in the container, with the numbers of the node it points to.
    pub fn probe(root: &Path, spec: &Spec) -> Result<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let in_spec: Vec<PathBuf> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default()
            .iter()
            .map(|d| d.path().clone())
            .collect();
        let mut devices = Vec::new();
        for dev in SGX_DEVICES {
            let host = root.join(dev.trim_start_matches('/'));
            let Ok(meta) = std::fs::metadata(&host) else {
                continue;
            };
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
            if !meta.file_type().is_char_device() || major != MISC_MAJOR {
                continue;
            }
            if in_spec.iter().any(|p| p == Path::new(dev)) {
                continue;
            }
            let device = LinuxDeviceBuilder::default()
                .path(*dev)
                .typ(LinuxDeviceType::C)
                .major(major as i64)
                .minor(minor as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(|e| RuneError::Enclave(format!("device {dev}: {e}")))?;
            devices.push(device);
        }
        let mounted: Vec<PathBuf> = spec
            .mounts()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        let mut mounts = Vec::new();
        for (dir, taken) in SGX_SERVICES {
            let host = root.join(dir.trim_start_matches('/'));
            if !host.is_dir()
                || taken
                    .iter()
                    .any(|t| mounted.iter().any(|m| m == Path::new(t)))
            {
                continue;
            }
            let mount = MountBuilder::default()
                .destination(*dir)
                .typ("bind")
                .source(host)
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()
                .map_err(|e| RuneError::Enclave(format!("mount {dir}: {e}")))?;
            mounts.push(mount);
        }
        Ok(SgxInjection { devices, mounts })
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.mounts.is_empty()
    }

    /// Adds the devices (each with an `rwm` allow rule for the device cgroup) and the
    /// mounts to `spec`.
    pub fn apply(&self, spec: &mut Spec) -> Result<()> {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut devices = linux.devices().clone().unwrap_or_default();
        devices.extend(self.devices.iter().cloned());
        linux.set_devices(Some(devices));
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        for d in &self.devices {
            rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(d.major())
                    .minor(d.minor())
                    .access("rwm")
                    .build()
                    .map_err(|e| RuneError::Enclave(format!("device rule: {e}")))?,
            );
        }
        resources.set_devices(Some(rules));
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.extend(self.mounts.iter().cloned());
        spec.set_mounts(Some(mounts));
        Ok(())
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

    const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"a\" = \"b\"\n";

    /// CoCo's annotation, packed by the real tools as CoCo's docs do (`gzip | base64
    /// -w0`): the same document as given directly; bad packing is one line each.
    #[test]
    fn cocos_init_data_annotation_is_read() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut gzip = Command::new("sh")
            .args(["-c", "gzip -c | base64 -w0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        gzip.stdin
            .take()
            .unwrap()
            .write_all(DOC.as_bytes())
            .unwrap();
        let packed = String::from_utf8(gzip.wait_with_output().unwrap().stdout).unwrap();
        let env = [
            "ENCLAVE_TYPE=sim",
            "ENCLAVE_RUNTIME_PATH=/usr/lib/liberpal-sim.so",
        ];
        let c = config_from_spec(&spec(&env, &[(COCO_INIT_DATA, &packed)]))
            .unwrap()
            .unwrap();
        assert_eq!(c.init_data.as_deref(), Some(DOC));
        for (value, why) in [("not base64!", "not base64"), ("aGVsbG8=", "not gzip")] {
            let e = config_from_spec(&spec(&env, &[(COCO_INIT_DATA, value)])).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains(why) && e.contains(COCO_INIT_DATA) && !e.contains('\n'),
                "{e}"
            );
        }
        let both = format!("ENCLAVE_INIT_DATA={DOC}");
        let e = config_from_spec(&spec(
            &[env[0], env[1], &both],
            &[(COCO_INIT_DATA, &packed)],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn init_data_is_read_checked_and_passed_to_the_pal() {
        use base64::Engine as _;
        let sim = |extra: &[&str], ann: &[(&str, &str)]| {
            let mut env = vec![
                "ENCLAVE_TYPE=sim",
                "ENCLAVE_RUNTIME_PATH=/usr/lib/liberpal-sim.so",
                "ENCLAVE_RUNTIME_ARGS=debug",
            ];
            env.extend_from_slice(extra);
            config_from_spec(&spec(&env, ann))
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(DOC);
        // From the variable, from the annotation, from a file: the same document.
        let env_var = format!("ENCLAVE_INIT_DATA={DOC}");
        let c = sim(&[&env_var], &[]).unwrap().unwrap();
        assert_eq!(c.init_data.as_deref(), Some(DOC));
        assert_eq!(c.pal_args(), format!("debug init_data={b64}"));
        let c = sim(&[], &[("enclave.init.data", DOC)]).unwrap().unwrap();
        assert_eq!(c.init_data.as_deref(), Some(DOC));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("init.toml");
        std::fs::write(&file, DOC).unwrap();
        let file_var = format!("ENCLAVE_INIT_DATA_FILE={}", file.display());
        let c = sim(&[&file_var], &[]).unwrap().unwrap();
        assert_eq!(c.init_data.as_deref(), Some(DOC));
        let c = sim(&[], &[]).unwrap().unwrap();
        assert_eq!(
            (c.init_data.clone(), c.pal_args()),
            (None, "debug".to_string())
        );

        // Each bad input: one line at create.
        let bad_alg = format!("ENCLAVE_INIT_DATA={}", DOC.replace("sha384", "sha-384"));
        let missing = "ENCLAVE_INIT_DATA_FILE=/nonexistent/init.toml".to_string();
        for (env, want) in [
            (
                vec!["ENCLAVE_INIT_DATA=not toml ==="],
                "init-data: not TOML (line 1)",
            ),
            (
                vec![bad_alg.as_str()],
                "init-data: unknown algorithm \"sha-384\"",
            ),
            (
                vec![missing.as_str()],
                "init-data file /nonexistent/init.toml: ",
            ),
            (vec!["ENCLAVE_INIT_DATA_FILE=init.toml"], "is not absolute"),
            (vec![env_var.as_str(), file_var.as_str()], "not both"),
            (
                vec!["ENCLAVE_INIT_DATA_FILE=/dev/zero"],
                "init-data file /dev/zero: not a regular file",
            ),
        ] {
            let e = sim(&env, &[]).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains('\n'), "{want}: {e}");
        }
        let e = config_from_spec(&spec(
            &[
                "ENCLAVE_TYPE=intelSgx",
                "ENCLAVE_RUNTIME_PATH=/p.so",
                &env_var,
            ],
            &[],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("an intelSgx enclave cannot bind it") && e.contains("--config-id"),
            "{e}"
        );
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

    /// A directory laid out like a host with the in-tree SGX driver and udev's links:
    /// real character device nodes (major 10), a symlink, a non-misc decoy, aesmd.
    #[test]
    fn sgx_injection_follows_the_kernels_device_layout() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped sgx_injection_follows_the_kernels_device_layout: needs root (mknod)"
            );
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dev/sgx")).unwrap();
        std::fs::create_dir_all(r.join("var/run/aesmd")).unwrap();
        let node = |name: &str, major: u64, minor: u64| {
            mknod(
                &r.join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(r.join(name), std::fs::Permissions::from_mode(0o666)).unwrap();
        };
        node("dev/sgx_enclave", 10, 125);
        node("dev/sgx_provision", 10, 126);
        std::os::unix::fs::symlink("../sgx_enclave", r.join("dev/sgx/enclave")).unwrap();
        node("dev/isgx", 240, 0); // not a misc device: ignored
        std::fs::write(r.join("dev/gsgx"), "").unwrap(); // not a device: ignored

        let mut spec = Spec::default();
        let found = SgxInjection::probe(r, &spec).unwrap();
        let got: Vec<(String, i64, i64, u32)> = found
            .devices
            .iter()
            .map(|d| {
                (
                    d.path().display().to_string(),
                    d.major(),
                    d.minor(),
                    d.file_mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/dev/sgx_enclave".into(), 10, 125, 0o666),
                ("/dev/sgx/enclave".into(), 10, 125, 0o666),
                ("/dev/sgx_provision".into(), 10, 126, 0o666),
            ]
        );
        assert_eq!(found.mounts.len(), 1, "aesmd only: there is no epm");
        let m = &found.mounts[0];
        assert_eq!(m.destination(), Path::new("/var/run/aesmd"));
        assert_eq!(
            m.source().as_deref(),
            Some(r.join("var/run/aesmd").as_path())
        );
        assert_eq!(
            m.options().clone().unwrap(),
            vec!["rbind".to_string(), "rprivate".to_string()]
        );

        found.apply(&mut spec).unwrap();
        let linux = spec.linux().clone().unwrap();
        assert_eq!(linux.devices().clone().unwrap().len(), 3);
        let rules = linux
            .resources()
            .clone()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        let injected: Vec<_> = rules
            .iter()
            .filter(|r| r.access().as_deref() == Some("rwm") && r.allow())
            .map(|r| (r.major(), r.minor()))
            .collect();
        assert_eq!(
            injected,
            vec![
                (Some(10), Some(125)),
                (Some(10), Some(125)),
                (Some(10), Some(126))
            ]
        );

        // Nothing is added twice: a second probe of the injected spec finds nothing.
        let again = SgxInjection::probe(r, &spec).unwrap();
        assert!(again.is_empty(), "{again:?}");
        // A spec that mounts aesmd at /run/aesmd already gets no second mount.
        let mut other = Spec::default();
        other.set_mounts(Some(vec![MountBuilder::default()
            .destination("/run/aesmd")
            .typ("bind")
            .source("/elsewhere")
            .build()
            .unwrap()]));
        assert!(SgxInjection::probe(r, &other).unwrap().mounts.is_empty());
    }
}
