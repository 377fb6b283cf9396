//! `shelter`: the tenant's verifier command.

mod cli;
mod remote;
mod rv;
mod verify;
mod verify_cert;

fn main() {
    cli_exit::init();
    let cli = cli_exit::parse::<cli::Cli>();
    let result = match cli.command {
        cli::Command::Verify(v) => verify::run(&v),
        cli::Command::VerifyCert(v) => verify_cert::run(&v),
        cli::Command::RemoteAttestation(r) => remote::run(&r),
        cli::Command::MrVerify(m) => remote::mrverify(&m),
        cli::Command::Rv { command } => rv::run(&command),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => cli_exit::exit_on_error("shelter", &err),
    }
}
