//! Standard streams: every kind of fd 0, 1 and 2 a caller can give (`/dev/null` opened
//! read-only, write-only or read-write, a pipe, a file, a terminal, a closed fd) reaches
//! the container's program as it does with runc, for `run`, `create` + `start` and
//! `exec`, in plain containers and in enclave containers (the program hosted by rune's
//! init through `liberpal-sim`); and with `process.terminal` the pty master reaches the
//! console socket as runc sends it. The expected values are runc's, measured on the same
//! bundle in the same test (Debian's runc, which `make test` installs): an enclave
//! program is held to what runc's plain program sees for the same streams.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RUNC: &str = "/usr/sbin/runc";

/// For each of fds 0-2: whether a write to it succeeds (`w`), whether it is a terminal
/// (`t`) and what it is (`/proc/self/fd/N`); then a line read from fd 0. The findings
/// go to /out/r, which the host reads. `echo` to fd 1 is the issue's example: it failed
/// with EBADF when stdout was a write-only /dev/null.
const PROBE: &str = r#"for fd in 0 1 2; do
  if (printf x >&8) 8>&$fd 2>/dev/null; then w=w; else w=-; fi
  if test -t $fd; then t=t; else t=-; fi
  printf "$fd$w$t:$(readlink /proc/$$/fd/$fd) " >> /out/r
done
if read -r line; then echo "in:$line" >> /out/r; else echo "in:none" >> /out/r; fi
echo hi; exit 7"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    NullRead,
    NullWrite,
    NullReadWrite,
    Pipe,
    File,
    /// The slave of a pty the test opened (not `process.terminal`: passed through).
    Tty,
    /// Closed in the runtime's process.
    Closed,
}

const KINDS: [Kind; 7] = [
    Kind::NullRead,
    Kind::NullWrite,
    Kind::NullReadWrite,
    Kind::Pipe,
    Kind::File,
    Kind::Tty,
    Kind::Closed,
];

/// An fd of `kind` for standard stream `fd` (`None` for a closed one), and what must stay
/// open meanwhile (a pty's master). Stdin pipes, files and terminals hold one line.
fn stream(kind: Kind, fd: usize, dir: &Path) -> (Option<Stdio>, Option<OwnedFd>) {
    let null = |r: bool, w: bool| OpenOptions::new().read(r).write(w).open("/dev/null");
    let s: Stdio = match kind {
        Kind::NullRead => null(true, false).unwrap().into(),
        Kind::NullWrite => null(false, true).unwrap().into(),
        Kind::NullReadWrite => null(true, true).unwrap().into(),
        Kind::Closed => return (None, None),
        Kind::Tty => {
            let pty = nix::pty::openpty(None, None).unwrap();
            if fd == 0 {
                nix::unistd::write(&pty.master, b"line\n").unwrap();
            }
            return (Some(pty.slave.into()), Some(pty.master));
        }
        Kind::Pipe => {
            let (reader, mut writer) = std::io::pipe().unwrap();
            if fd == 0 {
                writer.write_all(b"line\n").unwrap();
                drop(writer);
                reader.into()
            } else {
                // Output is small: it fits the pipe's buffer; the test keeps the reader.
                return (Some(writer.into()), Some(reader.into()));
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
    };
    (Some(s), None)
}

/// What runs the containers: runc or rune, with its state root.
struct Runtime<'a> {
    bin: &'a str,
    root: &'a Path,
    /// `liberpal-sim`'s platform directory (for rune).
    platform: &'a Path,
}

impl Runtime<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.env("INCLAVARE_SIM_PLATFORM_DIR", self.platform)
            .arg("--root")
            .arg(self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) {
        let st = self.cmd(args).status().unwrap();
        assert!(st.success(), "{} {args:?}: {st}", self.bin);
    }

    fn delete(&self, id: &str) {
        let _ = self.cmd(&["delete", "--force", id]).status();
    }
}

