//! `rune`: a runc-compatible OCI runtime. Parsing and printing only; the work is in
//! `rune-core`.

mod cli;
mod commands;
mod logging;
mod seal;

use clap::Parser;

fn main() {
    cli_exit::init();
    let cli = cli::Cli::parse();
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
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // One line: containerd and docker show it to the user as it is.
            if logs_to_file && !cli_exit::is_broken_pipe(&err) {
                tracing::error!("{err:#}");
            }
            cli_exit::exit_on_error("rune", &err);
        }
    }
}
