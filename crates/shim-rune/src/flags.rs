//! The shim's command line, read as containerd's Go shims read theirs (Go's `flag`
//! package, `runtime/v2/shim/shim.go`): single- or double-dash flags up to the first
//! argument (the action, `start` or `delete`), `-h`/`-help` printing the usage on
//! stderr and exiting 0, a bad flag printing its error and the usage and exiting 2.
//! The `containerd-shim` crate parses the same flags again when it runs (with the same
//! `go-flag` parser), so what passes here passes there.

use std::io::Write;

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `-h`, `-help` or `--help` among the flags: print [`usage`], exit 0.
    Help,
    /// `-v` or `-version`: print the version, exit 0.
    Version,
    /// `-info`: print containerd's `RuntimeInfo` protobuf, exit 0.
    Info,
    /// Anything else: containerd's `start`/`delete` actions, or serving (`-socket`).
    Run,
}

/// A flag the shim accepts: name, value type as Go's usage shows it (`None` for a
/// boolean), and what it does.
struct Flag {
    name: &'static str,
    value: Option<&'static str>,
    about: &'static str,
}

/// Sorted by name, as Go prints them. The names are those `containerd-shim`'s `Flags`
/// takes (containerd passes them to every shim v2); `-info` is containerd 1.7's.
const FLAGS: &[Flag] = &[
    Flag {
        name: "address",
        value: Some("string"),
        about: "containerd's gRPC address, for the shim to call back",
    },
    Flag {
        name: "bundle",
        value: Some("string"),
        about: "the bundle directory, when it is not the working directory",
    },
    Flag {
        name: "debug",
        value: None,
        about: "log at debug level",
    },
    Flag {
        name: "id",
        value: Some("string"),
        about: "the task's id",
    },
    Flag {
        name: "info",
        value: None,
        about: "read the runtime options on stdin, print the RuntimeInfo protobuf and exit",
    },
    Flag {
        name: "namespace",
        value: Some("string"),
        about: "the containerd namespace that owns the shim",
    },
    Flag {
        name: "publish-binary",
        value: Some("string"),
        about: "the program containerd publishes events with (accepted; this shim publishes over ttrpc)",
    },
    Flag {
        name: "socket",
        value: Some("string"),
        about: "the socket to serve",
    },
    Flag {
        name: "v",
        value: None,
        about: "show the shim version and exit",
    },
    Flag {
        name: "version",
        value: None,
        about: "show the shim version and exit (as -v)",
    },
];

/// The usage text, `Usage of PROGRAM:` then one entry per flag in the layout of Go's
/// `flag.PrintDefaults`: a one-letter boolean on one line (`  -v<TAB>about`), others
/// as `  -name type` with the description on the next line after four spaces and a tab.
/// `program` is the name the shim was started by (Go prints `os.Args[0]`).
pub fn usage(program: &str) -> String {
    let mut out = format!("Usage of {program}:\n");
    for f in FLAGS {
        let mut head = format!("  -{}", f.name);
        if let Some(v) = f.value {
            head.push(' ');
            head.push_str(v);
        }
        let sep = if head.len() <= 4 { "\t" } else { "\n    \t" };
        out.push_str(&format!("{head}{sep}{}\n", f.about));
    }
    out
}

/// Why the command line was refused; the message is Go's (`flag provided but not
/// defined: -x`, `flag needs an argument: -id`, `bad flag syntax: ---x`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(String);

/// Reads the flags of `args` (without the program name) up to the first argument.
/// Errors as Go's `flag` package does; a help flag wins over flags after it, not over a
/// bad flag before it (Go stops at the first problem).
pub fn parse<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<Action, FlagError> {
    let (mut debug, mut v, mut version, mut info) = (false, false, false, false);
    let (mut namespace, mut id, mut socket) = (String::new(), String::new(), String::new());
    let (mut bundle, mut address, mut publish) = (String::new(), String::new(), String::new());
    let parsed: Result<Vec<String>, _> = go_flag::parse_args(args, |f| {
        f.add_flag("address", &mut address);
        f.add_flag("bundle", &mut bundle);
        f.add_flag("debug", &mut debug);
        f.add_flag("id", &mut id);
        f.add_flag("info", &mut info);
        f.add_flag("namespace", &mut namespace);
        f.add_flag("publish-binary", &mut publish);
        f.add_flag("socket", &mut socket);
        f.add_flag("v", &mut v);
        f.add_flag("version", &mut version);
    });
    match parsed {
        Ok(_) if v || version => Ok(Action::Version),
        Ok(_) if info => Ok(Action::Info),
        Ok(_) => Ok(Action::Run),
        // Go's flag package answers an undefined -h or -help with the usage.
        Err(go_flag::FlagError::UnknownFlag { name }) if name == "h" || name == "help" => {
            Ok(Action::Help)
        }
        Err(go_flag::FlagError::ParseError { error }) => {
            Err(FlagError(format!("invalid flag value: {error}")))
        }
        Err(e) => Err(FlagError(e.to_string())),
    }
}

/// Writes `text` on stderr and exits with `code`; dies of `SIGPIPE` when stderr is a
/// closed pipe, as a Go program does.
pub fn exit_with_stderr(text: &str, code: i32) -> ! {
    if let Err(e) = std::io::stderr().write_all(text.as_bytes()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            cli_exit::die_of_sigpipe();
        }
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_errors_follow_go_flag_rules() {
        for help in [
            &["-h"][..],
            &["--help"],
            &["-help"],
            &["-v", "-h"],
            &["-debug", "-h"],
        ] {
            assert_eq!(parse(help).unwrap(), Action::Help, "{help:?}");
        }
        // Flags stop at the first argument.
        assert_eq!(parse(&["-id", "x", "start", "-h"]).unwrap(), Action::Run);
        assert_eq!(parse(&["-v"]).unwrap(), Action::Version);
        assert_eq!(parse(&["--version"]).unwrap(), Action::Version);
        assert_eq!(parse(&["-info"]).unwrap(), Action::Info);
        // A value that looks like a flag is a value.
        assert_eq!(parse(&["-id", "-v"]).unwrap(), Action::Run);
        let e = parse(&["-bogus", "-h"]).unwrap_err().to_string();
        assert_eq!(e, "flag provided but not defined: -bogus");
        let e = parse(&["-id"]).unwrap_err().to_string();
        assert_eq!(e, "flag needs an argument: -id");
    }

    #[test]
    fn usage_lists_every_flag_sorted_in_go_layout() {
        let u = usage("shim");
        assert!(u.starts_with("Usage of shim:\n  -address string\n    \t"));
        assert!(u.contains("\n  -debug\n    \t"));
        assert!(u.contains("\n  -v\tshow the shim version and exit\n"));
        let names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