/// The pids `ps` lists for container `id` (its stdout, `[]`-style JSON).
fn container_pids(rt: &Runtime, id: &str) -> String {
    let o = output_via_files(&mut rt.cmd(&["ps", "--format", "json", id]));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A bundle running `args` with the host's `out` at /tmp (the busybox image has /tmp,
/// and is shared read-only); an enclave of `liberpal-sim` with `pal`.
fn bundle(args: &[&str], out: &Path, pal: Option<&Path>) -> Bundle {
    let b = Bundle::new(args).bind(out, "/tmp");
    match pal {
        Some(pal) => b.enclave(pal, "debug"),
        None => b,
    }
}

/// The probe with /out at /tmp.
fn probe() -> String {
    PROBE.replace("/out/", "/tmp/")
}

/// `pipe:[1234]` and `/dev/pts/5` without their numbers, which differ between runs.
fn normalize(found: &str) -> String {
    let mut out = String::new();
    let mut rest = found;
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        if head.ends_with("pipe:[") || head.ends_with("/dev/pts/") {
            out.push('N');
        } else {
            out.push_str(&tail[..digits]);
        }
        rest = &tail[digits..];
    }
    out + rest
}

/// Waits for `path` to hold `marker`; returns its content.
fn wait_for(path: &Path, marker: &str) -> String {
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(path).is_ok_and(|r| r.contains(marker))
    });
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs `rt` in `mode` with fd `which` of `kind` and the other two read-write
/// /dev/null; returns what the probe found and, in the foreground, the exit code.
fn observe(
    rt: &Runtime,
    mode: &str,
    which: usize,
    kind: Kind,
    out: &Path,
    b: &Bundle,
    id: &str,
) -> (String, Option<i32>) {
    let _ = std::fs::remove_file(out.join("r"));
    let mut keep = Vec::new();
    let mut fds = Vec::new();
    for fd in 0..3 {
        let (s, k) = stream(
            if fd == which {
                kind
            } else {
                Kind::NullReadWrite
            },
            fd,
            out,
        );
        fds.push(s);
        keep.extend(k);
    }
    let probe = probe();
    let bundle = b.path().to_str().unwrap();
    let args = match mode {
        "run" => vec!["run", "--bundle", bundle, id],
        "run -d" => vec!["run", "-d", "--bundle", bundle, id],
        "create" => vec!["create", "--bundle", bundle, id],
        "exec" => vec!["exec", id, "sh", "-c", &probe],
        _ => vec!["exec", "-d", id, "sh", "-c", &probe],
    };
    let mut cmd = rt.cmd(&args);
    let mut fds = fds.into_iter();
    if let Some(s) = fds.next().unwrap() {
        cmd.stdin(s);
    }
    if let Some(s) = fds.next().unwrap() {
        cmd.stdout(s);
    }
    if let Some(s) = fds.next().unwrap() {
        cmd.stderr(s);
    }
    if kind == Kind::Closed {
        // SAFETY: runs between fork and exec; close(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(which as i32);
                Ok(())
            });
        }
    }
    let status = cmd.status().unwrap();
    drop(cmd);
    let code = if mode == "create" || mode.ends_with("-d") {
        assert!(
            status.success(),
            "{} {mode}, fd {which} {kind:?}: {status}",
            rt.bin
        );
        if mode == "create" {
            rt.ok(&["start", id]);
        }
        wait_for(&out.join("r"), "in:");
        None
    } else {
        Some(status.code().unwrap_or(128 + status.signal().unwrap_or(0)))
    };
    let found = std::fs::read_to_string(out.join("r")).unwrap_or_default();
    if !mode.starts_with("exec") {
        rt.delete(id);
    }
    (found, code)
}

