//! Every binary of the workspace, with its stdout or stderr a pipe whose reader is gone,
//! ends as runc (Go) and C programs do: killed by SIGPIPE, with no message and no
//! panic. `make test` builds the binaries first (target/release).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/release")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make build` first",
        p.display()
    );
    p
}

fn testdata(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rats/testdata")
        .join(name);
    p.to_string_lossy().into_owned()
}

/// verdictd on a loopback port of its choosing, for the agent to print a token from.
struct Verdictd {
    child: std::process::Child,
    url: String,
}

impl Verdictd {
    fn start(dir: &Path) -> Verdictd {
        use std::io::BufRead;
        let config = dir.join("verdictd.toml");
        std::fs::write(&config, "listen = \"127.0.0.1:0\"\ninsecure_http = true\n").unwrap();
        let mut child = Command::new(bin("verdictd"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("verdictd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("verdictd did not start: {line}"))
            .to_string();
        Verdictd { child, url }
    }
}

impl Drop for Verdictd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which of the streams is closed.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
}

/// Runs `cmd` with the given stream a pipe whose reader is already closed and the other
/// captured; returns the exit status and what the other stream got. Waits at most 20 s.
fn run_closed(mut cmd: Command, closed: Closed) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdin(Stdio::null());
    let mut other = tempfile::tempfile().unwrap();
    match closed {
        Closed::Stdout => cmd.stdout(writer).stderr(other.try_clone().unwrap()),
        Closed::Stderr => cmd.stderr(writer).stdout(other.try_clone().unwrap()),
    };
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} with a closed {closed:?} did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::io::{Read, Seek};
    let mut text = String::new();
    other.rewind().unwrap();
    other.read_to_string(&mut text).unwrap();
    (status, text)
}

fn cmd(bin_name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin(bin_name));
    c.args(args);
    c
}

/// Go and C programs writing to a closed pipe on fd 1 or 2 die of SIGPIPE.
fn assert_sigpipe(what: &str, (status, other): (ExitStatus, String)) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "{what}: ended with {status}, other stream: {other}"
    );
    assert!(
        !other.contains("panicked") && !other.contains("Broken pipe"),
        "{what} printed: {other}"
    );
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let key = key.to_str().unwrap();
    let sim_key = dir.path().join("sim.key");
    let sim_key = sim_key.to_str().unwrap();
    let ok = Command::new(bin("sim-sign"))
        .args(["keygen", "--out", sim_key])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let (quote, collateral) = (testdata("sgx_quote"), testdata("sgx_quote_collateral.json"));
    // An RA-TLS certificate (sample evidence): verify-cert prints its report.
    let cert = rats_tls::generate(&rats::SampleAttester, &Default::default(), None).unwrap();
    let cert_file = dir.path().join("cert.der");
    std::fs::write(&cert_file, &cert.cert_der).unwrap();
    let cert_file = cert_file.to_str().unwrap();
    let verdictd = Verdictd::start(dir.path());
    let cases: Vec<(&str, Command)> = vec![
        ("rune --help", cmd("rune", &["--help"])),
        ("rune features", cmd("rune", &["features"])),
        ("rune list", {
            let mut c = cmd("rune", &["list"]);
            c.arg("--root").arg(dir.path().join("root"));
            c
        }),
        (
            "shelter verify",
            cmd(
                "shelter",
                &[
                    "verify",
                    "--evidence",
                    &quote,
                    "--collateral",
                    &collateral,
                    "--at",
                    "2025-06-20T00:00:00Z",
                ],
            ),
        ),
        (
            "shelter verify-cert",
            cmd("shelter", &["verify-cert", "--cert", cert_file]),
        ),
        (
            "shelter verify-cert --json",
            cmd("shelter", &["verify-cert", "--cert", cert_file, "--json"]),
        ),
        ("shelter --help", cmd("shelter", &["--help"])),
        (
            "attestation-agent token",
            cmd(
                "attestation-agent",
                &["--url", &verdictd.url, "--tee", "sample", "token"],
            ),
        ),
        (
            "attestation-agent --help",
            cmd("attestation-agent", &["--help"]),
        ),
        (
            "attestation-agent --version",
            cmd("attestation-agent", &["--version"]),
        ),
        ("inclavared --help", cmd("inclavared", &["--help"])),
        ("inclavared --version", cmd("inclavared", &["--version"])),
        ("verdictd --version", cmd("verdictd", &["--version"])),
        (
            "signature-server --help",
            cmd("signature-server", &["--help"]),
        ),
        ("sim-sign --help", cmd("sim-sign", &["--help"])),
        (
            "sim-sign keygen",
            cmd("sim-sign", &["keygen", "--out", key]),
        ),
        (
            "sim-sign measure",
            cmd("sim-sign", &["measure", "--executable", "/bin/sh"]),
        ),
        (
            "containerd-shim-rune-v2 --version",
            cmd("containerd-shim-rune-v2", &["--version"]),
        ),
        (
            "verdictd",
            cmd("verdictd", &["--listen", "127.0.0.1:0", "--insecure-http"]),
        ),
        (
            "signature-server",
            cmd(
                "signature-server",
                &["--listen", "127.0.0.1:0", "--sim-key", sim_key],
            ),
        ),
        ("enclave-image keygen", {
            let mut c = cmd("enclave-image", &["keygen", "--kek"]);
            c.arg(dir.path().join("kek.bin"));
            c
        }),
    ];
    for (what, c) in cases {
        assert_sigpipe(what, run_closed(c, Closed::Stdout));
    }
}

