//! The workload seam: what the container's init process runs once `start` is called.
//!
//! [`ProcessExecutor`] runs `process.args` like runc does. It differs from libcontainer's
//! `DefaultExecutor` in one way users hit: a spec without `PATH` in `process.env`
//! (`ctr run --rootfs` writes such specs) is accepted, with runc's default search path.
//! The enclave executor plugs in next to it and declines plain containers with `CantHandle`.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// The search path runc uses when the spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the spec's `process.args` with `execv`, resolving the program on `PATH`.
#[derive(Clone, Default)]
pub struct ProcessExecutor;

impl ProcessExecutor {
    fn args(spec: &Spec) -> Option<&Vec<String>> {
        spec.process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .filter(|a| !a.is_empty())
    }
}

/// The `PATH` the spec's environment gives, or runc's default.
pub fn search_path(spec: &Spec) -> String {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .and_then(|env| env.iter().rev().find_map(|e| e.strip_prefix("PATH=")))
        .unwrap_or(DEFAULT_PATH)
        .to_string()
}

/// Resolves `program` as `execvp` would: names with a slash are taken as they are,
/// others are looked up in each directory of `path` for an executable regular file.
pub fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

impl Executor for ProcessExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let args = Self::args(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("process.args is empty".into())
        })?;
        let program = &args[0];
        match resolve(program, &search_path(spec)) {
            Some(p) if p.exists() => Ok(()),
            Some(p) => Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {:?}: no such file or directory",
                p
            ))),
            None => Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {program:?}: executable file not found in $PATH"
            ))),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = Self::args(spec).ok_or(ExecutorError::InvalidArg)?;
        let program = resolve(&args[0], &search_path(spec))
            .ok_or_else(|| ExecutorError::Execution(format!("{:?} not found", args[0]).into()))?;
        let program = CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        // setup_envs has already replaced the environment with process.env.
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        Err(ExecutorError::Execution(
            format!("exec {:?}: {err}", args[0]).into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_on_path_and_keeps_slashed_names() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("hello");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let nonexec = dir.path().join("data");
        std::fs::write(&nonexec, "x").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(resolve("hello", &path), Some(prog));
        assert_eq!(resolve("data", &path), None);
        assert_eq!(resolve("./x", &path), Some(PathBuf::from("./x")));
    }

    #[test]
    fn default_path_when_spec_has_none() {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(vec!["TERM=xterm".into()]));
        spec.set_process(Some(process.clone()));
        assert_eq!(search_path(&spec), DEFAULT_PATH);
        process.set_env(Some(vec!["PATH=/x:/y".into()]));
        spec.set_process(Some(process));
        assert_eq!(search_path(&spec), "/x:/y");
    }
}
