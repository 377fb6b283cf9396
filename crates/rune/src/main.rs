//! `rune`: a runc-compatible OCI runtime. Parsing and printing only; the work is in
//! `rune-core`.

mod cli;
mod commands;
mod logging;
mod seal;

/// The command line, or the end: help and version as clap prints them; a usage error as
/// runc ends one, status 1 and a logrus `level=error` line (runc's urfave/cli prints its
/// help too, which we leave out: one line says what was wrong).
fn parse() -> cli::Cli {
    use clap::Parser;
    cli::Cli::try_parse().unwrap_or_else(|err| match cli_exit::usage_line(&err) {
        None => cli_exit::exit_printing_clap(&err),
        Some(line) => {
            let msg = line.strip_prefix("error: ").unwrap_or(&line);
            let line = logging::render(cli::LogFormat::Text, "error", msg, &now());
            cli_exit::exit_with_line(&line, 1)
        }
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn main() {
    cli_exit::init();
    let cli = parse();
    if commands::enters_container(&cli) {
        if let Err(err) = seal::ensure_sealed() {
            cli_exit::exit_on_error("rune", &err);
        }
    }
    if let Err(err) = logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        cli_exit::exit_on_error("rune", &err);
    }
    let logs_to_file = cli.global.log.is_some();
    // create, run and exec hand rune's stderr on to the container's process: there it is
    // the container's output, and containerd, docker and podman read the error from the
    // log instead (runc's bare line would show as the task's output too, or be lost).
    // They all ask for a JSON log; with a text log a person reads stderr, as from runc.
    let hands_on_stderr = matches!(
        cli.command,
        Some(cli::Command::Create(_) | cli::Command::Run(_) | cli::Command::Exec(_))
    ) && cli.global.log_format == cli::LogFormat::Json
        && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    // runc's exec fails with 255 (`fatalWithCode(…, 255)`), its other commands with 1.
    let failure = if matches!(cli.command, Some(cli::Command::Exec(_))) {
        255
    } else {
        1
    };
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) if cli_exit::is_closed_output(&err) => cli_exit::die_of_sigpipe(),
        Err(err) if logs_to_file => {
            // As runc (main.go `fatalWithCode`): with --log the error is the log's one
            // `error` entry, where containerd, docker and podman read it, and the bare
            // message on stderr, for the person who ran the command.
            let line = cli_exit::one_line(&err);
            tracing::error!("{line}");
            // During create, run and exec stderr is the container's own (the shim hands
            // rune the container's stdio, so even a failure before any process exists
            // would show as the task's output next to containerd's report of the log).
            if !hands_on_stderr {
                cli_exit::exit_with_line(&line, failure);
            }
            std::process::exit(failure);
        }
        Err(err) => {
            // As runc without --log: one logrus line, which tools recognise as an error.
            let line = logging::render(
                cli::LogFormat::Text,
                "error",
                &cli_exit::one_line(&err),
                &now(),
            );
            cli_exit::exit_with_line(&line, failure);
        }
    }
}