/// runc passes the caller's descriptors to the program when detached (`run -d`,
/// `create`, `exec -d`) and copies them through pipes of its own in the foreground (so
/// there a program cannot write to fd 0 or seek its stdin; crun passes them through
/// always). rune passes them through always: each of rune's modes, plain and enclave, is
/// held to runc's pass-through result for the same descriptors, and its exit code to the
/// program's. A descriptor the caller closed is the exception: runc lets one of its own
/// descriptors take the slot (the program finds `/sys/fs/cgroup` there, a host
/// directory), rune a read-write `/dev/null`, so rune is held to runc's result for that.
#[test]
fn every_kind_of_standard_stream_reaches_the_program_as_with_runc() {
    if !root_or_skip("standard streams") || !tool_or_skip("standard streams", RUNC) {
        return;
    }
    let (pal, _) = sim_artifacts();
    let out = tempfile::tempdir().unwrap();
    let platform = tempfile::tempdir().unwrap();
    let roots = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let rt = |bin, i: usize| Runtime {
        bin,
        root: roots[i].path(),
        platform: platform.path(),
    };
    let (runc, rune, enclave) = (rt(RUNC, 0), rt(RUNE, 1), rt(RUNE, 2));
    let probe = probe();
    let plain = bundle(&["sh", "-c", &probe], out.path(), None);
    let enclave_b = bundle(&["/bin/sh", "-c", &probe], out.path(), Some(&pal));
    let sleepers = [
        bundle(&["sleep", "100"], out.path(), None),
        bundle(&["/bin/sleep", "100"], out.path(), Some(&pal)),
    ];
    let mut mismatches = Vec::new();
    let modes = [
        ("run", "run -d"),
        ("run -d", "run -d"),
        ("create", "create"),
        ("exec", "exec -d"),
        ("exec -d", "exec -d"),
    ];
    for (mode, reference) in modes {
        let exec_ids = [(); 3].map(|_| unique_id("stdio"));
        if mode.starts_with("exec") {
            runc.ok(&[
                "run",
                "-d",
                "--bundle",
                sleepers[0].path().to_str().unwrap(),
                &exec_ids[0],
            ]);
            rune.ok(&[
                "run",
                "-d",
                "--bundle",
                sleepers[0].path().to_str().unwrap(),
                &exec_ids[1],
            ]);
            enclave.ok(&[
                "run",
                "-d",
                "--bundle",
                sleepers[1].path().to_str().unwrap(),
                &exec_ids[2],
            ]);
        }
        let id = |i: usize| match mode.starts_with("exec") {
            true => exec_ids[i].clone(),
            false => unique_id("stdio"),
        };
        let mut runc_null: HashMap<usize, String> = HashMap::new();
        for which in 0..3 {
            for kind in KINDS {
                let expected = match kind {
                    Kind::Closed => runc_null[&which].clone(),
                    _ => normalize(
                        &observe(&runc, reference, which, kind, out.path(), &plain, &id(0)).0,
                    ),
                };
                if kind == Kind::NullReadWrite {
                    runc_null.insert(which, expected.clone());
                }
                for (what, rt, b, id) in [
                    ("plain", &rune, &plain, id(1)),
                    ("enclave", &enclave, &enclave_b, id(2)),
                ] {
                    let (found, code) = observe(rt, mode, which, kind, out.path(), b, &id);
                    if normalize(&found) != expected {
                        mismatches.push(format!(
                            "{what} {mode}, fd {which} {kind:?}: rune {found:?}, runc {reference} {expected:?}"
                        ));
                    }
                    // Detached, the program's exit code is not the command's.
                    if code.is_some() && code != Some(7) {
                        mismatches
                            .push(format!("{what} {mode}, fd {which} {kind:?}: exit {code:?}"));
                    }
                }
            }
        }
        if mode.starts_with("exec") {
            for (rt, id) in [
                (&runc, &exec_ids[0]),
                (&rune, &exec_ids[1]),
                (&enclave, &exec_ids[2]),
            ] {
                rt.delete(id);
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    for root in &roots[1..] {
        if let Some(left) = std::fs::read_dir(root.path()).unwrap().flatten().next() {
            panic!("left behind: {}", left.path().display());
        }
    }
}

/// What the comparisons with runc share: a platform, three state roots (runc, plain
/// rune, enclave rune), `probe` as a plain and an enclave program (with
/// `process.terminal` when `terminal`), and a plain and an enclave sleeper to exec into.
struct Bed {
    out: tempfile::TempDir,
    platform: tempfile::TempDir,
    roots: [tempfile::TempDir; 3],
    plain: Bundle,
    enclave: Bundle,
    sleepers: [Bundle; 2],
}

impl Bed {
    fn new(probe: &str, terminal: bool) -> Self {
        let (pal, _) = sim_artifacts();
        let out = tempfile::tempdir().unwrap();
        let with_terminal = |mut b: Bundle| {
            if terminal {
                b.spec["process"]["terminal"] = serde_json::json!(true);
                b.save();
            }
            b
        };
        Bed {
            plain: with_terminal(bundle(&["sh", "-c", probe], out.path(), None)),
            enclave: with_terminal(bundle(&["/bin/sh", "-c", probe], out.path(), Some(&pal))),
            sleepers: [
                bundle(&["sleep", "100"], out.path(), None),
                bundle(&["/bin/sleep", "100"], out.path(), Some(&pal)),
            ],
            platform: tempfile::tempdir().unwrap(),
            roots: [(); 3].map(|_| tempfile::tempdir().unwrap()),
            out,
        }
    }

    /// (name, runtime, the probe's bundle, the sleeper's bundle) for runc, plain rune
    /// and enclave rune.
    fn cases(&self) -> [(&'static str, Runtime<'_>, &Bundle, &Bundle); 3] {
        let rt = |bin, i: usize| Runtime {
            bin,
            root: self.roots[i].path(),
            platform: self.platform.path(),
        };
        [
            ("runc", rt(RUNC, 0), &self.plain, &self.sleepers[0]),
            ("plain", rt(RUNE, 1), &self.plain, &self.sleepers[0]),
            ("enclave", rt(RUNE, 2), &self.enclave, &self.sleepers[1]),
        ]
    }
}

/// With `process.terminal`: whether fds 0-2 are terminals and which, whether the pty is
/// the program's controlling terminal with the program's process group in the
/// foreground (so ^C typed on it signals the program), what `tty` names; then a line
/// read from the terminal, and `hello` written to it.
const TERMINAL_PROBE: &str = r#"for fd in 0 1 2; do
  if test -t $fd; then t=t; else t=-; fi
  printf "$fd$t:$(readlink /proc/$$/fd/$fd) " >> /out/r
done
set -- $(cut -d' ' -f5,7,8 /proc/$$/stat)
if [ "$2" != 0 ] && [ "$1" = "$3" ]; then c=ctty; else c=no-ctty; fi
echo "$c tty:$(tty)" >> /out/r
read -r line; echo "in:$line" >> /out/r; echo hello; exit 7"#;

/// Accepts one connection on a console socket and receives what a runtime sends on it:
/// the name and the pty master (runc's `utils.SendFile`).
fn receive_console(listener: &UnixListener) -> Option<(Vec<u8>, OwnedFd)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    };
    conn.set_nonblocking(false).unwrap();
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let len = msg.bytes;
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed the descriptor for us; nothing else owns it.
            master = fds
                .first()
                .map(|&fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
        }
    }
    Some((name[..len].to_vec(), master?))
}

