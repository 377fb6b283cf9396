//! A private podman: its own root, run root and temporary directory under a temporary
//! directory, the vfs driver and cgroupfs, no events; the runtime chosen per command.

use std::path::Path;
use std::process::Command;

use super::{run, unmount_under};

/// Arguments every `podman run` of the tests takes: no network, and rlimits within what
/// sandboxes allow (podman asks for more by default).
pub const RUN_BASE: [&str; 6] = [
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Self {
        Podman {
            dir: tempfile::Builder::new().prefix("podman").tempdir().unwrap(),
        }
    }

    /// `podman --runtime RUNTIME ARGS…`: (exit code, stdout, stderr).
    pub fn cmd(&self, runtime: &str, args: &[&str]) -> (i32, String, String) {
        run(&mut self.command(runtime, args))
    }

    /// The command [`Podman::cmd`] runs, for a caller that chooses its stdio.
    pub fn command(&self, runtime: &str, args: &[&str]) -> Command {
        let p = |name: &str| self.dir.path().join(name);
        let mut c = Command::new("/usr/bin/podman");
        c.arg("--root")
            .arg(p("root"))
            .arg("--runroot")
            .arg(p("runroot"))
            .arg("--tmpdir")
            .arg(p("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
                "--runtime",
                runtime,
            ])
            .args(args);
        c
    }

    /// Imports the root filesystem tarball `tar` as image `name`.
    pub fn import(&self, tar: &Path, name: &str) {
        let (code, _, err) = self.cmd(super::RUNE, &["import", tar.to_str().unwrap(), name]);
        assert_eq!(code, 0, "podman import: {err}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}
