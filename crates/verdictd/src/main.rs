//! `verdictd`: the key broker's command line. The work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "verdictd",
    version,
    about = "Release secrets to attested confidential workloads (Confidential Containers KBS protocol 0.4.0)"
)]
struct Cli {
    /// Without a command: serve
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML); without one, the defaults of `verdictd::Config`
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Address to serve on, overriding the config (default 127.0.0.1:8080)
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve plain HTTP (no [tls] needed). Secrets still travel encrypted to the TEE,
    /// but tokens and admin calls do not
    #[arg(long)]
    insecure_http: bool,
    #[command(flatten)]
    log: daemon_log::LogArgs,
}

// Parsed once per run: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Check or print the audit log of the configured storage
    #[command(subcommand)]
    Audit(verdictd::audit::cli::AuditCommand),
    /// Policies, without a server
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Re-wrap every data key of the configured database to the current key-encryption
    /// key of [storage.kek], in batches, while replicas serve (--check: only report;
    /// exit 3 if a row still needs an old key)
    RotateKek(verdictd::rotate::Args),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Dry run: appraise evidence and decide on a resource as a verdictd would, and say
    /// why. Exit status 0 allowed, 3 denied, 1 error
    Test(verdictd::dry_run::Args),
}

fn main() {
    cli_exit::init();
    if let Err(e) = run() {
        cli_exit::exit_on_error("verdictd", &e);
    }
}

fn run() -> Result<()> {
    let cli = cli_exit::parse::<Cli>();
    if let Some(Command::Policy(PolicyCommand::Test(args))) = &cli.command {
        let mut args = args.clone();
        args.config = cli.config.clone();
        std::process::exit(verdictd::dry_run::run(&args)?);
    }
    if let Some(Command::Audit(command)) = &cli.command {
        // One line on failure: the database's outage warning would repeat it.
        cli.log.init_quieting(&["deadpool", "verdictd::pg"]);
        let config = match &cli.config {
            Some(p) => verdictd::Config::load(p)?,
            None => verdictd::Config::default(),
        };
        if let Err(broken) = verdictd::audit::cli::run(command, &config)? {
            cli_exit::exit_with_line(&format!("verdictd: audit log: {broken}"), 3);
        }
        return Ok(());
    }
    if let Some(Command::RotateKek(args)) = &cli.command {
        // One line on failure (and none for the migrations' notices).
        cli.log
            .init_quieting(&["deadpool", "verdictd::pg", "tokio_postgres"]);
        let config = match &cli.config {
            Some(p) => verdictd::Config::load(p)?,
            None => verdictd::Config::default(),
        };
        std::process::exit(verdictd::rotate::run(args, &config)?);
    }
    // The pool's own warnings (a connection lost, not recycled) would repeat, per
    // connection, the outage verdictd logs once (see verdictd::pg).
    cli.log.init_quieting(&["deadpool"]);
    let mut config = match &cli.config {
        Some(p) => verdictd::Config::load(p)?,
        None => verdictd::Config::default(),
    };
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    config.insecure_http |= cli.insecure_http;
    let tls = match &config.tls {
        Some(t) => Some(verdictd::server::tls_acceptor(t)?),
        None => None,
    };
    let listen = config.listen;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // With postgres storage this waits for the database (retrying, logged), and
        // can be stopped meanwhile.
        let state = tokio::select! {
            s = verdictd::AppState::open(config) => s?,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // One line on stdout, so a script (or a test given port 0) learns the address.
        println!(
            "listening on {}://{addr}",
            if tls.is_some() { "https" } else { "http" }
        );
        tokio::select! {
            r = verdictd::server::serve(listener, state, tls) => r.context("serve")?,
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        Ok(())
    })
}
