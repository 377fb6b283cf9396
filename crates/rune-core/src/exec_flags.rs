//! `exec` flags that need checking or parsing before libcontainer sees them, as runc
//! 1.1's `exec.go` and `libcontainer` treat them: `--cgroup`, `--apparmor` and
//! `--process-label`.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Result, RuneError};

/// Parses `exec --cgroup` arguments (runc's `getSubCgroupPaths`): either one `path`,
/// which moves every hierarchy of the process below the container's cgroup (key `""`),
/// or one or more `controller[,controller…]:path`, each moving the hierarchy of those
/// controllers. More than one `:` in an argument, or a bare path beside other
/// arguments, is refused with runc's words.
pub fn parse_sub_cgroups(args: &[String]) -> Result<HashMap<String, String>> {
    let invalid = |message: String| RuneError::InvalidArgument {
        flag: "--cgroup".into(),
        message,
    };
    let mut paths = HashMap::new();
    for arg in args {
        let parts: Vec<&str> = arg.splitn(3, ':').collect();
        match parts[..] {
            [path] if args.len() == 1 => {
                paths.insert(String::new(), path.to_string());
            }
            [_] => {
                return Err(invalid(format!(
                    "invalid --cgroup argument: {arg} (missing <controller>: prefix)"
                )))
            }
            [controllers, path] => {
                for c in controllers.split(',') {
                    paths.insert(c.to_string(), path.to_string());
                }
            }
            _ => return Err(invalid(format!("invalid --cgroup argument: {arg}"))),
        }
    }
    Ok(paths)
}

/// An LSM flag's value as runc takes it: an empty one sets nothing.
pub fn lsm_value(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// Whether AppArmor can apply a profile here (the test libcontainer and runc make).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether SELinux is enabled here (selinuxfs mounted, as go-selinux's `GetEnabled`).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Refuses `--apparmor` and `--process-label` where the host cannot apply them, before
/// anything runs. runc fails the same exec ("apparmor failed to apply profile", "selinux
/// label is specified in config, but selinux is disabled or not supported").
pub fn check_lsm(apparmor: Option<&str>, process_label: Option<&str>) -> Result<()> {
    let refuse = |flag: &str, value: &str, message: &str| {
        Err(RuneError::InvalidArgument {
            flag: format!("{flag} {value:?}"),
            message: message.into(),
        })
    };
    if let Some(profile) = apparmor.filter(|_| !apparmor_enabled()) {
        return refuse(
            "--apparmor",
            profile,
            "apparmor is not enabled on this host: the profile cannot be applied",
        );
    }
    if let Some(label) = process_label.filter(|_| !selinux_enabled()) {
        return refuse(
            "--process-label",
            label,
            "selinux is disabled or not supported on this host: the label cannot be applied",
        );
    }
    Ok(())
}

/// Refuses the flags that set a process's own cgroups or LSM context for an enclave
/// container: its processes run inside the enclave runtime of the container's init.
pub fn refuse_for_enclave(opts: &crate::ExecOptions) -> Result<()> {
    let own_context = [
        ("--cgroup", !opts.sub_cgroups.is_empty()),
        ("--apparmor", lsm_value(&opts.apparmor).is_some()),
        ("--process-label", lsm_value(&opts.process_label).is_some()),
    ];
    match own_context.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(RuneError::InvalidArgument {
            flag: flag.to_string(),
            message: "not for an enclave container, whose processes run in its enclave runtime"
                .into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sub_cgroups_parse_as_runc_parses_them() {
        let all = parse_sub_cgroups(&args(&["sub"])).unwrap();
        assert_eq!(all, HashMap::from([(String::new(), "sub".into())]));
        let some = parse_sub_cgroups(&args(&["memory,pids:a", "cpu:b/c"])).unwrap();
        assert_eq!(some.len(), 3);
        assert_eq!(some["pids"], "a");
        assert_eq!(some["cpu"], "b/c");
        let err = parse_sub_cgroups(&args(&["a:b:c"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid --cgroup argument: a:b:c"), "{err}");
        let err = parse_sub_cgroups(&args(&["x", "y"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing <controller>: prefix"), "{err}");
        assert!(parse_sub_cgroups(&[]).unwrap().is_empty());
    }

    #[test]
    fn empty_lsm_values_set_nothing() {
        assert_eq!(lsm_value(&Some(String::new())), None);
        assert_eq!(lsm_value(&Some("p".into())), Some("p".into()));
        assert!(check_lsm(None, None).is_ok());
    }
}
