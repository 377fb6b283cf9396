//! How our commands end.
//!
//! Rust ignores `SIGPIPE`, so a write to a closed pipe returns `EPIPE`: `println!` and
//! `eprintln!` then panic ("failed printing to stdout: Broken pipe") and `?` turns it
//! into an error message on stderr — `shelter verify … | head -1` printed
//! `shelter: Broken pipe (os error 32)` and exited 1. C programs and Go programs (runc,
//! containerd, docker) are killed by `SIGPIPE` instead, quietly, which a shell reports as
//! status 141 and `head` pipelines expect. Go does this only for fds 1 and 2 (its
//! `os.sigpipe`); sockets keep returning `EPIPE`. So do we: [`init`] catches the
//! print panics, and [`exit_on_error`] recognises a broken pipe anywhere in an error's
//! chain; both end the process by `SIGPIPE`, with its default action. Sockets are not
//! affected, so a daemon whose client went away keeps running.
//!
//! ```no_run
//! fn main() {
//!     cli_exit::init();
//!     if let Err(e) = run() {
//!         cli_exit::exit_on_error("mytool", &e);
//!     }
//! }
//! # fn run() -> anyhow::Result<()> { Ok(()) }
//! ```

use std::io::Write;

/// Installs a panic hook that turns the standard library's failed `print!`/`eprint!`
/// to a closed pipe into [`die_of_sigpipe`]. Other panics are reported by the previous
/// hook, as before. Call it first in `main`.
pub fn init() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_print_to_closed_pipe(msg) {
            die_of_sigpipe();
        }
        previous(info);
    }));
}

/// The message `std` panics with when printing to a closed pipe, e.g.
/// `failed printing to stdout: Broken pipe (os error 32)` (`library/std/src/io/stdio.rs`).
fn is_print_to_closed_pipe(msg: &str) -> bool {
    msg.starts_with("failed printing to std") && msg.contains("os error 32")
}

/// Ends the process as `SIGPIPE`'s default action does (status 128 + 13 in a shell),
/// without unwinding or a message: the reader of our output is gone.
pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default disposition and raising a signal have no memory
    // effects; the default action of SIGPIPE ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Unreachable unless SIGPIPE is blocked: exit with the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}

/// Parses the command line with clap as `P::parse()` does, except that `--help`,
/// `--version` or a usage error printed to a closed pipe ends the process by
/// [`die_of_sigpipe`], as runc's `--help` does; clap's own exit swallows the error and
/// exits 0 (or 2), unlike every other output of our commands.
pub fn parse<P: clap::Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| exit_on_clap_error(&e))
}

/// Prints clap's help or version to its stream and exits 0, or a usage error as one line
/// (see [`usage_line`]) on stderr and exits 2, clap's code; dies of `SIGPIPE` when that
/// stream is a closed pipe.
pub fn exit_on_clap_error(err: &clap::Error) -> ! {
    match usage_line(err) {
        Some(line) => exit_with_line(&line, err.exit_code()),
        None => exit_printing_clap(err),
    }
}

/// Prints clap's help or version (or anything else clap renders) to its stream and exits
/// with clap's code.
pub fn exit_printing_clap(err: &clap::Error) -> ! {
    // stdout is line-buffered: the last line's failure may only show at the flush.
    let printed = err
        .print()
        .and_then(|()| std::io::stdout().flush())
        .and_then(|()| std::io::stderr().flush());
    if let Err(e) = printed {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            die_of_sigpipe();
        }
    }
    std::process::exit(err.exit_code())
}

/// A usage error as one line, `error: <what clap found> (usage: <the usage line>)`,
/// or `None` for help and version, which are not errors. clap renders a usage error in
/// several paragraphs (the error, a tip, the usage, a pointer to `--help`); tools that
/// read one line of stderr, and people scanning a log, get the first and the usage.
pub fn usage_line(err: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    // `StyledStr`'s Display is the plain text, without colours.
    let text = err.render().to_string();
    // The first paragraph is the error, possibly over several lines (the missing
    // arguments are listed one per line below it).
    let first = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let first = if first.is_empty() {
        "error: invalid usage".to_string()
    } else {
        first
    };
    Some(
        match text.lines().find_map(|l| l.trim().strip_prefix("Usage: ")) {
            Some(usage) => format!("{first} (usage: {usage})"),
            None => first,
        },
    )
}

