//! A usage error, in every binary of the workspace, is one line on stderr that says it is
//! an error and names the bad argument, and nothing on stdout; the exit status is the
//! one coreutils and clap give usage errors (2), except rune's, which is runc's (1:
//! compared with runc in `crates/rune/tests/parity_flags.rs`). `make test` builds the
//! binaries first (target/release).

use std::path::Path;
use std::process::{Command, Stdio};

fn run(program: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_usage_error_is_one_line_in_every_binary() {
    // coreutils' status for an unknown option: the reference for "usage error".
    let (usage_status, _, _) = run(Path::new("ls"), &["--no-such-flag"]);
    assert_eq!(usage_status, Some(2));
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release");
    for (name, status) in [
        ("attestation-agent", usage_status),
        ("enclave-image", usage_status),
        ("inclavared", usage_status),
        ("shelter", usage_status),
        ("signature-server", usage_status),
        ("sim-sign", usage_status),
        ("verdictd", usage_status),
        ("rune", Some(1)),
    ] {
        let program = release.join(name);
        assert!(
            program.exists(),
            "{} is missing: run `make build`",
            program.display()
        );
        let (code, out, err) = run(&program, &["--no-such-flag"]);
        assert_eq!(code, status, "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err:?}");
        assert!(
            err.contains("error") && err.contains("--no-such-flag"),
            "{name}: {err}"
        );
        assert!(out.is_empty(), "{name} printed {out:?}");
    }
}
