//! The shim's command line against containerd's own `containerd-shim-runc-v2` (Debian's
//! package): help, bad flags and their exit codes and streams come from running it.

use std::path::PathBuf;
use std::process::Command;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-rune-v2");

fn runc_shim() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("containerd-shim-runc-v2"))
        .find(|p| p.is_file())
}

/// How a run ended: exit code, stdout, stderr with the program path replaced by `PROG`.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(program: &str, args: &[&str]) -> Ran {
    let out = Command::new(program)
        .args(args)
        // The runc shim reads no stdin for these; ours must not either.
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).replace(program, "PROG"),
        stderr: String::from_utf8_lossy(&out.stderr).replace(program, "PROG"),
    }
}

/// The flag names a Go usage text lists (`  -name type` or `  -v<TAB>…` lines).
fn listed_flags(usage: &str) -> Vec<String> {
    usage
        .lines()
        .filter_map(|l| l.strip_prefix("  -"))
        .map(|l| l.split([' ', '\t']).next().unwrap().to_string())
        .collect()
}

#[test]
fn help_and_bad_flags_behave_as_containerds_runc_shim() {
    let Some(runc) = runc_shim() else {
        println!("skipped: no containerd-shim-runc-v2 on PATH (Debian's containerd has it)");
        return;
    };
    let runc = runc.to_str().unwrap().to_string();
    let cases: &[&[&str]] = &[
        &["-h"],
        &["-help"],
        &["--help"],
        &["-v", "-h"],
        &["-debug", "--help", "-bogus"],
        &["-bogus"],
        &["-bogus", "-h"],
        &["-id"],
        &["---x"],
    ];
    for args in cases {
        let theirs = run(&runc, args);
        let ours = run(SHIM, args);
        assert_eq!(
            ours.code, theirs.code,
            "{args:?}: ours {ours:?} runc's {theirs:?}"
        );
        assert_eq!(ours.stdout, theirs.stdout, "{args:?}: stdout");
        // The first line: the usage header, or Go's error message.
        assert_eq!(
            ours.stderr.lines().next(),
            theirs.stderr.lines().next(),
            "{args:?}: ours {ours:?} runc's {theirs:?}"
        );
        // Every flag runc's shim lists, ours lists.
        let ours_listed = listed_flags(&ours.stderr);
        let runc_listed = listed_flags(&theirs.stderr);
        assert!(!runc_listed.is_empty(), "{args:?}: runc's {theirs:?}");
        for f in &runc_listed {
            assert!(
                ours_listed.contains(f),
                "{args:?}: -{f} is not listed:\n{}",
                ours.stderr
            );
        }
        // Go prints them sorted.
        let mut sorted = ours_listed.clone();
        sorted.sort();
        assert_eq!(ours_listed, sorted);
    }
}

/// The usage names the program as it was started, as Go's `os.Args[0]`.
#[test]
fn the_usage_names_the_program_as_started() {
    let Some(runc) = runc_shim() else {
        println!("skipped: no containerd-shim-runc-v2 on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (program, name) in [(runc, "their-shim"), (PathBuf::from(SHIM), "our-shim")] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(&program, &link).unwrap();
        let out = Command::new(&link).arg("-h").output().unwrap();
        let first = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(first, format!("Usage of {}:", link.display()));
    }
}
