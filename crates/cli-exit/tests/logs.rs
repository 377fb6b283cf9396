//! A daemon's log written to a file or a pipe (journald, `2> file`, a container's log) is
//! plain text: no terminal colour codes, so `grep status=` works on it. The daemons share
//! `daemon-log`; verdictd stands for them, run for real (`make test` builds it first).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_daemon_logging_to_a_file_writes_no_colour_codes() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release");
    let err = tempfile::tempfile().unwrap();
    let mut child = Command::new(release.join("verdictd"))
        .args(["--insecure-http", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    // Its address on stdout says it is up; SIGTERM then makes it log its stop.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 9];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"listening");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "verdictd did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut text = String::new();
    let mut err = err;
    std::io::Seek::rewind(&mut err).unwrap();
    err.read_to_string(&mut text).unwrap();
    assert!(text.contains("INFO"), "nothing logged: {text:?}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}
