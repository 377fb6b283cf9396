//! Documents rune writes rather than reads: the default bundle spec (`rune spec`) and
//! the runtime features document (`rune features`).

use libcontainer::oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxNamespaceType, Spec};
use serde_json::{json, Value};

/// The spec `rune spec` writes: runc's default (runc 1.1 `libcontainer/specconv`
/// `Example()`: a `sh` with a terminal, in new pid/net/ipc/uts/mount namespaces, every
/// device denied but the defaults, no inheritable capabilities), or its rootless variant
/// for the given ids. Only the hostname differs (`rune`).
///
/// oci-spec's `Spec::default()` departs from runc's in four ways this undoes: it has no
/// terminal, adds a cgroup namespace, leaves out the deny-all device rule, and fills the inheritable
/// capability set (runc dropped it for CVE-2022-29162: a program given inheritable
/// capabilities keeps them across `execve` of a file with matching file capabilities).
pub fn default_spec(rootless: Option<(u32, u32)>) -> Spec {
    let mut spec = match rootless {
        Some((uid, gid)) => Spec::rootless(uid, gid),
        None => Spec::default(),
    };
    spec.set_hostname(Some("rune".to_string()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            process.set_capabilities(Some(caps));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Cgroup);
        }
        if rootless.is_none() {
            let mut resources = linux.resources().clone().unwrap_or_default();
            if let Ok(deny_all) = LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
            {
                resources.set_devices(Some(vec![deny_all]));
            }
            linux.set_resources(Some(resources));
        }
    }
    spec
}

/// Where `rune spec --enclave sim` points when no runtime path is given.
pub const DEFAULT_SIM_PAL: &str = "/usr/local/lib/rune/liberpal-sim.so";
/// Where `rune spec --enclave intelSgx` points: Occlum's PAL.
pub const DEFAULT_SGX_PAL: &str = "/opt/occlum/build/lib/libocclum-pal.so";

/// Turns `spec` into an enclave container of `kind` (`sim` or `intelSgx`), as
/// Inclavare's `rune spec` does: the `enclave.*` annotations, and for SGX the aesmd
/// socket directory bound in.
pub fn make_enclave(spec: &mut Spec, kind: &str, runtime_path: Option<&std::path::Path>) {
    use libcontainer::oci_spec::runtime::MountBuilder;
    let default = if kind == "sim" {
        DEFAULT_SIM_PAL
    } else {
        DEFAULT_SGX_PAL
    };
    let path = runtime_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| default.to_string());
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert("enclave.type".into(), kind.into());
    annotations.insert("enclave.runtime.path".into(), path);
    annotations.insert("enclave.runtime.args".into(), "debug".into());
    annotations.insert("enclave.runtime.loglevel".into(), "info".into());
    spec.set_annotations(Some(annotations));
    if kind == "intelSgx" {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        if let Ok(m) = MountBuilder::default()
            .destination("/var/run/aesmd")
            .typ("bind")
            .source("/var/run/aesmd")
            .options(vec!["rbind".to_string(), "rprivate".to_string()])
            .build()
        {
            mounts.push(m);
        }
        spec.set_mounts(Some(mounts));
    }
}

/// The `features` document of the OCI runtime spec (runtime-spec `features.md`).
pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
            "exec", "iversion", "lazytime", "loud", "mand", "noatime", "nodev",
            "nodiratime", "noexec", "noiversion", "nolazytime", "nomand", "norelatime",
            "nostrictatime", "nosuid", "nosymfollow", "private", "rbind", "relatime",
            "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync",
            "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": libcontainer_capabilities(),
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": true },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                    "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                    "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"]
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true }
        },
        "annotations": {
            "org.opencontainers.runc.version": env!("CARGO_PKG_VERSION"),
            "io.inclavare.rune.enclave.types": "sim,intelSgx"
        }
    })
}

fn libcontainer_capabilities() -> Vec<String> {
    use libcontainer::oci_spec::runtime::Capability;
    use std::str::FromStr;
    // Every name the kernel headers define up to CAP_CHECKPOINT_RESTORE (40).
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    // oci-spec parses the names without the CAP_ prefix; keep those it knows.
    NAMES
        .iter()
        .filter(|n| Capability::from_str(n).is_ok())
        .map(|n| format!("CAP_{n}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_lists_every_capability_and_hook() {
        let f = super::features();
        assert_eq!(f["linux"]["capabilities"].as_array().unwrap().len(), 41);
        assert_eq!(f["hooks"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn enclave_spec_round_trips_through_the_enclave_config() {
        let mut s = super::default_spec(None);
        super::make_enclave(&mut s, "sim", Some(std::path::Path::new("/x/pal.so")));
        let c = crate::enclave::config_from_spec(&s).unwrap().unwrap();
        assert_eq!(c.typ, crate::enclave::EnclaveType::Sim);
        assert_eq!(c.runtime_path, std::path::PathBuf::from("/x/pal.so"));
        assert_eq!(c.args, "debug");
        let mut s = super::default_spec(None);
        super::make_enclave(&mut s, "intelSgx", None);
        assert!(s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination().to_str() == Some("/var/run/aesmd")));
    }

    #[test]
    fn default_spec_runs_sh_in_rootfs() {
        let s = super::default_spec(None);
        assert_eq!(s.root().as_ref().unwrap().path().to_str(), Some("rootfs"));
        assert_eq!(
            s.process().as_ref().unwrap().args().as_ref().unwrap()[0],
            "sh"
        );
    }
}