#[test]
fn a_closed_stderr_ends_every_command_quietly() {
    // Each fails or prints a usage, so its only output is on stderr.
    let cases: Vec<(&str, Command)> = vec![
        (
            "rune state",
            cmd("rune", &["--root", "/nonexistent/rune", "state", "none"]),
        ),
        (
            "shelter verify",
            cmd("shelter", &["verify", "--evidence", "/nonexistent"]),
        ),
        (
            "shelter verify-cert",
            // A real certificate (AMD's VCEK) that carries no evidence.
            cmd(
                "shelter",
                &["verify-cert", "--cert", &testdata("vcek_milan.der")],
            ),
        ),
        ("shelter (usage error)", cmd("shelter", &["--bogus"])),
        (
            "sim-sign measure",
            cmd("sim-sign", &["measure", "--executable", "/nonexistent"]),
        ),
        (
            "attestation-agent (usage error)",
            cmd("attestation-agent", &["--bogus"]),
        ),
        ("inclavared (usage error)", cmd("inclavared", &["--bogus"])),
        ("rune (usage error)", cmd("rune", &["--bogus"])),
        (
            "containerd-shim-rune-v2 -h",
            cmd("containerd-shim-rune-v2", &["-h"]),
        ),
        (
            "containerd-shim-rune-v2 -bogus",
            cmd("containerd-shim-rune-v2", &["-bogus"]),
        ),
        (
            "attestation-agent",
            cmd(
                "attestation-agent",
                &["--url", "http://127.0.0.1:1", "token"],
            ),
        ),
        (
            "verdictd",
            cmd("verdictd", &["--config", "/nonexistent.toml"]),
        ),
        (
            "inclavared",
            cmd(
                "inclavared",
                &[
                    "--listen",
                    "tcp://127.0.0.1:0",
                    "--xfer",
                    "tcp://127.0.0.1:1",
                    "--policy",
                    "/nonexistent.toml",
                ],
            ),
        ),
        ("signature-server", cmd("signature-server", &[])),
        (
            "enclave-image",
            cmd(
                "enclave-image",
                &[
                    "encrypt",
                    "--kek-id",
                    "kbs:///default/image-kek/app",
                    "--kek-file",
                    "/nonexistent/kek.bin",
                    "oci:/nonexistent:v1",
                    "oci:/nonexistent/out:v1",
                ],
            ),
        ),
    ];
    for (what, c) in cases {
        assert_sigpipe(what, run_closed(c, Closed::Stderr));
    }
}

/// The real peer: runc, when the machine has it (`make test` installs Debian's).
#[test]
fn runc_ends_the_same_way() {
    let Ok(runc) = which("runc") else {
        println!("skipped: no runc on PATH");
        return;
    };
    let (status, _) = run_closed(
        {
            let mut c = Command::new(&runc);
            c.arg("features");
            c
        },
        Closed::Stdout,
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "runc features: {status}"
    );
    // runc makes its root: one in a temporary directory.
    let root = tempfile::tempdir().unwrap();
    let (status, _) = run_closed(
        {
            let mut c = Command::new(&runc);
            c.arg("--root").arg(root.path()).args(["state", "none"]);
            c
        },
        Closed::Stderr,
    );
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "runc state: {status}");
    let (status, _) = run_closed(
        {
            let mut c = Command::new(&runc);
            c.arg("--help");
            c
        },
        Closed::Stdout,
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "runc --help: {status}"
    );
    // containerd's shim prints its usage on stderr.
    if let Ok(shim) = which("containerd-shim-runc-v2") {
        let (status, _) = run_closed(
            {
                let mut c = Command::new(shim);
                c.arg("-h");
                c
            },
            Closed::Stderr,
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "containerd-shim-runc-v2 -h: {status}"
        );
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