/// Reads what the program writes to the terminal until `hello` (or 10 s).
fn read_terminal(master: &OwnedFd) -> String {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("hello") {
        let mut buf = [0u8; 1024];
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `run -d`, `create` + `start` and `exec -d -t` with a console socket: the runtime
/// opens a pty in the container's devpts and sends its master over the socket; the
/// program has the slave as fds 0-2 and as its controlling terminal, reads what is
/// typed on the master and writes there. rune, plain and enclave, is held to runc; and
/// both refuse a console socket the process will not use, and a detached terminal
/// without one, before anything runs.
#[test]
fn a_terminal_reaches_the_console_socket_as_with_runc() {
    if !root_or_skip("terminal") || !tool_or_skip("terminal", RUNC) {
        return;
    }
    let probe = TERMINAL_PROBE.replace("/out/", "/tmp/");
    let bed = Bed::new(&probe, true);
    let (out, roots) = (&bed.out, &bed.roots);
    let cases = bed.cases();
    let socket = out.path().join("console.sock");
    let mut results = HashMap::new();
    let mut failures = Vec::new();
    for (what, rt, b, sleeper) in &cases {
        let sleeper_id = unique_id("tty");
        rt.ok(&[
            "run",
            "-d",
            "--bundle",
            sleeper.path().to_str().unwrap(),
            &sleeper_id,
        ]);
        for mode in ["run -d", "create", "exec -d -t"] {
            let _ = std::fs::remove_file(out.path().join("r"));
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).unwrap();
            let sock = socket.to_str().unwrap();
            let id = unique_id("tty");
            let bundle = b.path().to_str().unwrap();
            let args = match mode {
                "run -d" => vec![
                    "run",
                    "-d",
                    "--console-socket",
                    sock,
                    "--bundle",
                    bundle,
                    &id,
                ],
                "create" => vec!["create", "--console-socket", sock, "--bundle", bundle, &id],
                _ => vec![
                    "exec",
                    "-d",
                    "-t",
                    "--console-socket",
                    sock,
                    &sleeper_id,
                    "sh",
                    "-c",
                    &probe,
                ],
            };
            let mut child = rt.cmd(&args).spawn().unwrap();
            let received = receive_console(&listener);
            let status = child.wait().unwrap();
            let Some((name, master)) = received else {
                failures.push(format!(
                    "{what} {mode}: no pty master on the console socket ({status})"
                ));
                continue;
            };
            if mode == "create" {
                rt.ok(&["start", &id]);
            }
            nix::unistd::write(&master, b"ping\n").unwrap();
            let typed = read_terminal(&master);
            let found = wait_for(&out.path().join("r"), "in:");
            results.insert((*what, mode), (name, found, typed));
            if mode != "exec -d -t" {
                rt.delete(&id);
            }
        }
        // Refused before anything runs: the program would leave /tmp/r.
        let _ = std::fs::remove_file(out.path().join("r"));
        let before = container_pids(rt, &sleeper_id);
        let sock = socket.to_str().unwrap();
        for args in [
            vec!["exec", "-d", "-t", &sleeper_id, "sh", "-c", "echo >/tmp/r"],
            vec![
                "exec",
                "-d",
                "--console-socket",
                sock,
                &sleeper_id,
                "sh",
                "-c",
                "echo >/tmp/r",
            ],
        ] {
            let o = output_via_files(rt.cmd(&args).stdin(Stdio::null()));
            let stderr = String::from_utf8_lossy(&o.stderr);
            if o.status.success() || stderr.lines().count() != 1 {
                failures.push(format!("{what} {args:?}: {} {stderr:?}", o.status));
            }
        }
        // A process a refused exec had started stays in the container until it has
        // written /tmp/r: wait until the container holds what it held before.
        let settled = wait_until(Duration::from_secs(10), || {
            container_pids(rt, &sleeper_id) == before
        });
        if !settled {
            failures.push(format!("{what}: processes of a refused exec stayed"));
        }
        if out.path().join("r").exists() {
            failures.push(format!("{what}: a refused exec ran"));
        }
        rt.delete(&sleeper_id);
    }
    let modes = ["run -d", "create", "exec -d -t"];
    for (what, mode) in ["plain", "enclave"]
        .into_iter()
        .flat_map(|w| modes.map(|m| (w, m)))
    {
        let (Some(runc), Some(rune)) = (results.get(&("runc", mode)), results.get(&(what, mode)))
        else {
            continue;
        };
        if rune.0 != runc.0 {
            failures.push(format!(
                "{what} {mode}: sent {:?}, runc {:?}",
                rune.0, runc.0
            ));
        }
        if rune.1 != runc.1 {
            failures.push(format!(
                "{what} {mode}: program saw {:?}, with runc {:?}",
                rune.1, runc.1
            ));
        }
        if !(rune.2.contains("ping") && rune.2.contains("hello")) {
            failures.push(format!("{what} {mode}: terminal showed {:?}", rune.2));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let runc = &results[&("runc", "run -d")];
    assert!(
        runc.1
            .contains("0t:/dev/pts/0 1t:/dev/pts/0 2t:/dev/pts/0 ctty"),
        "{}",
        runc.1
    );
    for root in &roots[1..] {
        if let Some(left) = std::fs::read_dir(root.path()).unwrap().flatten().next() {
            panic!("left behind: {}", left.path().display());
        }
    }
}

/// What a foreground process with `process.terminal` and no console socket records: its
/// terminal's size, then what [`TERMINAL_PROBE`] records.
fn foreground_probe() -> String {
    format!("echo \"size:$(stty size)\" >> /out/r; {TERMINAL_PROBE}").replace("/out/", "/tmp/")
}

/// Runs `args` of `rt` in a new session whose fds 0-2 are the slave of a fresh pty of
/// 33 rows and 101 columns; types `ping` into it and returns what the terminal showed,
/// the exit code, and whether the terminal's modes were left as they were found.
fn run_on_a_terminal(rt: &Runtime, args: &[&str]) -> (String, Option<i32>, bool) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let modes = |fd: &OwnedFd| {
        let t = nix::sys::termios::tcgetattr(fd).unwrap();
        (t.local_flags, t.input_flags, t.output_flags)
    };
    let before = modes(&pty.slave);
    let mut cmd = rt.cmd(args);
    cmd.stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: runs between fork and exec; setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    nix::unistd::write(&pty.master, b"ping\n").unwrap();
    fcntl(pty.master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = None;
    loop {
        let mut buf = [0u8; 1024];
        match nix::unistd::read(pty.master.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                shown.extend_from_slice(&buf[..n]);
                continue;
            }
            _ => {}
        }
        if status.is_some() || Instant::now() > deadline {
            break;
        }
        status = child.try_wait().unwrap();
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let code = status.and_then(|s| s.code());
    let restored = modes(&pty.slave) == before;
    (String::from_utf8_lossy(&shown).into_owned(), code, restored)
}

/// A foreground `run` of a bundle with `process.terminal` (what `rune spec` writes) and
/// a foreground `exec -t`, without a console socket: as runc, rune opens a new pty in
/// the container (the program sees `/dev/pts/0` as its controlling terminal, with the
/// caller's size), copies between it and the caller's terminal, returns the program's
/// exit code and restores the caller's terminal. A caller without any terminal is
/// refused with one line naming `/dev/tty`, as runc refuses it, and nothing is left.
/// Plain and enclave containers are each held to runc.
#[test]
fn a_foreground_terminal_is_proxied_to_the_callers_as_with_runc() {
    if !root_or_skip("foreground terminal") || !tool_or_skip("foreground terminal", RUNC) {
        return;
    }
    let probe = foreground_probe();
    let bed = Bed::new(&probe, true);
    let (out, roots) = (&bed.out, &bed.roots);
    let cases = bed.cases();
    let mut results = HashMap::new();
    let mut failures = Vec::new();
    for (what, rt, b, sleeper) in &cases {
        let sleeper_id = unique_id("fgtty");
        let sleeper_path = sleeper.path().to_str().unwrap();
        rt.ok(&["run", "-d", "--bundle", sleeper_path, &sleeper_id]);
        for mode in ["run", "exec -t"] {
            let _ = std::fs::remove_file(out.path().join("r"));
            let id = unique_id("fgtty");
            let bundle = b.path().to_str().unwrap();
            let args = match mode {
                "run" => vec!["run", "--bundle", bundle, &id],
                _ => vec!["exec", "-t", &sleeper_id, "sh", "-c", &probe],
            };
            let (shown, code, restored) = run_on_a_terminal(rt, &args);
            let found = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
            results.insert((*what, mode), (found, code, shown, restored));
            rt.delete(&id);
        }
        // Without a terminal: refused before anything runs.
        let _ = std::fs::remove_file(out.path().join("r"));
        let id = unique_id("fgtty");
        for args in [
            vec!["run", "--bundle", b.path().to_str().unwrap(), &id],
            vec!["exec", "-t", &sleeper_id, "sh", "-c", "echo >/tmp/r"],
        ] {
            let mut cmd = rt.cmd(&args);
            // SAFETY: runs between fork and exec; setsid(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            let o = output_via_files(&mut cmd);
            let stderr = String::from_utf8_lossy(&o.stderr);
            if o.status.success() || stderr.lines().count() != 1 || !stderr.contains("/dev/tty") {
                failures.push(format!(
                    "{what} {args:?} without a terminal: {} {stderr:?}",
                    o.status
                ));
            }
        }
        if out.path().join("r").exists() {
            failures.push(format!("{what}: a refused exec ran"));
        }
        rt.delete(&sleeper_id);
    }
    for (what, mode) in ["plain", "enclave"]
        .into_iter()
        .flat_map(|w| ["run", "exec -t"].map(|m| (w, m)))
    {
        let (runc, rune) = (&results[&("runc", mode)], &results[&(what, mode)]);
        // runc sizes the pty after the process starts, so a quick `stty size` may see
        // none (its exec -t does, at times): the size is held to the caller's terminal,
        // the rest to runc.
        let without_size = |found: &str| {
            found
                .lines()
                .filter(|l| !l.starts_with("size:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !rune.0.contains("size:33 101\n") {
            failures.push(format!(
                "{what} {mode}: not the caller's size: {:?}",
                rune.0
            ));
        }
        if without_size(&rune.0) != without_size(&runc.0) {
            failures.push(format!(
                "{what} {mode}: program saw {:?}, with runc {:?}",
                rune.0, runc.0
            ));
        }
        if rune.1 != runc.1 {
            failures.push(format!(
                "{what} {mode}: exit {:?}, with runc {:?}",
                rune.1, runc.1
            ));
        }
        if !(rune.2.contains("ping") && rune.2.contains("hello")) {
            failures.push(format!("{what} {mode}: terminal showed {:?}", rune.2));
        }
        if !rune.3 {
            failures.push(format!(
                "{what} {mode}: the caller's terminal was not restored"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // runc's own result, so that agreeing with it means what the spec says.
    let runc = &results[&("runc", "run")];
    assert!(
        runc.0
            .contains("0t:/dev/pts/0 1t:/dev/pts/0 2t:/dev/pts/0 ctty")
            && runc.0.contains("in:ping")
            && runc.1 == Some(7)
            && runc.3,
        "{runc:?}"
    );
    for root in &roots[1..] {
        if let Some(left) = std::fs::read_dir(root.path()).unwrap().flatten().next() {
            panic!("left behind: {}", left.path().display());
        }
    }
}

/// The descriptors a program holds, for `run` and `exec`: those runc's program holds,
/// and in an enclave also its report channel (`INCLAVARE_SIM_FD`, liberpal-sim's
/// documented interface), nothing else. liberpal-sim once left its copies of the
/// program's stdio open at their own numbers, so an enclave program held them twice.
#[test]
fn a_program_holds_no_descriptor_runcs_would_not() {
    if !root_or_skip("descriptors") || !tool_or_skip("descriptors", RUNC) {
        return;
    }
    // The shell's own descriptors, then the report channel's number (empty outside an
    // enclave).
    let probe =
        r#"for f in /proc/$$/fd/*; do printf '%s ' "${f##*/}"; done; echo "sim:$INCLAVARE_SIM_FD""#;
    let bed = Bed::new(probe, false);
    // (the descriptors, the report channel)
    let parse = |out: &[u8]| -> (Vec<u32>, Option<u32>) {
        let out = String::from_utf8_lossy(out);
        let (fds, sim) = out.trim().split_once("sim:").unwrap_or_default();
        let mut fds: Vec<u32> = fds
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        fds.sort();
        (fds, sim.parse().ok())
    };
    let mut seen = HashMap::new();
    for (what, rt, b, sleeper) in &bed.cases() {
        let id = unique_id("fds");
        let o =
            output_via_files(&mut rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]));
        seen.insert((*what, "run"), parse(&o.stdout));
        rt.ok(&[
            "run",
            "-d",
            "--bundle",
            sleeper.path().to_str().unwrap(),
            &id,
        ]);
        let o = output_via_files(&mut rt.cmd(&["exec", &id, "/bin/sh", "-c", probe]));
        seen.insert((*what, "exec"), parse(&o.stdout));
        rt.delete(&id);
    }
    let mut failures = Vec::new();
    for mode in ["run", "exec"] {
        let runc = &seen[&("runc", mode)];
        assert!(
            runc.0.starts_with(&[0, 1, 2]) && runc.1.is_none(),
            "{runc:?}"
        );
        if seen[&("plain", mode)] != *runc {
            failures.push(format!(
                "plain {mode}: {:?}, with runc {runc:?}",
                seen[&("plain", mode)]
            ));
        }
        let enclave = &seen[&("enclave", mode)];
        let mut want = runc.0.clone();
        want.extend(enclave.1);
        want.sort();
        if enclave.1.is_none() || enclave.0 != want {
            failures.push(format!("enclave {mode}: {enclave:?}, with runc {runc:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
