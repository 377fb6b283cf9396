//! What the parity tests share: runc's path, running either runtime with a private
//! state root, and reading back their failures.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// Debian's runc (`make test` installs it): the peer every parity case compares with.
pub const RUNC: &str = "/usr/sbin/runc";

/// True (after one line saying why) unless root with runc installed.
pub fn skip(test: &str) -> bool {
    !(root_or_skip(test) && tool_or_skip(test, RUNC))
}

/// A directory the container writes its findings to, bound at /tmp, writable by any user.
pub fn out_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// `rt --root ROOT ARGS…` with stdio in files: (exit code, stdout, stderr).
pub fn runtime(rt: &str, root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(rt);
    c.arg("--root").arg(root).args(args);
    run(&mut c)
}

/// `rt --root ROOT ARGS…` started in the background, stdio in files.
pub fn spawn(rt: &str, root: &Path, args: &[&str]) -> (Child, std::fs::File, std::fs::File) {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let child = Command::new(rt)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    (child, out, err)
}

/// The child's exit code once it ends within `secs`; otherwise it is killed and None.
pub fn wait_or_kill(child: &mut Child, secs: u64) -> Option<i32> {
    let mut status = None;
    wait_until(Duration::from_secs(secs), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status.map(|s| s.code().unwrap_or(-1))
}

/// (exit code, whether stderr is exactly one `level=error` line, its message).
pub fn failure(r: &(i32, String, String)) -> (i32, bool, String) {
    let lines = error_lines(&r.2);
    let one = lines.len() == 1 && r.2.lines().count() == 1;
    let msg = error_messages(&r.2).pop().unwrap_or_default();
    (r.0, one, msg)
}

/// `run -d` of `b` under `rt` as `id`; returns the init's pid.
pub fn run_detached(rt: &str, root: &Path, b: &Bundle, id: &str) -> String {
    let pid_file = root.join("init.pid");
    let (code, _, err) = runtime(
        rt,
        root,
        &[
            "run",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            id,
        ],
    );
    assert_eq!(code, 0, "{rt} run -d: {err}");
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .to_string()
}
