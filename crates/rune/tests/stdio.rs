//! Standard streams: every kind of fd 0, 1 and 2 a caller can give (`/dev/null` opened
//! read-only, write-only or read-write, a pipe, a file) reaches the container's program
//! as it does with runc, for `run`, `create` + `start` and `exec`. The expected values are
//! runc's, measured on the same bundle in the same test (Debian's runc, which `make test`
//! installs).

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const RUNC: &str = "/usr/sbin/runc";

/// Writes to each of fds 0-2 and reads a line from fd 0; the findings go to /out/r,
/// which the host reads. `echo` to fd 1 is the issue's example: it failed with EBADF when
/// stdout was a write-only /dev/null.
const PROBE: &str = r#"for fd in 0 1 2; do
  if (printf x >&$fd) 2>/dev/null; then w=w; else w=-; fi
  printf "$fd$w " >> /out/r
done
if read -r line; then echo "in:$line" >> /out/r; else echo "in:none" >> /out/r; fi
echo hi; exit 7"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    NullRead,
    NullWrite,
    NullReadWrite,
    Pipe,
    File,
}

const KINDS: [Kind; 5] = [
    Kind::NullRead,
    Kind::NullWrite,
    Kind::NullReadWrite,
    Kind::Pipe,
    Kind::File,
];

/// An fd of `kind` for standard stream `fd`; stdin pipes and files hold one line.
fn stream(kind: Kind, fd: usize, dir: &Path) -> Stdio {
    let null = |r: bool, w: bool| OpenOptions::new().read(r).write(w).open("/dev/null");
    match kind {
        Kind::NullRead => null(true, false).unwrap().into(),
        Kind::NullWrite => null(false, true).unwrap().into(),
        Kind::NullReadWrite => null(true, true).unwrap().into(),
        Kind::Pipe => {
            let (reader, mut writer) = std::io::pipe().unwrap();
            if fd == 0 {
                writer.write_all(b"line\n").unwrap();
                drop(writer);
                reader.into()
            } else {
                // Output is small: it fits the pipe's buffer until the reader is dropped
                // with the test; the writer end is the container's.
                std::mem::forget(reader);
                writer.into()
            }
        }
        Kind::File => {
            let path = dir.join(format!("fd{fd}"));
            std::fs::write(&path, "line\n").unwrap();
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
                .into()
        }
    }
}

/// A bundle running `args` with the host's `out` at /tmp.
fn bundle(args: &[&str], out: &Path) -> Bundle {
    Bundle::new(args).bind(out, "/tmp")
}

/// The probe with /out at /tmp (the busybox image has /tmp, and is shared read-only).
fn probe() -> String {
    PROBE.replace("/out/", "/tmp/")
}

/// Runs `runtime` with fd `which` of `kind` and the other two read-write /dev/null;
/// returns what the probe found and the exit code.
fn observe(
    (runtime, root): (&str, &Path),
    mode: &str,
    which: usize,
    kind: Kind,
    out: &Path,
    b: &Bundle,
    id: &str,
) -> (String, Option<i32>) {
    let _ = std::fs::remove_file(out.join("r"));
    let fds: Vec<Stdio> = (0..3)
        .map(|fd| {
            stream(
                if fd == which {
                    kind
                } else {
                    Kind::NullReadWrite
                },
                fd,
                out,
            )
        })
        .collect();
    let mut fds = fds.into_iter();
    let mut cmd = Command::new(runtime);
    cmd.arg("--root").arg(root);
    let probe = probe();
    match mode {
        "run" => cmd.args(["run", "--bundle"]).arg(b.path()).arg(id),
        "run -d" => cmd.args(["run", "-d", "--bundle"]).arg(b.path()).arg(id),
        "create" => cmd.args(["create", "--bundle"]).arg(b.path()).arg(id),
        "exec" => cmd.args(["exec", id, "sh", "-c", &probe]),
        _ => cmd.args(["exec", "-d", id, "sh", "-c", &probe]),
    };
    let status = cmd
        .stdin(fds.next().unwrap())
        .stdout(fds.next().unwrap())
        .stderr(fds.next().unwrap())
        .status()
        .unwrap();
    let code = if mode == "create" || mode.ends_with("-d") {
        assert!(status.success(), "{runtime} {mode}: {status}");
        if mode == "create" {
            let st = Command::new(runtime)
                .arg("--root")
                .arg(root)
                .args(["start", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{runtime} start");
        }
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(out.join("r")).is_ok_and(|r| r.contains("in:"))
        });
        None
    } else {
        Some(status.code().unwrap_or(128 + status.signal().unwrap_or(0)))
    };
    let found = std::fs::read_to_string(out.join("r")).unwrap_or_default();
    if !mode.starts_with("exec") {
        let _ = Command::new(runtime)
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", id])
            .output();
    }
    (found, code)
}

/// runc passes the caller's descriptors to the program when detached (`run -d`,
/// `create`, `exec -d`) and copies them through pipes of its own in the foreground (so
/// there a program cannot write to fd 0 or seek its stdin; crun passes them through
/// always). rune passes them through always: each of rune's modes is held to runc's
/// pass-through result for the same descriptors, and its exit code to the program's.
#[test]
fn every_kind_of_standard_stream_reaches_the_program_as_with_runc() {
    if !root_or_skip("standard streams") || !tool_or_skip("standard streams", RUNC) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let (rune_root, runc_root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let probe = probe();
    let b = bundle(&["sh", "-c", &probe], out.path());
    let sleeper = bundle(&["sleep", "100"], out.path());
    let mut mismatches = Vec::new();
    for (mode, reference) in [("run", "run -d"), ("create", "create"), ("exec", "exec -d")] {
        let (rune_id, runc_id) = (unique_id("stdio"), unique_id("stdio"));
        if mode == "exec" {
            for (runtime, root, id) in [(RUNE, &rune_root, &rune_id), (RUNC, &runc_root, &runc_id)]
            {
                let st = Command::new(runtime)
                    .arg("--root")
                    .arg(root.path())
                    .args(["run", "-d", "--bundle"])
                    .arg(sleeper.path())
                    .arg(id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "{runtime} run -d");
            }
        }
        for which in 0..3 {
            for kind in KINDS {
                let ids = if mode == "exec" {
                    (rune_id.clone(), runc_id.clone())
                } else {
                    (unique_id("stdio"), unique_id("stdio"))
                };
                let rune = observe(
                    (RUNE, rune_root.path()),
                    mode,
                    which,
                    kind,
                    out.path(),
                    &b,
                    &ids.0,
                );
                let runc = observe(
                    (RUNC, runc_root.path()),
                    reference,
                    which,
                    kind,
                    out.path(),
                    &b,
                    &ids.1,
                );
                if rune.0 != runc.0 {
                    mismatches.push(format!(
                        "{mode}, fd {which} {kind:?}: rune {:?}, runc {reference} {:?}",
                        rune.0, runc.0
                    ));
                }
                if mode != "create" && rune.1 != Some(7) {
                    mismatches.push(format!("{mode}, fd {which} {kind:?}: exit {:?}", rune.1));
                }
            }
        }
        if mode == "exec" {
            for (runtime, root, id) in [(RUNE, &rune_root, &rune_id), (RUNC, &runc_root, &runc_id)]
            {
                let _ = Command::new(runtime)
                    .arg("--root")
                    .arg(root.path())
                    .args(["delete", "--force", id])
                    .output();
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    if let Some(left) = std::fs::read_dir(rune_root.path())
        .unwrap()
        .flatten()
        .next()
    {
        panic!("left behind: {}", left.path().display());
    }
}
