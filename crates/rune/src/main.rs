//! `rune`: a runc-compatible OCI runtime. Parsing and printing only; the work is in
//! `rune-core`.

mod cli;
mod commands;
mod logging;
mod seal;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if commands::enters_container(&cli) {
        if let Err(err) = seal::ensure_sealed() {
            eprintln!("rune: {err:#}");
            std::process::exit(1);
        }
    }
    if let Err(err) = logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        eprintln!("rune: {err:#}");
        std::process::exit(1);
    }
    let logs_to_file = cli.global.log.is_some();
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) if is_broken_pipe(&err) => std::process::exit(141),
        Err(err) => {
            // One line: containerd and docker show it to the user as it is.
            let msg = format!("{err:#}");
            if logs_to_file {
                tracing::error!("{msg}");
            }
            eprintln!("rune: {msg}");
            std::process::exit(1);
        }
    }
}

/// The reader of our stdout went away: as a shell reports SIGPIPE, without a message.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