/// True when `err` or any error in its chain is an I/O error of kind `BrokenPipe`.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints `program: error: cause: cause…` as one line on stderr and exits 1, or dies of
/// `SIGPIPE` when the error is a broken pipe and stdout or stderr is a pipe whose reader
/// is gone (as Go's runtime does for fds 1 and 2). A broken pipe elsewhere — a socket
/// whose peer closed it, a child's stdin — is an ordinary error with its message.
/// Never panics.
pub fn exit_on_error(program: &str, err: &anyhow::Error) -> ! {
    if is_closed_output(err) {
        die_of_sigpipe();
    }
    exit_with_line(&format!("{program}: {}", one_line(err)), 1)
}

/// `err` and its causes as one line, `a: b: c`, each cause once: one that the line
/// already holds (a library error that quotes its source, e.g. "open x: No such file
/// or directory" over that io::Error) is left out, as is any line break.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when `err` is a broken pipe and our stdout or stderr is a pipe whose reader is
/// gone: the reader of our output went away, which is no error to report.
pub fn is_closed_output(err: &anyhow::Error) -> bool {
    is_broken_pipe(err) && (reader_gone(1) || reader_gone(2))
}

/// True when `fd` is a pipe (or FIFO) whose read end is closed: Linux's `pipe_poll`
/// reports `POLLERR` for the write end once no reader is left.
fn reader_gone(fd: libc::c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Prints `line` on stderr and exits with `code`; dies of `SIGPIPE` when stderr is a
/// closed pipe.
pub fn exit_with_line(line: &str, code: i32) -> ! {
    if let Err(e) = writeln!(std::io::stderr(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            die_of_sigpipe();
        }
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_std_print_failures_only() {
        assert!(is_print_to_closed_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(is_print_to_closed_pipe(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_print_to_closed_pipe(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_print_to_closed_pipe("index out of bounds"));
    }

    #[test]
    fn a_usage_error_is_one_line_with_the_usage_and_help_is_none() {
        let cmd = clap::Command::new("tool").subcommand(clap::Command::new("list"));
        let err = cmd
            .clone()
            .try_get_matches_from(["tool", "--bogus"])
            .unwrap_err();
        let line = usage_line(&err).unwrap();
        assert!(!line.contains('\n'), "{line:?}");
        assert!(
            line.starts_with("error: ") && line.contains("'--bogus'"),
            "{line}"
        );
        assert!(line.ends_with("(usage: tool [COMMAND])"), "{line}");
        let two = clap::Command::new("tool")
            .arg(clap::Arg::new("a").required(true))
            .arg(clap::Arg::new("b").required(true));
        let err = two.try_get_matches_from(["tool"]).unwrap_err();
        let line = usage_line(&err).unwrap();
        assert!(line.contains("<a> <b>") && !line.contains('\n'), "{line}");
        let help = cmd.try_get_matches_from(["tool", "--help"]).unwrap_err();
        assert_eq!(usage_line(&help), None);
    }

    #[test]
    fn one_line_says_each_cause_once() {
        #[derive(Debug)]
        struct Quoting(std::io::Error);
        impl std::fmt::Display for Quoting {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "open /x: {}", self.0)
            }
        }
        impl std::error::Error for Quoting {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let enoent = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(Quoting(enoent())).context("create c1");
        assert_eq!(one_line(&e), format!("create c1: open /x: {}", enoent()));
        let e = anyhow::Error::new(enoent()).context("read\nthe config");
        assert_eq!(one_line(&e), format!("read the config: {}", enoent()));
    }

    #[test]
    fn finds_a_broken_pipe_deep_in_the_chain() {
        let io = std::io::Error::from_raw_os_error(libc::EPIPE);
        let err = anyhow::Error::new(io)
            .context("write report")
            .context("verify");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("Broken pipe")));
    }

    #[test]
    fn a_pipe_without_reader_is_told_from_one_with_a_reader() {
        let (r, w) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        assert!(!reader_gone(w.as_raw_fd()));
        drop(r);
        assert!(reader_gone(w.as_raw_fd()));
    }
}
