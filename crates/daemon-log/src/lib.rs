//! Logging for the project's daemons (`verdictd`, `inclavared`, `signature-server`):
//! the same two flags everywhere, logs on stderr so that stdout stays for what a
//! daemon announces (its address).
//!
//! ```no_run
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     log: daemon_log::LogArgs,
//! }
//! let cli: Cli = clap::Parser::parse();
//! cli.log.init();
//! ```

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// debug, info, warn or error
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

impl LogArgs {
    /// Installs the global subscriber: to stderr, at `log_level`, as text or JSON lines.
    /// Colours only on a terminal: a log file or journald gets plain text to grep.
    pub fn init(&self) {
        self.init_quieting(&[]);
    }

    /// [`LogArgs::init`], with the events of the `quiet` targets (libraries, by module
    /// path prefix, e.g. `deadpool`) kept only from ERROR up: for libraries whose
    /// warnings the daemon reports itself, once and in its own words.
    pub fn init_quieting(&self, quiet: &[&str]) {
        use std::io::IsTerminal;
        use tracing_subscriber::filter::{EnvFilter, LevelFilter};
        let mut filter =
            EnvFilter::default().add_directive(LevelFilter::from(self.log_level).into());
        for target in quiet {
            if let Ok(d) = format!("{target}=error").parse() {
                filter = filter.add_directive(d);
            }
        }
        let logs = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(filter);
        match self.log_format {
            LogFormat::Json => logs.json().init(),
            LogFormat::Text => logs.init(),
        }
    }
}
